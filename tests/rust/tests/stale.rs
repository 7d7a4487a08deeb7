//! The verifier when the broker's revocation feed goes quiet: within
//! `max_staleness` it goes on verifying tokens by itself; past it, `FailClosed`
//! answers 503 `temporarily_unavailable`, and `Introspect` asks the broker about
//! each token (active: served; revoked: 401; broker down: 503).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use common::{Api, enrolled};
use protonpass_agent::*;
use protonpass_e2e::{Broker, audit_records};

const STALENESS: Duration = Duration::from_secs(3);

/// A pass-through HTTP proxy in front of the broker that can cut the
/// revocation feed (`/revocations...` answers 503) and leave the rest working.
#[derive(Clone)]
struct Proxy {
    upstream: Arc<OnceLock<String>>,
    cut: Arc<AtomicBool>,
    http: reqwest::Client,
}

async fn forward(State(p): State<Proxy>, req: Request) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |x| x.as_str())
        .to_owned();
    if p.cut.load(Ordering::SeqCst) && path.starts_with("/revocations") {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let mut out = p
        .http
        .request(parts.method, format!("{}{path}", p.upstream.get().unwrap()));
    for (k, v) in &parts.headers {
        if !matches!(k.as_str(), "host" | "content-length" | "connection") {
            out = out.header(k, v);
        }
    }
    let Ok(resp) = out.body(body).send().await else {
        return axum::http::StatusCode::BAD_GATEWAY.into_response();
    };
    let mut back = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if !matches!(k.as_str(), "transfer-encoding" | "connection") {
            back = back.header(k, v);
        }
    }
    back.body(Body::from_stream(resp.bytes_stream())).unwrap()
}

/// A broker whose issuer is a [`Proxy`] in front of it.
async fn broker_behind_proxy() -> (Broker, Proxy) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let p = Proxy {
        upstream: Arc::default(),
        cut: Arc::default(),
        http: reqwest::Client::new(),
    };
    let app = axum::Router::new().fallback(forward).with_state(p.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let broker = Broker::with_args(&["--issuer", &issuer]);
    assert_eq!(broker.url, issuer);
    p.upstream.set(format!("http://{}", broker.bound)).unwrap();
    (broker, p)
}

async fn verifier(broker: &Broker, policy: StalePolicy, api: Api) -> String {
    let mut o = VerifierOptions::new(broker.url.clone(), api.aud.clone());
    o.max_staleness = STALENESS;
    o.stale_policy = policy;
    let v = Verifier::new(o).await.unwrap();
    format!("{}/travel/flights", api.serve(v).await)
}

/// One request with the session's current token and a fresh proof, never
/// retried: (status, the `error` of the body or of `WWW-Authenticate`).
async fn call(s: &Session, url: &str) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in s.headers("GET", url).unwrap() {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let www = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    let error = match body["error"].as_str() {
        Some(e) => e.to_owned(),
        None => www
            .split("error=\"")
            .nth(1)
            .and_then(|x| x.split('"').next())
            .unwrap_or_default()
            .to_owned(),
    };
    (status, error)
}

/// The grant id (`gid`) in the session's access token.
fn grant_of(s: &Session, url: &str) -> String {
    let h = s.headers("GET", url).unwrap();
    let jwt = h[0].1.trim_start_matches("DPoP ");
    let part = b64::decode(jwt.split('.').nth(1).unwrap()).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&part).unwrap();
    claims["gid"].as_str().unwrap().to_owned()
}

/// How many times the broker was asked to introspect a token.
fn introspections(broker: &Broker) -> usize {
    audit_records(broker)
        .iter()
        .filter(|r| r["event"] == "introspect")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_answers_503_once_the_feed_is_stale() {
    let mut broker = Broker::start(&[]);
    let home = tempfile::tempdir().unwrap();
    let api = Api::bind().await;
    let s = enrolled(&broker, home.path(), &api.aud).await;
    let url = verifier(&broker, StalePolicy::FailClosed, api).await;
    // A healthy feed that is quiet for longer than the bound is not stale.
    tokio::time::sleep(STALENESS * 2).await;
    assert_eq!(call(&s, &url).await.0, 200);
    broker.kill();
    // Within the bound the verifier answers by itself.
    assert_eq!(call(&s, &url).await.0, 200);
    tokio::time::sleep(STALENESS + Duration::from_millis(500)).await;
    assert_eq!(
        call(&s, &url).await,
        (503, "temporarily_unavailable".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspect_asks_the_broker_once_the_feed_is_stale() {
    let (mut broker, proxy) = broker_behind_proxy().await;
    let api = Api::bind().await;
    let rs = broker.cli_ok(&["resource", "add", &api.aud]);
    let policy = StalePolicy::Introspect {
        client_id: rs["client_id"].as_str().unwrap().to_owned(),
        client_secret: rs["client_secret"].as_str().unwrap().to_owned().into(),
    };
    let (home, home2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let s = enrolled(&broker, home.path(), &api.aud).await;
    let s2 = enrolled(&broker, home2.path(), &api.aud).await;
    let url = verifier(&broker, policy, api).await;
    assert_eq!(call(&s, &url).await.0, 200);
    assert_eq!(
        introspections(&broker),
        0,
        "a live feed needs no introspection"
    );

    // The feed is cut, the broker still answers: each token is introspected.
    proxy.cut.store(true, Ordering::SeqCst);
    tokio::time::sleep(STALENESS + Duration::from_millis(500)).await;
    assert_eq!(call(&s, &url).await.0, 200);
    assert_eq!(introspections(&broker), 1);
    // A revocation the verifier cannot hear of through the feed: the broker
    // says the token is not active.
    broker.cli_ok(&["revoke", &grant_of(&s, &url)]);
    assert_eq!(call(&s, &url).await, (401, "invalid_token".to_owned()));
    assert_eq!(call(&s2, &url).await.0, 200);

    // No feed and no broker: nothing can vouch for the token.
    broker.kill();
    assert_eq!(
        call(&s2, &url).await,
        (503, "temporarily_unavailable".to_owned())
    );
}
