//! The extractor of the signed-in owner's pages: the session and the page's
//! query, or else the visitor is sent to sign in and then back.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Response;

use super::{Form, query, session, to_login};
use crate::service::Broker;
use crate::store::WebSession;

/// A page of the signed-in owner: the live session and the query string as a
/// form. Without a live session the answer is the way to sign in, then back
/// to the page's path (its query left out), or to the page a [`BackTo`] on
/// the route names.
pub(super) struct Page {
    pub(super) s: WebSession,
    pub(super) q: Form,
}

/// On a route (as an `Extension` layer): the page that sign-in returns to,
/// when it is not the route's own (an export, a confirmation page).
#[derive(Clone, Copy)]
pub(super) struct BackTo(pub(super) &'static str);

impl FromRequestParts<Arc<Broker>> for Page {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        b: &Arc<Broker>,
    ) -> std::result::Result<Self, Response> {
        let Some(s) = session(b, &parts.headers).await else {
            let here = match parts.extensions.get::<BackTo>() {
                Some(BackTo(page)) => page,
                None => parts.uri.path(),
            };
            return Err(to_login(here));
        };
        Ok(Self {
            s,
            q: query(parts.uri.query()),
        })
    }
}
