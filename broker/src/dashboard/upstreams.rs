//! The upstreams page: the owner's APIs served through the gateway, each
//! with its rules in plain words, where agents send requests, a form to
//! rotate the secret and a confirmed removal. The same service calls as
//! `protonpass-broker upstream rotate` and `remove`; the secret is never
//! shown, and a new one goes from the form straight into the vault.
//! Adding from a template is the catalog's page (`/upstreams/catalog`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};

use super::view::{self, describe_scope, when};
use super::{B, Page, csrf_refused, redirect, service_error, signed_form};
use crate::gateway::upstreams::{self, Ctx, RuleView, UpstreamView};
use crate::gateway::vault::{Vault, check_secret};
use crate::service::Broker;
use crate::store::WebSession;

/// Run `f` on the blocking pool (the gateway's calls are synchronous) with
/// the gateway's context for `owner`: the store, the issuer and the time. A
/// task that does not run to its end is `temporarily_unavailable`.
pub(super) async fn gateway_task<T: Send + 'static>(
    b: &Arc<Broker>,
    owner: &str,
    f: impl FnOnce(&Broker, &Ctx<'_>) -> protonpass_agent::Result<T> + Send + 'static,
) -> protonpass_agent::Result<T> {
    let (b, owner) = (b.clone(), owner.to_owned());
    tokio::task::spawn_blocking(move || {
        let ctx = Ctx {
            store: &b.store,
            issuer: &b.issuer,
            owner: &owner,
            now: b.clock.now(),
        };
        f(&b, &ctx)
    })
    .await
    .unwrap_or_else(|_| {
        Err(protonpass_agent::Error::TemporarilyUnavailable(
            "try again".into(),
        ))
    })
}

fn notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "rotated" => {
            "The secret was replaced. The gateway injects the new one from the next request on."
        }
        "removed" => {
            "The upstream and its secret were removed. Agents' requests to it are refused from now on."
        }
        _ => return None,
    })
}

/// A path pattern in words: `/repos/{owner}/{repo}/**` is
/// "/repos/‹owner›/‹repo›/ and anything below it".
fn path_words(p: &str) -> String {
    let (head, rest) = match p.strip_suffix("/**") {
        Some(h) => (h, true),
        None => (p, false),
    };
    let head: Vec<String> = head
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(v) => format!("‹{v}›"),
                None => seg.to_owned(),
            },
        )
        .collect();
    let head = head.join("/");
    if rest {
        format!("{head}/ and anything below it")
    } else if head.is_empty() {
        "/".to_owned()
    } else {
        head
    }
}

/// One rule in plain words.
fn rule_words(r: &RuleView, aud: &str) -> Markup {
    html! {
        li {
            strong { (r.methods.join(" or ")) } " requests to " code { (path_words(&r.path)) }
            ", for agents allowed to " em { (describe_scope(&r.scope, Some(aud))) }
            " " code.raw { (r.scope) }
            @if let Some(d) = &r.description { br; span.hint { (d) } }
        }
    }
}

fn upstream_card(s: &WebSession, u: &UpstreamView) -> Markup {
    html! {
        section.card id=(format!("upstream-{}", u.name)) {
            div.card-head {
                h2 { (u.name) }
                a.button.danger href=(format!("/upstreams/remove?name={}", u.name)) { "Remove…" }
            }
            @if let Some(d) = &u.description { p { (d) } }
            dl.facts {
                dt { "Agents ask for access to" } dd { code { (u.audience) } }
                dt { "Agents send requests to" } dd { code { (u.gateway_url) } }
                dt { "Forwarded to" } dd { code { (u.base_url) }
                    @if u.allow_private_network { " " span.hint { "(private network addresses allowed)" } } }
                dt { "Your secret goes in" } dd { (u.credential) " " span.hint { "(never shown, never given to agents)" } }
                dt { "Added" } dd { (when(u.created_at)) }
                dt { "Secret or rules last changed" } dd { (when(u.rotated_at)) }
                @if !u.suggested_scopes.is_empty() {
                    dt { "Suggested access" } dd { @for sc in &u.suggested_scopes { code { (sc) } " " }
                        @if let Some(t) = &u.suggested_ttl { " for " (t) } }
                }
            }
            h3 { "What agents may do" }
            p.hint { "A request is forwarded only when one of these rules matches it and the agent was allowed the access it names; anything else is refused without reaching the API. ‹name› stands for any one part of the path." }
            ul.rules { @for r in &u.rules { (rule_words(r, &u.audience)) } }
            form method="post" action="/upstreams/rotate" {
                input type="hidden" name="csrf" value=(s.csrf);
                input type="hidden" name="name" value=(u.name);
                label { "Replace the secret (for example after rotating the key at the provider)"
                    input type="password" name="secret" required maxlength="4096" autocomplete="off"; }
                button.primary type="submit" { "Replace the secret" }
            }
        }
    }
}

pub(super) async fn upstreams_page(State(b): B, Page { s, q }: Page) -> Response {
    let list = gateway_task(&b, &s.owner, |_, ctx| {
        upstreams::list(ctx.store, ctx.issuer, ctx.owner)
    })
    .await;
    let list = or_error_page!(list, Some(&s));
    let body = html! {
        @if let Some(n) = notice(q.get("done")) { p.notice.ok role="status" { (n) } }
        p { "APIs that take your own key. Agents call them through this broker with their short-lived access; the broker adds your key, so agents never see it." }
        p { a.button.primary href="/upstreams/catalog" { "Add an API from a template" } }
        @if list.is_empty() {
            p.empty { "You have no upstream APIs yet." }
        }
        @for u in &list { (upstream_card(&s, u)) }
    };
    view::page(StatusCode::OK, "Upstream APIs", Some(&s), body)
}

/// Sign-in returns to the upstreams page (route with [`super::signed_in::BackTo`]).
pub(super) async fn remove_page(State(b): B, Page { s, q }: Page) -> Response {
    let name = q.get("name").unwrap_or("").to_owned();
    let (store, issuer, owner, n) = (
        b.store.clone(),
        b.issuer.clone(),
        s.owner.clone(),
        name.clone(),
    );
    let u = match tokio::task::spawn_blocking(move || upstreams::show(&store, &issuer, &owner, &n))
        .await
    {
        Ok(Ok(u)) => u,
        // Unknown, or another owner's: one answer for both.
        Ok(Err(e)) => {
            return view::message(StatusCode::NOT_FOUND, "Not found", &e.to_string(), Some(&s));
        }
        Err(_) => return csrf_refused(),
    };
    view::page(
        StatusCode::OK,
        "Remove an upstream API",
        Some(&s),
        html! {
            p.notice.error { "Remove " strong { (u.name) } " (" code { (u.audience) } ")? Its secret is deleted from the vault and every agent's request to it is refused from now on. Agents' access to other APIs does not change; the key itself stays valid at the provider." }
            form method="post" action="/upstreams/remove" {
                input type="hidden" name="csrf" value=(s.csrf);
                input type="hidden" name="name" value=(u.name);
                input type="hidden" name="confirm" value="yes";
                button.danger type="submit" { "Remove " (u.name) }
                " " a href="/upstreams" { "Cancel" }
            }
        },
    )
}

pub(super) async fn rotate(b: B, headers: HeaderMap, body: Bytes) -> Response {
    let (s, f) = match signed_form(&b, &headers, &body, "/upstreams").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let name = f.get("name").unwrap_or("").to_owned();
    let Ok(secret) = check_secret(f.get("secret").unwrap_or("").as_bytes()) else {
        return view::message(
            StatusCode::BAD_REQUEST,
            "That did not work",
            "The secret must be one line of visible characters (at most 4096). Nothing was changed.",
            Some(&s),
        );
    };
    drop(f);
    let done = gateway_task(&b, &s.owner, move |br, ctx| {
        let vault = Vault::load(&br.cfg.data, br.rng.as_ref())?;
        upstreams::rotate(ctx, &vault, br.rng.as_ref(), &name, &secret)
    })
    .await;
    match done {
        Ok(_) => redirect("/upstreams?done=rotated"),
        Err(e @ protonpass_agent::Error::InvalidRequest(_)) => {
            view::message(StatusCode::NOT_FOUND, "Not found", &e.to_string(), Some(&s))
        }
        Err(e) => service_error(&e, Some(&s)),
    }
}

pub(super) async fn remove(b: B, headers: HeaderMap, body: Bytes) -> Response {
    let (s, f) = match signed_form(&b, &headers, &body, "/upstreams").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let name = f.get("name").unwrap_or("").to_owned();
    if f.get("confirm") != Some("yes") {
        return redirect(&format!(
            "/upstreams/remove?name={}",
            url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
        ));
    }
    let done = gateway_task(&b, &s.owner, move |_, ctx| upstreams::remove(ctx, &name)).await;
    match done {
        Ok(()) => redirect("/upstreams?done=removed"),
        Err(e @ protonpass_agent::Error::InvalidRequest(_)) => {
            view::message(StatusCode::NOT_FOUND, "Not found", &e.to_string(), Some(&s))
        }
        Err(e) => service_error(&e, Some(&s)),
    }
}

#[cfg(test)]
mod tests {
    use super::path_words;

    #[test]
    fn path_patterns_read_as_words() {
        assert_eq!(
            path_words("/repos/{owner}/{repo}/**"),
            "/repos/‹owner›/‹repo›/ and anything below it"
        );
        assert_eq!(path_words("/v1/charges"), "/v1/charges");
        assert_eq!(path_words("/"), "/");
        assert_eq!(path_words("/**"), "/ and anything below it");
    }
}
