//! The SQLite tables that the numbered migrations of `sqlite/migrate.rs`
//! create, other than those kept beside their queries (`sqlite/audit.rs`,
//! `sqlite/budget.rs`, `sqlite/clients.rs`, `sqlite/prune.rs`,
//! `sqlite/stepup.rs`). The PostgreSQL tables are in `postgres/schema.rs`.

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS owners (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS grants (
  gid TEXT PRIMARY KEY, owner TEXT NOT NULL, agent TEXT NOT NULL,
  enroll_hash TEXT UNIQUE, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS grants_owner ON grants(owner, agent);
CREATE TABLE IF NOT EXISTS tokens (
  jti TEXT PRIMARY KEY, gid TEXT NOT NULL, hash TEXT UNIQUE, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
  id TEXT PRIMARY KEY, device_hash TEXT NOT NULL UNIQUE, user_hash TEXT NOT NULL,
  status TEXT NOT NULL, expires_at INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS devices_user ON devices(user_hash, status);
CREATE INDEX IF NOT EXISTS devices_live ON devices(status, expires_at);
CREATE TABLE IF NOT EXISTS resources (client_id TEXT PRIMARY KEY, owner TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS signing_keys (kid TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revocations (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, jti TEXT, gid TEXT, exp INTEGER NOT NULL, owner TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, owner TEXT NOT NULL, event TEXT NOT NULL,
  detail TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
  id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, at INTEGER NOT NULL, cost INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS attempts_key ON attempts(key, at);
CREATE INDEX IF NOT EXISTS attempts_at ON attempts(at);
";

/// Tables of the dashboard: owner passwords, setup links, web sessions.
pub(super) const DASHBOARD_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS owner_passwords (owner TEXT PRIMARY KEY, phc TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS owner_setup (hash TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS web_sessions (
  id_hash TEXT PRIMARY KEY, owner TEXT NOT NULL, csrf TEXT NOT NULL,
  created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_gid ON tokens(gid);
CREATE INDEX IF NOT EXISTS audit_owner ON audit(owner, seq);
CREATE INDEX IF NOT EXISTS resources_audience ON resources(json_extract(data, '$.audience'));
";

/// Owners' second factors (TOTP, recovery codes), as the dashboard writes them.
pub(super) const MFA_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS owner_mfa (owner TEXT PRIMARY KEY, data TEXT NOT NULL, updated_at INTEGER NOT NULL);
";

/// The gateway's upstreams: rules and the secret sealed by the vault.
pub(super) const GATEWAY_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS upstreams (
  name TEXT PRIMARY KEY, owner TEXT NOT NULL, rules TEXT NOT NULL, sealed BLOB NOT NULL,
  created_at INTEGER NOT NULL, rotated_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS upstreams_owner ON upstreams(owner, name);
";

/// The gateway's OAuth connections (tokens sealed by the vault) and pending
/// authorizations (`state` hash, PKCE verifier sealed), single use.
pub(super) const OAUTH_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS upstream_connections (
  upstream TEXT PRIMARY KEY, owner TEXT NOT NULL, id TEXT NOT NULL, status TEXT NOT NULL,
  sealed BLOB NOT NULL, access_expires_at INTEGER NOT NULL,
  connected_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS oauth_pending (
  state_hash TEXT PRIMARY KEY, owner TEXT NOT NULL, upstream TEXT NOT NULL,
  sealed BLOB NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  browser TEXT);
";

/// Invitations to register a resource server over HTTP (hash of the token).
pub(super) const REGISTRATION_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS resource_invites (
  hash TEXT PRIMARY KEY, owner TEXT NOT NULL, audience TEXT NOT NULL, shared INTEGER NOT NULL,
  expires_at INTEGER NOT NULL);
";
