//! Approval and grants: `approve`, `deny`, `grant create | list`, `revoke`.

use std::process::ExitCode;

use protonpass_agent::{Clock, Error, Result, SystemClock};
use serde_json::json;

use super::human::{at, dur, when};
use super::{Ctx, GrantCmd, out, scopes};
use crate::config::{check_audience, parse_duration};
use crate::model::GrantStatus;
use crate::service::budget::BudgetSpec;
use crate::service::device::{CLI_SOURCE, Decision};
use protonpass_agent::budget::Period;

pub(super) fn approve(
    c: &Ctx,
    user_code: &str,
    scope: &[String],
    audience: Option<&String>,
    ttl: &str,
    budget: &[String],
) -> Result<ExitCode> {
    if let Some(a) = audience {
        check_audience(a)?;
    }
    let dec = Decision {
        approve: true,
        scope: (!scope.is_empty()).then(|| scopes(scope)),
        audience: audience.cloned(),
        ttl: parse_duration(ttl)?,
        budgets: budget
            .iter()
            .map(|b| BudgetSpec::parse(b))
            .collect::<Result<Vec<_>>>()?,
    };
    let d =
        c.rt.block_on(c.b.decide(&c.owner, CLI_SOURCE, user_code, dec))?;
    out(
        c.json,
        json!(d),
        format!(
            "Approved: agent {:?} may use {} on {}; the grant lasts {} from when the agent collects it.",
            d.agent,
            d.scope,
            d.audience.clone().unwrap_or_default(),
            dur(d.ttl)
        ),
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn pending(c: &Ctx) -> Result<ExitCode> {
    let list = c.rt.block_on(c.b.pending())?;
    if c.json {
        say!("{}", json!(list));
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        say!("No device request is waiting for approval.");
        return Ok(ExitCode::SUCCESS);
    }
    let now = SystemClock.now();
    for w in &list {
        say!(
            "{}  agent {:?} asks for {}{}",
            w.user_code.as_deref().unwrap_or("(code not kept)"),
            w.agent,
            w.scopes.join(" "),
            w.audience
                .as_deref()
                .map(|a| format!(" on {a}"))
                .unwrap_or_else(|| " (no audience named: pass --audience to approve)".into())
        );
        if let Some(k) = &w.key_thumbprint {
            say!("    key thumbprint:  {k}");
        }
        if let Some(r) = &w.reason {
            say!("    reason (the agent's own words): {r:?}");
        }
        say!(
            "    asked at {}; the code expires at {}",
            at(w.created_at, now),
            at(w.expires_at, now)
        );
    }
    say!(
        "Approve with `protonpass-broker approve CODE`, refuse with `protonpass-broker deny CODE`."
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn deny(c: &Ctx, user_code: &str) -> Result<ExitCode> {
    let dec = Decision::deny();
    let d =
        c.rt.block_on(c.b.decide(&c.owner, CLI_SOURCE, user_code, dec))?;
    out(
        c.json,
        json!(d),
        format!("Denied: agent {:?} ({}).", d.agent, d.scope),
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn grant(c: &Ctx, cmd: &GrantCmd) -> Result<ExitCode> {
    match cmd {
        GrantCmd::Create {
            agent,
            scope,
            audience,
            ttl,
            budget,
        } => {
            for a in audience {
                check_audience(a)?;
            }
            let budgets = budget
                .iter()
                .map(|b| BudgetSpec::parse(b))
                .collect::<Result<Vec<_>>>()?;
            let e = c.rt.block_on(c.b.grant_create(
                &c.owner,
                agent,
                &scopes(scope),
                audience,
                parse_duration(ttl)?,
                budgets,
            ))?;
            out(
                c.json,
                json!(e),
                format!(
                    "Grant {} for agent {:?}: {} on {}; it lasts {} from redemption.\n\
                     Enrollment code (one use; the code expires at {}):\n{}",
                    e.grant_id,
                    e.agent,
                    e.scope,
                    e.audiences.join(", "),
                    dur(e.ttl),
                    at(e.code_expires_at, SystemClock.now()),
                    e.enrollment_code
                ),
            );
        }
        GrantCmd::Show { id } => return show(c, id),
        GrantCmd::StepupPolicy {
            id,
            max,
            currency,
            off,
        } => return super::stepup::policy(c, id, max.as_ref(), currency.as_ref(), *off),
        GrantCmd::Budget {
            id,
            scope,
            limit,
            currency,
            period,
        } => {
            let spec = BudgetSpec {
                scope: scope.clone(),
                limit: limit.clone(),
                currency: currency.clone(),
                period: Period::parse(period)?,
            };
            let v = c.rt.block_on(c.b.budget_set(&c.owner, id, spec))?;
            out(
                c.json,
                json!(v),
                format!(
                    "Budget of {} on grant {id}: {} {} per {} (UTC); {} spent, {} remain.",
                    v.scope, v.limit, v.currency, v.period, v.spent, v.remaining
                ),
            );
        }
        GrantCmd::List => {
            let list = c.rt.block_on(c.b.grant_list(&c.owner))?;
            if c.json {
                let v: Vec<_> = list.iter().map(|g| json!({
                    "grant_id": g.gid, "agent": g.agent, "scope": g.scope, "audiences": g.audiences,
                    "status": g.status, "origin": g.origin, "created_at": g.created_at,
                    "expires_at": g.expires_at, "jkt": g.jkt,
                })).collect();
                say!("{}", json!(v));
            } else {
                let now = SystemClock.now();
                if list.is_empty() {
                    say!("No grant yet; `protonpass-broker grant create` makes one.");
                }
                for g in list {
                    let state = match g.status {
                        GrantStatus::Enrolling => format!(
                            "waiting for enrollment; lasts {} from redemption",
                            dur(g.ttl)
                        ),
                        GrantStatus::Revoked => format!(
                            "revoked {}",
                            g.revoked_at
                                .map(when)
                                .unwrap_or_else(|| "(time unknown)".into())
                        ),
                        GrantStatus::Active if g.expires_at <= now => {
                            format!("expired {}", when(g.expires_at))
                        }
                        GrantStatus::Active => format!("active; expires {}", at(g.expires_at, now)),
                    };
                    say!(
                        "{}  agent {:?}  {}  on {}  ({}, created {})",
                        g.gid,
                        g.agent,
                        g.scope,
                        g.audiences.join(", "),
                        state,
                        when(g.created_at)
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(c: &Ctx, id: &str) -> Result<ExitCode> {
    let (g, budgets) = c.rt.block_on(c.b.grant_show(&c.owner, id))?;
    if c.json {
        say!(
            "{}",
            json!({
                "grant_id": g.gid, "agent": g.agent, "scope": g.scope, "audiences": g.audiences,
                "status": g.status, "origin": g.origin, "created_at": g.created_at,
                "expires_at": g.expires_at, "jkt": g.jkt, "budgets": budgets,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "{}  agent {:?}  {}  on {}  ({:?}, expires {})",
        g.gid,
        g.agent,
        g.scope,
        g.audiences.join(", "),
        g.status,
        when(g.expires_at)
    );
    if budgets.is_empty() {
        say!("No budget; `protonpass-broker grant budget` sets one.");
    }
    for b in budgets {
        say!(
            "  budget {}: {} {} per {} (UTC); {} spent, {} remain",
            b.scope,
            b.limit,
            b.currency,
            b.period,
            b.spent,
            b.remaining
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn revoke(c: &Ctx, id: Option<&String>, agent: Option<&String>) -> Result<ExitCode> {
    let r = match (id, agent) {
        (Some(id), None) => c.rt.block_on(c.b.revoke_id(&c.owner, id))?,
        (None, Some(a)) => c.rt.block_on(c.b.revoke_agent(&c.owner, a))?,
        _ => return Err(Error::InvalidRequest("give an id or --agent NAME".into())),
    };
    let changed = !r.grants.is_empty() || !r.tokens.is_empty() || r.cancelled_approvals > 0;
    if !changed && r.already_revoked.is_empty() {
        // Only --agent gets here: an unknown id is refused by the service.
        return Err(Error::InvalidRequest(format!(
            "nothing to revoke: agent {:?} has no grant of this owner; `protonpass-broker grant list` shows them",
            agent.map(String::as_str).unwrap_or_default()
        )));
    }
    let mut text = Vec::new();
    if !r.grants.is_empty() {
        text.push(format!(
            "Revoked {} grant(s): {}; {} live token(s) of them stop working with them.",
            r.grants.len(),
            r.grants.join(", "),
            r.covered_tokens
        ));
    }
    if !r.tokens.is_empty() {
        text.push(format!("Revoked token {}.", r.tokens.join(", ")));
    }
    if r.cancelled_approvals > 0 {
        text.push(format!(
            "Cancelled {} approval(s) the agent had not collected yet.",
            r.cancelled_approvals
        ));
    }
    if !r.already_revoked.is_empty() {
        text.push(format!(
            "Already revoked, nothing changed: {}.",
            r.already_revoked.join(", ")
        ));
    }
    out(c.json, json!(r), text.join("\n"));
    Ok(ExitCode::SUCCESS)
}
