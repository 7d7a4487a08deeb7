//! Owner passwords (argon2id) and the one-time setup link that sets the
//! first one: `owner add`, the first-run link of `serve`, and the `/setup`
//! page from the link to a signed-in session. Sign-in itself, its budgets and
//! sessions are in `auth.rs`.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;
use protonpass_agent::{Error, Result, random_id};
use serde_json::json;

use super::auth::{SESSION_TTL, new_session, pre_form, pre_form_page, with_cookies};
use super::{B, csrf_refused, pre_cookie, query, redirect, service_error, session_cookie};
use super::{set_cookie, view};
use crate::audit::secret_hash;
use crate::config::valid_owner;
use crate::service::Broker;
use crate::store;

/// How long a setup link lasts, seconds.
pub const SETUP_TTL: i64 = 24 * 3600;
/// At most this many password hashes are computed at once (19 MiB each).
pub(super) static ARGON2_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
/// Shortest password.
pub const MIN_PASSWORD: usize = 10;
/// Longest password, bytes.
pub(super) const MAX_PASSWORD: usize = 1024;

/// Hash a password with argon2id (default parameters: 19 MiB, 2 passes).
pub fn hash_password(b: &Broker, password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    b.rng.fill(&mut salt)?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| Error::Server(format!("salt encoding failed: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Server(format!("password hashing failed: {e}")))
}

/// A password hash no password is known for, to spend the same time on
/// unknown owners as on known ones.
pub(super) fn dummy_phc(b: &Broker) -> Option<String> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(d) = DUMMY.get() {
        return Some(d.clone());
    }
    let mut secret = [0u8; 32];
    b.rng.fill(&mut secret).ok()?;
    let phc = hash_password(b, &protonpass_agent::b64::encode(secret)).ok()?;
    Some(DUMMY.get_or_init(|| phc).clone())
}

pub(super) fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

fn check_new_password(pw: &str, again: &str) -> std::result::Result<(), &'static str> {
    if pw.chars().count() < MIN_PASSWORD {
        return Err("Choose a password of at least 10 characters.");
    }
    if pw.len() > MAX_PASSWORD {
        return Err("That password is too long.");
    }
    if pw != again {
        return Err("The two passwords are not the same.");
    }
    Ok(())
}

/// Make a one-time setup link for `owner` (replacing older ones).
pub async fn setup_link(b: &Broker, owner: &str) -> Result<String> {
    let now = b.clock.now();
    let secret = format!("st_{}", random_id(b.rng.as_ref(), 24)?);
    let (hash, owner) = (secret_hash(&secret), owner.to_owned());
    store::write(&b.store, move |tx| {
        tx.owner_ensure(&owner, now)?;
        tx.setup_put(&hash, &owner, now + SETUP_TTL)
    })
    .await?;
    Ok(format!("{}/setup?token={secret}", b.issuer))
}

/// On `serve`: while the owner has no password yet, a one-time setup link.
pub async fn first_run_link(b: &Broker) -> Result<Option<String>> {
    let owner = b.cfg.owner.clone();
    let o = owner.clone();
    let has = store::read(&b.store, move |tx| tx.owner_password(&o)).await?;
    if has.is_some() {
        return Ok(None);
    }
    setup_link(b, &owner).await.map(Some)
}

/// `owner add NAME`: set the password now (when given) or return a setup link.
pub async fn owner_add(b: &Broker, name: &str, password: Option<String>) -> Result<Option<String>> {
    if !valid_owner(name) {
        return Err(Error::InvalidRequest(
            "owner names are 1-64 lower-case letters, digits, '.', '_' or '-'".into(),
        ));
    }
    let Some(pw) = password else {
        return setup_link(b, name).await.map(Some);
    };
    let pw = pw.trim_end_matches(['\n', '\r']).to_owned();
    check_new_password(&pw, &pw).map_err(|m| Error::InvalidRequest(m.into()))?;
    let phc = hash_password(b, &pw)?;
    let now = b.clock.now();
    let name = name.to_owned();
    store::write(&b.store, move |tx| {
        tx.owner_password_set(&name, &phc, now)?;
        tx.audit_append(
            now,
            &name,
            "password_set",
            &json!({"by": "cli"}).to_string(),
        )?;
        Ok(())
    })
    .await?;
    Ok(None)
}

/// Whether `password` is `owner`'s dashboard password (argon2id, off the
/// async runtime, bounded like sign-in).
pub(super) async fn password_ok(b: &Broker, owner: &str, password: &str) -> Result<bool> {
    if password.is_empty() || password.len() > MAX_PASSWORD {
        return Ok(false);
    }
    let o = owner.to_owned();
    let Some(phc) = store::read(&b.store, move |tx| tx.owner_password(&o)).await? else {
        return Ok(false);
    };
    let _permit = ARGON2_SLOTS.acquire().await;
    let pw = password.to_owned();
    Ok(
        tokio::task::spawn_blocking(move || verify_password(&phc, &pw))
            .await
            .unwrap_or(false),
    )
}

fn setup_form(
    b: &Broker,
    token: &str,
    owner: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    pre_form_page(b, status, "Create your password", |csrf| {
        html! {
            p { "You are setting the password of the owner account " strong { (owner) } ". You will use it to approve agents and to cut them off." }
            (view::alert(error))
            form.card method="post" action="/setup" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="token" value=(token);
                label { "New password (at least 10 characters)"
                    input type="password" name="password" autocomplete="new-password" required minlength="10"; }
                label { "The same password again"
                    input type="password" name="again" autocomplete="new-password" required minlength="10"; }
                button.primary type="submit" { "Save password and sign in" }
            }
        }
    })
}

async fn setup_owner(b: &Arc<Broker>, token: &str) -> Option<String> {
    if token.is_empty() || token.len() > 128 {
        return None;
    }
    let (hash, now) = (secret_hash(token), b.clock.now());
    store::read(&b.store, move |tx| tx.setup_get(&hash, now))
        .await
        .ok()
        .flatten()
}

fn setup_gone() -> Response {
    view::message(
        StatusCode::NOT_FOUND,
        "This setup link does not work",
        "It was already used, or it has expired. Ask for a new one on the broker's machine: protonpass-broker owner add NAME",
        None,
    )
}

pub(super) async fn setup_page(State(b): B, RawQuery(q): RawQuery) -> Response {
    let q = query(q.as_deref());
    let token = q.get("token").unwrap_or("");
    match setup_owner(&b, token).await {
        Some(owner) => setup_form(&b, token, &owner, None, StatusCode::OK),
        None => setup_gone(),
    }
}

pub(super) async fn setup_submit(State(b): B, headers: HeaderMap, body: Bytes) -> Response {
    let Some(f) = pre_form(&b, &headers, &body) else {
        return csrf_refused();
    };
    let token = f.get("token").unwrap_or("").to_owned();
    let Some(owner) = setup_owner(&b, &token).await else {
        return setup_gone();
    };
    let (pw, again) = (
        f.get("password").unwrap_or(""),
        f.get("again").unwrap_or(""),
    );
    if let Err(m) = check_new_password(pw, again) {
        return setup_form(&b, &token, &owner, Some(m), StatusCode::BAD_REQUEST);
    }
    let b2 = b.clone();
    let pw = pw.to_owned();
    let phc = match tokio::task::spawn_blocking(move || hash_password(&b2, &pw)).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return service_error(&e, None),
        Err(_) => return service_error(&Error::Server("hashing task failed".into()), None),
    };
    let now = b.clock.now();
    let hash = secret_hash(&token);
    let o = owner.clone();
    let spent = store::write(&b.store, move |tx| {
        // Spend the link in the same transaction that sets the password: one use only.
        if tx.setup_get(&hash, now)?.as_deref() != Some(o.as_str()) {
            return Ok(false);
        }
        tx.setup_delete(&hash)?;
        tx.owner_password_set(&o, &phc, now)?;
        tx.audit_append(
            now,
            &o,
            "password_set",
            &json!({"by": "setup_link"}).to_string(),
        )?;
        Ok(true)
    })
    .await;
    match spent {
        // The link is spent: a copy left in the data directory is useless now.
        Ok(true) => crate::files::remove_setup_link(&b.cfg.data),
        Ok(false) => return setup_gone(),
        Err(e) => return service_error(&e, None),
    }
    match new_session(&b, &owner, "login").await {
        Ok((id, _)) => with_cookies(
            redirect("/agents"),
            &[
                set_cookie(&b, session_cookie(&b), &id, SESSION_TTL),
                set_cookie(&b, pre_cookie(&b), "", 0),
            ],
        ),
        Err(e) => service_error(&e, None),
    }
}
