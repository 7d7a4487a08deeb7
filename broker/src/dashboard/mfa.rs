//! The owner's second factor: a TOTP authenticator app (RFC 6238: SHA-1, six
//! digits, 30-second steps, one step of skew) and ten one-time recovery codes.
//!
//! Once enrolled (confirmed with a first code), sign-in asks for a code after
//! the password: the password step ends with a short-lived signed cookie
//! naming the owner (`pp_mfa`, 5 minutes, HMAC under a key derived from
//! `device.key`), and only a correct code or recovery code turns it into a
//! session. Codes are charged against the same sign-in budgets as passwords;
//! a code is accepted once (its time step is remembered); a recovery code
//! works once. The secret is sealed by the vault (`vault.key`), so a copy of
//! the database alone does not reveal it. `owner mfa-reset NAME` (the command
//! line is the operator) removes a lost second factor.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hmac::{Hmac, KeyInit, Mac};
use maud::html;
use protonpass_agent::{Error, Result, b64};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;
use totp_rs::{Algorithm, Builder, Secret, Totp};
use zeroize::Zeroizing;

use super::auth::{Budget, signed_in, with_cookies};
use super::{B, cookie, csrf_refused, query, redirect, safe_next, service_error};
use super::{set_cookie, source, view};
use crate::audit::secret_hash;
use crate::gateway::vault::Vault;
use crate::service::Broker;
use crate::store::{self};

/// How long the step between password and code may take, seconds.
const PENDING_TTL: i64 = 300;
/// Recovery codes made at enrollment.
pub(super) const RECOVERY_CODES: usize = 10;
/// The vault's name for the TOTP secret (no upstream name contains ':').
pub(super) const SEALED_AS: &str = "mfa:totp";

/// What the store keeps for an owner (JSON).
#[derive(Serialize, Deserialize)]
pub(super) struct Record {
    /// The TOTP secret sealed by the vault, base64url.
    pub(super) totp: String,
    /// Confirmed with a code: only then is it required at sign-in.
    pub(super) confirmed: bool,
    /// The last time step accepted: a code is never accepted twice.
    pub(super) last_step: u64,
    /// Hashes of the unused recovery codes.
    pub(super) recovery: Vec<String>,
    /// Passkeys added beside the app (records written before passkeys have none).
    #[serde(default)]
    pub(super) passkeys: Vec<super::passkey::Passkey>,
    /// Outstanding WebAuthn challenges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) challenges: Vec<super::passkey::Challenge>,
}

fn pending_cookie(b: &Broker) -> &'static str {
    if b.issuer.starts_with("https://") {
        "__Host-pp_mfa"
    } else {
        "pp_mfa"
    }
}

fn totp(secret: &[u8]) -> Result<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(Secret::new(secret.to_vec().into_boxed_slice()))
        .build()
        .map_err(|_| Error::Server("TOTP: the secret was refused".into()))
}

pub(super) async fn load(b: &Broker, owner: &str) -> Result<Option<Record>> {
    let o = owner.to_owned();
    let raw = store::read(&b.store, move |tx| tx.mfa_get(&o)).await?;
    raw.map(|r| {
        serde_json::from_str(&r)
            .map_err(|_| Error::Storage("an unreadable second-factor record".into()))
    })
    .transpose()
}

fn open_secret(b: &Broker, owner: &str, r: &Record) -> Result<Zeroizing<Vec<u8>>> {
    let sealed = b64::decode(&r.totp)
        .ok_or_else(|| Error::Storage("an unreadable second-factor record".into()))?;
    Vault::load(&b.cfg.data, b.rng.as_ref())?.open(owner, SEALED_AS, &sealed)
}

/// Whether `owner` has a confirmed second factor.
pub(super) async fn required(b: &Broker, owner: &str) -> Result<bool> {
    Ok(load(b, owner).await?.is_some_and(|r| r.confirmed))
}

// The pending sign-in cookie: `owner.expiry.tag`, the tag an HMAC-SHA-256
// under a key derived from the data directory's device key (so it can never
// pass for a known-device cookie).
fn pending_mac(b: &Broker, body: &str) -> Option<Hmac<Sha256>> {
    let key =
        super::device_cookie::derived_key(&b.cfg.data, b.rng.as_ref(), "mfa pending sign-in")?;
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).ok()?;
    m.update(body.as_bytes());
    Some(m)
}

fn pending_issue(b: &Broker, owner: &str, now: i64) -> Option<String> {
    let body = format!("{owner}.{}", now.saturating_add(PENDING_TTL));
    let tag = pending_mac(b, &body)?.finalize().into_bytes();
    Some(format!("{body}.{}", b64::encode(tag)))
}

fn pending_owner(b: &Broker, headers: &HeaderMap, now: i64) -> Option<String> {
    let value = cookie(headers, pending_cookie(b))?;
    let (body, tag) = value.rsplit_once('.')?;
    let (owner, exp) = body.rsplit_once('.')?;
    if exp.parse::<i64>().ok()? <= now {
        return None;
    }
    pending_mac(b, body)?
        .verify_slice(&b64::decode(tag)?)
        .ok()?;
    Some(owner.to_owned())
}

/// The password was right and the owner has a second factor: ask for it.
pub(super) fn ask(b: &Arc<Broker>, owner: &str, next: &str, now: i64) -> Response {
    let Some(c) = pending_issue(b, owner, now) else {
        return service_error(&Error::Server("cannot sign the sign-in step".into()), None);
    };
    let to = format!(
        "/login/code?next={}",
        url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
    );
    with_cookies(
        redirect(&to),
        &[set_cookie(b, pending_cookie(b), &c, PENDING_TTL)],
    )
}

/// What binds a passkey challenge to this pending sign-in: its cookie and
/// the random form token of the page that carries the challenge (the
/// pending cookie alone is the same for two sign-ins in one second).
fn pending_binding(b: &Broker, headers: &HeaderMap, csrf: &str) -> String {
    let pending = cookie(headers, pending_cookie(b)).unwrap_or("");
    secret_hash(&format!("{pending}\n{csrf}"))
}

async fn code_form(
    b: &Broker,
    headers: &HeaderMap,
    owner: &str,
    next: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (csrf, c) = or_error_page!(super::auth::pre_token(b), None);
    let passkey = match load(b, owner).await {
        Ok(Some(r)) if !r.passkeys.is_empty() => {
            let bound = pending_binding(b, headers, &csrf);
            let fields =
                super::passkey::use_fields(b, owner, &r, &bound, "Use a passkey", "").await;
            Some(html! {
                form.card method="post" action="/login/code" {
                    (view::sign_in_fields(&csrf, next))
                    p { "Or use one of your passkeys." }
                    (fields)
                }
            })
        }
        Ok(_) => None,
        Err(e) => return service_error(&e, None),
    };
    let r = view::page(
        status,
        "Enter your code",
        None,
        html! {
            p { "Open your authenticator app and enter the six-digit code for this broker, or one of your recovery codes." }
            (view::alert(error))
            form.card method="post" action="/login/code" {
                (view::sign_in_fields(&csrf, next))
                label { "Code"
                    input type="text" name="code" inputmode="numeric" autocomplete="one-time-code" required; }
                button.primary type="submit" { "Continue" }
            }
            @if let Some(p) = passkey { (p) }
            p { a href="/login" { "Start again" } }
        },
    );
    with_cookies(r, &[c])
}

pub(super) async fn code_page(State(b): B, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let q = query(q.as_deref());
    let next = safe_next(q.get("next")).unwrap_or("/agents").to_owned();
    let Some(owner) = pending_owner(&b, &headers, b.clock.now()) else {
        return redirect("/login");
    };
    code_form(&b, &headers, &owner, &next, None, StatusCode::OK).await
}

/// Which factor a code matched.
pub(super) enum Matched {
    Totp(u64),
    Recovery(usize),
    /// A passkey's credential id and the counter it signed.
    Passkey(String, u32),
}

pub(super) fn matches(
    b: &Broker,
    owner: &str,
    r: &Record,
    code: &str,
    now: i64,
) -> Result<Option<Matched>> {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() == 6 && digits.bytes().all(|c| c.is_ascii_digit()) {
        let secret = open_secret(b, owner, r)?;
        let t = totp(&secret)?;
        let now = u64::try_from(now).unwrap_or(0);
        return Ok(t
            .check(&digits, now)
            .filter(|step| *step > r.last_step)
            .map(Matched::Totp));
    }
    let h = secret_hash(&normalise_recovery(code));
    Ok(r.recovery
        .iter()
        .position(|x| super::token_matches(x, Some(&h)))
        .map(Matched::Recovery))
}

pub(super) fn normalise_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

pub(super) async fn code_submit(
    State(b): B,
    peer: ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = super::auth::pre_form(&b, &headers, &body) else {
        return csrf_refused();
    };
    let now = b.clock.now();
    let next = safe_next(f.get("next")).unwrap_or("/agents").to_owned();
    let Some(owner) = pending_owner(&b, &headers, now) else {
        return redirect("/login");
    };
    // The code page again, saying what went wrong.
    let again = |error: &'static str, status: StatusCode| {
        code_form(&b, &headers, &owner, &next, Some(error), status)
    };
    let src = source(&b, &peer, &headers);
    let budget = Budget::of(&b, &headers, &owner, &src, now);
    let charged = budget.clone();
    let o = owner.clone();
    let gate = store::write(&b.store, move |tx| charged.charge(tx, &o, now)).await;
    let first_in_window = match gate {
        Ok(Some(first)) => first,
        Ok(None) => {
            return again(
                "Too many wrong codes. Sign-in is paused for 15 minutes.",
                StatusCode::TOO_MANY_REQUESTS,
            )
            .await;
        }
        Err(e) => return service_error(&e, None),
    };
    let record = match load(&b, &owner).await {
        Ok(Some(r)) if r.confirmed => r,
        Ok(_) => return redirect("/login"),
        Err(e) => return service_error(&e, None),
    };
    let code = f
        .get("code")
        .unwrap_or("")
        .chars()
        .take(64)
        .collect::<String>();
    let answer = super::passkey::Answer::from_form(&f);
    let wrong = if answer.is_some() {
        "That passkey was not accepted. Try again, or use a code."
    } else {
        "That code is not right (or was used already)."
    };
    let matched = match &answer {
        Some(a) => {
            let bound = pending_binding(&b, &headers, f.get("csrf").unwrap_or(""));
            super::passkey::check(&b, &owner, &bound, a, now).await
        }
        None => matches(&b, &owner, &record, &code, now),
    };
    let matched = or_error_page!(matched, None);
    let Some(m) = matched else {
        // As for passwords: the window's first failure is recorded, the rest
        // are counted in the budget (and summed up by `login_locked`).
        let o = owner.clone();
        if first_in_window {
            let _ = store::write(&b.store, move |tx| {
                tx.audit_append(
                    now,
                    &o,
                    "login_code_failed",
                    &json!({"source": src}).to_string(),
                )
                .map(drop)
            })
            .await;
        }
        return again(wrong, StatusCode::UNAUTHORIZED).await;
    };
    let spent =
        super::second_factor::spend(&b, &owner, m, now, "login_second_factor", json!({})).await;
    match spent {
        Ok(true) => {}
        Ok(false) => {
            return again(wrong, StatusCode::UNAUTHORIZED).await;
        }
        Err(e) => return service_error(&e, None),
    }
    budget.refund(&b, now).await;
    let r = signed_in(&b, &owner, &next, now).await;
    with_cookies(r, &[set_cookie(&b, pending_cookie(&b), "", 0)])
}
