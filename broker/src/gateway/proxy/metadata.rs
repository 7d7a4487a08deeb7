//! RFC 9728 protected-resource metadata for upstreams served at exactly their
//! gateway URL, and the `resource_metadata` of their 401 challenges.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::gateway::rules::{self, Upstream};
use crate::service::Broker;
use crate::store::{self};

use super::{Gateway, json_error};

/// The gateway URL of upstream `name`, when its tokens are for exactly that
/// URL: only then can a client discover it (RFC 9728 section 3.3 wants the
/// metadata's `resource` to be the URL the client used, and the token's
/// audience is what the client asks for).
pub(super) fn discoverable(b: &Broker, name: &str, up: &Upstream) -> Option<String> {
    let url = format!("{}/gateway/{name}", b.issuer);
    (up.audience.trim_end_matches('/') == url).then_some(url)
}

/// Add `resource_metadata` to a 401's challenge (RFC 9728 section 5.1).
pub(super) fn announce_metadata(r: &mut Response, b: &Broker, name: &str, up: &Upstream) {
    let Some(url) = discoverable(b, name, up) else {
        return;
    };
    let Ok(meta) = protonpass_agent::resource_metadata::metadata_url(&url) else {
        return;
    };
    let with = r
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(|c| protonpass_agent::resource_metadata::with_resource_metadata(c, &meta))
        .and_then(|v| HeaderValue::from_str(&v).ok());
    if let Some(v) = with {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
}

/// `GET /.well-known/oauth-protected-resource/gateway/{name}`: the upstream's
/// protected-resource metadata, when its audience is its gateway URL; its
/// `suggested_scopes` are the `scopes_supported`.
pub(super) async fn resource_metadata(
    State(gw): State<Arc<Gateway>>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    let not_found = || {
        json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no discoverable upstream",
        )
    };
    if !rules::valid_name(&name) {
        return not_found();
    }
    let n = name.clone();
    let rec = match store::read(&gw.b.store, move |tx| tx.upstream_get(&n)).await {
        Ok(Some(rec)) => rec,
        Ok(None) => return not_found(),
        Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, e.code(), "storage failure"),
    };
    let Ok(up) = gw.rules_of(&rec) else {
        return not_found();
    };
    let Some(url) = discoverable(&gw.b, &name, &up) else {
        return not_found();
    };
    let scopes: Vec<String> = up
        .suggested_scopes
        .iter()
        .filter(|s| protonpass_agent::Scope::parse(s).is_ok())
        .cloned()
        .collect();
    match protonpass_agent::ResourceMetadata::new(&url, &gw.b.issuer, &scopes) {
        Ok(m) => {
            let mut r = m.to_json().into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(_) => not_found(),
    }
}
