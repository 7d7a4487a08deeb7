//! `POST /oauth/register`: RFC 7591 dynamic client registration of public
//! clients (MCP clients). Errors are RFC 7591 section 3.2.2 bodies
//! (`invalid_redirect_uri`, `invalid_client_metadata`). `serve` merges this
//! route into `http::router` (as it does the budget endpoints).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use protonpass_agent::wire::ErrorBody;

use crate::http::{error_response, json_response, source};
use crate::protocol::client_metadata::{MAX_BODY, REGISTRATION_PATH, parse_registration};
use crate::service::Broker;

/// The registration route (merged into the broker's router).
pub fn routes() -> Router<Arc<Broker>> {
    Router::new().route(REGISTRATION_PATH, post(register))
}

fn refused(code: &str, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        ErrorBody {
            error: code.to_owned(),
            error_description: Some(description.to_owned()),
        },
    )
}

async fn register(
    State(b): State<Arc<Broker>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return refused(
            "invalid_client_metadata",
            "send the client metadata as application/json",
        );
    }
    let body = match body {
        Ok(b) if b.len() <= MAX_BODY => b,
        _ => {
            return refused(
                "invalid_client_metadata",
                "the registration is unreadable or too large",
            );
        }
    };
    let metadata = match parse_registration(&body) {
        Ok(m) => m,
        Err(e) => {
            b.metrics.error(e.code());
            return refused(e.code(), e.description());
        }
    };
    match b
        .register_client(metadata, &source(&b, peer, &headers))
        .await
    {
        Ok(c) => {
            let mut v = serde_json::to_value(&c.metadata).unwrap_or_default();
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("client_id".into(), c.client_id.into());
                m.insert("client_id_issued_at".into(), c.created_at.into());
            }
            json_response(StatusCode::CREATED, v)
        }
        Err(e) => {
            let mut r = error_response(&e);
            if matches!(e, protonpass_agent::Error::TemporarilyUnavailable(_)) {
                *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            }
            r
        }
    }
}
