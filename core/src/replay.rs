//! The DPoP replay cache (RFC 9449 section 11.1).
//!
//! Entries are SHA-256 digests of (`jti`, `htm`, `htu`), so every entry has the
//! same small size whatever the client sent. The cache is sharded behind
//! mutexes: check-and-insert is one critical section, so two identical proofs
//! racing each other cannot both pass. Entries are forgotten once the proof's
//! `iat` has left the acceptance window; memory is bounded by a hard capacity,
//! and a full cache refuses new proofs (fails closed) rather than forgetting
//! live ones.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::error::{Error, Reason, Result};

const SHARDS: usize = 16;

struct Shard {
    entries: HashMap<[u8; 32], i64>,
    next_sweep: i64,
}

/// A bounded, concurrent set of recently seen proofs.
pub struct ReplayCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    sweep_every: i64,
}

impl fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayCache")
            .field("capacity", &(self.per_shard * SHARDS))
            .field("len", &self.len())
            .finish()
    }
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(1 << 18)
    }
}

impl ReplayCache {
    /// A cache holding at most about `capacity` live proofs (rounded up to a
    /// multiple of the shard count).
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        ReplayCache {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        entries: HashMap::new(),
                        next_sweep: i64::MIN,
                    })
                })
                .collect(),
            per_shard,
            sweep_every: 5,
        }
    }

    fn shard(&self, key: &[u8; 32]) -> MutexGuard<'_, Shard> {
        let idx = usize::from(key[0]) % SHARDS;
        // A poisoned lock only means another thread panicked mid-insert; the map
        // itself is still consistent, so keep serving rather than panicking too.
        match self.shards[idx].lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The cache key of a proof.
    pub fn key(jti: &str, htm: &str, htu: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [jti, htm, htu] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    /// Record `key` as used until `forget_at`; fails if it is already there and
    /// still live (`invalid_dpop_proof`, reason `replay`), or if the cache is full
    /// of live entries (`temporarily_unavailable`).
    pub fn check_and_insert(&self, key: [u8; 32], now: i64, forget_at: i64) -> Result<()> {
        let mut shard = self.shard(&key);
        if now >= shard.next_sweep || shard.entries.len() >= self.per_shard {
            shard.entries.retain(|_, t| *t > now);
            shard.next_sweep = now.saturating_add(self.sweep_every);
        }
        match shard.entries.get(&key) {
            Some(t) if *t > now => {
                return Err(Error::proof(Reason::Replay, "this proof was already used"));
            }
            _ => {}
        }
        if shard.entries.len() >= self.per_shard {
            return Err(Error::TemporarilyUnavailable(
                "too many recent proofs to check for replay; retry shortly".into(),
            ));
        }
        shard.entries.insert(key, forget_at);
        Ok(())
    }

    /// Live and not-yet-swept entries.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| match s.lock() {
                Ok(g) => g.entries.len(),
                Err(p) => p.into_inner().entries.len(),
            })
            .sum()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn second_use_is_a_replay_until_forgotten() {
        let c = ReplayCache::new(64);
        let k = ReplayCache::key("a", "GET", "https://x/");
        c.check_and_insert(k, 100, 111).unwrap();
        let e = c.check_and_insert(k, 105, 116).unwrap_err();
        assert_eq!(e.reason(), Some(Reason::Replay));
        c.check_and_insert(k, 111, 122).unwrap();
    }

    #[test]
    fn target_is_part_of_the_key() {
        assert_ne!(
            ReplayCache::key("a", "GET", "https://x/"),
            ReplayCache::key("a", "POST", "https://x/")
        );
        assert_ne!(
            ReplayCache::key("ab", "", "c"),
            ReplayCache::key("a", "b", "c")
        );
    }

    #[test]
    fn full_cache_fails_closed_then_recovers() {
        let c = ReplayCache::new(SHARDS);
        let mut refused = 0;
        for i in 0..200 {
            let k = ReplayCache::key(&i.to_string(), "GET", "u");
            if let Err(e) = c.check_and_insert(k, 0, 10) {
                assert_eq!(e.code(), "temporarily_unavailable");
                refused += 1;
            }
        }
        assert!(refused > 0);
        assert!(c.len() <= SHARDS);
        let k = ReplayCache::key("late", "GET", "u");
        c.check_and_insert(k, 10, 20).unwrap();
    }

    #[test]
    fn concurrent_identical_proofs_pass_once() {
        let c = Arc::new(ReplayCache::default());
        let k = ReplayCache::key("same", "GET", "u");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || c.check_and_insert(k, 0, 10).is_ok())
            })
            .collect();
        let passed = handles
            .into_iter()
            .filter(|_| true)
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(passed, 1);
    }
}
