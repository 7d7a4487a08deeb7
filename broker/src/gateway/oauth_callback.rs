//! The OAuth callback, `GET {issuer}/upstreams/callback` (specification:
//! `spec/11-templates.md` section 11.4): the provider's answer is matched to
//! its pending authorization by `state` (single use), checked (`iss`, error,
//! code), the code exchanged with the PKCE verifier, and the tokens stored,
//! sealed, as the upstream's new connection.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use protonpass_agent::{Result, b64};
use serde_json::json;
use zeroize::Zeroizing;

use super::oauth::{CALLBACK_PATH, oauth_upstream, redirect_uri};
use super::oauth_client::{Failed, http_client, token_request, verifier_name};
use super::vault::Vault;
use crate::audit::secret_hash;
use crate::service::Broker;
use crate::store::{self, ConnectionRec};

#[derive(Debug)]
struct Callback {
    b: Arc<Broker>,
    vault: Vault,
}

/// The callback route, `GET {issuer}/upstreams/callback`.
pub fn router(b: Arc<Broker>) -> Result<Router<Arc<Broker>>> {
    let vault = Vault::load(&b.cfg.data, b.rng.as_ref())?;
    Ok(Router::new()
        .route(CALLBACK_PATH, get(callback))
        .with_state(Arc::new(Callback { b, vault })))
}

/// The callback page's policy: no script, styles from the broker only.
const CALLBACK_CSP: &str = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <link rel=\"stylesheet\" href=\"/dashboard.css\"></head><body><main><h1>{title}</h1>\
         <p>{text}</p><p><a href=\"/upstreams/connections\">Your connections</a></p></main></body></html>"
    );
    let headers = [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, CALLBACK_CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    (status, headers, Html(body)).into_response()
}

fn refused(text: &str) -> Response {
    page(StatusCode::BAD_REQUEST, "Not connected", text)
}

/// Whether the request carries the cookie a browser-bound authorization
/// names (`NAME=HASH`), compared in constant time.
fn same_browser(headers: &axum::http::HeaderMap, bound: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    let Some((name, want)) = bound.split_once('=') else {
        return false;
    };
    crate::cookies::pairs(headers)
        .filter(|(k, _)| *k == name)
        .any(|(_, v)| bool::from(secret_hash(v).as_bytes().ct_eq(want.as_bytes())))
}

async fn callback(
    State(cb): State<Arc<Callback>>,
    headers: axum::http::HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let b = &cb.b;
    let Some(state) = q.get("state").filter(|s| s.len() <= 256) else {
        return refused("The answer names no authorization (no state).");
    };
    let hash = secret_hash(state);
    let taken = store::write(&b.store, move |tx| tx.oauth_pending_take(&hash)).await;
    let now = b.clock.now();
    let p = match taken {
        Ok(Some(p)) if p.expires_at > now => p,
        Ok(_) => {
            return refused(
                "This authorization is unknown, was already used or has expired: start again.",
            );
        }
        Err(_) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "Storage is unavailable.",
            );
        }
    };
    if p.browser
        .as_deref()
        .is_some_and(|bound| !same_browser(&headers, bound))
    {
        return refused(
            "Finish connecting in the browser that started it, signed in to the dashboard: start again there.",
        );
    }
    let name = p.upstream.clone();
    let looked_up = {
        let (store, owner, name) = (b.store.clone(), p.owner.clone(), name.clone());
        tokio::task::spawn_blocking(move || oauth_upstream(&store, &owner, &name)).await
    };
    let (rec, up, o) = match looked_up {
        Ok(Ok(x)) => x,
        _ => return refused("The upstream no longer exists."),
    };
    let fail = |why: &'static str, text: &str| {
        let detail = json!({"upstream": name, "error": why}).to_string();
        let (owner, b2) = (p.owner.clone(), b.clone());
        if !store::write_detached(&b2.store, move |tx| {
            tx.audit_append(now, &owner, "upstream_connect_failed", &detail)
                .map(|_| ())
        }) {
            b2.metrics.audit_dropped();
        }
        refused(text)
    };
    // RFC 9207: an `iss` must be the provider's issuer identifier.
    match (q.get("iss"), &o.issuer) {
        (Some(iss), Some(want)) if iss != want => {
            return fail(
                "iss_mismatch",
                "The answer comes from another provider (iss): refused.",
            );
        }
        (None, Some(_)) if o.require_iss => {
            return fail(
                "iss_missing",
                "The answer does not say which provider sent it (iss): refused.",
            );
        }
        (Some(_), None) => {
            return fail(
                "iss_unexpected",
                "The provider sent its issuer (iss) but the upstream's rules name none: add issuer to [credential.oauth2].",
            );
        }
        _ => {}
    }
    if q.contains_key("error") {
        return fail("access_denied", "The provider did not grant access.");
    }
    let Some(code) = q.get("code").filter(|c| !c.is_empty() && c.len() <= 4096) else {
        return fail(
            "no_code",
            "The provider's answer has no authorization code.",
        );
    };
    let opened = cb
        .vault
        .open(&p.owner, &verifier_name(&name), &p.sealed)
        .and_then(|v| Ok((v, cb.vault.open(&p.owner, &name, &rec.sealed)?)));
    let Ok((verifier, secret)) = opened else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "The vault cannot open the upstream's secrets.",
        );
    };
    let verifier = Zeroizing::new(String::from_utf8_lossy(&verifier).into_owned());
    let client = match http_client(up.allow_private_network) {
        Ok(c) => c,
        Err(_) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "No HTTP client.",
            );
        }
    };
    let redirect = redirect_uri(&b.issuer);
    let granted = match token_request(
        &client,
        &o,
        &secret,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect),
            ("code_verifier", &verifier),
        ],
    )
    .await
    {
        Ok(g) => g,
        Err(Failed::Refused(_)) => {
            return fail(
                "code_refused",
                "The provider refused the authorization code.",
            );
        }
        Err(Failed::Unreachable) => {
            return fail(
                "provider_unreachable",
                "The provider's token endpoint could not be reached.",
            );
        }
    };
    let mut id = [0u8; 12];
    let sealed = b.rng.fill(&mut id).and_then(|()| {
        granted
            .tokens
            .seal(&cb.vault, b.rng.as_ref(), &p.owner, &name)
    });
    let Ok(sealed) = sealed else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "The vault failed.",
        );
    };
    let conn = ConnectionRec {
        upstream: name.clone(),
        owner: p.owner.clone(),
        id: format!("conn-{}", b64::encode(id)),
        status: "connected".into(),
        sealed,
        access_expires_at: now + granted.expires_in,
        connected_at: now,
        updated_at: now,
    };
    let detail = json!({"upstream": name, "connection": conn.id,
                        "refresh_token": granted.tokens.refresh_token.is_some()})
    .to_string();
    let created = rec.created_at;
    let stored = store::write(&b.store, move |tx| {
        match tx.upstream_get(&conn.upstream)? {
            Some(cur) if cur.owner == conn.owner && cur.created_at == created => {}
            _ => return Ok(false),
        }
        tx.connection_put(&conn)?;
        tx.audit_append(now, &conn.owner, "upstream_connected", &detail)?;
        Ok(true)
    })
    .await;
    match stored {
        Ok(true) => page(
            StatusCode::OK,
            "Connected",
            &format!(
                "Upstream {name} is connected: your agents can use it through the gateway. You can close this window."
            ),
        ),
        Ok(false) => refused("The upstream no longer exists."),
        Err(_) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "Storage is unavailable.",
        ),
    }
}
