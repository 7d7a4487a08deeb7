//! Opening a SQLite connection, the [`SqliteTx`] that the [`Tx`](crate::store::Tx)
//! impl runs on (`sqlite/tx.rs`), its query helpers, and the mapping of
//! SQLite errors: the counterpart of `postgres/conn.rs`.

use std::path::Path;
use std::time::Duration;

use protonpass_agent::Error;
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::AuditRecord;
use crate::store::{Result, UpstreamRec};

pub(super) fn db_err(e: rusqlite::Error) -> Error {
    tracing::error!(error = %e, "storage failure");
    Error::TemporarilyUnavailable("storage failure".into())
}

pub(super) fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Server(format!("encoding failed: {e}")))
}

pub(super) fn from_json<T: DeserializeOwned>(s: &str) -> Result<T> {
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

pub(super) fn open(path: &Path, read_only: bool, busy: Duration) -> Result<Connection> {
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

/// One transaction's connection: the writer's (inside the batch and the
/// job's savepoint) or a pooled reader.
pub(super) struct SqliteTx<'c> {
    pub(super) conn: &'c Connection,
}

impl SqliteTx<'_> {
    /// Runs one statement; the rows it changed.
    pub(super) fn exec(&self, sql: &str, p: impl rusqlite::Params) -> Result<usize> {
        self.conn
            .prepare_cached(sql)
            .map_err(db_err)?
            .execute(p)
            .map_err(db_err)
    }

    /// The first column of the one row a query returns (a count, a sum).
    pub(super) fn value<T: rusqlite::types::FromSql>(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
    ) -> Result<T> {
        self.conn
            .prepare_cached(sql)
            .map_err(db_err)?
            .query_row(p, |r| r.get(0))
            .map_err(db_err)
    }

    /// The first column of the row a query returns, if it returns one.
    pub(super) fn value_opt<T: rusqlite::types::FromSql>(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
    ) -> Result<Option<T>> {
        self.conn
            .prepare_cached(sql)
            .map_err(db_err)?
            .query_row(p, |r| r.get(0))
            .optional()
            .map_err(db_err)
    }

    pub(super) fn one<T: DeserializeOwned>(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
    ) -> Result<Option<T>> {
        let s: Option<String> = self.value_opt(sql, p)?;
        s.map(|s| from_json(&s)).transpose()
    }

    /// Every row's JSON `data`, decoded.
    pub(super) fn many<T: DeserializeOwned>(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<T>> {
        let texts = self.rows(sql, p, |r| r.get::<_, String>(0))?;
        texts.iter().map(|t| from_json(t)).collect()
    }

    /// Every row, mapped by `f`.
    pub(super) fn rows<T>(
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
pub(super) fn upstream_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UpstreamRec> {
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
pub(super) fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
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
