//! A one-time token is spent on its first use at an API that verifies
//! locally (the SDK's verifier redeems it at the broker): used again, or
//! by several requests at once, it is accepted once and refused with
//! `401 invalid_token`; a verifier without resource credentials refuses
//! it; a broker that cannot be reached is a 503, never an acceptance.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::Router;
use axum::extract::Query;
use axum::routing::post;
use protonpass_agent::net::axum_layer::Agent;
use protonpass_agent::*;
use protonpass_e2e::Broker;

mod common;

/// POST /travel/book?amount=A: verified locally and checked against the
/// token's scopes, nothing spent at the broker.
async fn book(
    agent: Agent,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> std::result::Result<String, Rejection> {
    let amount = q.get("amount").cloned().unwrap_or_default();
    agent.require_amount("payment:execute", amount.parse().unwrap_or_default())?;
    Ok("booked".into())
}

/// An API at `/travel/book` with a verifier that has resource credentials
/// (`registered`) or none.
async fn api(broker: &Broker, registered: bool) -> (String, String) {
    let api = common::Api::bind().await;
    let aud = api.aud.clone();
    let verifier = if registered {
        common::registered_verifier(broker, &aud).await
    } else {
        let mut o = VerifierOptions::new(broker.url.clone(), aud.clone());
        o.follow_feed = false;
        Verifier::new(o).await.unwrap()
    };
    let base = api.serve_routes(Router::new().route("/travel/book", post(book)), verifier);
    (base, aud)
}

/// A session allowed to step up, and a one-time token for 250 EUR that the
/// owner approved (through the CLI, from the prompt callback).
async fn one_time(broker: &Broker, aud: &str, home: &std::path::Path) -> (Session, OneTimeToken) {
    let v = broker.create_grant_on("travel-bot", "payment:execute:under-100", aud, &[]);
    let data = broker.data.clone();
    let prompt: PromptFn = Arc::new(move |_: &DevicePrompt| {
        let data = data.clone();
        std::thread::spawn(move || {
            let run = |args: &[&str]| {
                let out = std::process::Command::new(protonpass_e2e::broker_bin())
                    .args(["--data", data.to_str().unwrap(), "--json"])
                    .args(args)
                    .output()
                    .unwrap();
                serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
            };
            let id = run(&["stepup", "list"])[0]["id"]
                .as_str()
                .unwrap()
                .to_owned();
            run(&["stepup", "approve", &id]);
        });
    });
    let s = authenticate_with_proton(
        &["payment:execute:under-100"],
        aud,
        AuthOptions {
            broker: Some(broker.url.clone()),
            agent_name: Some("travel-bot".into()),
            enrollment_code: Some(v["enrollment_code"].as_str().unwrap().to_owned()),
            store: Some(StoreKind::File(home.to_path_buf())),
            prompt: Some(prompt),
            allow_step_up: true,
            ..AuthOptions::default()
        },
    )
    .await
    .unwrap();
    let pay = Payment {
        amount: "250".into(),
        currency: "EUR".into(),
        payee: "Air Example".into(),
    };
    let www = "DPoP error=\"insufficient_scope\", scope=\"payment:execute\"";
    let ask = StepUpAsk::from_challenge(www, Some(&pay), Some("Flight")).unwrap();
    let t = s.step_up(&format!("{aud}/book"), &ask).await.unwrap();
    (s, t)
}

/// POST `url` with the one-time token and a fresh proof: (status, WWW-Authenticate).
async fn send_once(s: &Session, t: &OneTimeToken, url: &str) -> (u16, String) {
    let mut r = reqwest::Client::new().post(url);
    for (k, v) in s.one_time_headers(t, "POST", url).unwrap() {
        r = r.header(k, v);
    }
    let r = r.send().await.unwrap();
    let www = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.status().as_u16(), www.unwrap_or_default())
}

fn invalid_token(www: &str) -> bool {
    www.starts_with("DPoP error=\"invalid_token\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_time_token_is_accepted_once_by_a_locally_verifying_api() {
    let broker = Broker::with_args(&["--device-interval", "0"]);
    let (base, aud) = api(&broker, true).await;
    let home = tempfile::tempdir().unwrap();
    let (s, t) = one_time(&broker, &aud, home.path()).await;
    let url = format!("{base}/travel/book?amount=250");
    assert_eq!(send_once(&s, &t, &url).await.0, 200);
    let (st, www) = send_once(&s, &t, &url).await;
    assert_eq!(st, 401, "{www}");
    assert!(invalid_token(&www), "{www}");
    assert!(
        www.contains("this one-time token was already used"),
        "{www}"
    );
    // The grant's own token is untouched by it.
    assert_eq!(own_token_books(&s, &base).await, 200);
}

/// The status of a booking within the per-call limit with the grant's own
/// token (not the one-time token).
async fn own_token_books(s: &Session, base: &str) -> u16 {
    let url = format!("{base}/travel/book?amount=50");
    let r = s.send("POST", &url, &[], None, None).await.unwrap();
    r.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uses_of_one_one_time_token_succeed_once() {
    let broker = Broker::with_args(&["--device-interval", "0"]);
    let (base, aud) = api(&broker, true).await;
    let home = tempfile::tempdir().unwrap();
    let (s, t) = one_time(&broker, &aud, home.path()).await;
    let url = format!("{base}/travel/book?amount=250");
    // Eight requests, each with its own fresh proof, sent at once.
    let mut sent = Vec::new();
    for _ in 0..8 {
        let mut r = reqwest::Client::new().post(&url);
        for (k, v) in s.one_time_headers(&t, "POST", &url).unwrap() {
            r = r.header(k, v);
        }
        sent.push(tokio::spawn(async move {
            let r = r.send().await.unwrap();
            let www = r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), www.unwrap_or_default())
        }));
    }
    let mut ok = 0;
    for h in sent {
        match h.await.unwrap() {
            (200, _) => ok += 1,
            (401, www) if invalid_token(&www) => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_without_credentials_refuses_one_time_tokens() {
    let broker = Broker::with_args(&["--device-interval", "0"]);
    let (base, aud) = api(&broker, false).await;
    let home = tempfile::tempdir().unwrap();
    let (s, t) = one_time(&broker, &aud, home.path()).await;
    let url = format!("{base}/travel/book?amount=250");
    let (st, www) = send_once(&s, &t, &url).await;
    assert_eq!(st, 401, "{www}");
    assert!(invalid_token(&www), "{www}");
    assert!(www.contains("needs its resource credentials"), "{www}");
    // Ordinary tokens are verified as before.
    assert_eq!(own_token_books(&s, &base).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_out_of_reach_during_redemption_is_a_503() {
    let mut broker = Broker::with_args(&["--device-interval", "0"]);
    let (base, aud) = api(&broker, true).await;
    let home = tempfile::tempdir().unwrap();
    let (s, t) = one_time(&broker, &aud, home.path()).await;
    broker.kill();
    let url = format!("{base}/travel/book?amount=250");
    let (st, www) = send_once(&s, &t, &url).await;
    assert_eq!(st, 503, "{www}");
}
