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
//! connection is free, so that under load batches keep forming. Only one
//! thread writes at a time; none waits for the connection except the writer
//! thread.
//!
//! A caller's thread is a runtime worker, so what it may do there is bounded:
//! at most [`COMBINE_MAX`] jobs, and it never waits for SQLite's write lock.
//! When another process (a CLI command on the same database) holds that
//! lock, the caller leaves the batch to the writer thread, which waits up to
//! the busy timeout as before.
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
/// The most jobs a caller runs on its own thread in one batch (its own and
/// others queued meanwhile); the writer thread takes up to [`MAX_BATCH`].
const COMBINE_MAX: usize = 16;
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
    /// SQLite's busy timeout on the writer's connection, restored after a
    /// caller's attempt that must not wait.
    busy: Duration,
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
        while guarded(writing, || {
            batch(writing, &self.queued, &self.commits, MAX_BATCH, false)
        }) {}
    }
}

impl Writer {
    /// After a job was queued: run a batch here if the connection is free,
    /// else leave it to the writer thread (woken). Never waits for the lock.
    pub(super) fn after_queued(&self) {
        let w = match self.writing.try_lock() {
            Ok(w) => w,
            Err(TryLockError::WouldBlock) => return self.wake_writer(),
            // Panics are caught inside a batch; a poisoned lock would mean
            // one in the batch's own code, after which the connection was
            // put back in order (see `guarded`): write on.
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        if begin_now(&w.conn, self.busy) {
            // The transaction is open: the batch runs here.
            guarded(&w, || {
                batch(&w, &self.queued, &self.commits, COMBINE_MAX, true)
            });
        }
        drop(w);
        // Jobs left (queued while this batch ran, beyond what it took, or
        // all of them when another process holds the write lock) go to the
        // writer thread; wake it again in case it had already looked.
        if self.queued.load(Ordering::Acquire) > 0 {
            self.wake_writer();
        }
    }

    /// After a job was queued from a caller that must not write itself.
    pub(super) fn wake_writer(&self) {
        match self.wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            // The writer thread is gone (it cannot end while the store
            // lives, short of a bug): write here rather than leave the
            // queue to no one.
            Err(TrySendError::Disconnected(())) => drain(self),
        }
    }
}

/// `BEGIN IMMEDIATE` without waiting for SQLite's write lock: false (and
/// nothing begun) when another connection holds it.
fn begin_now(conn: &Connection, busy: Duration) -> bool {
    if conn.busy_timeout(Duration::ZERO).is_err() {
        return false;
    }
    let begun = conn.execute_batch("BEGIN IMMEDIATE").is_ok();
    if conn.busy_timeout(busy).is_err() {
        tracing::error!("cannot restore the store's busy timeout");
    }
    begun
}

/// Start the writer thread on `conn` and the checkpointer on a connection of
/// its own; both end when the returned [`Writer`] (held by the store) is
/// dropped.
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
        busy,
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
    while guarded(&writing, || {
        batch(&writing, &w.queued, &w.commits, MAX_BATCH, false)
    }) {}
}

/// `run` (a [`batch`] on `w`), with a panic in its own code (jobs and their
/// answers are caught inside) contained: the open transaction is rolled back,
/// so the connection is usable by the next batch, and the jobs taken fail
/// (their callers get `503`). True when the queue may hold more.
fn guarded(w: &Writing, run: impl FnOnce() -> bool) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
        tracing::error!("a write batch panicked; it was rolled back");
        if !w.conn.is_autocommit() {
            let _ = w.conn.execute_batch("ROLLBACK");
        }
        true
    })
}

/// Give a job its outcome; a panic there (a bug) is logged, not spread.
fn answer(f: Finish, r: Result<()>) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(r))).is_err() {
        tracing::error!("a write job's completion panicked");
    }
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

/// Take up to `max` queued jobs and commit them together; false when the
/// queue was empty. `begun`: the caller has already opened the transaction
/// (see [`begin_now`]).
fn batch(
    w: &Writing,
    queued: &AtomicUsize,
    commits: &AtomicUsize,
    max: usize,
    begun: bool,
) -> bool {
    let (conn, rx) = (&w.conn, &w.rx);
    let mut batch = Vec::new();
    while batch.len() < max {
        match rx.try_recv() {
            Ok(j) => batch.push(j),
            Err(_) => break,
        }
    }
    if batch.is_empty() {
        if begun {
            // Nothing was written: the empty transaction commits without
            // touching the disk.
            let _ = conn.execute_batch("COMMIT");
        }
        return false;
    }
    let _ = queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
        Some(q.saturating_sub(batch.len()))
    });
    commits.fetch_add(1, Ordering::Relaxed);
    {
        let begin = if begun {
            Ok(())
        } else {
            conn.execute_batch("BEGIN IMMEDIATE")
        };
        if let Err(e) = begin {
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
                    answer(
                        f,
                        Err(Error::TemporarilyUnavailable("storage failure".into())),
                    );
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
                answer(
                    finish,
                    Err(Error::TemporarilyUnavailable("storage failure".into())),
                );
                continue;
            }
            finishes.push(finish);
        }
        let commit = conn.execute_batch("COMMIT").map_err(db_err);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for f in finishes {
            answer(f, commit.clone());
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

    /// Another process holding SQLite's write lock (a CLI command) must not
    /// stall the runtime thread of the request that finds the writer's
    /// connection free: its batch waits on the writer thread instead, and is
    /// committed once the lock is released.
    #[test]
    fn a_request_never_waits_for_another_process_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let busy = Duration::from_secs(20);
        let s: Arc<dyn Store> = SqliteStore::open_with(&path, busy).unwrap();
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (ticked_first, written) = rt.block_on(async {
            let store = s.clone();
            let write = tokio::spawn(async move {
                crate::store::write(&store, |tx| tx.owner_ensure("held", 0)).await
            });
            // On this one-thread runtime, a write that waited for the lock
            // on the thread would hold this timer back for the whole busy
            // timeout (20 s), far past its 200 ms.
            let slept = Instant::now();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let ticked_first = !write.is_finished() && slept.elapsed() < busy / 4;
            other.execute_batch("COMMIT").unwrap();
            (ticked_first, write.await.unwrap())
        });
        assert!(ticked_first, "the write blocked the runtime thread");
        assert!(written.is_ok(), "the write failed: {written:?}");
    }

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
