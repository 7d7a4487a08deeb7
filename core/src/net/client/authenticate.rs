//! `authenticate_with_proton`: find the broker, load the stored grant or
//! obtain one (enrollment code, else the owner's approval), and exchange it for
//! the session's first token. One flow, kept in one function so that it reads
//! top to bottom.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use zeroize::Zeroizing;

use super::calls::BrokerCalls;
use super::renewal::renewal_loop;
use super::session::{AccessToken, Session, SessionInner};
use super::{AuthOptions, GT_PREAUTH, MAX_TOKEN_LIFETIME, env_or, stderr_prompt, stepup};
use crate::error::{Error, Result};
use crate::keys::AgentKey;
use crate::net::gateway_route::{Routes, gateways_of};
use crate::net::http::{self, NonceCache};
use crate::net::shared_tokens::{self, ShareKey, Shared};
use crate::net::store::{GrantStore, StoreKind, StoredGrant};
use crate::scope::ScopeSet;
use crate::wire::TokenResponse;

/// Ask the broker for access: load the stored grant for (broker, profile,
/// agent name), or obtain one (enrollment code, else the device authorization
/// grant with the owner's approval), then exchange it for an access token for
/// `scopes` on `audience`. Missing required scopes are
/// [`Error::ScopeNotGranted`].
pub async fn authenticate_with_proton<S: AsRef<str>>(
    scopes: &[S],
    audience: &str,
    opts: AuthOptions,
) -> Result<Session> {
    // RFC 9728 discovery when no broker (or no scope) is given.
    let (broker, scopes) = crate::net::discovery::resolve(
        scopes,
        audience,
        env_or(&opts.broker, "PROTONPASS_BROKER_URL"),
    )
    .await?;
    let broker = broker.trim_end_matches('/').to_owned();
    let agent = env_or(&opts.agent_name, "PROTONPASS_AGENT_NAME").unwrap_or_else(|| "agent".into());
    let profile = env_or(&opts.profile, "PROTONPASS_PROFILE").unwrap_or_else(|| "default".into());
    let enrollment = env_or(&opts.enrollment_code, "PROTONPASS_ENROLLMENT_CODE");
    if audience.is_empty() {
        return Err(Error::InvalidRequest(
            "an audience (the API's URL) is required".into(),
        ));
    }
    if agent.is_empty() || agent.len() > 64 || agent.chars().any(char::is_control) {
        return Err(Error::InvalidRequest(
            "the agent name is 1 to 64 printable characters".into(),
        ));
    }
    let requested = ScopeSet::from_list(&scopes)?;
    let required = match &opts.required {
        Some(r) if r.is_empty() => ScopeSet::default(),
        Some(r) => ScopeSet::from_list(r)?,
        None => requested.clone(),
    };
    if opts.ttl == Some(0) {
        return Err(Error::InvalidRequest(
            "ttl is the access tokens' lifetime in seconds: at least 1".into(),
        ));
    }
    if !requested.covers_all(&required) {
        return Err(Error::InvalidScope(format!(
            "required scopes [{}] must be among the requested ones",
            requested.missing(&required)
        )));
    }
    let passphrase = opts.passphrase.clone().or_else(|| {
        std::env::var("PROTONPASS_PASSPHRASE")
            .ok()
            .map(Zeroizing::new)
    });
    let store = GrantStore::new(match opts.store.clone() {
        Some(k) => k,
        None => StoreKind::default_file()?,
    })
    .with_passphrase(passphrase);
    let (meta, fetched_now) = http::discover_noting_fetch(&broker, opts.rng.as_ref()).await?;
    let routes = Routes::default();

    let lock_store = store.clone();
    let lock_profile = profile.clone();
    let _lock = tokio::task::spawn_blocking(move || lock_store.lock(&lock_profile))
        .await
        .map_err(|e| Error::Storage(format!("lock task failed: {e}")))??;

    let stored = store.load(&broker, &profile, &agent)?;
    let now = opts.clock.now();
    let stored = stored.filter(|g| g.expires_at.is_none_or(|t| t > now));
    let needs_new = match &stored {
        None => true,
        Some(g) => {
            let granted = ScopeSet::parse(&g.scope).unwrap_or_default();
            if granted.covers_all(&required) {
                false
            } else if opts.extend {
                true
            } else {
                return Err(Error::ScopeNotGranted {
                    missing: granted.missing(&required).to_string(),
                    granted: granted.to_string(),
                });
            }
        }
    };
    let key = match (&stored, needs_new) {
        (Some(g), false) => g.key.clone(),
        _ => AgentKey::generate(opts.rng.as_ref())?,
    };
    // An extension replaces the stored grant: the old one is revoked once the
    // new one is safely stored, rather than left live and unreachable. It
    // asks for the old grant's scopes as well as the new ones, so that it
    // takes nothing away from other sessions of this profile (the owner can
    // still narrow it on the approval page).
    let superseded = match (&stored, needs_new) {
        (Some(g), true) => Some(g.refresh_token.clone()),
        _ => None,
    };
    let ask = match (&stored, needs_new) {
        (Some(g), true) => {
            let mut all = ScopeSet::parse(&g.scope).unwrap_or_default();
            for s in &requested {
                all.insert(s.clone());
            }
            all
        }
        _ => requested.clone(),
    };
    let calls = BrokerCalls {
        meta: meta.clone(),
        key,
        agent: agent.clone(),
        nonces: NonceCache::global(),
        clock: opts.clock.clone(),
        rng: opts.rng.clone(),
        reason: opts.reason.clone(),
    };
    let mut grant = match stored {
        Some(g) if !needs_new => g,
        _ => {
            let scope = ask.to_string();
            let t = match &enrollment {
                Some(code) => {
                    calls
                        .token(&[
                            ("grant_type", GT_PREAUTH),
                            ("pre-authorized_code", code.as_str()),
                            ("client_id", agent.as_str()),
                        ])
                        .await?
                }
                None => {
                    let prompt = opts.prompt.clone().unwrap_or_else(stderr_prompt);
                    calls
                        .device_grant(&scope, audience, &prompt, opts.cancel.as_ref())
                        .await?
                }
            };
            let refresh = t.refresh_token.clone().ok_or_else(|| {
                Error::InvalidResponse("the broker returned no refresh token (grant)".into())
            })?;
            // The owner may narrow the scopes on the approval page. A grant
            // without every required scope is refused: revoked at once rather
            // than stored or left live, unused (a stored grant it replaces
            // stays as it was).
            let granted = ScopeSet::parse(&t.scope).unwrap_or_else(|_| ask.clone());
            if !granted.covers_all(&required) {
                if let Err(e) = calls.revoke(&refresh, "refresh_token").await {
                    tracing::warn!(error = e.code(), "could not revoke the refused grant");
                }
                return Err(Error::ScopeNotGranted {
                    missing: granted.missing(&required).to_string(),
                    granted: granted.to_string(),
                });
            }
            let g = StoredGrant {
                key: calls.key.clone(),
                refresh_token: Zeroizing::new(refresh),
                scope: if t.scope.is_empty() {
                    scope
                } else {
                    t.scope.clone()
                },
                expires_at: t.grant_expires_at,
            };
            store.save(&broker, &profile, &agent, &g)?;
            if let Some(old) = &superseded
                && let Err(e) = calls.revoke(old, "refresh_token").await
            {
                // The new grant stands; the old one ends at its expiry.
                tracing::warn!(
                    error = e.code(),
                    "could not revoke the grant this one extends"
                );
            }
            // The grant's first access token carries all of the grant's
            // scopes; the session takes a token of just the requested ones
            // below, so this one is revoked rather than left live, unused.
            if let Err(e) = calls.revoke(&t.access_token, "access_token").await {
                tracing::warn!(
                    error = e.code(),
                    "could not revoke the grant's first access token"
                );
            }
            g
        }
    };
    // A live session of this process may already hold a token for exactly
    // this (shared_tokens.rs): take a share of it instead of a round trip.
    let share = ShareKey {
        broker: broker.clone(),
        profile: profile.clone(),
        agent: agent.clone(),
        jkt: grant.key.thumbprint().to_owned(),
        audience: audience.to_owned(),
        scope: requested.to_string(),
        ttl: opts.ttl,
    };
    let adopted = if needs_new {
        None
    } else {
        shared_tokens::adopt(&share, now)
    };
    let access = match adopted {
        Some(s) => {
            drop(_lock);
            routes.set(audience, s.gateways)?;
            AccessToken {
                token: s.token,
                issued_at: s.issued_at,
                expires_at: s.expires_at,
                scope: ScopeSet::parse(&s.scope).unwrap_or_default(),
            }
        }
        None => {
            let gateways =
                gateways_of(&broker, &meta, fetched_now, audience, opts.rng.as_ref()).await?;
            routes.set(audience, gateways.clone())?;
            let t = calls
                .exchange(
                    &grant.refresh_token,
                    &requested.to_string(),
                    audience,
                    opts.ttl,
                )
                .await;
            let t = match t {
                Err(Error::InvalidGrant(m)) => {
                    // The stored grant was revoked or has expired: forget it so that the
                    // next call asks the owner again.
                    store.remove(&broker, &profile, &agent)?;
                    return Err(Error::InvalidGrant(format!(
                        "{m} (the stored grant was revoked or expired and has been forgotten; authenticate again to ask the owner)"
                    )));
                }
                other => other?,
            };
            if let Some(r) = &t.refresh_token {
                grant.refresh_token = Zeroizing::new(r.clone());
                store.save(&broker, &profile, &agent, &grant)?;
            }
            drop(_lock);
            let access = access_from(&t, now)?;
            shared_tokens::register(
                share,
                Shared {
                    token: access.token.clone(),
                    issued_at: access.issued_at,
                    expires_at: access.expires_at,
                    scope: access.scope.to_string(),
                    gateways,
                },
            );
            access
        }
    };
    if !access.scope.covers_all(&required) {
        return Err(Error::ScopeNotGranted {
            missing: access.scope.missing(&required).to_string(),
            granted: access.scope.to_string(),
        });
    }
    let mut tokens = HashMap::new();
    tokens.insert(audience.to_owned(), access);
    let inner = Arc::new(SessionInner {
        calls,
        broker,
        profile,
        store,
        requested,
        required,
        ttl: opts.ttl,
        tokens: RwLock::new(tokens),
        primary_audience: audience.to_owned(),
        routes,
        renew_lock: tokio::sync::Mutex::new(()),
        closed: AtomicBool::new(false),
        step_up: opts.allow_step_up.then(|| {
            opts.prompt
                .clone()
                .unwrap_or_else(stepup::stderr_step_up_prompt)
        }),
        cancel: opts.cancel.clone(),
    });
    let renewal = opts
        .background_renewal
        .then(|| tokio::spawn(renewal_loop(Arc::downgrade(&inner))));
    Ok(Session { inner, renewal })
}

pub(super) fn access_from(t: &TokenResponse, now: i64) -> Result<AccessToken> {
    let scope = ScopeSet::parse(&t.scope)
        .map_err(|_| Error::InvalidResponse("the token response has no valid scope".into()))?;
    Ok(AccessToken {
        token: Zeroizing::new(t.access_token.clone()),
        issued_at: now,
        // DESIGN caps lifetimes at 30 days; a larger claim cannot overflow the
        // renewal arithmetic.
        expires_at: now.saturating_add(t.expires_in.clamp(1, MAX_TOKEN_LIFETIME)),
        scope,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::access_from;
    use crate::net::client::MAX_TOKEN_LIFETIME;
    use crate::wire::TokenResponse;

    #[test]
    fn a_token_is_held_for_at_most_30_days_whatever_the_broker_says() {
        let now = 1_700_000_000;
        let held = |expires_in: i64| {
            let t = TokenResponse {
                access_token: "at".into(),
                token_type: "DPoP".into(),
                expires_in,
                scope: "calendar:read".into(),
                refresh_token: None,
                issued_token_type: None,
                grant_id: None,
                audience: None,
                grant_expires_at: None,
            };
            access_from(&t, now).unwrap().expires_at - now
        };
        assert_eq!(MAX_TOKEN_LIFETIME, 30 * 86_400);
        assert_eq!(held(MAX_TOKEN_LIFETIME), MAX_TOKEN_LIFETIME);
        assert_eq!(held(MAX_TOKEN_LIFETIME + 1), MAX_TOKEN_LIFETIME);
        assert_eq!(held(i64::MAX), MAX_TOKEN_LIFETIME);
        assert_eq!(held(0), 1);
        assert_eq!(held(-5), 1);
    }
}
