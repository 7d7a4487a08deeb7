//! The stand-in for a mail provider, on loopback: an OAuth 2.0 authorization
//! server (authorization code with PKCE S256, refresh tokens, RFC 7009
//! revocation, `iss` in the answer) and the mail API it protects, which takes
//! only its own live access tokens. The "person" consents at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use protonpass_agent::{OsRandom, Random, b64};
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// The owner's OAuth client at the provider.
pub const CLIENT_ID: &str = "mail-demo-client";
/// Its secret (given to the broker on standard input).
pub const CLIENT_SECRET: &str = "mail-demo-client-secret-1f2e3d";

#[derive(Default)]
struct St {
    issuer: String,
    /// code -> (PKCE challenge, redirect URI)
    codes: HashMap<String, (String, String)>,
    /// access token -> its refresh token
    access: HashMap<String, String>,
    /// live refresh tokens
    refresh: Vec<String>,
}

type S = State<Arc<Mutex<St>>>;

fn lock(s: &Mutex<St>) -> std::sync::MutexGuard<'_, St> {
    match s.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn random() -> String {
    let mut b = [0u8; 24];
    let _ = OsRandom.fill(&mut b);
    b64::encode(b)
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, axum::Json(json!({"error": code}))).into_response()
}

fn client_ok(h: &HeaderMap) -> bool {
    let want =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Basic {want}"))
}

async fn authorize(State(st): S, Query(q): Query<HashMap<String, String>>) -> Response {
    let field = |k: &str| q.get(k).cloned().unwrap_or_default();
    if field("client_id") != CLIENT_ID || field("code_challenge_method") != "S256" {
        return error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let Ok(mut to) = url::Url::parse(&field("redirect_uri")) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let code = random();
    let mut s = lock(&st);
    s.codes.insert(
        code.clone(),
        (field("code_challenge"), field("redirect_uri")),
    );
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &field("state"))
        .append_pair("iss", &s.issuer);
    Redirect::to(to.as_str()).into_response()
}

fn tokens(s: &mut St, refresh: String) -> Response {
    let access = random();
    s.access.insert(access.clone(), refresh.clone());
    axum::Json(
        json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600,
                      "refresh_token": refresh}),
    )
    .into_response()
}

async fn token(State(st): S, h: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    if !client_ok(&h) {
        return error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let field = |k: &str| f.get(k).cloned().unwrap_or_default();
    let mut s = lock(&st);
    match field("grant_type").as_str() {
        "authorization_code" => {
            let Some((challenge, redirect)) = s.codes.remove(&field("code")) else {
                return error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            let verifier = field("code_verifier");
            if b64::encode(Sha256::digest(verifier.as_bytes())) != challenge
                || field("redirect_uri") != redirect
            {
                return error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            let r = random();
            s.refresh.push(r.clone());
            tokens(&mut s, r)
        }
        "refresh_token" if s.refresh.contains(&field("refresh_token")) => {
            tokens(&mut s, field("refresh_token"))
        }
        _ => error(StatusCode::BAD_REQUEST, "invalid_grant"),
    }
}

async fn revoke(State(st): S, h: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    if !client_ok(&h) {
        return error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let t = f.get("token").cloned().unwrap_or_default();
    let mut s = lock(&st);
    s.refresh.retain(|r| *r != t);
    s.access.retain(|a, r| *r != t && *a != t);
    StatusCode::OK.into_response()
}

fn bearer_ok(st: &Mutex<St>, h: &HeaderMap) -> bool {
    let s = lock(st);
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| s.access.contains_key(t))
}

async fn messages(State(st): S, h: HeaderMap) -> Response {
    if !bearer_ok(&st, &h) {
        return error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    axum::Json(json!({"messages": [
        {"id": "m1", "from": "airline@example.com", "subject": "Your flight to Lisbon on 12 May"},
        {"id": "m2", "from": "friend@example.com", "subject": "Dinner on Friday?"}
    ]}))
    .into_response()
}

async fn send(State(st): S, h: HeaderMap) -> Response {
    if !bearer_ok(&st, &h) {
        return error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    axum::Json(json!({"sent": true})).into_response()
}

/// Start the provider; returns its base URL.
pub async fn start() -> Result<String, String> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let base = format!("http://{}", l.local_addr().map_err(|e| e.to_string())?);
    let st = Arc::new(Mutex::new(St {
        issuer: base.clone(),
        ..St::default()
    }));
    let app = axum::Router::new()
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .route("/mail/v1/messages", get(messages))
        .route("/mail/v1/send", post(send))
        .with_state(st);
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    Ok(base)
}
