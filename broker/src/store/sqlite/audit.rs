//! The audit log's signed checkpoints and archiving (SQLite). Plain SQL.

use rusqlite::{Connection, OptionalExtension, params};

use super::db_err;
use crate::audit::Checkpoint;
use crate::store::Result;

pub(super) const AUDIT_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, ts INTEGER NOT NULL,
  kid TEXT NOT NULL, public_key TEXT NOT NULL, sig TEXT NOT NULL);
";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint {
        seq: r.get(0)?,
        hash: r.get(1)?,
        ts: r.get(2)?,
        kid: r.get(3)?,
        public_key: r.get(4)?,
        sig: r.get(5)?,
    })
}

pub(super) fn checkpoint_put(conn: &Connection, c: &Checkpoint) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit_checkpoints(seq, hash, ts, kid, public_key, sig) VALUES (?1,?2,?3,?4,?5,?6)
         ON CONFLICT(seq) DO UPDATE SET hash = excluded.hash, ts = excluded.ts, kid = excluded.kid,
           public_key = excluded.public_key, sig = excluded.sig",
    )
    .map_err(db_err)?
    .execute(params![c.seq, c.hash, c.ts, c.kid, c.public_key, c.sig])
    .map_err(db_err)?;
    Ok(())
}

pub(super) fn checkpoint_latest(conn: &Connection, at_most: i64) -> Result<Option<Checkpoint>> {
    conn.prepare_cached(
        "SELECT seq, hash, ts, kid, public_key, sig FROM audit_checkpoints
         WHERE seq <= ?1 ORDER BY seq DESC LIMIT 1",
    )
    .map_err(db_err)?
    .query_row(params![at_most], row)
    .optional()
    .map_err(db_err)
}

pub(super) fn first(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MIN(seq), 0) FROM audit")
        .map_err(db_err)?
        .query_row([], |r| r.get(0))
        .map_err(db_err)
}

pub(super) fn delete_before(conn: &Connection, before: i64) -> Result<i64> {
    let n = conn
        .prepare_cached("DELETE FROM audit WHERE seq < ?1")
        .map_err(db_err)?
        .execute(params![before])
        .map_err(db_err)?;
    // Checkpoints of removed records are in the archive; the one at the
    // boundary stays (the live chain starts from it).
    conn.prepare_cached("DELETE FROM audit_checkpoints WHERE seq < ?1")
        .map_err(db_err)?
        .execute(params![before - 1])
        .map_err(db_err)?;
    Ok(i64::try_from(n).unwrap_or(i64::MAX))
}
