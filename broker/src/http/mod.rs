//! Thin HTTP handlers: extract, call the service, map the error to a status,
//! an RFC 6749 JSON error body and the headers RFC 6750/9449 ask for.

pub(crate) mod budget;
pub(crate) mod clients;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use protonpass_agent::Error;
use protonpass_agent::dpop::PROOF_ALGS;
use protonpass_agent::wire::{
    BACKCHANNEL_PATH, ErrorBody, GRANT_TYPES, METADATA_PATH, ServerMetadata, UsageReport,
    oauth_status,
};
use serde::Deserialize;

use crate::protocol::token_request::{Refused, TokenRequest};
use crate::service::device_cancel::DEVICE_CANCEL_PATH;
use crate::service::resource::client_creds;
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

fn form(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Params, Box<Response>> {
    let body = body.map_err(|e| Box::new(unreadable(e)))?;
    Params::from_form(content_type(headers), &body).map_err(|e| Box::new(error_response(&e)))
}

async fn metadata(State(b): B) -> Response {
    let i = &b.issuer;
    let gateways = match crate::gateway::upstreams::published(&b.store, i).await {
        Ok(g) => g,
        Err(e) => return error_response(&e),
    };
    let m = ServerMetadata {
        issuer: i.clone(),
        token_endpoint: format!("{i}/oauth/token"),
        device_authorization_endpoint: format!("{i}/oauth/device_authorization"),
        revocation_endpoint: format!("{i}/oauth/revoke"),
        introspection_endpoint: format!("{i}/oauth/introspect"),
        jwks_uri: format!("{i}/jwks.json"),
        grant_types_supported: GRANT_TYPES.iter().map(|s| (*s).to_owned()).collect(),
        response_types_supported: vec![],
        token_endpoint_auth_methods_supported: vec!["none".into()],
        revocation_endpoint_auth_methods_supported: vec!["none".into()],
        introspection_endpoint_auth_methods_supported: vec![
            "client_secret_basic".into(),
            "client_secret_post".into(),
        ],
        dpop_signing_alg_values_supported: PROOF_ALGS.iter().map(|s| (*s).to_owned()).collect(),
        revocation_feed_endpoint: format!("{i}/revocations"),
        revocation_stream_endpoint: Some(format!("{i}/revocations/stream")),
        usage_endpoint: Some(format!("{i}/audit/usage")),
        verification_uri: Some(format!("{i}/device")),
        protonpass_gateways: gateways,
        resource_registration_endpoint: Some(format!("{i}/resource/register")),
        backchannel_authentication_endpoint: Some(format!("{i}{BACKCHANNEL_PATH}")),
        backchannel_token_delivery_modes_supported: vec!["poll".into()],
        authorization_details_types_supported: crate::protocol::authz_details::TYPES
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    };
    // Third-party clients (spec/15-authorization-code.md): the authorization
    // code grant with PKCE and dynamic client registration, as RFC 8414 and
    // the MCP authorization specification name them.
    let mut v = serde_json::to_value(m).unwrap_or_default();
    if let serde_json::Value::Object(o) = &mut v {
        if let Some(serde_json::Value::Array(g)) = o.get_mut("grant_types_supported") {
            g.insert(
                0,
                crate::protocol::token_request::GRANT_AUTHORIZATION_CODE.into(),
            );
        }
        o.insert(
            "response_types_supported".into(),
            serde_json::json!(["code"]),
        );
        o.insert(
            "authorization_endpoint".into(),
            format!("{i}/oauth/authorize").into(),
        );
        o.insert(
            "registration_endpoint".into(),
            format!("{i}{}", crate::protocol::client_metadata::REGISTRATION_PATH).into(),
        );
        o.insert(
            "code_challenge_methods_supported".into(),
            serde_json::json!(["S256"]),
        );
        o.insert(
            "authorization_response_iss_parameter_supported".into(),
            true.into(),
        );
        o.insert("client_id_metadata_document_supported".into(), true.into());
    }
    json_response(StatusCode::OK, v)
}

async fn jwks(State(b): B) -> Response {
    let mut r = Json(b.keyring().jwks()).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    r
}

/// Liveness: the process answers (restart it when this fails).
async fn healthz() -> Response {
    json_response(StatusCode::OK, serde_json::json!({"status": "ok"}))
}

/// Readiness: the database answers and the signing keys are loaded, and the
/// broker is not shutting down (send traffic elsewhere when this is 503).
async fn readyz(State(b): B) -> Response {
    let unready = |why: &str| {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unavailable", "why": why}),
        )
    };
    if b.draining.load(std::sync::atomic::Ordering::Acquire) {
        return unready("shutting down");
    }
    let ring = b.keyring();
    if !ring.keyset.contains(&ring.current.kid) {
        return unready("signing keys not loaded");
    }
    let probe = crate::store::read(&b.store, |tx| tx.revocation_head());
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(_)) => json_response(StatusCode::OK, serde_json::json!({"status": "ready"})),
        _ => unready("database unreachable"),
    }
}

/// `/metrics` on the main address: operators only. With `--metrics-addr` it
/// is served there and not here; otherwise only loopback clients (after the
/// trusted-proxy rule) get it. Request counts by route and status tell anyone
/// how busy every owner's agents are.
async fn metrics_local(
    State(b): B,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    // Through a trusted proxy, the client is outside whatever the forwarded
    // header says (a hop it cannot parse would leave the proxy's own loopback
    // address as the source): refused. Behind a proxy, use --metrics-addr.
    let proxied = b.cfg.trusted_proxies.contains(&peer.ip().to_canonical())
        && (headers.contains_key("x-forwarded-for") || headers.contains_key("forwarded"));
    if b.cfg.metrics_addr.is_some() || proxied || !source_ip(&b, peer, &headers).is_loopback() {
        return not_found(headers).await;
    }
    metrics(State(b)).await
}

/// The router of the separate metrics address (`--metrics-addr`).
pub fn metrics_router(b: Arc<Broker>) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(b)
}

async fn metrics(State(b): B) -> Response {
    let replay = b.proofs.replay_cache().len() as f64;
    let head = *b.feed.borrow() as f64;
    let mut extra = b.store.figures();
    extra.extend([
        (
            "protonpass_replay_cache_entries",
            "DPoP proofs remembered for replay detection.",
            replay,
        ),
        (
            "protonpass_revocation_feed_head",
            "Position of the newest revocation feed entry.",
            head,
        ),
    ]);
    let text = b.metrics.render(&extra);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Every `DPoP` header value (a request must carry exactly one; core checks).
fn dpop_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("dpop")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect()
}

async fn device_authorization(
    State(b): B,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let p = match form(&headers, body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match b
        .device_authorization(&p, &dpop_headers(&headers), &source(&b, peer, &headers))
        .await
    {
        Ok(r) => json_response(StatusCode::OK, r),
        Err(e) => error_response(&e),
    }
}

async fn device_cancel(
    State(b): B,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let p = match form(&headers, body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match b.device_cancel(&p, &dpop_headers(&headers)).await {
        Ok(()) => json_response(StatusCode::OK, serde_json::json!({})),
        Err(e) => error_response(&e),
    }
}

async fn token(
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
async fn backchannel(
    State(b): B,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let p = match form(&headers, body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
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

async fn revoke(State(b): B, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let p = match form(&headers, body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match b.revoke_request(&p).await {
        Ok(()) => json_response(StatusCode::OK, serde_json::json!({})),
        Err(e) => error_response(&e),
    }
}

async fn introspect(
    State(b): B,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let p = match form(&headers, body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let rs = match client_creds(auth, &p) {
        Ok(c) => b.authenticate_resource(&c).await,
        Err(e) => Err(e),
    };
    let rs = match rs {
        Ok(rs) => rs,
        Err(e) => {
            b.audit_rejected("-", "introspect", &e, serde_json::json!({}));
            return error_response(&e);
        }
    };
    match b.introspect(&rs, &p).await {
        Ok(r) => json_response(StatusCode::OK, r),
        Err(e) => error_response(&e),
    }
}

async fn usage(State(b): B, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return error_response(&Error::InvalidRequest(format!("unreadable body: {e}"))),
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let rs = match client_creds(auth, &Params::default()) {
        Ok(c) => b.authenticate_resource(&c).await,
        Err(e) => Err(e),
    };
    let rs = match rs {
        Ok(rs) => rs,
        Err(e) => {
            b.audit_rejected("-", "usage", &e, serde_json::json!({}));
            return error_response(&e);
        }
    };
    let report: UsageReport = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error_response(&Error::InvalidRequest(format!(
                "expected {{\"uses\": [...]}}: {e}"
            )));
        }
    };
    match b.usage(&rs, report).await {
        Ok(n) => json_response(StatusCode::OK, serde_json::json!({"accepted": n})),
        Err(e) => error_response(&e),
    }
}

/// `POST /resource/register`: a resource server registers itself with a
/// one-time invitation as bearer token (RFC 6750 section 2.1).
async fn resource_register(
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
struct FeedQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

async fn feed(
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

async fn feed_stream(
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
