//! Renewal: tokens are exchanged again before they expire, in the background
//! and on demand, always under the profile lock.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use zeroize::Zeroizing;

use super::authenticate::access_from;
use super::session::{AccessToken, SessionInner};
use crate::error::{Error, Result};
use crate::net::{http, shared_tokens};

/// Sleep until about three quarters of the shortest token lifetime (with
/// ±10 % jitter), renew, repeat; back off on failure; stop with the session.
pub(super) async fn renewal_loop(weak: Weak<SessionInner>) {
    let mut failures = 0u32;
    loop {
        let wait = {
            let Some(inner) = weak.upgrade() else { return };
            if inner.closed.load(Ordering::SeqCst) {
                return;
            }
            let now = inner.calls.clock.now();
            let due = inner.tokens.read().ok().and_then(|m| {
                m.values()
                    .map(|a| a.issued_at + (a.expires_at - a.issued_at) * 3 / 4)
                    .min()
            });
            let secs = due.map_or(60, |d| (d - now).max(0));
            let mut b = [0u8; 1];
            let jitter = match inner.calls.rng.fill(&mut b) {
                Ok(()) => secs as f64 * 0.1 * (f64::from(b[0]) / 127.5 - 1.0),
                Err(_) => 0.0,
            };
            let base = Duration::from_secs_f64((secs as f64 + jitter).max(0.2));
            if failures > 0 {
                http::backoff(failures.min(5), inner.calls.rng.as_ref())
            } else {
                base
            }
        };
        tokio::time::sleep(wait).await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        match renew(&inner, false).await {
            Ok(()) => failures = 0,
            Err(Error::InvalidGrant(_)) => return,
            Err(_) => failures += 1,
        }
    }
}

/// Exchange the grant again for every audience whose token is due (or all, if
/// `force`), under the profile lock so that concurrent processes never spend
/// each other's rotated refresh tokens.
pub(super) async fn renew(inner: &Arc<SessionInner>, force: bool) -> Result<()> {
    let _one = inner.renew_lock.lock().await;
    let now = inner.calls.clock.now();
    let due: Vec<(String, String)> = {
        let m = inner
            .tokens
            .read()
            .map_err(|_| Error::Server("session state poisoned".into()))?;
        m.iter()
            .filter(|(_, a)| force || now >= a.issued_at + (a.expires_at - a.issued_at) * 3 / 4)
            .map(|(aud, a)| (aud.clone(), a.scope.to_string()))
            .collect()
    };
    if due.is_empty() {
        return Ok(());
    }
    let audiences: Vec<String> = due.into_iter().map(|(aud, _)| aud).collect();
    let fresh = exchange_under_lock(inner, &audiences).await?;
    if let Ok(mut m) = inner.tokens.write() {
        for (aud, _) in &fresh {
            // The replaced token ends at its expiry; this session no longer
            // holds a share of it.
            if let Some(old) = m.get(aud) {
                shared_tokens::release(&old.token);
            }
        }
        m.extend(fresh);
    }
    Ok(())
}

/// Exchange the stored grant for a token per audience, under the profile lock
/// (re-reading the grant first, storing a rotated refresh token at once), so
/// that concurrent processes never spend each other's refresh tokens.
pub(super) async fn exchange_under_lock(
    inner: &Arc<SessionInner>,
    audiences: &[String],
) -> Result<Vec<(String, AccessToken)>> {
    let store = inner.store.clone();
    let profile = inner.profile.clone();
    let _lock = tokio::task::spawn_blocking(move || store.lock(&profile))
        .await
        .map_err(|e| Error::Storage(format!("lock task failed: {e}")))??;
    let agent = inner.calls.agent.clone();
    let mut grant = inner
        .store
        .load(&inner.broker, &inner.profile, &agent)?
        .ok_or_else(|| Error::InvalidGrant("the stored grant is gone".into()))?;
    let mut out = Vec::with_capacity(audiences.len());
    for aud in audiences {
        let t = inner
            .calls
            .exchange(
                &grant.refresh_token,
                &inner.requested.to_string(),
                aud,
                inner.ttl,
            )
            .await?;
        if let Some(r) = &t.refresh_token {
            grant.refresh_token = Zeroizing::new(r.clone());
            inner
                .store
                .save(&inner.broker, &inner.profile, &agent, &grant)?;
        }
        out.push((aud.clone(), access_from(&t, inner.calls.clock.now())?));
    }
    Ok(out)
}
