//! The template catalog (`/upstreams/catalog?q=WORDS`): every built-in
//! upstream template with its scopes in plain words and their risk, searched
//! on the server, and a form to add an upstream from one: its secret, or for
//! an OAuth template its client id (and secret, if any) and then "Connect".

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use maud::{Markup, html};
use zeroize::Zeroizing;

use super::view;
use super::{B, Page, service_error, signed_form};
use crate::gateway::templates::{self, Overrides, TemplateView};
use crate::gateway::upstreams;
use crate::gateway::vault::{Vault, check_secret};
use crate::service::Broker;

/// The catalog's routes.
pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/upstreams/catalog", get(catalog_page))
        .route("/upstreams/catalog/add", post(add))
}

fn risk_words(r: crate::scope_catalog::Risk) -> &'static str {
    match r {
        crate::scope_catalog::Risk::Low => "low risk",
        crate::scope_catalog::Risk::Medium => "medium risk",
        crate::scope_catalog::Risk::High => "HIGH RISK",
    }
}

fn card(t: &TemplateView, csrf: &str) -> Markup {
    let oauth = t.credential == "oauth2";
    html! {
        section.card id=(format!("t-{}", t.name)) {
            div.card-head { h2 { (t.name) } span.hint { (if oauth { "connects to your account (OAuth)" } else { "uses your API key" }) } }
            p { (t.description) }
            ul.scopes {
                @for s in &t.scopes {
                    li { strong { (s.description) } " — " span.hint { (risk_words(s.risk)) } " " code.raw { (s.name) } }
                }
            }
            dl.facts {
                dt { "Sends requests to" } dd { code { (t.base_url) } }
                @if let Some(ttl) = &t.suggested_ttl { dt { "Suggested lifetime" } dd { (ttl) } }
                @if !t.suggested_scopes.is_empty() { dt { "Suggested scopes" } dd { code { (t.suggested_scopes.join(" ")) } } }
            }
            form method="post" action="/upstreams/catalog/add" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="template" value=(t.name);
                label { "Name " input type="text" name="name" value=(t.name); }
                label { "Base URL (change it for your own site or instance) " input type="text" name="base_url" value=(t.base_url); }
                @if oauth {
                    label { "Your OAuth client id at the provider " input type="text" name="client_id" required; }
                    label { "Its client secret (leave empty for a public client) " input type="password" name="secret" autocomplete="off"; }
                    p.hint { "Register the redirect URI " code { "/upstreams/callback" } " on this broker's address at the provider." }
                    div.actions { button.primary type="submit" { "Add, then connect" } }
                } @else {
                    label { "Your API key or token " input type="password" name="secret" autocomplete="off" required; }
                    div.actions { button.primary type="submit" { "Add" } }
                }
            }
        }
    }
}

pub(super) async fn catalog_page(Page { s, q: f }: Page) -> Response {
    let words = f.text("q").map(str::to_owned);
    let list = templates::list(words.as_deref());
    let body = html! {
        p.lead { "Ready-made upstreams for popular APIs. Your agents get scoped, short-lived tokens; the key or account stays with this broker. " a href="/upstreams/connections" { "Your connections" } }
        form.filters method="get" action="/upstreams/catalog" {
            label { "Search " input type="text" name="q" value=(words.clone().unwrap_or_default()); }
            div.actions { button type="submit" { "Search" } }
        }
        @if list.is_empty() { p.empty { "No template matches." } }
        @for t in &list { (card(t, &s.csrf)) }
    };
    view::page(StatusCode::OK, "API catalog", Some(&s), body)
}

pub(super) async fn add(State(b): B, headers: HeaderMap, body: Bytes) -> Response {
    let (s, f) = match signed_form(&b, &headers, &body, "/upstreams/catalog").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let template = f.text("template").unwrap_or_default().to_owned();
    let default = templates::show(&template).ok();
    let o = Overrides {
        name: f.text("name").filter(|n| *n != template).map(str::to_owned),
        base_url: f
            .text("base_url")
            .filter(|u| default.as_ref().is_none_or(|d| d.base_url != *u))
            .map(str::to_owned),
        client_id: f.text("client_id").map(str::to_owned),
    };
    let secret = Zeroizing::new(f.get("secret").unwrap_or_default().as_bytes().to_vec());
    let done = super::upstreams::gateway_task(&b, &s.owner, move |b2, ctx| {
        let text = templates::instantiate(&template, &o)?;
        let parsed = upstreams::parse_rules(&text)?;
        let secret = match (secret.is_empty(), parsed.oauth2.is_some()) {
            (true, true) => Zeroizing::new(Vec::new()),
            _ => check_secret(&secret)?,
        };
        let vault = Vault::load(&b2.cfg.data, b2.rng.as_ref())?;
        let v = upstreams::add(ctx, &vault, b2.rng.as_ref(), &text, &secret)?;
        Ok((v, parsed.oauth2.is_some()))
    })
    .await;
    let (v, oauth) = or_error_page!(done, Some(&s));
    let body = html! {
        p.notice.ok { "Upstream " strong { (v.name) } " is added. Agents call " code { (v.gateway_url) } " with tokens for the audience " code { (v.audience) } "." }
        @if oauth {
            p { "Now connect it to your account at the provider:" }
            form method="post" action="/upstreams/connect" {
                input type="hidden" name="csrf" value=(s.csrf);
                input type="hidden" name="name" value=(v.name);
                div.actions { button.primary type="submit" { "Connect" } }
            }
        }
        p { a href="/upstreams/catalog" { "Back to the catalog" } " · " a href="/agents" { "Give an agent access" } }
    };
    view::page(StatusCode::OK, "Upstream added", Some(&s), body)
}
