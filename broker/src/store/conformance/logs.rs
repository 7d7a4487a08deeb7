//! Contracts on what only grows or is spent once: the audit chain, budget
//! spends, the revocation feed, and what pruning may remove.

use std::sync::Arc;

use protonpass_agent::Error;
use protonpass_agent::budget::Period;

use super::records::{grant, token};
use crate::audit::Verifier;
use crate::model::{Budget, SpendRec, TokenKind, TokenStatus};
use crate::store::{Store, Tx, read_blocking, write_blocking};

/// The audit log: appended records chain from the genesis hash with
/// contiguous positions, also when a transaction that appended failed.
pub(super) fn audit(s: &Arc<dyn Store>) {
    assert_eq!(read_blocking(s, |tx| tx.audit_head()).unwrap(), 0);
    assert_eq!(read_blocking(s, |tx| tx.audit_first()).unwrap(), 0);
    let first = write_blocking(s, |tx| {
        tx.audit_append(10, "alice", "grant", r#"{"gid":"g1"}"#)
    });
    assert_eq!(first.unwrap(), 1);
    let two = write_blocking(s, |tx| {
        let a = tx.audit_append(11, "alice", "issue", r#"{"jti":"a"}"#)?;
        let b = tx.audit_append(11, "-", "usage", r#"{"allowed":true}"#)?;
        Ok((a, b))
    });
    assert_eq!(two.unwrap(), (2, 3));
    // A failed transaction's record is rolled back and leaves no gap.
    let failed = write_blocking(s, |tx| {
        tx.audit_append(12, "alice", "revoke", "{}")?;
        Err::<(), _>(Error::Server("abandoned".into()))
    });
    assert!(failed.is_err());
    assert_eq!(read_blocking(s, |tx| tx.audit_head()).unwrap(), 3);
    let next = write_blocking(s, |tx| tx.audit_append(13, "alice", "refresh", "{}"));
    assert_eq!(next.unwrap(), 4);
    for ts in 14..20 {
        write_blocking(s, move |tx| tx.audit_append(ts, "bob", "issue", "{}")).unwrap();
    }
    assert_eq!(read_blocking(s, |tx| tx.audit_head()).unwrap(), 10);
    assert_eq!(read_blocking(s, |tx| tx.audit_first()).unwrap(), 1);

    // The whole chain verifies, page by page.
    let mut v = Verifier::default();
    let mut after = 0;
    loop {
        let page = read_blocking(s, move |tx| tx.audit_page(after, 3)).unwrap();
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 3);
        after = last.seq;
        v.feed(&page).unwrap();
    }
    assert_eq!((v.count, v.position()), (10, 10));
    let all = read_blocking(s, |tx| tx.audit_page(0, 100)).unwrap();
    let r = &all[3];
    assert_eq!(
        (r.seq, r.ts, r.owner.as_str(), r.event.as_str()),
        (4, 13, "alice", "refresh")
    );
    assert_eq!(
        all[1].detail, r#"{"jti":"a"}"#,
        "the detail is kept as given"
    );
    // A record changed at rest is caught.
    let mut tampered = all.clone();
    tampered[5].detail = r#"{"x":1}"#.into();
    assert_eq!(Verifier::default().feed(&tampered).unwrap_err().seq, 6);
}

fn spend(key: &str, amount: i64, at: i64) -> SpendRec {
    SpendRec {
        resource: "rs-shop".into(),
        key: key.into(),
        gid: "g1".into(),
        scope: "shop:pay".into(),
        amount,
        currency: "EUR".into(),
        at,
        refunded_at: None,
        answer: format!(r#"{{"spent":{amount}}}"#),
    }
}

/// Spend as the budget service does: the first spend under a key counts,
/// a retry gets the first answer back.
fn spend_once(tx: &mut dyn Tx, s: SpendRec) -> crate::store::Result<String> {
    match tx.spend_get(&s.resource, &s.key)? {
        Some(prev) => Ok(prev.answer),
        None => {
            // The shop:pay budget below is daily, set on day 0.
            tx.spend_add(&s, Some(0))?;
            Ok(s.answer)
        }
    }
}

/// Budgets: limits by scope, spends counted once per idempotency key,
/// refunds leave the total and happen once.
pub(super) fn budgets(s: &Arc<dyn Store>) {
    write_blocking(s, |tx| {
        tx.owner_ensure("alice", 1)?;
        tx.grant_put(&grant("g1", "agent-a", 1))
    })
    .unwrap();
    let budget = |scope: &str, limit| Budget {
        gid: "g1".into(),
        scope: scope.into(),
        limit,
        currency: "EUR".into(),
        period: Period::Day,
        updated_at: 5,
    };
    let (b1, b2, b3) = (
        budget("shop:pay", 1000),
        budget("ads:buy", 50),
        budget("shop:pay", 2000),
    );
    write_blocking(s, move |tx| {
        tx.budget_put(&b1)?;
        tx.budget_put(&b2)?;
        tx.budget_put(&b3) // replaces the first
    })
    .unwrap();
    let got = read_blocking(s, |tx| tx.budgets_of("g1")).unwrap();
    assert_eq!(
        got,
        [budget("ads:buy", 50), budget("shop:pay", 2000)],
        "by scope"
    );

    let total = |since| read_blocking(s, move |tx| tx.spent_since("g1", "shop:pay", "EUR", since));
    let a1 = write_blocking(s, |tx| spend_once(tx, spend("k1", 300, 100))).unwrap();
    let a2 = write_blocking(s, |tx| spend_once(tx, spend("k1", 999, 101))).unwrap();
    assert_eq!(a2, a1, "the same key answers the same");
    write_blocking(s, |tx| spend_once(tx, spend("k2", 200, 200))).unwrap();
    assert_eq!(total(0).unwrap(), 500, "the same key twice spends once");
    assert_eq!(total(150).unwrap(), 200);
    let other = read_blocking(s, |tx| tx.spent_since("g1", "shop:pay", "USD", 0));
    assert_eq!(other.unwrap(), 0);
    // The store itself refuses a second spend under one key, and keeps the first.
    assert!(write_blocking(s, |tx| tx.spend_add(&spend("k1", 50, 300), Some(0))).is_err());
    let k1 = read_blocking(s, |tx| tx.spend_get("rs-shop", "k1")).unwrap();
    assert_eq!(k1, Some(spend("k1", 300, 100)));
    assert_eq!(total(0).unwrap(), 500);

    // Refund: once; a second refund changes nothing.
    write_blocking(s, |tx| tx.spend_refund("rs-shop", "k1", 400)).unwrap();
    assert_eq!(total(0).unwrap(), 200);
    write_blocking(s, |tx| tx.spend_refund("rs-shop", "k1", 500)).unwrap();
    assert_eq!(total(0).unwrap(), 200);
    let k1 = read_blocking(s, |tx| tx.spend_get("rs-shop", "k1"))
        .unwrap()
        .unwrap();
    assert_eq!(k1.refunded_at, Some(400));
    assert_eq!(
        read_blocking(s, |tx| tx.spend_get("rs-shop", "k9")).unwrap(),
        None
    );
}

/// The running total of a budget's period: `spent_since` from the period's
/// start answers what the spends sum to through spends, refunds (of this
/// period and of an earlier one), a new period, a spend with no budget
/// period, a changed budget, and a clock that went back.
pub(super) fn budget_totals(s: &Arc<dyn Store>) {
    const DAY: i64 = 86_400;
    let (d0, d1) = (100 * DAY, 101 * DAY);
    write_blocking(s, |tx| {
        tx.owner_ensure("alice", 1)?;
        tx.grant_put(&grant("g1", "agent-a", 1))
    })
    .unwrap();
    let budget = move |period, at| Budget {
        gid: "g1".into(),
        scope: "shop:pay".into(),
        limit: 1000,
        currency: "EUR".into(),
        period,
        updated_at: at,
    };
    write_blocking(s, move |tx| tx.budget_put(&budget(Period::Day, d0 + 10))).unwrap();
    let total = |since| read_blocking(s, move |tx| tx.spent_since("g1", "shop:pay", "EUR", since));
    let add = |key: &'static str, amount, at, since| {
        write_blocking(s, move |tx| tx.spend_add(&spend(key, amount, at), since)).unwrap();
    };
    let refund = |key: &'static str, at| {
        write_blocking(s, move |tx| tx.spend_refund("rs-shop", key, at)).unwrap();
    };
    assert_eq!(total(d0).unwrap(), 0, "a new budget has spent nothing");
    add("k1", 100, d0 + 20, Some(d0));
    add("k2", 50, d0 + 30, Some(d0));
    assert_eq!(total(d0).unwrap(), 150);
    refund("k1", d0 + 31);
    refund("k1", d0 + 32);
    assert_eq!(total(d0).unwrap(), 50, "a refund counts once");
    // A spend the store is told no period of still counts.
    add("k3", 25, d0 + 40, None);
    assert_eq!(total(d0).unwrap(), 75);
    assert_eq!(total(d0 + 35).unwrap(), 25, "another start sums the spends");
    assert_eq!(total(i64::MIN).unwrap(), 75);

    // The next day: its total starts at zero, the day before is kept.
    assert_eq!(total(d1).unwrap(), 0);
    add("k4", 10, d1 + 5, Some(d1));
    assert_eq!(total(d1).unwrap(), 10);
    assert_eq!(total(d0).unwrap(), 85);
    // Refunding a spend of the day before leaves today's total alone.
    refund("k2", d1 + 6);
    assert_eq!(total(d1).unwrap(), 10);
    assert_eq!(total(d0).unwrap(), 35);
    add("k5", 5, d1 + 7, Some(d1));
    assert_eq!(total(d1).unwrap(), 15);
    // Refunding today's spend gives it back today.
    refund("k5", d1 + 8);
    assert_eq!(total(d1).unwrap(), 10);

    // The owner makes it a budget of all time: counted from the spends.
    write_blocking(s, move |tx| tx.budget_put(&budget(Period::Total, d1 + 9))).unwrap();
    assert_eq!(total(i64::MIN).unwrap(), 35);
    // A clock that went back to the day before still counts in all time.
    add("k6", 3, d0 + 50, Some(i64::MIN));
    assert_eq!(total(i64::MIN).unwrap(), 38);
    assert_eq!(total(d1).unwrap(), 10);
    // Back to daily, on the day before: its spends, the late one included.
    write_blocking(s, move |tx| tx.budget_put(&budget(Period::Day, d0 + 60))).unwrap();
    assert_eq!(total(d0).unwrap(), 38);
    // Another currency has a total of its own.
    let usd = read_blocking(s, move |tx| tx.spent_since("g1", "shop:pay", "USD", d0));
    assert_eq!(usd.unwrap(), 0);
}

/// The revocation feed: positions grow, the head is the last one, readers
/// page from a position and see only unexpired entries, oldest first.
pub(super) fn revocation_feed(s: &Arc<dyn Store>) {
    let now = 1000;
    assert_eq!(read_blocking(s, |tx| tx.revocation_head()).unwrap(), 0);
    let seqs = write_blocking(s, move |tx| {
        let a = tx.revocation_add(Some("j1"), None, now + 100, "alice")?;
        let b = tx.revocation_add(None, Some("g1"), now + 200, "alice")?;
        Ok(vec![a, b])
    })
    .unwrap();
    let c = write_blocking(s, move |tx| {
        tx.revocation_add(Some("j2"), None, now - 1, "bob")
    });
    let d = write_blocking(s, move |tx| {
        tx.revocation_add(Some("j3"), None, now + 50, "bob")
    });
    let seqs: Vec<i64> = seqs.into_iter().chain([c.unwrap(), d.unwrap()]).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(seqs[0] > 0);
    assert_eq!(
        read_blocking(s, |tx| tx.revocation_head()).unwrap(),
        seqs[3]
    );

    let feed = read_blocking(s, move |tx| tx.revocations_after(0, now, 100)).unwrap();
    let got: Vec<_> = feed
        .iter()
        .map(|e| (e.seq, e.jti.as_deref(), e.gid.as_deref(), e.exp))
        .collect();
    assert_eq!(
        got,
        [
            (seqs[0], Some("j1"), None, now + 100),
            (seqs[1], None, Some("g1"), now + 200),
            (seqs[3], Some("j3"), None, now + 50),
        ],
        "oldest first, the expired entry left out"
    );
    let (first, last) = (seqs[0], seqs[3]);
    let after = read_blocking(s, move |tx| tx.revocations_after(first, now, 1)).unwrap();
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [seqs[1]]);
    let tail = read_blocking(s, move |tx| tx.revocations_after(last, now, 100)).unwrap();
    assert!(tail.is_empty());
}

/// Pruning: expired rows go after their grace; a spent refresh token of a
/// live grant, unexpired rows and the newest feed entry stay.
pub(super) fn pruning(s: &Arc<dyn Store>) {
    const HOUR: i64 = 3600;
    let now = 1_000_000;
    let (live_feed, head) = write_blocking(s, move |tx| {
        tx.owner_ensure("alice", 1)?;
        let mut g = grant("g1", "agent-a", 1);
        g.expires_at = 2 * now;
        tx.grant_put(&g)?;
        let mut spent = token("spent", "g1", TokenKind::Refresh, 1, 2 * now);
        spent.status = TokenStatus::Used;
        tx.token_put(&spent)?;
        tx.token_put(&token("old", "g1", TokenKind::Access, 1, now - HOUR - 1))?;
        tx.token_put(&token("recent", "g1", TokenKind::Access, 1, now - 10))?;
        tx.token_put(&token("live", "g1", TokenKind::Access, 1, now + 10))?;
        tx.revocation_add(Some("old"), None, now - HOUR - 1, "alice")?;
        let live = tx.revocation_add(Some("live"), None, now + 10, "alice")?;
        let head = tx.revocation_add(Some("last"), None, now - HOUR - 1, "alice")?;
        tx.attempt_add("k", now - 2 * 86_400, 1)?;
        tx.attempt_add("k", now - 10, 2)?;
        Ok((live, head))
    })
    .unwrap();
    let p = write_blocking(s, move |tx| tx.prune_expired(now, 1000)).unwrap();
    assert_eq!((p.tokens, p.revocations), (1, 1), "{p:?}");
    for (jti, kept) in [
        ("spent", true),
        ("old", false),
        ("recent", true),
        ("live", true),
    ] {
        let got = read_blocking(s, move |tx| tx.token_get(jti)).unwrap();
        assert_eq!(got.is_some(), kept, "{jti}");
    }
    let feed = read_blocking(s, |tx| tx.revocations_after(0, 0, 10)).unwrap();
    let kept: Vec<_> = feed.iter().map(|e| (e.seq, e.jti.as_deref())).collect();
    assert_eq!(kept, [(live_feed, Some("live")), (head, Some("last"))]);
    assert_eq!(read_blocking(s, |tx| tx.revocation_head()).unwrap(), head);
    // The day-old attempt is gone (pruned, or dropped by `attempt_add`
    // already, as SQLite's does), the recent one counts.
    assert_eq!(
        read_blocking(s, move |tx| tx.attempt_sum("k", 0)).unwrap(),
        2
    );
    // Nothing more to do; the limit bounds a pass.
    let p = write_blocking(s, move |tx| tx.prune_expired(now, 1000)).unwrap();
    assert_eq!(p.total(), 0, "{p:?}");
    write_blocking(s, move |tx| {
        for i in 0..3 {
            tx.token_put(&token(
                &format!("x{i}"),
                "g1",
                TokenKind::Access,
                1,
                now - 2 * HOUR,
            ))?;
        }
        Ok(())
    })
    .unwrap();
    let p = write_blocking(s, move |tx| tx.prune_expired(now, 2)).unwrap();
    assert_eq!(p.tokens, 2, "{p:?}");
    let p = write_blocking(s, move |tx| tx.prune_expired(now, 2)).unwrap();
    assert_eq!(p.tokens, 1, "{p:?}");
}
