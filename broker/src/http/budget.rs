//! `POST /budget/spend` and `POST /budget/refund` (`spec/12-budgets.md`):
//! JSON bodies, the resource server's client authentication as for
//! introspection. A refusal of the budget is `403 budget_exceeded`. `serve`
//! merges these routes into `http::router` (as it does the dashboard's).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::post};
use protonpass_agent::Error;
use protonpass_agent::budget::{RefundRequest, SpendRequest};
use serde::de::DeserializeOwned;

use crate::http::error_response;
use crate::service::resource::{ClientCreds, client_creds};
use crate::service::{Broker, Params};

type B = State<Arc<Broker>>;

/// The budget endpoints, merged into the main router.
pub fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/budget/spend", post(spend))
        .route("/budget/refund", post(refund))
}

fn ok(body: impl serde::Serialize) -> Response {
    let mut r = (StatusCode::OK, Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn refused(e: &Error) -> Response {
    let mut r = error_response(e);
    if let Error::BudgetExceeded(_) = e
        && let Ok(v) = HeaderValue::from_str(&format!(
            "Basic realm=\"protonpass-broker\", error=\"{}\"",
            e.code()
        ))
    {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// The resource server's credentials (checked by the service, in the
/// spend's own transaction) and the JSON body.
async fn read<T: DeserializeOwned>(
    b: &Broker,
    what: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(ClientCreds, T), Response> {
    let body =
        body.map_err(|e| error_response(&Error::InvalidRequest(format!("unreadable body: {e}"))))?;
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let creds = client_creds(auth, &Params::default()).map_err(|e| {
        b.audit_rejected("-", what, &e, serde_json::json!({}));
        error_response(&e)
    })?;
    match serde_json::from_slice(&body) {
        Ok(req) => Ok((creds, req)),
        Err(e) => {
            // Credentials that fail are what the caller hears first.
            if let Err(e) = b.authenticate_resource(&creds).await {
                b.audit_rejected("-", what, &e, serde_json::json!({}));
                return Err(error_response(&e));
            }
            Err(error_response(&Error::InvalidRequest(format!(
                "the body is not a valid {what} request: {e}"
            ))))
        }
    }
}

async fn spend(State(b): B, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let (c, req) = match read::<SpendRequest>(&b, "spend", &headers, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match b.spend(c, req).await {
        Ok(r) => ok(r),
        Err(e) => refused(&e),
    }
}

async fn refund(State(b): B, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let (c, req) = match read::<RefundRequest>(&b, "refund", &headers, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match b.refund(c, req).await {
        Ok(r) => ok(r),
        Err(e) => refused(&e),
    }
}
