//! Contracts on what works once: registration invitations, pending gateway
//! authorizations, authorization codes, dashboard setup links and sessions.

use std::sync::Arc;

use crate::model::AuthCode;
use crate::store::{Invite, PendingAuth, Store, WebSession, read_blocking, write_blocking};

/// Invitations and pending authorizations: taken once, never after expiry.
pub(super) fn taken_once(s: &Arc<dyn Store>) {
    let now = 1000;
    let invite = |hash: &str, expires_at| Invite {
        hash: hash.into(),
        owner: "alice".into(),
        audience: "https://api.example".into(),
        shared: true,
        expires_at,
    };
    let (live, old) = (invite("inv-1", now + 60), invite("inv-2", now - 1));
    let (l, o) = (live.clone(), old);
    write_blocking(s, move |tx| {
        tx.owner_ensure("alice", 1)?;
        tx.invite_put(&l)?;
        tx.invite_put(&o)
    })
    .unwrap();
    let take = |hash: &'static str| write_blocking(s, move |tx| tx.invite_take(hash, now)).unwrap();
    assert_eq!(take("inv-1"), Some(live));
    assert_eq!(take("inv-1"), None, "an invitation works once");
    assert_eq!(take("inv-2"), None, "an expired invitation does not work");
    assert_eq!(take("inv-9"), None);

    let pending = PendingAuth {
        state_hash: "state-1".into(),
        owner: "alice".into(),
        upstream: "github".into(),
        sealed: vec![1, 2, 3],
        created_at: now,
        expires_at: now + 600,
        browser: Some("cookie=abc".into()),
    };
    let p = pending.clone();
    write_blocking(s, move |tx| tx.oauth_pending_put(&p)).unwrap();
    let take = || write_blocking(s, |tx| tx.oauth_pending_take("state-1")).unwrap();
    assert_eq!(take(), Some(pending));
    assert_eq!(take(), None, "a pending authorization is taken once");
}

/// Authorization codes: spent once; a spent code stays readable (a second
/// redemption must find what the first one made).
pub(super) fn auth_codes(s: &Arc<dyn Store>) {
    let code = AuthCode {
        hash: "code-1".into(),
        client_id: "client-1".into(),
        redirect_uri: "https://app.example/cb".into(),
        code_challenge: "challenge".into(),
        resource: "https://api.example".into(),
        scope: "files:read".into(),
        owner: "alice".into(),
        ttl: 3600,
        created_at: 1000,
        expires_at: 1060,
        gid: None,
    };
    let c = code.clone();
    write_blocking(s, move |tx| tx.auth_code_put(&c)).unwrap();
    assert_eq!(
        read_blocking(s, |tx| tx.auth_code_get("code-1")).unwrap(),
        Some(code)
    );
    let spend = |gid: &'static str| write_blocking(s, move |tx| tx.auth_code_spend("code-1", gid));
    assert!(spend("g1").unwrap(), "the first redemption spends it");
    assert!(!spend("g2").unwrap(), "the second finds it spent");
    let spent = read_blocking(s, |tx| tx.auth_code_get("code-1"))
        .unwrap()
        .unwrap();
    assert_eq!(
        spent.gid.as_deref(),
        Some("g1"),
        "the first redemption's grant stays"
    );
    assert!(
        read_blocking(s, |tx| tx.auth_code_get("code-9"))
            .unwrap()
            .is_none()
    );
}

/// Setup links and web sessions: live until spent, ended or expired.
pub(super) fn dashboard(s: &Arc<dyn Store>) {
    let now = 1000;
    write_blocking(s, move |tx| {
        tx.owner_ensure("alice", 1)?;
        tx.setup_put("link-1", "alice", now + 60)?;
        tx.setup_put("link-2", "alice", now + 60) // replaces the older link
    })
    .unwrap();
    let link = |h: &'static str| read_blocking(s, move |tx| tx.setup_get(h, now)).unwrap();
    assert_eq!(
        link("link-1"),
        None,
        "a new link replaces the owner's older ones"
    );
    assert_eq!(link("link-2").as_deref(), Some("alice"));
    let later = read_blocking(s, move |tx| tx.setup_get("link-2", now + 61)).unwrap();
    assert_eq!(later, None, "an expired link does not work");
    write_blocking(s, |tx| tx.setup_delete("link-2")).unwrap();
    assert_eq!(link("link-2"), None, "a spent link does not work");

    let session = |id: &str| WebSession {
        id_hash: id.into(),
        owner: "alice".into(),
        csrf: format!("csrf-{id}"),
        created_at: now,
        expires_at: now + 3600,
    };
    let (a, b, c) = (session("s1"), session("s2"), session("s3"));
    let (a2, b2, c2) = (a.clone(), b.clone(), c.clone());
    write_blocking(s, move |tx| {
        tx.session_put(&a2)?;
        tx.session_put(&b2)?;
        tx.session_put(&c2)
    })
    .unwrap();
    let get = |id: &'static str| read_blocking(s, move |tx| tx.session_get(id, now)).unwrap();
    assert_eq!(get("s1"), Some(a));
    let expired = read_blocking(s, move |tx| tx.session_get("s1", now + 3601)).unwrap();
    assert_eq!(expired, None);
    write_blocking(s, |tx| tx.session_delete("s1")).unwrap();
    assert_eq!(get("s1"), None);
    write_blocking(s, |tx| tx.sessions_end_others("alice", "s2")).unwrap();
    assert_eq!((get("s2"), get("s3")), (Some(b), None));
}

/// DPoP proofs in a store shared by processes: a key is fresh once, also
/// when many requests record it at the same moment (they share one
/// statement on PostgreSQL); distinct keys recorded together are each fresh;
/// a row whose time has passed is taken over.
pub(super) fn proofs_once(s: &Arc<dyn Store>) {
    if !s.shares_proofs() {
        return;
    }
    let now = 1000;
    let outcomes: Vec<(u8, bool)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..32u8)
            .map(|i| {
                let s = s.clone();
                // Eight threads on each of four keys.
                let key = [i % 4; 32];
                sc.spawn(move || (i % 4, s.proof_use(&key, now, now + 60).unwrap()))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for k in 0..4u8 {
        let fresh = outcomes.iter().filter(|(key, f)| *key == k && *f).count();
        assert_eq!(fresh, 1, "key {k} was accepted {fresh} times");
    }
    assert!(
        !s.proof_use(&[1; 32], now + 10, now + 70).unwrap(),
        "still remembered"
    );
    assert!(
        s.proof_use(&[1; 32], now + 60, now + 120).unwrap(),
        "its time has passed"
    );
    assert!(
        !s.proof_use(&[1; 32], now + 61, now + 121).unwrap(),
        "taken over once"
    );
}
