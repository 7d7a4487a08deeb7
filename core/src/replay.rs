//! The DPoP replay cache (RFC 9449 section 11.1).
//!
//! Entries are SHA-256 digests of (`jti`, `htm`, `htu`), so every entry has the
//! same small size whatever the client sent. The cache is sharded behind
//! mutexes: check-and-insert is one critical section, so two identical proofs
//! racing each other cannot both pass. Entries are forgotten once the proof's
//! `iat` has left the acceptance window; memory is bounded by a hard capacity,
//! and a full cache refuses new proofs (fails closed) rather than forgetting
//! live ones.
//!
//! Fair sharing: a caller that knows where a proof came from (the broker knows
//! the client's address) passes a source tag, and no one source may hold more
//! than a fixed share of the capacity ([`SOURCE_SHARE`]); a flood from one
//! source is refused when it reaches its share, while every other source keeps
//! its room.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::error::{Error, Reason, Result};

const SHARDS: usize = 16;

/// One source may hold at most 1/`SOURCE_SHARE` of the capacity.
pub const SOURCE_SHARE: usize = 64;

/// Why an insert failed.
enum Full {
    Replay,
    Cache,
    Source,
}

impl Full {
    fn into_error(self) -> Error {
        match self {
            Full::Replay => Error::proof(Reason::Replay, "this proof was already used"),
            Full::Cache => Error::TemporarilyUnavailable(
                "too many recent proofs to check for replay; retry shortly".into(),
            ),
            Full::Source => Error::TemporarilyUnavailable(
                "too many recent proofs from this source; retry shortly".into(),
            ),
        }
    }
}

/// (when the entry may be forgotten, the source tag it counts against).
struct Shard {
    entries: HashMap<[u8; 32], (i64, Option<u64>)>,
    next_sweep: i64,
}

/// A bounded, concurrent set of recently seen proofs.
pub struct ReplayCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    sweep_every: i64,
    /// Live entries per source tag (lock order: a shard, then this).
    sources: Mutex<HashMap<u64, usize>>,
    per_source: usize,
    next_full_sweep: AtomicI64,
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
            sources: Mutex::new(HashMap::new()),
            per_source: (per_shard * SHARDS / SOURCE_SHARE).max(1),
            next_full_sweep: AtomicI64::new(i64::MIN),
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
        self.check_and_insert_from(key, None, now, forget_at)
    }

    fn source_counts(&self) -> MutexGuard<'_, HashMap<u64, usize>> {
        match self.sources.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Forget the entries of `shard` whose time has come, and count them off
    /// their sources.
    fn sweep(&self, shard: &mut Shard, now: i64) {
        let mut gone: Vec<u64> = Vec::new();
        shard.entries.retain(|_, (t, src)| {
            let keep = *t > now;
            if let (false, Some(s)) = (keep, src) {
                gone.push(*s);
            }
            keep
        });
        self.release(&gone);
        shard.next_sweep = now.saturating_add(self.sweep_every);
    }

    fn release(&self, sources: &[u64]) {
        if sources.is_empty() {
            return;
        }
        let mut counts = self.source_counts();
        for s in sources {
            if let Some(n) = counts.get_mut(s) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(s);
                }
            }
        }
    }

    /// [`check_and_insert`](Self::check_and_insert) for a proof from `source`
    /// (a tag of the client's address, for example): also refused with
    /// `temporarily_unavailable` when that source already holds its share of
    /// the capacity.
    pub fn check_and_insert_from(
        &self,
        key: [u8; 32],
        source: Option<u64>,
        now: i64,
        forget_at: i64,
    ) -> Result<()> {
        match self.try_insert(key, source, now, forget_at) {
            // A source at its share may be holding entries that expired in
            // shards nobody touched since: sweep them all (at most once a
            // second, so that a flood cannot make every request pay for it),
            // then look again.
            Err(Full::Source) if self.full_sweep_due(now) => {
                for idx in 0..SHARDS {
                    let mut shard = match self.shards[idx].lock() {
                        Ok(g) => g,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    self.sweep(&mut shard, now);
                }
                self.try_insert(key, source, now, forget_at)
                    .map_err(Full::into_error)
            }
            r => r.map_err(Full::into_error),
        }
    }

    fn full_sweep_due(&self, now: i64) -> bool {
        let due = self.next_full_sweep.load(Ordering::Relaxed);
        now >= due
            && self
                .next_full_sweep
                .compare_exchange(
                    due,
                    now.saturating_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    fn try_insert(
        &self,
        key: [u8; 32],
        source: Option<u64>,
        now: i64,
        forget_at: i64,
    ) -> std::result::Result<(), Full> {
        let mut shard = self.shard(&key);
        if now >= shard.next_sweep || shard.entries.len() >= self.per_shard {
            self.sweep(&mut shard, now);
        }
        match shard.entries.get(&key) {
            Some((t, _)) if *t > now => return Err(Full::Replay),
            _ => {}
        }
        if shard.entries.len() >= self.per_shard {
            return Err(Full::Cache);
        }
        if let Some(s) = source {
            let mut counts = self.source_counts();
            let n = counts.entry(s).or_insert(0);
            if *n >= self.per_source {
                return Err(Full::Source);
            }
            *n += 1;
        }
        // An expired entry under the same key is replaced: its source's count
        // goes down.
        if let Some((_, Some(old))) = shard.entries.insert(key, (forget_at, source)) {
            self.release(&[old]);
        }
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
    fn one_source_gets_its_share_and_others_keep_their_room() {
        let c = ReplayCache::new(SHARDS * SOURCE_SHARE);
        // The flooder's share of a cache of 1,024 is 16.
        let mut accepted = 0;
        for i in 0..100 {
            let k = ReplayCache::key(&format!("flood{i}"), "GET", "u");
            match c.check_and_insert_from(k, Some(1), 0, 10) {
                Ok(()) => accepted += 1,
                Err(e) => assert_eq!(e.code(), "temporarily_unavailable"),
            }
        }
        assert_eq!(accepted, 16);
        // Another source is not affected.
        for i in 0..16 {
            let k = ReplayCache::key(&format!("agent{i}"), "GET", "u");
            c.check_and_insert_from(k, Some(2), 0, 100).unwrap();
        }
        // Once the flooder's proofs leave the window, its room comes back.
        let mut later = 0;
        for i in 0..40 {
            let k = ReplayCache::key(&format!("late{i}"), "GET", "u");
            if c.check_and_insert_from(k, Some(1), 10, 20).is_ok() {
                later += 1;
            }
        }
        assert_eq!(later, 16);
        // A replay from any source is still a replay.
        let k = ReplayCache::key("agent0", "GET", "u");
        let e = c.check_and_insert_from(k, Some(3), 10, 20).unwrap_err();
        assert_eq!(e.reason(), Some(Reason::Replay));
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
