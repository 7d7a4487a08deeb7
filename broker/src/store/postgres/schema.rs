//! The PostgreSQL schema, as numbered migrations. Version 1 holds the same
//! tables as SQLite's version 1 (`sqlite/schema.rs`), with PostgreSQL types, and two
//! additions a cluster of replicas needs: `n` columns that keep the order of
//! arrival SQLite reads from its `rowid`, and `signing_key_secrets` (the
//! private keys, sealed by the vault key: replicas have no shared disk).
//!
//! To change the schema, append a migration; never edit one that shipped.

/// `(version, SQL)`, in order. Each runs in one transaction with the
/// `schema_version` update.
pub(super) const MIGRATIONS: &[(i64, &str)] = &[(1, V1), (2, V2), (3, V3), (4, V4), (5, V5)];

/// Parse a JSON text column, or NULL when it is not JSON (SQLite's
/// `json_valid` guard: audit details are JSON, but the log is append-only and
/// one bad record must not break every query over it).
const V1: &str = "
CREATE OR REPLACE FUNCTION pp_json(t TEXT) RETURNS JSONB LANGUAGE plpgsql IMMUTABLE AS $f$
BEGIN
  RETURN t::jsonb;
EXCEPTION WHEN others THEN
  RETURN NULL;
END
$f$;
CREATE TABLE owners (name TEXT PRIMARY KEY, created_at BIGINT NOT NULL);
CREATE TABLE grants (
  gid TEXT PRIMARY KEY, owner TEXT NOT NULL, agent TEXT NOT NULL,
  enroll_hash TEXT UNIQUE, data TEXT NOT NULL, n BIGSERIAL NOT NULL);
CREATE INDEX grants_owner ON grants(owner, agent, n);
CREATE TABLE tokens (
  jti TEXT PRIMARY KEY, gid TEXT NOT NULL, hash TEXT UNIQUE, data TEXT NOT NULL,
  n BIGSERIAL NOT NULL);
CREATE INDEX tokens_gid ON tokens(gid, n);
CREATE TABLE devices (
  id TEXT PRIMARY KEY, device_hash TEXT NOT NULL UNIQUE, user_hash TEXT NOT NULL,
  status TEXT NOT NULL, expires_at BIGINT NOT NULL, data TEXT NOT NULL, n BIGSERIAL NOT NULL);
CREATE INDEX devices_user ON devices(user_hash, status);
CREATE INDEX devices_live ON devices(status, expires_at);
CREATE TABLE resources (
  client_id TEXT PRIMARY KEY, owner TEXT NOT NULL, data TEXT NOT NULL, n BIGSERIAL NOT NULL);
CREATE INDEX resources_audience ON resources(((data::jsonb) ->> 'audience'));
CREATE INDEX resources_owner ON resources(owner, n);
CREATE TABLE signing_keys (kid TEXT PRIMARY KEY, data TEXT NOT NULL, n BIGSERIAL NOT NULL);
CREATE TABLE signing_key_secrets (kid TEXT PRIMARY KEY, sealed BYTEA NOT NULL);
CREATE TABLE revocations (
  seq BIGSERIAL PRIMARY KEY, jti TEXT, gid TEXT, exp BIGINT NOT NULL, owner TEXT NOT NULL);
CREATE TABLE audit (
  seq BIGINT PRIMARY KEY, ts BIGINT NOT NULL, owner TEXT NOT NULL, event TEXT NOT NULL,
  detail TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX audit_owner ON audit(owner, seq);
CREATE TABLE attempts (
  id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, at BIGINT NOT NULL, cost BIGINT NOT NULL);
CREATE INDEX attempts_key ON attempts(key, at);
CREATE INDEX attempts_at ON attempts(at);
CREATE TABLE owner_passwords (owner TEXT PRIMARY KEY, phc TEXT NOT NULL, updated_at BIGINT NOT NULL);
CREATE TABLE owner_setup (hash TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at BIGINT NOT NULL);
CREATE TABLE web_sessions (
  id_hash TEXT PRIMARY KEY, owner TEXT NOT NULL, csrf TEXT NOT NULL,
  created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);
CREATE TABLE owner_mfa (owner TEXT PRIMARY KEY, data TEXT NOT NULL, updated_at BIGINT NOT NULL);
CREATE TABLE upstreams (
  name TEXT PRIMARY KEY, owner TEXT NOT NULL, rules TEXT NOT NULL, sealed BYTEA NOT NULL,
  created_at BIGINT NOT NULL, rotated_at BIGINT NOT NULL);
CREATE INDEX upstreams_owner ON upstreams(owner, name);
CREATE TABLE upstream_connections (
  upstream TEXT PRIMARY KEY, owner TEXT NOT NULL, id TEXT NOT NULL, status TEXT NOT NULL,
  sealed BYTEA NOT NULL, access_expires_at BIGINT NOT NULL,
  connected_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);
CREATE TABLE oauth_pending (
  state_hash TEXT PRIMARY KEY, owner TEXT NOT NULL, upstream TEXT NOT NULL,
  sealed BYTEA NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,
  browser TEXT);
CREATE TABLE resource_invites (
  hash TEXT PRIMARY KEY, owner TEXT NOT NULL, audience TEXT NOT NULL, shared BOOLEAN NOT NULL,
  expires_at BIGINT NOT NULL);
CREATE TABLE budgets (
  gid TEXT NOT NULL, scope TEXT NOT NULL, limit_minor BIGINT NOT NULL, currency TEXT NOT NULL,
  period TEXT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (gid, scope));
CREATE TABLE spends (
  id BIGSERIAL PRIMARY KEY, resource TEXT NOT NULL, key TEXT NOT NULL,
  gid TEXT NOT NULL, scope TEXT NOT NULL, amount BIGINT NOT NULL, currency TEXT NOT NULL,
  at BIGINT NOT NULL, refunded_at BIGINT, answer TEXT NOT NULL, UNIQUE (resource, key));
CREATE INDEX spends_budget ON spends(gid, scope, at, currency, refunded_at, amount);
";

/// The pruning indexes and the audit checkpoints (`sqlite/prune.rs`,
/// `sqlite/audit.rs`), third-party clients and authorization codes
/// (`sqlite/clients.rs`), step-up requests and their policies
/// (`sqlite/stepup.rs`).
const V2: &str = "
CREATE INDEX tokens_exp ON tokens(((pp_json(data) ->> 'exp')::BIGINT));
CREATE INDEX devices_expires ON devices(expires_at);
CREATE INDEX revocations_exp ON revocations(exp);
CREATE INDEX web_sessions_expires ON web_sessions(expires_at);
CREATE TABLE audit_checkpoints (
  seq BIGINT PRIMARY KEY, hash TEXT NOT NULL, ts BIGINT NOT NULL,
  kid TEXT NOT NULL, public_key TEXT NOT NULL, sig TEXT NOT NULL);
CREATE TABLE oauth_clients (
  client_id TEXT PRIMARY KEY, data TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE INDEX oauth_clients_created ON oauth_clients(created_at);
CREATE TABLE auth_codes (
  hash TEXT PRIMARY KEY, client_id TEXT NOT NULL, redirect_uri TEXT NOT NULL,
  code_challenge TEXT NOT NULL, resource TEXT NOT NULL, scope TEXT NOT NULL,
  owner TEXT NOT NULL, ttl BIGINT NOT NULL, created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL, gid TEXT);
CREATE INDEX auth_codes_expiry ON auth_codes(expires_at);
CREATE TABLE stepups (
  id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, owner TEXT NOT NULL, gid TEXT NOT NULL,
  status TEXT NOT NULL, expires_at BIGINT NOT NULL, jti TEXT, data TEXT NOT NULL);
CREATE INDEX stepups_owner ON stepups(owner, status, expires_at);
CREATE INDEX stepups_gid ON stepups(gid, status, expires_at);
CREATE INDEX stepups_jti ON stepups(jti);
CREATE TABLE stepup_policies (
  gid TEXT PRIMARY KEY, currency TEXT NOT NULL, max_minor BIGINT NOT NULL,
  updated_at BIGINT NOT NULL);
";

/// Version 3: the owner's step-up webhook, in the owner's record.
const V3: &str = "ALTER TABLE owners ADD COLUMN webhook TEXT;";

/// Version 4: what replicas share beyond the data. `dpop_proofs` holds the
/// DPoP proofs some replica accepted (the SHA-256 of `jti`, `htm` and `htu`),
/// until their `iat` leaves the acceptance window, so that no other replica
/// accepts them again (`Store::proof_use`); the pruning removes them after.
/// A new revocation-feed entry is announced on the `protonpass_feed` channel
/// (its position as the payload, sent when its transaction commits) to every
/// replica that `LISTEN`s (`postgres_notify.rs`).
const V4: &str = "
CREATE TABLE dpop_proofs (key BYTEA PRIMARY KEY, forget_at BIGINT NOT NULL);
CREATE INDEX dpop_proofs_forget ON dpop_proofs(forget_at);
CREATE OR REPLACE FUNCTION pp_feed_notify() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  PERFORM pg_notify('protonpass_feed', NEW.seq::text);
  RETURN NULL;
END
$f$;
CREATE TRIGGER revocations_notify AFTER INSERT ON revocations
  FOR EACH ROW EXECUTE FUNCTION pp_feed_notify();
";

/// Version 5: the budgets' running totals (`postgres/budget.rs`), each
/// counted from `since` (the start of a budget's period), backfilled from the
/// spends for the budgets' current UTC periods (weeks from Monday, as
/// `Period::bounds`; a start that differs is only counted again).
const V5: &str = "
CREATE TABLE spend_totals (
  gid TEXT NOT NULL, scope TEXT NOT NULL, currency TEXT NOT NULL, since BIGINT NOT NULL,
  spent BIGINT NOT NULL, PRIMARY KEY (gid, scope, currency));
INSERT INTO spend_totals(gid, scope, currency, since, spent)
  SELECT p.gid, p.scope, p.currency, p.since,
    (SELECT COALESCE(SUM(s.amount), 0)::BIGINT FROM spends s WHERE s.gid = p.gid
      AND s.scope = p.scope AND s.currency = p.currency AND s.at >= p.since
      AND s.refunded_at IS NULL)
  FROM (SELECT gid, scope, currency, CASE period
      WHEN 'hour' THEN EXTRACT(EPOCH FROM date_trunc('hour', now() AT TIME ZONE 'UTC'))::BIGINT
      WHEN 'day' THEN EXTRACT(EPOCH FROM date_trunc('day', now() AT TIME ZONE 'UTC'))::BIGINT
      WHEN 'week' THEN EXTRACT(EPOCH FROM date_trunc('week', now() AT TIME ZONE 'UTC'))::BIGINT
      WHEN 'month' THEN EXTRACT(EPOCH FROM date_trunc('month', now() AT TIME ZONE 'UTC'))::BIGINT
      ELSE (-9223372036854775807)::BIGINT - 1 END AS since
    FROM budgets) AS p;
";
