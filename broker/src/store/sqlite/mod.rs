//! The SQLite backend: WAL journal, `synchronous=FULL` (a commit is on disk
//! before it is acknowledged), group commit on one write connection (by the
//! writer thread, or by a request that finds the connection free: see
//! `writer.rs`), and a small pool of read-only connections.

mod audit;
pub mod backup;
mod budget;
mod clients;
mod migrate;
pub(super) mod prune;
mod stepup;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protonpass_agent::Error;
use protonpass_agent::wire::RevocationEvent;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{AuditQuery, Invite, OwnerInfo, UpstreamRec, UsageCount, UsageSlot, WebSession};
use super::{ConnectionRec, PendingAuth};
use super::{Job, Result, Store, Tx};
use crate::model::{AuditRecord, DeviceReq, DeviceStatus, Grant, KeyMeta, Resource, TokenRec};
use crate::model::{Budget, SpendRec, StepUp, StepUpPolicy};

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

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS owners (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS grants (
  gid TEXT PRIMARY KEY, owner TEXT NOT NULL, agent TEXT NOT NULL,
  enroll_hash TEXT UNIQUE, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS grants_owner ON grants(owner, agent);
CREATE TABLE IF NOT EXISTS tokens (
  jti TEXT PRIMARY KEY, gid TEXT NOT NULL, hash TEXT UNIQUE, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
  id TEXT PRIMARY KEY, device_hash TEXT NOT NULL UNIQUE, user_hash TEXT NOT NULL,
  status TEXT NOT NULL, expires_at INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS devices_user ON devices(user_hash, status);
CREATE INDEX IF NOT EXISTS devices_live ON devices(status, expires_at);
CREATE TABLE IF NOT EXISTS resources (client_id TEXT PRIMARY KEY, owner TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS signing_keys (kid TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revocations (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, jti TEXT, gid TEXT, exp INTEGER NOT NULL, owner TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, owner TEXT NOT NULL, event TEXT NOT NULL,
  detail TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
  id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, at INTEGER NOT NULL, cost INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS attempts_key ON attempts(key, at);
CREATE INDEX IF NOT EXISTS attempts_at ON attempts(at);
";

/// Tables of the dashboard: owner passwords, setup links, web sessions.
pub(super) const DASHBOARD_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS owner_passwords (owner TEXT PRIMARY KEY, phc TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS owner_setup (hash TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS web_sessions (
  id_hash TEXT PRIMARY KEY, owner TEXT NOT NULL, csrf TEXT NOT NULL,
  created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_gid ON tokens(gid);
CREATE INDEX IF NOT EXISTS audit_owner ON audit(owner, seq);
CREATE INDEX IF NOT EXISTS resources_audience ON resources(json_extract(data, '$.audience'));
";

/// Owners' second factors (TOTP, recovery codes), as the dashboard writes them.
pub(super) const MFA_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS owner_mfa (owner TEXT PRIMARY KEY, data TEXT NOT NULL, updated_at INTEGER NOT NULL);
";

/// The gateway's upstreams: rules and the secret sealed by the vault.
pub(super) const GATEWAY_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS upstreams (
  name TEXT PRIMARY KEY, owner TEXT NOT NULL, rules TEXT NOT NULL, sealed BLOB NOT NULL,
  created_at INTEGER NOT NULL, rotated_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS upstreams_owner ON upstreams(owner, name);
";

/// The gateway's OAuth connections (tokens sealed by the vault) and pending
/// authorizations (`state` hash, PKCE verifier sealed), single use.
pub(super) const OAUTH_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS upstream_connections (
  upstream TEXT PRIMARY KEY, owner TEXT NOT NULL, id TEXT NOT NULL, status TEXT NOT NULL,
  sealed BLOB NOT NULL, access_expires_at INTEGER NOT NULL,
  connected_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS oauth_pending (
  state_hash TEXT PRIMARY KEY, owner TEXT NOT NULL, upstream TEXT NOT NULL,
  sealed BLOB NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  browser TEXT);
";

/// Invitations to register a resource server over HTTP (hash of the token).
pub(super) const REGISTRATION_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS resource_invites (
  hash TEXT PRIMARY KEY, owner TEXT NOT NULL, audience TEXT NOT NULL, shared INTEGER NOT NULL,
  expires_at INTEGER NOT NULL);
";

pub(super) fn db_err(e: rusqlite::Error) -> Error {
    tracing::error!(error = %e, "storage failure");
    Error::TemporarilyUnavailable("storage failure".into())
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Server(format!("encoding failed: {e}")))
}

fn from_json<T: DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Server(format!("stored record unreadable: {e}")))
}

/// A database that cannot be opened, with its path and the fix: a
/// permission problem is not a passing "storage failure".
fn open_err(path: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::CannotOpen | C::PermissionDenied | C::ReadOnly | C::NotADatabase) => {
            Error::InvalidRequest(format!(
                "cannot open the broker database {} ({e}); check that the data directory and its files \
                 belong to the user running protonpass-broker and that this user may write them, \
                 or pass --data DIR",
                path.display()
            ))
        }
        _ => db_err(e),
    }
}

fn open(path: &Path, read_only: bool, busy: Duration) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| open_err(path, e))?;
    conn.busy_timeout(busy).map_err(db_err)?;
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        .map_err(|e| open_err(path, e))?;
    // Statement journals (each write job runs in a savepoint) and temporary
    // tables stay in memory: a write never has to open a new file, so it does
    // not fail when a thousand client connections hold the process's file
    // descriptors (they spill to a temporary file by default).
    conn.execute_batch("PRAGMA temp_store=MEMORY;")
        .map_err(db_err)?;
    if read_only {
        conn.execute_batch("PRAGMA query_only=ON;")
            .map_err(db_err)?;
    }
    Ok(conn)
}

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    queue: SyncSender<Job>,
    writer: Arc<self::writer::Writer>,
    admission: Arc<tokio::sync::Semaphore>,
    detached: Arc<AtomicUsize>,
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
            admission: Arc::new(tokio::sync::Semaphore::new(ADMITTED)),
            detached: Arc::new(AtomicUsize::new(0)),
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
        vec![
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
            (
                "protonpass_store_writes_in_flight",
                "Asynchronous write jobs admitted and not yet committed.",
                ADMITTED.saturating_sub(self.admission.available_permits()) as f64,
            ),
            (
                "protonpass_store_detached_in_flight",
                "Best-effort write jobs (audit of rejected requests) queued.",
                self.detached.load(Ordering::Acquire) as f64,
            ),
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
        ]
    }

    fn admission(&self) -> Arc<tokio::sync::Semaphore> {
        self.admission.clone()
    }

    fn try_submit(&self, job: Job) -> bool {
        /// Counts a best-effort job until it has run or been dropped.
        struct Slot(Arc<AtomicUsize>);
        impl Drop for Slot {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if self.detached.fetch_add(1, Ordering::AcqRel) >= DETACHED {
            self.detached.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let slot = Slot(self.detached.clone());
        let job: Job = Box::new(move |tx: &mut dyn Tx| {
            let _slot = slot;
            job(tx)
        });
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

struct SqliteTx<'c> {
    conn: &'c Connection,
}

impl SqliteTx<'_> {
    fn one<T: DeserializeOwned>(&self, sql: &str, p: impl rusqlite::Params) -> Result<Option<T>> {
        let s: Option<String> = self
            .conn
            .prepare_cached(sql)
            .map_err(db_err)?
            .query_row(p, |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        s.map(|s| from_json(&s)).transpose()
    }

    /// Every row's JSON `data`, decoded.
    fn many<T: DeserializeOwned>(&self, sql: &str, p: impl rusqlite::Params) -> Result<Vec<T>> {
        let texts = self.rows(sql, p, |r| r.get::<_, String>(0))?;
        texts.iter().map(|t| from_json(t)).collect()
    }

    /// Every row, mapped by `f`.
    fn rows<T>(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
        f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let mut st = self.conn.prepare_cached(sql).map_err(db_err)?;
        let rows = st.query_map(p, f).map_err(db_err)?;
        rows.map(|r| r.map_err(db_err)).collect()
    }
}

/// An upstream row, as `SELECT name, owner, rules, sealed, created_at, rotated_at` reads it.
fn upstream_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UpstreamRec> {
    Ok(UpstreamRec {
        name: r.get(0)?,
        owner: r.get(1)?,
        rules: r.get(2)?,
        sealed: r.get(3)?,
        created_at: r.get(4)?,
        rotated_at: r.get(5)?,
    })
}

/// An audit row, as `SELECT seq, ts, owner, event, detail, prev, hash` reads it.
fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get(0)?,
        ts: r.get(1)?,
        owner: r.get(2)?,
        event: r.get(3)?,
        detail: r.get(4)?,
        prev: r.get(5)?,
        hash: r.get(6)?,
    })
}

impl Tx for SqliteTx<'_> {
    fn owner_ensure(&mut self, name: &str, now: i64) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO owners(name, created_at) VALUES (?1, ?2)")
            .map_err(db_err)?
            .execute(params![name, now])
            .map_err(db_err)?;
        Ok(())
    }

    fn owner_delete(&mut self, name: &str) -> Result<bool> {
        for sql in [
            "DELETE FROM web_sessions WHERE owner = ?1",
            "DELETE FROM owner_setup WHERE owner = ?1",
            "DELETE FROM owner_passwords WHERE owner = ?1",
            "DELETE FROM owner_mfa WHERE owner = ?1",
            // What the owner set up for the gateway and for registrations
            // goes too: a later owner of the same name inherits none of it.
            "DELETE FROM upstream_connections WHERE owner = ?1",
            "DELETE FROM oauth_pending WHERE owner = ?1",
            "DELETE FROM upstreams WHERE owner = ?1",
            "DELETE FROM resource_invites WHERE owner = ?1",
            "DELETE FROM auth_codes WHERE owner = ?1",
            "DELETE FROM stepups WHERE owner = ?1",
        ] {
            self.conn
                .prepare_cached(sql)
                .map_err(db_err)?
                .execute(params![name])
                .map_err(db_err)?;
        }
        let n = self
            .conn
            .prepare_cached("DELETE FROM owners WHERE name = ?1")
            .map_err(db_err)?
            .execute(params![name])
            .map_err(db_err)?;
        Ok(n > 0)
    }

    fn owners(&mut self) -> Result<Vec<OwnerInfo>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT o.name, o.created_at, p.owner IS NOT NULL FROM owners o \
                 LEFT JOIN owner_passwords p ON p.owner = o.name ORDER BY o.name",
            )
            .map_err(db_err)?;
        let rows = st
            .query_map([], |r| {
                Ok(OwnerInfo {
                    name: r.get(0)?,
                    created_at: r.get(1)?,
                    has_password: r.get(2)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err)
    }

    fn grant_put(&mut self, g: &Grant) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO grants(gid, owner, agent, enroll_hash, data) VALUES (?1,?2,?3,?4,?5)",
            )
            .map_err(db_err)?
            .execute(params![g.gid, g.owner, g.agent, g.enroll_hash, to_json(g)?])
            .map_err(db_err)?;
        Ok(())
    }

    fn grant_get(&mut self, gid: &str) -> Result<Option<Grant>> {
        self.one("SELECT data FROM grants WHERE gid = ?1", params![gid])
    }

    fn grant_by_enroll_hash(&mut self, hash: &str) -> Result<Option<Grant>> {
        self.one(
            "SELECT data FROM grants WHERE enroll_hash = ?1",
            params![hash],
        )
    }

    fn grants_of(&mut self, owner: &str, agent: Option<&str>) -> Result<Vec<Grant>> {
        self.many(
            "SELECT data FROM grants WHERE owner = ?1 AND (?2 IS NULL OR agent = ?2) ORDER BY rowid DESC",
            params![owner, agent],
        )
    }

    fn token_put(&mut self, t: &TokenRec) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO tokens(jti, gid, hash, data) VALUES (?1,?2,?3,?4)",
            )
            .map_err(db_err)?
            .execute(params![t.jti, t.gid, t.hash, to_json(t)?])
            .map_err(db_err)?;
        Ok(())
    }

    fn token_get(&mut self, jti: &str) -> Result<Option<TokenRec>> {
        self.one("SELECT data FROM tokens WHERE jti = ?1", params![jti])
    }

    fn token_by_hash(&mut self, hash: &str) -> Result<Option<TokenRec>> {
        self.one("SELECT data FROM tokens WHERE hash = ?1", params![hash])
    }

    fn device_put(&mut self, d: &DeviceReq) -> Result<()> {
        let status = match d.status {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Approved => "approved",
            DeviceStatus::Denied => "denied",
            DeviceStatus::Used => "used",
        };
        self.conn
            .prepare_cached(
                // An update keeps the row (and its rowid: the order of arrival).
                "INSERT INTO devices(id, device_hash, user_hash, status, expires_at, data) VALUES (?1,?2,?3,?4,?5,?6) \
                 ON CONFLICT(id) DO UPDATE SET device_hash = excluded.device_hash, user_hash = excluded.user_hash, \
                 status = excluded.status, expires_at = excluded.expires_at, data = excluded.data",
            )
            .map_err(db_err)?
            .execute(params![d.id, d.device_hash, d.user_hash, status, d.expires_at, to_json(d)?])
            .map_err(db_err)?;
        Ok(())
    }

    fn device_by_device_hash(&mut self, hash: &str) -> Result<Option<DeviceReq>> {
        self.one(
            "SELECT data FROM devices WHERE device_hash = ?1",
            params![hash],
        )
    }

    fn device_by_user_hash(&mut self, hash: &str, now: i64) -> Result<Option<DeviceReq>> {
        self.one(
            "SELECT data FROM devices WHERE user_hash = ?1 AND status = 'pending' AND expires_at > ?2",
            params![hash, now],
        )
    }

    fn device_live_count(&mut self, now: i64) -> Result<i64> {
        self.conn
            .prepare_cached(
                "SELECT COUNT(*) FROM devices WHERE status = 'pending' AND expires_at > ?1",
            )
            .map_err(db_err)?
            .query_row(params![now], |r| r.get(0))
            .map_err(db_err)
    }

    fn device_live_count_of(&mut self, requester: &str, now: i64) -> Result<i64> {
        self.conn
            .prepare_cached(
                "SELECT COUNT(*) FROM devices WHERE status = 'pending' AND expires_at > ?1 \
                 AND json_extract(data, '$.requester') = ?2",
            )
            .map_err(db_err)?
            .query_row(params![now, requester], |r| r.get(0))
            .map_err(db_err)
    }

    fn devices_pending(&mut self, now: i64) -> Result<Vec<DeviceReq>> {
        self.many(
            "SELECT data FROM devices WHERE status = 'pending' AND expires_at > ?1 ORDER BY rowid",
            params![now],
        )
    }

    fn devices_approved(&mut self, now: i64) -> Result<Vec<DeviceReq>> {
        self.many(
            "SELECT data FROM devices WHERE status = 'approved' AND expires_at > ?1",
            params![now],
        )
    }

    fn resource_put(&mut self, r: &Resource) -> Result<()> {
        self.conn
            .prepare_cached("INSERT INTO resources(client_id, owner, data) VALUES (?1,?2,?3)")
            .map_err(db_err)?
            .execute(params![r.client_id, r.owner, to_json(r)?])
            .map_err(db_err)?;
        Ok(())
    }

    fn resource_get(&mut self, client_id: &str) -> Result<Option<Resource>> {
        self.one(
            "SELECT data FROM resources WHERE client_id = ?1",
            params![client_id],
        )
    }

    fn resources_for_audience(&mut self, audience: &str) -> Result<Vec<Resource>> {
        // `+?1`, not `?1`: with a bare parameter compared to the indexed
        // expression and `ORDER BY rowid`, SQLite prepared this statement
        // again in every transaction (the profile of token exchanges showed
        // it as 9 % of the writer's time; it runs on every exchange and
        // refresh); the unary plus keeps the same index and the same answer.
        self.many(
            "SELECT data FROM resources WHERE json_extract(data, '$.audience') = +?1 ORDER BY rowid",
            params![audience],
        )
    }

    fn resources_of(&mut self, owner: &str) -> Result<Vec<Resource>> {
        self.many(
            "SELECT data FROM resources WHERE owner = ?1 ORDER BY rowid",
            params![owner],
        )
    }

    fn resource_delete(&mut self, client_id: &str) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM resources WHERE client_id = ?1")
            .map_err(db_err)?
            .execute(params![client_id])
            .map_err(db_err)?;
        Ok(n > 0)
    }

    fn key_put(&mut self, k: &KeyMeta) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO signing_keys(kid, data) VALUES (?1,?2)")
            .map_err(db_err)?
            .execute(params![k.kid, to_json(k)?])
            .map_err(db_err)?;
        Ok(())
    }

    fn keys_all(&mut self) -> Result<Vec<KeyMeta>> {
        self.many("SELECT data FROM signing_keys ORDER BY rowid", [])
    }

    fn revocation_add(
        &mut self,
        jti: Option<&str>,
        gid: Option<&str>,
        exp: i64,
        owner: &str,
    ) -> Result<i64> {
        self.conn
            .prepare_cached("INSERT INTO revocations(jti, gid, exp, owner) VALUES (?1,?2,?3,?4)")
            .map_err(db_err)?
            .execute(params![jti, gid, exp, owner])
            .map_err(db_err)?;
        Ok(self.conn.last_insert_rowid())
    }

    fn revocations_after(
        &mut self,
        after: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<RevocationEvent>> {
        self.rows(
            "SELECT seq, jti, gid, exp FROM revocations WHERE seq > ?1 AND exp > ?2 ORDER BY seq LIMIT ?3",
            params![after, now, limit],
            |r| {
                Ok(RevocationEvent {
                    seq: r.get(0)?,
                    jti: r.get(1)?,
                    gid: r.get(2)?,
                    exp: r.get(3)?,
                })
            },
        )
    }

    fn revocation_head(&mut self) -> Result<i64> {
        self.conn
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM revocations")
            .map_err(db_err)?
            .query_row([], |r| r.get(0))
            .map_err(db_err)
    }

    fn audit_append(&mut self, ts: i64, owner: &str, event: &str, detail: &str) -> Result<i64> {
        let last: Option<(i64, String)> = self
            .conn
            .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .map_err(db_err)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(db_err)?;
        let (seq, prev) = match last {
            Some((s, h)) => (s + 1, h),
            None => (1, crate::audit::GENESIS.to_owned()),
        };
        let hash = crate::audit::record_hash(seq, ts, owner, event, detail, &prev);
        self.conn
            .prepare_cached(
                "INSERT INTO audit(seq, ts, owner, event, detail, prev, hash) VALUES (?1,?2,?3,?4,?5,?6,?7)",
            )
            .map_err(db_err)?
            .execute(params![seq, ts, owner, event, detail, prev, hash])
            .map_err(db_err)?;
        Ok(seq)
    }

    fn audit_page(&mut self, after: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        self.rows(
            "SELECT seq, ts, owner, event, detail, prev, hash FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            params![after, limit],
            audit_row,
        )
    }

    fn audit_head(&mut self) -> Result<i64> {
        self.conn
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM audit")
            .map_err(db_err)?
            .query_row([], |r| r.get(0))
            .map_err(db_err)
    }

    fn attempt_add(&mut self, key: &str, at: i64, cost: i64) -> Result<()> {
        self.conn
            .prepare_cached("INSERT INTO attempts(key, at, cost) VALUES (?1,?2,?3)")
            .map_err(db_err)?
            .execute(params![key, at, cost])
            .map_err(db_err)?;
        // Every window that reads attempts is at most a day long: older rows
        // count for nothing, so the table stays as small as the recent traffic.
        self.conn
            .prepare_cached("DELETE FROM attempts WHERE at < ?1")
            .map_err(db_err)?
            .execute(params![at - ATTEMPTS_KEPT])
            .map_err(db_err)?;
        Ok(())
    }

    fn attempt_sum(&mut self, key: &str, since: i64) -> Result<i64> {
        self.conn
            .prepare_cached(
                "SELECT COALESCE(SUM(cost), 0) FROM attempts WHERE key = ?1 AND at > ?2",
            )
            .map_err(db_err)?
            .query_row(params![key, since], |r| r.get(0))
            .map_err(db_err)
    }

    fn mfa_get(&mut self, owner: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT data FROM owner_mfa WHERE owner = ?1")
            .map_err(db_err)?
            .query_row(params![owner], |r| r.get(0))
            .optional()
            .map_err(db_err)
    }

    fn mfa_put(&mut self, owner: &str, data: &str, now: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO owner_mfa (owner, data, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(owner) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
            )
            .map_err(db_err)?
            .execute(params![owner, data, now])
            .map_err(db_err)?;
        Ok(())
    }

    fn mfa_delete(&mut self, owner: &str) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM owner_mfa WHERE owner = ?1")
            .map_err(db_err)?
            .execute(params![owner])
            .map_err(db_err)?;
        Ok(n > 0)
    }

    fn owner_password(&mut self, owner: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT phc FROM owner_passwords WHERE owner = ?1")
            .map_err(db_err)?
            .query_row(params![owner], |r| r.get(0))
            .optional()
            .map_err(db_err)
    }

    fn owner_password_set(&mut self, owner: &str, phc: &str, now: i64) -> Result<()> {
        self.owner_ensure(owner, now)?;
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO owner_passwords(owner, phc, updated_at) VALUES (?1,?2,?3)",
            )
            .map_err(db_err)?
            .execute(params![owner, phc, now])
            .map_err(db_err)?;
        // A new password ends every session signed in with the old one, and
        // every setup link still out (a leaked one must not reset it again).
        for sql in [
            "DELETE FROM web_sessions WHERE owner = ?1",
            "DELETE FROM owner_setup WHERE owner = ?1",
        ] {
            self.conn
                .prepare_cached(sql)
                .map_err(db_err)?
                .execute(params![owner])
                .map_err(db_err)?;
        }
        Ok(())
    }

    fn setup_put(&mut self, hash: &str, owner: &str, expires_at: i64) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM owner_setup WHERE owner = ?1")
            .map_err(db_err)?
            .execute(params![owner])
            .map_err(db_err)?;
        self.conn
            .prepare_cached("INSERT INTO owner_setup(hash, owner, expires_at) VALUES (?1,?2,?3)")
            .map_err(db_err)?
            .execute(params![hash, owner, expires_at])
            .map_err(db_err)?;
        Ok(())
    }

    fn setup_get(&mut self, hash: &str, now: i64) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT owner FROM owner_setup WHERE hash = ?1 AND expires_at > ?2")
            .map_err(db_err)?
            .query_row(params![hash, now], |r| r.get(0))
            .optional()
            .map_err(db_err)
    }

    fn setup_delete(&mut self, hash: &str) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM owner_setup WHERE hash = ?1")
            .map_err(db_err)?
            .execute(params![hash])
            .map_err(db_err)?;
        Ok(())
    }

    fn session_put(&mut self, s: &WebSession) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO web_sessions(id_hash, owner, csrf, created_at, expires_at) VALUES (?1,?2,?3,?4,?5)",
            )
            .map_err(db_err)?
            .execute(params![s.id_hash, s.owner, s.csrf, s.created_at, s.expires_at])
            .map_err(db_err)?;
        // Forget sessions that ended long ago.
        self.conn
            .prepare_cached("DELETE FROM web_sessions WHERE expires_at < ?1")
            .map_err(db_err)?
            .execute(params![s.created_at])
            .map_err(db_err)?;
        Ok(())
    }

    fn session_get(&mut self, id_hash: &str, now: i64) -> Result<Option<WebSession>> {
        self.conn
            .prepare_cached(
                "SELECT id_hash, owner, csrf, created_at, expires_at FROM web_sessions WHERE id_hash = ?1 AND expires_at > ?2",
            )
            .map_err(db_err)?
            .query_row(params![id_hash, now], |r| {
                Ok(WebSession {
                    id_hash: r.get(0)?,
                    owner: r.get(1)?,
                    csrf: r.get(2)?,
                    created_at: r.get(3)?,
                    expires_at: r.get(4)?,
                })
            })
            .optional()
            .map_err(db_err)
    }

    fn sessions_end_others(&mut self, owner: &str, keep: &str) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM web_sessions WHERE owner = ?1 AND id_hash <> ?2")
            .map_err(db_err)?
            .execute(params![owner, keep])
            .map_err(db_err)?;
        Ok(())
    }

    fn session_delete(&mut self, id_hash: &str) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM web_sessions WHERE id_hash = ?1")
            .map_err(db_err)?
            .execute(params![id_hash])
            .map_err(db_err)?;
        Ok(())
    }

    fn tokens_of_grant(&mut self, gid: &str) -> Result<Vec<TokenRec>> {
        self.many(
            "SELECT data FROM tokens WHERE gid = ?1 ORDER BY rowid DESC",
            params![gid],
        )
    }

    fn audit_search(&mut self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        self.rows(
            "SELECT seq, ts, owner, event, detail, prev, hash FROM audit
             WHERE owner = ?1 AND seq < ?2
               AND (?3 IS NULL OR event = ?3)
               AND (?4 IS NULL OR (json_valid(detail) AND json_extract(detail, '$.agent') = ?4))
               AND (?5 IS NULL OR ts >= ?5)
               AND (?6 IS NULL OR ts < ?6)
               AND (?8 IS NULL OR (json_valid(detail) AND json_extract(detail, '$.gid') = ?8))
             ORDER BY seq DESC LIMIT ?7",
            params![
                q.owner,
                q.before.unwrap_or(i64::MAX),
                q.event,
                q.agent,
                q.since,
                q.until,
                q.limit,
                q.gid
            ],
            audit_row,
        )
    }

    fn usage_counts(&mut self, owner: &str) -> Result<Vec<UsageCount>> {
        self.rows(
            "SELECT json_extract(detail, '$.agent') AS agent,
                    COALESCE(SUM(json_extract(detail, '$.decision') = 'allow'), 0),
                    COALESCE(SUM(json_extract(detail, '$.decision') = 'deny'), 0),
                    MAX(ts)
             FROM audit WHERE owner = ?1 AND event = 'usage' AND json_valid(detail)
             GROUP BY agent ORDER BY agent",
            params![owner],
            |r| {
                Ok(UsageCount {
                    agent: r.get(0)?,
                    allowed: r.get(1)?,
                    refused: r.get(2)?,
                    last: r.get(3)?,
                })
            },
        )
    }

    fn usage_series(&mut self, owner: &str, since: i64, width: i64) -> Result<Vec<UsageSlot>> {
        self.rows(
            "SELECT json_extract(detail, '$.agent') AS agent, (ts - ?2) / ?3 AS slot,
                    COALESCE(SUM(json_extract(detail, '$.decision') = 'allow'), 0),
                    COALESCE(SUM(json_extract(detail, '$.decision') = 'deny'), 0)
             FROM audit WHERE owner = ?1 AND event = 'usage' AND ts >= ?2 AND json_valid(detail)
             GROUP BY agent, slot ORDER BY agent, slot",
            params![owner, since, width.max(1)],
            |r| {
                Ok(UsageSlot {
                    agent: r.get(0)?,
                    slot: r.get(1)?,
                    allowed: r.get(2)?,
                    refused: r.get(3)?,
                })
            },
        )
    }

    fn usage_refusals(&mut self, owner: &str, per_agent: i64) -> Result<Vec<AuditRecord>> {
        self.rows(
            "SELECT seq, ts, owner, event, detail, prev, hash FROM (
               SELECT *, ROW_NUMBER() OVER (
                 PARTITION BY json_extract(detail, '$.agent') ORDER BY seq DESC) AS n
               FROM audit WHERE owner = ?1 AND event = 'usage' AND json_valid(detail)
                 AND json_extract(detail, '$.decision') = 'deny')
             WHERE n <= ?2 ORDER BY seq DESC",
            params![owner, per_agent],
            audit_row,
        )
    }

    fn upstream_put(&mut self, u: &UpstreamRec) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO upstreams(name, owner, rules, sealed, created_at, rotated_at)
                 VALUES (?1,?2,?3,?4,?5,?6)",
            )
            .map_err(db_err)?
            .execute(params![u.name, u.owner, u.rules, u.sealed, u.created_at, u.rotated_at])
            .map_err(db_err)?;
        Ok(())
    }

    fn upstream_get(&mut self, name: &str) -> Result<Option<UpstreamRec>> {
        Ok(self
            .rows(
                "SELECT name, owner, rules, sealed, created_at, rotated_at FROM upstreams WHERE name = ?1",
                params![name],
                upstream_row,
            )?
            .pop())
    }

    fn upstream_list(&mut self, owner: &str) -> Result<Vec<UpstreamRec>> {
        self.rows(
            "SELECT name, owner, rules, sealed, created_at, rotated_at FROM upstreams
             WHERE owner = ?1 ORDER BY name",
            params![owner],
            upstream_row,
        )
    }

    fn upstream_all(&mut self) -> Result<Vec<UpstreamRec>> {
        self.rows(
            "SELECT name, owner, rules, sealed, created_at, rotated_at FROM upstreams ORDER BY name",
            params![],
            upstream_row,
        )
    }

    fn upstream_delete(&mut self, name: &str) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM upstreams WHERE name = ?1")
            .map_err(db_err)?
            .execute(params![name])
            .map_err(db_err)?;
        Ok(n > 0)
    }

    fn connection_put(&mut self, c: &ConnectionRec) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO upstream_connections(upstream, owner, id, status, sealed,
                   access_expires_at, connected_at, updated_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
            )
            .map_err(db_err)?
            .execute(params![
                c.upstream,
                c.owner,
                c.id,
                c.status,
                c.sealed,
                c.access_expires_at,
                c.connected_at,
                c.updated_at
            ])
            .map_err(db_err)?;
        Ok(())
    }

    fn connection_get(&mut self, upstream: &str) -> Result<Option<ConnectionRec>> {
        Ok(self
            .rows(
                "SELECT upstream, owner, id, status, sealed, access_expires_at, connected_at,
                   updated_at FROM upstream_connections WHERE upstream = ?1",
                params![upstream],
                |r| {
                    Ok(ConnectionRec {
                        upstream: r.get(0)?,
                        owner: r.get(1)?,
                        id: r.get(2)?,
                        status: r.get(3)?,
                        sealed: r.get(4)?,
                        access_expires_at: r.get(5)?,
                        connected_at: r.get(6)?,
                        updated_at: r.get(7)?,
                    })
                },
            )?
            .pop())
    }

    fn connection_delete(&mut self, upstream: &str) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM upstream_connections WHERE upstream = ?1")
            .map_err(db_err)?
            .execute(params![upstream])
            .map_err(db_err)?;
        Ok(n > 0)
    }

    fn oauth_pending_put(&mut self, p: &PendingAuth) -> Result<()> {
        // Expired ones go first: the table holds only live authorizations.
        self.conn
            .prepare_cached("DELETE FROM oauth_pending WHERE expires_at <= ?1")
            .map_err(db_err)?
            .execute(params![p.created_at])
            .map_err(db_err)?;
        self.conn
            .prepare_cached(
                "INSERT INTO oauth_pending(state_hash, owner, upstream, sealed, created_at, expires_at,
                   browser) VALUES (?1,?2,?3,?4,?5,?6,?7)",
            )
            .map_err(db_err)?
            .execute(params![
                p.state_hash,
                p.owner,
                p.upstream,
                p.sealed,
                p.created_at,
                p.expires_at,
                p.browser
            ])
            .map_err(db_err)?;
        Ok(())
    }

    fn oauth_pending_take(&mut self, state_hash: &str) -> Result<Option<PendingAuth>> {
        let found = self
            .rows(
                "SELECT state_hash, owner, upstream, sealed, created_at, expires_at, browser
                 FROM oauth_pending WHERE state_hash = ?1",
                params![state_hash],
                |r| {
                    Ok(PendingAuth {
                        state_hash: r.get(0)?,
                        owner: r.get(1)?,
                        upstream: r.get(2)?,
                        sealed: r.get(3)?,
                        created_at: r.get(4)?,
                        expires_at: r.get(5)?,
                        browser: r.get(6)?,
                    })
                },
            )?
            .pop();
        if found.is_some() {
            self.conn
                .prepare_cached("DELETE FROM oauth_pending WHERE state_hash = ?1")
                .map_err(db_err)?
                .execute(params![state_hash])
                .map_err(db_err)?;
        }
        Ok(found)
    }

    // Third-party clients and authorization codes (queries in `sqlite/clients.rs`).

    fn client_put(&mut self, c: &crate::model::ClientRec) -> Result<()> {
        self::clients::client_put(self.conn, c)
    }

    fn client_get(&mut self, client_id: &str) -> Result<Option<crate::model::ClientRec>> {
        self::clients::client_get(self.conn, client_id)
    }

    fn client_count_since(&mut self, since: i64) -> Result<i64> {
        self::clients::client_count_since(self.conn, since)
    }

    fn auth_code_put(&mut self, c: &crate::model::AuthCode) -> Result<()> {
        self::clients::code_put(self.conn, c)
    }

    fn auth_code_get(&mut self, hash: &str) -> Result<Option<crate::model::AuthCode>> {
        self::clients::code_get(self.conn, hash)
    }

    fn auth_code_spend(&mut self, hash: &str, gid: &str) -> Result<bool> {
        self::clients::code_spend(self.conn, hash, gid)
    }

    // Budgets (queries in `sqlite/budget.rs`).

    fn budget_put(&mut self, b: &Budget) -> Result<()> {
        self::budget::put(self.conn, b)
    }

    fn budgets_of(&mut self, gid: &str) -> Result<Vec<Budget>> {
        self::budget::of(self.conn, gid)
    }

    fn spent_since(&mut self, gid: &str, scope: &str, currency: &str, since: i64) -> Result<i64> {
        self::budget::spent_since(self.conn, gid, scope, currency, since)
    }

    fn spend_add(&mut self, s: &SpendRec, since: Option<i64>) -> Result<()> {
        self::budget::add(self.conn, s, since)
    }

    fn spend_get(&mut self, resource: &str, key: &str) -> Result<Option<SpendRec>> {
        self::budget::get(self.conn, resource, key)
    }

    fn spend_refund(&mut self, resource: &str, key: &str, at: i64) -> Result<()> {
        self::budget::refund(self.conn, resource, key, at)
    }

    // Step-ups (queries in `sqlite/stepup.rs`).

    fn stepup_put(&mut self, s: &StepUp) -> Result<()> {
        self::stepup::put(self.conn, s)
    }

    fn stepup_by_hash(&mut self, hash: &str) -> Result<Option<StepUp>> {
        self::stepup::by_hash(self.conn, hash)
    }

    fn stepup_get(&mut self, id: &str) -> Result<Option<StepUp>> {
        self::stepup::get(self.conn, id)
    }

    fn stepup_by_jti(&mut self, jti: &str) -> Result<Option<StepUp>> {
        self::stepup::by_jti(self.conn, jti)
    }

    fn stepups_pending(&mut self, owner: &str, now: i64) -> Result<Vec<StepUp>> {
        self::stepup::pending_of(self.conn, owner, now)
    }

    fn stepup_live_count(&mut self, gid: &str, now: i64) -> Result<i64> {
        self::stepup::live_count(self.conn, gid, now)
    }

    fn stepup_policy_put(&mut self, p: &StepUpPolicy) -> Result<()> {
        self::stepup::policy_put(self.conn, p)
    }

    fn stepup_policy_get(&mut self, gid: &str) -> Result<Option<StepUpPolicy>> {
        self::stepup::policy_get(self.conn, gid)
    }

    fn stepup_policy_delete(&mut self, gid: &str) -> Result<bool> {
        self::stepup::policy_delete(self.conn, gid)
    }

    fn owner_webhook(&mut self, owner: &str) -> Result<Option<String>> {
        self::stepup::webhook_get(self.conn, owner)
    }

    fn owner_webhook_set(&mut self, owner: &str, data: Option<&str>) -> Result<bool> {
        self::stepup::webhook_set(self.conn, owner, data)
    }

    fn resource_replace(&mut self, r: &Resource) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE resources SET data = ?2 WHERE client_id = ?1")
            .map_err(db_err)?
            .execute(params![r.client_id, to_json(r)?])
            .map_err(db_err)?;
        Ok(())
    }

    fn invite_put(&mut self, inv: &Invite) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO resource_invites(hash, owner, audience, shared, expires_at) \
                 VALUES (?1,?2,?3,?4,?5)",
            )
            .map_err(db_err)?
            .execute(params![
                inv.hash,
                inv.owner,
                inv.audience,
                inv.shared,
                inv.expires_at
            ])
            .map_err(db_err)?;
        Ok(())
    }

    fn invite_take(&mut self, hash: &str, now: i64) -> Result<Option<Invite>> {
        // Expired invitations go with any use.
        self.conn
            .prepare_cached("DELETE FROM resource_invites WHERE expires_at <= ?1")
            .map_err(db_err)?
            .execute(params![now])
            .map_err(db_err)?;
        let found = self
            .conn
            .prepare_cached(
                "SELECT owner, expires_at, audience, shared FROM resource_invites WHERE hash = ?1",
            )
            .map_err(db_err)?
            .query_row(params![hash], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, bool>(3)?,
                ))
            })
            .optional()
            .map_err(db_err)?;
        let Some((owner, expires_at, audience, shared)) = found else {
            return Ok(None);
        };
        self.conn
            .prepare_cached("DELETE FROM resource_invites WHERE hash = ?1")
            .map_err(db_err)?
            .execute(params![hash])
            .map_err(db_err)?;
        Ok(Some(Invite {
            hash: hash.to_owned(),
            owner,
            audience,
            shared,
            expires_at,
        }))
    }

    // Bounded storage and audit checkpoints (`sqlite/prune.rs`, `sqlite/audit.rs`).

    fn prune_expired(&mut self, now: i64, limit: i64) -> Result<super::Pruned> {
        self::prune::prune(self.conn, now, limit)
    }

    fn storage_rows(&mut self) -> Result<super::StorageRows> {
        self::prune::rows(self.conn)
    }

    fn audit_checkpoint_put(&mut self, c: &crate::audit::Checkpoint) -> Result<()> {
        self::audit::checkpoint_put(self.conn, c)
    }

    fn audit_checkpoint_latest(
        &mut self,
        at_most: i64,
    ) -> Result<Option<crate::audit::Checkpoint>> {
        self::audit::checkpoint_latest(self.conn, at_most)
    }

    fn audit_first(&mut self) -> Result<i64> {
        self::audit::first(self.conn)
    }

    fn audit_delete_before(&mut self, before: i64) -> Result<i64> {
        self::audit::delete_before(self.conn, before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GrantStatus;
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
