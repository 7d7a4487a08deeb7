//! The PostgreSQL queries of the dashboard (owners, sessions, audit search,
//! usage), the gateway (upstreams, connections, pending authorizations) and
//! registrations, called by the [`Tx`](crate::store::Tx) impl in `postgres/tx.rs`.
//!
//! SQLite's `json_valid(detail)` / `json_extract(detail, '$.x')` are
//! `pp_json(detail) ->> 'x'` here: `pp_json` (migration 1) is NULL for a
//! detail that is not JSON, so such a record matches no JSON filter.

use super::conn::{PgTx, audit_row, col};
use crate::model::AuditRecord;
use crate::store::{AuditQuery, ConnectionRec, Invite, PendingAuth, UpstreamRec};
use crate::store::{Result, UsageCount, UsageSlot, WebSession};

impl PgTx<'_> {
    pub(super) fn owner_delete_impl(&self, name: &str) -> Result<bool> {
        for sql in [
            "DELETE FROM web_sessions WHERE owner = $1",
            "DELETE FROM owner_setup WHERE owner = $1",
            "DELETE FROM owner_passwords WHERE owner = $1",
            "DELETE FROM owner_mfa WHERE owner = $1",
            // What the owner set up for the gateway and for registrations
            // goes too: a later owner of the same name inherits none of it.
            "DELETE FROM upstream_connections WHERE owner = $1",
            "DELETE FROM oauth_pending WHERE owner = $1",
            "DELETE FROM upstreams WHERE owner = $1",
            "DELETE FROM resource_invites WHERE owner = $1",
            "DELETE FROM auth_codes WHERE owner = $1",
            "DELETE FROM stepups WHERE owner = $1",
        ] {
            self.exec(sql, &[&name])?;
        }
        Ok(self.exec("DELETE FROM owners WHERE name = $1", &[&name])? > 0)
    }

    pub(super) fn owner_password_set_impl(&self, owner: &str, phc: &str, now: i64) -> Result<()> {
        self.exec(
            "INSERT INTO owner_passwords(owner, phc, updated_at) VALUES ($1,$2,$3)
             ON CONFLICT (owner) DO UPDATE SET phc = EXCLUDED.phc, updated_at = EXCLUDED.updated_at",
            &[&owner, &phc, &now],
        )?;
        // A new password ends every session signed in with the old one, and
        // every setup link still out.
        self.exec("DELETE FROM web_sessions WHERE owner = $1", &[&owner])?;
        self.exec("DELETE FROM owner_setup WHERE owner = $1", &[&owner])?;
        Ok(())
    }

    pub(super) fn setup_put_impl(&self, hash: &str, owner: &str, expires_at: i64) -> Result<()> {
        self.exec("DELETE FROM owner_setup WHERE owner = $1", &[&owner])?;
        self.exec(
            "INSERT INTO owner_setup(hash, owner, expires_at) VALUES ($1,$2,$3)",
            &[&hash, &owner, &expires_at],
        )?;
        Ok(())
    }

    pub(super) fn session_put_impl(&self, s: &WebSession) -> Result<()> {
        self.exec(
            "INSERT INTO web_sessions(id_hash, owner, csrf, created_at, expires_at)
             VALUES ($1,$2,$3,$4,$5)",
            &[&s.id_hash, &s.owner, &s.csrf, &s.created_at, &s.expires_at],
        )?;
        // Forget sessions that ended long ago.
        self.exec(
            "DELETE FROM web_sessions WHERE expires_at < $1",
            &[&s.created_at],
        )?;
        Ok(())
    }

    pub(super) fn session_get_impl(&self, id_hash: &str, now: i64) -> Result<Option<WebSession>> {
        self.row(
            "SELECT id_hash, owner, csrf, created_at, expires_at FROM web_sessions
             WHERE id_hash = $1 AND expires_at > $2",
            &[&id_hash, &now],
            |r| {
                Ok(WebSession {
                    id_hash: col(r, 0)?,
                    owner: col(r, 1)?,
                    csrf: col(r, 2)?,
                    created_at: col(r, 3)?,
                    expires_at: col(r, 4)?,
                })
            },
        )
    }

    pub(super) fn audit_search_impl(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        self.rows(
            "SELECT seq, ts, owner, event, detail, prev, hash FROM audit
             WHERE owner = $1 AND seq < $2
               AND ($3::TEXT IS NULL OR event = $3)
               AND ($4::TEXT IS NULL OR pp_json(detail) ->> 'agent' = $4)
               AND ($5::BIGINT IS NULL OR ts >= $5)
               AND ($6::BIGINT IS NULL OR ts < $6)
               AND ($8::TEXT IS NULL OR pp_json(detail) ->> 'gid' = $8)
             ORDER BY seq DESC LIMIT $7",
            &[
                &q.owner,
                &q.before.unwrap_or(i64::MAX),
                &q.event,
                &q.agent,
                &q.since,
                &q.until,
                &q.limit,
                &q.gid,
            ],
            audit_row,
        )
    }

    pub(super) fn usage_counts_impl(&self, owner: &str) -> Result<Vec<UsageCount>> {
        self.rows(
            "SELECT pp_json(detail) ->> 'agent' AS agent,
                    COUNT(*) FILTER (WHERE pp_json(detail) ->> 'decision' = 'allow'),
                    COUNT(*) FILTER (WHERE pp_json(detail) ->> 'decision' = 'deny'),
                    MAX(ts)
             FROM audit WHERE owner = $1 AND event = 'usage' AND pp_json(detail) IS NOT NULL
             GROUP BY agent ORDER BY agent",
            &[&owner],
            |r| {
                Ok(UsageCount {
                    agent: col(r, 0)?,
                    allowed: col(r, 1)?,
                    refused: col(r, 2)?,
                    last: col(r, 3)?,
                })
            },
        )
    }

    pub(super) fn usage_series_impl(
        &self,
        owner: &str,
        since: i64,
        width: i64,
    ) -> Result<Vec<UsageSlot>> {
        self.rows(
            "SELECT pp_json(detail) ->> 'agent' AS agent, (ts - $2) / $3 AS slot,
                    COUNT(*) FILTER (WHERE pp_json(detail) ->> 'decision' = 'allow'),
                    COUNT(*) FILTER (WHERE pp_json(detail) ->> 'decision' = 'deny')
             FROM audit WHERE owner = $1 AND event = 'usage' AND ts >= $2
               AND pp_json(detail) IS NOT NULL
             GROUP BY agent, slot ORDER BY agent, slot",
            &[&owner, &since, &width.max(1)],
            |r| {
                Ok(UsageSlot {
                    agent: col(r, 0)?,
                    slot: col(r, 1)?,
                    allowed: col(r, 2)?,
                    refused: col(r, 3)?,
                })
            },
        )
    }

    pub(super) fn usage_refusals_impl(
        &self,
        owner: &str,
        per_agent: i64,
    ) -> Result<Vec<AuditRecord>> {
        self.rows(
            "SELECT seq, ts, owner, event, detail, prev, hash FROM (
               SELECT *, ROW_NUMBER() OVER (
                 PARTITION BY pp_json(detail) ->> 'agent' ORDER BY seq DESC) AS n
               FROM audit WHERE owner = $1 AND event = 'usage'
                 AND pp_json(detail) ->> 'decision' = 'deny') refused
             WHERE n <= $2 ORDER BY seq DESC",
            &[&owner, &per_agent],
            audit_row,
        )
    }

    pub(super) fn upstream_put_impl(&self, u: &UpstreamRec) -> Result<()> {
        self.exec(
            "INSERT INTO upstreams(name, owner, rules, sealed, created_at, rotated_at)
             VALUES ($1,$2,$3,$4,$5,$6)
             ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, rules = EXCLUDED.rules,
               sealed = EXCLUDED.sealed, created_at = EXCLUDED.created_at,
               rotated_at = EXCLUDED.rotated_at",
            &[
                &u.name,
                &u.owner,
                &u.rules,
                &u.sealed,
                &u.created_at,
                &u.rotated_at,
            ],
        )?;
        Ok(())
    }

    /// The upstreams matching `cond` (a fixed condition of this file), by name.
    pub(super) fn upstreams_where(
        &self,
        cond: &'static str,
        p: super::conn::Params<'_>,
    ) -> Result<Vec<UpstreamRec>> {
        self.rows(
            &format!(
                "SELECT name, owner, rules, sealed, created_at, rotated_at FROM upstreams
                 WHERE {cond} ORDER BY name"
            ),
            p,
            |r| {
                Ok(UpstreamRec {
                    name: col(r, 0)?,
                    owner: col(r, 1)?,
                    rules: col(r, 2)?,
                    sealed: col(r, 3)?,
                    created_at: col(r, 4)?,
                    rotated_at: col(r, 5)?,
                })
            },
        )
    }

    pub(super) fn connection_put_impl(&self, c: &ConnectionRec) -> Result<()> {
        self.exec(
            "INSERT INTO upstream_connections(upstream, owner, id, status, sealed,
               access_expires_at, connected_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)
             ON CONFLICT (upstream) DO UPDATE SET owner = EXCLUDED.owner, id = EXCLUDED.id,
               status = EXCLUDED.status, sealed = EXCLUDED.sealed,
               access_expires_at = EXCLUDED.access_expires_at,
               connected_at = EXCLUDED.connected_at, updated_at = EXCLUDED.updated_at",
            &[
                &c.upstream,
                &c.owner,
                &c.id,
                &c.status,
                &c.sealed,
                &c.access_expires_at,
                &c.connected_at,
                &c.updated_at,
            ],
        )?;
        Ok(())
    }

    pub(super) fn connection_get_impl(&self, upstream: &str) -> Result<Option<ConnectionRec>> {
        self.row(
            "SELECT upstream, owner, id, status, sealed, access_expires_at, connected_at,
               updated_at FROM upstream_connections WHERE upstream = $1",
            &[&upstream],
            |r| {
                Ok(ConnectionRec {
                    upstream: col(r, 0)?,
                    owner: col(r, 1)?,
                    id: col(r, 2)?,
                    status: col(r, 3)?,
                    sealed: col(r, 4)?,
                    access_expires_at: col(r, 5)?,
                    connected_at: col(r, 6)?,
                    updated_at: col(r, 7)?,
                })
            },
        )
    }

    pub(super) fn oauth_pending_put_impl(&self, p: &PendingAuth) -> Result<()> {
        // Expired ones go first: the table holds only live authorizations.
        self.exec(
            "DELETE FROM oauth_pending WHERE expires_at <= $1",
            &[&p.created_at],
        )?;
        self.exec(
            "INSERT INTO oauth_pending(state_hash, owner, upstream, sealed, created_at, expires_at,
               browser) VALUES ($1,$2,$3,$4,$5,$6,$7)",
            &[
                &p.state_hash,
                &p.owner,
                &p.upstream,
                &p.sealed,
                &p.created_at,
                &p.expires_at,
                &p.browser,
            ],
        )?;
        Ok(())
    }

    pub(super) fn oauth_pending_take_impl(&self, state_hash: &str) -> Result<Option<PendingAuth>> {
        // Read and delete in one statement: single use.
        self.row(
            "DELETE FROM oauth_pending WHERE state_hash = $1
             RETURNING state_hash, owner, upstream, sealed, created_at, expires_at, browser",
            &[&state_hash],
            |r| {
                Ok(PendingAuth {
                    state_hash: col(r, 0)?,
                    owner: col(r, 1)?,
                    upstream: col(r, 2)?,
                    sealed: col(r, 3)?,
                    created_at: col(r, 4)?,
                    expires_at: col(r, 5)?,
                    browser: col(r, 6)?,
                })
            },
        )
    }

    pub(super) fn invite_take_impl(&self, hash: &str, now: i64) -> Result<Option<Invite>> {
        // Expired invitations go with any use.
        self.exec(
            "DELETE FROM resource_invites WHERE expires_at <= $1",
            &[&now],
        )?;
        self.row(
            "DELETE FROM resource_invites WHERE hash = $1
             RETURNING hash, owner, audience, shared, expires_at",
            &[&hash],
            |r| {
                Ok(Invite {
                    hash: col(r, 0)?,
                    owner: col(r, 1)?,
                    audience: col(r, 2)?,
                    shared: col(r, 3)?,
                    expires_at: col(r, 4)?,
                })
            },
        )
    }
}
