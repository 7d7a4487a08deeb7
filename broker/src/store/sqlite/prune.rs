//! Pruning (SQLite): what has expired goes, a bounded batch at a time, so the
//! database stays as large as the live state and not as the history of every
//! token ever issued. Plain SQL (`IN (SELECT ... LIMIT n)`), so the same
//! statements suit another backend.

use rusqlite::{Connection, params};

use super::db_err;
use crate::store::{Pruned, Result, StorageRows};

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

/// Delete at most `limit` rows of `table` (keyed by `key`) matching `cond`,
/// where `?1` is `cutoff`.
fn expire(
    conn: &Connection,
    (table, key, cond): (&'static str, &'static str, &'static str),
    cutoff: i64,
    limit: i64,
) -> Result<i64> {
    let sql = format!(
        "DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {cond} LIMIT ?2)"
    );
    run(conn, &sql, params![cutoff, limit])
}

/// Remove at most `limit` rows of each kind that expired before `now`.
pub(super) fn prune(conn: &Connection, now: i64, limit: i64) -> Result<Pruned> {
    let old = now - GRACE;
    let go = |what, cutoff| expire(conn, what, cutoff, limit);
    Ok(Pruned {
        // An access token past its expiry verifies nowhere. A refresh token
        // lives as long as its grant (its `exp` is the grant's), so the spent
        // ones that reuse detection needs stay while the grant is live; the
        // grant's own row is kept (the dashboard lists it).
        tokens: go(("tokens", "jti", "json_extract(data, '$.exp') < ?1"), old)?,
        devices: go(("devices", "id", "expires_at < ?1"), old)?,
        // The feed serves only unexpired entries; the newest entry stays
        // whatever its expiry, so the feed's position never goes back.
        revocations: go(
            (
                "revocations",
                "seq",
                "exp < ?1 AND seq < (SELECT MAX(seq) FROM revocations)",
            ),
            old,
        )?,
        attempts: go(("attempts", "id", "at < ?1"), now - ATTEMPTS_KEPT)?,
        sessions: go(("web_sessions", "id_hash", "expires_at < ?1"), now)?,
        setup_links: go(("owner_setup", "hash", "expires_at < ?1"), now)?,
        oauth_pending: go(("oauth_pending", "state_hash", "expires_at <= ?1"), now)?,
        invites: go(("resource_invites", "hash", "expires_at <= ?1"), now)?,
        // One process: its replay cache holds the proofs, not the database.
        proofs: 0,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::model::{Grant, GrantStatus, TokenKind, TokenRec, TokenStatus};
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Store, read_blocking, write_blocking};

    fn token(jti: &str, kind: TokenKind, exp: i64) -> TokenRec {
        TokenRec {
            jti: jti.into(),
            gid: "g".into(),
            owner: "o".into(),
            kind,
            client_id: "a".into(),
            scope: "x:y".into(),
            aud: None,
            iat: 0,
            exp,
            jkt: "k".into(),
            hash: (kind == TokenKind::Refresh).then(|| format!("h{jti}")),
            status: TokenStatus::Used,
        }
    }

    #[test]
    fn pruning_keeps_what_is_still_needed() {
        let dir = tempfile::tempdir().unwrap();
        let s: Arc<dyn Store> =
            SqliteStore::open_with(&dir.path().join("db"), Duration::from_secs(10)).unwrap();
        let now = 1_000_000;
        write_blocking(&s, move |tx| {
            tx.grant_put(&Grant {
                gid: "g".into(),
                owner: "o".into(),
                agent: "a".into(),
                scope: "x:y".into(),
                audiences: vec![],
                jkt: None,
                status: GrantStatus::Active,
                origin: "t".into(),
                created_at: 0,
                ttl: 2 * now,
                expires_at: 2 * now,
                enroll_hash: None,
                revoked_at: None,
            })?;
            // A spent refresh token of the live grant (reuse detection needs it),
            // an expired access token, one expired within the grace period.
            tx.token_put(&token("spent", TokenKind::Refresh, 2 * now))?;
            tx.token_put(&token("old", TokenKind::Access, now - super::GRACE - 1))?;
            tx.token_put(&token("recent", TokenKind::Access, now - 10))?;
            tx.revocation_add(Some("old"), None, now - super::GRACE - 1, "o")?;
            tx.revocation_add(Some("live"), None, now + 10, "o")?;
            tx.revocation_add(Some("last"), None, now - super::GRACE - 1, "o")?;
            tx.attempt_add("k", now - 2 * super::ATTEMPTS_KEPT, 1)?;
            Ok(())
        })
        .unwrap();
        let p = write_blocking(&s, move |tx| tx.prune_expired(now, 1000)).unwrap();
        assert_eq!((p.tokens, p.revocations), (1, 1), "{p:?}");
        for (jti, kept) in [("spent", true), ("old", false), ("recent", true)] {
            let got = read_blocking(&s, |tx| tx.token_get(jti)).unwrap();
            assert_eq!(got.is_some(), kept, "{jti}");
        }
        // The unexpired entry stays, and the newest one keeps the feed's head.
        let feed = read_blocking(&s, |tx| tx.revocations_after(0, 0, 10)).unwrap();
        let jtis: Vec<_> = feed.iter().filter_map(|e| e.jti.clone()).collect();
        assert_eq!(jtis, ["live", "last"]);
        assert_eq!(read_blocking(&s, |tx| tx.revocation_head()).unwrap(), 3);
        // A second pass finds nothing more.
        let p = write_blocking(&s, move |tx| tx.prune_expired(now, 1000)).unwrap();
        assert_eq!(p.total(), 0, "{p:?}");
    }
}
