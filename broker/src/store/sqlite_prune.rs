//! Pruning (SQLite): what has expired goes, a bounded batch at a time, so the
//! database stays as large as the live state and not as the history of every
//! token ever issued. Plain SQL (`IN (SELECT ... LIMIT n)`), so the same
//! statements suit another backend.

use rusqlite::{Connection, params};

use super::sqlite::db_err;
use super::{Pruned, Result, StorageRows};

/// Expired rows are kept this long (seconds) past their expiry: clock skew
/// between the broker and verifiers, and an introspection of a token that has
/// just expired still finds it.
pub const GRACE: i64 = 3600;
/// Wrong-code and sign-in attempts count over at most a day.
const ATTEMPTS_KEPT: i64 = 86_400;

/// Indexes the pruning queries use.
pub(super) const PRUNE_SCHEMA: &str = "
CREATE INDEX IF NOT EXISTS tokens_exp ON tokens(json_extract(data, '$.exp'));
CREATE INDEX IF NOT EXISTS devices_expires ON devices(expires_at);
CREATE INDEX IF NOT EXISTS revocations_exp ON revocations(exp);
CREATE INDEX IF NOT EXISTS web_sessions_expires ON web_sessions(expires_at);
";

fn run(conn: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<i64> {
    let n = conn
        .prepare_cached(sql)
        .map_err(db_err)?
        .execute(p)
        .map_err(db_err)?;
    Ok(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Remove at most `limit` rows of each kind that expired before `now`.
pub(super) fn prune(conn: &Connection, now: i64, limit: i64) -> Result<Pruned> {
    let old = now - GRACE;
    Ok(Pruned {
        // An access token past its expiry verifies nowhere. A refresh token
        // lives as long as its grant (its `exp` is the grant's), so the spent
        // ones that reuse detection needs stay while the grant is live; the
        // grant's own row is kept (the dashboard lists it).
        tokens: run(
            conn,
            "DELETE FROM tokens WHERE jti IN (SELECT jti FROM tokens
               WHERE json_extract(data, '$.exp') < ?1 LIMIT ?2)",
            params![old, limit],
        )?,
        devices: run(
            conn,
            "DELETE FROM devices WHERE id IN (SELECT id FROM devices WHERE expires_at < ?1 LIMIT ?2)",
            params![old, limit],
        )?,
        // The feed serves only unexpired entries; the newest entry stays
        // whatever its expiry, so the feed's position never goes back.
        revocations: run(
            conn,
            "DELETE FROM revocations WHERE seq IN (SELECT seq FROM revocations
               WHERE exp < ?1 AND seq < (SELECT MAX(seq) FROM revocations) LIMIT ?2)",
            params![old, limit],
        )?,
        attempts: run(
            conn,
            "DELETE FROM attempts WHERE id IN (SELECT id FROM attempts WHERE at < ?1 LIMIT ?2)",
            params![now - ATTEMPTS_KEPT, limit],
        )?,
        sessions: run(
            conn,
            "DELETE FROM web_sessions WHERE id_hash IN
               (SELECT id_hash FROM web_sessions WHERE expires_at < ?1 LIMIT ?2)",
            params![now, limit],
        )?,
        setup_links: run(
            conn,
            "DELETE FROM owner_setup WHERE hash IN
               (SELECT hash FROM owner_setup WHERE expires_at < ?1 LIMIT ?2)",
            params![now, limit],
        )?,
        oauth_pending: run(
            conn,
            "DELETE FROM oauth_pending WHERE state_hash IN
               (SELECT state_hash FROM oauth_pending WHERE expires_at <= ?1 LIMIT ?2)",
            params![now, limit],
        )?,
        invites: run(
            conn,
            "DELETE FROM resource_invites WHERE hash IN
               (SELECT hash FROM resource_invites WHERE expires_at <= ?1 LIMIT ?2)",
            params![now, limit],
        )?,
    })
}

/// How many rows the tables that grow with traffic hold.
pub(super) fn rows(conn: &Connection) -> Result<StorageRows> {
    let count = |table: &str| -> Result<i64> {
        conn.prepare_cached(&format!("SELECT COUNT(*) FROM {table}"))
            .map_err(db_err)?
            .query_row([], |r| r.get(0))
            .map_err(db_err)
    };
    Ok(StorageRows {
        grants: count("grants")?,
        tokens: count("tokens")?,
        devices: count("devices")?,
        revocations: count("revocations")?,
        attempts: count("attempts")?,
        sessions: count("web_sessions")?,
        audit: count("audit")?,
    })
}
