//! The [`Tx`] of the PostgreSQL backend: one connection, either the writer's
//! (inside the batch transaction and the job's savepoint) or a pooled reader.
//! The queries of the dashboard, the gateway and usage are in
//! `postgres/tx2.rs`, those of budgets in `postgres/budget.rs`, the helpers
//! in `postgres/conn.rs`; this file holds the protocol's own tables.
//!
//! SQL is parameterized throughout. Tables that SQLite orders by `rowid` have
//! an `n` column (a sequence): an `INSERT OR REPLACE` there takes a new `n`,
//! as SQLite's replace takes a new rowid, so listings keep the same order.

use protonpass_agent::wire::RevocationEvent;

use super::conn::{PgTx, audit_row, col, storable, to_json};
use crate::audit::Checkpoint;
use crate::model::{AuditRecord, Budget, DeviceReq, DeviceStatus, Grant, KeyMeta, Resource};
use crate::model::{AuthCode, ClientRec, StepUp, StepUpPolicy};
use crate::model::{SpendRec, TokenRec};
use crate::store::{AuditQuery, ConnectionRec, Invite, OwnerInfo, PendingAuth, UpstreamRec};
use crate::store::{Pruned, StorageRows};
use crate::store::{Result, Tx, UsageCount, UsageSlot, WebSession};

/// Wrong-code and sign-in attempts older than this (seconds) are deleted.
const ATTEMPTS_KEPT: i64 = 86_400;

fn device_status(s: &DeviceStatus) -> &'static str {
    match s {
        DeviceStatus::Pending => "pending",
        DeviceStatus::Approved => "approved",
        DeviceStatus::Denied => "denied",
        DeviceStatus::Used => "used",
    }
}

impl Tx for PgTx<'_> {
    fn owner_ensure(&mut self, name: &str, now: i64) -> Result<()> {
        self.exec(
            "INSERT INTO owners(name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&name, &now],
        )?;
        Ok(())
    }

    fn owners(&mut self) -> Result<Vec<OwnerInfo>> {
        self.rows(
            "SELECT o.name, o.created_at, p.owner IS NOT NULL FROM owners o
             LEFT JOIN owner_passwords p ON p.owner = o.name ORDER BY o.name",
            &[],
            |r| {
                Ok(OwnerInfo {
                    name: col(r, 0)?,
                    created_at: col(r, 1)?,
                    has_password: col(r, 2)?,
                })
            },
        )
    }

    fn owner_delete(&mut self, name: &str) -> Result<bool> {
        self.owner_delete_impl(name)
    }

    fn grant_put(&mut self, g: &Grant) -> Result<()> {
        self.forget_grant();
        self.send(
            "INSERT INTO grants(gid, owner, agent, enroll_hash, data) VALUES ($1,$2,$3,$4,$5)
             ON CONFLICT (gid) DO UPDATE SET owner = EXCLUDED.owner, agent = EXCLUDED.agent,
               enroll_hash = EXCLUDED.enroll_hash, data = EXCLUDED.data, n = EXCLUDED.n",
            vec![
                Box::new(g.gid.clone()),
                Box::new(g.owner.clone()),
                Box::new(g.agent.clone()),
                Box::new(g.enroll_hash.clone()),
                Box::new(to_json(g)?),
            ],
        )
    }

    fn grant_get(&mut self, gid: &str) -> Result<Option<Grant>> {
        if !storable(gid) {
            return Ok(None);
        }
        if let Some(g) = self.batch().and_then(|b| b.grant(gid)) {
            return Ok(g);
        }
        // Grants are written at once, never held back: a light read.
        Ok(self
            .light_many("SELECT data FROM grants WHERE gid = $1", &[&gid])?
            .pop())
    }

    fn grant_by_enroll_hash(&mut self, hash: &str) -> Result<Option<Grant>> {
        self.one("SELECT data FROM grants WHERE enroll_hash = $1", &[&hash])
    }

    fn grants_of(&mut self, owner: &str, agent: Option<&str>) -> Result<Vec<Grant>> {
        self.many(
            "SELECT data FROM grants WHERE owner = $1 AND ($2::TEXT IS NULL OR agent = $2)
             ORDER BY n DESC",
            &[&owner, &agent],
        )
    }

    fn token_put(&mut self, t: &TokenRec) -> Result<()> {
        self.token_put_impl(t)
    }

    fn token_get(&mut self, jti: &str) -> Result<Option<TokenRec>> {
        self.token_get_impl(jti)
    }

    fn token_by_hash(&mut self, hash: &str) -> Result<Option<TokenRec>> {
        self.token_by_hash_impl(hash)
    }

    fn device_put(&mut self, d: &DeviceReq) -> Result<()> {
        // An update keeps the row's `n` (the order of arrival).
        self.send(
            "INSERT INTO devices(id, device_hash, user_hash, status, expires_at, data)
             VALUES ($1,$2,$3,$4,$5,$6)
             ON CONFLICT (id) DO UPDATE SET device_hash = EXCLUDED.device_hash,
               user_hash = EXCLUDED.user_hash, status = EXCLUDED.status,
               expires_at = EXCLUDED.expires_at, data = EXCLUDED.data",
            vec![
                Box::new(d.id.clone()),
                Box::new(d.device_hash.clone()),
                Box::new(d.user_hash.clone()),
                Box::new(device_status(&d.status)),
                Box::new(d.expires_at),
                Box::new(to_json(d)?),
            ],
        )
    }

    fn device_by_device_hash(&mut self, hash: &str) -> Result<Option<DeviceReq>> {
        self.one("SELECT data FROM devices WHERE device_hash = $1", &[&hash])
    }

    fn device_by_user_hash(&mut self, hash: &str, now: i64) -> Result<Option<DeviceReq>> {
        self.one(
            "SELECT data FROM devices WHERE user_hash = $1 AND status = 'pending' AND expires_at > $2",
            &[&hash, &now],
        )
    }

    fn device_live_count(&mut self, now: i64) -> Result<i64> {
        self.int(
            "SELECT COUNT(*) FROM devices WHERE status = 'pending' AND expires_at > $1",
            &[&now],
        )
    }

    fn device_live_count_of(&mut self, requester: &str, now: i64) -> Result<i64> {
        self.int(
            "SELECT COUNT(*) FROM devices WHERE status = 'pending' AND expires_at > $1
             AND (data::jsonb) ->> 'requester' = $2",
            &[&now, &requester],
        )
    }

    fn devices_pending(&mut self, now: i64) -> Result<Vec<DeviceReq>> {
        self.many(
            "SELECT data FROM devices WHERE status = 'pending' AND expires_at > $1 ORDER BY n",
            &[&now],
        )
    }

    fn devices_approved(&mut self, now: i64) -> Result<Vec<DeviceReq>> {
        self.many(
            "SELECT data FROM devices WHERE status = 'approved' AND expires_at > $1",
            &[&now],
        )
    }

    fn resource_put(&mut self, r: &Resource) -> Result<()> {
        self.forget_resources();
        self.exec(
            "INSERT INTO resources(client_id, owner, data) VALUES ($1,$2,$3)",
            &[&r.client_id, &r.owner, &to_json(r)?],
        )?;
        Ok(())
    }

    fn resource_get(&mut self, client_id: &str) -> Result<Option<Resource>> {
        self.one(
            "SELECT data FROM resources WHERE client_id = $1",
            &[&client_id],
        )
    }

    fn resources_for_audience(&mut self, audience: &str) -> Result<Vec<Resource>> {
        if !storable(audience) {
            return Ok(Vec::new());
        }
        if let Some(r) = self.batch().and_then(|b| b.resources(audience)) {
            return Ok(r);
        }
        // Resources are written at once, never held back: a light read.
        let r = self.light_many(
            "SELECT data FROM resources WHERE (data::jsonb) ->> 'audience' = $1 ORDER BY n",
            &[&audience],
        )?;
        if let Some(b) = self.batch() {
            b.keep_resources(audience, &r);
        }
        Ok(r)
    }

    fn resources_of(&mut self, owner: &str) -> Result<Vec<Resource>> {
        self.many(
            "SELECT data FROM resources WHERE owner = $1 ORDER BY n",
            &[&owner],
        )
    }

    fn resource_delete(&mut self, client_id: &str) -> Result<bool> {
        self.forget_resources();
        Ok(self.exec("DELETE FROM resources WHERE client_id = $1", &[&client_id])? > 0)
    }

    fn key_put(&mut self, k: &KeyMeta) -> Result<()> {
        self.exec(
            "INSERT INTO signing_keys(kid, data) VALUES ($1,$2)
             ON CONFLICT (kid) DO UPDATE SET data = EXCLUDED.data, n = EXCLUDED.n",
            &[&k.kid, &to_json(k)?],
        )?;
        Ok(())
    }

    fn keys_all(&mut self) -> Result<Vec<KeyMeta>> {
        self.many("SELECT data FROM signing_keys ORDER BY n", &[])
    }

    fn key_secret_put(&mut self, kid: &str, sealed: &[u8]) -> Result<()> {
        self.exec(
            "INSERT INTO signing_key_secrets(kid, sealed) VALUES ($1,$2)
             ON CONFLICT (kid) DO UPDATE SET sealed = EXCLUDED.sealed",
            &[&kid, &sealed],
        )?;
        Ok(())
    }

    fn key_secret_get(&mut self, kid: &str) -> Result<Option<Vec<u8>>> {
        self.row(
            "SELECT sealed FROM signing_key_secrets WHERE kid = $1",
            &[&kid],
            |r| col(r, 0),
        )
    }

    fn key_secret_delete(&mut self, kid: &str) -> Result<()> {
        self.exec("DELETE FROM signing_key_secrets WHERE kid = $1", &[&kid])?;
        Ok(())
    }

    fn revocation_add(
        &mut self,
        jti: Option<&str>,
        gid: Option<&str>,
        exp: i64,
        owner: &str,
    ) -> Result<i64> {
        self.int(
            "INSERT INTO revocations(jti, gid, exp, owner) VALUES ($1,$2,$3,$4) RETURNING seq",
            &[&jti, &gid, &exp, &owner],
        )
    }

    fn revocations_after(
        &mut self,
        after: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<RevocationEvent>> {
        self.rows(
            "SELECT seq, jti, gid, exp FROM revocations WHERE seq > $1 AND exp > $2
             ORDER BY seq LIMIT $3",
            &[&after, &now, &limit],
            |r| {
                Ok(RevocationEvent {
                    seq: col(r, 0)?,
                    jti: col(r, 1)?,
                    gid: col(r, 2)?,
                    exp: col(r, 3)?,
                })
            },
        )
    }

    fn revocation_head(&mut self) -> Result<i64> {
        self.int("SELECT COALESCE(MAX(seq), 0) FROM revocations", &[])
    }

    fn audit_append(&mut self, ts: i64, owner: &str, event: &str, detail: &str) -> Result<i64> {
        self.audit_append_impl(ts, owner, event, detail)
    }

    fn audit_page(&mut self, after: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        self.rows(
            "SELECT seq, ts, owner, event, detail, prev, hash FROM audit WHERE seq > $1
             ORDER BY seq LIMIT $2",
            &[&after, &limit],
            audit_row,
        )
    }

    fn audit_head(&mut self) -> Result<i64> {
        self.int("SELECT COALESCE(MAX(seq), 0) FROM audit", &[])
    }

    fn attempt_add(&mut self, key: &str, at: i64, cost: i64) -> Result<()> {
        self.send(
            "INSERT INTO attempts(key, at, cost) VALUES ($1,$2,$3)",
            vec![Box::new(key.to_owned()), Box::new(at), Box::new(cost)],
        )?;
        // Every window that reads attempts is at most a day long.
        self.send(
            "DELETE FROM attempts WHERE at < $1",
            vec![Box::new(at - ATTEMPTS_KEPT)],
        )
    }

    fn attempt_sum(&mut self, key: &str, since: i64) -> Result<i64> {
        self.int(
            "SELECT COALESCE(SUM(cost), 0)::BIGINT FROM attempts WHERE key = $1 AND at > $2",
            &[&key, &since],
        )
    }

    fn owner_password(&mut self, owner: &str) -> Result<Option<String>> {
        self.row(
            "SELECT phc FROM owner_passwords WHERE owner = $1",
            &[&owner],
            |r| col(r, 0),
        )
    }

    fn owner_password_set(&mut self, owner: &str, phc: &str, now: i64) -> Result<()> {
        self.owner_ensure(owner, now)?;
        self.owner_password_set_impl(owner, phc, now)
    }

    fn setup_put(&mut self, hash: &str, owner: &str, expires_at: i64) -> Result<()> {
        self.setup_put_impl(hash, owner, expires_at)
    }

    fn setup_get(&mut self, hash: &str, now: i64) -> Result<Option<String>> {
        self.row(
            "SELECT owner FROM owner_setup WHERE hash = $1 AND expires_at > $2",
            &[&hash, &now],
            |r| col(r, 0),
        )
    }

    fn setup_delete(&mut self, hash: &str) -> Result<()> {
        self.exec("DELETE FROM owner_setup WHERE hash = $1", &[&hash])?;
        Ok(())
    }

    fn session_put(&mut self, s: &WebSession) -> Result<()> {
        self.session_put_impl(s)
    }

    fn session_get(&mut self, id_hash: &str, now: i64) -> Result<Option<WebSession>> {
        self.session_get_impl(id_hash, now)
    }

    fn session_delete(&mut self, id_hash: &str) -> Result<()> {
        self.exec("DELETE FROM web_sessions WHERE id_hash = $1", &[&id_hash])?;
        Ok(())
    }

    fn sessions_end_others(&mut self, owner: &str, keep: &str) -> Result<()> {
        self.exec(
            "DELETE FROM web_sessions WHERE owner = $1 AND id_hash <> $2",
            &[&owner, &keep],
        )?;
        Ok(())
    }

    fn mfa_get(&mut self, owner: &str) -> Result<Option<String>> {
        self.row(
            "SELECT data FROM owner_mfa WHERE owner = $1",
            &[&owner],
            |r| col(r, 0),
        )
    }

    fn mfa_put(&mut self, owner: &str, data: &str, now: i64) -> Result<()> {
        self.exec(
            "INSERT INTO owner_mfa (owner, data, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (owner) DO UPDATE SET data = EXCLUDED.data, updated_at = EXCLUDED.updated_at",
            &[&owner, &data, &now],
        )?;
        Ok(())
    }

    fn mfa_delete(&mut self, owner: &str) -> Result<bool> {
        Ok(self.exec("DELETE FROM owner_mfa WHERE owner = $1", &[&owner])? > 0)
    }

    fn tokens_of_grant(&mut self, gid: &str) -> Result<Vec<TokenRec>> {
        self.many(
            "SELECT data FROM tokens WHERE gid = $1 ORDER BY n DESC",
            &[&gid],
        )
    }

    fn audit_search(&mut self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        self.audit_search_impl(q)
    }

    fn usage_counts(&mut self, owner: &str) -> Result<Vec<UsageCount>> {
        self.usage_counts_impl(owner)
    }

    fn usage_refusals(&mut self, owner: &str, per_agent: i64) -> Result<Vec<AuditRecord>> {
        self.usage_refusals_impl(owner, per_agent)
    }

    fn usage_series(&mut self, owner: &str, since: i64, width: i64) -> Result<Vec<UsageSlot>> {
        self.usage_series_impl(owner, since, width)
    }

    fn upstream_put(&mut self, u: &UpstreamRec) -> Result<()> {
        self.upstream_put_impl(u)
    }

    fn upstream_get(&mut self, name: &str) -> Result<Option<UpstreamRec>> {
        self.upstreams_where("name = $1", &[&name])
            .map(|mut v| v.pop())
    }

    fn upstream_list(&mut self, owner: &str) -> Result<Vec<UpstreamRec>> {
        self.upstreams_where("owner = $1", &[&owner])
    }

    fn upstream_delete(&mut self, name: &str) -> Result<bool> {
        Ok(self.exec("DELETE FROM upstreams WHERE name = $1", &[&name])? > 0)
    }

    fn upstream_all(&mut self) -> Result<Vec<UpstreamRec>> {
        self.upstreams_where("TRUE", &[])
    }

    fn connection_put(&mut self, c: &ConnectionRec) -> Result<()> {
        self.connection_put_impl(c)
    }

    fn connection_get(&mut self, upstream: &str) -> Result<Option<ConnectionRec>> {
        self.connection_get_impl(upstream)
    }

    fn connection_delete(&mut self, upstream: &str) -> Result<bool> {
        Ok(self.exec(
            "DELETE FROM upstream_connections WHERE upstream = $1",
            &[&upstream],
        )? > 0)
    }

    fn oauth_pending_put(&mut self, p: &PendingAuth) -> Result<()> {
        self.oauth_pending_put_impl(p)
    }

    fn oauth_pending_take(&mut self, state_hash: &str) -> Result<Option<PendingAuth>> {
        self.oauth_pending_take_impl(state_hash)
    }

    fn budget_put(&mut self, b: &Budget) -> Result<()> {
        super::budget::put(self, b)
    }

    fn budgets_of(&mut self, gid: &str) -> Result<Vec<Budget>> {
        super::budget::of(self, gid)
    }

    fn spent_since(&mut self, gid: &str, scope: &str, currency: &str, since: i64) -> Result<i64> {
        super::budget::spent_since(self, gid, scope, currency, since)
    }

    fn spend_add(&mut self, s: &SpendRec, since: Option<i64>) -> Result<()> {
        super::budget::add(self, s, since)
    }

    fn spend_get(&mut self, resource: &str, key: &str) -> Result<Option<SpendRec>> {
        super::budget::get(self, resource, key)
    }

    fn spend_refund(&mut self, resource: &str, key: &str, at: i64) -> Result<()> {
        super::budget::refund(self, resource, key, at)
    }

    fn resource_replace(&mut self, r: &Resource) -> Result<()> {
        self.forget_resources();
        self.exec(
            "UPDATE resources SET data = $2 WHERE client_id = $1",
            &[&r.client_id, &to_json(r)?],
        )?;
        Ok(())
    }

    fn invite_put(&mut self, inv: &Invite) -> Result<()> {
        self.exec(
            "INSERT INTO resource_invites(hash, owner, audience, shared, expires_at)
             VALUES ($1,$2,$3,$4,$5)",
            &[
                &inv.hash,
                &inv.owner,
                &inv.audience,
                &inv.shared,
                &inv.expires_at,
            ],
        )?;
        Ok(())
    }

    fn invite_take(&mut self, hash: &str, now: i64) -> Result<Option<Invite>> {
        self.invite_take_impl(hash, now)
    }

    // Step-up, third-party clients, pruning and checkpoints: `postgres/ext.rs`.

    fn stepup_put(&mut self, s: &StepUp) -> Result<()> {
        self.stepup_put_impl(s)
    }
    fn stepup_by_hash(&mut self, hash: &str) -> Result<Option<StepUp>> {
        self.stepup_where("hash", hash)
    }
    fn stepup_get(&mut self, id: &str) -> Result<Option<StepUp>> {
        self.stepup_where("id", id)
    }
    fn stepup_by_jti(&mut self, jti: &str) -> Result<Option<StepUp>> {
        self.stepup_where("jti", jti)
    }
    fn stepups_pending(&mut self, owner: &str, now: i64) -> Result<Vec<StepUp>> {
        self.stepups_pending_impl(owner, now)
    }
    fn stepup_live_count(&mut self, gid: &str, now: i64) -> Result<i64> {
        self.stepup_live_count_impl(gid, now)
    }
    fn stepup_policy_put(&mut self, p: &StepUpPolicy) -> Result<()> {
        self.stepup_policy_put_impl(p)
    }
    fn stepup_policy_get(&mut self, gid: &str) -> Result<Option<StepUpPolicy>> {
        self.stepup_policy_get_impl(gid)
    }
    fn stepup_policy_delete(&mut self, gid: &str) -> Result<bool> {
        self.stepup_policy_delete_impl(gid)
    }
    fn owner_webhook(&mut self, owner: &str) -> Result<Option<String>> {
        self.owner_webhook_impl(owner)
    }
    fn owner_webhook_set(&mut self, owner: &str, data: Option<&str>) -> Result<bool> {
        self.owner_webhook_set_impl(owner, data)
    }
    fn client_put(&mut self, c: &ClientRec) -> Result<()> {
        self.client_put_impl(c)
    }
    fn client_get(&mut self, client_id: &str) -> Result<Option<ClientRec>> {
        self.client_get_impl(client_id)
    }
    fn client_count_since(&mut self, since: i64) -> Result<i64> {
        self.client_count_since_impl(since)
    }
    fn auth_code_put(&mut self, c: &AuthCode) -> Result<()> {
        self.auth_code_put_impl(c)
    }
    fn auth_code_get(&mut self, hash: &str) -> Result<Option<AuthCode>> {
        self.auth_code_get_impl(hash)
    }
    fn auth_code_spend(&mut self, hash: &str, gid: &str) -> Result<bool> {
        self.auth_code_spend_impl(hash, gid)
    }
    fn prune_expired(&mut self, now: i64, limit: i64) -> Result<Pruned> {
        self.prune_impl(now, limit)
    }
    fn storage_rows(&mut self) -> Result<StorageRows> {
        self.storage_rows_impl()
    }
    fn audit_checkpoint_put(&mut self, c: &Checkpoint) -> Result<()> {
        self.checkpoint_put_impl(c)
    }
    fn audit_checkpoint_latest(&mut self, at_most: i64) -> Result<Option<Checkpoint>> {
        self.checkpoint_latest_impl(at_most)
    }
    fn audit_first(&mut self) -> Result<i64> {
        self.audit_first_impl()
    }
    fn audit_delete_before(&mut self, before: i64) -> Result<i64> {
        self.audit_delete_before_impl(before)
    }
}
