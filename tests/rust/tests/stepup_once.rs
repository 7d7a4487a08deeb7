//! A one-time token is spent on its first use at an API that verifies
//! locally (the SDK's verifier redeems it at the broker): used again, or
//! by several requests at once, it is accepted once and refused with
//! `401 invalid_token`; a verifier without resource credentials refuses
//! it; a broker that cannot be reached is a 503, never an acceptance.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::Router;
use axum::extract::Query;
use axum::routing::post;
use protonpass_agent::net::axum_layer::Agent;
use protonpass_agent::*;
use protonpass_e2e::Broker;

mod common;
use common::stepup::{Grant, approve, one_time_post, payment_ask, send_once};

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

/// A broker, the API (its verifier with resource credentials or none), a
/// session allowed to step up and a one-time token for 250 EUR that the
/// owner approved (through the CLI, from the prompt callback).
struct OneTime {
    broker: Broker,
    base: String,
    _home: tempfile::TempDir,
    s: Session,
    t: OneTimeToken,
    /// A booking of 250 EUR.
    url: String,
}

async fn one_time(registered: bool) -> OneTime {
    let broker = Broker::with_args(&["--device-interval", "0"]);
    let (base, aud) = api(&broker, registered).await;
    let home = tempfile::tempdir().unwrap();
    let grant = Grant {
        agent: "travel-bot",
        scopes: &["payment:execute:under-100"],
        extra: &[],
    };
    let (s, _) = common::stepup::session(&broker, &aud, home.path(), grant, true, approve).await;
    let ask = payment_ask(Some("Flight"));
    let t = s.step_up(&format!("{aud}/book"), &ask).await.unwrap();
    let url = format!("{base}/travel/book?amount=250");
    OneTime {
        broker,
        base,
        _home: home,
        s,
        t,
        url,
    }
}

fn invalid_token(www: &str) -> bool {
    www.starts_with("DPoP error=\"invalid_token\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_time_token_is_accepted_once_by_a_locally_verifying_api() {
    let o = one_time(true).await;
    assert_eq!(send_once(&o.s, &o.t, &o.url).await.0, 200);
    let (st, www) = send_once(&o.s, &o.t, &o.url).await;
    assert_eq!(st, 401, "{www}");
    assert!(invalid_token(&www), "{www}");
    assert!(
        www.contains("this one-time token was already used"),
        "{www}"
    );
    // The grant's own token is untouched by it.
    assert_eq!(own_token_books(&o.s, &o.base).await, 200);
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
    let o = one_time(true).await;
    // Eight requests, each with its own fresh proof, sent at once.
    let mut sent = Vec::new();
    for _ in 0..8 {
        let r = one_time_post(&o.s, &o.t, &o.url);
        sent.push(tokio::spawn(common::answer(r)));
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
    let o = one_time(false).await;
    let (st, www) = send_once(&o.s, &o.t, &o.url).await;
    assert_eq!(st, 401, "{www}");
    assert!(invalid_token(&www), "{www}");
    assert!(www.contains("needs its resource credentials"), "{www}");
    // Ordinary tokens are verified as before.
    assert_eq!(own_token_books(&o.s, &o.base).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_out_of_reach_during_redemption_is_a_503() {
    let mut o = one_time(true).await;
    o.broker.kill();
    let (st, www) = send_once(&o.s, &o.t, &o.url).await;
    assert_eq!(st, 503, "{www}");
}
