//! The owner's account page (`/account`): enrolling and removing the second
//! factor (TOTP and recovery codes) from a signed-in session, and the
//! operator's `owner mfa-reset`. Sign-in with the factor is in `mfa.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use protonpass_agent::{Error, Result, b64};
use serde_json::json;
use totp_rs::Secret;
use zeroize::Zeroizing;

use super::auth::Budget;
use super::{B, Form, Page, redirect, service_error};
use super::{source, view};
use crate::audit::secret_hash;
use crate::gateway::vault::Vault;
use crate::service::Broker;
use crate::store::{self, WebSession};

use super::mfa::{Matched, RECOVERY_CODES, Record, SEALED_AS, load, matches, normalise_recovery};

pub(super) async fn account_page(State(b): B, Page { s, .. }: Page) -> Response {
    let r = or_error_page!(load(&b, &s.owner).await, Some(&s));
    match r {
        Some(r) if r.confirmed => view::page(
            StatusCode::OK,
            "Account",
            Some(&s),
            html! {
                p.notice { "Two-step sign-in is on: after your password, the dashboard asks for a code from your authenticator app (or one of your passkeys). "
                    (r.recovery.len()) " recovery codes are left." }
                form.card method="post" action="/account/mfa/disable" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    label { "Your password"
                        input type="password" name="password" autocomplete="current-password" required; }
                    label { "A current code (or a recovery code) to turn it off (this removes your passkeys too)"
                        input type="text" name="code" autocomplete="one-time-code" required; }
                    button type="submit" { "Turn off two-step sign-in" }
                }
                (super::passkey_pages::section(&b, &s, &r))
            },
        ),
        _ => view::page(
            StatusCode::OK,
            "Account",
            Some(&s),
            html! {
                p { "Two-step sign-in is off: your password alone opens this dashboard." }
                form.card method="post" action="/account/mfa/start" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    label { "Your password"
                        input type="password" name="password" autocomplete="current-password" required; }
                    button.primary type="submit" { "Set up an authenticator app" }
                }
            },
        ),
    }
}

/// A form posted to `/account` by the signed-in owner: the session, its
/// checked form, and what asking for the password again needs (the peer and
/// the headers, for the sign-in budgets). Extracting it answers for the
/// handler when there is no session (sign in first) or the form token is
/// refused.
pub(super) struct AccountForm {
    pub(super) s: WebSession,
    pub(super) f: Form,
    peer: SocketAddr,
    headers: HeaderMap,
}

impl FromRequest<Arc<Broker>> for AccountForm {
    type Rejection = Response;

    async fn from_request(req: Request, b: &Arc<Broker>) -> std::result::Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(&mut parts, b)
            .await
            .map_err(IntoResponse::into_response)?;
        let headers = parts.headers.clone();
        let body = Bytes::from_request(Request::from_parts(parts, body), b)
            .await
            .map_err(IntoResponse::into_response)?;
        let (s, f) = super::signed_form(b, &headers, &body, "/account").await?;
        Ok(Self {
            s,
            f,
            peer,
            headers,
        })
    }
}

/// Turning the second factor on or off needs the password again (and, to
/// turn it off, a current code), charged against the sign-in budgets like a
/// sign-in: a stolen session alone can neither lock the owner out with its
/// own authenticator nor remove the factor, and cannot guess either.
impl AccountForm {
    pub(super) async fn reauthenticate(
        &self,
        b: &Arc<Broker>,
        code_of: Option<&Record>,
    ) -> std::result::Result<(), Response> {
        let Self {
            s,
            f,
            peer,
            headers,
        } = self;
        let now = b.clock.now();
        let src = source(b, &ConnectInfo(*peer), headers);
        let budget = match Budget::charge_now(b, headers, &s.owner, &src, now).await {
            Ok(Some(budget)) => budget,
            Ok(None) => {
                return Err(view::message(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many wrong attempts",
                    "Changes to two-step sign-in are paused for 15 minutes.",
                    Some(s),
                ));
            }
            Err(e) => return Err(service_error(&e, Some(s))),
        };
        let pw_ok = match super::password::password_ok(b, &s.owner, f.get("password").unwrap_or(""))
            .await
        {
            Ok(ok) => ok,
            Err(e) => return Err(service_error(&e, Some(s))),
        };
        let code_ok = match code_of {
            None => true,
            Some(r) => match matches(b, &s.owner, r, f.get("code").unwrap_or(""), now) {
                Ok(m) => m.is_some(),
                Err(e) => return Err(service_error(&e, Some(s))),
            },
        };
        if !(pw_ok && code_ok) {
            return Err(view::message(
                StatusCode::UNAUTHORIZED,
                "That did not match",
                "The password or the code is not right; nothing changed.",
                Some(s),
            ));
        }
        budget.refund(b, now).await;
        Ok(())
    }
}

pub(super) async fn start(State(b): B, form: AccountForm) -> Response {
    let AccountForm { s, .. } = &form;
    match load(&b, &s.owner).await {
        Ok(Some(r)) if r.confirmed => return redirect("/account"),
        Ok(_) => {}
        Err(e) => return service_error(&e, Some(s)),
    }
    if let Err(r) = form.reauthenticate(&b, None).await {
        return r;
    }
    let mut secret = Zeroizing::new([0u8; 20]);
    if let Err(e) = b.rng.fill(secret.as_mut()) {
        return service_error(&e, Some(s));
    }
    let sealed = match Vault::load(&b.cfg.data, b.rng.as_ref())
        .and_then(|v| v.seal(&s.owner, SEALED_AS, secret.as_ref(), b.rng.as_ref()))
    {
        Ok(x) => x,
        Err(e) => return service_error(&e, Some(s)),
    };
    let record = Record {
        totp: b64::encode(&sealed),
        confirmed: false,
        last_step: 0,
        recovery: Vec::new(),
        passkeys: Vec::new(),
        challenges: Vec::new(),
    };
    let (o, now) = (s.owner.clone(), b.clock.now());
    let data = match serde_json::to_string(&record) {
        Ok(d) => d,
        Err(e) => return service_error(&Error::Server(e.to_string()), Some(s)),
    };
    if let Err(e) = store::write(&b.store, move |tx| tx.mfa_put(&o, &data, now)).await {
        return service_error(&e, Some(s));
    }
    let b32 = Secret::new(secret.to_vec().into_boxed_slice()).to_base32();
    let label = format!("Agent access ({}):{}", host_of(&b.issuer), s.owner);
    let uri = format!(
        "otpauth://totp/{}?secret={b32}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(&label),
        enc(&format!("Agent access ({})", host_of(&b.issuer))),
    );
    view::page(
        StatusCode::OK,
        "Set up an authenticator app",
        Some(s),
        html! {
            p { "Add this account to your authenticator app (any app that supports TOTP), by its setup key or by opening the link on your phone, then enter the code it shows." }
            p { "Setup key: " code.secret { (b32) } }
            p { a href=(uri) { "Open in an authenticator app" } }
            form.card method="post" action="/account/mfa/confirm" {
                input type="hidden" name="csrf" value=(s.csrf);
                label { "Code from the app"
                    input type="text" name="code" inputmode="numeric" autocomplete="one-time-code" required; }
                button.primary type="submit" { "Turn on two-step sign-in" }
            }
        },
    )
}

pub(super) fn host_of(issuer: &str) -> String {
    url::Url::parse(issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Recovery codes: 10 lower-case letters and digits each (about 50 bits),
/// shown as two groups of five.
fn recovery_codes(b: &Broker) -> Result<Vec<String>> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut raw = [0u8; 10];
            b.rng.fill(&mut raw)?;
            let s: String = raw
                .iter()
                .map(|x| char::from(ALPHABET[usize::from(*x) % ALPHABET.len()]))
                .collect();
            Ok(format!("{}-{}", &s[..5], &s[5..]))
        })
        .collect()
}

pub(super) async fn confirm(State(b): B, form: AccountForm) -> Response {
    let AccountForm { s, f, .. } = &form;
    let now = b.clock.now();
    let record = match load(&b, &s.owner).await {
        Ok(Some(r)) if !r.confirmed => r,
        Ok(_) => return redirect("/account"),
        Err(e) => return service_error(&e, Some(s)),
    };
    let code = f.get("code").unwrap_or("");
    let step = match matches(&b, &s.owner, &record, code, now) {
        Ok(Some(Matched::Totp(step))) => step,
        Ok(_) => {
            return view::message(
                StatusCode::BAD_REQUEST,
                "That code is not right",
                "Check the app's clock and try the setup again.",
                Some(s),
            );
        }
        Err(e) => return service_error(&e, Some(s)),
    };
    let codes = or_error_page!(recovery_codes(&b), Some(s));
    let done = Record {
        totp: record.totp,
        confirmed: true,
        last_step: step,
        recovery: codes
            .iter()
            .map(|c| secret_hash(&normalise_recovery(c)))
            .collect(),
        passkeys: Vec::new(),
        challenges: Vec::new(),
    };
    let (o, keep) = (s.owner.clone(), s.id_hash.clone());
    let r = store::write(&b.store, move |tx| {
        let data = serde_json::to_string(&done).map_err(|e| Error::Server(e.to_string()))?;
        tx.mfa_put(&o, &data, now)?;
        // Sessions signed in with the password alone end here.
        tx.sessions_end_others(&o, &keep)?;
        tx.audit_append(
            now,
            &o,
            "mfa_enrolled",
            &json!({"factor": "totp"}).to_string(),
        )
        .map(drop)
    })
    .await;
    if let Err(e) = r {
        return service_error(&e, Some(s));
    }
    view::page(
        StatusCode::OK,
        "Two-step sign-in is on",
        Some(s),
        html! {
            p { "Keep these recovery codes somewhere safe: each one signs you in once if you lose your phone. They are shown only now." }
            ul.codes { @for c in &codes { li { code { (c) } } } }
            p { a href="/agents" { "Done" } }
        },
    )
}

pub(super) async fn disable(State(b): B, form: AccountForm) -> Response {
    let AccountForm { s, .. } = &form;
    let now = b.clock.now();
    let record = match load(&b, &s.owner).await {
        Ok(Some(r)) if r.confirmed => r,
        Ok(_) => return redirect("/account"),
        Err(e) => return service_error(&e, Some(s)),
    };
    // A stolen session alone cannot remove the second factor.
    if let Err(r) = form.reauthenticate(&b, Some(&record)).await {
        return r;
    }
    let (o, keep) = (s.owner.clone(), s.id_hash.clone());
    let r = store::write(&b.store, move |tx| {
        tx.mfa_delete(&o)?;
        tx.sessions_end_others(&o, &keep)?;
        tx.audit_append(
            now,
            &o,
            "mfa_removed",
            &json!({"by": "dashboard"}).to_string(),
        )
    })
    .await;
    match r {
        Ok(_) => redirect("/account"),
        Err(e) => service_error(&e, Some(s)),
    }
}

/// `owner mfa-reset NAME`: the operator removes an owner's lost second factor.
pub async fn reset(b: &Broker, owner: &str) -> Result<bool> {
    let now = b.clock.now();
    let o = owner.to_owned();
    store::write(&b.store, move |tx| {
        let had = tx.mfa_delete(&o)?;
        if had {
            tx.audit_append(now, &o, "mfa_removed", &json!({"by": "cli"}).to_string())?;
        }
        Ok(had)
    })
    .await
}
