//! The activity page: the owner's audit records, newest first, filtered by
//! agent, event and date, with the state of the hash chain; and the same
//! records as JSON Lines.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::view::{self, describe_scope, duration, parse_date, when};
use super::{B, Form, Page, service_error};
use crate::service::upkeep;
use crate::store::{self, AuditQuery};

/// Records per page.
const PAGE: i64 = 50;
/// Most records in one export.
const EXPORT_MAX: usize = 1_000_000;

const EVENTS: &[(&str, &str)] = &[
    ("approve", "Agent approved"),
    ("deny", "Agent denied"),
    ("device_grant", "Agent collected its access"),
    ("grant_create", "Grant created ahead of time"),
    ("enroll", "Agent used its enrollment code"),
    ("exchange", "Token for one service issued"),
    ("refresh", "Access renewed"),
    ("revoke", "Revoked"),
    ("revoke_refused", "Revocation refused"),
    ("usage", "Use reported by a service"),
    ("introspect", "Token checked by a service"),
    ("user_code_wrong", "Wrong code entered"),
    ("user_code_locked", "Code entry paused"),
    ("resource_add", "Service registered"),
    ("login", "Signed in"),
    ("login_failed", "Wrong password"),
    ("login_locked", "Sign-in paused"),
    ("logout", "Signed out"),
    ("password_set", "Password set"),
];

pub(super) fn label(event: &str) -> &str {
    EVENTS
        .iter()
        .find(|(e, _)| *e == event)
        .map_or(event, |(_, l)| l)
}

/// A record's label, with what a revocation by the broker itself means.
fn record_label<'a>(event: &'a str, detail: &str) -> &'a str {
    let by = serde_json::from_str::<serde_json::Value>(detail)
        .ok()
        .and_then(|d| d.get("by").and_then(|b| b.as_str()).map(str::to_owned));
    match (event, by.as_deref()) {
        ("revoke", Some("refresh_token_reuse")) => {
            "Revoked by the broker: the agent's refresh token was used twice, so a copy of its grant is in someone else's hands"
        }
        _ => label(event),
    }
}

/// Identifiers: kept for whoever investigates, folded away from the words.
const IDS: &[&str] = &[
    "jti",
    "refresh_jti",
    "gid",
    "request",
    "feed_seq",
    "jkt",
    "client_id",
    "by_request",
];

/// Who a `by` value names, in words.
fn by_whom(by: &str) -> String {
    match by {
        "owner" => "by you".into(),
        "agent" => "by the agent itself".into(),
        "owner_remove" => "when the owner was removed".into(),
        "refresh_token_reuse" => "by the broker (refresh token reuse)".into(),
        other => format!("by {other}"),
    }
}

/// A record's detail in words: the agent, what it may do, on which service
/// and until when; identifiers (`jti`, grant ids, ...) folded away; other
/// members as `key value` (the raw JSON when it is not an object).
fn details(detail: &str) -> maud::Markup {
    use serde_json::Value;
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(detail) else {
        return html! { code.detail { (detail) } };
    };
    let text = |k: &str| m.get(k).and_then(Value::as_str);
    let time = |k: &str| m.get(k).and_then(Value::as_i64);
    let aud = text("aud")
        .or_else(|| text("audience"))
        .or_else(|| text("resource"));
    let scopes = |k: &str| -> Vec<String> {
        text(k)
            .map(|s| {
                s.split_whitespace()
                    .map(|sc| describe_scope(sc, aud))
                    .collect()
            })
            .unwrap_or_default()
    };
    let shown = [
        "agent",
        "scope",
        "requested_scope",
        "aud",
        "audience",
        "resource",
        "exp",
        "grant_exp",
        "ttl",
        "by",
        "reason",
        "at",
        "audiences",
    ];
    // A refusal's `reason` is the finer error reason; elsewhere it is the
    // agent's own words.
    let refused = text("decision") == Some("deny");
    let services: Vec<&str> = m
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let ids: Vec<_> = IDS
        .iter()
        .filter_map(|k| m.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
        .collect();
    html! {
        @if let Some(a) = text("agent") { span.kv { "Agent " strong.agent { (a) } } }
        @let granted = scopes("scope");
        @if !granted.is_empty() { span.kv { "May: " (granted.join("; ")) } }
        @let asked = scopes("requested_scope");
        @if !asked.is_empty() && asked != granted { span.kv { "Asked for: " (asked.join("; ")) } }
        @if let Some(a) = aud { span.kv { "Service " code { (a) } } }
        @if !services.is_empty() { span.kv { "Services " code { (services.join(", ")) } } }
        @if let Some(t) = time("at") { span.kv { "Reported for " (when(t)) } }
        @if let Some(t) = time("exp") { span.kv { "Access until " (when(t)) } }
        @if let Some(t) = time("grant_exp") { span.kv { "Grant until " (when(t)) } }
        @if let Some(t) = time("ttl").filter(|t| *t > 0) { span.kv { "Lasts " (duration(t)) } }
        @if let Some(b) = text("by") { span.kv { (by_whom(b)) } }
        @if let Some(r) = text("reason") {
            @if refused { span.kv { "Why refused " code.reason { (r) } } }
            @else { span.kv { "Why, in the agent's words: " q.reason { (r) } } }
        }
        @for (k, v) in &m {
            @if !v.is_null() && !shown.contains(&k.as_str()) && !IDS.contains(&k.as_str()) {
                span.kv { b { (k) } " " code.detail { (match v { Value::String(s) => s.clone(), other => other.to_string() }) } }
            }
        }
        @if !ids.is_empty() {
            details.ids {
                summary { "Identifiers" }
                @for (k, v) in &ids {
                    span.kv { b { (k) } " " code.raw { (match v { Value::String(s) => (*s).clone(), other => other.to_string() }) } }
                }
            }
        }
    }
}

fn filters(owner: &str, q: &Form) -> AuditQuery {
    AuditQuery {
        owner: owner.to_owned(),
        before: q.text("before").and_then(|v| v.parse().ok()),
        event: q.text("event").map(|v| v.chars().take(64).collect()),
        agent: q.text("agent").map(|v| v.chars().take(128).collect()),
        since: q.text("since").and_then(parse_date),
        until: q.text("until").and_then(parse_date).map(|d| d + 86400),
        limit: PAGE + 1,
        gid: None,
    }
}

pub(super) async fn audit_page(State(b): B, Page { s, q }: Page) -> Response {
    let f = filters(&s.owner, &q);
    let f2 = f.clone();
    let b2 = b.clone();
    // Incremental: only what was appended since the last position this
    // process verified (or since the newest signed checkpoint).
    let got = store::read(&b.store, move |tx| {
        Ok((tx.audit_search(&f2)?, upkeep::verify_recent(&b2, tx)?))
    })
    .await;
    let (mut recs, chain) = or_error_page!(got, Some(&s));
    let more = recs.len() as i64 > PAGE;
    recs.truncate(PAGE as usize);
    let keep = |name: &str| q.text(name).unwrap_or("").to_owned();
    let mut base = url::form_urlencoded::Serializer::new(String::new());
    for k in ["agent", "event", "since", "until"] {
        if let Some(v) = q.text(k) {
            base.append_pair(k, v);
        }
    }
    let base = base.finish();
    let sep = if base.is_empty() { "" } else { "&" };
    let older = recs
        .last()
        .map(|r| format!("/audit?{base}{sep}before={}", r.seq));
    let export = format!("/audit/export?{base}");
    let (ev, agent, since, until) = (keep("event"), keep("agent"), keep("since"), keep("until"));
    let body = html! {
        @match &chain {
            Ok(v) => p.notice.ok.chain role="status" {
                "Chain verified: the records up to #" (v.head) " are intact and in order"
                @if let Some(c) = v.checkpoint { " (from the signed checkpoint at #" (c) ")" }
                "."
            },
            Err(br) => p.notice.error.chain role="alert" { "Chain BROKEN at record " (br.seq) ": " (br.why) },
        }
        form.card.filters method="get" action="/audit" {
            label { "Agent" input type="text" name="agent" value=(agent) maxlength="128"; }
            label { "What happened"
                select name="event" {
                    option value="" { "Anything" }
                    @for (e, l) in EVENTS {
                        option value=(e) selected[ev == *e] { (l) }
                    }
                }
            }
            label { "From" input type="date" name="since" value=(since); }
            label { "To" input type="date" name="until" value=(until); }
            div.actions {
                button.primary type="submit" { "Show" }
                a.button href=(export) { "Download as JSON Lines" }
            }
        }
        @if recs.is_empty() {
            p.empty { "Nothing matches." }
        } @else {
            table.audit {
                thead { tr { th { "#" } th { "When" } th { "What happened" } th { "Details" } } }
                tbody {
                    @for r in &recs {
                        tr {
                            td { (r.seq) }
                            td.nowrap { (when(r.ts)) }
                            td { (record_label(&r.event, &r.detail)) br; code.raw { (r.event) } }
                            td.detail { (details(&r.detail)) }
                        }
                    }
                }
            }
        }
        @if more {
            @if let Some(o) = older { p { a href=(o) { "Older records →" } } }
        }
    };
    view::page(StatusCode::OK, "Activity", Some(&s), body)
}

/// Sign-in returns to the activity page (route with [`super::signed_in::BackTo`]).
pub(super) async fn export(State(b): B, Page { s, q }: Page) -> Response {
    let mut f = filters(&s.owner, &q);
    f.limit = 1000;
    let got = store::read(&b.store, move |tx| {
        let mut all = Vec::new();
        loop {
            let page = tx.audit_search(&f)?;
            let Some(last) = page.last() else { break };
            f.before = Some(last.seq);
            all.extend(page);
            if all.len() >= EXPORT_MAX {
                break;
            }
        }
        Ok(all)
    })
    .await;
    let mut recs = or_error_page!(got, Some(&s));
    recs.reverse();
    let mut text = String::new();
    for r in &recs {
        if let Ok(line) = serde_json::to_string(r) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    let headers = [
        (header::CONTENT_TYPE, "application/x-ndjson; charset=utf-8"),
        (
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"audit.jsonl\"",
        ),
    ];
    (StatusCode::OK, headers, text).into_response()
}
