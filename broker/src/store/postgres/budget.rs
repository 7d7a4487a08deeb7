//! The PostgreSQL queries of budgets and spends (tables in migration 1 of
//! `postgres/schema.rs`; the SQLite twin is `sqlite/budget.rs`). Spends are
//! checked and recorded inside the writers' serialized transactions, so
//! concurrent spends on any replica never overspend. The running totals
//! (`spend_totals`, migration 5) work as SQLite's.

use protonpass_agent::budget::Period;

use super::conn::{PgTx, col};
use crate::model::{Budget, SpendRec};
use crate::store::Result;

pub(super) fn put(tx: &PgTx<'_>, b: &Budget) -> Result<()> {
    tx.exec(
        "INSERT INTO budgets(gid, scope, limit_minor, currency, period, updated_at)
         VALUES ($1,$2,$3,$4,$5,$6)
         ON CONFLICT (gid, scope) DO UPDATE SET limit_minor = EXCLUDED.limit_minor,
           currency = EXCLUDED.currency, period = EXCLUDED.period, updated_at = EXCLUDED.updated_at",
        &[
            &b.gid,
            &b.scope,
            &b.limit,
            &b.currency,
            &b.period.as_str(),
            &b.updated_at,
        ],
    )?;
    anchor(
        tx,
        &b.gid,
        &b.scope,
        &b.currency,
        b.period.bounds(b.updated_at).0,
    )
}

pub(super) fn of(tx: &PgTx<'_>, gid: &str) -> Result<Vec<Budget>> {
    tx.rows(
        "SELECT gid, scope, limit_minor, currency, period, updated_at FROM budgets
         WHERE gid = $1 ORDER BY scope",
        &[&gid],
        |r| {
            Ok(Budget {
                gid: col(r, 0)?,
                scope: col(r, 1)?,
                limit: col(r, 2)?,
                currency: col(r, 3)?,
                period: Period::parse(col(r, 4)?)?,
                updated_at: col(r, 5)?,
            })
        },
    )
}

/// The running total of a grant's scope in a currency: `(since, spent)`.
fn total(tx: &PgTx<'_>, gid: &str, scope: &str, currency: &str) -> Result<Option<(i64, i64)>> {
    tx.row(
        "SELECT since, spent FROM spend_totals WHERE gid = $1 AND scope = $2 AND currency = $3",
        &[&gid, &scope, &currency],
        |r| Ok((col(r, 0)?, col(r, 1)?)),
    )
}

/// The sum of the unrefunded spends at or after `since` (the index covers it).
fn sum(tx: &PgTx<'_>, gid: &str, scope: &str, currency: &str, since: i64) -> Result<i64> {
    tx.int(
        "SELECT COALESCE(SUM(amount), 0)::BIGINT FROM spends
         WHERE gid = $1 AND scope = $2 AND currency = $3 AND at >= $4 AND refunded_at IS NULL",
        &[&gid, &scope, &currency, &since],
    )
}

/// Count the running total from `since`, unless it already counts from there.
fn anchor(tx: &PgTx<'_>, gid: &str, scope: &str, currency: &str, since: i64) -> Result<()> {
    if total(tx, gid, scope, currency)?.is_some_and(|(from, _)| from == since) {
        return Ok(());
    }
    let spent = sum(tx, gid, scope, currency, since)?;
    tx.exec(
        "INSERT INTO spend_totals(gid, scope, currency, since, spent) VALUES ($1,$2,$3,$4,$5)
         ON CONFLICT (gid, scope, currency) DO UPDATE
           SET since = EXCLUDED.since, spent = EXCLUDED.spent",
        &[&gid, &scope, &currency, &since, &spent],
    )?;
    Ok(())
}

/// Move the running total that counts a spend made at `s.at` by `delta`.
fn count(tx: &PgTx<'_>, s: &SpendRec, delta: i64) -> Result<()> {
    tx.exec(
        "UPDATE spend_totals SET spent = spent + $4
         WHERE gid = $1 AND scope = $2 AND currency = $3 AND since <= $5",
        &[&s.gid, &s.scope, &s.currency, &delta, &s.at],
    )?;
    Ok(())
}

pub(super) fn spent_since(
    tx: &PgTx<'_>,
    gid: &str,
    scope: &str,
    currency: &str,
    since: i64,
) -> Result<i64> {
    match total(tx, gid, scope, currency)? {
        Some((from, spent)) if from == since => Ok(spent),
        _ => sum(tx, gid, scope, currency, since),
    }
}

pub(super) fn add(tx: &PgTx<'_>, s: &SpendRec, since: Option<i64>) -> Result<()> {
    tx.exec(
        "INSERT INTO spends(resource, key, gid, scope, amount, currency, at, refunded_at, answer)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
        &[
            &s.resource,
            &s.key,
            &s.gid,
            &s.scope,
            &s.amount,
            &s.currency,
            &s.at,
            &s.refunded_at,
            &s.answer,
        ],
    )?;
    if s.refunded_at.is_none() {
        count(tx, s, s.amount)?;
    }
    match since {
        Some(since) => anchor(tx, &s.gid, &s.scope, &s.currency, since),
        None => Ok(()),
    }
}

pub(super) fn get(tx: &PgTx<'_>, resource: &str, key: &str) -> Result<Option<SpendRec>> {
    tx.row(
        "SELECT resource, key, gid, scope, amount, currency, at, refunded_at, answer FROM spends
         WHERE resource = $1 AND key = $2",
        &[&resource, &key],
        |r| {
            Ok(SpendRec {
                resource: col(r, 0)?,
                key: col(r, 1)?,
                gid: col(r, 2)?,
                scope: col(r, 3)?,
                amount: col(r, 4)?,
                currency: col(r, 5)?,
                at: col(r, 6)?,
                refunded_at: col(r, 7)?,
                answer: col(r, 8)?,
            })
        },
    )
}

pub(super) fn refund(tx: &PgTx<'_>, resource: &str, key: &str, at: i64) -> Result<()> {
    // A spend of an earlier period leaves the current period's total alone.
    if let Some(s) = get(tx, resource, key)?.filter(|s| s.refunded_at.is_none()) {
        count(tx, &s, -s.amount)?;
    }
    tx.exec(
        "UPDATE spends SET refunded_at = $3 WHERE resource = $1 AND key = $2 AND refunded_at IS NULL",
        &[&resource, &key, &at],
    )?;
    Ok(())
}
