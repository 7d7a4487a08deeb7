//! Asking a signed-in owner for their second factor again, for an action
//! that deserves it (approving a high-risk permission), and spending a code
//! once accepted: a code (or recovery code) works once, whether it signed the
//! owner in or confirmed an action; a passkey's signature counter moves on.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, StatusCode};
use protonpass_agent::{Error, Result};
use serde_json::{Value, json};

use super::auth::Budget;
use super::mfa::{Matched, Record, load, matches};
use super::{Form, source};
use crate::service::Broker;
use crate::store::{self, WebSession};

/// Spend an accepted code in one transaction with a fresh read, so that two
/// racing requests with the same code cannot both pass; audited as `event`
/// with `detail` plus the factor used. Whether it was still unspent.
pub(super) async fn spend(
    b: &Broker,
    owner: &str,
    m: Matched,
    now: i64,
    event: &'static str,
    mut detail: Value,
) -> Result<bool> {
    let o = owner.to_owned();
    store::write(&b.store, move |tx| {
        let Some(raw) = tx.mfa_get(&o)? else {
            return Ok(false);
        };
        let mut r: Record = serde_json::from_str(&raw)
            .map_err(|_| Error::Storage("an unreadable second-factor record".into()))?;
        let what = match m {
            Matched::Totp(step) if step > r.last_step => {
                r.last_step = step;
                "totp"
            }
            Matched::Recovery(i) if i < r.recovery.len() => {
                r.recovery.remove(i);
                "recovery_code"
            }
            Matched::Passkey(id, counter) => {
                let Some(p) = r.passkeys.iter_mut().find(|p| p.id == id) else {
                    return Ok(false);
                };
                if !super::passkey::counter_ok(p.counter, counter) {
                    return Ok(false);
                }
                p.counter = counter;
                if let Some(d) = detail.as_object_mut() {
                    d.insert("passkey".into(), json!(p.name));
                }
                "passkey"
            }
            _ => return Ok(false),
        };
        let data = serde_json::to_string(&r).map_err(|e| Error::Server(e.to_string()))?;
        tx.mfa_put(&o, &data, now)?;
        if let Some(d) = detail.as_object_mut() {
            d.insert("factor".into(), json!(what));
            d.insert("recovery_codes_left".into(), json!(r.recovery.len()));
        }
        tx.audit_append(now, &o, event, &detail.to_string())?;
        Ok(true)
    })
    .await
}

/// Why the second factor was not confirmed, in words for the page.
pub(super) struct Refused {
    /// The answer's status.
    pub status: StatusCode,
    /// What the owner reads.
    pub message: String,
}

impl Refused {
    fn new(status: StatusCode, message: &str) -> Refused {
        Refused {
            status,
            message: message.to_owned(),
        }
    }
}

/// Check the code the form carries (field `code`) against the signed-in
/// owner's second factor and spend it; `what` names the action in the audit
/// (`second_factor_confirmed`). Wrong codes are charged against the same
/// budgets as sign-in, so that a stolen session cannot guess its way through.
/// An owner without a second factor passes.
pub(super) async fn confirm(
    b: &Broker,
    s: &WebSession,
    headers: &HeaderMap,
    peer: &ConnectInfo<SocketAddr>,
    f: &Form,
    what: &str,
) -> std::result::Result<(), Refused> {
    let server = |e: Error| {
        Refused::new(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("Could not check the code: {}", e.code()),
        )
    };
    let record = match load(b, &s.owner).await {
        Ok(Some(r)) if r.confirmed => r,
        Ok(_) => return Ok(()),
        Err(e) => return Err(server(e)),
    };
    let answer = super::passkey::Answer::from_form(f);
    let code: String = f.get("code").unwrap_or("").chars().take(64).collect();
    if code.trim().is_empty() && answer.is_none() {
        return Err(Refused::new(
            StatusCode::UNAUTHORIZED,
            "This approval needs your second factor again: enter a code from your authenticator app (or a recovery code). It includes a high-risk permission or goes beyond your limits.",
        ));
    }
    let now = b.clock.now();
    let src = source(b, peer, headers);
    let budget = match Budget::charge_now(b, headers, &s.owner, &src, now).await {
        Ok(Some(budget)) => budget,
        Ok(None) => {
            return Err(Refused::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many wrong codes: approvals that need a code are paused for 15 minutes.",
            ));
        }
        Err(e) => return Err(server(e)),
    };
    let wrong = || {
        Refused::new(
            StatusCode::UNAUTHORIZED,
            "That code or passkey was not accepted (a code works once). Nothing was approved.",
        )
    };
    let matched = match &answer {
        Some(a) => super::passkey::check(b, &s.owner, &s.id_hash, a, now).await,
        None => matches(b, &s.owner, &record, &code, now),
    };
    let Some(m) = matched.map_err(server)? else {
        return Err(wrong());
    };
    let detail = json!({ "action": what });
    if !spend(b, &s.owner, m, now, "second_factor_confirmed", detail)
        .await
        .map_err(server)?
    {
        return Err(wrong());
    }
    budget.refund(b, now).await;
    Ok(())
}
