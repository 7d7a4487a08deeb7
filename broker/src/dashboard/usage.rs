//! The usage page: what the owner's services reported about each agent's
//! requests (`POST /audit/usage`): how many were allowed and refused, and the
//! latest refusals with their error code and finer reason. Requests no token
//! of the owner could be tied to (no token, a forged one, another owner's)
//! are shown apart, as unattributed.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde_json::Value;

use super::view::{self, when};
use super::{B, Page, service_error};
use crate::store::{self, UsageCount, UsageSlot};

/// Latest refusals shown per agent.
const REFUSALS: i64 = 5;
/// The chart: this many slots of this many seconds, ending now.
const SLOTS: i64 = 24;
const SLOT: i64 = 3600;

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

pub(super) async fn usage_page(State(b): B, Page { s, .. }: Page) -> Response {
    let owner = s.owner.clone();
    let now = b.clock.now();
    // Slots end at the end of the current hour: the last bar is this hour.
    let since = (now / SLOT + 1 - SLOTS) * SLOT;
    let got = store::read(&b.store, move |tx| {
        Ok((
            tx.usage_counts(&owner)?,
            tx.usage_refusals(&owner, REFUSALS)?,
            tx.usage_series(&owner, since, SLOT)?,
        ))
    })
    .await;
    let (counts, recs, series) = or_error_page!(got, Some(&s));
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
            (agent_card(c, refusals.get(&c.agent).map_or(&[][..], Vec::as_slice),
                        chart(since, series.iter().filter(|x| x.agent == c.agent))))
        }
    };
    view::page(StatusCode::OK, "Usage", Some(&s), body)
}

/// Calls and refusals per hour over the last day, as an inline SVG bar chart
/// (no script, no image request: it passes the page's CSP). Each bar has a
/// title with its numbers, and the chart a text summary for screen readers.
fn chart<'a>(since: i64, slots: impl Iterator<Item = &'a UsageSlot>) -> maud::Markup {
    let mut allowed = [0i64; SLOTS as usize];
    let mut refused = [0i64; SLOTS as usize];
    for x in slots {
        if let Ok(i) = usize::try_from(x.slot)
            && i < allowed.len()
        {
            allowed[i] += x.allowed;
            refused[i] += x.refused;
        }
    }
    let top = (0..allowed.len())
        .map(|i| allowed[i] + refused[i])
        .max()
        .unwrap_or(0)
        .max(1);
    let (bar, height) = (10i64, 40i64);
    let h = |n: i64| n * height / top;
    let (total_ok, total_no): (i64, i64) = (allowed.iter().sum(), refused.iter().sum());
    let label = format!("Last 24 hours: {total_ok} allowed, {total_no} refused");
    html! {
        figure.usage-chart {
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {} {}", bar * SLOTS, height + 1))
                width=(bar * SLOTS * 2) height=((height + 1) * 2) role="img" aria-label=(label) {
                @for i in 0..allowed.len() {
                    @let (ok, no) = (allowed[i], refused[i]);
                    @let x = bar * i as i64;
                    @let start = since + SLOT * i as i64;
                    g {
                        title { (when(start)) ": " (ok) " allowed, " (no) " refused" }
                        rect.bg x=(x) y="0" width=(bar - 1) height=(height) fill="#f2f2f2" {}
                        @if ok > 0 { rect.allowed x=(x) y=(height - h(ok + no)) width=(bar - 1) height=(h(ok).max(1)) fill="#2e7d32" {} }
                        @if no > 0 { rect.refused x=(x) y=(height - h(no).max(1)) width=(bar - 1) height=(h(no).max(1)) fill="#c62828" {} }
                    }
                }
                line x1="0" y1=(height) x2=(bar * SLOTS) y2=(height) stroke="#999" stroke-width="1" {}
            }
            figcaption { (label) ", per hour (green allowed, red refused)." }
        }
    }
}

fn agent_card(c: &UsageCount, refusals: &[Refusal], chart: maud::Markup) -> maud::Markup {
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
            (chart)
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
