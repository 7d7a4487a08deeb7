//! The device authorization grant (RFC 8628) with CLI approval.

use std::time::Duration;

use protonpass_agent::{Clock, OsRandom, ProofInput, SystemClock, create_proof};
use protonpass_e2e::{API, Broker, Reply, claims, key};

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

/// A device request by `travel-bot` for `scope` on `API`, signed by `k` with
/// the agent's `reason` in its proof; it must be accepted.
pub(crate) async fn ask_signed(
    b: &Broker,
    k: &protonpass_agent::AgentKey,
    scope: &str,
    reason: Option<&str>,
) -> Reply {
    let url = format!("{}/oauth/device_authorization", b.url);
    let proof = create_proof(
        k,
        &ProofInput {
            method: "POST",
            url: &url,
            reason,
            ..Default::default()
        },
        SystemClock.now(),
        &OsRandom,
    )
    .unwrap();
    let r = b
        .post_form(
            "/oauth/device_authorization",
            &[
                ("client_id", "travel-bot"),
                ("scope", scope),
                ("resource", API),
            ],
            &[("DPoP", proof)],
        )
        .await;
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

/// Well-formed user codes that no request holds.
const WRONG_CODES: [&str; 6] = [
    "BBBB-BBBB",
    "CCCC-CCCC",
    "DDDD-DDDD",
    "FFFF-FFFF",
    "GGGG-GGGG",
    "HHHH-HHHH",
];

#[tokio::test]
async fn wrong_user_codes_lock_the_web_form_but_not_the_command_line() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    let d = start_device(&b, "travel:book", Some(API)).await;
    // The owner at the broker's machine mistypes more than the web budget: the
    // right code still works there.
    for guess in WRONG_CODES {
        let (code, v) = b.cli(&["approve", guess]);
        assert_eq!(code, 1);
        assert_eq!(v["error"], "invalid_grant", "{v}");
    }
    b.cli_ok(&["approve", &d.s("user_code")]);

    // The web form: one live code, each wrong entry costs 1 of the budget of 5.
    let d = start_device(&b, "travel:book", Some(API)).await;
    let (mut w, csrf) = crate::dashboard::signed_in(&b).await;
    for guess in &WRONG_CODES[..5] {
        let p = w.lookup(&csrf, guess).await;
        assert!(p.body.contains("No agent is waiting"), "{}", p.body);
    }
    // Locked now, even for the right code.
    let p = w.lookup(&csrf, &d.s("user_code")).await;
    assert!(p.body.contains("Code entry is paused"), "{}", p.body);
    // The command line is not locked out by the web form's guesses.
    b.cli_ok(&["approve", &d.s("user_code")]);
}

/// A device request signed by `k`.
pub(crate) async fn signed(b: &Broker, k: &protonpass_agent::AgentKey) -> Reply {
    let url = format!("{}/oauth/device_authorization", b.url);
    let r = b
        .post_form(
            "/oauth/device_authorization",
            &[("client_id", "travel-bot"), ("scope", "travel:book")],
            &[("DPoP", b.proof(k, &url, None))],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

#[tokio::test]
async fn waiting_requests_are_limited_per_agent_key_not_in_total() {
    let b = Broker::start(&[
        ("PROTONPASS_BROKER_DEVICE_MAX_PENDING", "2"),
        ("PROTONPASS_BROKER_DEVICE_INTERVAL", "0"),
    ]);
    // Six abandoned agents, each with its own key: none blocks the next.
    let mut abandoned = Vec::new();
    for _ in 0..6 {
        let k = key();
        abandoned.push((signed(&b, &k).await, k));
    }
    // One agent that keeps asking: its oldest waiting request gives way.
    let k = key();
    let first = signed(&b, &k).await;
    let _second = signed(&b, &k).await;
    let third = signed(&b, &k).await;
    assert_eq!(
        poll(&b, &k, &first.s("device_code")).await.error(),
        "expired_token"
    );
    assert_eq!(
        poll(&b, &k, &third.s("device_code")).await.error(),
        "authorization_pending"
    );
    // The others still wait.
    let (r, k0) = &abandoned[0];
    assert_eq!(
        poll(&b, k0, &r.s("device_code")).await.error(),
        "authorization_pending"
    );
    // Unsigned requests are limited per client address the same way.
    let a = start_device(&b, "travel:book", None).await;
    start_device(&b, "travel:book", None).await;
    start_device(&b, "travel:book", None).await;
    assert_eq!(
        poll(&b, &key(), &a.s("device_code")).await.error(),
        "expired_token"
    );
    // More than 5 live codes: the web form checks no code (the guessing bound),
    // and says why; the command line still approves.
    let (mut w, csrf) = crate::dashboard::signed_in(&b).await;
    let uc = third.s("user_code");
    let p = w.lookup(&csrf, &uc).await;
    assert!(
        p.body.contains("agents are waiting for approval"),
        "{}",
        p.body
    );
    b.cli_ok(&["approve", &uc, "--audience", API]);
    assert_eq!(poll(&b, &k, &third.s("device_code")).await.status, 200);
}

#[tokio::test]
async fn a_proof_at_device_authorization_binds_the_request_to_that_key() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    let k = key();
    let d = ask_signed(&b, &k, "travel:book", None).await;
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

/// Withdraw `dc` with a proof by `k` (`None`: no proof).
async fn withdraw(b: &Broker, k: Option<&protonpass_agent::AgentKey>, dc: &str) -> Reply {
    let path = "/oauth/device_authorization/cancel";
    let url = format!("{}{path}", b.url);
    let proof = k.map(|k| ("DPoP", b.proof(k, &url, None)));
    b.post_form(
        path,
        &[("device_code", dc), ("client_id", "travel-bot")],
        proof.as_slice(),
    )
    .await
}

#[tokio::test]
async fn only_the_requesting_key_withdraws_a_device_request() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    let k = key();
    let d = signed(&b, &k).await;
    let dc = d.s("device_code");
    // Neither a caller without a proof nor another key may withdraw it.
    assert_eq!(withdraw(&b, None, &dc).await.error(), "invalid_request");
    assert_eq!(
        withdraw(&b, Some(&key()), &dc).await.error(),
        "invalid_grant"
    );
    assert_eq!(
        withdraw(&b, Some(&k), "dc_unknown").await.error(),
        "invalid_grant"
    );
    assert_eq!(b.cli_ok(&["pending"]).as_array().map(Vec::len), Some(1));
    let r = withdraw(&b, Some(&k), &dc).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The owner no longer sees it, and it can no longer be approved.
    assert_eq!(b.cli_ok(&["pending"]).as_array().map(Vec::len), Some(0));
    let (code, _) = b.cli(&["approve", &d.s("user_code"), "--audience", API]);
    assert_ne!(code, 0);
    assert_ne!(poll(&b, &k, &dc).await.status, 200);
    let events: Vec<_> = protonpass_e2e::audit_records(&b)
        .into_iter()
        .filter(|r| r["event"] == "device_cancelled")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");

    // Withdrawn after the grant was issued (the agent dropped the answer):
    // the grant is revoked.
    let d = signed(&b, &k).await;
    let dc = d.s("device_code");
    b.cli_ok(&["approve", &d.s("user_code"), "--audience", API]);
    let t = poll(&b, &k, &dc).await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(withdraw(&b, Some(&k), &dc).await.status, 200);
    let r = b
        .exchange(
            &k,
            &t.s("refresh_token"),
            "urn:ietf:params:oauth:token-type:refresh_token",
            &[("scope", "travel:book"), ("audience", API)],
        )
        .await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.body);
}
