//! Thin HTTP handlers: extract, call the service, map the error to a status,
//! an RFC 6749 JSON error body and the headers RFC 6750/9449 ask for.

mod agent;
pub(crate) mod budget;
pub(crate) mod clients;
mod discovery;
mod resource;

use agent::{backchannel, device_authorization, device_cancel, token};
pub use discovery::metrics_router;
use discovery::{healthz, jwks, metadata, metrics_local, readyz};
use resource::{feed, feed_stream, introspect, resource_register, revoke, usage};

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protonpass_agent::Error;
use protonpass_agent::wire::{BACKCHANNEL_PATH, ErrorBody, METADATA_PATH, oauth_status};

use crate::service::device_cancel::DEVICE_CANCEL_PATH;
use crate::service::{Broker, Params};

/// Largest request body, bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest total size of request headers, bytes.
pub const MAX_HEADERS: usize = 16 * 1024;

type B = State<Arc<Broker>>;

/// The router: the protocol endpoints plus `pages` (the owner's dashboard,
/// which the caller passes in so that this module does not depend on it).
pub fn router(b: Arc<Broker>, pages: Router<Arc<Broker>>) -> Router {
    Router::new()
        .route(METADATA_PATH, get(metadata))
        .route("/jwks.json", get(jwks))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_local))
        .merge(pages)
        .route("/oauth/device_authorization", post(device_authorization))
        .route(DEVICE_CANCEL_PATH, post(device_cancel))
        .route("/oauth/token", post(token))
        .route(BACKCHANNEL_PATH, post(backchannel))
        .route("/oauth/revoke", post(revoke))
        .route("/oauth/introspect", post(introspect))
        .route("/revocations", get(feed))
        .route("/revocations/stream", get(feed_stream))
        .route("/audit/usage", post(usage))
        .route("/resource/register", post(resource_register))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(b.clone(), rate_limit))
        .layer(middleware::from_fn_with_state(b.clone(), observe))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(b)
}

/// 200 with the JSON of the service's answer, or its RFC error.
pub(crate) fn answer<T: serde::Serialize>(r: Result<T, Error>) -> Response {
    match r {
        Ok(v) => json_response(StatusCode::OK, v),
        Err(e) => error_response(&e),
    }
}

/// The resource server calling (client credentials: HTTP Basic, or in the form
/// `p`, RFC 6749 section 2.3.1); a refusal is audited as a rejected `what`
/// and answered with its RFC error.
pub(crate) async fn resource_caller(
    b: &Broker,
    what: &str,
    headers: &HeaderMap,
    p: &Params,
) -> Result<crate::model::Resource, Response> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let rs = match crate::service::resource::client_creds(auth, p) {
        Ok(c) => b.authenticate_resource(&c).await,
        Err(e) => Err(e),
    };
    rs.map_err(|e| {
        b.audit_rejected("-", what, &e, serde_json::json!({}));
        error_response(&e)
    })
}

pub(crate) fn json_response(status: StatusCode, body: impl serde::Serialize) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The response for an error: status, JSON body, and authentication headers.
pub fn error_response(e: &Error) -> Response {
    if let Error::Server(m) = e {
        tracing::error!(error = %m, "server error");
    }
    let status = StatusCode::from_u16(oauth_status(e)).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = json_response(status, ErrorBody::from(e));
    if matches!(e, Error::InvalidClient(_)) {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"protonpass-broker\""),
        );
    }
    r
}

async fn observe(State(b): B, req: Request, next: Next) -> Response {
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let start = Instant::now();
    let resp = if size > MAX_HEADERS {
        let mut r = error_response(&Error::InvalidRequest(
            "request headers are too large".into(),
        ));
        *r.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
        r
    } else {
        next.run(req).await
    };
    b.metrics.request(
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

async fn method_not_allowed() -> Response {
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorBody {
            error: "invalid_request".into(),
            error_description: Some("this endpoint does not take this method".into()),
        },
    )
}

/// The page a browser gets for an unknown path: the owner mistyped an
/// address of the dashboard, so it says so and links back to it.
const NOT_FOUND_PAGE: &str = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Page not found \u{b7} Agent access</title><link rel=\"stylesheet\" href=\"/dashboard.css\"></head>\
<body><header class=\"top\"><a class=\"brand\" href=\"/\">Agent access</a></header><main>\
<h1>Page not found</h1><p class=\"notice error\">There is no page at this address. Check the link, or start again from the dashboard.</p>\
<p><a href=\"/\">Back to the start</a> \u{b7} <a href=\"/agents\">Agents</a> \u{b7} <a href=\"/pending\">Waiting for approval</a></p>\
</main></body></html>";

async fn not_found(headers: HeaderMap) -> Response {
    let browser = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if browser {
        let mut r = (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            NOT_FOUND_PAGE,
        )
            .into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        return r;
    }
    json_response(
        StatusCode::NOT_FOUND,
        ErrorBody {
            error: "not_found".into(),
            error_description: Some("no such endpoint".into()),
        },
    )
}

/// The client's address: the peer, or the X-Forwarded-For entry a trusted proxy added.
pub(crate) fn source(b: &Broker, peer: SocketAddr, headers: &HeaderMap) -> String {
    source_ip(b, peer, headers).to_string()
}

/// [`source`] as an address.
pub(crate) fn source_ip(b: &Broker, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    // A broker listening on `[::]` sees IPv4 peers as `::ffff:a.b.c.d`.
    let mut ip = peer.ip().to_canonical();
    if b.cfg.trusted_proxies.contains(&ip) {
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        // Walk back from the nearest hop; the first one we do not trust is the
        // client. A hop that is not a plain address stops the walk: what lies
        // beyond it was written by the client and proves nothing.
        for hop in hops.iter().rev() {
            let Ok(addr) = hop.parse::<IpAddr>().map(|a| a.to_canonical()) else {
                break;
            };
            ip = addr;
            if !b.cfg.trusted_proxies.contains(&addr) {
                break;
            }
        }
    }
    ip
}

/// Refuse, before anything else is done, a request from a source that is
/// over its rate limit: `429` with `Retry-After`.
async fn rate_limit(State(b): B, req: Request, next: Next) -> Response {
    if let (Some(limiter), Some(ConnectInfo(peer))) = (
        &b.limiter,
        req.extensions().get::<ConnectInfo<SocketAddr>>().copied(),
    ) && crate::ratelimit::limited(req.method().as_str(), req.uri().path())
        && let Err(wait) = limiter.check(source_ip(&b, peer, req.headers()))
    {
        b.metrics.error("rate_limited");
        let mut r = error_response(&Error::TemporarilyUnavailable(format!(
            "too many requests from this address: retry after {wait} s"
        )));
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    next.run(req).await
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

fn unreadable(e: BytesRejection) -> Response {
    let mut r = error_response(&Error::InvalidRequest(format!("unreadable body: {e}")));
    *r.status_mut() = e.status();
    r
}

/// A form-encoded request body, parsed; extracting it answers for the
/// handler an unreadable body (its status, `invalid_request`) or a refused
/// form (the error's RFC 6749 body).
struct FormBody(Params);

impl<S: Send + Sync> FromRequest<S> for FormBody {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let ct = content_type(req.headers()).map(str::to_owned);
        let body = Bytes::from_request(req, state).await.map_err(unreadable)?;
        Params::from_form(ct.as_deref(), &body)
            .map(FormBody)
            .map_err(|e| error_response(&e))
    }
}
