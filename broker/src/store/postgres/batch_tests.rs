//! The writer's batches against a real PostgreSQL database (skipped without
//! one: `make test-postgres` runs them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::mpsc::channel;
use std::time::Duration;

use protonpass_agent::Error;

use super::super::{PgStore, PgUrl};
use crate::model::{Grant, TokenKind, TokenRec, TokenStatus};
use crate::store::{Result, Store, TokenLookup, Tx, make_job, read_blocking, write_blocking};

/// A write job's work, for [`one_batch`].
type Work = Box<dyn FnOnce(&mut dyn Tx) -> Result<()> + Send>;

/// A fresh PostgreSQL store, or `None` without a test database.
fn pg_store(prefix: &str) -> Option<Arc<PgStore>> {
    let base = protonpass_e2e::test_store()?;
    let url = protonpass_e2e::fresh_database(base.trim(), prefix);
    Some(PgStore::open(&PgUrl::parse(&url).unwrap()).unwrap())
}

/// A fresh store, or `None` without a test database.
fn store(prefix: &str) -> Option<Arc<dyn Store>> {
    pg_store(prefix).map(|s| s as Arc<dyn Store>)
}

/// A fresh store with owner `alice` and her grant `g1` (enrollment hash
/// `e1`), or `None` without a test database.
fn store_with_grant(prefix: &str) -> Option<Arc<dyn Store>> {
    let s = store(prefix)?;
    write_blocking(&s, |tx| {
        tx.owner_ensure("alice", 1)?;
        tx.grant_put(&grant("g1", "e1"))
    })
    .unwrap();
    Some(s)
}

/// Run `works` as one batch of the writer (held by a first job while
/// they queue); their outcomes, in order.
fn one_batch(s: &Arc<dyn Store>, works: Vec<Work>) -> Vec<Result<()>> {
    one_batch_reading(s, works.into_iter().map(|w| (w, None)).collect())
}

/// [`one_batch`] with the token each job names as its first read
/// ([`Store::submit_reading`]): the writer reads them together first.
fn one_batch_reading(
    s: &Arc<dyn Store>,
    works: Vec<(Work, Option<TokenLookup>)>,
) -> Vec<Result<()>> {
    let (started, wait_started) = channel();
    s.submit(make_job(
        move |_tx: &mut dyn Tx| {
            let _ = started.send(());
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        },
        |_| {},
    ))
    .unwrap();
    wait_started.recv().unwrap();
    let answers: Vec<_> = works
        .into_iter()
        .map(|(w, first)| {
            let (done, answer) = channel::<Result<()>>();
            let job = make_job(w, move |r| {
                let _ = done.send(r);
            });
            match first {
                Some(first) => s.submit_reading(job, first),
                None => s.submit(job),
            }
            .unwrap();
            answer
        })
        .collect();
    answers.into_iter().map(|a| a.recv().unwrap()).collect()
}

fn token(jti: &str, gid: &str, hash: Option<&str>) -> TokenRec {
    TokenRec {
        jti: jti.into(),
        gid: gid.into(),
        owner: "alice".into(),
        kind: if hash.is_some() {
            TokenKind::Refresh
        } else {
            TokenKind::Access
        },
        client_id: "agent-a".into(),
        scope: "files:read".into(),
        aud: None,
        iat: 1,
        exp: 3601,
        jkt: "jkt".into(),
        hash: hash.map(Into::into),
        status: TokenStatus::Active,
    }
}

/// The audit chain is whole: positions 1.., each linked to the one before.
fn chain_whole(s: &Arc<dyn Store>) -> Vec<crate::model::AuditRecord> {
    let chain = read_blocking(s, |tx| tx.audit_page(0, 1000)).unwrap();
    let mut prev = crate::audit::GENESIS.to_owned();
    for (i, r) in chain.iter().enumerate() {
        assert_eq!(r.seq, i as i64 + 1);
        assert_eq!(r.prev, prev);
        let hash = crate::audit::record_hash(r.seq, r.ts, &r.owner, &r.event, &r.detail, &r.prev);
        assert_eq!(r.hash, hash);
        prev = r.hash.clone();
    }
    chain
}

/// A refresh token spent by a job is seen spent by the next job of the
/// same batch (its rows are held back, not yet sent): the second use is
/// a reuse, which revokes the grant; everything commits, in order.
#[test]
fn a_second_use_of_a_refresh_token_in_one_batch_is_a_reuse() {
    let Some(s) = store_with_grant("reuse") else {
        return;
    };
    write_blocking(&s, |tx| tx.token_put(&token("r1", "g1", Some("h1")))).unwrap();
    // What the token endpoint does with a refresh token (spend it, mint
    // the next one) or, once spent, with its reuse (revoke the grant).
    let use_once = |next: &'static str| -> Work {
        Box::new(move |tx: &mut dyn Tx| {
            let mut t = tx.token_by_hash("h1")?.unwrap();
            let mut g = tx.grant_get(&t.gid)?.unwrap();
            if t.status == TokenStatus::Used {
                crate::service::revoke_grant(tx, &mut g, 5, "refresh_token_reuse")?;
                return Ok(());
            }
            assert_eq!(t.status, TokenStatus::Active);
            t.status = TokenStatus::Used;
            tx.token_put(&t)?;
            tx.token_put(&token(next, "g1", Some(&format!("h-{next}"))))?;
            tx.token_put(&token(&format!("a-{next}"), "g1", None))?;
            tx.audit_append(4, "alice", "refresh", next)?;
            Ok(())
        })
    };
    let out = one_batch(&s, vec![use_once("r2"), use_once("r3")]);
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    let (r1, r2, r3, a2, g) = read_blocking(&s, |tx| {
        Ok((
            tx.token_get("r1")?,
            tx.token_by_hash("h-r2")?,
            tx.token_get("r3")?,
            tx.token_get("a-r2")?,
            tx.grant_get("g1")?,
        ))
    })
    .unwrap();
    assert_eq!(r1.unwrap().status, TokenStatus::Used);
    assert_eq!(r2.unwrap().jti, "r2");
    assert!(a2.is_some());
    assert!(r3.is_none(), "the reuse minted nothing");
    assert_eq!(g.unwrap().status, crate::model::GrantStatus::Revoked);
    let chain = chain_whole(&s);
    let events: Vec<&str> = chain.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events, ["refresh", "revoke"]);
    // The rows of one batch keep the order they were written in.
    let order = read_blocking(&s, |tx| tx.tokens_of_grant("g1")).unwrap();
    let jtis: Vec<&str> = order.iter().map(|t| t.jti.as_str()).collect();
    assert_eq!(jtis, ["a-r2", "r2", "r1"]);
}

/// A job that fails after writing leaves nothing: its held rows are
/// dropped, the jobs around it commit, and the audit chain has no gap.
/// A job whose statement must see the held rows (a listing of tokens)
/// sees them.
#[test]
fn a_failed_job_leaves_no_row_and_a_listing_sees_the_rows_held() {
    let Some(s) = store_with_grant("held") else {
        return;
    };
    let put = |jti: &'static str, fail: bool| -> Work {
        Box::new(move |tx: &mut dyn Tx| {
            tx.token_put(&token(jti, "g1", None))?;
            tx.audit_append(3, "alice", "test", jti)?;
            if fail {
                return Err(protonpass_agent::Error::InvalidGrant("no".into()));
            }
            Ok(())
        })
    };
    let list: Work = Box::new(|tx: &mut dyn Tx| {
        let seen: Vec<String> = tx
            .tokens_of_grant("g1")?
            .into_iter()
            .map(|t| t.jti)
            .collect();
        assert_eq!(seen, ["c", "a"]);
        tx.token_put(&token("d", "g1", None))?;
        tx.audit_append(3, "alice", "test", "d")?;
        Err(protonpass_agent::Error::InvalidGrant("listed".into()))
    });
    let out = one_batch(
        &s,
        vec![
            put("a", false),
            put("b", true),
            put("c", false),
            list,
            put("e", false),
        ],
    );
    let ok: Vec<bool> = out.iter().map(Result::is_ok).collect();
    assert_eq!(ok, [true, false, true, false, true], "{out:?}");
    let stored = read_blocking(&s, |tx| tx.tokens_of_grant("g1")).unwrap();
    let jtis: Vec<&str> = stored.iter().map(|t| t.jti.as_str()).collect();
    assert_eq!(jtis, ["e", "c", "a"]);
    let chain = chain_whole(&s);
    let details: Vec<&str> = chain.iter().map(|r| r.detail.as_str()).collect();
    assert_eq!(details, ["a", "c", "e"]);
}

/// The rows held back go out together at the batch's end: when that
/// statement fails (here two refresh tokens with one hash), the whole
/// batch is rolled back and every job of it is told it failed; nothing
/// acknowledged is lost, the audit chain has no gap, and the next batch
/// goes on from the chain's head.
#[test]
fn a_failure_found_at_the_batch_end_fails_the_batch_and_acknowledges_nothing() {
    let Some(s) = store_with_grant("end") else {
        return;
    };
    write_blocking(&s, |tx| tx.audit_append(2, "alice", "test", "before")).unwrap();
    let put = |jti: &'static str, hash: &'static str| -> Work {
        Box::new(move |tx: &mut dyn Tx| {
            tx.token_put(&token(jti, "g1", Some(hash)))?;
            tx.audit_append(3, "alice", "test", jti)?;
            Ok(())
        })
    };
    let out = one_batch(&s, vec![put("a", "ha"), put("b", "hb"), put("c", "ha")]);
    assert!(out.iter().all(Result::is_err), "{out:?}");
    let stored = read_blocking(&s, |tx| tx.tokens_of_grant("g1")).unwrap();
    assert!(stored.is_empty(), "{stored:?}");
    let out = one_batch(&s, vec![put("d", "hd")]);
    assert!(out[0].is_ok(), "{out:?}");
    let chain = chain_whole(&s);
    let details: Vec<&str> = chain.iter().map(|r| r.detail.as_str()).collect();
    assert_eq!(details, ["before", "d"]);
}

fn grant(gid: &str, enroll: &str) -> Grant {
    Grant {
        gid: gid.into(),
        owner: "alice".into(),
        agent: "agent-a".into(),
        scope: "files:read".into(),
        audiences: vec!["https://api.example".into()],
        jkt: Some(format!("jkt-{gid}")),
        status: crate::model::GrantStatus::Active,
        origin: "pre-authorized".into(),
        created_at: 1,
        ttl: 3600,
        expires_at: 3601,
        enroll_hash: Some(enroll.into()),
        revoked_at: None,
    }
}

/// Jobs of one batch do not wait for their writes' answers: a write
/// that fails later (here a second grant with the same enrollment hash)
/// undoes its own job, and any job after it in the batch is told it
/// failed and left nothing; the jobs before it are committed, and the
/// audit chain has no gap.
#[test]
fn a_pipelined_write_that_fails_is_undone_with_nothing_acknowledged_lost() {
    let Some(s) = store_with_grant("pipe") else {
        return;
    };
    let put = |gid: &'static str, enroll: &'static str| -> Work {
        let g = grant(gid, enroll);
        Box::new(move |tx: &mut dyn Tx| {
            tx.grant_put(&g)?;
            tx.audit_append(2, "alice", "test", gid)?;
            Ok(())
        })
    };
    // `gb` has `g1`'s enrollment hash.
    let gids = ["ga", "gb", "gc"];
    let out = one_batch(&s, vec![put("ga", "ea"), put("gb", "e1"), put("gc", "ec")]);
    assert_eq!(out.len(), gids.len(), "{out:?}");
    for (gid, r) in gids.into_iter().zip(out) {
        let stored = read_blocking(&s, |tx| tx.grant_get(gid)).unwrap().is_some();
        match gid {
            "ga" => assert!(r.is_ok() && stored, "{r:?}"),
            // The failed write aborted the transaction: the jobs after
            // it in the batch are undone with it.
            _ => assert!(r.is_err() && !stored, "{r:?}"),
        }
    }
    let chain = chain_whole(&s);
    assert!(chain.iter().any(|r| r.detail == "ga"));
    assert!(!chain.iter().any(|r| r.detail == "gb" || r.detail == "gc"));
}

/// A key no stored row can have (PostgreSQL text holds no NUL), read by
/// a job before it writes anything, is not found, and the batch's other
/// jobs commit.
#[test]
fn a_key_with_a_nul_is_not_found_and_fails_no_other_job() {
    let Some(s) = store("nul") else {
        return;
    };
    write_blocking(&s, |tx| tx.owner_ensure("alice", 1)).unwrap();
    let g = grant("gn", "en");
    let works: Vec<Work> = vec![
        Box::new(|tx: &mut dyn Tx| {
            tx.grant_put(&grant("gm", "em"))?;
            tx.audit_append(2, "alice", "test", "gm")?;
            Ok(())
        }),
        Box::new(|tx: &mut dyn Tx| {
            let found = tx.token_get("jti\0")?.is_some()
                || tx.token_by_hash("h\0")?.is_some()
                || tx.grant_get("g\0")?.is_some()
                || !tx.resources_for_audience("https://x\0")?.is_empty();
            if found {
                return Err(Error::Server("a key with a NUL found a row".into()));
            }
            Ok(())
        }),
        Box::new(move |tx: &mut dyn Tx| {
            tx.grant_put(&g)?;
            tx.audit_append(2, "alice", "test", "gn")?;
            Ok(())
        }),
    ];
    let answers = one_batch(&s, works);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    for gid in ["gm", "gn"] {
        assert!(read_blocking(&s, |tx| tx.grant_get(gid)).unwrap().is_some());
    }
    let chain = chain_whole(&s);
    assert!(chain.iter().any(|r| r.detail == "gm"));
    assert!(chain.iter().any(|r| r.detail == "gn"));
}

#[cfg(test)]
#[path = "prefetch_tests.rs"]
mod prefetch;
