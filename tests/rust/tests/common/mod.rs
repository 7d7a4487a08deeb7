//! What the end-to-end test files share: the protected API they call.
// Each test binary uses a part of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use protonpass_agent::net::axum_layer::{Agent, Protected};
use protonpass_agent::{
    AuthOptions, DevicePrompt, Rejection, Session, StoreKind, Verifier, VerifierOptions,
    authenticate_with_proton,
};
use protonpass_e2e::Broker;

pub mod stepup;

/// A test API bound to a loopback port before it serves, so that its URL,
/// and the audience under it that grants and verifiers name, is known first:
/// a session sends its token only to URLs under its audience.
pub struct Api {
    listener: tokio::net::TcpListener,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The audience: `{base}/travel`.
    pub aud: String,
}

impl Api {
    /// Bind the API's port.
    pub async fn bind() -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let aud = format!("{base}/travel");
        Api {
            listener,
            base,
            aud,
        }
    }

    /// Serve the API, protected by `verifier`; returns its base URL.
    pub async fn serve(self, verifier: Verifier) -> String {
        start_api_on(self.listener, self.base.clone(), verifier);
        self.base
    }

    /// Serve `routes`, protected by `verifier`; returns its base URL.
    pub fn serve_routes(self, routes: Router<Protected>, verifier: Verifier) -> String {
        let app = routes.with_state(Protected::new(verifier, self.base.clone()));
        tokio::spawn(async move { axum::serve(self.listener, app).await.unwrap() });
        self.base
    }
}

/// A verifier for `aud` that reports spends with the credentials of a resource
/// registered for it, and does not follow the revocation feed.
pub async fn registered_verifier(broker: &Broker, aud: &str) -> Verifier {
    let rs = broker.cli_ok(&["resource", "add", aud]);
    let mut o = VerifierOptions::new(broker.url.clone(), aud.to_owned());
    o.follow_feed = false;
    o.credentials = Some((
        rs["client_id"].as_str().unwrap().to_owned(),
        rs["client_secret"].as_str().unwrap().to_owned().into(),
    ));
    Verifier::new(o).await.unwrap()
}

/// A small API protected by the verifier: GET /travel/flights needs
/// travel:search, POST /travel/pay?amount=N needs payment:execute for N.
fn start_api_on(listener: tokio::net::TcpListener, base: String, verifier: Verifier) {
    let state = Protected::new(verifier, base);
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
}

/// A headless agent `ci-bot` enrolled for `travel:search` on `aud`, its
/// grant kept under `home`.
pub async fn enrolled(broker: &Broker, home: &std::path::Path, aud: &str) -> Session {
    let v = broker.create_grant_on("ci-bot", "travel:search", aud, &[]);
    let code = v["enrollment_code"].as_str().unwrap().to_owned();
    let opts = AuthOptions {
        broker: Some(broker.url.clone()),
        agent_name: Some("ci-bot".into()),
        enrollment_code: Some(code),
        store: Some(StoreKind::File(home.to_path_buf())),
        prompt: Some(Arc::new(|_: &DevicePrompt| panic!("no prompt expected"))),
        ..AuthOptions::default()
    };
    authenticate_with_proton(&["travel:search"], aud, opts)
        .await
        .unwrap()
}

/// POST /travel/pay?amount=A&key=K: the token's per-call limit, then the
/// owner's budget (which redeems a one-time token); answers what remains.
pub async fn pay(
    State(p): State<Protected>,
    agent: Agent,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> std::result::Result<String, Rejection> {
    let amount = q.get("amount").cloned().unwrap_or_default();
    agent.require_amount("payment:execute", amount.parse().unwrap_or_default())?;
    let key = q.get("key").cloned().unwrap_or_default();
    let r = p
        .verifier
        .spend(&agent, "payment:execute", &amount, "EUR", &key)
        .await?;
    Ok(r.remaining.unwrap_or_default())
}

/// (status, WWW-Authenticate) for a GET with these headers.
pub async fn get_with(http: &reqwest::Client, url: &str, h: &[(&str, String)]) -> (u16, String) {
    let mut r = http.get(url);
    for (k, v) in h {
        r = r.header(*k, v);
    }
    answer(r).await
}

/// Send `r`: (status, WWW-Authenticate, empty when there is none).
pub async fn answer(r: reqwest::RequestBuilder) -> (u16, String) {
    let resp = r.send().await.unwrap();
    let www = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (resp.status().as_u16(), www)
}
