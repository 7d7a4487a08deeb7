//! The one-time token's states, through [`redeem_one_time`] on a real
//! SQLite store: issued, redeemed by a resource server's verification (its
//! approved payment still spendable once, by that resource server), used.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::model::{TokenKind, TokenRec};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, read_blocking, write_blocking};

const DETAILS: &str = r#"[{"type":"payment","amount":"250.00","currency":"EUR","payee":"Air Example","scope":"payment:execute"}]"#;

/// A store holding one issued one-time token `t1` (and its step-up), and a
/// second one `t2`.
fn store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s: Arc<dyn Store> =
        SqliteStore::open_with(&dir.path().join("db"), Duration::from_secs(10)).unwrap();
    write_blocking(&s, |tx| {
        tx.owner_ensure("o", 1)?;
        for jti in ["t1", "t2"] {
            tx.token_put(&TokenRec {
                jti: jti.into(),
                gid: "g".into(),
                owner: "o".into(),
                kind: TokenKind::Access,
                client_id: "a".into(),
                scope: "payment:execute:under-250.01".into(),
                aud: Some("https://api.example".into()),
                iat: 1,
                exp: 301,
                jkt: "k".into(),
                hash: None,
                status: TokenStatus::Active,
            })?;
            tx.stepup_put(&StepUp {
                id: format!("s-{jti}"),
                hash: format!("h-{jti}"),
                owner: "o".into(),
                gid: "g".into(),
                agent: "a".into(),
                jkt: "k".into(),
                aud: "https://api.example".into(),
                details: DETAILS.into(),
                scope: "payment:execute:under-250.01".into(),
                binding_message: None,
                status: StepUpStatus::Issued,
                decided_by: Some("owner".into()),
                created_at: 1,
                expires_at: 301,
                interval: 0,
                last_poll: None,
                jti: Some(jti.into()),
                redeemed_by: None,
            })?;
        }
        Ok(())
    })
    .unwrap();
    (s, dir)
}

fn redeem(
    s: &Arc<dyn Store>,
    jti: &'static str,
    how: Redeem<'static>,
    by: &'static str,
) -> Result<Option<bool>> {
    write_blocking(s, move |tx| redeem_one_time(tx, jti, how, by, 10))
}

fn status(s: &Arc<dyn Store>, jti: &'static str) -> TokenStatus {
    read_blocking(s, move |tx| tx.token_get(jti))
        .unwrap()
        .unwrap()
        .status
}

const PAY: Redeem<'static> = Redeem::Spend("payment:execute", 25_000, "EUR");

#[test]
fn a_verified_token_pays_its_approved_payment_once_and_only_for_its_verifier() {
    let (s, _dir) = store();
    assert_eq!(
        redeem(&s, "t1", Redeem::Verify, "rs-a").unwrap(),
        Some(true)
    );
    assert_eq!(status(&s, "t1"), TokenStatus::Redeemed);
    let by = read_blocking(&s, |tx| tx.stepup_by_jti("t1"))
        .unwrap()
        .unwrap()
        .redeemed_by;
    assert_eq!(by.as_deref(), Some("rs-a"));
    // Verified again, here or anywhere: already used.
    for (how, who) in [
        (Redeem::Verify, "rs-a"),
        (Redeem::Verify, "rs-b"),
        (Redeem::Use, "gateway"),
    ] {
        let e = redeem(&s, "t1", how, who).unwrap_err();
        assert_eq!(
            e,
            Error::InvalidGrant("this one-time token was already used".into())
        );
    }
    // Another resource server cannot spend it.
    assert_eq!(
        redeem(&s, "t1", PAY, "rs-b").unwrap_err().code(),
        "invalid_grant"
    );
    // More than approved: refused, and the payment stays open.
    let over = Redeem::Spend("payment:execute", 25_001, "EUR");
    assert_eq!(
        redeem(&s, "t1", over, "rs-a").unwrap_err().code(),
        "insufficient_scope"
    );
    assert_eq!(status(&s, "t1"), TokenStatus::Redeemed);
    // The approved payment, by its verifier: once.
    assert_eq!(redeem(&s, "t1", PAY, "rs-a").unwrap(), Some(true));
    assert_eq!(status(&s, "t1"), TokenStatus::Used);
    assert_eq!(
        redeem(&s, "t1", PAY, "rs-a").unwrap_err().code(),
        "invalid_grant"
    );
    // One redemption record: the first use.
    let events = read_blocking(&s, |tx| tx.audit_page(0, 100)).unwrap();
    let redeemed = events
        .iter()
        .filter(|r| r.event == "stepup_redeemed")
        .count();
    assert_eq!(redeemed, 1);
}

#[test]
fn a_use_or_a_spend_ends_it_at_once_and_other_tokens_are_not_one_time() {
    let (s, _dir) = store();
    assert_eq!(
        redeem(&s, "t1", Redeem::Use, "gateway").unwrap(),
        Some(true)
    );
    assert_eq!(status(&s, "t1"), TokenStatus::Used);
    assert_eq!(
        redeem(&s, "t1", PAY, "gateway").unwrap_err().code(),
        "invalid_grant"
    );
    assert_eq!(redeem(&s, "t2", PAY, "rs-a").unwrap(), Some(true));
    assert_eq!(
        redeem(&s, "t2", Redeem::Verify, "rs-a").unwrap_err().code(),
        "invalid_grant"
    );
    assert_eq!(redeem(&s, "nope", Redeem::Verify, "rs-a").unwrap(), None);
}
