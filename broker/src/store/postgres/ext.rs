//! The PostgreSQL queries of step-up requests and policies, third-party
//! clients and authorization codes, pruning, the audit log's appends (with
//! the head the writer's batch keeps), checkpoints and archive: the same statements as `sqlite/stepup.rs`,
//! `sqlite/clients.rs`, `sqlite/prune.rs` and `sqlite/audit.rs`, called by
//! the [`Tx`](crate::store::Tx) impl in `postgres/tx.rs`. Tables: migration 2 of
//! `postgres/schema.rs`.

use super::conn::{PgTx, col, from_json, to_json};
use crate::audit::Checkpoint;
use crate::model::{AuditRecord, AuthCode, ClientRec, StepUp, StepUpPolicy};
use crate::store::sqlite::prune::GRACE;
use crate::store::{Pruned, Result, StorageRows};

/// Wrong-code and sign-in attempts older than this (seconds) are pruned.
const ATTEMPTS_KEPT: i64 = 86_400;

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PgTx<'_> {
    pub(super) fn audit_append_impl(
        &self,
        ts: i64,
        owner: &str,
        event: &str,
        detail: &str,
    ) -> Result<i64> {
        // Writers hold the advisory lock: the head read here is the head, and
        // it stays the head for the writer's whole batch (which keeps it: a
        // job rolled back puts the one before it back).
        const HEAD: &str = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1";
        let head = |r: &tokio_postgres::Row| Ok((col::<i64>(r, 0)?, col::<String>(r, 1)?));
        let last = match self.batch() {
            Some(b) => match b.head().or_else(|| b.held_audit_head()) {
                Some(h) => Some(h),
                // No record held back: the table's head is the chain's (a
                // light read).
                None => self.light(HEAD, &[])?.first().map(head).transpose()?,
            },
            None => self.row(HEAD, &[], head)?,
        };
        let (seq, prev) = match last {
            Some((s, h)) => (s + 1, h),
            None => (1, crate::audit::GENESIS.to_owned()),
        };
        let hash = crate::audit::record_hash(seq, ts, owner, event, detail, &prev);
        if let Some(b) = self.batch() {
            b.set_head(Some((seq, hash.clone())));
            // Held back, sent with the batch's other audit records.
            b.hold_audit(AuditRecord {
                seq,
                ts,
                owner: owner.to_owned(),
                event: event.to_owned(),
                detail: detail.to_owned(),
                prev,
                hash,
            });
            return Ok(seq);
        }
        self.send(
            "INSERT INTO audit(seq, ts, owner, event, detail, prev, hash) VALUES ($1,$2,$3,$4,$5,$6,$7)",
            vec![
                Box::new(seq),
                Box::new(ts),
                Box::new(owner.to_owned()),
                Box::new(event.to_owned()),
                Box::new(detail.to_owned()),
                Box::new(prev),
                Box::new(hash),
            ],
        )?;
        Ok(seq)
    }

    // Step-up requests and their auto-approval policies.

    pub(super) fn stepup_put_impl(&self, s: &StepUp) -> Result<()> {
        self.exec(
            "INSERT INTO stepups(id, hash, owner, gid, status, expires_at, jti, data)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8)
             ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, jti = EXCLUDED.jti,
               data = EXCLUDED.data",
            &[
                &s.id,
                &s.hash,
                &s.owner,
                &s.gid,
                &s.status.as_str(),
                &s.expires_at,
                &s.jti,
                &to_json(s)?,
            ],
        )?;
        Ok(())
    }

    pub(super) fn stepup_where(&self, column: &str, key: &str) -> Result<Option<StepUp>> {
        let sql = match column {
            "hash" => "SELECT data FROM stepups WHERE hash = $1",
            "id" => "SELECT data FROM stepups WHERE id = $1",
            _ => "SELECT data FROM stepups WHERE jti = $1",
        };
        self.one(sql, &[&key])
    }

    pub(super) fn stepups_pending_impl(&self, owner: &str, now: i64) -> Result<Vec<StepUp>> {
        self.many(
            "SELECT data FROM stepups WHERE owner = $1 AND status = 'pending' AND expires_at > $2
             ORDER BY expires_at",
            &[&owner, &now],
        )
    }

    pub(super) fn stepup_live_count_impl(&self, gid: &str, now: i64) -> Result<i64> {
        self.int(
            "SELECT COUNT(*) FROM stepups WHERE gid = $1 AND status IN ('pending', 'approved', 'issued')
             AND expires_at > $2",
            &[&gid, &now],
        )
    }

    pub(super) fn stepup_policy_put_impl(&self, p: &StepUpPolicy) -> Result<()> {
        self.exec(
            "INSERT INTO stepup_policies(gid, currency, max_minor, updated_at) VALUES ($1,$2,$3,$4)
             ON CONFLICT (gid) DO UPDATE SET currency = EXCLUDED.currency,
               max_minor = EXCLUDED.max_minor, updated_at = EXCLUDED.updated_at",
            &[&p.gid, &p.currency, &p.max, &p.updated_at],
        )?;
        Ok(())
    }

    pub(super) fn stepup_policy_get_impl(&self, gid: &str) -> Result<Option<StepUpPolicy>> {
        self.row(
            "SELECT gid, currency, max_minor, updated_at FROM stepup_policies WHERE gid = $1",
            &[&gid],
            |r| {
                Ok(StepUpPolicy {
                    gid: col(r, 0)?,
                    currency: col(r, 1)?,
                    max: col(r, 2)?,
                    updated_at: col(r, 3)?,
                })
            },
        )
    }

    pub(super) fn stepup_policy_delete_impl(&self, gid: &str) -> Result<bool> {
        Ok(self.exec("DELETE FROM stepup_policies WHERE gid = $1", &[&gid])? > 0)
    }

    pub(super) fn owner_webhook_impl(&self, owner: &str) -> Result<Option<String>> {
        Ok(self
            .row(
                "SELECT webhook FROM owners WHERE name = $1",
                &[&owner],
                |r| col::<Option<String>>(r, 0),
            )?
            .flatten())
    }

    pub(super) fn owner_webhook_set_impl(&self, owner: &str, data: Option<&str>) -> Result<bool> {
        Ok(self.exec(
            "UPDATE owners SET webhook = $2 WHERE name = $1",
            &[&owner, &data],
        )? > 0)
    }

    // Third-party OAuth clients and authorization codes.

    pub(super) fn client_put_impl(&self, c: &ClientRec) -> Result<()> {
        self.exec(
            "INSERT INTO oauth_clients(client_id, data, created_at) VALUES ($1,$2,$3)",
            &[&c.client_id, &to_json(&c.metadata)?, &c.created_at],
        )?;
        Ok(())
    }

    pub(super) fn client_get_impl(&self, client_id: &str) -> Result<Option<ClientRec>> {
        self.row(
            "SELECT data, created_at FROM oauth_clients WHERE client_id = $1",
            &[&client_id],
            |r| {
                Ok(ClientRec {
                    client_id: client_id.to_owned(),
                    metadata: from_json(col::<&str>(r, 0)?)?,
                    created_at: col(r, 1)?,
                })
            },
        )
    }

    pub(super) fn client_count_since_impl(&self, since: i64) -> Result<i64> {
        self.int(
            "SELECT COUNT(*) FROM oauth_clients WHERE created_at >= $1",
            &[&since],
        )
    }

    pub(super) fn auth_code_put_impl(&self, c: &AuthCode) -> Result<()> {
        self.exec(
            "DELETE FROM auth_codes WHERE expires_at <= $1",
            &[&(c.created_at - 86_400)],
        )?;
        self.exec(
            "INSERT INTO auth_codes(hash, client_id, redirect_uri, code_challenge, resource, scope,
               owner, ttl, created_at, expires_at, gid) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
            &[
                &c.hash,
                &c.client_id,
                &c.redirect_uri,
                &c.code_challenge,
                &c.resource,
                &c.scope,
                &c.owner,
                &c.ttl,
                &c.created_at,
                &c.expires_at,
                &c.gid,
            ],
        )?;
        Ok(())
    }

    pub(super) fn auth_code_get_impl(&self, hash: &str) -> Result<Option<AuthCode>> {
        self.row(
            "SELECT hash, client_id, redirect_uri, code_challenge, resource, scope, owner, ttl,
               created_at, expires_at, gid FROM auth_codes WHERE hash = $1",
            &[&hash],
            |r| {
                Ok(AuthCode {
                    hash: col(r, 0)?,
                    client_id: col(r, 1)?,
                    redirect_uri: col(r, 2)?,
                    code_challenge: col(r, 3)?,
                    resource: col(r, 4)?,
                    scope: col(r, 5)?,
                    owner: col(r, 6)?,
                    ttl: col(r, 7)?,
                    created_at: col(r, 8)?,
                    expires_at: col(r, 9)?,
                    gid: col(r, 10)?,
                })
            },
        )
    }

    pub(super) fn auth_code_spend_impl(&self, hash: &str, gid: &str) -> Result<bool> {
        Ok(self.exec(
            "UPDATE auth_codes SET gid = $2 WHERE hash = $1 AND gid IS NULL",
            &[&hash, &gid],
        )? == 1)
    }

    // Bounded storage (see `sqlite/prune.rs` for what is kept and why).

    pub(super) fn prune_impl(&self, now: i64, limit: i64) -> Result<Pruned> {
        if let Some(b) = self.batch() {
            // Tokens the batch read may go.
            b.forget_prefetch();
        }
        let old = now - GRACE;
        let run =
            |sql: &str, at: i64| -> Result<i64> { Ok(count(self.exec(sql, &[&at, &limit])?)) };
        Ok(Pruned {
            tokens: run(
                "DELETE FROM tokens WHERE jti IN (SELECT jti FROM tokens
                   WHERE (pp_json(data) ->> 'exp')::BIGINT < $1 LIMIT $2)",
                old,
            )?,
            devices: run(
                "DELETE FROM devices WHERE id IN (SELECT id FROM devices WHERE expires_at < $1 LIMIT $2)",
                old,
            )?,
            revocations: run(
                "DELETE FROM revocations WHERE seq IN (SELECT seq FROM revocations
                   WHERE exp < $1 AND seq < (SELECT MAX(seq) FROM revocations) LIMIT $2)",
                old,
            )?,
            attempts: run(
                "DELETE FROM attempts WHERE id IN (SELECT id FROM attempts WHERE at < $1 LIMIT $2)",
                now - ATTEMPTS_KEPT,
            )?,
            sessions: run(
                "DELETE FROM web_sessions WHERE id_hash IN
                   (SELECT id_hash FROM web_sessions WHERE expires_at < $1 LIMIT $2)",
                now,
            )?,
            setup_links: run(
                "DELETE FROM owner_setup WHERE hash IN
                   (SELECT hash FROM owner_setup WHERE expires_at < $1 LIMIT $2)",
                now,
            )?,
            oauth_pending: run(
                "DELETE FROM oauth_pending WHERE state_hash IN
                   (SELECT state_hash FROM oauth_pending WHERE expires_at <= $1 LIMIT $2)",
                now,
            )?,
            invites: run(
                "DELETE FROM resource_invites WHERE hash IN
                   (SELECT hash FROM resource_invites WHERE expires_at <= $1 LIMIT $2)",
                now,
            )?,
            // Past `forget_at`, a proof's `iat` is outside the window anyway.
            proofs: run(
                "DELETE FROM dpop_proofs WHERE key IN
                   (SELECT key FROM dpop_proofs WHERE forget_at <= $1 LIMIT $2)",
                now,
            )?,
        })
    }

    pub(super) fn storage_rows_impl(&self) -> Result<StorageRows> {
        let n = |sql: &str| self.int(sql, &[]);
        Ok(StorageRows {
            grants: n("SELECT COUNT(*) FROM grants")?,
            tokens: n("SELECT COUNT(*) FROM tokens")?,
            devices: n("SELECT COUNT(*) FROM devices")?,
            revocations: n("SELECT COUNT(*) FROM revocations")?,
            attempts: n("SELECT COUNT(*) FROM attempts")?,
            sessions: n("SELECT COUNT(*) FROM web_sessions")?,
            audit: n("SELECT COUNT(*) FROM audit")?,
        })
    }

    // The audit log's signed checkpoints and archive.

    pub(super) fn checkpoint_put_impl(&self, c: &Checkpoint) -> Result<()> {
        self.exec(
            "INSERT INTO audit_checkpoints(seq, hash, ts, kid, public_key, sig)
             VALUES ($1,$2,$3,$4,$5,$6)
             ON CONFLICT (seq) DO UPDATE SET hash = EXCLUDED.hash, ts = EXCLUDED.ts,
               kid = EXCLUDED.kid, public_key = EXCLUDED.public_key, sig = EXCLUDED.sig",
            &[&c.seq, &c.hash, &c.ts, &c.kid, &c.public_key, &c.sig],
        )?;
        Ok(())
    }

    pub(super) fn checkpoint_latest_impl(&self, at_most: i64) -> Result<Option<Checkpoint>> {
        self.row(
            "SELECT seq, hash, ts, kid, public_key, sig FROM audit_checkpoints
             WHERE seq <= $1 ORDER BY seq DESC LIMIT 1",
            &[&at_most],
            |r| {
                Ok(Checkpoint {
                    seq: col(r, 0)?,
                    hash: col(r, 1)?,
                    ts: col(r, 2)?,
                    kid: col(r, 3)?,
                    public_key: col(r, 4)?,
                    sig: col(r, 5)?,
                })
            },
        )
    }

    pub(super) fn audit_first_impl(&self) -> Result<i64> {
        self.int("SELECT COALESCE(MIN(seq), 0)::BIGINT FROM audit", &[])
    }

    pub(super) fn audit_delete_before_impl(&self, before: i64) -> Result<i64> {
        let n = self.exec("DELETE FROM audit WHERE seq < $1", &[&before])?;
        // The head this batch knows is read again on the next append.
        if let Some(b) = self.batch() {
            b.set_head(None);
        }
        self.exec(
            "DELETE FROM audit_checkpoints WHERE seq < $1",
            &[&(before - 1)],
        )?;
        Ok(count(n))
    }
}
