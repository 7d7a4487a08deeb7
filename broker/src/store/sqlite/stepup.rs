//! The SQLite tables and queries of step-up requests and their auto-approval
//! policies (see `crate::service::stepup`). The Tx methods in `sqlite/tx.rs`
//! call these. Plain SQL (no SQLite-only syntax but `INSERT OR REPLACE`,
//! written here as an upsert) so that another backend can take it as is.

use rusqlite::{Connection, OptionalExtension, params};

use super::db_err;
use crate::model::{StepUp, StepUpPolicy};
use crate::store::Result;

/// A step-up is kept as JSON with the columns its queries select on.
pub(super) const STEPUP_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS stepups (
  id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, owner TEXT NOT NULL, gid TEXT NOT NULL,
  status TEXT NOT NULL, expires_at INTEGER NOT NULL, jti TEXT, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS stepups_owner ON stepups(owner, status, expires_at);
CREATE INDEX IF NOT EXISTS stepups_gid ON stepups(gid, status, expires_at);
CREATE INDEX IF NOT EXISTS stepups_jti ON stepups(jti);
CREATE TABLE IF NOT EXISTS stepup_policies (
  gid TEXT PRIMARY KEY, currency TEXT NOT NULL, max_minor INTEGER NOT NULL,
  updated_at INTEGER NOT NULL);
";

fn decode(text: &str) -> Result<StepUp> {
    serde_json::from_str(text)
        .map_err(|e| protonpass_agent::Error::Server(format!("stored step-up unreadable: {e}")))
}

pub(super) fn put(conn: &Connection, s: &StepUp) -> Result<()> {
    let data = serde_json::to_string(s)
        .map_err(|e| protonpass_agent::Error::Server(format!("encoding failed: {e}")))?;
    conn.prepare_cached(
        "INSERT INTO stepups(id, hash, owner, gid, status, expires_at, jti, data)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8)
         ON CONFLICT(id) DO UPDATE SET status = excluded.status, jti = excluded.jti,
           data = excluded.data",
    )
    .map_err(db_err)?
    .execute(params![
        s.id,
        s.hash,
        s.owner,
        s.gid,
        s.status.as_str(),
        s.expires_at,
        s.jti,
        data
    ])
    .map_err(db_err)?;
    Ok(())
}

fn one(conn: &Connection, sql: &str, key: &str) -> Result<Option<StepUp>> {
    let text: Option<String> = conn
        .prepare_cached(sql)
        .map_err(db_err)?
        .query_row(params![key], |r| r.get(0))
        .optional()
        .map_err(db_err)?;
    text.as_deref().map(decode).transpose()
}

pub(super) fn by_hash(conn: &Connection, hash: &str) -> Result<Option<StepUp>> {
    one(conn, "SELECT data FROM stepups WHERE hash = ?1", hash)
}

pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<StepUp>> {
    one(conn, "SELECT data FROM stepups WHERE id = ?1", id)
}

pub(super) fn by_jti(conn: &Connection, jti: &str) -> Result<Option<StepUp>> {
    one(conn, "SELECT data FROM stepups WHERE jti = ?1", jti)
}

pub(super) fn pending_of(conn: &Connection, owner: &str, now: i64) -> Result<Vec<StepUp>> {
    let mut st = conn
        .prepare_cached(
            "SELECT data FROM stepups WHERE owner = ?1 AND status = 'pending' AND expires_at > ?2
             ORDER BY expires_at",
        )
        .map_err(db_err)?;
    let rows = st
        .query_map(params![owner, now], |r| r.get::<_, String>(0))
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(decode(&row.map_err(db_err)?)?);
    }
    Ok(out)
}

pub(super) fn live_count(conn: &Connection, gid: &str, now: i64) -> Result<i64> {
    conn.prepare_cached(
        "SELECT COUNT(*) FROM stepups WHERE gid = ?1 AND status IN ('pending', 'approved', 'issued')
         AND expires_at > ?2",
    )
    .map_err(db_err)?
    .query_row(params![gid, now], |r| r.get(0))
    .map_err(db_err)
}

pub(super) fn policy_put(conn: &Connection, p: &StepUpPolicy) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO stepup_policies(gid, currency, max_minor, updated_at) VALUES (?1,?2,?3,?4)
         ON CONFLICT(gid) DO UPDATE SET currency = excluded.currency,
           max_minor = excluded.max_minor, updated_at = excluded.updated_at",
    )
    .map_err(db_err)?
    .execute(params![p.gid, p.currency, p.max, p.updated_at])
    .map_err(db_err)?;
    Ok(())
}

pub(super) fn policy_delete(conn: &Connection, gid: &str) -> Result<bool> {
    let n = conn
        .prepare_cached("DELETE FROM stepup_policies WHERE gid = ?1")
        .map_err(db_err)?
        .execute(params![gid])
        .map_err(db_err)?;
    Ok(n > 0)
}

pub(super) fn policy_get(conn: &Connection, gid: &str) -> Result<Option<StepUpPolicy>> {
    conn.prepare_cached(
        "SELECT gid, currency, max_minor, updated_at FROM stepup_policies WHERE gid = ?1",
    )
    .map_err(db_err)?
    .query_row(params![gid], |r| {
        Ok(StepUpPolicy {
            gid: r.get(0)?,
            currency: r.get(1)?,
            max: r.get(2)?,
            updated_at: r.get(3)?,
        })
    })
    .optional()
    .map_err(db_err)
}

/// Migration 3: the owner's step-up webhook, in the owner's record.
pub(super) const WEBHOOK_SCHEMA: &str = "ALTER TABLE owners ADD COLUMN webhook TEXT;";

pub(super) fn webhook_get(conn: &Connection, owner: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT webhook FROM owners WHERE name = ?1")
        .map_err(db_err)?
        .query_row(params![owner], |r| r.get::<_, Option<String>>(0))
        .optional()
        .map_err(db_err)?
        .flatten())
}

pub(super) fn webhook_set(conn: &Connection, owner: &str, data: Option<&str>) -> Result<bool> {
    Ok(conn
        .prepare_cached("UPDATE owners SET webhook = ?2 WHERE name = ?1")
        .map_err(db_err)?
        .execute(params![owner, data])
        .map_err(db_err)?
        > 0)
}
