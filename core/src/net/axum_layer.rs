//! Protect axum routes with a [`Verifier`] (feature `axum`).
//!
//! The [`Agent`] extractor hands the handler the caller's [`Identity`],
//! `owner` included (set [`VerifierOptions::owner`] so that an API serves one
//! owner only). A refusal of [`Identity::require`] is reported to the broker
//! like the verifier's own when [`VerifierOptions::usage_reports`] is set.
//!
//! [`VerifierOptions::owner`]: super::verifier::VerifierOptions::owner
//! [`VerifierOptions::usage_reports`]: super::verifier::VerifierOptions::usage_reports
//!
//! ```ignore
//! let state = Protected::new(verifier, "https://api.example");
//! let app = Router::new()
//!     .route("/bookings", post(|agent: Agent| async move {
//!         agent.require("travel:book")?;
//!         Ok::<_, Rejection>("booked")
//!     }))
//!     .with_state(state);
//! ```

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::verifier::{Identity, Rejection, Verifier};
use crate::error::Error;

/// The state an axum app holds: the verifier and the public base URL clients
/// address the API by (the DPoP `htu` is checked against it, never against a
/// `Host` header the client chose).
#[derive(Clone, Debug)]
pub struct Protected {
    /// The verifier.
    pub verifier: Verifier,
    /// `scheme://host[:port]` (and path prefix, if any) as clients see the API.
    pub base_url: String,
}

impl Protected {
    /// Protect routes served at `base_url`.
    pub fn new(verifier: Verifier, base_url: impl Into<String>) -> Self {
        Protected {
            verifier,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
        }
    }
}

/// An extractor that verifies the request and yields the caller's identity.
#[derive(Debug, Clone)]
pub struct Agent(pub Identity);

impl std::ops::Deref for Agent {
    type Target = Identity;
    fn deref(&self) -> &Identity {
        &self.0
    }
}

impl<S> FromRequestParts<S> for Agent
where
    S: Send + Sync,
    Protected: FromRef<S>,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejection> {
        let p = Protected::from_ref(state);
        // Inside `Router::nest` the URI has lost its prefix; the client signed
        // the original one.
        let uri = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or(&parts.uri, |o| &o.0);
        let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let url = format!("{}{}", p.base_url, path);
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(parts.headers.len());
        for (k, v) in &parts.headers {
            match v.to_str() {
                Ok(v) => headers.push((k.as_str(), v)),
                // Dropping an unreadable DPoP or Authorization value would hide
                // a second header from the one-header rule: refuse instead.
                Err(_) if k == header::AUTHORIZATION || k.as_str() == "dpop" => {
                    return Err(Rejection::from_error(Error::InvalidRequest(format!(
                        "the {k} header is not visible ASCII"
                    ))));
                }
                Err(_) => {}
            }
        }
        p.verifier
            .verify(parts.method.as_str(), &url, &headers)
            .await
            .map(Agent)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::UNAUTHORIZED);
        let mut resp = (status, self.body()).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(Ok(v)) = self.www_authenticate.as_deref().map(HeaderValue::from_str) {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        if let Some(Ok(v)) = self.dpop_nonce.as_deref().map(HeaderValue::from_str) {
            h.insert("dpop-nonce", v);
        }
        resp
    }
}

/// A router serving `meta` (RFC 9728) at its path-suffixed well-known path
/// (`/.well-known/oauth-protected-resource/mcp` for `https://api.example/mcp`)
/// and at the root well-known path, for clients that try only the root. Merge
/// it into the app; set [`VerifierOptions::resource_metadata`] to
/// [`crate::resource_metadata::metadata_url`] of the same resource so that
/// every `401` points at it.
///
/// [`VerifierOptions::resource_metadata`]: super::verifier::VerifierOptions::resource_metadata
pub fn resource_metadata_router<S>(
    meta: &crate::resource_metadata::ResourceMetadata,
) -> crate::error::Result<axum::Router<S>>
where
    S: Clone + Send + Sync + 'static,
{
    use crate::resource_metadata::{WELL_KNOWN, metadata_path};
    let path = metadata_path(&meta.resource)?;
    let body = meta.to_json();
    let serve = move || {
        let body = body.clone();
        async move {
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "max-age=300"),
                ],
                body,
            )
        }
    };
    let mut r = axum::Router::new().route(&path, axum::routing::get(serve.clone()));
    if path != WELL_KNOWN {
        r = r.route(WELL_KNOWN, axum::routing::get(serve));
    }
    Ok(r)
}
