//! /account's passkeys: the list, adding one (password again, then the
//! browser's answer to a challenge bound to this session) and removing one
//! (password again). Each change is audited (`passkey_enrolled`,
//! `passkey_removed`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use protonpass_agent::Error;
use serde_json::json;

use super::account::AccountForm;
use super::mfa::{Record, load};
use super::passkey::{self, Answer, MAX_PASSKEYS};
use super::{B, redirect, service_error, view};
use crate::store::{self, WebSession};

/// The passkey part of /account for an owner with two-step sign-in on.
pub(super) fn section(b: &crate::service::Broker, s: &WebSession, r: &Record) -> Markup {
    html! {
        h2 { "Passkeys" }
        @if r.passkeys.is_empty() {
            p { "No passkey yet. A passkey (a security key, or the lock of this device) can stand in for the code at sign-in." }
        } @else {
            table {
                thead { tr { th { "Name" } th { "Added" } th { "Remove (your password)" } } }
                tbody {
                    @for p in &r.passkeys {
                        tr {
                            td { (p.name) }
                            td { (view::when(p.added)) }
                            td {
                                form.inline method="post" action="/account/passkey/remove" {
                                    input type="hidden" name="csrf" value=(s.csrf);
                                    input type="hidden" name="id" value=(p.id);
                                    input type="password" name="password" autocomplete="current-password"
                                        aria-label=(format!("Your password, to remove {}", p.name)) required;
                                    button.danger type="submit" { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if passkey::relying_party(b).is_none() {
            p.hint { "Passkeys need the broker to be reached by a host name (its issuer is an IP address)." }
        } @else if r.passkeys.len() < MAX_PASSKEYS {
            form.card method="post" action="/account/passkey/new" {
                input type="hidden" name="csrf" value=(s.csrf);
                label { "Your password"
                    input type="password" name="password" autocomplete="current-password" required; }
                label { "Code from your authenticator app, or a recovery code"
                    input type="text" name="code" autocomplete="one-time-code" inputmode="numeric" maxlength="64" required; }
                button type="submit" { "Add a passkey" }
            }
        }
    }
}

/// `POST /account/passkey/new`: the password again, then a page that asks
/// the browser for a new passkey.
pub(super) async fn new(State(b): B, form: AccountForm) -> Response {
    let AccountForm { s, .. } = &form;
    let r = match load(&b, &s.owner).await {
        Ok(Some(r)) if r.confirmed => r,
        Ok(_) => return redirect("/account"),
        Err(e) => return service_error(&e, Some(s)),
    };
    let Some((rp_id, _)) = passkey::relying_party(&b) else {
        return redirect("/account");
    };
    // A new factor needs the password and a current one: a stolen session
    // with the password cannot add the attacker's own authenticator.
    if let Err(r) = form.reauthenticate(&b, Some(&r)).await {
        return r;
    }
    let challenge = or_error_page!(
        passkey::issue(&b, &s.owner, "create", &s.id_hash).await,
        Some(s)
    );
    let ids = passkey::credential_ids(&r);
    let user = passkey::user_handle(&b, &s.owner);
    view::page(
        StatusCode::OK,
        "Add a passkey",
        Some(s),
        html! {
            p { "Name the passkey, then let the browser create it (it may ask you to touch your security key or unlock this device). This page works for two minutes." }
            form.card method="post" action="/account/passkey/add" {
                input type="hidden" name="csrf" value=(s.csrf);
                label { "Name"
                    input type="text" name="name" maxlength="64" placeholder="Security key"; }
                (passkey::fields(&[
                    ("challenge", &challenge),
                    ("rp-id", &rp_id),
                    ("user-id", &user),
                    ("user-name", &s.owner),
                    ("credentials", &ids),
                ], "Create the passkey", true))
            }
            p { a href="/account" { "Cancel" } }
        },
    )
}

/// `POST /account/passkey/add`: the browser's new credential.
pub(super) async fn add(State(b): B, form: AccountForm) -> Response {
    let AccountForm { s, f, .. } = &form;
    let Some(a) = Answer::from_form(f) else {
        return view::message(
            passkey::REFUSED,
            "No passkey was added",
            "The browser sent no passkey.",
            Some(s),
        );
    };
    let now = b.clock.now();
    let name = f.get("name").unwrap_or("");
    let (_, pk) = match passkey::check_new(&b, &s.owner, &s.id_hash, &a, name, now).await {
        Ok(Ok(x)) => x,
        Ok(Err(why)) => {
            return view::message(passkey::REFUSED, "No passkey was added", why, Some(s));
        }
        Err(e) => return service_error(&e, Some(s)),
    };
    let o = s.owner.clone();
    let r = store::write(&b.store, move |tx| {
        let raw = tx
            .mfa_get(&o)?
            .ok_or_else(|| Error::InvalidRequest("two-step sign-in is off".into()))?;
        let mut r: Record = serde_json::from_str(&raw)
            .map_err(|_| Error::Storage("an unreadable second-factor record".into()))?;
        if r.passkeys.len() >= MAX_PASSKEYS || r.passkeys.iter().any(|p| p.id == pk.id) {
            return Ok(false);
        }
        let detail = json!({"factor": "passkey", "name": pk.name, "alg": pk.alg});
        r.passkeys.push(pk);
        let data = serde_json::to_string(&r).map_err(|e| Error::Server(e.to_string()))?;
        tx.mfa_put(&o, &data, now)?;
        tx.audit_append(now, &o, "passkey_enrolled", &detail.to_string())?;
        Ok(true)
    })
    .await;
    match r {
        Ok(true) => redirect("/account"),
        Ok(false) => view::message(
            passkey::REFUSED,
            "No passkey was added",
            "This passkey is added already, or you have as many as the dashboard keeps.",
            Some(s),
        ),
        Err(e) => service_error(&e, Some(s)),
    }
}

/// `POST /account/passkey/remove`: the password again, then the passkey goes.
pub(super) async fn remove(State(b): B, form: AccountForm) -> Response {
    let AccountForm { s, f, .. } = &form;
    let id = f.get("id").unwrap_or("").to_owned();
    if let Err(r) = form.reauthenticate(&b, None).await {
        return r;
    }
    let (o, now) = (s.owner.clone(), b.clock.now());
    let r = store::write(&b.store, move |tx| {
        let Some(raw) = tx.mfa_get(&o)? else {
            return Ok(());
        };
        let mut r: Record = serde_json::from_str(&raw)
            .map_err(|_| Error::Storage("an unreadable second-factor record".into()))?;
        let Some(i) = r.passkeys.iter().position(|p| p.id == id) else {
            return Ok(());
        };
        let gone = r.passkeys.remove(i);
        let data = serde_json::to_string(&r).map_err(|e| Error::Server(e.to_string()))?;
        tx.mfa_put(&o, &data, now)?;
        tx.audit_append(
            now,
            &o,
            "passkey_removed",
            &json!({"factor": "passkey", "name": gone.name}).to_string(),
        )
        .map(drop)
    })
    .await;
    match r {
        Ok(()) => redirect("/account"),
        Err(e) => service_error(&e, Some(s)),
    }
}
