//! What anyone may read: the RFC 8414 metadata, the JWKS, health and
//! readiness, and the Prometheus figures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use protonpass_agent::dpop::PROOF_ALGS;
use protonpass_agent::wire::{BACKCHANNEL_PATH, GRANT_TYPES, ServerMetadata};

use crate::service::Broker;

use super::{B, error_response, json_response, not_found, source_ip};

pub(super) async fn metadata(State(b): B) -> Response {
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
    // Cacheable for a minute, as the JWKS: an agent making session after
    // session reads it from its cache instead of asking each time. A gateway
    // added since is still found (the SDKs fetch again when their copy does
    // not list the audience they want).
    let mut r = json_response(StatusCode::OK, v);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    // A DPoP nonce (RFC 9449 section 8.2: the server may give one in any
    // response): an agent reads this metadata just before its first token
    // request, which then carries the nonce instead of being refused with
    // `use_dpop_nonce` and sent again. A nonce is no secret (any token request
    // gets one) and is checked as any other; it stays valid for a minute or
    // two, as long as this response may be cached.
    if b.cfg.dpop_nonce
        && let Ok(n) = HeaderValue::from_str(&b.nonces.issue(b.clock.now()))
    {
        r.headers_mut().insert("dpop-nonce", n);
    }
    r
}

pub(super) async fn jwks(State(b): B) -> Response {
    let mut r = Json(b.keyring().jwks()).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    r
}

/// Liveness: the process answers (restart it when this fails).
pub(super) async fn healthz() -> Response {
    json_response(StatusCode::OK, serde_json::json!({"status": "ok"}))
}

/// Readiness: the database answers and the signing keys are loaded, and the
/// broker is not shutting down (send traffic elsewhere when this is 503).
pub(super) async fn readyz(State(b): B) -> Response {
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
pub(super) async fn metrics_local(
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

pub(super) async fn metrics(State(b): B) -> Response {
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
