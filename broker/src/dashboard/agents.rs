//! The agents page: every live grant per agent with its scopes, audiences,
//! expiry, last use and live access tokens; revocation of a token, a grant or
//! everything of an agent; pre-authorized grants (enrollment code shown once);
//! and the spend budgets of a grant, shown with what is spent and set or
//! replaced per scope (as `grant budget` does).
//! Revocations go through the same service calls as the CLI, which put them in
//! the revocation feed before they return.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::view::{self, LIFETIMES, lifetime_choice, scope_list, short_thumbprint, when};
use super::{B, Page, redirect, service_error, signed_form};
use crate::model::{Grant, GrantStatus, TokenKind, TokenRec, TokenStatus};
use crate::service::budget::{BudgetSpec, BudgetView, budget_views};
use crate::store::{self, WebSession};
use protonpass_agent::budget::Period;

struct Row {
    grant: Grant,
    tokens: Vec<TokenRec>,
    last_use: Option<i64>,
    budgets: Vec<BudgetView>,
}

fn notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "token" => "The token was revoked. Services that check the revocation feed refuse it now.",
        "grant" => "The grant was revoked, with every token issued under it.",
        "agent" => "Everything of this agent was revoked.",
        "none" => "There was nothing left to revoke.",
        "budget" => "The budget was set. Spends from now on are checked against it.",
        _ => return None,
    })
}

pub(super) async fn agents_page(State(b): B, Page { s, q }: Page) -> Response {
    let now = b.clock.now();
    let owner = s.owner.clone();
    let rows = store::read(&b.store, move |tx| {
        let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        for g in tx.grants_of(&owner, None)? {
            if g.status == GrantStatus::Revoked || g.expires_at <= now {
                continue;
            }
            let all = tx.tokens_of_grant(&g.gid)?;
            let last_use = all.iter().map(|t| t.iat).max();
            let tokens = all
                .into_iter()
                .filter(|t| {
                    t.kind == TokenKind::Access && t.status == TokenStatus::Active && t.exp > now
                })
                .collect();
            let budgets = budget_views(tx, &g.gid, now)?;
            out.entry(g.agent.clone()).or_default().push(Row {
                grant: g,
                tokens,
                last_use,
                budgets,
            });
        }
        Ok(out)
    })
    .await;
    let rows = or_error_page!(rows, Some(&s));
    let body = html! {
        @if let Some(n) = notice(q.get("done")) { p.notice.ok role="status" { (n) } }
        @if rows.is_empty() {
            p.empty { "No agent may act for you right now." }
        }
        @for (agent, grants) in &rows {
            section.card.agent-card {
                div.card-head {
                    h2 { span.agent { (agent) } " " span.hint { "(name chosen by the agent)" } }
                    (view::button_form(&s, "/agents/revoke-agent", ("agent", agent), "danger", "Cut off this agent"))
                }
                @for r in grants {
                    (grant_view(&s, r, now))
                }
            }
        }
        section.card {
            h2 { "Allow an agent ahead of time" }
            p.hint { "For an agent that runs without you (a server job). You get a one-time enrollment code to give it; it must use the code within 15 minutes." }
            form method="post" action="/agents/grant" {
                input type="hidden" name="csrf" value=(s.csrf);
                label { "Agent name" input type="text" name="agent" required maxlength="128"; }
                label { "What it may do (scopes, separated by spaces, e.g. " code { "calendar:read" } ")"
                    input type="text" name="scope" required maxlength="2048"; }
                label { "Service it may use (e.g. https://api.example)" input type="text" name="audience" required maxlength="512"; }
                label { "Spend budgets, one per line, optional (" code { "payment:execute=500/EUR/day" } ": scope, limit, currency, and hour, day, week, month or total; UTC calendar periods)"
                    textarea name="budget" maxlength="2048" {} }
                (lifetime_choice())
                button.primary type="submit" { "Create and show the code" }
            }
        }
    };
    view::page(StatusCode::OK, "Agents", Some(&s), body)
}

fn grant_view(s: &WebSession, r: &Row, now: i64) -> maud::Markup {
    let g = &r.grant;
    let aud = g.audiences.first().map(String::as_str);
    html! {
        div.grant {
            (scope_list(&g.scope, aud))
            dl.facts {
                dt { "Services" } dd { @for a in &g.audiences { code { (a) } " " } }
                @if g.status == GrantStatus::Enrolling {
                    dt { "Status" } dd { "Waiting for the agent to use its enrollment code (until " (when(g.expires_at)) ")" }
                } @else {
                    dt { "Allowed until" } dd { (when(g.expires_at)) }
                }
                dt { "Last used" } dd { @match r.last_use { Some(t) => (when(t)), None => "never" } }
                dt { "Agent key" } dd { @match &g.jkt { Some(j) => code title=(j) { (short_thumbprint(j)) }, None => "not bound yet" } }
                dt { "Grant id" } dd { code { (g.gid) } }
                @for bv in &r.budgets {
                    dt { "Budget " code { (bv.scope) } }
                    dd { (bv.spent) " of " (bv.limit) " " (bv.currency) " spent this " (bv.period) " (UTC); " (bv.remaining) " remain" }
                }
            }
            @if g.status != GrantStatus::Revoked {
                (budget_form(s, g))
            }
            @if !r.tokens.is_empty() {
                table.tokens {
                    caption { "Access tokens in use" }
                    thead { tr { th { "Token id" } th { "May do" } th { "Service" } th { "Expires" } th {} } }
                    tbody {
                        @for t in &r.tokens {
                            tr {
                                td { code { (t.jti) } }
                                td { (t.scope) }
                                td { (t.aud.as_deref().unwrap_or("")) }
                                td { (when(t.exp)) " " span.hint { "(in " (view::duration(((t.exp - now) / 60).max(1) * 60)) ")" } }
                                td {
                                    (view::button_form(s, "/agents/revoke", ("id", &t.jti), "small", "Revoke token"))
                                }
                            }
                        }
                    }
                }
            }
            (view::button_form(s, "/agents/revoke", ("id", &g.gid), "danger", "Revoke this grant"))
        }
    }
}

/// The scopes a budget can limit on `g`: its `resource:action`s.
fn budget_scopes(g: &Grant) -> Vec<String> {
    let mut out: Vec<String> = g
        .scope
        .split(' ')
        .filter(|x| !x.is_empty())
        .map(|x| x.split(':').take(2).collect::<Vec<_>>().join(":"))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Set or replace the budget of one scope of the grant (what spent so far in
/// the period still counts against the new limit).
fn budget_form(s: &WebSession, g: &Grant) -> maud::Markup {
    html! {
        details.budget-form {
            summary { "Set or change a spend budget" }
            form method="post" action="/agents/budget" {
                input type="hidden" name="csrf" value=(s.csrf);
                input type="hidden" name="grant" value=(g.gid);
                label { "Scope"
                    select name="scope" required {
                        @for sc in budget_scopes(g) { option value=(sc) { (sc) } }
                    }
                }
                label { "Limit (e.g. 500 or 12.50)" input type="text" name="limit" required maxlength="40" inputmode="decimal"; }
                label { "Currency (ISO 4217, e.g. EUR)" input type="text" name="currency" required maxlength="3" value="EUR"; }
                label { "Per (UTC calendar periods)"
                    select name="period" {
                        @for p in ["day", "hour", "week", "month", "total"] {
                            option value=(p) { (if p == "total" { "the grant's whole life" } else { p }) }
                        }
                    }
                }
                button type="submit" { "Save the budget" }
            }
        }
    }
}

/// `POST /agents/budget`: set or replace a budget of one of the owner's
/// grants; bad input changes nothing and says why.
pub(super) async fn set_budget(State(b): B, headers: HeaderMap, body: Bytes) -> Response {
    let (s, f) = match signed_form(&b, &headers, &body, "/agents").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let spec = Period::parse(f.text("period").unwrap_or("")).map(|period| BudgetSpec {
        scope: f.text("scope").unwrap_or("").to_owned(),
        limit: f.text("limit").unwrap_or("").to_owned(),
        currency: f.text("currency").unwrap_or("").to_ascii_uppercase(),
        period,
    });
    let spec = or_error_page!(spec, Some(&s));
    let gid = f.text("grant").unwrap_or("");
    match b.budget_set(&s.owner, gid, spec).await {
        Ok(_) => redirect("/agents?done=budget"),
        // Unknown, or another owner's: one answer for both (no oracle).
        Err(protonpass_agent::Error::InvalidRequest(m)) if m.starts_with("no grant ") => {
            view::message(StatusCode::NOT_FOUND, "Not found", &m, Some(&s))
        }
        Err(e) => service_error(&e, Some(&s)),
    }
}

pub(super) async fn revoke(b: B, headers: HeaderMap, body: Bytes) -> Response {
    let (s, f) = match signed_form(&b, &headers, &body, "/agents").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = f.text("id").unwrap_or("");
    match b.0.revoke_id(&s.owner, id).await {
        Ok(r) if !r.tokens.is_empty() => redirect("/agents?done=token"),
        Ok(_) => redirect("/agents?done=grant"),
        // Unknown, or another owner's: one answer for both (no oracle).
        Err(protonpass_agent::Error::InvalidRequest(m)) => {
            view::message(StatusCode::NOT_FOUND, "Not found", &m, Some(&s))
        }
        Err(e) => service_error(&e, Some(&s)),
    }
}

pub(super) async fn revoke_agent(b: B, headers: HeaderMap, body: Bytes) -> Response {
    let (s, f) = match signed_form(&b, &headers, &body, "/agents").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let agent = f.get("agent").unwrap_or("");
    match b.0.revoke_agent(&s.owner, agent).await {
        Ok(r) if r.grants.is_empty() => redirect("/agents?done=none"),
        Ok(_) => redirect("/agents?done=agent"),
        Err(e) => service_error(&e, Some(&s)),
    }
}

pub(super) async fn create_grant(State(b): B, headers: HeaderMap, body: Bytes) -> Response {
    let (s, f) = match signed_form(&b, &headers, &body, "/agents").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let ttl = f
        .get("ttl")
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or(LIFETIMES[0]);
    let audiences: Vec<String> = f
        .text("audience")
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let budgets: Result<Vec<BudgetSpec>, _> = f
        .text("budget")
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(BudgetSpec::parse)
        .collect();
    let budgets = or_error_page!(budgets, Some(&s));
    let e = match b
        .grant_create(
            &s.owner,
            f.text("agent").unwrap_or(""),
            f.text("scope").unwrap_or(""),
            &audiences,
            ttl,
            budgets,
        )
        .await
    {
        Ok(e) => e,
        Err(e) => return service_error(&e, Some(&s)),
    };
    let aud = e.audiences.first().map(String::as_str);
    view::page(
        StatusCode::OK,
        "Enrollment code",
        Some(&s),
        html! {
            p.notice.ok { "Give this code to " strong.agent { (e.agent) } ". It works once, until " (when(e.code_expires_at)) ", and is not shown again." }
            p { code.secret { (e.enrollment_code) } }
            (scope_list(&e.scope, aud))
            p { "Once used, the agent may act for you for " (view::duration(e.ttl)) ". " a href="/agents" { "Back to Agents" } }
        },
    )
}
