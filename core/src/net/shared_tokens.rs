//! Access tokens shared by the sessions of one process.
//!
//! An agent often calls `authenticate_with_proton` again and again (a tool
//! per task, a loop per step) with the same stored grant, audience and scopes.
//! Each call used to exchange the refresh token at the broker: a round trip
//! and a durable write for a token the process already holds. A session made
//! for the same grant key, broker, profile, agent, audience, scopes and
//! lifetime takes the live token of an earlier one instead, while that token
//! has at least half of its lifetime left (so that it is not renewed at once).
//!
//! Tokens are counted: closing a session revokes a token only when no other
//! live session of the process holds it, so that one session's shutdown does
//! not cut off another. A share carries the routes learned with the token
//! (`gateway_route.rs`), so that taking it needs no trip to the broker at
//! all: a new session routes as the live one does, with the same age of
//! knowledge (at most the token's lifetime). Nothing here is written to disk: a new process always
//! starts with a fresh exchange.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// What a token is shared for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ShareKey {
    /// The broker (issuer).
    pub broker: String,
    /// The grant store profile.
    pub profile: String,
    /// The agent's name.
    pub agent: String,
    /// The thumbprint of the grant's key (a new grant has a new key).
    pub jkt: String,
    /// The token's audience.
    pub audience: String,
    /// The requested scopes, as sent.
    pub scope: String,
    /// The requested lifetime.
    pub ttl: Option<u64>,
}

/// A shared access token.
#[derive(Clone)]
pub(super) struct Shared {
    /// The token.
    pub token: Zeroizing<String>,
    /// When this process received it.
    pub issued_at: i64,
    /// When it expires.
    pub expires_at: i64,
    /// The scopes granted, as the broker answered.
    pub scope: String,
    /// The gateway URLs the audience was routed through when the token was
    /// obtained (`gateway_route.rs`): a session taking a share routes as the
    /// session it shares with, rather than asking the broker again.
    pub gateways: Vec<String>,
}

type Digest32 = [u8; 32];

#[derive(Default)]
struct Registry {
    /// The latest token for each key.
    latest: HashMap<ShareKey, Digest32>,
    /// Live tokens and how many sessions hold each.
    live: HashMap<Digest32, (Shared, usize)>,
}

fn registry() -> &'static Mutex<Registry> {
    static REG: OnceLock<Mutex<Registry>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(Registry::default()))
}

fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

/// Take a share of the latest token for `key` if it still has at least half
/// of its lifetime left at `now`.
pub(super) fn adopt(key: &ShareKey, now: i64) -> Option<Shared> {
    let mut reg = registry().lock().ok()?;
    let d = *reg.latest.get(key)?;
    let (shared, holders) = reg.live.get_mut(&d)?;
    let half = shared.issued_at + (shared.expires_at - shared.issued_at) / 2;
    if now >= half {
        return None;
    }
    *holders += 1;
    Some(shared.clone())
}

/// Make a token that one session holds available to later sessions for `key`.
pub(super) fn register(key: ShareKey, shared: Shared) {
    let d = digest(&shared.token);
    if let Ok(mut reg) = registry().lock() {
        reg.live.entry(d).or_insert((shared, 1));
        reg.latest.insert(key, d);
    }
}

/// A session lets go of `token`: true when no session holds it any more (or
/// it was never shared), so that the caller may revoke it.
pub(super) fn release(token: &str) -> bool {
    let d = digest(token);
    let Ok(mut reg) = registry().lock() else {
        return true;
    };
    match reg.live.get_mut(&d) {
        None => true,
        Some((_, holders)) if *holders > 1 => {
            *holders -= 1;
            false
        }
        Some(_) => {
            reg.live.remove(&d);
            reg.latest.retain(|_, v| *v != d);
            true
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(aud: &str) -> ShareKey {
        ShareKey {
            broker: "https://broker.test".into(),
            profile: "default".into(),
            agent: "bot".into(),
            jkt: "jkt".into(),
            audience: aud.into(),
            scope: "a:read".into(),
            ttl: None,
        }
    }

    fn tok(t: &str, iat: i64, exp: i64) -> Shared {
        Shared {
            token: Zeroizing::new(t.into()),
            issued_at: iat,
            expires_at: exp,
            scope: "a:read".into(),
            gateways: Vec::new(),
        }
    }

    #[test]
    fn shared_while_fresh_and_revocable_by_the_last_holder_only() {
        let k = key("https://one.test");
        register(k.clone(), tok("t-one", 1000, 2000));
        // Fresh: a second session shares it.
        assert_eq!(&*adopt(&k, 1400).unwrap().token, "t-one");
        // Past half its lifetime: not handed out any more.
        assert!(adopt(&k, 1500).is_none());
        // Another audience or scope: not shared.
        assert!(adopt(&key("https://two.test"), 1100).is_none());
        // The first to close keeps it alive for the other; the last revokes.
        assert!(!release("t-one"));
        assert!(release("t-one"));
        assert!(adopt(&k, 1100).is_none());
        // A token never shared is the caller's to revoke.
        assert!(release("never-registered"));
    }
}
