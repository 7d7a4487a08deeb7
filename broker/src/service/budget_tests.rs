use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::model::TokenRec;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, read_blocking, write_blocking};

/// Two stores on one database file stand for two broker processes: each
/// has its own writer connection, and SQLite's write lock is all that
/// orders their transactions.
#[test]
fn spends_from_separate_connections_never_overspend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let stores: Vec<Arc<dyn Store>> = (0..4)
        .map(|_| {
            let s: Arc<dyn Store> = SqliteStore::open_with(&path, Duration::from_secs(30)).unwrap();
            s
        })
        .collect();
    let now = 1_796_496_376;
    let g = Grant {
        gid: "g".into(),
        owner: "o".into(),
        agent: "a".into(),
        scope: "payment:execute".into(),
        audiences: vec!["https://api.example".into()],
        jkt: Some("k".into()),
        status: GrantStatus::Active,
        origin: "test".into(),
        created_at: now,
        ttl: 3600,
        expires_at: now + 3600,
        enroll_hash: None,
        revoked_at: None,
    };
    let t = TokenRec {
        jti: "t".into(),
        gid: "g".into(),
        owner: "o".into(),
        kind: TokenKind::Access,
        client_id: "a".into(),
        scope: "payment:execute".into(),
        aud: Some("https://api.example".into()),
        iat: now,
        exp: now + 300,
        jkt: "k".into(),
        hash: None,
        status: TokenStatus::Active,
    };
    let spec = BudgetSpec::parse("payment:execute=500/EUR/day").unwrap();
    let b = spec.to_budget(&g, now).unwrap();
    write_blocking(&stores[0], move |tx| {
        tx.grant_put(&g)?;
        tx.token_put(&t)?;
        put_budget(tx, "o", &b, now)
    })
    .unwrap();
    let rs = Resource {
        client_id: "rs".into(),
        owner: "o".into(),
        audience: "https://api.example".into(),
        secret_hash: String::new(),
        created_at: now,
        shared: false,
        scopes: Default::default(),
        accept_bearer: false,
    };
    let gate = Arc::new(std::sync::Barrier::new(64));
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let (s, rs, gate) = (stores[i % 4].clone(), rs.clone(), gate.clone());
            std::thread::spawn(move || {
                let req = SpendRequest {
                    grant_id: "g".into(),
                    token_id: "t".into(),
                    scope: "payment:execute".into(),
                    amount: "10".into(),
                    currency: "EUR".into(),
                    idempotency_key: format!("k{i}"),
                };
                gate.wait();
                write_blocking(&s, move |tx| spend_tx(tx, &rs, &req, None, 1000, now))
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 50, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| e.code() == "budget_exceeded")
    );
    let views = read_blocking(&stores[1], |tx| budget_views(tx, "g", now)).unwrap();
    assert_eq!(views[0].spent, "500.00");
    assert_eq!(views[0].remaining, "0.00");
    // The next period starts afresh.
    let tomorrow = read_blocking(&stores[2], |tx| budget_views(tx, "g", now + 86_400)).unwrap();
    assert_eq!(tomorrow[0].spent, "0.00");
}
