//! DPoP proofs shared by replicas ([`Store::proof_use`](crate::store::Store::proof_use)),
//! recorded in groups: one thread takes the proofs that arrived while the
//! previous group was being written and records them with one autocommit
//! statement (one round trip, one commit for the group, instead of one of
//! each per request).
//!
//! What a proof's caller is told is unchanged: `true` only once the row is
//! committed, and only for the one insert that made it (the table's unique
//! key decides between replicas, as between two requests of one group: the
//! second of two equal keys in a group is refused before the statement).

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use deadpool_postgres::Pool;
use protonpass_agent::Error;

use super::conn::PgTx;
use super::{pg_err, pool_err, wait};
use crate::store::Result;

/// Most proofs recorded by one statement.
const MAX_GROUP: usize = 256;
/// Proofs waiting for the thread; a request finding the queue full is
/// answered `503` at once.
const QUEUE: usize = 4096;
/// How long a request waits for its proof's group: past it the store is
/// taken as unavailable (`503`), never the proof as fresh.
const WAIT: Duration = Duration::from_secs(30);

const INSERT: &str = "INSERT INTO dpop_proofs(key, forget_at)
       SELECT k, f FROM unnest($1::bytea[], $2::int8[]) AS t(k, f)
     ON CONFLICT (key) DO UPDATE SET forget_at = EXCLUDED.forget_at
       WHERE dpop_proofs.forget_at <= $3
     RETURNING key";

/// One proof to record, and where its answer goes.
struct Ask {
    key: [u8; 32],
    now: i64,
    forget_at: i64,
    reply: SyncSender<Result<bool>>,
}

/// The queue to the recording thread.
#[derive(Debug)]
pub(super) struct Proofs {
    queue: SyncSender<Ask>,
}

impl Proofs {
    /// Start the recording thread on `pool`.
    pub(super) fn start(pool: Pool, rt: tokio::runtime::Handle) -> Result<Self> {
        let (queue, rx) = sync_channel::<Ask>(QUEUE);
        std::thread::Builder::new()
            .name("store-proofs".into())
            .spawn(move || record(&pool, &rt, &rx))
            .map_err(|e| Error::Server(format!("cannot start the proof recorder: {e}")))?;
        Ok(Proofs { queue })
    }

    /// Record `key` (see [`Store::proof_use`](crate::store::Store::proof_use)):
    /// blocks until its group is committed.
    pub(super) fn use_once(&self, key: &[u8; 32], now: i64, forget_at: i64) -> Result<bool> {
        let (reply, answer) = sync_channel(1);
        self.queue
            .try_send(Ask {
                key: *key,
                now,
                forget_at,
                reply,
            })
            .map_err(|e| match e {
                TrySendError::Full(_) => busy(),
                TrySendError::Disconnected(_) => closed(),
            })?;
        answer.recv_timeout(WAIT).map_err(|e| match e {
            RecvTimeoutError::Timeout => busy(),
            RecvTimeoutError::Disconnected => closed(),
        })?
    }
}

fn busy() -> Error {
    Error::TemporarilyUnavailable("the store is not answering: try again".into())
}

fn closed() -> Error {
    Error::TemporarilyUnavailable("the store is closed".into())
}

fn record(pool: &Pool, rt: &tokio::runtime::Handle, rx: &Receiver<Ask>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(a) => group.push(a),
                Err(_) => break,
            }
        }
        // A key twice in one group: the first is the one inserted, the
        // others are replays (one statement may not touch a row twice).
        let mut seen = HashSet::with_capacity(group.len());
        let (mut first, again): (Vec<Ask>, Vec<Ask>) =
            group.into_iter().partition(|a| seen.insert(a.key));
        // Every replica inserts in key order: two groups holding the same
        // two keys wait for each other in one order, never in a cycle.
        first.sort_unstable_by_key(|a| a.key);
        for a in again {
            let _ = a.reply.send(Ok(false));
        }
        let outcome = insert(pool, rt, &first);
        for a in first {
            let r = match &outcome {
                Ok(fresh) => Ok(fresh.contains(&a.key)),
                Err(e) => Err(e.clone()),
            };
            // A caller that stopped waiting needs no answer.
            let _ = a.reply.send(r);
        }
    }
}

/// Insert the group's keys; the keys this statement inserted or took over
/// (an expired row not pruned yet).
fn insert(pool: &Pool, rt: &tokio::runtime::Handle, group: &[Ask]) -> Result<HashSet<[u8; 32]>> {
    let client = wait(rt, pool.get()).map_err(pool_err)?;
    let keys: Vec<&[u8]> = group.iter().map(|a| &a.key[..]).collect();
    let forget: Vec<i64> = group.iter().map(|a| a.forget_at).collect();
    // A row is taken over only once its proof's time has passed for every
    // request of the group.
    let now = group.iter().map(|a| a.now).min().unwrap_or(0);
    let rows = PgTx::new(&client, rt).query(INSERT, &[&keys, &forget, &now])?;
    let mut fresh = HashSet::with_capacity(rows.len());
    for r in rows {
        let k: &[u8] = r.try_get(0).map_err(pg_err)?;
        if let Ok(k) = <[u8; 32]>::try_from(k) {
            fresh.insert(k);
        }
    }
    Ok(fresh)
}
