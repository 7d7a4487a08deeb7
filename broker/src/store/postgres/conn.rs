//! The connection a PostgreSQL [`Tx`](crate::store::Tx) runs on, and the helpers
//! its queries share: statements prepared once per connection and cached,
//! rows decoded with typed errors (a failure is `503`, never a panic).

use deadpool_postgres::ClientWrapper;
use protonpass_agent::Error;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};

use super::{pg_err, wait};
use crate::model::AuditRecord;
use crate::store::Result;

/// Statement parameters.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(super) fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Server(format!("encoding failed: {e}")))
}

pub(super) fn from_json<T: DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Server(format!("stored record unreadable: {e}")))
}

/// Column `i` of a row.
pub(super) fn col<'r, T: FromSql<'r>>(r: &'r Row, i: usize) -> Result<T> {
    r.try_get(i).map_err(pg_err)
}

/// An audit row, as `SELECT seq, ts, owner, event, detail, prev, hash` reads it.
pub(super) fn audit_row(r: &Row) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: col(r, 0)?,
        ts: col(r, 1)?,
        owner: col(r, 2)?,
        event: col(r, 3)?,
        detail: col(r, 4)?,
        prev: col(r, 5)?,
        hash: col(r, 6)?,
    })
}

/// One transaction's (or one reader's) connection.
pub(super) struct PgTx<'c> {
    c: &'c ClientWrapper,
    rt: &'c tokio::runtime::Handle,
}

impl<'c> PgTx<'c> {
    pub(super) fn new(c: &'c ClientWrapper, rt: &'c tokio::runtime::Handle) -> Self {
        PgTx { c, rt }
    }

    /// Run a statement; the number of rows it changed.
    pub(super) fn exec(&self, sql: &str, p: Params<'_>) -> Result<u64> {
        wait(self.rt, async {
            let st = self.c.prepare_cached(sql).await?;
            self.c.execute(&st, p).await
        })
        .map_err(pg_err)
    }

    /// Every row of a query.
    pub(super) fn query(&self, sql: &str, p: Params<'_>) -> Result<Vec<Row>> {
        wait(self.rt, async {
            let st = self.c.prepare_cached(sql).await?;
            self.c.query(&st, p).await
        })
        .map_err(pg_err)
    }

    /// Every row of a query, mapped by `f`.
    pub(super) fn rows<T>(
        &self,
        sql: &str,
        p: Params<'_>,
        f: impl Fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.query(sql, p)?.iter().map(f).collect()
    }

    /// The first row of a query, mapped by `f`.
    pub(super) fn row<T>(
        &self,
        sql: &str,
        p: Params<'_>,
        f: impl Fn(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        self.query(sql, p)?.first().map(f).transpose()
    }

    /// The first column of the first row, a number.
    pub(super) fn int(&self, sql: &str, p: Params<'_>) -> Result<i64> {
        Ok(self.row(sql, p, |r| col::<i64>(r, 0))?.unwrap_or(0))
    }

    /// The first row's JSON `data`, decoded.
    pub(super) fn one<T: DeserializeOwned>(&self, sql: &str, p: Params<'_>) -> Result<Option<T>> {
        self.row(sql, p, |r| from_json(col::<&str>(r, 0)?))
    }

    /// Every row's JSON `data`, decoded.
    pub(super) fn many<T: DeserializeOwned>(&self, sql: &str, p: Params<'_>) -> Result<Vec<T>> {
        self.rows(sql, p, |r| from_json(col::<&str>(r, 0)?))
    }
}
