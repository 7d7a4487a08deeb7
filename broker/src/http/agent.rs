//! The agent's endpoints: device authorization and its withdrawal, the token
//! endpoint (every grant type) and the CIBA backchannel of step-ups.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use protonpass_agent::Error;

use crate::protocol::token_request::{Refused, TokenRequest};

use super::{B, FormBody, answer, content_type, error_response, json_response, source, unreadable};

/// Every `DPoP` header value (a request must carry exactly one; core checks).
fn dpop_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("dpop")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect()
}

pub(super) async fn device_authorization(
    State(b): B,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    FormBody(p): FormBody,
) -> Response {
    answer(
        b.device_authorization(&p, &dpop_headers(&headers), &source(&b, peer, &headers))
            .await,
    )
}

pub(super) async fn device_cancel(
    State(b): B,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    FormBody(p): FormBody,
) -> Response {
    answer(
        b.device_cancel(&p, &dpop_headers(&headers), &source(&b, peer, &headers))
            .await
            .map(|()| serde_json::json!({})),
    )
}

pub(super) async fn token(
    State(b): B,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = body.map(|body| TokenRequest::parse(content_type(&headers), &body));
    let ciba = matches!(parsed, Ok(Ok(TokenRequest::Ciba { .. })));
    let mut r = match parsed {
        Err(e) => unreadable(e),
        Ok(Err(Refused::Form(e))) => error_response(&e),
        Ok(req) => {
            match b
                .token(req, &dpop_headers(&headers), &source(&b, peer, &headers))
                .await
            {
                Ok(t) if ciba => {
                    let mut r = json_response(StatusCode::OK, with_authorization_details(t));
                    r.headers_mut()
                        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
                    r
                }
                Ok(t) => {
                    let mut r = json_response(StatusCode::OK, t);
                    r.headers_mut()
                        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
                    r
                }
                Err(e) => error_response(&e),
            }
        }
    };
    if b.cfg.dpop_nonce
        && let Ok(v) = HeaderValue::from_str(&b.nonces.issue(b.clock.now()))
    {
        r.headers_mut().insert("dpop-nonce", v);
    }
    r
}

/// The `WWW-Authenticate` challenge of a refused step-up request, which is
/// authenticated like a protected resource (RFC 6750 section 3, RFC 9449
/// section 7.1): no error code when no credentials came (RFC 6750 section
/// 3.1), else the error. The endpoint needs no particular scope (any access
/// token of the grant may ask), so the challenge names none.
fn backchannel_challenge(e: &Error, had_credentials: bool) -> Option<&'static str> {
    match e {
        Error::InvalidToken { .. } if !had_credentials => Some("DPoP algs=\"EdDSA ES256\""),
        Error::InvalidToken { .. } => Some("DPoP error=\"invalid_token\", algs=\"EdDSA ES256\""),
        Error::InvalidDpopProof { .. } => {
            Some("DPoP error=\"invalid_dpop_proof\", algs=\"EdDSA ES256\"")
        }
        Error::UseDpopNonce => Some("DPoP error=\"use_dpop_nonce\", algs=\"EdDSA ES256\""),
        _ => None,
    }
}

/// `POST /oauth/bc-authorize`: a step-up request (OpenID CIBA, poll mode),
/// authenticated by the agent's access token and its DPoP proof.
pub(super) async fn backchannel(
    State(b): B,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    FormBody(p): FormBody,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let mut r = match b
        .backchannel(
            &p,
            auth,
            &dpop_headers(&headers),
            &source(&b, peer, &headers),
        )
        .await
    {
        Ok(mut r) => {
            if let Some((owner, view)) = r.pending.take() {
                crate::webhook::notify_pending(b.clone(), owner, view);
            }
            json_response(StatusCode::OK, r)
        }
        Err(e) => {
            let mut r = error_response(&e);
            if let Some(v) = backchannel_challenge(&e, auth.is_some()) {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
            }
            r
        }
    };
    if b.cfg.dpop_nonce
        && let Ok(v) = HeaderValue::from_str(&b.nonces.issue(b.clock.now()))
    {
        r.headers_mut().insert("dpop-nonce", v);
    }
    r
}

/// A step-up's token response with the `authorization_details` its token
/// carries, as RFC 9396 section 7 returns them.
fn with_authorization_details(t: protonpass_agent::wire::TokenResponse) -> serde_json::Value {
    let details = t
        .access_token
        .split('.')
        .nth(1)
        .and_then(protonpass_agent::b64::decode)
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
        .and_then(|mut c| {
            c.get_mut("authorization_details")
                .map(serde_json::Value::take)
        });
    let mut v = serde_json::to_value(&t).unwrap_or_default();
    if let (Some(d), serde_json::Value::Object(m)) = (details, &mut v) {
        m.insert("authorization_details".into(), d);
    }
    v
}
