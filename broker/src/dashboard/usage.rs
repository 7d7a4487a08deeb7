//! The usage page: what the owner's services reported about each agent's
//! requests (`POST /audit/usage`): how many were allowed and refused, and the
//! latest refusals with their error code and finer reason. Requests no token
//! of the owner could be tied to (no token, a forged one, another owner's)
//! are shown apart, as unattributed.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;
use serde_json::Value;

use super::view::{self, when};
use super::{B, service_error, session, to_login};
use crate::store::{self, UsageCount};

/// Latest refusals shown per agent.
const REFUSALS: i64 = 5;

/// One refusal as shown.
struct Refusal {
    ts: i64,
    method: String,
    path: String,
    code: String,
    reason: String,
    service: String,
}

fn refusal(ts: i64, detail: &str) -> Option<(Option<String>, Refusal)> {
    let v: Value = serde_json::from_str(detail).ok()?;
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    // A finer reason, else (insufficient_scope) the scope that was needed.
    let reason = match (v["reason"].as_str(), v["scope"].as_str()) {
        (Some(r), _) => r.to_owned(),
        (None, Some(s)) => format!("needs {s}"),
        (None, None) => String::new(),
    };
    Some((
        v["agent"].as_str().map(str::to_owned),
        Refusal {
            ts,
            method: text("method"),
            path: text("path"),
            code: text("code"),
            reason,
            service: text("aud"),
        },
    ))
}

pub(super) async fn usage_page(State(b): B, headers: HeaderMap) -> Response {
    let Some(s) = session(&b, &headers).await else {
        return to_login("/usage");
    };
    let owner = s.owner.clone();
    let got = store::read(&b.store, move |tx| {
        Ok((
            tx.usage_counts(&owner)?,
            tx.usage_refusals(&owner, REFUSALS)?,
        ))
    })
    .await;
    let (counts, recs) = match got {
        Ok(x) => x,
        Err(e) => return service_error(&e, Some(&s)),
    };
    let mut refusals: BTreeMap<Option<String>, Vec<Refusal>> = BTreeMap::new();
    for r in &recs {
        if let Some((agent, f)) = refusal(r.ts, &r.detail) {
            refusals.entry(agent).or_default().push(f);
        }
    }
    let body = html! {
        @if counts.is_empty() {
            p.empty { "No service has reported any request yet. Services report when they are set up with their credentials (" code { "protonpass-broker resource add" } ")." }
        }
        @for c in &counts {
            (agent_card(c, refusals.get(&c.agent).map_or(&[][..], Vec::as_slice)))
        }
    };
    view::page(StatusCode::OK, "Usage", Some(&s), body)
}

fn agent_card(c: &UsageCount, refusals: &[Refusal]) -> maud::Markup {
    html! {
        section.card.agent-card {
            div.card-head {
                @match &c.agent {
                    Some(a) => h2 { span.agent { (a) } " " span.hint { "(name chosen by the agent)" } },
                    None => h2 { "Unattributed" " " span.hint { "(requests without a valid token of yours)" } },
                }
            }
            dl.facts {
                dt { "Allowed" } dd.allowed { (c.allowed) }
                dt { "Refused" } dd.refused { (c.refused) }
                dt { "Last reported" } dd { (when(c.last)) }
            }
            @if !refusals.is_empty() {
                table.refusals {
                    caption { "Latest refusals" }
                    thead { tr { th { "When" } th { "Request" } th { "Error" } th { "Why" } th { "Service" } } }
                    tbody {
                        @for f in refusals {
                            tr {
                                td { (when(f.ts)) }
                                td { code { (f.method) " " (f.path) } }
                                td { code.code { (f.code) } }
                                td { code.reason { (f.reason) } }
                                td { code { (f.service) } }
                            }
                        }
                    }
                }
            }
        }
    }
}
