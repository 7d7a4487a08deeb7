//! The resource server's endpoints: revocation, introspection, usage
//! reports, self-registration, and the revocation feed (polled and streamed).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use protonpass_agent::Error;
use protonpass_agent::wire::UsageReport;
use serde::Deserialize;

use crate::service::{Broker, Params};

use super::{B, FormBody, answer, error_response, json_response, resource_caller};

pub(super) async fn revoke(State(b): B, FormBody(p): FormBody) -> Response {
    answer(b.revoke_request(&p).await.map(|()| serde_json::json!({})))
}

pub(super) async fn introspect(State(b): B, headers: HeaderMap, FormBody(p): FormBody) -> Response {
    match resource_caller(&b, "introspect", &headers, &p).await {
        Ok(rs) => answer(b.introspect(&rs, &p).await),
        Err(r) => r,
    }
}

pub(super) async fn usage(
    State(b): B,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return error_response(&Error::InvalidRequest(format!("unreadable body: {e}"))),
    };
    let rs = match resource_caller(&b, "usage", &headers, &Params::default()).await {
        Ok(rs) => rs,
        Err(r) => return r,
    };
    let report: UsageReport = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error_response(&Error::InvalidRequest(format!(
                "expected {{\"uses\": [...]}}: {e}"
            )));
        }
    };
    answer(
        b.usage(&rs, report)
            .await
            .map(|n| serde_json::json!({"accepted": n})),
    )
}

/// `POST /resource/register`: a resource server registers itself with a
/// one-time invitation as bearer token (RFC 6750 section 2.1).
pub(super) async fn resource_register(
    State(b): B,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    let too_large = matches!(&body, Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE);
    let r = match (token, body) {
        (None, _) => Err(Error::InvalidToken {
            reason: protonpass_agent::Reason::MissingClaim,
            message: "send the registration token as Authorization: Bearer".into(),
        }),
        (_, Err(e)) => Err(Error::InvalidRequest(format!("unreadable body: {e}"))),
        (Some(t), Ok(body)) => {
            match serde_json::from_slice::<crate::service::register::RegisterRequest>(&body) {
                Ok(req) => b.resource_register(t, req).await,
                Err(e) => Err(Error::InvalidRequest(format!(
                    "expected {{\"resource\": URL, \"scopes\": [{{\"name\", \"description\", \"risk\"}}], \"shared\": false}}: {e}"
                ))),
            }
        }
    };
    match r {
        Ok(reg) => json_response(StatusCode::OK, reg),
        Err(e) => {
            b.metrics.error(e.code());
            b.audit_rejected("-", "resource_register", &e, serde_json::json!({}));
            let mut resp = error_response(&e);
            if too_large {
                *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            }
            if let Error::InvalidToken { .. } = e {
                // No error code when no token came (RFC 6750 section 3.1).
                let v = match token {
                    None => HeaderValue::from_static("Bearer realm=\"protonpass-broker\""),
                    Some(_) => HeaderValue::from_static(
                        "Bearer error=\"invalid_token\", error_description=\"unknown, spent or expired registration token\"",
                    ),
                };
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            resp
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct FeedQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

pub(super) async fn feed(
    State(b): B,
    q: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error_response(&Error::InvalidRequest(
            "after and limit are integers".into(),
        ));
    };
    match b
        .feed_page(q.after.unwrap_or(0).max(0), q.limit.unwrap_or(500))
        .await
    {
        Ok(page) => json_response(StatusCode::OK, page),
        Err(e) => error_response(&e),
    }
}

pub(super) async fn feed_stream(
    State(b): B,
    headers: HeaderMap,
    q: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error_response(&Error::InvalidRequest("after is an integer".into()));
    };
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let after = last_id.or(q.after).unwrap_or(0).max(0);
    Sse::new(revocation_events(b, after))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn revocation_events(b: Arc<Broker>, after: i64) -> impl Stream<Item = Result<Event, Infallible>> {
    let rx = b.feed.subscribe();
    let state = (b, after, rx, VecDeque::new());
    futures_util::stream::unfold(state, |(b, mut after, mut rx, mut buf)| async move {
        loop {
            if let Some(ev) = buf.pop_front() {
                let e: protonpass_agent::wire::RevocationEvent = ev;
                let event = Event::default()
                    .id(e.seq.to_string())
                    .event("revocation")
                    .json_data(&e)
                    .unwrap_or_default();
                return Some((Ok(event), (b, after, rx, buf)));
            }
            if let Ok(page) = b.feed_page(after, 500).await
                && !page.revocations.is_empty()
            {
                after = page.next;
                buf.extend(page.revocations);
                continue;
            }
            // Wake on a new position, or every few seconds to drop expired entries.
            if let Ok(Err(_)) = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await {
                return None;
            }
        }
    })
}
