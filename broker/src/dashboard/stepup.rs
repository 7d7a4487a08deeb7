//! The step-up page: the one-time authorizations the owner's agents asked
//! for (`spec/14-step-up.md`), each in plain words (who is paid, how much,
//! the agent's reason verbatim and escaped, what its budgets stand at, and
//! what it did lately under the same grant: its last spends, refunds,
//! reported calls and step-ups from the audit log), with Approve and Deny
//! behind the session's CSRF token.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use super::view::{self, describe_scope, duration, when};
use super::{B, Page, redirect, service_error, signed_form};
use crate::model::AuditRecord;
use crate::service::Broker;
use crate::service::budget::BudgetView;
use crate::store::{self, AuditQuery};

/// Records of the grant's recent activity shown beside each step-up.
const RECENT: usize = 8;
/// The grant's latest records read to find them (its other records, such as
/// its creation or a budget change, are not usage).
const RECENT_SCAN: i64 = 64;

/// One detail in words.
fn detail(d: &Value, aud: &str) -> Markup {
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or_default();
    match s("type") {
        "payment" => html! {
            li {
                "Pay " strong.amount { (s("amount")) " " (s("currency")) } " to "
                strong.payee { (s("payee")) } ", once " code.raw { (s("scope")) }
            }
        },
        _ => html! {
            @for sc in s("scope").split(' ').filter(|x| !x.is_empty()) {
                li { (describe_scope(sc, Some(aud))) ", once " code.raw { (sc) } }
            }
        },
    }
}

fn budgets(list: &[BudgetView]) -> Markup {
    html! {
        @if list.is_empty() {
            "no budget set"
        } @else {
            @for v in list {
                span.budget { code { (v.scope) } ": " (v.spent) " of " (v.limit) " " (v.currency)
                    " spent this " (v.period) ", " (v.remaining) " left" } " "
            }
        }
    }
}

/// The grant's latest usage records, newest first: calls reported by
/// services, spends, refunds, refused spends and step-ups. Selected by grant
/// id, which every such record carries, never by the self-asserted agent
/// name: another grant under the same name can neither appear here nor push
/// this grant's records out of view.
async fn recent(
    b: &Broker,
    owner: &str,
    gid: &str,
) -> protonpass_agent::Result<Vec<(i64, String, Value)>> {
    let q = AuditQuery {
        owner: owner.to_owned(),
        gid: Some(gid.to_owned()),
        limit: RECENT_SCAN,
        ..Default::default()
    };
    let recs: Vec<AuditRecord> = store::read(&b.store, move |tx| tx.audit_search(&q)).await?;
    Ok(recs
        .into_iter()
        .filter_map(|r| {
            let d: Value = serde_json::from_str(&r.detail).ok()?;
            let usage = match r.event.as_str() {
                "spend" | "refund" | "usage" => true,
                "rejected" => d.get("request").and_then(Value::as_str) == Some("spend"),
                e => e.starts_with("stepup_") && e != "stepup_policy",
            };
            usage.then_some((r.ts, r.event, d))
        })
        .take(RECENT)
        .collect())
}

/// One audit record of the agent in words: what, the scope, the amount.
fn activity(event: &str, d: &Value) -> (String, String, String) {
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or_default();
    let what = match event {
        "spend" => "Spent".to_owned(),
        "rejected" => format!("Spend refused ({})", s("error")),
        "refund" => "Refunded".to_owned(),
        "usage" => {
            let outcome = match (s("decision"), s("code")) {
                ("allow", _) => "allowed".to_owned(),
                (_, "") => "refused".to_owned(),
                (_, c) => format!("refused ({c})"),
            };
            format!("Called {} {}: {outcome}", s("method"), s("path"))
        }
        "stepup_request" => "Asked for a step-up".to_owned(),
        "stepup_approve" if s("by") == "policy" => "Step-up approved by policy".to_owned(),
        "stepup_approve" => "Step-up approved".to_owned(),
        "stepup_deny" => "Step-up denied".to_owned(),
        e => super::audit_page::label(e).to_owned(),
    };
    let mut scope = s("scope").to_owned();
    let mut amount = match (s("amount"), s("currency")) {
        ("", _) => String::new(),
        (a, c) => format!("{a} {c}"),
    };
    // A step-up's amount is in its authorization details.
    if let Some(Value::Array(items)) = d.get("authorization_details") {
        let pay = |k: &str| {
            items
                .iter()
                .filter_map(|i| i.get(k).and_then(Value::as_str))
                .collect::<Vec<_>>()
        };
        if amount.is_empty() {
            amount = pay("amount")
                .iter()
                .zip(pay("currency"))
                .map(|(a, c)| format!("{a} {c}"))
                .collect::<Vec<_>>()
                .join(", ");
        }
        if scope.is_empty() {
            scope = pay("scope").join(" ");
        }
    }
    (what, scope, amount)
}

fn recent_table(list: &[(i64, String, Value)]) -> Markup {
    html! {
        @if list.is_empty() {
            "nothing yet under this grant"
        } @else {
            table.recent {
                thead { tr { th { "When" } th { "What" } th { "Scope" } th { "Amount" } } }
                tbody {
                    @for (ts, event, d) in list {
                        @let (what, scope, amount) = activity(event, d);
                        tr { td { (when(*ts)) } td { (what) } td { code { (scope) } } td.amount { (amount) } }
                    }
                }
            }
        }
    }
}

pub(super) async fn stepup_page(State(b): B, Page { s, q }: Page) -> Response {
    let list = or_error_page!(b.stepups_pending(&s.owner).await, Some(&s));
    let mut standing = Vec::with_capacity(list.len());
    for w in &list {
        let budget = match b.grant_show(&s.owner, &w.grant_id).await {
            Ok((_, v)) => v,
            Err(e) => return service_error(&e, Some(&s)),
        };
        let usage = or_error_page!(recent(&b, &s.owner, &w.grant_id).await, Some(&s));
        standing.push((budget, usage));
    }
    let now = b.clock.now();
    // Every step-up is beyond what the owner allowed: approving one asks for
    // the second factor again, when the owner has one.
    let ask_code = super::mfa::required(&b, &s.owner).await.unwrap_or(true);
    let done = q.get("done").map(str::to_owned);
    let body = html! {
        @match done.as_deref() {
            Some("approved") => p.notice.ok role="status" { "Approved: the agent gets a one-time token for exactly this, valid for at most 5 minutes." },
            Some("denied") => p.notice.ok role="status" { "Denied: the agent's wait ends with an error." },
            _ => {},
        }
        @if list.is_empty() {
            p.empty { "No agent is asking for more than its access allows." }
        }
        @for (w, (budget, usage)) in list.iter().zip(&standing) {
            section.card.waiting {
                p.lead { strong.agent { (w.agent) } " " span.hint { "(name chosen by the agent)" } " asks, one time, to:" }
                ul {
                    @if let Value::Array(items) = &w.authorization_details {
                        @for d in items { (detail(d, &w.audience)) }
                    }
                }
                dl.facts {
                    dt { "Service" } dd { code { (w.audience) } }
                    dt { "Why, in the agent's own words" }
                    dd { @match w.binding_message.as_deref() {
                        Some(m) => { q.reason { (m) } " — written by the agent, not checked by the broker." },
                        None => "The agent gave no reason.",
                    } }
                    dt { "Budgets of this agent" } dd { (budgets(budget)) }
                    dt { "Its recent usage" } dd { (recent_table(usage)) }
                    dt { "Asked" } dd { (when(w.created_at)) }
                    dt { "Expires" } dd { "in " (duration((w.expires_at - now).max(0))) }
                }
                div.actions {
                    form.inline method="post" action="/stepup/decide" {
                        input type="hidden" name="csrf" value=(s.csrf);
                        input type="hidden" name="id" value=(w.id);
                        @if ask_code {
                            label { "Code from your authenticator app, or a recovery code"
                                input type="text" name="code" autocomplete="one-time-code" inputmode="numeric" maxlength="64"; }
                        }
                        button.primary type="submit" name="decision" value="approve" { "Approve once" }
                        " "
                        button.danger type="submit" name="decision" value="deny" { "Deny" }
                    }
                }
            }
        }
    };
    view::page(StatusCode::OK, "Step-up requests", Some(&s), body)
}

pub(super) async fn decide(
    State(b): B,
    peer: axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, f) = match signed_form(&b, &headers, &body, "/stepup").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let approve = match f.get("decision") {
        Some("approve") => true,
        Some("deny") => false,
        _ => {
            return view::message(
                StatusCode::BAD_REQUEST,
                "Choose approve or deny",
                "The form did not say whether to approve or deny.",
                Some(&s),
            );
        }
    };
    let id = f.text("id").unwrap_or("");
    if approve
        && let Err(e) = super::second_factor::confirm(&b, &s, &headers, &peer, &f, "stepup").await
    {
        return view::message(e.status, "Not approved", &e.message, Some(&s));
    }
    match b.stepup_decide(&s.owner, id, approve).await {
        Ok(_) if approve => redirect("/stepup?done=approved"),
        Ok(_) => redirect("/stepup?done=denied"),
        Err(protonpass_agent::Error::InvalidGrant(_)) => view::message(
            StatusCode::NOT_FOUND,
            "Not waiting any more",
            "This request was already decided, it expired, or its grant was revoked.",
            Some(&s),
        ),
        Err(e) => service_error(&e, Some(&s)),
    }
}
