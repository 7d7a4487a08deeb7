//! What the end-to-end test files share: the protected API they call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use protonpass_agent::net::axum_layer::{Agent, Protected};
use protonpass_agent::{Rejection, Verifier};

/// The audience every end-to-end grant names.
pub const AUD: &str = "http://api.test/travel";

/// A small API protected by the verifier: GET /flights needs travel:search,
/// POST /pay?amount=N needs payment:execute for N.
pub async fn start_api(verifier: Verifier) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = Protected::new(verifier, base.clone());
    async fn flights(agent: Agent) -> std::result::Result<String, Rejection> {
        agent.require("travel:search")?;
        Ok(format!("flights for {}", agent.agent))
    }
    async fn pay(
        State(_): State<Protected>,
        agent: Agent,
        axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    ) -> std::result::Result<String, Rejection> {
        let amount: rust_decimal::Decimal = q
            .get("amount")
            .and_then(|a| a.parse().ok())
            .unwrap_or_default();
        agent.require_amount("payment:execute", amount)?;
        Ok("paid".into())
    }
    let app = Router::new()
        .route("/travel/flights", get(flights))
        .route("/travel/pay", post(pay))
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}
