//! The SQLite tables and queries of budgets and spends (see
//! `crate::service::budget`). The Tx methods in `sqlite/mod.rs` call these.

use protonpass_agent::budget::Period;
use rusqlite::{Connection, OptionalExtension, params};

use super::db_err;
use crate::model::{Budget, SpendRec};
use crate::store::Result;

/// One budget per grant and scope; spends are unique per resource server and
/// idempotency key. The index covers what a budget's total reads, so that
/// summing a period never visits the table.
pub(super) const BUDGET_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS budgets (
  gid TEXT NOT NULL, scope TEXT NOT NULL, limit_minor INTEGER NOT NULL, currency TEXT NOT NULL,
  period TEXT NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (gid, scope));
CREATE TABLE IF NOT EXISTS spends (
  id INTEGER PRIMARY KEY AUTOINCREMENT, resource TEXT NOT NULL, key TEXT NOT NULL,
  gid TEXT NOT NULL, scope TEXT NOT NULL, amount INTEGER NOT NULL, currency TEXT NOT NULL,
  at INTEGER NOT NULL, refunded_at INTEGER, answer TEXT NOT NULL, UNIQUE (resource, key));
CREATE INDEX IF NOT EXISTS spends_budget ON spends(gid, scope, at, currency, refunded_at, amount);
";

pub(super) fn put(conn: &Connection, b: &Budget) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO budgets(gid, scope, limit_minor, currency, period, updated_at)
         VALUES (?1,?2,?3,?4,?5,?6)",
    )
    .map_err(db_err)?
    .execute(params![
        b.gid,
        b.scope,
        b.limit,
        b.currency,
        b.period.as_str(),
        b.updated_at
    ])
    .map_err(db_err)?;
    Ok(())
}

pub(super) fn of(conn: &Connection, gid: &str) -> Result<Vec<Budget>> {
    let mut st = conn
        .prepare_cached(
            "SELECT gid, scope, limit_minor, currency, period, updated_at FROM budgets
             WHERE gid = ?1 ORDER BY scope",
        )
        .map_err(db_err)?;
    let rows = st
        .query_map(params![gid], |r| {
            Ok((
                Budget {
                    gid: r.get(0)?,
                    scope: r.get(1)?,
                    limit: r.get(2)?,
                    currency: r.get(3)?,
                    period: Period::Total,
                    updated_at: r.get(5)?,
                },
                r.get::<_, String>(4)?,
            ))
        })
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (mut b, period) = row.map_err(db_err)?;
        b.period = Period::parse(&period)?;
        out.push(b);
    }
    Ok(out)
}

pub(super) fn spent_since(
    conn: &Connection,
    gid: &str,
    scope: &str,
    currency: &str,
    since: i64,
) -> Result<i64> {
    conn.prepare_cached(
        "SELECT COALESCE(SUM(amount), 0) FROM spends
         WHERE gid = ?1 AND scope = ?2 AND currency = ?3 AND at >= ?4 AND refunded_at IS NULL",
    )
    .map_err(db_err)?
    .query_row(params![gid, scope, currency, since], |r| r.get(0))
    .map_err(db_err)
}

pub(super) fn add(conn: &Connection, s: &SpendRec) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO spends(resource, key, gid, scope, amount, currency, at, refunded_at, answer)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
    )
    .map_err(db_err)?
    .execute(params![
        s.resource,
        s.key,
        s.gid,
        s.scope,
        s.amount,
        s.currency,
        s.at,
        s.refunded_at,
        s.answer
    ])
    .map_err(db_err)?;
    Ok(())
}

pub(super) fn get(conn: &Connection, resource: &str, key: &str) -> Result<Option<SpendRec>> {
    conn.prepare_cached(
        "SELECT resource, key, gid, scope, amount, currency, at, refunded_at, answer FROM spends
         WHERE resource = ?1 AND key = ?2",
    )
    .map_err(db_err)?
    .query_row(params![resource, key], |r| {
        Ok(SpendRec {
            resource: r.get(0)?,
            key: r.get(1)?,
            gid: r.get(2)?,
            scope: r.get(3)?,
            amount: r.get(4)?,
            currency: r.get(5)?,
            at: r.get(6)?,
            refunded_at: r.get(7)?,
            answer: r.get(8)?,
        })
    })
    .optional()
    .map_err(db_err)
}

pub(super) fn refund(conn: &Connection, resource: &str, key: &str, at: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE spends SET refunded_at = ?3 WHERE resource = ?1 AND key = ?2 AND refunded_at IS NULL",
    )
    .map_err(db_err)?
    .execute(params![resource, key, at])
    .map_err(db_err)?;
    Ok(())
}
