//! Sign-in with a limit on failed attempts (the budgets), sessions and
//! sign-out. Passwords themselves and the one-time setup link are in
//! `password.rs`; the second factor's sign-in step in `mfa.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use maud::{Markup, html};
use protonpass_agent::{Result, random_id};
use serde_json::json;

use super::password::{ARGON2_SLOTS, MAX_PASSWORD, dummy_phc, verify_password};
use super::{B, Form, cookie, pre_cookie, query, redirect, safe_next, session, session_cookie};
use super::{csrf_refused, service_error, set_cookie, source, token_matches, view};
use super::{device_cookie, device_cookie_name};
use crate::audit::secret_hash;
use crate::config::valid_owner;
use crate::service::Broker;
use crate::store::{self, WebSession};

/// How long a session lasts, seconds.
pub const SESSION_TTL: i64 = 12 * 3600;
/// Failed sign-ins allowed per account and per source address in [`LOGIN_WINDOW`].
pub const LOGIN_BUDGET: i64 = 5;
/// The window of the sign-in limit, seconds.
pub const LOGIN_WINDOW: i64 = 15 * 60;

pub(super) async fn new_session(
    b: &Broker,
    owner: &str,
    event: &'static str,
) -> Result<(String, WebSession)> {
    let now = b.clock.now();
    let id = random_id(b.rng.as_ref(), 32)?;
    let s = WebSession {
        id_hash: secret_hash(&id),
        owner: owner.to_owned(),
        csrf: random_id(b.rng.as_ref(), 24)?,
        created_at: now,
        expires_at: now + SESSION_TTL,
    };
    let s2 = s.clone();
    store::write(&b.store, move |tx| {
        tx.session_put(&s2)?;
        tx.audit_append(now, &s2.owner, event, "{}")?;
        Ok(())
    })
    .await?;
    Ok((id, s))
}

pub(super) fn with_cookies(mut r: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// A fresh pre-sign-in form token and the cookie that carries it.
pub(super) fn pre_token(b: &Broker) -> Result<(String, String)> {
    let t = random_id(b.rng.as_ref(), 24)?;
    let c = set_cookie(b, pre_cookie(b), &t, 3600);
    Ok((t, c))
}

/// A form posted before sign-in, when it carries the form token of its
/// page's cookie ([`pre_form_page`]).
pub(super) fn pre_form(b: &Broker, headers: &HeaderMap, body: &Bytes) -> Option<Form> {
    let f = Form::parse(headers, body)?;
    let c = cookie(headers, pre_cookie(b))?;
    token_matches(c, f.get("csrf")).then_some(f)
}

/// A page with a form shown before sign-in (sign in, set the password):
/// `body` puts the fresh form token it is given in its form, and the page
/// sets the cookie that carries the token.
pub(super) fn pre_form_page(
    b: &Broker,
    status: StatusCode,
    title: &str,
    body: impl FnOnce(&str) -> Markup,
) -> Response {
    let (csrf, c) = or_error_page!(pre_token(b), None);
    with_cookies(view::page(status, title, None, body(&csrf)), &[c])
}

pub(super) async fn home(State(b): B, headers: HeaderMap) -> Response {
    if session(&b, &headers).await.is_some() {
        redirect("/agents")
    } else {
        redirect("/login")
    }
}

fn login_form(
    b: &Broker,
    owner: &str,
    next: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    pre_form_page(b, status, "Sign in", |csrf| {
        html! {
            p { "Sign in to approve agents, see what they may do, and cut them off." }
            (view::alert(error))
            form.card method="post" action="/login" {
                (view::sign_in_fields(csrf, next))
                label { "Account"
                    input type="text" name="owner" value=(owner) autocomplete="username" required; }
                label { "Password"
                    input type="password" name="password" autocomplete="current-password" required; }
                button.primary type="submit" { "Sign in" }
            }
            p.hint { "The account is an owner of this broker, and the password is the one set for it: with the one-time link that "
                code { "protonpass-broker owner add NAME" } " prints on the broker's machine, or with "
                code { "protonpass-broker owner add NAME --password-stdin" } ". Running the same command again resets a forgotten password." }
        }
    })
}

pub(super) async fn login_page(State(b): B, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let q = query(q.as_deref());
    let next = safe_next(q.get("next")).unwrap_or("/agents").to_owned();
    if session(&b, &headers).await.is_some() {
        return redirect(&next);
    }
    login_form(&b, &b.cfg.owner, &next, None, StatusCode::OK)
}

enum Gate {
    /// The account's password hash, and whether this is the window's first try.
    Open(Option<String>, bool),
    Locked,
}

pub(super) async fn login_submit(
    State(b): B,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = pre_form(&b, &headers, &body) else {
        return csrf_refused();
    };
    let next = safe_next(f.get("next")).unwrap_or("/agents").to_owned();
    let owner = f.text("owner").unwrap_or("").to_owned();
    let password = f.get("password").unwrap_or("").to_owned();
    let src = source(&b, &peer, &headers);
    let now = b.clock.now();
    let budget = Budget::of(&b, &headers, &owner, &src, now);
    let known = budget.known.clone();
    let charged = budget.clone();
    let o = owner.clone();
    let gate = store::write(&b.store, move |tx| {
        let phc = if valid_owner(&o) {
            tx.owner_password(&o)?
        } else {
            None
        };
        let who = if phc.is_some() { o.as_str() } else { "-" };
        Ok(match charged.charge(tx, who, now)? {
            None => Gate::Locked,
            Some(first) => Gate::Open(phc, first),
        })
    })
    .await;
    let (phc, first_failure) = match gate {
        Ok(Gate::Open(p, first)) => (p, first),
        Ok(Gate::Locked) => {
            return login_form(
                &b,
                &owner,
                &next,
                Some("Too many wrong passwords. Sign-in is paused for 15 minutes."),
                StatusCode::TOO_MANY_REQUESTS,
            );
        }
        Err(e) => return service_error(&e, None),
    };
    let exists = phc.is_some();
    let ok = if password.is_empty() || password.len() > MAX_PASSWORD {
        false
    } else {
        // An unknown owner costs the same argon2 work as a known one: the
        // answer's timing says nothing about which owners exist.
        let (phc, real) = match phc {
            Some(p) => (p, true),
            None => match dummy_phc(&b) {
                Some(p) => (p, false),
                None => (String::new(), false),
            },
        };
        // argon2id takes 19 MiB: bound how many run at once.
        let _permit = ARGON2_SLOTS.acquire().await;
        let matched = tokio::task::spawn_blocking(move || verify_password(&phc, &password))
            .await
            .unwrap_or(false);
        real && matched
    };
    if ok {
        budget.refund(&b, now).await;
    }
    if !ok && first_failure {
        // The first failure of a window is recorded; the rest are counted in
        // the budget and summed up by the `login_locked` record, if any.
        let o = owner.clone();
        let r = store::write(&b.store, move |tx| {
            let who = if exists { o.as_str() } else { "-" };
            tx.audit_append(
                now,
                who,
                "login_failed",
                &json!({"source": src, "known_device": known.is_some(), "first_in_window": true})
                    .to_string(),
            )?;
            Ok(())
        })
        .await;
        if let Err(e) = r {
            return service_error(&e, None);
        }
    }
    if !ok {
        return login_form(
            &b,
            &owner,
            &next,
            Some("That account name and password do not match."),
            StatusCode::UNAUTHORIZED,
        );
    }
    // A second factor, once enrolled, is asked for before any session exists.
    match super::mfa::required(&b, &owner).await {
        Ok(true) => return super::mfa::ask(&b, &owner, &next, now),
        Ok(false) => {}
        Err(e) => return service_error(&e, None),
    }
    signed_in(&b, &owner, &next, now).await
}

/// Start a session for `owner` (all factors checked) and go to `next`; the
/// browser becomes a known device of the owner.
pub(super) async fn signed_in(b: &Arc<Broker>, owner: &str, next: &str, now: i64) -> Response {
    match new_session(b, owner, "login").await {
        Ok((id, _)) => {
            let mut cookies = vec![
                set_cookie(b, session_cookie(b), &id, SESSION_TTL),
                set_cookie(b, pre_cookie(b), "", 0),
            ];
            if let Some(d) = device_cookie::issue(&b.cfg.data, b.rng.as_ref(), owner, now) {
                cookies.push(set_cookie(
                    b,
                    device_cookie_name(b),
                    &d,
                    device_cookie::DEVICE_TTL,
                ));
            }
            with_cookies(redirect(next), &cookies)
        }
        Err(e) => service_error(&e, None),
    }
}

/// The sign-in budgets a request is charged against. A browser that signed in
/// to this account before has a budget of its own: wrong passwords (or codes)
/// sent from elsewhere cannot lock it out. Unknown browsers share the
/// account's budget and their source's.
#[derive(Clone)]
pub(super) struct Budget {
    pub owner_key: String,
    pub source_key: String,
    /// The known-device cookie's tag, if the browser is known.
    pub known: Option<String>,
    src: String,
}

impl Budget {
    pub(super) fn of(b: &Broker, headers: &HeaderMap, owner: &str, src: &str, now: i64) -> Budget {
        let known = cookie(headers, device_cookie_name(b))
            .and_then(|v| device_cookie::check(&b.cfg.data, b.rng.as_ref(), v, owner, now));
        let (owner_key, source_key) = match &known {
            Some(tag) => (format!("login:device:{tag}"), format!("login:device:{tag}")),
            None => (
                format!("login:owner:{owner}"),
                // Sources are grouped as the rate limit groups them (IPv6 by
                // /64): fresh addresses from one block do not each get a new
                // budget.
                format!(
                    "login:source:{}",
                    src.parse::<std::net::IpAddr>().map_or_else(
                        |_| src.to_owned(),
                        |ip| crate::ratelimit::key(ip).to_string()
                    )
                ),
            ),
        };
        Budget {
            owner_key,
            source_key,
            known,
            src: src.to_owned(),
        }
    }

    /// Charge one attempt, in the caller's transaction, before the secret is
    /// checked (parallel guesses cannot all pass the gate): `None` when a
    /// budget is spent (recorded once per window in the audit, as `who`),
    /// else whether this is the window's first attempt.
    pub(super) fn charge(
        &self,
        tx: &mut dyn crate::store::Tx,
        who: &str,
        now: i64,
    ) -> Result<Option<bool>> {
        let (ko, ks) = (&self.owner_key, &self.source_key);
        let used = tx
            .attempt_sum(ko, now - LOGIN_WINDOW)?
            .max(tx.attempt_sum(ks, now - LOGIN_WINDOW)?);
        if used >= LOGIN_BUDGET {
            // One record per locked budget and window, however many tries
            // follow: a flood does not grow the audit log.
            let marker = format!("{ko}:locked");
            if tx.attempt_sum(&marker, now - LOGIN_WINDOW)? == 0 {
                tx.attempt_add(&marker, now, 1)?;
                tx.audit_append(
                    now,
                    who,
                    "login_locked",
                    &json!({"source": self.src, "known_device": self.known.is_some(), "window_s": LOGIN_WINDOW})
                        .to_string(),
                )?;
            }
            return Ok(None);
        }
        tx.attempt_add(ko, now, 1)?;
        if ks != ko {
            tx.attempt_add(ks, now, 1)?;
        }
        Ok(Some(used == 0))
    }

    /// Charge one attempt of `owner` from `src` in a transaction of its own:
    /// the budget to refund on success, or `None` when a budget is spent.
    pub(super) async fn charge_now(
        b: &Broker,
        headers: &HeaderMap,
        owner: &str,
        src: &str,
        now: i64,
    ) -> Result<Option<Budget>> {
        let budget = Budget::of(b, headers, owner, src, now);
        let charged = budget.clone();
        let o = owner.to_owned();
        let r = store::write(&b.store, move |tx| charged.charge(tx, &o, now)).await?;
        Ok(r.map(|_| budget))
    }

    /// Give back the attempt of a success.
    pub(super) async fn refund(&self, b: &Broker, now: i64) {
        let (ko, ks) = (self.owner_key.clone(), self.source_key.clone());
        let _ = store::write(&b.store, move |tx| {
            tx.attempt_add(&ko, now, -1)?;
            if ks != ko {
                tx.attempt_add(&ks, now, -1)?;
            }
            Ok(())
        })
        .await;
    }
}

pub(super) async fn logout(State(b): B, headers: HeaderMap, body: Bytes) -> Response {
    let Some(s) = session(&b, &headers).await else {
        return redirect("/login");
    };
    let Some(f) = Form::parse(&headers, &body) else {
        return csrf_refused();
    };
    if !token_matches(&s.csrf, f.get("csrf")) {
        return csrf_refused();
    }
    let now = b.clock.now();
    let r = store::write(&b.store, move |tx| {
        tx.session_delete(&s.id_hash)?;
        tx.audit_append(now, &s.owner, "logout", "{}")?;
        Ok(())
    })
    .await;
    if let Err(e) = r {
        return service_error(&e, None);
    }
    with_cookies(
        redirect("/login"),
        &[set_cookie(&b, session_cookie(&b), "", 0)],
    )
}
