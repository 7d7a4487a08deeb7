//! The SQLite backend: WAL journal, `synchronous=FULL` (a commit is on disk
//! before it is acknowledged), group commit on one write connection (by the
//! writer thread, or by a request that finds the connection free: see
//! `writer.rs`), and a small pool of read-only connections.

mod audit;
pub mod backup;
mod budget;
mod clients;
mod conn;
mod migrate;
pub(super) mod prune;
mod schema;
mod stepup;
mod tx;
mod tx2;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protonpass_agent::Error;
use rusqlite::Connection;

use self::conn::{SqliteTx, db_err, open};
use super::shares::QueueShares;
use super::{Job, Result, Store, Tx};

/// Most write jobs committed together.
const MAX_BATCH: usize = 256;
/// Queued write jobs before callers wait (and best-effort jobs are dropped).
const QUEUE: usize = 4096;
/// Async writers admitted at once: they wait for a permit and never block a
/// runtime thread. Best-effort jobs (audit records of rejected requests) get
/// a quarter of the queue and are dropped beyond it; the last quarter is for
/// blocking callers (the CLI). So a flood of rejections never fills the
/// queue under the requests that issue tokens.
const ADMITTED: usize = QUEUE / 2;
/// Best-effort jobs queued at once.
const DETACHED: usize = QUEUE / 4;
/// Reader connections kept open.
const READERS: usize = 8;
/// Wrong-code and sign-in attempts older than this (seconds) are deleted.
const ATTEMPTS_KEPT: i64 = 86_400;

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    queue: SyncSender<Job>,
    writer: Arc<self::writer::Writer>,
    shares: QueueShares,
    readers: Mutex<Vec<Connection>>,
    busy: Duration,
    /// Jobs queued and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    /// Batches committed.
    commits: Arc<AtomicUsize>,
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path` and start its writer.
    /// A transaction fails (503) after waiting `busy` for another process's
    /// write lock.
    pub fn open_with(path: &Path, busy: Duration) -> Result<Arc<Self>> {
        let conn = open(path, false, busy)?;
        self::migrate::migrate(&conn, path)?;
        let (queue, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        let commits = Arc::new(AtomicUsize::new(0));
        let (q2, c2) = (queued.clone(), commits.clone());
        let writer = self::writer::start(conn, path, busy, rx, q2, c2)?;
        Ok(Arc::new(SqliteStore {
            path: path.to_owned(),
            queue,
            writer,
            shares: QueueShares::new(ADMITTED, DETACHED),
            readers: Mutex::new(Vec::new()),
            busy,
            queued,
            commits,
        }))
    }
}

impl Store for SqliteStore {
    fn submit(&self, job: Job) -> Result<()> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.queue.send(job).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            Error::TemporarilyUnavailable("the store is closed".into())
        })?;
        self.writer.after_queued();
        Ok(())
    }

    fn figures(&self) -> Vec<(&'static str, &'static str, f64)> {
        let idle = self.readers.lock().map_or(0, |v| v.len());
        let mut v = vec![
            (
                "protonpass_store_queue_depth",
                "Write jobs waiting for the writer.",
                self.queued.load(Ordering::Acquire) as f64,
            ),
            (
                "protonpass_store_queue_capacity",
                "Write jobs the queue holds before writers wait.",
                QUEUE as f64,
            ),
        ];
        v.extend(self.shares.figures());
        v.extend([
            (
                "protonpass_store_commits",
                "Group commits since start (a counter).",
                self.commits.load(Ordering::Relaxed) as f64,
            ),
            (
                "protonpass_store_readers_idle",
                "Idle reader connections in the pool.",
                idle as f64,
            ),
            (
                "protonpass_store_readers_max",
                "Reader connections the pool keeps.",
                READERS as f64,
            ),
        ]);
        v
    }

    fn admission(&self) -> Arc<tokio::sync::Semaphore> {
        self.shares.admission()
    }

    fn try_submit(&self, job: Job) -> bool {
        let Some(job) = self.shares.best_effort(job) else {
            return false;
        };
        self.queued.fetch_add(1, Ordering::AcqRel);
        match self.queue.try_send(job) {
            Ok(()) => {
                // Best effort: the request that was just refused does not
                // commit it; the writer thread does, or a later request's
                // batch takes it along.
                self.writer.wake_writer();
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                false
            }
        }
    }

    fn read(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        let conn = match self.readers.lock().ok().and_then(|mut v| v.pop()) {
            Some(c) => c,
            None => open(&self.path, true, self.busy)?,
        };
        let r = {
            let mut tx = SqliteTx { conn: &conn };
            f(&mut tx)
        };
        if let Ok(mut v) = self.readers.lock()
            && v.len() < READERS
        {
            v.push(conn);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Grant, GrantStatus};
    use crate::store::{read_blocking, write_blocking};

    #[test]
    fn a_database_that_cannot_be_opened_names_its_path_and_the_fix() {
        // A directory where the database file should be: SQLite cannot open it.
        let dir = tempfile::tempdir().unwrap();
        let e = SqliteStore::open_with(dir.path(), Duration::from_millis(100)).unwrap_err();
        let m = e.description();
        assert_eq!(e.code(), "invalid_request", "{m}");
        assert!(m.contains(&dir.path().display().to_string()), "{m}");
        assert!(
            m.contains("belong to the user running protonpass-broker"),
            "{m}"
        );
        assert!(!m.contains("storage failure"), "{m}");
    }

    fn grant(gid: &str) -> Grant {
        Grant {
            gid: gid.into(),
            owner: "o".into(),
            agent: "a".into(),
            scope: "x:y".into(),
            audiences: vec!["https://api.example".into()],
            jkt: None,
            status: GrantStatus::Active,
            origin: "test".into(),
            created_at: 1,
            ttl: 3600,
            expires_at: 3601,
            enroll_hash: None,
            revoked_at: None,
        }
    }

    #[test]
    fn a_failed_transaction_leaves_nothing_and_spares_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let s: Arc<dyn Store> =
            SqliteStore::open_with(&dir.path().join("db"), Duration::from_secs(10)).unwrap();
        // Many concurrent jobs share commits; the failing ones roll back alone.
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || {
                    write_blocking(&s, move |tx| {
                        tx.grant_put(&grant(&format!("g{i}")))?;
                        tx.audit_append(1, "o", "grant", "{}")?;
                        if i % 2 == 1 {
                            // e.g. the audit record could not be written
                            return Err(Error::TemporarilyUnavailable("audit".into()));
                        }
                        Ok(())
                    })
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_ok(), i % 2 == 0);
        }
        for i in 0..64 {
            let gid = format!("g{i}");
            let got = read_blocking(&s, |tx| tx.grant_get(&gid)).unwrap();
            assert_eq!(got.is_some(), i % 2 == 0, "{gid}");
        }
        // The chain holds exactly the committed records, contiguous.
        let recs = read_blocking(&s, |tx| tx.audit_page(0, 1000)).unwrap();
        assert_eq!(recs.len(), 32);
        let mut v = crate::audit::Verifier::default();
        v.feed(&recs).unwrap();
    }

    #[test]
    fn a_job_that_panics_fails_alone_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let s: Arc<dyn Store> =
            SqliteStore::open_with(&dir.path().join("db"), Duration::from_secs(10)).unwrap();
        let r = write_blocking(&s, |tx| -> Result<()> {
            tx.grant_put(&grant("doomed"))?;
            panic!("injected fault")
        });
        assert!(r.is_err());
        // Nothing of the panicking job was kept, and later writes commit.
        write_blocking(&s, |tx| tx.grant_put(&grant("after"))).unwrap();
        assert!(
            read_blocking(&s, |tx| tx.grant_get("doomed"))
                .unwrap()
                .is_none()
        );
        assert!(
            read_blocking(&s, |tx| tx.grant_get("after"))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn feed_is_ordered_and_drops_expired_entries() {
        let dir = tempfile::tempdir().unwrap();
        let s: Arc<dyn Store> =
            SqliteStore::open_with(&dir.path().join("db"), Duration::from_secs(10)).unwrap();
        write_blocking(&s, |tx| {
            tx.revocation_add(Some("j1"), None, 100, "o")?;
            tx.revocation_add(None, Some("g1"), 50, "o")?;
            tx.revocation_add(Some("j2"), None, 200, "o")?;
            Ok(())
        })
        .unwrap();
        let all = read_blocking(&s, |tx| tx.revocations_after(0, 60, 10)).unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 3]);
        let later = read_blocking(&s, |tx| tx.revocations_after(1, 60, 10)).unwrap();
        assert_eq!(later[0].jti.as_deref(), Some("j2"));
        assert_eq!(read_blocking(&s, |tx| tx.revocation_head()).unwrap(), 3);
    }
}
