//! The waiting page: the device requests waiting for a decision (what
//! `protonpass-broker pending --json` lists), each with a way to approve it
//! (the approval page with its code filled in) or to deny it at once.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::view::{self, describe_scope, duration, short_thumbprint, when};
use super::{B, Page, redirect, service_error, signed_form};
use crate::service::device::{CLI_SOURCE, Decision};

pub(super) async fn pending_page(State(b): B, Page { s, q }: Page) -> Response {
    let list = or_error_page!(b.pending_for(&s.owner).await, Some(&s));
    let now = b.clock.now();
    let denied = q.get("done") == Some("denied");
    let body = html! {
        @if denied { p.notice.ok role="status" { "Denied: the agent's wait ends with an error, and it gets no access." } }
        @if list.is_empty() {
            p.empty { "No agent is waiting for approval." }
        }
        @for w in &list {
            section.card.waiting {
                p.lead { strong.agent { (w.agent) } " " span.hint { "(name chosen by the agent)" } " asks to:" }
                ul {
                    @for sc in &w.scopes { li { (describe_scope(sc, w.audience.as_deref())) " " code.raw { (sc) } } }
                }
                dl.facts {
                    dt { "Service" }
                    dd { @match w.audience.as_deref() { Some(a) => code { (a) }, None => "not named: choose it when approving" } }
                    @if let Some(r) = w.reason.as_deref() {
                        dt { "Why, in the agent's own words" }
                        dd { q.reason { (r) } " — written by the agent, not checked by the broker." }
                    }
                    @if let Some(k) = w.key_thumbprint.as_deref() {
                        dt { "Agent key" }
                        dd { code.raw title=(k) { (short_thumbprint(k)) } }
                    }
                    dt { "Code" }
                    dd { @match w.user_code.as_deref() { Some(c) => code { (c) }, None => "not kept (an older request)" } }
                    dt { "Asked" } dd { (when(w.created_at)) }
                    dt { "Expires" } dd { "in " (duration((w.expires_at - now).max(0))) }
                }
                @if let Some(c) = w.user_code.as_deref() {
                    div.actions {
                        a.button.primary href=(format!("/device?user_code={c}")) { "Review and approve" }
                        (view::button_form(&s, "/pending/deny", ("user_code", c), "danger", "Deny"))
                    }
                }
            }
        }
    };
    view::page(StatusCode::OK, "Waiting for approval", Some(&s), body)
}

pub(super) async fn deny(State(b): B, headers: HeaderMap, body: Bytes) -> Response {
    let (s, f) = match signed_form(&b, &headers, &body, "/pending").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let code = f.text("user_code").unwrap_or("");
    // Only a request this page lists for this owner is denied without the
    // guessing limit; anything else answers as not waiting.
    let listed = match b.pending_for(&s.owner).await {
        Ok(l) => l.iter().any(|w| w.user_code.as_deref() == Some(code)),
        Err(e) => return service_error(&e, Some(&s)),
    };
    if !listed {
        return not_waiting(&s);
    }
    let dec = Decision::deny();
    // The code comes from the list this page showed, not from a guess: it is
    // not counted against the guessing budget of the code form, as on the
    // command line, whose list is the same.
    match b.decide(&s.owner, CLI_SOURCE, code, dec).await {
        Ok(_) => redirect("/pending?done=denied"),
        Err(protonpass_agent::Error::InvalidGrant(_)) => not_waiting(&s),
        Err(e) => service_error(&e, Some(&s)),
    }
}

fn not_waiting(s: &crate::store::WebSession) -> Response {
    view::message(
        StatusCode::NOT_FOUND,
        "Not waiting any more",
        "No agent is waiting with this code: it was approved, denied, withdrawn by the agent, or it expired.",
        Some(s),
    )
}
