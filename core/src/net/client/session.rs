//! The session: the access tokens it holds per audience, what it tells
//! about them, and how it ends (closed, on a signal, or dropped).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use zeroize::Zeroizing;

use super::calls::BrokerCalls;
use super::renewal::{exchange_under_lock, renew};
use super::{CancelHandle, PromptFn};
use crate::error::{Error, Result};
use crate::net::gateway_route::Routes;
use crate::net::shared_tokens;
use crate::net::store::GrantStore;
use crate::scope::ScopeSet;

pub(super) struct AccessToken {
    pub(super) token: Zeroizing<String>,
    pub(super) issued_at: i64,
    pub(super) expires_at: i64,
    pub(super) scope: ScopeSet,
}

pub(super) struct SessionInner {
    pub(super) calls: BrokerCalls,
    pub(super) broker: String,
    pub(super) profile: String,
    pub(super) store: GrantStore,
    pub(super) requested: ScopeSet,
    pub(super) required: ScopeSet,
    pub(super) ttl: Option<u64>,
    pub(super) tokens: RwLock<HashMap<String, AccessToken>>,
    pub(super) primary_audience: String,
    /// The audiences served through the broker's gateway, and where.
    pub(super) routes: Routes,
    pub(super) renew_lock: tokio::sync::Mutex<()>,
    pub(super) closed: AtomicBool,
    /// The step-up prompt when step-ups are allowed.
    pub(super) step_up: Option<PromptFn>,
    /// Ends a wait for a step-up too.
    pub(super) cancel: Option<CancelHandle>,
}

/// An authenticated agent session: DPoP-bound access tokens per audience,
/// renewed in the background, revoked by [`Session::close`] (and, best effort,
/// on drop).
pub struct Session {
    pub(super) inner: Arc<SessionInner>,
    pub(super) renewal: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("agent", &self.inner.calls.agent)
            .field("broker", &self.inner.broker)
            .field("audience", &self.inner.primary_audience)
            .field("scopes", &self.scopes().to_string())
            .finish()
    }
}

impl Session {
    /// The scopes granted for the session's (first) audience.
    pub fn scopes(&self) -> ScopeSet {
        self.with_token(&self.inner.primary_audience, |a| a.scope.clone())
            .unwrap_or_default()
    }

    /// When the current access token for the first audience expires.
    pub fn expires_at(&self) -> i64 {
        self.with_token(&self.inner.primary_audience, |a| a.expires_at)
            .unwrap_or_default()
    }

    /// The agent's key thumbprint (what tokens are bound to).
    pub fn thumbprint(&self) -> &str {
        self.inner.calls.key.thumbprint()
    }

    /// The audiences this session holds tokens for.
    pub fn audiences(&self) -> Vec<String> {
        self.inner
            .tokens
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn with_token<T>(&self, aud: &str, f: impl FnOnce(&AccessToken) -> T) -> Option<T> {
        self.inner.tokens.read().ok()?.get(aud).map(f)
    }

    /// The audience a URL belongs to: the one with the longest path among
    /// those the URL lies under ([`audience::pick`]); a URL under none of
    /// Renew every access token now.
    pub async fn renew(&self) -> Result<()> {
        renew(&self.inner, true).await
    }

    /// Get a token for another audience too (one access token per audience).
    pub async fn add_audience(&self, audience: &str) -> Result<ScopeSet> {
        let inner = &self.inner;
        inner
            .routes
            .learn(
                &inner.broker,
                &inner.calls.meta,
                false,
                audience,
                inner.calls.rng.as_ref(),
            )
            .await?;
        let (_, access) = exchange_under_lock(inner, &[audience.to_owned()])
            .await?
            .pop()
            .ok_or_else(|| Error::InvalidResponse("no token for the audience".into()))?;
        if !access.scope.covers_all(&inner.required) {
            return Err(Error::ScopeNotGranted {
                missing: access.scope.missing(&inner.required).to_string(),
                granted: access.scope.to_string(),
            });
        }
        let scope = access.scope.clone();
        if let Ok(mut m) = inner.tokens.write() {
            m.insert(audience.to_owned(), access);
        }
        Ok(scope)
    }

    /// Revoke the session's access tokens (and the grant too when
    /// `revoke_grant`), then stop renewing. Bounded in time; retries on 503.
    pub async fn close(&self, revoke_grant: bool) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // A renewal in flight (in the background or from `send`) finishes
        // first: cancelling it midway could lose a refresh token the broker
        // had just rotated, and letting it run on could put fresh tokens back
        // after they were revoked. The background task is stopped only then,
        // while it sleeps or waits for the lock.
        let _renewing = self.inner.renew_lock.lock().await;
        if let Some(h) = &self.renewal {
            h.abort();
        }
        close_inner(&self.inner, revoke_grant).await
    }

    /// Revoke the session's access tokens when the process receives SIGINT or
    /// SIGTERM (Unix) or Ctrl-C, then let the host's own handling continue.
    /// Returns the watcher task; abort it to stop watching.
    pub fn close_on_signal(&self) -> tokio::task::JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            if !inner.closed.swap(true, Ordering::SeqCst) {
                let _ = close_inner(&inner, false).await;
            }
        })
    }

    /// Whether [`Session::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }
}

async fn close_inner(inner: &Arc<SessionInner>, revoke_grant: bool) -> Result<()> {
    let tokens: Vec<Zeroizing<String>> = inner
        .tokens
        .write()
        .map(|mut m| m.drain().map(|(_, a)| a.token).collect())
        .unwrap_or_default();
    let mut first_err = None;
    for t in tokens {
        // A token another live session of this process shares stays live.
        if !shared_tokens::release(&t) {
            continue;
        }
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            inner.calls.revoke(&t, "access_token"),
        )
        .await
        .unwrap_or_else(|_| Err(Error::BrokerUnavailable("revocation timed out".into())));
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    if revoke_grant {
        let agent = inner.calls.agent.clone();
        let store = inner.store.clone();
        let profile = inner.profile.clone();
        let _lock = tokio::task::spawn_blocking(move || store.lock(&profile))
            .await
            .map_err(|e| Error::Storage(format!("lock task failed: {e}")))??;
        if let Some(g) = inner.store.load(&inner.broker, &inner.profile, &agent)? {
            if let Err(e) = inner.calls.revoke(&g.refresh_token, "refresh_token").await {
                first_err.get_or_insert(e);
            }
            inner.store.remove(&inner.broker, &inner.profile, &agent)?;
        }
    }
    first_err.map_or(Ok(()), Err)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let renewal = self.renewal.take();
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            if let Some(h) = renewal {
                h.abort();
            }
            return;
        }
        // Best effort: revoke on the current runtime if there is one, after a
        // renewal in flight has finished (as `close` does).
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let inner = self.inner.clone();
                handle.spawn(async move {
                    let _renewing = inner.renew_lock.lock().await;
                    if let Some(h) = renewal {
                        h.abort();
                    }
                    let _ = close_inner(&inner, false).await;
                });
            }
            Err(_) => {
                if let Some(h) = renewal {
                    h.abort();
                }
                if let Ok(mut m) = self.inner.tokens.write() {
                    for (_, a) in m.drain() {
                        shared_tokens::release(&a.token);
                    }
                }
            }
        }
    }
}
