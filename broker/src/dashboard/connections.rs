//! OAuth connections of the owner's upstreams (`/upstreams/connections`):
//! each one's status (connected, broken, not connected), "Connect" or
//! "Reconnect" (a page with the link to the provider's consent, which comes
//! back to `{issuer}/upstreams/callback`), and "Disconnect" (revoked at the
//! provider where it can be).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use maud::html;

use super::upstreams::gateway_task;
use super::view::{self, when};
use super::{B, Page, redirect, service_error, signed_form};
use super::{cookie, session_cookie};
use crate::gateway::oauth::{self, ConnectionView};
use crate::gateway::upstreams;
use crate::gateway::vault::Vault;
use crate::service::Broker;
use crate::store::WebSession;

/// The connection routes.
pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/upstreams/connections", get(connections_page))
        .route("/upstreams/connect", post(connect))
        .route("/upstreams/disconnect", post(disconnect))
}

fn status_words(v: &ConnectionView) -> &'static str {
    match v.status.as_str() {
        "connected" => "Connected",
        "broken" => {
            "Broken: the provider refused to renew access. Agents are refused until you reconnect."
        }
        _ => "Not connected",
    }
}

pub(super) async fn connections_page(State(b): B, Page { s, q }: Page) -> Response {
    let done = q.text("done").map(str::to_owned);
    let got = gateway_task(&b, &s.owner, |_, ctx| {
        let list = upstreams::list(ctx.store, ctx.issuer, ctx.owner)?;
        list.iter()
            .filter(|u| u.credential.starts_with("oauth2"))
            .map(|u| oauth::status(ctx.store, ctx.owner, &u.name))
            .collect::<protonpass_agent::Result<Vec<_>>>()
    })
    .await;
    let list = or_error_page!(got, Some(&s));
    let body = html! {
        @if done.as_deref() == Some("disconnected") { p.notice.ok { "Disconnected: the tokens are forgotten." } }
        @if list.is_empty() {
            p.empty { "No upstream of yours uses OAuth. " a href="/upstreams/catalog" { "Add one from the catalog" } }
        }
        @for c in &list {
            section.card {
                div.card-head { h2 { (c.name) } }
                p { (status_words(c)) }
                dl.facts {
                    @if let Some(id) = &c.connection { dt { "Connection" } dd { code { (id) } } }
                    @if let Some(t) = c.connected_at { dt { "Connected" } dd { (when(t)) } }
                    @if let Some(t) = c.updated_at { dt { "Last renewed" } dd { (when(t)) } }
                }
                div.actions {
                    (view::button_form(&s, "/upstreams/connect", ("name", &c.name), "primary", if c.status == "not_connected" { "Connect" } else { "Reconnect" }))
                    @if c.status != "not_connected" {
                        (view::button_form(&s, "/upstreams/disconnect", ("name", &c.name), "danger", "Disconnect"))
                    }
                }
            }
        }
        p { a href="/upstreams/catalog" { "API catalog" } }
    };
    view::page(StatusCode::OK, "Connections", Some(&s), body)
}

async fn checked(
    b: &B,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(WebSession, String), Box<Response>> {
    let (s, f) = signed_form(b, headers, body, "/upstreams/connections")
        .await
        .map_err(Box::new)?;
    let name = f.text("name").unwrap_or_default().to_owned();
    Ok((s, name))
}

/// Start connecting: a page with the link to the provider (a link, not a
/// redirect: the page's form-action policy would stop a cross-origin one).
pub(super) async fn connect(b: B, headers: HeaderMap, body: Bytes) -> Response {
    let (s, name) = match checked(&b, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    // The provider's answer must come back to this browser, signed in as
    // this owner: a leaked authorization link cannot connect someone else's
    // account to the owner's upstream.
    let browser = cookie(&headers, session_cookie(&b.0))
        .map(|v| format!("{}={}", session_cookie(&b.0), crate::audit::secret_hash(v)));
    let n = name.clone();
    let started = gateway_task(&b, &s.owner, move |b2, ctx| {
        let vault = Vault::load(&b2.cfg.data, b2.rng.as_ref())?;
        oauth::start(ctx, &vault, b2.rng.as_ref(), &n, "dashboard", browser)
    })
    .await;
    let started = or_error_page!(started, Some(&s));
    let host = url::Url::parse(&started.authorize_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let body = html! {
        p { "Sign in at " strong { (host) } " and allow access. You will come back here; the link works once, for 10 minutes." }
        p { a.button.primary href=(started.authorize_url) rel="noreferrer" { "Continue to " (host) } }
        p.hint { "Redirect URI to register at the provider: " code { (started.redirect_uri) } }
    };
    view::page(StatusCode::OK, &format!("Connect {name}"), Some(&s), body)
}

pub(super) async fn disconnect(b: B, headers: HeaderMap, body: Bytes) -> Response {
    let (s, name) = match checked(&b, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let vault = or_error_page!(Vault::load(&b.0.cfg.data, b.0.rng.as_ref()), Some(&s));
    match oauth::disconnect(&b.0, &vault, &s.owner, &name, "dashboard").await {
        Ok(_) => redirect("/upstreams/connections?done=disconnected"),
        Err(e) => service_error(&e, Some(&s)),
    }
}
