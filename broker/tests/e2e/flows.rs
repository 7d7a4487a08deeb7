//! Pre-authorized grants, refresh rotation, token exchange.

use protonpass_agent::wire::{TOKEN_TYPE_ACCESS, TOKEN_TYPE_REFRESH};
use protonpass_agent::{Clock, KeySet, SystemClock, TokenValidation, verify_access_token};

use protonpass_e2e::{API, Broker, PRE_AUTHORIZED_CODE, claims, key};

#[tokio::test]
async fn metadata_jwks_health_metrics() {
    let b = Broker::start(&[]);
    let m = b.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(m.status, 200);
    // Agents keep it a minute (spec/04 section 4.2).
    assert_eq!(m.headers.get("cache-control").unwrap(), "max-age=60");
    assert_eq!(m.body["issuer"], b.url.as_str());
    let grants = m.body["grant_types_supported"].as_array().unwrap();
    assert_eq!(grants.len(), 6);
    assert!(grants.iter().any(|g| g == "authorization_code"));
    assert!(
        grants
            .iter()
            .any(|g| g == "urn:openid:params:grant-type:ciba")
    );
    assert!(grants.iter().any(|g| g == PRE_AUTHORIZED_CODE));
    assert_eq!(
        m.body["dpop_signing_alg_values_supported"],
        serde_json::json!(["EdDSA", "Ed25519", "ES256"])
    );
    assert_eq!(
        m.body["revocation_feed_endpoint"],
        format!("{}/revocations", b.url).as_str()
    );
    let j = b.get("/jwks.json").await;
    let k = &j.body["keys"][0];
    assert_eq!(
        (k["use"].as_str(), k["alg"].as_str(), k["kty"].as_str()),
        (Some("sig"), Some("EdDSA"), Some("OKP"))
    );
    assert!(k["kid"].as_str().is_some());
    assert_eq!(b.get("/healthz").await.status, 200);
    let metrics = b.get("/metrics").await;
    assert!(
        metrics
            .body
            .as_str()
            .unwrap()
            .contains("protonpass_http_requests_total")
    );
    // The signing key file is private to the broker's user (with
    // PostgreSQL the key is sealed in the database instead).
    use std::os::unix::fs::PermissionsExt;
    let kid = k["kid"].as_str().unwrap();
    if !protonpass_e2e::on_postgres() {
        let mode = std::fs::metadata(b.data.join("keys").join(format!("{kid}.pem")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn enroll_then_refresh_then_exchange() {
    let b = Broker::start(&[]);
    let agent = key();
    let r = b
        .enroll(
            &agent,
            "travel-bot",
            "travel:search travel:book payment:execute:under-100",
            &["--ttl", "2h"],
        )
        .await;
    assert_eq!(r.s("token_type"), "DPoP");
    assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");
    let at = r.s("access_token");
    let rt = r.s("refresh_token");
    let gid = r.s("grant_id");

    // The access token verifies against the published JWKS and carries the claims of spec/01-tokens.md.
    let jwks = b.get("/jwks.json").await.body.to_string();
    let keys = KeySet::from_jwks_json(&jwks).unwrap();
    let c = verify_access_token(
        &at,
        &keys,
        &TokenValidation::new(b.url.clone(), API),
        SystemClock.now(),
    )
    .unwrap();
    assert_eq!(c.jkt, agent.thumbprint());
    assert_eq!(c.client_id, "travel-bot");
    assert_eq!(c.act_sub, "travel-bot");
    assert_eq!(c.sub, "default");
    assert_eq!(c.gid, gid);
    assert_eq!(
        c.scope,
        "travel:search travel:book payment:execute:under-100"
    );
    assert!(c.exp - c.iat <= 3600);

    // The enrollment code works once.
    // Refresh: rotates; the new refresh token works, the access token is fresh.
    let r2 = b.refresh(&agent, &rt).await;
    assert_eq!(r2.status, 200, "{}", r2.body);
    let rt2 = r2.s("refresh_token");
    assert_ne!(rt2, rt);
    assert_ne!(claims(&r2.s("access_token"))["jti"], claims(&at)["jti"]);

    // Refresh with the wrong key: refused, and the grant is not harmed.
    let thief = key();
    let bad = b.refresh(&thief, &rt2).await;
    assert_eq!((bad.status, bad.error()), (400, "invalid_grant"));

    // Exchange (refresh token subject): narrowed scopes, a narrowed limit.
    let x = b
        .exchange(
            &agent,
            &rt2,
            TOKEN_TYPE_REFRESH,
            &[
                (
                    "scope",
                    "travel:book payment:execute:under-500 calendar:read",
                ),
                ("audience", API),
            ],
        )
        .await;
    assert_eq!(x.status, 200, "{}", x.body);
    assert_eq!(x.s("scope"), "travel:book payment:execute:under-100");
    assert_eq!(x.s("issued_token_type"), TOKEN_TYPE_ACCESS);
    // The refresh token it spent is replaced (RFC 9700 4.14.2 rotation).
    let rt3 = x.s("refresh_token");
    assert_ne!(rt3, rt2);
    let xt = x.s("access_token");
    let xc = claims(&xt);
    assert_eq!(xc["scope"], "travel:book payment:execute:under-100");
    assert_eq!(xc["act"]["sub"], "travel-bot");

    // Exchange of an access token: bounded by its scopes and expiry.
    let y = b
        .exchange(
            &agent,
            &xt,
            TOKEN_TYPE_ACCESS,
            &[("scope", "travel:book travel:search")],
        )
        .await;
    assert_eq!(y.status, 200, "{}", y.body);
    assert_eq!(y.s("scope"), "travel:book");
    assert!(claims(&y.s("access_token"))["exp"].as_i64() <= xc["exp"].as_i64());

    // Scope widening: nothing requested is granted.
    let w = b
        .exchange(
            &agent,
            &xt,
            TOKEN_TYPE_ACCESS,
            &[("scope", "travel:search")],
        )
        .await;
    assert_eq!((w.status, w.error()), (400, "invalid_scope"));
    let empty = b
        .exchange(&agent, &rt3, TOKEN_TYPE_REFRESH, &[("scope", "  ")])
        .await;
    assert_eq!(empty.error(), "invalid_scope");

    // Audience outside the grant.
    let t = b
        .exchange(
            &agent,
            &rt3,
            TOKEN_TYPE_REFRESH,
            &[("resource", "https://evil.example")],
        )
        .await;
    assert_eq!((t.status, t.error()), (400, "invalid_target"));

    // Exchange with another key's proof.
    let k = b.exchange(&thief, &xt, TOKEN_TYPE_ACCESS, &[]).await;
    assert_eq!(k.error(), "invalid_grant");
}

#[tokio::test]
async fn enrollment_code_is_single_use_and_expires() {
    let b = Broker::start(&[("PROTONPASS_BROKER_ENROLLMENT_TTL", "1")]);
    let g = b.create_grant("ci", "repo:read", &[]);
    let code = g["enrollment_code"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = b.redeem(&key(), &code).await;
    // RFC 6749: an expired code is an invalid grant (expired_token is RFC
    // 8628's, for device codes).
    assert_eq!((r.status, r.error()), (400, "invalid_grant"));

    let b = Broker::start(&[]);
    let g = b.create_grant("ci", "repo:read", &[]);
    let code = g["enrollment_code"].as_str().unwrap().to_owned();
    let agent = key();
    let ok = b.redeem(&agent, &code).await;
    assert_eq!(ok.status, 200);
    let again = b.redeem(&agent, &code).await;
    assert_eq!((again.status, again.error()), (400, "invalid_grant"));
}

#[tokio::test]
async fn refresh_reuse_revokes_the_whole_grant() {
    let b = Broker::start(&[]);
    let (rs_id, rs_secret) = b.resource(API, None);
    let rs = (rs_id, rs_secret);
    let agent = key();
    let r = b.enroll(&agent, "bot", "calendar:read", &[]).await;
    let (rt1, at1, gid) = (r.s("refresh_token"), r.s("access_token"), r.s("grant_id"));
    let r2 = b.refresh(&agent, &rt1).await;
    assert_eq!(r2.status, 200);
    let rt2 = r2.s("refresh_token");
    // The spent token comes back: the grant dies, with every token of it.
    let reuse = b.refresh(&agent, &rt1).await;
    assert_eq!((reuse.status, reuse.error()), (400, "invalid_grant"));
    let after = b.refresh(&agent, &rt2).await;
    assert_eq!(after.error(), "invalid_grant");
    assert_eq!(b.introspect(&rs, &at1).await.body["active"], false);
    let feed = b.feed(0).await;
    assert!(feed.iter().any(|e| e["gid"] == gid.as_str()), "{feed:?}");
}

#[tokio::test]
async fn a_launcher_may_close_stdout_after_the_first_line() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .unwrap();
    let mut child = std::process::Command::new(protonpass_e2e::broker_bin())
        .args([
            "--data",
            dir.path().to_str().unwrap(),
            "serve",
            "--addr",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    {
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
    } // the pipe is closed here, before the broker has printed everything
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = v["issuer"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(child.try_wait().unwrap().is_none(), "the broker exited");
    let _ = child.kill();
    let _ = child.wait();
}
