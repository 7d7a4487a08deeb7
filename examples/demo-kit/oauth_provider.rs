//! A small, real OAuth 2.0 authorization server on 127.0.0.1, standing in for
//! a mail provider: authorization code with PKCE S256 (RFC 7636) and `iss` in
//! the answer (RFC 9207), refresh tokens (rotated or not, or refused on
//! demand), revocation (RFC 7009), client authentication with
//! client_secret_basic, and the mail API it protects, which takes only its own
//! live access tokens. The "person" consents at once. It counts what it
//! receives, so that tests can assert what reached the provider.
//!
//! One file for its two users: the mail demo (`examples/mail-rust`) and the
//! broker's gateway tests (`broker/tests/e2e/oauth_provider.rs`), each
//! including it with `#[path]`; each uses part of it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use protonpass_agent::{OsRandom, Random, b64};
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// The owner's OAuth client at the provider.
pub const CLIENT_ID: &str = "mail-demo-client";
/// Its secret (given to the broker on standard input).
pub const CLIENT_SECRET: &str = "cs_oauth_client_secret_5e4d3c2b1a";

/// What the provider does and what it saw.
#[derive(Debug, Default)]
pub struct PState {
    issuer: String,
    /// code -> (PKCE challenge, redirect URI)
    codes: HashMap<String, (String, String)>,
    /// access token -> its refresh token
    access: HashMap<String, String>,
    /// refresh token -> live
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

type S = State<Arc<Mutex<PState>>>;

fn lock(s: &Mutex<PState>) -> MutexGuard<'_, PState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn random() -> String {
    let mut b = [0u8; 24];
    let _ = OsRandom.fill(&mut b);
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

async fn authorize(State(st): S, Query(q): Query<HashMap<String, String>>) -> Response {
    let field = |k: &str| q.get(k).cloned().unwrap_or_default();
    let ok = field("response_type") == "code"
        && field("client_id") == CLIENT_ID
        && field("code_challenge_method") == "S256"
        && q.contains_key("code_challenge")
        && q.contains_key("state");
    let Ok(mut to) = url::Url::parse(&field("redirect_uri")) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    if !ok {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    // The owner consents at once (no login page here).
    let code = random();
    let mut s = lock(&st);
    s.codes.insert(
        code.clone(),
        (field("code_challenge"), field("redirect_uri")),
    );
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &field("state"));
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
            let mut s = lock(&st);
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
                let mut s = lock(&st);
                s.refreshes += 1;
                s.refresh_delay_ms
            };
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            let mut s = lock(&st);
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
    let mut s = lock(&st);
    let t = f.get("token").cloned().unwrap_or_default();
    // Revoking a refresh token revokes the access tokens of its grant.
    s.refresh.insert(t.clone(), false);
    s.access.retain(|_, r| *r != t);
    s.access.remove(&t);
    s.revoked.push(t);
    StatusCode::OK.into_response()
}

fn bearer_ok(st: &Mutex<PState>, h: &HeaderMap) -> bool {
    let mut s = lock(st);
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
    /// Starts the provider on a free loopback port.
    pub async fn bind() -> Result<Provider, String> {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let port = l.local_addr().map_err(|e| e.to_string())?.port();
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
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Ok(Provider { port, st })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every token this provider gave out.
    pub fn all_tokens(&self) -> Vec<String> {
        self.with(|s| s.access.keys().chain(s.refresh.keys()).cloned().collect())
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut PState) -> T) -> T {
        f(&mut lock(&self.st))
    }

    /// The gateway upstream `name` for the mail API behind this provider, as
    /// a rules file: reading and sending mapped to two scopes, the provider's
    /// access token injected as a bearer; the broker is known to the provider
    /// as `issuer`.
    pub fn rules(&self, name: &str, issuer: &str) -> String {
        let u = self.url();
        format!(
            r#"name = "{name}"
base_url = "{u}/mail/v1"
audience = "https://mail.example/{name}"
description = "A mailbox behind an OAuth provider"
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
