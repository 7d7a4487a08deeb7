//! The device authorization grant (RFC 8628) with CLI approval.

use std::time::Duration;

use crate::kit::{API, Broker, Reply, claims, key};

const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Start a device request for `travel-bot` (no proof).
pub(crate) async fn start_device(b: &Broker, scope: &str, resource: Option<&str>) -> Reply {
    let mut p = vec![("client_id", "travel-bot"), ("scope", scope)];
    if let Some(r) = resource {
        p.push(("resource", r));
    }
    let r = b.post_form("/oauth/device_authorization", &p, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

/// Poll the token endpoint for `dc` with a proof by `k`.
pub(crate) async fn poll(b: &Broker, k: &protonpass_agent::AgentKey, dc: &str) -> Reply {
    b.token(
        k,
        &[
            ("grant_type", DEVICE),
            ("device_code", dc),
            ("client_id", "travel-bot"),
        ],
    )
    .await
}

#[tokio::test]
async fn pending_then_slow_down() {
    let b = Broker::start(&[]);
    let d = start_device(&b, "travel:book", Some(API)).await;
    let uc = d.s("user_code");
    assert_eq!(uc.len(), 9);
    assert!(uc.chars().enumerate().all(|(i, c)| if i == 4 {
        c == '-'
    } else {
        "BCDFGHJKLMNPQRSTVWXZ".contains(c)
    }));
    assert_eq!(d.body["interval"], 5);
    assert_eq!(d.body["expires_in"], 600);
    assert!(d.s("device_code").len() >= 43);
    let k = key();
    assert_eq!(
        poll(&b, &k, &d.s("device_code")).await.error(),
        "authorization_pending"
    );
    let fast = poll(&b, &k, &d.s("device_code")).await;
    assert_eq!((fast.status, fast.error()), (400, "slow_down"));
}

#[tokio::test]
async fn a_refused_poll_does_not_count_toward_slow_down() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "2")]);
    let d = start_device(&b, "travel:book", Some(API)).await;
    let dc = d.s("device_code");
    let k = key();
    assert_eq!(poll(&b, &k, &dc).await.error(), "authorization_pending");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    // A poll whose proof is wrong (signed for another URL) is refused and not counted.
    let bad_proof = b.proof(&k, "http://elsewhere.example/oauth/token", None);
    let refused = b
        .post_form(
            "/oauth/token",
            &[("grant_type", DEVICE), ("device_code", &dc)],
            &[("DPoP", bad_proof)],
        )
        .await;
    assert_eq!(refused.error(), "invalid_dpop_proof");
    assert_eq!(poll(&b, &k, &dc).await.error(), "authorization_pending");
}

#[tokio::test]
async fn approve_narrow_and_poll_once() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    let d = start_device(&b, "travel:search travel:book", None).await;
    let dc = d.s("device_code");
    let k = key();
    assert_eq!(poll(&b, &k, &dc).await.error(), "authorization_pending");
    // No audience in the request: the owner must name one.
    let typed = d.s("user_code").to_lowercase().replace('-', " ");
    let (code, v) = b.cli(&["approve", &typed, "--scope", "travel:search"]);
    assert_ne!(code, 0);
    assert_eq!(v["error"], "invalid_target");
    let v = b.cli_ok(&[
        "approve",
        &typed,
        "--scope",
        "travel:search",
        "--audience",
        API,
        "--ttl",
        "2h",
    ]);
    assert_eq!(v["scope"], "travel:search");
    let ok = poll(&b, &k, &dc).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.s("scope"), "travel:search");
    let c = claims(&ok.s("access_token"));
    assert_eq!(c["aud"], API);
    assert_eq!(c["cnf"]["jkt"], k.thumbprint());
    assert!(ok.body["grant_expires_at"].as_i64().unwrap() - c["iat"].as_i64().unwrap() <= 7200);
    // Single use.
    let again = poll(&b, &k, &dc).await;
    assert_eq!(again.error(), "invalid_grant");
    // The grant's refresh token is bound to the polling key.
    let r = b
        .token(
            &key(),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &ok.s("refresh_token")),
            ],
        )
        .await;
    assert_eq!(r.error(), "invalid_grant");
}

#[tokio::test]
async fn denied_and_expired() {
    let b = Broker::start(&[
        ("PROTONPASS_BROKER_DEVICE_INTERVAL", "0"),
        ("PROTONPASS_BROKER_DEVICE_TTL", "2"),
    ]);
    let d = start_device(&b, "travel:book", Some(API)).await;
    b.cli_ok(&["deny", &d.s("user_code")]);
    let k = key();
    let r = poll(&b, &k, &d.s("device_code")).await;
    assert_eq!((r.status, r.error()), (400, "access_denied"));

    let e = start_device(&b, "travel:book", Some(API)).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let r = poll(&b, &k, &e.s("device_code")).await;
    assert_eq!((r.status, r.error()), (400, "expired_token"));
    // An expired code cannot be approved either.
    let (code, v) = b.cli(&["approve", &e.s("user_code")]);
    assert_ne!(code, 0);
    assert_eq!(v["error"], "invalid_grant");
}

#[tokio::test]
async fn wrong_user_codes_lock_entry() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    let d = start_device(&b, "travel:book", Some(API)).await;
    // One live code: each wrong entry costs 1 of the budget of 5.
    for guess in [
        "BBBB-BBBB",
        "CCCC-CCCC",
        "DDDD-DDDD",
        "FFFF-FFFF",
        "GGGG-GGGG",
    ] {
        let (code, v) = b.cli(&["approve", guess]);
        assert_ne!(code, 0);
        assert_eq!(v["error"], "invalid_grant", "{v}");
    }
    // Locked now, even for the right code.
    let (code, v) = b.cli(&["approve", &d.s("user_code")]);
    assert_ne!(code, 0);
    assert_eq!(v["error"], "temporarily_unavailable", "{v}");
    // Another owner account has its own budget... but the same source (this CLI) is locked too.
    let (code, v) = b.cli(&["approve", &d.s("user_code"), "--owner", "bob"]);
    assert_ne!(code, 0);
    assert_eq!(v["error"], "temporarily_unavailable");
}

#[tokio::test]
async fn pending_requests_are_capped() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_MAX_PENDING", "2")]);
    start_device(&b, "travel:book", None).await;
    start_device(&b, "travel:book", None).await;
    let r = b
        .post_form(
            "/oauth/device_authorization",
            &[("client_id", "x"), ("scope", "travel:book")],
            &[],
        )
        .await;
    assert_eq!((r.status, r.error()), (503, "temporarily_unavailable"));
}

#[tokio::test]
async fn a_proof_at_device_authorization_binds_the_request_to_that_key() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    let k = key();
    let url = format!("{}/oauth/device_authorization", b.url);
    let proof = b.proof(&k, &url, None);
    let d = b
        .post_form(
            "/oauth/device_authorization",
            &[
                ("client_id", "travel-bot"),
                ("scope", "travel:book"),
                ("resource", API),
            ],
            &[("DPoP", proof)],
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    let dc = d.s("device_code");
    b.cli_ok(&["approve", &d.s("user_code")]);
    // Another key holding the stolen device code gets nothing, and spends nothing.
    let thief = poll(&b, &key(), &dc).await;
    assert_eq!(thief.error(), "invalid_grant");
    let ok = poll(&b, &k, &dc).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(claims(&ok.s("access_token"))["cnf"]["jkt"], k.thumbprint());
    // A bad proof at the device endpoint is refused, not ignored.
    let bad = b.proof(
        &k,
        "http://elsewhere.example/oauth/device_authorization",
        None,
    );
    let r = b
        .post_form(
            "/oauth/device_authorization",
            &[("client_id", "travel-bot"), ("scope", "travel:book")],
            &[("DPoP", bad)],
        )
        .await;
    assert_eq!(r.error(), "invalid_dpop_proof");
}

#[tokio::test]
async fn cutting_off_an_agent_cancels_an_approval_it_has_not_collected() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    let d = start_device(&b, "travel:book", Some(API)).await;
    b.cli_ok(&["approve", &d.s("user_code")]);
    // The owner regrets it before the agent polls.
    b.cli_ok(&["revoke", "--agent", "travel-bot"]);
    let r = poll(&b, &key(), &d.s("device_code")).await;
    assert_eq!(r.error(), "access_denied", "{}", r.body);
}
