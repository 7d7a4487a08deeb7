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
use crate::model::Resource;
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

/// Authenticate the resource server and read the JSON body.
async fn read<T: DeserializeOwned>(
    b: &Broker,
    what: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Resource, T), Response> {
    let body =
        body.map_err(|e| error_response(&Error::InvalidRequest(format!("unreadable body: {e}"))))?;
    let rs = super::resource_caller(b, what, headers, &Params::default()).await?;
    let req = serde_json::from_slice(&body).map_err(|e| {
        error_response(&Error::InvalidRequest(format!(
            "the body is not a valid {what} request: {e}"
        )))
    })?;
    Ok((rs, req))
}

async fn spend(State(b): B, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let (rs, req) = match read::<SpendRequest>(&b, "spend", &headers, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match b.spend(&rs, req).await {
        Ok(r) => ok(r),
        Err(e) => refused(&e),
    }
}

async fn refund(State(b): B, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let (rs, req) = match read::<RefundRequest>(&b, "refund", &headers, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match b.refund(&rs, req).await {
        Ok(r) => ok(r),
        Err(e) => refused(&e),
    }
}
