//! Spending against the owner's budget from a Rust API (axum): the verifier's
//! `spend` and `refund` through the real broker, and the 403 with its
//! challenge that the agent sees when the budget runs out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::post;
use protonpass_agent::net::axum_layer::{Agent, Protected};
use protonpass_agent::*;
use protonpass_e2e::Broker;

mod common;

async fn refund(
    State(p): State<Protected>,
    agent: Agent,
    Query(q): Query<HashMap<String, String>>,
) -> std::result::Result<String, Rejection> {
    let key = q.get("key").cloned().unwrap_or_default();
    let r = p.verifier.refund(&agent, &key).await?;
    Ok(r.remaining.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_spends_the_owners_budget_and_refuses_beyond_it() {
    let broker = Broker::start(&[]);
    let api = common::Api::bind().await;
    let aud = api.aud.clone();
    let verifier = common::registered_verifier(&broker, &aud).await;
    let routes = Router::new()
        .route("/travel/pay", post(common::pay))
        .route("/travel/refund", post(refund));
    let base = api.serve_routes(routes, verifier);

    let v = broker.create_grant_on(
        "travel-bot",
        "payment:execute:under-100",
        &aud,
        &["--budget", "payment:execute=150/EUR/day"],
    );
    let home = tempfile::tempdir().unwrap();
    let s = authenticate_with_proton(
        &["payment:execute:under-100"],
        &aud,
        AuthOptions {
            broker: Some(broker.url.clone()),
            agent_name: Some("travel-bot".into()),
            enrollment_code: Some(v["enrollment_code"].as_str().unwrap().to_owned()),
            store: Some(StoreKind::File(home.path().to_path_buf())),
            prompt: Some(Arc::new(|_: &DevicePrompt| panic!("no prompt expected"))),
            ..AuthOptions::default()
        },
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let call = |path: String| {
        let h = s.headers("POST", &path).unwrap();
        let http = http.clone();
        async move {
            let mut r = http.post(&path);
            for (k, v) in h {
                r = r.header(k, v);
            }
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            let www = r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, www, r.text().await.unwrap())
        }
    };

    let (st, _, body) = call(format!("{base}/travel/pay?amount=80&key=order-1")).await;
    assert_eq!((st, body.as_str()), (200, "70.00"));
    // A retry with the same key spends nothing more.
    let (st, _, body) = call(format!("{base}/travel/pay?amount=80&key=order-1")).await;
    assert_eq!((st, body.as_str()), (200, "70.00"));
    // Beyond what remains: 403 budget_exceeded, with what was needed.
    let (st, www, body) = call(format!("{base}/travel/pay?amount=80&key=order-2")).await;
    assert_eq!(st, 403, "{body}");
    let www = www.unwrap();
    assert!(www.starts_with("DPoP error=\"budget_exceeded\""), "{www}");
    assert!(www.contains("scope=\"payment:execute\""), "{www}");
    assert!(www.contains("amount=\"80\", currency=\"EUR\""), "{www}");
    assert!(body.contains("\"error\":\"budget_exceeded\""), "{body}");
    // Over the token's per-call limit (under-100): 403 insufficient_scope
    // from `require_amount`, naming the scope and the amount the call needs
    // (what a step-up asks for), before anything is spent.
    let (st, www, body) = call(format!("{base}/travel/pay?amount=120.50&key=order-x")).await;
    assert_eq!(st, 403, "{body}");
    let www = www.unwrap();
    assert!(
        www.starts_with("DPoP error=\"insufficient_scope\""),
        "{www}"
    );
    assert!(
        www.ends_with(", scope=\"payment:execute\", amount=\"120.50\""),
        "{www}"
    );
    let ask = StepUpAsk::from_challenge(
        &www,
        Some(&Payment {
            amount: "1".into(),
            currency: "EUR".into(),
            payee: "Air Example".into(),
        }),
        None,
    )
    .unwrap();
    assert_eq!(ask.authorization_details[0]["amount"], "120.50");
    // The refund gives it back; then the payment goes through.
    let (st, _, body) = call(format!("{base}/travel/refund?key=order-1")).await;
    assert_eq!((st, body.as_str()), (200, "150.00"));
    // Retried under the refunded key, the payment is refused (typed), never
    // answered as paid.
    let (st, _, body) = call(format!("{base}/travel/pay?amount=80&key=order-1")).await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("\"error\":\"invalid_request\""), "{body}");
    assert!(body.contains("was given back"), "{body}");
    let (st, _, body) = call(format!("{base}/travel/pay?amount=80.5&key=order-3")).await;
    assert_eq!((st, body.as_str()), (200, "69.50"));
    // Amounts are exact decimals: a sub-cent amount is the API's bad request.
    let (st, _, _) = call(format!("{base}/travel/pay?amount=0.001&key=order-4")).await;
    assert_eq!(st, 400);

    // Revoking the grant stops spending at once: this verifier does not follow
    // the feed, so the refusal is the broker's.
    broker.cli_ok(&["revoke", v["grant_id"].as_str().unwrap()]);
    let (st, www, _) = call(format!("{base}/travel/pay?amount=1&key=order-5")).await;
    assert_eq!(st, 401, "{www:?}");
}
