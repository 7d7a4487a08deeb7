//! The SQLite tables and queries of budgets and spends (see
//! `crate::service::budget`). The Tx methods in `sqlite/tx.rs` call these.
//!
//! A spend reads what its budget's current period spent. Summing the
//! period's spends grew with every spend (a `total` budget sums them all), so
//! the store keeps a running total per grant, scope and currency, counted
//! from the start of a period (`spend_totals`): a spend or refund moves it,
//! and [`spent_since`] answers from it when asked from that same start. Asked
//! from another start (a new period, a changed budget), it sums the spends,
//! and the next spend counts the total again from its budget's new start.

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

/// Version 5: the running totals, each counted from `since` (the start of a
/// budget's period at the time), backfilled from the spends for the budgets'
/// periods at migration (UTC calendar periods, weeks from Monday, as
/// `Period::bounds`; a start that differs is only counted again).
pub(super) const TOTALS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS spend_totals (
  gid TEXT NOT NULL, scope TEXT NOT NULL, currency TEXT NOT NULL, since INTEGER NOT NULL,
  spent INTEGER NOT NULL, PRIMARY KEY (gid, scope, currency));
INSERT OR REPLACE INTO spend_totals(gid, scope, currency, since, spent)
  SELECT gid, scope, currency, since,
    (SELECT COALESCE(SUM(s.amount), 0) FROM spends s WHERE s.gid = p.gid AND s.scope = p.scope
      AND s.currency = p.currency AND s.at >= p.since AND s.refunded_at IS NULL)
  FROM (SELECT gid, scope, currency, CASE period
      WHEN 'hour' THEN CAST(strftime('%s', 'now') AS INTEGER) / 3600 * 3600
      WHEN 'day' THEN CAST(strftime('%s', 'now', 'start of day') AS INTEGER)
      WHEN 'week' THEN CAST(strftime('%s', 'now', 'start of day', '-6 days', 'weekday 1') AS INTEGER)
      WHEN 'month' THEN CAST(strftime('%s', 'now', 'start of month') AS INTEGER)
      ELSE -9223372036854775807 - 1 END AS since
    FROM budgets) AS p;
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
    anchor(
        conn,
        &b.gid,
        &b.scope,
        &b.currency,
        b.period.bounds(b.updated_at).0,
    )
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

/// The running total of a grant's scope in a currency: `(since, spent)`.
fn total(conn: &Connection, gid: &str, scope: &str, currency: &str) -> Result<Option<(i64, i64)>> {
    conn.prepare_cached(
        "SELECT since, spent FROM spend_totals WHERE gid = ?1 AND scope = ?2 AND currency = ?3",
    )
    .map_err(db_err)?
    .query_row(params![gid, scope, currency], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
    .map_err(db_err)
}

/// The sum of the unrefunded spends at or after `since` (the index covers it).
fn sum(conn: &Connection, gid: &str, scope: &str, currency: &str, since: i64) -> Result<i64> {
    conn.prepare_cached(
        "SELECT COALESCE(SUM(amount), 0) FROM spends
         WHERE gid = ?1 AND scope = ?2 AND currency = ?3 AND at >= ?4 AND refunded_at IS NULL",
    )
    .map_err(db_err)?
    .query_row(params![gid, scope, currency, since], |r| r.get(0))
    .map_err(db_err)
}

/// Count the running total from `since`, unless it already counts from there.
fn anchor(conn: &Connection, gid: &str, scope: &str, currency: &str, since: i64) -> Result<()> {
    if total(conn, gid, scope, currency)?.is_some_and(|(from, _)| from == since) {
        return Ok(());
    }
    let spent = sum(conn, gid, scope, currency, since)?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO spend_totals(gid, scope, currency, since, spent)
         VALUES (?1,?2,?3,?4,?5)",
    )
    .map_err(db_err)?
    .execute(params![gid, scope, currency, since, spent])
    .map_err(db_err)?;
    Ok(())
}

/// Move the running total that counts a spend made at `at` by `delta`.
fn count(conn: &Connection, s: &SpendRec, delta: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE spend_totals SET spent = spent + ?4
         WHERE gid = ?1 AND scope = ?2 AND currency = ?3 AND since <= ?5",
    )
    .map_err(db_err)?
    .execute(params![s.gid, s.scope, s.currency, delta, s.at])
    .map_err(db_err)?;
    Ok(())
}

pub(super) fn spent_since(
    conn: &Connection,
    gid: &str,
    scope: &str,
    currency: &str,
    since: i64,
) -> Result<i64> {
    match total(conn, gid, scope, currency)? {
        Some((from, spent)) if from == since => Ok(spent),
        _ => sum(conn, gid, scope, currency, since),
    }
}

pub(super) fn add(conn: &Connection, s: &SpendRec, since: Option<i64>) -> Result<()> {
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
    if s.refunded_at.is_none() {
        count(conn, s, s.amount)?;
    }
    match since {
        Some(since) => anchor(conn, &s.gid, &s.scope, &s.currency, since),
        None => Ok(()),
    }
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
    // A spend of an earlier period leaves the current period's total alone.
    if let Some(s) = get(conn, resource, key)?.filter(|s| s.refunded_at.is_none()) {
        count(conn, &s, -s.amount)?;
    }
    conn.prepare_cached(
        "UPDATE spends SET refunded_at = ?3 WHERE resource = ?1 AND key = ?2 AND refunded_at IS NULL",
    )
    .map_err(db_err)?
    .execute(params![resource, key, at])
    .map_err(db_err)?;
    Ok(())
}
