//! `/device`, the RFC 8628 verification URI: the owner enters (or confirms) the
//! code an agent shows, sees what it asks for, narrows it, and approves or denies
//! through the same service call as `protonpass-broker approve` / `deny`.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use protonpass_agent::{Error, Result};
use serde_json::json;

use super::scope_view::{any_high_risk, scope_choices};
use super::second_factor;
use super::view::{self, describe_scope, duration, lifetime_choice, when};
use super::{B, Decided, query, service_error, session, signed_form, source, to_login};
use crate::audit::secret_hash;
use crate::model::DeviceReq;
use crate::scope_catalog::ScopeCatalog;
use crate::service::budget::BudgetSpec;
use crate::service::device::{Decision, GUESS_BUDGET, normalize_user_code};
use crate::service::{AudienceStatus, Broker};
use crate::store::{self, WebSession};

/// Find the pending request with `user_code`, under the same wrong-code limits
/// (same counters) as the approval itself.
async fn lookup(b: &Broker, owner: &str, src: &str, user_code: &str) -> Result<DeviceReq> {
    let now = b.clock.now();
    let normalized = normalize_user_code(user_code);
    let (owner, src) = (owner.to_owned(), src.to_owned());
    let window = b.cfg.device_ttl;
    store::write(&b.store, move |tx| {
        let live = tx.device_live_count(now)?.max(1);
        let (ko, ks) = (format!("owner:{owner}"), format!("source:{src}"));
        let used = tx
            .attempt_sum(&ko, now - window)?
            .max(tx.attempt_sum(&ks, now - window)?);
        if live > GUESS_BUDGET {
            tx.audit_append(now, &owner, "user_code_locked", &json!({"source": src, "live": live}).to_string())?;
            return Ok(Err(Error::TemporarilyUnavailable(format!(
                "{live} agents are waiting for approval, more than this form may check a code against. \
                 Approve on the broker's machine (protonpass-broker pending, then approve CODE), or retry in up to {} minutes.",
                window / 60
            ))));
        }
        if used + live > GUESS_BUDGET {
            tx.audit_append(now, &owner, "user_code_locked", &json!({"source": src}).to_string())?;
            return Ok(Err(Error::TemporarilyUnavailable(format!(
                "Too many wrong codes were entered. Code entry is paused for up to {} minutes.",
                window / 60
            ))));
        }
        let found = match &normalized {
            Some(n) => tx.device_by_user_hash(&secret_hash(n), now)?,
            None => None,
        };
        match found {
            Some(d) => Ok(Ok(d)),
            None => {
                tx.attempt_add(&ko, now, live)?;
                tx.attempt_add(&ks, now, live)?;
                tx.audit_append(now, &owner, "user_code_wrong", &json!({"source": src}).to_string())?;
                Ok(Err(Error::InvalidGrant(
                    "No agent is waiting with this code. Check the code your agent shows; codes expire after a few minutes.".into(),
                )))
            }
        }
    })
    .await?
}

fn code_form(s: &WebSession, code: &str, prefilled: bool, error: Option<&str>) -> Markup {
    html! {
        @if prefilled {
            p { "An agent asked you to let it act for you. Check that this code is exactly the one your agent shows, then continue." }
        } @else {
            p { "Enter the code your agent shows (for example " code { "BCDF-GHJK" } ")." }
        }
        (view::alert(error))
        form.card method="post" action="/device" {
            input type="hidden" name="csrf" value=(s.csrf);
            input type="hidden" name="step" value="lookup";
            label { "Code"
                input.code type="text" name="user_code" value=(code) autocomplete="off"
                    autocapitalize="characters" spellcheck="false" maxlength="32" required; }
            button.primary type="submit" { @if prefilled { "The code matches: continue" } @else { "Continue" } }
        }
    }
}

pub(super) async fn device_page(
    State(b): B,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let here = match &raw {
        Some(q) if !q.is_empty() => format!("/device?{q}"),
        _ => "/device".to_owned(),
    };
    let Some(s) = session(&b, &headers).await else {
        return to_login(&here);
    };
    let q = query(raw.as_deref());
    let code = q.text("user_code").unwrap_or("");
    let code: String = code.chars().take(32).collect();
    view::page(
        StatusCode::OK,
        "Approve an agent",
        Some(&s),
        code_form(&s, &code, !code.is_empty(), None),
    )
}

/// What the approval form says about the audience: who registered it, its
/// scope catalog, and whether a high-risk scope needs the second factor.
#[derive(Clone, Copy)]
struct About<'a> {
    reg: Option<&'static str>,
    catalog: Option<&'a ScopeCatalog>,
    ask_code: bool,
    /// A passkey may stand in for the code (its fields and script).
    passkey: Option<&'a Markup>,
}

/// The approval form. The user code is not stored (only its hash), so the form
/// carries the code the owner entered.
fn approval(
    s: &WebSession,
    d: &DeviceReq,
    about: &About<'_>,
    code: &str,
    now: i64,
    error: Option<&str>,
) -> Markup {
    let About {
        reg,
        catalog,
        ask_code,
        passkey,
    } = *about;
    let scopes: Vec<&str> = d.scope.split(' ').filter(|x| !x.is_empty()).collect();
    let aud = d.resource.as_deref();
    html! {
        (view::alert(error))
        section.card {
            p.lead { "Allow " strong.agent { (d.client_id) } " to act for you?" }
            p.hint { "This name was chosen by the agent itself and is not verified. Approve only if you just started this agent." }
            dl.facts {
                dt { "Service it will use" }
                dd { @match aud { Some(a) => code { (a) }, None => "not named: choose below" }
                     @if let Some(r) = reg { " — " (r) } }
                dt { "Agent key" }
                @match d.jkt.as_deref() {
                    Some(k) => dd { code.raw title=(k) { (k.get(..12).unwrap_or(k)) "…" } " — the fingerprint of the key this agent holds; only that key can collect the access." },
                    None => dd { "Bound when the agent collects its access; its short fingerprint then appears on the Agents page." },
                }
                @if let Some(r) = d.reason.as_deref() {
                    dt { "Why, in the agent's own words" }
                    dd { q.reason { (r) } " — written by the agent, not checked by the broker." }
                }
                dt { "Request expires" }
                dd { "in " (duration((d.expires_at - now).max(0))) }
            }
        }
        form.card method="post" action="/device" {
            input type="hidden" name="csrf" value=(s.csrf);
            input type="hidden" name="step" value="decide";
            input type="hidden" name="user_code" value=(code);
            fieldset {
                legend { "What it may do (untick anything you do not want to allow)" }
                (scope_choices(&scopes, aud, catalog))
            }
            @if aud.is_none() {
                label { "Which service may it use? (for example https://api.example)"
                    input type="text" name="audience" required maxlength="512"; }
            }
            label { "Spend budgets, one per line, optional (" code { "payment:execute=500/EUR/day" } ": scope, limit, currency, and hour, day, week, month or total; UTC calendar periods)"
                textarea name="budget" maxlength="2048" {} }
            (lifetime_choice())
            @if ask_code {
                label { "Code from your authenticator app, or a recovery code (a high-risk permission is asked for: approving it needs your second factor again)"
                    input type="text" name="code" autocomplete="one-time-code" inputmode="numeric" maxlength="64"; }
                @if let Some(p) = passkey { (p) }
            }
            div.actions {
                button.primary type="submit" name="action" value="approve" { "Approve" }
                button.danger type="submit" name="action" value="deny" { "Deny" }
            }
        }
    }
}

/// What the owner should know about who registered an audience.
pub(super) fn registration_note(st: &Result<AudienceStatus>) -> &'static str {
    match st {
        Ok(AudienceStatus::Own) => "a service you registered.",
        Ok(AudienceStatus::Shared) => {
            "a shared service registered by another owner for all its users."
        }
        Ok(AudienceStatus::Unregistered) => {
            "not registered on this broker: no owner has claimed it, so any owner can grant it."
        }
        Err(_) => "registered by another owner: only that owner can grant it.",
    }
}

async fn render_approval(
    b: &Broker,
    s: &WebSession,
    d: &DeviceReq,
    code: &str,
    now: i64,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let reg = match &d.resource {
        Some(a) => Some(registration_note(&b.audience_status_of(&s.owner, a).await)),
        None => None,
    };
    let catalog = match &d.resource {
        Some(a) => b.catalog_of(a).await.ok(),
        None => None,
    };
    let scopes: Vec<&str> = d.scope.split(' ').filter(|x| !x.is_empty()).collect();
    let ask_code = any_high_risk(&scopes, catalog.as_ref())
        && super::mfa::required(b, &s.owner).await.unwrap_or(true);
    let passkey = match super::mfa::load(b, &s.owner).await {
        Ok(Some(r)) if ask_code => Some(
            super::passkey::use_fields(
                b,
                &s.owner,
                &r,
                &s.id_hash,
                "Approve with a passkey",
                "button[name=action][value=approve]",
            )
            .await,
        ),
        _ => None,
    };
    view::page(
        status,
        "Approve an agent",
        Some(s),
        approval(
            s,
            d,
            &About {
                reg,
                catalog: catalog.as_ref(),
                ask_code,
                passkey: passkey.as_ref(),
            },
            code,
            now,
            error,
        ),
    )
}

pub(super) async fn device_submit(
    State(b): B,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, f) = match signed_form(&b, &headers, &body, "/device").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let src = source(&b, &peer, &headers);
    let code: String = f.text("user_code").unwrap_or("").chars().take(32).collect();
    let now = b.clock.now();
    let d = match lookup(&b, &s.owner, &src, &code).await {
        Ok(d) => d,
        Err(e) => {
            let status = match e {
                Error::TemporarilyUnavailable(_) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::BAD_REQUEST,
            };
            let msg = e.to_string();
            let msg = msg
                .split_once(": ")
                .map_or(msg.as_str(), |(_, m)| m)
                .to_owned();
            return view::page(
                status,
                "Approve an agent",
                Some(&s),
                code_form(&s, &code, false, Some(&msg)),
            );
        }
    };
    if f.get("step") != Some("decide") {
        return render_approval(&b, &s, &d, &code, now, None, StatusCode::OK).await;
    }
    let Decided {
        approve,
        ticked,
        ttl,
    } = match f.decision("agent") {
        Ok(d) => d,
        Err(msg) => {
            return render_approval(&b, &s, &d, &code, now, Some(&msg), StatusCode::BAD_REQUEST)
                .await;
        }
    };
    let budgets: Result<Vec<BudgetSpec>> = f
        .text("budget")
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| approve && !l.is_empty())
        .map(BudgetSpec::parse)
        .collect();
    let budgets = or_error_page!(budgets, Some(&s));
    // A high-risk permission (as the resource's catalog marks it) asks for
    // the second factor again, when the owner has one.
    if approve {
        let aud = d.resource.as_deref().or(f.text("audience"));
        let catalog = match aud {
            Some(a) => b.catalog_of(a).await.ok(),
            None => None,
        };
        if any_high_risk(&ticked, catalog.as_ref())
            && let Err(r) = second_factor::confirm(&b, &s, &headers, &peer, &f, "approve").await
        {
            return render_approval(&b, &s, &d, &code, now, Some(&r.message), r.status).await;
        }
    }
    let dec = Decision {
        approve,
        scope: approve.then(|| ticked.join(" ")),
        audience: f.text("audience").map(str::to_owned),
        ttl: if approve { ttl } else { 0 },
        budgets,
    };
    match b.decide(&s.owner, &src, &code, dec).await {
        Ok(done) if done.approved => {
            let aud = done.audience.clone();
            view::page(
                StatusCode::OK,
                "Approved",
                Some(&s),
                html! {
                    p.notice.ok { strong.agent { (done.agent) } " may now act for you for " (duration(done.ttl)) ", until about " (when(now + done.ttl)) "." }
                    ul.scopes {
                        @for sc in done.scope.split(' ').filter(|x| !x.is_empty()) {
                            li { (describe_scope(sc, aud.as_deref())) " " code.raw { (sc) } }
                        }
                    }
                    p { "The agent picks up its access by itself. You can cut it off at any time on the " a href="/agents" { "Agents" } " page." }
                },
            )
        }
        Ok(done) => view::page(
            StatusCode::OK,
            "Denied",
            Some(&s),
            html! {
                p.notice.ok { "You denied " strong.agent { (done.agent) } ". It gets no access." }
                p { a href="/device" { "Approve another agent" } }
            },
        ),
        Err(e) => service_error(&e, Some(&s)),
    }
}
