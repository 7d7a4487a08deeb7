//! The SQLite tables and queries of third-party OAuth clients (RFC 7591
//! registrations) and authorization codes (see `crate::service::authcode`).
//! The Tx methods in `sqlite/tx.rs` call these. Portable SQL only.

use rusqlite::{Connection, OptionalExtension, params};

use super::db_err;
use crate::model::{AuthCode, ClientRec};
use crate::store::Result;

/// Clients are kept by id (their metadata as JSON); codes by their hash.
pub(super) const CLIENTS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS oauth_clients (
  client_id TEXT PRIMARY KEY, data TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS auth_codes (
  hash TEXT PRIMARY KEY, client_id TEXT NOT NULL, redirect_uri TEXT NOT NULL,
  code_challenge TEXT NOT NULL, resource TEXT NOT NULL, scope TEXT NOT NULL,
  owner TEXT NOT NULL, ttl INTEGER NOT NULL, created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL, gid TEXT);
CREATE INDEX IF NOT EXISTS auth_codes_expiry ON auth_codes(expires_at);
";

fn json_err(e: serde_json::Error) -> protonpass_agent::Error {
    protonpass_agent::Error::Server(format!("stored client metadata is unreadable: {e}"))
}

pub(super) fn client_put(conn: &Connection, c: &ClientRec) -> Result<()> {
    let data = serde_json::to_string(&c.metadata).map_err(json_err)?;
    conn.prepare_cached("INSERT INTO oauth_clients(client_id, data, created_at) VALUES (?1,?2,?3)")
        .map_err(db_err)?
        .execute(params![c.client_id, data, c.created_at])
        .map_err(db_err)?;
    Ok(())
}

pub(super) fn client_get(conn: &Connection, client_id: &str) -> Result<Option<ClientRec>> {
    let row: Option<(String, i64)> = conn
        .prepare_cached("SELECT data, created_at FROM oauth_clients WHERE client_id = ?1")
        .map_err(db_err)?
        .query_row(params![client_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db_err)?;
    match row {
        None => Ok(None),
        Some((data, created_at)) => Ok(Some(ClientRec {
            client_id: client_id.to_owned(),
            metadata: serde_json::from_str(&data).map_err(json_err)?,
            created_at,
        })),
    }
}

pub(super) fn client_count_since(conn: &Connection, since: i64) -> Result<i64> {
    conn.prepare_cached("SELECT COUNT(*) FROM oauth_clients WHERE created_at >= ?1")
        .map_err(db_err)?
        .query_row(params![since], |r| r.get(0))
        .map_err(db_err)
}

pub(super) fn code_put(conn: &Connection, c: &AuthCode) -> Result<()> {
    // Codes long expired go first: the table holds only recent ones.
    conn.prepare_cached("DELETE FROM auth_codes WHERE expires_at <= ?1")
        .map_err(db_err)?
        .execute(params![c.created_at - 86_400])
        .map_err(db_err)?;
    conn.prepare_cached(
        "INSERT INTO auth_codes(hash, client_id, redirect_uri, code_challenge, resource, scope,
           owner, ttl, created_at, expires_at, gid) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
    )
    .map_err(db_err)?
    .execute(params![
        c.hash,
        c.client_id,
        c.redirect_uri,
        c.code_challenge,
        c.resource,
        c.scope,
        c.owner,
        c.ttl,
        c.created_at,
        c.expires_at,
        c.gid
    ])
    .map_err(db_err)?;
    Ok(())
}

pub(super) fn code_spend(conn: &Connection, hash: &str, gid: &str) -> Result<bool> {
    let n = conn
        .prepare_cached("UPDATE auth_codes SET gid = ?2 WHERE hash = ?1 AND gid IS NULL")
        .map_err(db_err)?
        .execute(params![hash, gid])
        .map_err(db_err)?;
    Ok(n == 1)
}

pub(super) fn code_get(conn: &Connection, hash: &str) -> Result<Option<AuthCode>> {
    conn.prepare_cached(
        "SELECT hash, client_id, redirect_uri, code_challenge, resource, scope, owner, ttl,
           created_at, expires_at, gid FROM auth_codes WHERE hash = ?1",
    )
    .map_err(db_err)?
    .query_row(params![hash], |r| {
        Ok(AuthCode {
            hash: r.get(0)?,
            client_id: r.get(1)?,
            redirect_uri: r.get(2)?,
            code_challenge: r.get(3)?,
            resource: r.get(4)?,
            scope: r.get(5)?,
            owner: r.get(6)?,
            ttl: r.get(7)?,
            created_at: r.get(8)?,
            expires_at: r.get(9)?,
            gid: r.get(10)?,
        })
    })
    .optional()
    .map_err(db_err)
}
