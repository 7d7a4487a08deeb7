//! Bring a PostgreSQL database to the schema this broker knows: the numbered
//! migrations of `postgres/schema.rs`, applied at start under the writers'
//! advisory lock (replicas starting together apply each migration once), and
//! a refusal to run on a database a newer broker has migrated.

use deadpool_postgres::Pool;
use protonpass_agent::Error;

use super::schema::MIGRATIONS;
use super::{PgUrl, WRITE_LOCK, wait};
use crate::store::Result;

pub(super) fn migrate(pool: &Pool, rt: &tokio::runtime::Handle, url: &PgUrl) -> Result<()> {
    let client = wait(rt, pool.get()).map_err(|e| {
        Error::TemporarilyUnavailable(format!(
            "cannot reach the database {} ({e}); check that PostgreSQL is running and --store is right",
            url.describe()
        ))
    })?;
    let fail = |e: tokio_postgres::Error| {
        Error::TemporarilyUnavailable(format!(
            "cannot migrate the database {}: {e}",
            url.describe()
        ))
    };
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    let run = wait(rt, async {
        // Quiet: "relation already exists, skipping" is the normal case.
        client
            .batch_execute(
                "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL client_min_messages = warning",
            )
            .await?;
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
            .await?;
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .await?;
        let found: i64 = client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await?
            .get(0);
        if found > known {
            client.batch_execute("ROLLBACK").await?;
            return Ok(Some(found));
        }
        for (v, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
            client.batch_execute(sql).await?;
            client.execute("DELETE FROM schema_version", &[]).await?;
            client
                .execute("INSERT INTO schema_version(version) VALUES ($1)", &[v])
                .await?;
            tracing::info!(version = v, "database schema migrated");
        }
        client.batch_execute("COMMIT").await?;
        Ok(None)
    });
    match run {
        Ok(None) => Ok(()),
        Ok(Some(found)) => Err(crate::store::newer_schema(&url.describe(), found, known)),
        Err(e) => {
            let _ = wait(rt, client.batch_execute("ROLLBACK"));
            Err(fail(e))
        }
    }
}
