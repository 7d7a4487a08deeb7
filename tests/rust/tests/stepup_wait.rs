//! A Rust agent waiting for a step-up against the real broker: a scope
//! outside its grant, once approved, is accepted by an API requiring it; and
//! denial, revocation of the grant while waiting, and the end of the request's
//! lifetime each end `Session::step_up` with its typed error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use protonpass_agent::net::axum_layer::Agent;
use protonpass_agent::*;
use protonpass_e2e::Broker;

mod common;
use common::stepup::{Grant, OnPrompt, Prompts, approve, deny, payment_ask};

/// POST /travel/book needs `travel:book`, which the agents' grants lack.
async fn book(agent: Agent) -> std::result::Result<String, Rejection> {
    agent.require("travel:book")?;
    Ok(format!("booked for {}", agent.agent))
}

/// A broker (with `args`) and the API: (broker, API base, audience).
async fn setup(args: &[&str]) -> (Broker, String, String) {
    let mut all = vec!["--device-interval", "0"];
    all.extend_from_slice(args);
    let broker = Broker::with_args(&all);
    let api = common::Api::bind().await;
    let aud = api.aud.clone();
    let verifier = common::registered_verifier(&broker, &aud).await;
    let base = api.serve_routes(
        Router::new()
            .route("/travel/pay", post(common::pay))
            .route("/travel/book", post(book)),
        verifier,
    );
    (broker, base, aud)
}

/// A session of a fresh grant of `travel:search` and payments under 100 on
/// `aud`, allowed to step up; its prompt runs `on_prompt(data, grant id)` on
/// a thread, as the owner acting elsewhere would. Returns the session and
/// the prompts seen.
async fn session(
    broker: &Broker,
    aud: &str,
    home: &std::path::Path,
    on_prompt: OnPrompt,
) -> (Session, Prompts) {
    let grant = Grant {
        agent: "waiter",
        scopes: &["travel:search", "payment:execute:under-100"],
        extra: &[],
    };
    common::stepup::session(broker, aud, home, grant, true, on_prompt).await
}

fn revoke(data: &std::path::Path, gid: &str) {
    protonpass_e2e::cli_on(data, &["revoke", gid]);
}

fn nothing(_: &std::path::Path, _: &str) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_step_up_is_accepted_by_an_api_requiring_that_scope() {
    let (broker, base, aud) = setup(&[]).await;
    let home = tempfile::tempdir().unwrap();
    let (s, seen) = session(&broker, &aud, home.path(), approve).await;
    let url = format!("{base}/travel/book");
    // The grant's own token is refused for want of the scope.
    let r = s.send("POST", &url, &[], None, None).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let www = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        www.contains("insufficient_scope") && www.contains("travel:book"),
        "{www}"
    );
    // Asked as a scope (no payment), approved by the owner, retried once.
    let r = s
        .send_with_step_up("POST", &url, &[], None, None, Some("Book the hotel"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "booked for waiter");
    assert_eq!(seen.lock().unwrap().len(), 1);
    let recs = protonpass_e2e::audit_records(&broker);
    let token = recs
        .iter()
        .find(|r| r["event"] == "stepup_token")
        .unwrap_or_else(|| panic!("{recs:?}"));
    assert_eq!(token["detail"]["scope"], "travel:book");
    assert_eq!(
        token["detail"]["authorization_details"],
        serde_json::json!([{"type": "scope", "scope": "travel:book"}])
    );
    // The session's own token did not gain the scope.
    let r = s.send("POST", &url, &[], None, None).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denial_and_revocation_end_the_wait_with_typed_errors() {
    let (broker, base, aud) = setup(&[]).await;
    let url = format!("{base}/travel/pay");

    let home = tempfile::tempdir().unwrap();
    let (s, seen) = session(&broker, &aud, home.path(), deny).await;
    let e = s
        .step_up(&url, &payment_ask(Some("Flight")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AccessDenied), "{e:?}");
    assert_eq!(e.code(), "access_denied");
    let p = seen.lock().unwrap()[0].clone();
    assert_eq!(p.verification_uri, format!("{}/stepup", broker.url));
    assert_eq!(p.user_code, "");

    let home = tempfile::tempdir().unwrap();
    let (s, seen) = session(&broker, &aud, home.path(), revoke).await;
    let e = s
        .step_up(&url, &payment_ask(Some("Flight")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_grant", "{e:?}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_the_requests_lifetime_ends_the_wait_with_expired_token() {
    let (broker, base, aud) = setup(&["--stepup-ttl", "2"]).await;
    let home = tempfile::tempdir().unwrap();
    let (s, seen) = session(&broker, &aud, home.path(), nothing).await;
    let t = Instant::now();
    let e = s
        .step_up(&format!("{base}/travel/pay"), &payment_ask(Some("Flight")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "expired_token", "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert_eq!(seen.lock().unwrap()[0].expires_in, 2);
    // The request is over at the broker too: nothing waits for the owner.
    assert_eq!(broker.cli_ok(&["stepup", "list"]), serde_json::json!([]));
}
