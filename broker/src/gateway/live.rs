//! What the gateway reads from the store for every request, shared by the
//! requests that arrive together, and the state of tokens already found live.
//!
//! Each request needs the upstream's record and to know that no revocation
//! it has not seen was committed before it arrived (by this process, the CLI
//! or another replica). A *round* is one store read of the revocation feed's
//! head and of the records of the upstreams its requests name; a request waits
//! for the first round that *starts after it arrived*, so whatever was
//! committed before it is in what it sees, exactly as with a read of its own.
//! Concurrent requests share a round: one trip to the store for many calls.
//! Rounds run on a thread of their own, one after another.
//!
//! A store of one process (SQLite: a local file whose readers never wait for
//! its writer) is read on the request's own thread instead when it is the
//! only gateway request in progress: at concurrency 1 the trip to the rounds'
//! thread and back (two thread wake-ups) costs more than the read. Concurrent
//! requests keep sharing rounds (one read for many).
//!
//! A token found live (token active, grant active, not a step-up's one-time
//! token) is remembered with the feed head of the round it was read in; it
//! counts as live only while a later round still sees that same head and its
//! grant has not expired. Any revocation moves the head, so the next request
//! reads the store again. Only revocation takes a token or grant from live to
//! not live besides time (expiry is checked here) and the redemption of a
//! one-time token, which is never remembered.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::store::{self, Store, UpstreamRec};

/// At most this many live tokens are remembered.
const MAX: usize = 16_384;

/// The feed head and the records of the upstreams named (`None`: no such upstream).
type Read = (i64, HashMap<String, Option<UpstreamRec>>);

/// What one round read.
#[derive(Clone, Default)]
struct Round {
    /// Its number (0: none yet).
    n: u64,
    /// The feed head and the upstreams named, or `None` if the read failed.
    seen: Option<Arc<Read>>,
}

#[derive(Default)]
struct Gate {
    /// The newest round started.
    started: u64,
    /// Whether the thread running rounds was started.
    thread: bool,
    /// The upstreams named by requests waiting for the next round.
    names: HashSet<String>,
    /// Whether a request waits for the next round.
    wanted: bool,
}

struct Entry {
    gid: String,
    /// The feed head it was read under.
    head: i64,
    /// The earlier of the token's and the grant's expiry.
    until: i64,
}

/// The shared reads and the live tokens.
pub(super) struct Live {
    gate: Mutex<Gate>,
    /// Wakes the thread running rounds.
    wake: Condvar,
    done: watch::Sender<Round>,
    tokens: Mutex<HashMap<String, Entry>>,
    /// Whether a request is reading the store on its own thread.
    inline: AtomicBool,
    /// Gateway requests in progress.
    busy: AtomicUsize,
}

/// A gateway request in progress, until dropped.
pub(super) struct Busy<'a>(&'a AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live(..)")
    }
}

impl Default for Live {
    fn default() -> Self {
        Live {
            gate: Mutex::default(),
            wake: Condvar::new(),
            done: watch::channel(Round::default()).0,
            tokens: Mutex::default(),
            inline: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// What a request sees: the feed head and its upstream's record.
pub(super) struct Seen {
    pub head: i64,
    pub upstream: Option<UpstreamRec>,
}

impl Live {
    /// The feed head and upstream `name`'s record, read after this call
    /// started; `None` when the store did not answer.
    pub async fn read(self: &Arc<Self>, store: &Arc<dyn Store>, name: &str) -> Option<Seen> {
        if let Some(seen) = self.read_here(store, name) {
            return seen;
        }
        let mut rx = self.done.subscribe();
        let need = {
            let mut g = lock(&self.gate);
            if !g.thread {
                let (me, store) = (self.clone(), store.clone());
                std::thread::Builder::new()
                    .name("gateway-reads".into())
                    .spawn(move || me.rounds(&store))
                    .ok()?;
                g.thread = true;
            }
            g.names.insert(name.to_owned());
            g.wanted = true;
            g.started + 1
        };
        self.wake.notify_one();
        let round = rx.wait_for(|r| r.n >= need).await.ok()?.clone();
        let seen = round.seen?;
        Some(Seen {
            head: seen.0,
            upstream: seen.1.get(name).cloned().flatten(),
        })
    }

    /// Count a gateway request as in progress while the guard lives.
    pub fn busy(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(&self.busy)
    }

    /// The same read on this thread (see the module's notes), or `None` when
    /// it is for a round: the store is shared by several processes (reads
    /// cross the network), or other requests are in progress.
    fn read_here(&self, store: &Arc<dyn Store>, name: &str) -> Option<Option<Seen>> {
        /// Clears the flag however the read ends.
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        if store.shares_proofs()
            || self.busy.load(Ordering::Acquire) > 1
            || self.inline.swap(true, Ordering::Acquire)
        {
            return None;
        }
        let _done = Done(&self.inline);
        // A panic fails this request (as a store failure), as in a round.
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store::read_blocking(store, |tx| {
                Ok(Seen {
                    head: tx.revocation_head()?,
                    upstream: tx.upstream_get(name)?,
                })
            })
        }));
        Some(read.ok().and_then(Result::ok))
    }

    /// Run a round each time requests wait for one (on its own thread: a
    /// store read blocks).
    fn rounds(&self, store: &Arc<dyn Store>) {
        loop {
            let (n, names) = {
                let mut g = lock(&self.gate);
                while !g.wanted {
                    g = match self.wake.wait(g) {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                }
                g.wanted = false;
                g.started += 1;
                (g.started, std::mem::take(&mut g.names))
            };
            // A panic fails this round's requests, not the thread.
            let seen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                store::read_blocking(store, move |tx| {
                    let head = tx.revocation_head()?;
                    let mut ups = HashMap::with_capacity(names.len());
                    for name in names {
                        let rec = tx.upstream_get(&name)?;
                        ups.insert(name, rec);
                    }
                    Ok((head, ups))
                })
            }))
            .ok()
            .and_then(Result::ok)
            .map(Arc::new);
            self.done.send_replace(Round { n, seen });
        }
    }

    /// Whether token `jti` of grant `gid` was found live under feed head
    /// `head` and neither it nor its grant has expired at `now`.
    pub fn known_live(&self, jti: &str, gid: &str, head: i64, now: i64) -> bool {
        lock(&self.tokens)
            .get(jti)
            .is_some_and(|e| e.gid == gid && e.head == head && now < e.until)
    }

    /// Remember that token `jti` of grant `gid`, not a one-time token, was
    /// read live under feed head `head`, until `until`.
    pub fn remember(&self, jti: &str, gid: &str, head: i64, until: i64, now: i64) {
        let mut m = lock(&self.tokens);
        if m.len() >= MAX {
            m.retain(|_, e| e.head == head && now < e.until);
            if m.len() >= MAX {
                m.clear();
            }
        }
        m.insert(
            jti.to_owned(),
            Entry {
                gid: gid.to_owned(),
                head,
                until,
            },
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_live_token_counts_only_under_the_same_head_and_before_expiry() {
        let l = Live::default();
        assert!(!l.known_live("t1", "g1", 5, 100));
        l.remember("t1", "g1", 5, 200, 100);
        assert!(l.known_live("t1", "g1", 5, 199));
        // A revocation anywhere moved the head.
        assert!(!l.known_live("t1", "g1", 6, 150));
        // Expired (token or grant).
        assert!(!l.known_live("t1", "g1", 5, 200));
        // Another grant's claims for the same id.
        assert!(!l.known_live("t1", "g2", 5, 150));
    }
}
