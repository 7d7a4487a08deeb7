//! PostgreSQL only (`PROTONPASS_TEST_STORE`): two broker processes on one
//! database act as one broker (keys, nonces, refresh rotation, one audit
//! chain), and a broker whose database connections are cut comes back by
//! itself, answering `503` meanwhile and never failing otherwise.

use protonpass_e2e::{Broker, key, on_postgres, store_sql};

#[tokio::test]
async fn two_brokers_on_one_database_share_keys_nonces_and_refresh_rotation() {
    if !on_postgres() {
        return;
    }
    let a = Broker::start(&[]);
    // A second process on the same database (no serve lock: replicas).
    let b = Broker::start_in(&a.data, &[]);
    let (ja, jb) = (a.get("/jwks.json").await, b.get("/jwks.json").await);
    assert_eq!(ja.status, 200);
    assert!(
        !ja.body["keys"].as_array().unwrap().is_empty(),
        "{}",
        ja.body
    );
    assert_eq!(ja.body, jb.body);
    let k = key();
    let t = a.enroll(&k, "agent", "x:y", &[]).await;
    let rt = t.s("refresh_token");

    // A nonce issued by one replica is accepted by the other.
    let first = a
        .post_form(
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", "x")],
            &[("DPoP", a.proof(&k, &a.token_url(), None))],
        )
        .await;
    assert_eq!(first.error(), "use_dpop_nonce", "{}", first.body);
    let nonce = first.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let r = b
        .post_form(
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
            &[("DPoP", b.proof(&k, &b.token_url(), Some(&nonce)))],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rt2 = r.s("refresh_token");

    // The same refresh token at both replicas at once: it rotates once.
    let p = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt2.as_str()),
    ];
    let (ra, rb) = tokio::join!(a.token(&k, &p), b.token(&k, &p));
    let ok = [ra.status, rb.status].iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 1, "{} / {}", ra.body, rb.body);
    let refused = if ra.status == 200 { &rb } else { &ra };
    assert_eq!(refused.error(), "invalid_grant", "{}", refused.body);

    // Many writes through both: one audit chain, no gap, no fork.
    let mut jobs = Vec::new();
    for i in 0..16 {
        let (a, b, k) = (&a, &b, &k);
        jobs.push(async move {
            let s = if i % 2 == 0 { a } else { b };
            s.enroll(k, &format!("agent{i}"), "x:y", &[]).await.status
        });
    }
    for s in futures_util::future::join_all(jobs).await {
        assert_eq!(s, 200);
    }
    let v = a.cli_ok(&["audit", "verify"]);
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test]
async fn a_broker_whose_connections_are_cut_answers_503_and_comes_back() {
    if !on_postgres() {
        return;
    }
    let b = Broker::start(&[]);
    let k = key();
    b.enroll(&k, "agent", "x:y", &[]).await;
    let t = b.enroll(&k, "agent", "x:y", &[]).await;
    let mut rt = t.s("refresh_token");
    // Every connection of the broker's, ended by the server.
    store_sql(
        &b.data,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    let mut served = false;
    for _ in 0..50 {
        let r = b.refresh(&k, &rt).await;
        assert!(
            r.status == 200 || r.status == 503,
            "{}: {}",
            r.status,
            r.body
        );
        if r.status == 200 {
            rt = r.s("refresh_token");
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(served, "the broker did not come back");
    assert!(!rt.is_empty());
}
