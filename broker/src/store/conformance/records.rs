//! Contracts on the stored records: grants, tokens, device requests, step-ups.

use std::sync::Arc;

use crate::model::{DeviceReq, DeviceStatus, Grant, GrantStatus};
use crate::model::{StepUp, StepUpStatus, TokenKind, TokenRec, TokenStatus};
use crate::store::{Store, read_blocking, write_blocking};

pub(super) fn grant(gid: &str, agent: &str, created_at: i64) -> Grant {
    Grant {
        gid: gid.into(),
        owner: "alice".into(),
        agent: agent.into(),
        scope: "files:read files:write".into(),
        audiences: vec!["https://api.example".into(), "https://b.example".into()],
        jkt: Some(format!("jkt-{gid}")),
        status: GrantStatus::Active,
        origin: "pre-authorized".into(),
        created_at,
        ttl: 3600,
        expires_at: created_at + 3600,
        enroll_hash: None,
        revoked_at: None,
    }
}

pub(super) fn token(jti: &str, gid: &str, kind: TokenKind, iat: i64, exp: i64) -> TokenRec {
    TokenRec {
        jti: jti.into(),
        gid: gid.into(),
        owner: "alice".into(),
        kind,
        client_id: "agent-a".into(),
        scope: "files:read".into(),
        aud: (kind == TokenKind::Access).then(|| "https://api.example".into()),
        iat,
        exp,
        jkt: "jkt-g1".into(),
        hash: (kind == TokenKind::Refresh).then(|| format!("hash-{jti}")),
        status: TokenStatus::Active,
    }
}

fn owner(s: &Arc<dyn Store>) {
    write_blocking(s, |tx| tx.owner_ensure("alice", 1)).unwrap();
}

/// Grants: stored whole, found by id, by enrollment hash while enrolling,
/// listed newest first (per agent too); revoking is storing the new state.
pub(super) fn grants(s: &Arc<dyn Store>) {
    owner(s);
    let mut enrolling = grant("g1", "agent-a", 100);
    enrolling.status = GrantStatus::Enrolling;
    enrolling.jkt = None;
    enrolling.enroll_hash = Some("enroll-1".into());
    let e = enrolling.clone();
    write_blocking(s, move |tx| {
        tx.grant_put(&e)?;
        tx.grant_put(&grant("g2", "agent-b", 200))?;
        tx.grant_put(&grant("g3", "agent-a", 300))
    })
    .unwrap();
    assert_eq!(
        read_blocking(s, |tx| tx.grant_get("g1")).unwrap(),
        Some(enrolling.clone())
    );
    assert_eq!(read_blocking(s, |tx| tx.grant_get("nope")).unwrap(), None);
    let by_hash = read_blocking(s, |tx| tx.grant_by_enroll_hash("enroll-1")).unwrap();
    assert_eq!(by_hash.map(|g| g.gid).as_deref(), Some("g1"));
    assert_eq!(
        read_blocking(s, |tx| tx.grant_by_enroll_hash("other")).unwrap(),
        None
    );

    let gids = |agent: Option<&'static str>| -> Vec<String> {
        read_blocking(s, |tx| tx.grants_of("alice", agent))
            .unwrap()
            .into_iter()
            .map(|g| g.gid)
            .collect()
    };
    assert_eq!(gids(None), ["g3", "g2", "g1"]);
    assert_eq!(gids(Some("agent-a")), ["g3", "g1"]);
    assert!(
        read_blocking(s, |tx| tx.grants_of("bob", None))
            .unwrap()
            .is_empty()
    );

    // Enrollment: the key is bound, the code forgotten.
    let mut active = enrolling;
    active.status = GrantStatus::Active;
    active.jkt = Some("jkt-g1".into());
    active.enroll_hash = None;
    let a = active.clone();
    write_blocking(s, move |tx| tx.grant_put(&a)).unwrap();
    assert_eq!(
        read_blocking(s, |tx| tx.grant_by_enroll_hash("enroll-1")).unwrap(),
        None
    );
    assert_eq!(
        read_blocking(s, |tx| tx.grant_get("g1")).unwrap(),
        Some(active.clone())
    );

    // Revocation replaces the record (which then lists first: the order is
    // that of the last write, see `tokens`).
    let mut revoked = active;
    revoked.status = GrantStatus::Revoked;
    revoked.revoked_at = Some(500);
    let r = revoked.clone();
    write_blocking(s, move |tx| tx.grant_put(&r)).unwrap();
    assert_eq!(
        read_blocking(s, |tx| tx.grant_get("g1")).unwrap(),
        Some(revoked)
    );
    assert_eq!(gids(None), ["g1", "g3", "g2"]);
}

/// Tokens: stored whole, refresh tokens found by hash, rotation leaves the
/// spent one findable as `used` (reuse detection), revocation sticks.
pub(super) fn tokens(s: &Arc<dyn Store>) {
    owner(s);
    let access = token("at1", "g1", TokenKind::Access, 10, 310);
    let refresh = token("rt1", "g1", TokenKind::Refresh, 11, 3610);
    let (a, r) = (access.clone(), refresh.clone());
    write_blocking(s, move |tx| {
        tx.grant_put(&grant("g1", "agent-a", 1))?;
        tx.token_put(&a)?;
        tx.token_put(&r)
    })
    .unwrap();
    assert_eq!(
        read_blocking(s, |tx| tx.token_get("at1")).unwrap(),
        Some(access)
    );
    assert_eq!(read_blocking(s, |tx| tx.token_get("nope")).unwrap(), None);
    assert_eq!(
        read_blocking(s, |tx| tx.token_by_hash("hash-rt1")).unwrap(),
        Some(refresh.clone())
    );
    assert_eq!(
        read_blocking(s, |tx| tx.token_by_hash("hash-none")).unwrap(),
        None
    );

    // Rotation in one transaction: the old one is spent, a new one issued.
    let mut spent = refresh;
    spent.status = TokenStatus::Used;
    let next = token("rt2", "g1", TokenKind::Refresh, 12, 3610);
    let (sp, nx) = (spent.clone(), next.clone());
    write_blocking(s, move |tx| {
        tx.token_put(&sp)?;
        tx.token_put(&nx)
    })
    .unwrap();
    let old = read_blocking(s, |tx| tx.token_by_hash("hash-rt1")).unwrap();
    assert_eq!(
        old.map(|t| t.status),
        Some(TokenStatus::Used),
        "reuse must be detectable"
    );
    assert_eq!(
        read_blocking(s, |tx| tx.token_by_hash("hash-rt2")).unwrap(),
        Some(next)
    );

    // A failed transaction changes nothing.
    let failed = write_blocking(s, |tx| {
        let mut t = tx.token_get("rt2")?.unwrap();
        t.status = TokenStatus::Revoked;
        tx.token_put(&t)?;
        Err::<(), _>(protonpass_agent::Error::Server("abandoned".into()))
    });
    assert!(failed.is_err());
    let t = read_blocking(s, |tx| tx.token_get("rt2")).unwrap().unwrap();
    assert_eq!(t.status, TokenStatus::Active);

    // "Newest first" is the order of the last write: a replaced record
    // counts as new (SQLite's REPLACE takes a new rowid; PostgreSQL's upsert
    // takes a new `n`).
    let jtis = || -> Vec<String> {
        read_blocking(s, |tx| tx.tokens_of_grant("g1"))
            .unwrap()
            .into_iter()
            .map(|t| t.jti)
            .collect()
    };
    assert_eq!(jtis(), ["rt2", "rt1", "at1"]);

    // Revocation.
    write_blocking(s, |tx| {
        let mut t = tx.token_get("at1")?.unwrap();
        t.status = TokenStatus::Revoked;
        tx.token_put(&t)
    })
    .unwrap();
    let t = read_blocking(s, |tx| tx.token_get("at1")).unwrap().unwrap();
    assert_eq!(t.status, TokenStatus::Revoked);

    assert_eq!(jtis(), ["at1", "rt2", "rt1"], "the last written first");
    assert!(
        read_blocking(s, |tx| tx.tokens_of_grant("g9"))
            .unwrap()
            .is_empty()
    );

    // A one-time token redeemed by a verifier, its payment not yet spent.
    let mut redeemed = token("at-once", "g1", TokenKind::Access, 13, 300);
    redeemed.status = TokenStatus::Redeemed;
    let r = redeemed.clone();
    write_blocking(s, move |tx| tx.token_put(&r)).unwrap();
    assert_eq!(
        read_blocking(s, |tx| tx.token_get("at-once")).unwrap(),
        Some(redeemed)
    );
}

fn device(id: &str, requester: &str, created_at: i64, expires_at: i64) -> DeviceReq {
    DeviceReq {
        id: id.into(),
        device_hash: format!("dev-{id}"),
        user_hash: format!("user-{id}"),
        client_id: "agent-a".into(),
        jkt: Some("jkt-x".into()),
        scope: "files:read".into(),
        resource: Some("https://api.example".into()),
        created_at,
        expires_at,
        interval: 5,
        requester: Some(requester.into()),
        user_code: Some("ABCD-EFGH".into()),
        reason: Some("sync files".into()),
        ..DeviceReq::default()
    }
}

/// Device requests: a user code works while pending and unexpired; once
/// approved it is found by device code only, and once used it is spent.
pub(super) fn devices(s: &Arc<dyn Store>) {
    let now = 1000;
    let d1 = device("d1", "jkt:x", 10, now + 600);
    let (a, b, c) = (
        d1.clone(),
        device("d2", "jkt:x", 20, now + 600),
        device("d3", "source:1.2.3.4", 30, now - 1),
    );
    write_blocking(s, move |tx| {
        tx.device_put(&a)?;
        tx.device_put(&b)?;
        tx.device_put(&c)
    })
    .unwrap();
    let by_user = read_blocking(s, move |tx| tx.device_by_user_hash("user-d1", now)).unwrap();
    assert_eq!(by_user, Some(d1.clone()));
    // Expired: the user code no longer works, nor counts.
    assert_eq!(
        read_blocking(s, move |tx| tx.device_by_user_hash("user-d3", now)).unwrap(),
        None
    );
    assert_eq!(
        read_blocking(s, move |tx| tx.device_live_count(now)).unwrap(),
        2
    );
    assert_eq!(
        read_blocking(s, move |tx| tx.device_live_count_of("jkt:x", now)).unwrap(),
        2
    );
    let other = read_blocking(s, move |tx| tx.device_live_count_of("source:1.2.3.4", now));
    assert_eq!(other.unwrap(), 0);
    let ids = |v: Vec<DeviceReq>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    let pending = read_blocking(s, move |tx| tx.devices_pending(now)).unwrap();
    assert_eq!(ids(pending), ["d1", "d2"], "oldest first");

    // Approval: no longer pending, waiting for its poll.
    let mut approved = d1;
    approved.status = DeviceStatus::Approved;
    approved.owner = Some("alice".into());
    approved.approved_scope = Some("files:read".into());
    approved.approved_ttl = Some(3600);
    let ap = approved.clone();
    write_blocking(s, move |tx| tx.device_put(&ap)).unwrap();
    assert_eq!(
        read_blocking(s, move |tx| tx.device_by_user_hash("user-d1", now)).unwrap(),
        None
    );
    assert_eq!(
        read_blocking(s, move |tx| tx.device_live_count(now)).unwrap(),
        1
    );
    let waiting = read_blocking(s, move |tx| tx.devices_approved(now)).unwrap();
    assert_eq!(ids(waiting), ["d1"]);
    let by_dev = read_blocking(s, |tx| tx.device_by_device_hash("dev-d1")).unwrap();
    assert_eq!(by_dev, Some(approved.clone()));

    // The poll that collects the tokens spends it: a second poll sees `used`.
    let mut used = approved;
    used.status = DeviceStatus::Used;
    used.gid = Some("g1".into());
    let u = used.clone();
    write_blocking(s, move |tx| tx.device_put(&u)).unwrap();
    assert!(
        read_blocking(s, move |tx| tx.devices_approved(now))
            .unwrap()
            .is_empty()
    );
    let again = read_blocking(s, |tx| tx.device_by_device_hash("dev-d1")).unwrap();
    assert_eq!(again.map(|d| d.status), Some(DeviceStatus::Used));
    assert_eq!(
        read_blocking(s, |tx| tx.device_by_device_hash("dev-none")).unwrap(),
        None
    );
}

fn stepup(id: &str, gid: &str, expires_at: i64) -> StepUp {
    StepUp {
        id: id.into(),
        hash: format!("req-{id}"),
        owner: "alice".into(),
        gid: gid.into(),
        agent: "agent-a".into(),
        jkt: "jkt-g1".into(),
        aud: "https://shop.example".into(),
        details: r#"[{"type":"payment","amount":"5.00","currency":"EUR"}]"#.into(),
        scope: "shop:pay".into(),
        binding_message: Some("buy a book".into()),
        status: StepUpStatus::Pending,
        decided_by: None,
        created_at: 100,
        expires_at,
        interval: 5,
        last_poll: None,
        jti: None,
        redeemed_by: None,
    }
}

/// Step-ups: by id, by request hash, by token id once issued; the pending
/// list is the owner's unexpired ones, soonest to expire first.
pub(super) fn stepups(s: &Arc<dyn Store>) {
    owner(s);
    let now = 1000;
    let (a, b, c) = (
        stepup("s1", "g1", now + 300),
        stepup("s2", "g1", now + 100),
        stepup("s3", "g1", now - 1),
    );
    let (a2, b2, c2) = (a.clone(), b.clone(), c.clone());
    write_blocking(s, move |tx| {
        tx.grant_put(&grant("g1", "agent-a", 1))?;
        tx.stepup_put(&a2)?;
        tx.stepup_put(&b2)?;
        tx.stepup_put(&c2)
    })
    .unwrap();
    assert_eq!(
        read_blocking(s, |tx| tx.stepup_get("s1")).unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        read_blocking(s, |tx| tx.stepup_by_hash("req-s2")).unwrap(),
        Some(b)
    );
    assert_eq!(read_blocking(s, |tx| tx.stepup_get("nope")).unwrap(), None);
    let pending: Vec<String> = read_blocking(s, move |tx| tx.stepups_pending("alice", now))
        .unwrap()
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(
        pending,
        ["s2", "s1"],
        "soonest to expire first, expired left out"
    );
    assert!(
        read_blocking(s, move |tx| tx.stepups_pending("bob", now))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        read_blocking(s, move |tx| tx.stepup_live_count("g1", now)).unwrap(),
        2
    );

    // Issued: found by the one-time token's jti; still live until it expires.
    let mut issued = a;
    issued.status = StepUpStatus::Issued;
    issued.decided_by = Some("owner".into());
    issued.jti = Some("jti-s1".into());
    // Redeemed by a resource server's verification: who, kept with it.
    issued.redeemed_by = Some("rs-shop".into());
    let i = issued.clone();
    write_blocking(s, move |tx| tx.stepup_put(&i)).unwrap();
    assert_eq!(
        read_blocking(s, |tx| tx.stepup_by_jti("jti-s1")).unwrap(),
        Some(issued)
    );
    assert_eq!(
        read_blocking(s, |tx| tx.stepup_by_jti("jti-none")).unwrap(),
        None
    );
    let pending = read_blocking(s, move |tx| tx.stepups_pending("alice", now)).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        read_blocking(s, move |tx| tx.stepup_live_count("g1", now)).unwrap(),
        2
    );

    // Denied: neither pending nor live.
    write_blocking(s, |tx| {
        let mut d = tx.stepup_get("s2")?.unwrap();
        d.status = StepUpStatus::Denied;
        tx.stepup_put(&d)
    })
    .unwrap();
    assert!(
        read_blocking(s, move |tx| tx.stepups_pending("alice", now))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        read_blocking(s, move |tx| tx.stepup_live_count("g1", now)).unwrap(),
        1
    );
}
