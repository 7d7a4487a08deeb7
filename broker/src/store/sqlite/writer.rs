//! The writer thread (one transaction per batch of write jobs, each job in a
//! savepoint: group commit) and the WAL checkpointer beside it.
//!
//! The checkpointer copies committed pages from the WAL into the database on
//! a connection of its own, so that the writer never stops committing to do
//! it (a checkpoint on the writer's connection, SQLite's default every 1,000
//! pages, held every request queued behind it for tens of milliseconds).
//! Durability is unchanged: a commit is on disk (the WAL, `synchronous=FULL`)
//! before any job of its batch is answered.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
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

/// Start the writer thread on `conn` and the checkpointer on a connection of
/// its own; both end when the store (the sender of `rx`) is dropped.
pub(super) fn start(
    conn: Connection,
    path: &Path,
    busy: Duration,
    rx: Receiver<Job>,
    queued: Arc<AtomicUsize>,
    commits: Arc<AtomicUsize>,
) -> Result<()> {
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
        .map_err(db_err)?;
    let checkpoints = open(path, false, busy)?;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || checkpointer(&checkpoints, &stopped))
        .map_err(|e| Error::Server(format!("cannot start the checkpointer: {e}")))?;
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            writer(conn, rx, &queued, &commits);
            drop(stop);
        })
        .map_err(|e| Error::Server(format!("cannot start the writer: {e}")))?;
    Ok(())
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

fn writer(conn: Connection, rx: Receiver<Job>, queued: &AtomicUsize, commits: &AtomicUsize) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let _ = queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
            Some(q.saturating_sub(batch.len()))
        });
        commits.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Dropping the jobs tells every caller the store is unavailable.
            tracing::error!(error = %e, "cannot begin a transaction");
            continue;
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
            let mut tx = SqliteTx { conn: &conn };
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
