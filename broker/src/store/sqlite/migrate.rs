//! SQLite's numbered migrations, applied when a database is opened, and the
//! refusal to open a database that a newer broker has migrated.
//!
//! Version 1 is the schema brokers created before versioning existed: its
//! statements are all `IF NOT EXISTS`, so a data directory made by an older
//! broker (no `schema_version` table) is simply recorded as version 1. To
//! change the schema, append a migration; never edit one that shipped.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use super::audit::AUDIT_SCHEMA;
use super::budget::{BUDGET_SCHEMA, TOTALS_SCHEMA};
use super::clients::CLIENTS_SCHEMA;
use super::db_err;
use super::prune::PRUNE_SCHEMA;
use super::schema::{
    DASHBOARD_SCHEMA, GATEWAY_SCHEMA, MFA_SCHEMA, OAUTH_SCHEMA, REGISTRATION_SCHEMA, SCHEMA,
};
use super::stepup::{STEPUP_SCHEMA, WEBHOOK_SCHEMA};
use crate::store::Result;

/// `(version, statements)`, in order. Version 2: the pruning index and the
/// audit checkpoints, third-party clients and authorization codes, step-up
/// requests and their policies. Version 3: the owner's step-up webhook.
/// Version 4 is PostgreSQL's table of accepted DPoP proofs and its feed
/// notices, which a store of one process does not need (the version numbers
/// of both stores stay the same). Version 5: the budgets' running totals
/// (`sqlite/budget.rs`), backfilled from the spends.
const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1,
        &[
            SCHEMA,
            DASHBOARD_SCHEMA,
            GATEWAY_SCHEMA,
            REGISTRATION_SCHEMA,
            MFA_SCHEMA,
            OAUTH_SCHEMA,
            BUDGET_SCHEMA,
        ],
    ),
    (
        2,
        &[PRUNE_SCHEMA, AUDIT_SCHEMA, CLIENTS_SCHEMA, STEPUP_SCHEMA],
    ),
    (3, &[WEBHOOK_SCHEMA]),
    (4, &[]),
    (5, &[TOTALS_SCHEMA]),
];

/// The version the database is at (0: never migrated).
fn version(conn: &Connection) -> Result<i64> {
    let found: Option<i64> = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .optional()
        .map_err(db_err)?
        .flatten();
    Ok(found.unwrap_or(0))
}

pub(super) fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(db_err)?;
    if version(conn)? >= known {
        let found = version(conn)?;
        if found > known {
            return Err(crate::store::newer_schema(
                &path.display().to_string(),
                found,
                known,
            ));
        }
        return Ok(());
    }
    // Another process may be migrating too: decide under the write lock.
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err)?;
    let run = (|| {
        let found = version(conn)?;
        for (v, parts) in MIGRATIONS.iter().filter(|m| m.0 > found) {
            for sql in *parts {
                match conn.execute_batch(sql) {
                    // A database of before versioning is migrated from 0:
                    // a column that a later migration added is already there.
                    Err(e)
                        if sql.trim_start().starts_with("ALTER TABLE")
                            && e.to_string().contains("duplicate column name") => {}
                    r => r.map_err(db_err)?,
                }
            }
            conn.execute("DELETE FROM schema_version", [])
                .map_err(db_err)?;
            conn.execute("INSERT INTO schema_version(version) VALUES (?1)", [v])
                .map_err(db_err)?;
        }
        Ok(())
    })();
    match run {
        Ok(()) => conn.execute_batch("COMMIT").map_err(db_err),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
