//! The store's write path: group commit with combining, and the WAL
//! checkpointer beside it.
//!
//! Write jobs go into one queue. Whoever holds the writer's connection (a
//! `Mutex`) takes up to [`MAX_BATCH`] of them and runs them in one
//! transaction, each job in a savepoint, with one commit (one fsync) for the
//! batch. A caller that finds the connection free runs that batch itself, on
//! its own thread, taking along whatever others queued meanwhile (flat
//! combining): an idle broker answers a write without handing it to another
//! thread and waiting to be woken, two thread switches that cost more than
//! the write on a small virtual machine. A caller that finds it busy only
//! wakes the writer thread, which takes the next batches as soon as the
//! connection is free, so that under load batches keep forming and no
//! caller runs more than one batch for others. Only one thread writes at a
//! time; none waits for the connection except the writer thread.
//!
//! The checkpointer copies committed pages from the WAL into the database on
//! a connection of its own, so that the writer never stops committing to do
//! it (a checkpoint on the writer's connection, SQLite's default every 1,000
//! pages, held every request queued behind it for tens of milliseconds).
//! Durability is unchanged: a commit is on disk (the WAL, `synchronous=FULL`)
//! before any job of its batch is answered.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use protonpass_agent::Error;
use rusqlite::Connection;

use super::{MAX_BATCH, SqliteTx, db_err, open};
use crate::store::{Finish, Job, Result};

/// How often the checkpointer copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// WAL pages after which the writer checkpoints itself: a backstop for a
/// checkpointer that cannot keep up (about 64 MiB with 4 KiB pages).
const WRITER_CHECKPOINT_PAGES: i64 = 16_384;

/// The writer's connection and the queue's receiving end: whoever holds the
/// lock writes.
struct Writing {
    conn: Connection,
    rx: Receiver<Job>,
}

/// The write path shared by the store (its callers) and the writer thread.
pub(super) struct Writer {
    writing: Mutex<Writing>,
    /// Jobs queued and not yet taken into a batch.
    queued: Arc<AtomicUsize>,
    /// Batches committed.
    commits: Arc<AtomicUsize>,
    /// Wakes the writer thread; one pending wake is enough (it drains the
    /// whole queue before it waits again).
    wake: SyncSender<()>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for Writer {
    /// Jobs still queued when the store closes are committed, as the writer
    /// thread did before it ended (best-effort audit records among them).
    fn drop(&mut self) {
        let writing = match self.writing.get_mut() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        while batch(writing, &self.queued, &self.commits) {}
    }
}

impl Writer {
    /// After a job was queued: run a batch here if the connection is free,
    /// else leave it to the writer thread (woken). Never waits for the lock.
    pub(super) fn after_queued(&self) {
        match self.writing.try_lock() {
            Ok(w) => {
                batch(&w, &self.queued, &self.commits);
                drop(w);
                // Jobs queued while this batch ran (their callers found the
                // lock taken and woke the writer thread, which may be waiting
                // for the lock; wake it again in case it had already looked).
                if self.queued.load(Ordering::Acquire) > 0 {
                    self.wake_writer();
                }
            }
            Err(TryLockError::WouldBlock) => self.wake_writer(),
            // A panic while writing is caught per job: a poisoned lock means
            // one outside a job's code; the writer thread still serves.
            Err(TryLockError::Poisoned(_)) => self.wake_writer(),
        }
    }

    /// After a job was queued from a caller that must not write itself.
    pub(super) fn wake_writer(&self) {
        match self.wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

/// Start the writer thread on `conn` and the checkpointer on a connection of
/// its own; both end when the store (the sender of `rx`) is dropped.
pub(super) fn start(
    conn: Connection,
    path: &Path,
    busy: Duration,
    rx: Receiver<Job>,
    queued: Arc<AtomicUsize>,
    commits: Arc<AtomicUsize>,
) -> Result<Arc<Writer>> {
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
        .map_err(db_err)?;
    let checkpoints = open(path, false, busy)?;
    let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
    let writer = Arc::new(Writer {
        writing: Mutex::new(Writing { conn, rx }),
        queued,
        commits,
        wake,
    });
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || checkpointer(&checkpoints, &stopped))
        .map_err(|e| Error::Server(format!("cannot start the checkpointer: {e}")))?;
    // The thread holds the write path weakly: it ends (after a last drain)
    // once the store has dropped it, which also closes the wake channel.
    let weak = Arc::downgrade(&writer);
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            while woken.recv().is_ok() {
                let Some(w) = weak.upgrade() else { break };
                drain(&w);
            }
            drop(stop);
        })
        .map_err(|e| Error::Server(format!("cannot start the writer: {e}")))?;
    Ok(writer)
}

/// Run batches until the queue is empty.
fn drain(w: &Writer) {
    let writing = match w.writing.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    while batch(&writing, &w.queued, &w.commits) {}
}

/// Copy the WAL into the database every [`CHECKPOINT_EVERY`] until `stopped`
/// disconnects. `PASSIVE` takes no lock a writer or reader waits for: it
/// copies what no reader still needs and leaves the rest for next time.
fn checkpointer(conn: &Connection, stopped: &Receiver<()>) {
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed; the writer's backstop remains");
        }
    }
}

/// Take up to [`MAX_BATCH`] queued jobs and commit them together; false when
/// the queue was empty.
fn batch(w: &Writing, queued: &AtomicUsize, commits: &AtomicUsize) -> bool {
    let (conn, rx) = (&w.conn, &w.rx);
    let mut batch = Vec::new();
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(j) => batch.push(j),
            Err(_) => break,
        }
    }
    if batch.is_empty() {
        return false;
    }
    let _ = queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
        Some(q.saturating_sub(batch.len()))
    });
    commits.fetch_add(1, Ordering::Relaxed);
    {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Dropping the jobs tells every caller the store is unavailable.
            tracing::error!(error = %e, "cannot begin a transaction");
            return true;
        }
        let mut finishes: Vec<Finish> = Vec::with_capacity(batch.len());
        for job in batch {
            if conn.is_autocommit() {
                // SQLite rolled the whole transaction back (disk full, I/O
                // error): the earlier jobs' work is gone, so they fail, and the
                // rest start over in a new transaction. Without this, the next
                // SAVEPOINT would open a transaction of its own and its RELEASE
                // would commit it while the batch is reported as failed.
                for f in finishes.drain(..) {
                    f(Err(Error::TemporarilyUnavailable("storage failure".into())));
                }
                if conn.execute_batch("BEGIN IMMEDIATE").is_err() {
                    // Dropping the job tells its caller the store is unavailable.
                    continue;
                }
            }
            if conn.execute_batch("SAVEPOINT job").is_err() {
                continue;
            }
            let mut tx = SqliteTx { conn };
            // A job that panics (a bug) fails alone: its savepoint is rolled
            // back, its caller gets 503, and the writer goes on serving the
            // others instead of dying and leaving every later write to fail.
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut tx)));
            let Ok((ok, finish)) = run else {
                tracing::error!("a write job panicked; it was rolled back");
                let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                continue;
            };
            let end = if ok {
                conn.execute_batch("RELEASE job")
            } else {
                conn.execute_batch("ROLLBACK TO job; RELEASE job")
            };
            if end.is_err() {
                finish(Err(Error::TemporarilyUnavailable("storage failure".into())));
                continue;
            }
            finishes.push(finish);
        }
        let commit = conn.execute_batch("COMMIT").map_err(db_err);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for f in finishes {
            let c = commit.clone();
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(c))).is_err() {
                tracing::error!("a write job's completion panicked");
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::super::SqliteStore;
    use crate::store::{Store, write_blocking};

    #[test]
    fn the_wal_reaches_the_database_without_the_writer_checkpointing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s: Arc<dyn Store> = SqliteStore::open_with(&path, Duration::from_secs(10)).unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        // About 1 MiB of commits: far below the writer's own checkpoint
        // threshold (64 MiB), so only the checkpointer copies it.
        for i in 0..20 {
            write_blocking(&s, move |tx| {
                for j in 0..50 {
                    tx.owner_ensure(&format!("{i:03}-{j:03}-{}", "x".repeat(1000)), 0)?;
                }
                Ok(())
            })
            .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let grown = loop {
            let now = std::fs::metadata(&path).unwrap().len();
            if now >= before + 900_000 || Instant::now() > deadline {
                break now;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            grown >= before + 900_000,
            "the database file stayed at {grown} bytes (was {before})"
        );
    }
}
