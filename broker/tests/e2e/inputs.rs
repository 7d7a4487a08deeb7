//! Bad input: every client error is an RFC 6749 JSON error with the right status.

use protonpass_agent::{Clock, OsRandom, ProofInput, SystemClock, create_proof};

use protonpass_e2e::{Broker, PRE_AUTHORIZED_CODE, key};

#[tokio::test]
async fn nonce_and_replay() {
    let b = Broker::start(&[]);
    let k = key();
    let g = b.create_grant("a", "x:y", &[]);
    let code = g["enrollment_code"].as_str().unwrap().to_owned();
    let params = [
        ("grant_type", PRE_AUTHORIZED_CODE),
        ("pre-authorized_code", code.as_str()),
    ];
    // No nonce: use_dpop_nonce with a DPoP-Nonce header.
    let p = b.proof(&k, &b.token_url(), None);
    let r = b.post_form("/oauth/token", &params, &[("DPoP", p)]).await;
    assert_eq!((r.status, r.error()), (400, "use_dpop_nonce"));
    let nonce = r
        .headers
        .get("dpop-nonce")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    // A proof with the nonce, used twice: the second is a replay.
    let p = b.proof(&k, &b.token_url(), Some(&nonce));
    let ok = b
        .post_form("/oauth/token", &params, &[("DPoP", p.clone())])
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let replay = b.post_form("/oauth/token", &params, &[("DPoP", p)]).await;
    assert_eq!((replay.status, replay.error()), (400, "invalid_dpop_proof"));
    assert!(
        replay.body["error_description"]
            .as_str()
            .unwrap()
            .contains("replay")
    );
    // A forged nonce.
    let p = b.proof(&k, &b.token_url(), Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    assert_eq!(
        b.post_form("/oauth/token", &params, &[("DPoP", p)])
            .await
            .error(),
        "use_dpop_nonce"
    );
    // No proof at all.
    let none = b.post_form("/oauth/token", &params, &[]).await;
    assert_eq!((none.status, none.error()), (400, "invalid_dpop_proof"));
    // A proof with an old iat.
    let stale = create_proof(
        &k,
        &ProofInput {
            method: "POST",
            url: &b.token_url(),
            nonce: Some(&nonce),
            ..Default::default()
        },
        SystemClock.now() - 600,
        &OsRandom,
    )
    .unwrap();
    assert_eq!(
        b.post_form("/oauth/token", &params, &[("DPoP", stale)])
            .await
            .error(),
        "invalid_dpop_proof"
    );
}

#[tokio::test]
async fn the_metadata_gives_a_nonce_that_the_first_token_request_can_use() {
    let b = Broker::start(&[]);
    let k = key();
    let g = b.create_grant("a", "x:y", &[]);
    let code = g["enrollment_code"].as_str().unwrap().to_owned();
    let meta = b.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(meta.status, 200);
    let nonce = meta.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let params = [
        ("grant_type", PRE_AUTHORIZED_CODE),
        ("pre-authorized_code", code.as_str()),
    ];
    let p = b.proof(&k, &b.token_url(), Some(&nonce));
    let ok = b.post_form("/oauth/token", &params, &[("DPoP", p)]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[tokio::test]
async fn nonces_can_be_turned_off() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DPOP_NONCE", "false")]);
    let k = key();
    let g = b.create_grant("a", "x:y", &[]);
    let code = g["enrollment_code"].as_str().unwrap().to_owned();
    let p = b.proof(&k, &b.token_url(), None);
    let r = b
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", PRE_AUTHORIZED_CODE),
                ("pre-authorized_code", &code),
            ],
            &[("DPoP", p.clone())],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.headers.get("dpop-nonce").is_none());
    let meta = b.get("/.well-known/oauth-authorization-server").await;
    assert!(meta.headers.get("dpop-nonce").is_none());
    // Replay protection stays on.
    let again = b
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", PRE_AUTHORIZED_CODE),
                ("pre-authorized_code", &code),
            ],
            &[("DPoP", p)],
        )
        .await;
    assert_eq!(again.error(), "invalid_dpop_proof");
}

#[tokio::test]
async fn malformed_requests_get_json_errors() {
    let b = Broker::start(&[]);
    let k = key();
    let r = b
        .token(&k, &[("grant_type", "password"), ("username", "x")])
        .await;
    assert_eq!((r.status, r.error()), (400, "unsupported_grant_type"));
    let r = b
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("grant_type", "refresh_token"),
            ],
            &[],
        )
        .await;
    assert_eq!((r.status, r.error()), (400, "invalid_request"));
    let r = b.token(&k, &[]).await;
    assert_eq!(r.error(), "invalid_request");
    let r = b.refresh(&k, "rt_bogus").await;
    assert_eq!(r.error(), "invalid_grant");
    let r = b
        .token(
            &k,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
                ("scope", " "),
            ],
        )
        .await;
    assert_eq!(r.error(), "invalid_scope");
    let r = b
        .token(
            &k,
            &[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", "x"),
                ("subject_token_type", "urn:x"),
            ],
        )
        .await;
    assert_eq!(r.error(), "unsupported_token_type");
    // JSON instead of a form.
    let j = b
        .http
        .post(format!("{}/oauth/token", b.url))
        .json(&serde_json::json!({"grant_type": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(j.status(), 400);
    assert_eq!(
        j.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_request"
    );
    // Oversized body and headers. The server closes such connections, so each
    // request gets a client of its own (no pooled connection to trip over).
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let big = "a=".to_owned() + &"x".repeat(200_000);
    let r = fresh()
        .post(format!("{}/oauth/token", b.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.json::<serde_json::Value>().await.unwrap()["error"].is_string());
    let r = fresh()
        .get(format!("{}/healthz", b.url))
        .header("x-big", "y".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    // Device requests: bad scopes are invalid_scope, never dropped.
    let r = b
        .post_form(
            "/oauth/device_authorization",
            &[("client_id", "a"), ("scope", "Travel:Book")],
            &[],
        )
        .await;
    assert_eq!((r.status, r.error()), (400, "invalid_scope"));
    let r = b
        .post_form(
            "/oauth/device_authorization",
            &[("client_id", "a"), ("scope", "   ")],
            &[],
        )
        .await;
    assert_eq!(r.error(), "invalid_scope");
    let r = b
        .post_form("/oauth/device_authorization", &[("scope", "a:b")], &[])
        .await;
    assert_eq!(r.error(), "invalid_request");
    // Unknown paths and methods are JSON too.
    let r = b.get("/nope").await;
    assert_eq!(r.status, 404);
    assert!(r.body["error"].is_string());
    let r = b.get("/oauth/token").await;
    assert_eq!((r.status, r.error()), (405, "invalid_request"));
    let r = b.get("/revocations?after=abc").await;
    assert_eq!(r.error(), "invalid_request");
    let r = b.post_form("/oauth/revoke", &[("token", "x")], &[]).await;
    assert_eq!((r.status, r.error()), (401, "invalid_client"));
}
