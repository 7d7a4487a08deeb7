//! Durability across restarts (kill -9), the audit chain, key rotation.

use protonpass_agent::{Clock, KeySet, SystemClock, TokenValidation, verify_access_token};

use protonpass_e2e::{API, Broker, PRE_AUTHORIZED_CODE, claims, key};

#[tokio::test]
async fn state_survives_kill_and_restart() {
    let mut b = Broker::start(&[]);
    let dir = b.take_dir();
    let agent = key();
    let r = b
        .enroll(&agent, "bot", "calendar:read calendar:write", &[])
        .await;
    let (at, rt) = (r.s("access_token"), r.s("refresh_token"));
    let jti = claims(&at)["jti"].as_str().unwrap().to_owned();
    b.cli_ok(&["revoke", &jti]);
    let kept = b.enroll(&key(), "bot2", "calendar:read", &[]).await;
    let kid_before = b.get("/jwks.json").await.body["keys"][0]["kid"].clone();
    let addr = b.addr().to_owned();
    b.kill();

    // Restart on the same address, so the issuer (the tokens' `iss`) is the same.
    let b = Broker::start_at(dir.path(), &addr, &[]);
    assert_eq!(b.get("/jwks.json").await.body["keys"][0]["kid"], kid_before);
    let feed = b.feed(0).await;
    assert!(feed.iter().any(|e| e["jti"] == jti.as_str()));
    let rs = b.resource(API, None);
    assert_eq!(b.introspect(&rs, &at).await.body["active"], false);
    // A token nobody revoked is still good.
    let i = b.introspect(&rs, &kept.s("access_token")).await;
    assert_eq!(i.body["active"], true, "{}", i.body);
    // The grant survived: its refresh token still works (with a nonce from the new process).
    let r2 = b.refresh(&agent, &rt).await;
    assert_eq!(r2.status, 200, "{}", r2.body);
    let v = b.cli_ok(&["audit", "verify"]);
    assert_eq!(v["ok"], true);
    assert!(v["records"].as_i64().unwrap() >= 4);
    let list = b.cli_ok(&["grant", "list"]);
    assert_eq!(list[0]["status"], "active");
}

#[tokio::test]
async fn audit_verify_catches_edits_and_removals() {
    if protonpass_e2e::on_postgres() {
        return; // looks into SQLite's files or the data directory
    }
    let mut b = Broker::start(&[]);
    let agent = key();
    b.enroll(&agent, "bot", "calendar:read", &[]).await;
    b.enroll(&agent, "bot2", "calendar:read", &[]).await;
    let tail = b.cli_ok(&["audit", "verify"]);
    assert_eq!(tail["ok"], true);
    b.kill();
    let db = b.data.join("broker.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute("UPDATE audit SET detail = detail || ' ' WHERE seq = 2", [])
            .unwrap();
    }
    let (code, v) = b.cli(&["audit", "verify"]);
    assert_eq!(code, 2);
    assert_eq!(v["ok"], false);
    assert_eq!(v["seq"], 2);
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute("UPDATE audit SET detail = rtrim(detail) WHERE seq = 2", [])
            .unwrap();
    }
    assert_eq!(b.cli_ok(&["audit", "verify"])["ok"], true);
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute("DELETE FROM audit WHERE seq = 3", []).unwrap();
    }
    let (code, v) = b.cli(&["audit", "verify"]);
    assert_eq!(code, 2);
    assert_eq!(v["seq"], 4);
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_valid() {
    let b = Broker::start(&[]);
    let agent = key();
    let r = b.enroll(&agent, "bot", "calendar:read", &[]).await;
    let old = r.s("access_token");
    let v = b.cli_ok(&["keys", "rotate"]);
    let new_kid = v["kid"].as_str().unwrap().to_owned();
    // The server picks up the new key within about a second.
    let mut jwks = serde_json::Value::Null;
    for _ in 0..50 {
        jwks = b.get("/jwks.json").await.body;
        if jwks["keys"].as_array().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    let keys = KeySet::from_jwks_json(&jwks.to_string()).unwrap();
    let val = TokenValidation::new(b.url.clone(), API);
    verify_access_token(&old, &keys, &val, SystemClock.now()).unwrap();
    let r2 = b.refresh(&agent, &r.s("refresh_token")).await;
    let new = r2.s("access_token");
    let header: serde_json::Value = serde_json::from_slice(
        &protonpass_agent::b64::decode(new.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], new_kid.as_str());
    verify_access_token(&new, &keys, &val, SystemClock.now()).unwrap();
}

/// The published kids, after the server's next key reload (about a second).
async fn kids_after_reload(b: &Broker) -> Vec<String> {
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    b.published_kids().await
}

#[tokio::test]
async fn a_retired_key_stays_while_the_servers_tokens_live() {
    if protonpass_e2e::on_postgres() {
        return; // looks into SQLite's files or the data directory
    }
    // The server's tokens live 2 h by a flag only it was given; `keys rotate`
    // runs with the default 1 h and so sets an earlier drop_after.
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::launch(dir.path(), "127.0.0.1:0", &["--access-ttl", "2h"], &[]);
    let r = b
        .enroll(&key(), "bot", "calendar:read", &["--ttl", "1d"])
        .await;
    let c = claims(&r.s("access_token"));
    let exp = c["exp"].as_i64().unwrap();
    assert_eq!(exp - c["iat"].as_i64().unwrap(), 7200);
    let old = kids_after_reload(&b).await;
    let new = b.cli_ok(&["keys", "rotate"])["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = rusqlite::Connection::open(b.data.join("broker.db")).unwrap();
    let meta = |kid: &str| -> serde_json::Value {
        let data: String = db
            .query_row("SELECT data FROM signing_keys WHERE kid = ?1", [kid], |r| {
                r.get(0)
            })
            .unwrap();
        serde_json::from_str(&data).unwrap()
    };
    assert!(meta(&old[0])["drop_after"].as_i64().unwrap() < exp);
    // Past that drop_after (moved into the past rather than waited for) the
    // key stays: the server knows its own tokens live 2 h.
    let set = |field: &str, at: i64| {
        db.execute(
            &format!(
                "UPDATE signing_keys SET data = json_set(data, '$.{field}', ?1) WHERE kid = ?2"
            ),
            rusqlite::params![at, old[0]],
        )
        .unwrap();
    };
    let now = SystemClock.now();
    set("drop_after", now - 1);
    let mut both = vec![old[0].clone(), new.clone()];
    both.sort();
    assert_eq!(kids_after_reload(&b).await, both);
    // Once 2 h and a minute have passed since its retirement, it goes.
    set("retired_at", now - 7200 - 61);
    assert_eq!(kids_after_reload(&b).await, vec![new]);
}

#[tokio::test]
async fn nothing_is_issued_when_the_audit_record_cannot_be_written() {
    if protonpass_e2e::on_postgres() {
        return; // looks into SQLite's files or the data directory
    }
    let b = Broker::start(&[("PROTONPASS_BROKER_BUSY_TIMEOUT_MS", "300")]);
    let g = b.create_grant("bot", "calendar:read", &[]);
    let code = g["enrollment_code"].as_str().unwrap().to_owned();
    let params = [
        ("grant_type", PRE_AUTHORIZED_CODE),
        ("pre-authorized_code", code.as_str()),
    ];
    let agent = key();
    // Fetch a nonce first, so that the next request is the real attempt.
    let warm = b.redeem(&agent, "ec_unknown").await;
    assert_eq!(warm.error(), "invalid_grant");
    // Another process holds the database's write lock: the grant's records
    // (tokens and audit) cannot be committed.
    let lock = rusqlite::Connection::open(b.data.join("broker.db")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let r = b.token(&agent, &params).await;
    assert_eq!(
        (r.status, r.error()),
        (503, "temporarily_unavailable"),
        "{}",
        r.body
    );
    assert!(r.body.get("access_token").is_none());
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    // Nothing was issued: the code is unspent and works now, once.
    let ok = b.token(&agent, &params).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(b.cli_ok(&["audit", "verify"])["ok"], true);
}

#[tokio::test]
async fn revocation_is_refused_while_the_database_is_locked_and_recovers() {
    if protonpass_e2e::on_postgres() {
        return; // looks into SQLite's files or the data directory
    }
    let b = Broker::start(&[("PROTONPASS_BROKER_BUSY_TIMEOUT_MS", "300")]);
    let rs = b.resource(API, None);
    let agent = key();
    let r = b.enroll(&agent, "bot", "calendar:read", &[]).await;
    let r2 = b.refresh(&agent, &r.s("refresh_token")).await;
    assert_eq!(r2.status, 200, "{}", r2.body);
    // One token for the agent to revoke (RFC 7009), one for the owner (CLI).
    let (by_agent, by_owner) = (r.s("access_token"), r2.s("access_token"));
    let owner_jti = claims(&by_owner)["jti"].as_str().unwrap().to_owned();
    let agent_revoke = [("token", by_agent.as_str()), ("client_id", "bot")];

    let lock = rusqlite::Connection::open(b.data.join("broker.db")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let refused = b.post_form("/oauth/revoke", &agent_revoke, &[]).await;
    assert_eq!(
        (refused.status, refused.error()),
        (503, "temporarily_unavailable"),
        "{}",
        refused.body
    );
    let (code, v) = b.cli(&["revoke", &owner_jti]);
    assert_ne!(code, 0, "{v}");
    assert_eq!(v["error"], "temporarily_unavailable", "{v}");
    // Reads go on meanwhile: both tokens are still active, the feed is empty.
    for t in [&by_agent, &by_owner] {
        assert_eq!(b.introspect(&rs, t).await.body["active"], true);
    }
    assert!(b.feed(0).await.is_empty());
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);

    // The lock is gone: the same revocations succeed, with no restart.
    let ok = b.post_form("/oauth/revoke", &agent_revoke, &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    b.cli_ok(&["revoke", &owner_jti]);
    for t in [&by_agent, &by_owner] {
        assert_eq!(b.introspect(&rs, t).await.body["active"], false);
    }
    let feed = b.feed(0).await;
    for t in [&by_agent, &by_owner] {
        let jti = claims(t)["jti"].clone();
        assert!(
            feed.iter().any(|e| e["jti"] == jti),
            "{jti} not in the feed"
        );
    }
    assert_eq!(b.cli_ok(&["audit", "verify"])["ok"], true);
}
