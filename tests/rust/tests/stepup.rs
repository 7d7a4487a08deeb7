//! Step-up from a Rust agent against a Rust API (axum) and the real broker:
//! a payment above the token's per-call limit is refused with 403, the
//! session asks the owner (who approves through the CLI from the prompt
//! callback), and retries once with the one-time token, which pays once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::post;
use protonpass_agent::*;
use protonpass_e2e::Broker;

mod common;

async fn setup() -> (Broker, String, String) {
    let broker = Broker::with_args(&["--device-interval", "0"]);
    let api = common::Api::bind().await;
    let aud = api.aud.clone();
    let verifier = common::registered_verifier(&broker, &aud).await;
    let base = api.serve_routes(
        Router::new().route("/travel/pay", post(common::pay)),
        verifier,
    );
    (broker, base, aud)
}

async fn session(
    broker: &Broker,
    aud: &str,
    home: &std::path::Path,
    step_up: bool,
) -> (Session, Arc<Mutex<Vec<String>>>) {
    let v = broker.create_grant_on(
        "travel-bot",
        "payment:execute:under-100",
        aud,
        &["--budget", "payment:execute=300/EUR/day"],
    );
    // The prompt approves from the owner's side (the CLI), as a person
    // would on the dashboard.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (seen2, data) = (seen.clone(), broker.data.clone());
    let prompt: PromptFn = Arc::new(move |p: &DevicePrompt| {
        seen2.lock().unwrap().push(p.verification_uri.clone());
        let data = data.clone();
        std::thread::spawn(move || {
            let bin = protonpass_e2e::broker_bin();
            let run = |args: &[&str]| {
                let out = std::process::Command::new(&bin)
                    .args(["--data", data.to_str().unwrap(), "--json"])
                    .args(args)
                    .output()
                    .unwrap();
                serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
            };
            let list = run(&["stepup", "list"]);
            let id = list[0]["id"].as_str().unwrap().to_owned();
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
            allow_step_up: step_up,
            ..AuthOptions::default()
        },
    )
    .await
    .unwrap();
    (s, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_above_the_limit_is_approved_once_and_paid_once() {
    let (broker, base, aud) = setup().await;
    let home = tempfile::tempdir().unwrap();
    let (s, seen) = session(&broker, &aud, home.path(), true).await;
    let pay = Payment {
        amount: "250".into(),
        currency: "EUR".into(),
        payee: "Air Example".into(),
    };
    let url = format!("{base}/travel/pay?amount=250&key=trip-1");
    let r = s
        .send_with_step_up("POST", &url, &[], None, Some(&pay), Some("Flight to Paris"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "50.00");
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![format!("{}/stepup", broker.url)]
    );

    // A one-time token pays once: the same token for a second payment is refused.
    let www = "DPoP error=\"insufficient_scope\", scope=\"payment:execute\"";
    let ask = StepUpAsk::from_challenge(www, Some(&pay), Some("Hotel")).unwrap();
    let t = s.step_up(&url, &ask).await.unwrap();
    assert!(t.expires_in <= 300);
    assert_eq!(t.authorization_details[0]["amount"], "250.00");
    assert!(!format!("{t:?}").contains(t.expose()));
    let http = reqwest::Client::new();
    let call = |u: String| {
        let h = s.one_time_headers(&t, "POST", &u).unwrap();
        let http = http.clone();
        async move {
            let mut r = http.post(&u);
            for (k, v) in h {
                r = r.header(k, v);
            }
            let r = r.send().await.unwrap();
            let www = r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), www.unwrap_or_default())
        }
    };
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
    let (broker, base, aud) = setup().await;
    let home = tempfile::tempdir().unwrap();
    let (s, seen) = session(&broker, &aud, home.path(), false).await;
    let pay = Payment {
        amount: "250".into(),
        currency: "EUR".into(),
        payee: "Air Example".into(),
    };
    let url = format!("{base}/travel/pay?amount=250&key=trip-1");
    let r = s
        .send_with_step_up("POST", &url, &[], None, Some(&pay), None)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(seen.lock().unwrap().is_empty());
    let ask = StepUpAsk::from_challenge(
        "DPoP error=\"insufficient_scope\", scope=\"payment:execute\"",
        Some(&pay),
        None,
    )
    .unwrap();
    assert_eq!(
        s.step_up(&url, &ask).await.unwrap_err().code(),
        "invalid_request"
    );
}
