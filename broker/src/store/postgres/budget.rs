//! The PostgreSQL queries of budgets and spends (tables in migration 1 of
//! `postgres/schema.rs`; the SQLite twin is `sqlite/budget.rs`). Spends are
//! checked and recorded inside the writers' serialized transactions, so
//! concurrent spends on any replica never overspend.

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
    Ok(())
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

pub(super) fn spent_since(
    tx: &PgTx<'_>,
    gid: &str,
    scope: &str,
    currency: &str,
    since: i64,
) -> Result<i64> {
    tx.int(
        "SELECT COALESCE(SUM(amount), 0)::BIGINT FROM spends
         WHERE gid = $1 AND scope = $2 AND currency = $3 AND at >= $4 AND refunded_at IS NULL",
        &[&gid, &scope, &currency, &since],
    )
}

pub(super) fn add(tx: &PgTx<'_>, s: &SpendRec) -> Result<()> {
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
    Ok(())
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
    tx.exec(
        "UPDATE spends SET refunded_at = $3 WHERE resource = $1 AND key = $2 AND refunded_at IS NULL",
        &[&resource, &key, &at],
    )?;
    Ok(())
}
