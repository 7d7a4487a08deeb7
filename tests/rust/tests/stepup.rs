//! Step-up from a Rust agent against a Rust API (axum) and the real broker:
//! a payment above the token's per-call limit is refused with 403, the
//! session asks the owner (who approves through the CLI from the prompt
//! callback), and retries once with the one-time token, which pays once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::Router;
use axum::routing::post;
use protonpass_agent::*;
use protonpass_e2e::Broker;

mod common;
use common::stepup::{Grant, Prompts, approve, one_time_post, payment, payment_ask};

/// The broker, the API, and a session of payments under 100 (300 EUR a day)
/// allowed to step up or not, whose prompt the owner approves from its side
/// (the CLI), as a person would on the dashboard: (broker, API base, the
/// grant's home, session, prompts seen).
async fn setup(step_up: bool) -> (Broker, String, tempfile::TempDir, Session, Prompts) {
    let broker = Broker::with_args(&["--device-interval", "0"]);
    let api = common::Api::bind().await;
    let aud = api.aud.clone();
    let verifier = common::registered_verifier(&broker, &aud).await;
    let base = api.serve_routes(
        Router::new().route("/travel/pay", post(common::pay)),
        verifier,
    );
    let home = tempfile::tempdir().unwrap();
    let grant = Grant {
        agent: "travel-bot",
        scopes: &["payment:execute:under-100"],
        extra: &["--budget", "payment:execute=300/EUR/day"],
    };
    let (s, seen) =
        common::stepup::session(&broker, &aud, home.path(), grant, step_up, approve).await;
    (broker, base, home, s, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_above_the_limit_is_approved_once_and_paid_once() {
    let (broker, base, _home, s, seen) = setup(true).await;
    let pay = payment();
    let url = format!("{base}/travel/pay?amount=250&key=trip-1");
    let r = s
        .send_with_step_up("POST", &url, &[], None, Some(&pay), Some("Flight to Paris"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "50.00");
    let uris: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.verification_uri.clone())
        .collect();
    assert_eq!(uris, vec![format!("{}/stepup", broker.url)]);

    // A one-time token pays once: the same token for a second payment is refused.
    let t = s.step_up(&url, &payment_ask(Some("Hotel"))).await.unwrap();
    assert!(t.expires_in <= 300);
    assert_eq!(t.authorization_details[0]["amount"], "250.00");
    assert!(!format!("{t:?}").contains(t.expose()));
    let call = |u: String| common::answer(one_time_post(&s, &t, &u));
    let (st, _) = call(format!("{base}/travel/pay?amount=250&key=trip-2")).await;
    assert_eq!(st, 200);
    // Spent by its first use: the verifier refuses it before the API runs.
    let (st, www) = call(format!("{base}/travel/pay?amount=250&key=trip-3")).await;
    assert_eq!(st, 401, "{www}");
    assert!(www.starts_with("DPoP error=\"invalid_token\""), "{www}");
    assert!(
        www.contains("this one-time token was already used"),
        "{www}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_allow_step_up_the_403_comes_back() {
    let (_broker, base, _home, s, seen) = setup(false).await;
    let url = format!("{base}/travel/pay?amount=250&key=trip-1");
    let r = s
        .send_with_step_up("POST", &url, &[], None, Some(&payment()), None)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(
        s.step_up(&url, &payment_ask(None))
            .await
            .unwrap_err()
            .code(),
        "invalid_request"
    );
}
