//! The [`Tx`] of the SQLite backend, on one connection: the writer's (inside
//! the batch transaction and the job's savepoint) or a pooled reader. The
//! queries of the dashboard, the gateway, usage and registrations are in
//! `sqlite/tx2.rs`; those of budgets, step-ups, third-party clients, pruning
//! and audit checkpoints beside their tables (`sqlite/budget.rs`,
//! `sqlite/stepup.rs`, `sqlite/clients.rs`, `sqlite/prune.rs`,
//! `sqlite/audit.rs`); the helpers in `sqlite/conn.rs`. This file holds the
//! protocol's own tables, as `postgres/tx.rs` does for PostgreSQL.

use protonpass_agent::wire::RevocationEvent;
use rusqlite::{OptionalExtension, params};

use super::conn::{SqliteTx, audit_row, db_err, to_json};
use crate::model::{AuditRecord, DeviceReq, DeviceStatus, Grant, KeyMeta, Resource, TokenRec};
use crate::model::{Budget, SpendRec, StepUp, StepUpPolicy};
use crate::store::{AuditQuery, ConnectionRec, Invite, OwnerInfo, PendingAuth, Result, Tx};
use crate::store::{UpstreamRec, UsageCount, UsageSlot, WebSession};

impl Tx for SqliteTx<'_> {
    fn owner_ensure(&mut self, name: &str, now: i64) -> Result<()> {
        self.exec(
            "INSERT OR IGNORE INTO owners(name, created_at) VALUES (?1, ?2)",
            params![name, now],
        )?;
        Ok(())
    }

    fn owner_delete(&mut self, name: &str) -> Result<bool> {
        self.owner_delete_impl(name)
    }

    fn owners(&mut self) -> Result<Vec<OwnerInfo>> {
        self.rows(
            "SELECT o.name, o.created_at, p.owner IS NOT NULL FROM owners o \
             LEFT JOIN owner_passwords p ON p.owner = o.name ORDER BY o.name",
            [],
            |r| {
                Ok(OwnerInfo {
                    name: r.get(0)?,
                    created_at: r.get(1)?,
                    has_password: r.get(2)?,
                })
            },
        )
    }

    fn grant_put(&mut self, g: &Grant) -> Result<()> {
        self.exec("INSERT OR REPLACE INTO grants(gid, owner, agent, enroll_hash, data) VALUES (?1,?2,?3,?4,?5)", params![g.gid, g.owner, g.agent, g.enroll_hash, to_json(g)?])?;
        Ok(())
    }

    fn grant_get(&mut self, gid: &str) -> Result<Option<Grant>> {
        self.one("SELECT data FROM grants WHERE gid = ?1", params![gid])
    }

    fn grant_by_enroll_hash(&mut self, hash: &str) -> Result<Option<Grant>> {
        self.one(
            "SELECT data FROM grants WHERE enroll_hash = ?1",
            params![hash],
        )
    }

    fn grants_of(&mut self, owner: &str, agent: Option<&str>) -> Result<Vec<Grant>> {
        self.many(
            "SELECT data FROM grants WHERE owner = ?1 AND (?2 IS NULL OR agent = ?2) ORDER BY rowid DESC",
            params![owner, agent],
        )
    }

    fn token_put(&mut self, t: &TokenRec) -> Result<()> {
        self.exec(
            "INSERT OR REPLACE INTO tokens(jti, gid, hash, data) VALUES (?1,?2,?3,?4)",
            params![t.jti, t.gid, t.hash, to_json(t)?],
        )?;
        Ok(())
    }

    fn token_get(&mut self, jti: &str) -> Result<Option<TokenRec>> {
        self.one("SELECT data FROM tokens WHERE jti = ?1", params![jti])
    }

    fn token_by_hash(&mut self, hash: &str) -> Result<Option<TokenRec>> {
        self.one("SELECT data FROM tokens WHERE hash = ?1", params![hash])
    }

    fn device_put(&mut self, d: &DeviceReq) -> Result<()> {
        let status = match d.status {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Approved => "approved",
            DeviceStatus::Denied => "denied",
            DeviceStatus::Used => "used",
        };
        self.exec(// An update keeps the row (and its rowid: the order of arrival).
                "INSERT INTO devices(id, device_hash, user_hash, status, expires_at, data) VALUES (?1,?2,?3,?4,?5,?6) \
                 ON CONFLICT(id) DO UPDATE SET device_hash = excluded.device_hash, user_hash = excluded.user_hash, \
                 status = excluded.status, expires_at = excluded.expires_at, data = excluded.data", params![d.id, d.device_hash, d.user_hash, status, d.expires_at, to_json(d)?])?;
        Ok(())
    }

    fn device_by_device_hash(&mut self, hash: &str) -> Result<Option<DeviceReq>> {
        self.one(
            "SELECT data FROM devices WHERE device_hash = ?1",
            params![hash],
        )
    }

    fn device_by_user_hash(&mut self, hash: &str, now: i64) -> Result<Option<DeviceReq>> {
        self.one(
            "SELECT data FROM devices WHERE user_hash = ?1 AND status = 'pending' AND expires_at > ?2",
            params![hash, now],
        )
    }

    fn device_live_count(&mut self, now: i64) -> Result<i64> {
        self.value(
            "SELECT COUNT(*) FROM devices WHERE status = 'pending' AND expires_at > ?1",
            params![now],
        )
    }

    fn device_live_count_of(&mut self, requester: &str, now: i64) -> Result<i64> {
        self.value(
            "SELECT COUNT(*) FROM devices WHERE status = 'pending' AND expires_at > ?1 \
                 AND json_extract(data, '$.requester') = ?2",
            params![now, requester],
        )
    }

    fn devices_pending(&mut self, now: i64) -> Result<Vec<DeviceReq>> {
        self.many(
            "SELECT data FROM devices WHERE status = 'pending' AND expires_at > ?1 ORDER BY rowid",
            params![now],
        )
    }

    fn devices_approved(&mut self, now: i64) -> Result<Vec<DeviceReq>> {
        self.many(
            "SELECT data FROM devices WHERE status = 'approved' AND expires_at > ?1",
            params![now],
        )
    }

    fn resource_put(&mut self, r: &Resource) -> Result<()> {
        self.exec(
            "INSERT INTO resources(client_id, owner, data) VALUES (?1,?2,?3)",
            params![r.client_id, r.owner, to_json(r)?],
        )?;
        Ok(())
    }

    fn resource_get(&mut self, client_id: &str) -> Result<Option<Resource>> {
        self.one(
            "SELECT data FROM resources WHERE client_id = ?1",
            params![client_id],
        )
    }

    fn resources_for_audience(&mut self, audience: &str) -> Result<Vec<Resource>> {
        // `+?1`, not `?1`: with a bare parameter compared to the indexed
        // expression and `ORDER BY rowid`, SQLite prepared this statement
        // again in every transaction (the profile of token exchanges showed
        // it as 9 % of the writer's time; it runs on every exchange and
        // refresh); the unary plus keeps the same index and the same answer.
        self.many(
            "SELECT data FROM resources WHERE json_extract(data, '$.audience') = +?1 ORDER BY rowid",
            params![audience],
        )
    }

    fn resources_of(&mut self, owner: &str) -> Result<Vec<Resource>> {
        self.many(
            "SELECT data FROM resources WHERE owner = ?1 ORDER BY rowid",
            params![owner],
        )
    }

    fn resource_delete(&mut self, client_id: &str) -> Result<bool> {
        let n = self.exec(
            "DELETE FROM resources WHERE client_id = ?1",
            params![client_id],
        )?;
        Ok(n > 0)
    }

    fn key_put(&mut self, k: &KeyMeta) -> Result<()> {
        self.exec(
            "INSERT OR REPLACE INTO signing_keys(kid, data) VALUES (?1,?2)",
            params![k.kid, to_json(k)?],
        )?;
        Ok(())
    }

    fn keys_all(&mut self) -> Result<Vec<KeyMeta>> {
        self.many("SELECT data FROM signing_keys ORDER BY rowid", [])
    }

    fn revocation_add(
        &mut self,
        jti: Option<&str>,
        gid: Option<&str>,
        exp: i64,
        owner: &str,
    ) -> Result<i64> {
        self.exec(
            "INSERT INTO revocations(jti, gid, exp, owner) VALUES (?1,?2,?3,?4)",
            params![jti, gid, exp, owner],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn revocations_after(
        &mut self,
        after: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<RevocationEvent>> {
        self.rows(
            "SELECT seq, jti, gid, exp FROM revocations WHERE seq > ?1 AND exp > ?2 ORDER BY seq LIMIT ?3",
            params![after, now, limit],
            |r| {
                Ok(RevocationEvent {
                    seq: r.get(0)?,
                    jti: r.get(1)?,
                    gid: r.get(2)?,
                    exp: r.get(3)?,
                })
            },
        )
    }

    fn revocation_head(&mut self) -> Result<i64> {
        self.value("SELECT COALESCE(MAX(seq), 0) FROM revocations", [])
    }

    fn audit_append(&mut self, ts: i64, owner: &str, event: &str, detail: &str) -> Result<i64> {
        let last: Option<(i64, String)> = self
            .conn
            .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .map_err(db_err)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(db_err)?;
        let (seq, prev) = match last {
            Some((s, h)) => (s + 1, h),
            None => (1, crate::audit::GENESIS.to_owned()),
        };
        let hash = crate::audit::record_hash(seq, ts, owner, event, detail, &prev);
        self.exec("INSERT INTO audit(seq, ts, owner, event, detail, prev, hash) VALUES (?1,?2,?3,?4,?5,?6,?7)", params![seq, ts, owner, event, detail, prev, hash])?;
        Ok(seq)
    }

    fn audit_page(&mut self, after: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        self.rows(
            "SELECT seq, ts, owner, event, detail, prev, hash FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            params![after, limit],
            audit_row,
        )
    }

    fn audit_head(&mut self) -> Result<i64> {
        self.value("SELECT COALESCE(MAX(seq), 0) FROM audit", [])
    }

    fn attempt_add(&mut self, key: &str, at: i64, cost: i64) -> Result<()> {
        self.exec(
            "INSERT INTO attempts(key, at, cost) VALUES (?1,?2,?3)",
            params![key, at, cost],
        )?;
        // Every window that reads attempts is at most a day long: older rows
        // count for nothing, so the table stays as small as the recent traffic.
        self.exec(
            "DELETE FROM attempts WHERE at < ?1",
            params![at - super::ATTEMPTS_KEPT],
        )?;
        Ok(())
    }

    fn attempt_sum(&mut self, key: &str, since: i64) -> Result<i64> {
        self.value(
            "SELECT COALESCE(SUM(cost), 0) FROM attempts WHERE key = ?1 AND at > ?2",
            params![key, since],
        )
    }

    fn mfa_get(&mut self, owner: &str) -> Result<Option<String>> {
        self.mfa_get_impl(owner)
    }

    fn mfa_put(&mut self, owner: &str, data: &str, now: i64) -> Result<()> {
        self.mfa_put_impl(owner, data, now)
    }

    fn mfa_delete(&mut self, owner: &str) -> Result<bool> {
        self.mfa_delete_impl(owner)
    }

    fn owner_password(&mut self, owner: &str) -> Result<Option<String>> {
        self.owner_password_impl(owner)
    }

    fn owner_password_set(&mut self, owner: &str, phc: &str, now: i64) -> Result<()> {
        self.owner_password_set_impl(owner, phc, now)
    }

    fn setup_put(&mut self, hash: &str, owner: &str, expires_at: i64) -> Result<()> {
        self.setup_put_impl(hash, owner, expires_at)
    }

    fn setup_get(&mut self, hash: &str, now: i64) -> Result<Option<String>> {
        self.setup_get_impl(hash, now)
    }

    fn setup_delete(&mut self, hash: &str) -> Result<()> {
        self.setup_delete_impl(hash)
    }

    fn session_put(&mut self, s: &WebSession) -> Result<()> {
        self.session_put_impl(s)
    }

    fn session_get(&mut self, id_hash: &str, now: i64) -> Result<Option<WebSession>> {
        self.session_get_impl(id_hash, now)
    }

    fn sessions_end_others(&mut self, owner: &str, keep: &str) -> Result<()> {
        self.sessions_end_others_impl(owner, keep)
    }

    fn session_delete(&mut self, id_hash: &str) -> Result<()> {
        self.session_delete_impl(id_hash)
    }

    fn tokens_of_grant(&mut self, gid: &str) -> Result<Vec<TokenRec>> {
        self.many(
            "SELECT data FROM tokens WHERE gid = ?1 ORDER BY rowid DESC",
            params![gid],
        )
    }

    fn audit_search(&mut self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        self.audit_search_impl(q)
    }

    fn usage_counts(&mut self, owner: &str) -> Result<Vec<UsageCount>> {
        self.usage_counts_impl(owner)
    }

    fn usage_series(&mut self, owner: &str, since: i64, width: i64) -> Result<Vec<UsageSlot>> {
        self.usage_series_impl(owner, since, width)
    }

    fn usage_refusals(&mut self, owner: &str, per_agent: i64) -> Result<Vec<AuditRecord>> {
        self.usage_refusals_impl(owner, per_agent)
    }

    fn upstream_put(&mut self, u: &UpstreamRec) -> Result<()> {
        self.upstream_put_impl(u)
    }

    fn upstream_get(&mut self, name: &str) -> Result<Option<UpstreamRec>> {
        self.upstream_get_impl(name)
    }

    fn upstream_list(&mut self, owner: &str) -> Result<Vec<UpstreamRec>> {
        self.upstream_list_impl(owner)
    }

    fn upstream_all(&mut self) -> Result<Vec<UpstreamRec>> {
        self.upstream_all_impl()
    }

    fn upstream_delete(&mut self, name: &str) -> Result<bool> {
        self.upstream_delete_impl(name)
    }

    fn connection_put(&mut self, c: &ConnectionRec) -> Result<()> {
        self.connection_put_impl(c)
    }

    fn connection_get(&mut self, upstream: &str) -> Result<Option<ConnectionRec>> {
        self.connection_get_impl(upstream)
    }

    fn connection_delete(&mut self, upstream: &str) -> Result<bool> {
        self.connection_delete_impl(upstream)
    }

    fn oauth_pending_put(&mut self, p: &PendingAuth) -> Result<()> {
        self.oauth_pending_put_impl(p)
    }

    fn oauth_pending_take(&mut self, state_hash: &str) -> Result<Option<PendingAuth>> {
        self.oauth_pending_take_impl(state_hash)
    }

    // Third-party clients and authorization codes (queries in `sqlite/clients.rs`).

    fn client_put(&mut self, c: &crate::model::ClientRec) -> Result<()> {
        super::clients::client_put(self.conn, c)
    }

    fn client_get(&mut self, client_id: &str) -> Result<Option<crate::model::ClientRec>> {
        super::clients::client_get(self.conn, client_id)
    }

    fn client_count_since(&mut self, since: i64) -> Result<i64> {
        super::clients::client_count_since(self.conn, since)
    }

    fn auth_code_put(&mut self, c: &crate::model::AuthCode) -> Result<()> {
        super::clients::code_put(self.conn, c)
    }

    fn auth_code_get(&mut self, hash: &str) -> Result<Option<crate::model::AuthCode>> {
        super::clients::code_get(self.conn, hash)
    }

    fn auth_code_spend(&mut self, hash: &str, gid: &str) -> Result<bool> {
        super::clients::code_spend(self.conn, hash, gid)
    }

    // Budgets (queries in `sqlite/budget.rs`).

    fn budget_put(&mut self, b: &Budget) -> Result<()> {
        super::budget::put(self.conn, b)
    }

    fn budgets_of(&mut self, gid: &str) -> Result<Vec<Budget>> {
        super::budget::of(self.conn, gid)
    }

    fn spent_since(&mut self, gid: &str, scope: &str, currency: &str, since: i64) -> Result<i64> {
        super::budget::spent_since(self.conn, gid, scope, currency, since)
    }

    fn spend_add(&mut self, s: &SpendRec, since: Option<i64>) -> Result<()> {
        super::budget::add(self.conn, s, since)
    }

    fn spend_get(&mut self, resource: &str, key: &str) -> Result<Option<SpendRec>> {
        super::budget::get(self.conn, resource, key)
    }

    fn spend_refund(&mut self, resource: &str, key: &str, at: i64) -> Result<()> {
        super::budget::refund(self.conn, resource, key, at)
    }

    // Step-ups (queries in `sqlite/stepup.rs`).

    fn stepup_put(&mut self, s: &StepUp) -> Result<()> {
        super::stepup::put(self.conn, s)
    }

    fn stepup_by_hash(&mut self, hash: &str) -> Result<Option<StepUp>> {
        super::stepup::by_hash(self.conn, hash)
    }

    fn stepup_get(&mut self, id: &str) -> Result<Option<StepUp>> {
        super::stepup::get(self.conn, id)
    }

    fn stepup_by_jti(&mut self, jti: &str) -> Result<Option<StepUp>> {
        super::stepup::by_jti(self.conn, jti)
    }

    fn stepups_pending(&mut self, owner: &str, now: i64) -> Result<Vec<StepUp>> {
        super::stepup::pending_of(self.conn, owner, now)
    }

    fn stepup_live_count(&mut self, gid: &str, now: i64) -> Result<i64> {
        super::stepup::live_count(self.conn, gid, now)
    }

    fn stepup_policy_put(&mut self, p: &StepUpPolicy) -> Result<()> {
        super::stepup::policy_put(self.conn, p)
    }

    fn stepup_policy_get(&mut self, gid: &str) -> Result<Option<StepUpPolicy>> {
        super::stepup::policy_get(self.conn, gid)
    }

    fn stepup_policy_delete(&mut self, gid: &str) -> Result<bool> {
        super::stepup::policy_delete(self.conn, gid)
    }

    fn owner_webhook(&mut self, owner: &str) -> Result<Option<String>> {
        super::stepup::webhook_get(self.conn, owner)
    }

    fn owner_webhook_set(&mut self, owner: &str, data: Option<&str>) -> Result<bool> {
        super::stepup::webhook_set(self.conn, owner, data)
    }

    fn resource_replace(&mut self, r: &Resource) -> Result<()> {
        self.exec(
            "UPDATE resources SET data = ?2 WHERE client_id = ?1",
            params![r.client_id, to_json(r)?],
        )?;
        Ok(())
    }

    fn invite_put(&mut self, inv: &Invite) -> Result<()> {
        self.invite_put_impl(inv)
    }

    fn invite_take(&mut self, hash: &str, now: i64) -> Result<Option<Invite>> {
        self.invite_take_impl(hash, now)
    }

    // Bounded storage and audit checkpoints (`sqlite/prune.rs`, `sqlite/audit.rs`).

    fn prune_expired(&mut self, now: i64, limit: i64) -> Result<crate::store::Pruned> {
        super::prune::prune(self.conn, now, limit)
    }

    fn storage_rows(&mut self) -> Result<crate::store::StorageRows> {
        super::prune::rows(self.conn)
    }

    fn audit_checkpoint_put(&mut self, c: &crate::audit::Checkpoint) -> Result<()> {
        super::audit::checkpoint_put(self.conn, c)
    }

    fn audit_checkpoint_latest(
        &mut self,
        at_most: i64,
    ) -> Result<Option<crate::audit::Checkpoint>> {
        super::audit::checkpoint_latest(self.conn, at_most)
    }

    fn audit_first(&mut self) -> Result<i64> {
        super::audit::first(self.conn)
    }

    fn audit_delete_before(&mut self, before: i64) -> Result<i64> {
        super::audit::delete_before(self.conn, before)
    }
}
