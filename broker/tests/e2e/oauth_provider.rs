//! A small, real OAuth 2.0 authorization server for the tests, on 127.0.0.1:
//! authorization code with PKCE S256 (RFC 7636) and `iss` in the answer
//! (RFC 9207), refresh tokens (rotated or not, or refused on demand),
//! revocation (RFC 7009), client authentication with client_secret_basic, and
//! a stand-in mail API that accepts only its live access tokens. It counts
//! what it receives, so that tests can assert what reached the provider.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use protonpass_agent::{OsRandom, Random, b64};
use serde_json::json;
use sha2::{Digest as _, Sha256};

pub const CLIENT_ID: &str = "broker-test-client";
pub const CLIENT_SECRET: &str = "cs_oauth_client_secret_5e4d3c2b1a";

/// What the provider does and what it saw.
#[derive(Debug, Default)]
pub struct PState {
    issuer: String,
    codes: HashMap<String, (String, String)>,
    access: HashMap<String, String>,
    refresh: HashMap<String, bool>,
    /// Refresh requests received.
    pub refreshes: usize,
    /// Tokens revoked at `/revoke`.
    pub revoked: Vec<String>,
    /// Refresh tokens given out, in order.
    pub refresh_tokens: Vec<String>,
    /// Rotate the refresh token at each refresh (the old one then fails).
    pub rotate: bool,
    /// Refuse every refresh with `invalid_grant`.
    pub refuse: bool,
    /// `expires_in` of tokens from a code, and from a refresh.
    pub code_expires_in: i64,
    pub refresh_expires_in: i64,
    /// Milliseconds a refresh takes (widens the window for concurrency).
    pub refresh_delay_ms: u64,
    /// Mail API calls that were let in.
    pub mail_calls: usize,
    /// Leave `iss` out of the authorization answer.
    pub omit_iss: bool,
}

pub struct Provider {
    pub port: u16,
    pub st: Arc<Mutex<PState>>,
}

fn random() -> String {
    let mut b = [0u8; 24];
    OsRandom.fill(&mut b).unwrap();
    b64::encode(b)
}

fn oauth_error(status: StatusCode, code: &str) -> Response {
    (status, axum::Json(json!({"error": code}))).into_response()
}

fn client_ok(h: &HeaderMap) -> bool {
    use base64::Engine as _;
    let want =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Basic {want}"))
}

type S = State<Arc<Mutex<PState>>>;

async fn authorize(State(st): S, Query(q): Query<HashMap<String, String>>) -> Response {
    let ok = q.get("response_type").map(String::as_str) == Some("code")
        && q.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && q.get("code_challenge_method").map(String::as_str) == Some("S256")
        && q.contains_key("code_challenge")
        && q.contains_key("state")
        && q.contains_key("redirect_uri");
    if !ok {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    // The owner consents at once (no login page in a test).
    let code = random();
    let mut s = st.lock().unwrap();
    s.codes.insert(
        code.clone(),
        (q["code_challenge"].clone(), q["redirect_uri"].clone()),
    );
    let mut to = url::Url::parse(&q["redirect_uri"]).unwrap();
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &q["state"]);
    if !s.omit_iss {
        to.query_pairs_mut().append_pair("iss", &s.issuer);
    }
    Redirect::to(to.as_str()).into_response()
}

fn issue(s: &mut PState, expires_in: i64, refresh: Option<String>) -> Response {
    let access = random();
    let refresh = refresh.unwrap_or_else(|| {
        let r = random();
        s.refresh.insert(r.clone(), true);
        s.refresh_tokens.push(r.clone());
        r
    });
    s.access.insert(access.clone(), refresh.clone());
    axum::Json(json!({"access_token": access, "token_type": "Bearer",
                      "expires_in": expires_in, "refresh_token": refresh}))
    .into_response()
}

async fn token(State(st): S, h: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    if !client_ok(&h) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let mut s = st.lock().unwrap();
            let Some((challenge, redirect)) = f.get("code").and_then(|c| s.codes.remove(c)) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
            if b64::encode(Sha256::digest(verifier.as_bytes())) != challenge
                || f.get("redirect_uri") != Some(&redirect)
            {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            let e = s.code_expires_in;
            issue(&mut s, e, None)
        }
        Some("refresh_token") => {
            let delay = {
                let mut s = st.lock().unwrap();
                s.refreshes += 1;
                s.refresh_delay_ms
            };
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            let mut s = st.lock().unwrap();
            let old = f.get("refresh_token").cloned().unwrap_or_default();
            if s.refuse || s.refresh.get(&old) != Some(&true) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            let e = s.refresh_expires_in;
            if s.rotate {
                s.refresh.insert(old, false);
                issue(&mut s, e, None)
            } else {
                issue(&mut s, e, Some(old))
            }
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
}

async fn revoke(State(st): S, h: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    if !client_ok(&h) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let mut s = st.lock().unwrap();
    let t = f.get("token").cloned().unwrap_or_default();
    // Revoking a refresh token revokes the access tokens of its grant.
    s.refresh.insert(t.clone(), false);
    s.access.retain(|_, r| *r != t);
    s.access.remove(&t);
    s.revoked.push(t);
    StatusCode::OK.into_response()
}

fn bearer_ok(st: &Mutex<PState>, h: &HeaderMap) -> bool {
    let mut s = st.lock().unwrap();
    let live = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| s.access.contains_key(t));
    if live {
        s.mail_calls += 1;
    }
    live
}

async fn messages(State(st): S, h: HeaderMap) -> Response {
    if !bearer_ok(&st, &h) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    axum::Json(json!({"messages": [
        {"id": "m1", "from": "airline@example", "subject": "Your flight to Lisbon"},
        {"id": "m2", "from": "bank@example", "subject": "Statement"}
    ]}))
    .into_response()
}

async fn send(State(st): S, h: HeaderMap) -> Response {
    if !bearer_ok(&st, &h) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    axum::Json(json!({"sent": true})).into_response()
}

impl Provider {
    pub async fn start() -> Provider {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let st = Arc::new(Mutex::new(PState {
            issuer: format!("http://127.0.0.1:{port}"),
            code_expires_in: 3600,
            refresh_expires_in: 3600,
            ..PState::default()
        }));
        let app = axum::Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/revoke", post(revoke))
            .route("/mail/v1/messages", get(messages))
            .route("/mail/v1/messages/{id}", get(messages))
            .route("/mail/v1/send", post(send))
            .with_state(st.clone());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        Provider { port, st }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every token this provider gave out.
    pub fn all_tokens(&self) -> Vec<String> {
        self.with(|s| s.access.keys().chain(s.refresh.keys()).cloned().collect())
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut PState) -> T) -> T {
        f(&mut self.st.lock().unwrap())
    }

    /// A rules file for the stand-in mail API behind this provider.
    pub fn rules(&self, name: &str, issuer: &str) -> String {
        let u = self.url();
        format!(
            r#"name = "{name}"
base_url = "{u}/mail/v1"
audience = "https://mail.example/{name}"
description = "A stand-in mail API behind a local OAuth provider"
allow_private_network = true
suggested_scopes = ["mail:read"]
suggested_ttl = "1h"

[credential.oauth2]
authorization_url = "{u}/authorize"
token_url = "{u}/token"
revocation_url = "{u}/revoke"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
scopes = ["mail.read"]

[[rule]]
methods = ["GET"]
path = "/messages/**"
scope = "mail:read"
description = "Read mail"

[[rule]]
methods = ["POST"]
path = "/send"
scope = "mail:send"
description = "Send mail"

[[scope]]
name = "mail:read"
description = "Read all of your mail"
risk = "medium"

[[scope]]
name = "mail:send"
description = "Send mail in your name"
risk = "high"
"#
        )
    }
}
