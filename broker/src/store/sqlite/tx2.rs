//! The SQLite queries of the dashboard (owners, passwords, setup links,
//! sessions, second factors, audit search, usage), the gateway (upstreams,
//! connections, pending authorizations) and registrations, called by the
//! [`Tx`] impl in `sqlite/tx.rs`, as `postgres/tx2.rs` is for PostgreSQL.

use rusqlite::{OptionalExtension, params};

use super::conn::{SqliteTx, audit_row, db_err, upstream_row};
use crate::model::AuditRecord;
use crate::store::{AuditQuery, ConnectionRec, Invite, PendingAuth, Result, Tx};
use crate::store::{UpstreamRec, UsageCount, UsageSlot, WebSession};

impl SqliteTx<'_> {
    pub(super) fn owner_delete_impl(&self, name: &str) -> Result<bool> {
        for sql in [
            "DELETE FROM web_sessions WHERE owner = ?1",
            "DELETE FROM owner_setup WHERE owner = ?1",
            "DELETE FROM owner_passwords WHERE owner = ?1",
            "DELETE FROM owner_mfa WHERE owner = ?1",
            // What the owner set up for the gateway and for registrations
            // goes too: a later owner of the same name inherits none of it.
            "DELETE FROM upstream_connections WHERE owner = ?1",
            "DELETE FROM oauth_pending WHERE owner = ?1",
            "DELETE FROM upstreams WHERE owner = ?1",
            "DELETE FROM resource_invites WHERE owner = ?1",
            "DELETE FROM auth_codes WHERE owner = ?1",
            "DELETE FROM stepups WHERE owner = ?1",
        ] {
            self.exec(sql, params![name])?;
        }
        let n = self.exec("DELETE FROM owners WHERE name = ?1", params![name])?;
        Ok(n > 0)
    }

    pub(super) fn mfa_get_impl(&self, owner: &str) -> Result<Option<String>> {
        self.value_opt(
            "SELECT data FROM owner_mfa WHERE owner = ?1",
            params![owner],
        )
    }

    pub(super) fn mfa_put_impl(&self, owner: &str, data: &str, now: i64) -> Result<()> {
        self.exec("INSERT INTO owner_mfa (owner, data, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(owner) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at", params![owner, data, now])?;
        Ok(())
    }

    pub(super) fn mfa_delete_impl(&self, owner: &str) -> Result<bool> {
        let n = self.exec("DELETE FROM owner_mfa WHERE owner = ?1", params![owner])?;
        Ok(n > 0)
    }

    pub(super) fn owner_password_impl(&self, owner: &str) -> Result<Option<String>> {
        self.value_opt(
            "SELECT phc FROM owner_passwords WHERE owner = ?1",
            params![owner],
        )
    }

    pub(super) fn owner_password_set_impl(
        &mut self,
        owner: &str,
        phc: &str,
        now: i64,
    ) -> Result<()> {
        self.owner_ensure(owner, now)?;
        self.exec(
            "INSERT OR REPLACE INTO owner_passwords(owner, phc, updated_at) VALUES (?1,?2,?3)",
            params![owner, phc, now],
        )?;
        // A new password ends every session signed in with the old one, and
        // every setup link still out (a leaked one must not reset it again).
        for sql in [
            "DELETE FROM web_sessions WHERE owner = ?1",
            "DELETE FROM owner_setup WHERE owner = ?1",
        ] {
            self.exec(sql, params![owner])?;
        }
        Ok(())
    }

    pub(super) fn setup_put_impl(&self, hash: &str, owner: &str, expires_at: i64) -> Result<()> {
        self.exec("DELETE FROM owner_setup WHERE owner = ?1", params![owner])?;
        self.exec(
            "INSERT INTO owner_setup(hash, owner, expires_at) VALUES (?1,?2,?3)",
            params![hash, owner, expires_at],
        )?;
        Ok(())
    }

    pub(super) fn setup_get_impl(&self, hash: &str, now: i64) -> Result<Option<String>> {
        self.value_opt(
            "SELECT owner FROM owner_setup WHERE hash = ?1 AND expires_at > ?2",
            params![hash, now],
        )
    }

    pub(super) fn setup_delete_impl(&self, hash: &str) -> Result<()> {
        self.exec("DELETE FROM owner_setup WHERE hash = ?1", params![hash])?;
        Ok(())
    }

    pub(super) fn session_put_impl(&self, s: &WebSession) -> Result<()> {
        self.exec("INSERT INTO web_sessions(id_hash, owner, csrf, created_at, expires_at) VALUES (?1,?2,?3,?4,?5)", params![s.id_hash, s.owner, s.csrf, s.created_at, s.expires_at])?;
        // Forget sessions that ended long ago.
        self.exec(
            "DELETE FROM web_sessions WHERE expires_at < ?1",
            params![s.created_at],
        )?;
        Ok(())
    }

    pub(super) fn session_get_impl(&self, id_hash: &str, now: i64) -> Result<Option<WebSession>> {
        self.conn
            .prepare_cached(
                "SELECT id_hash, owner, csrf, created_at, expires_at FROM web_sessions WHERE id_hash = ?1 AND expires_at > ?2",
            )
            .map_err(db_err)?
            .query_row(params![id_hash, now], |r| {
                Ok(WebSession {
                    id_hash: r.get(0)?,
                    owner: r.get(1)?,
                    csrf: r.get(2)?,
                    created_at: r.get(3)?,
                    expires_at: r.get(4)?,
                })
            })
            .optional()
            .map_err(db_err)
    }

    pub(super) fn sessions_end_others_impl(&self, owner: &str, keep: &str) -> Result<()> {
        self.exec(
            "DELETE FROM web_sessions WHERE owner = ?1 AND id_hash <> ?2",
            params![owner, keep],
        )?;
        Ok(())
    }

    pub(super) fn session_delete_impl(&self, id_hash: &str) -> Result<()> {
        self.exec(
            "DELETE FROM web_sessions WHERE id_hash = ?1",
            params![id_hash],
        )?;
        Ok(())
    }

    pub(super) fn audit_search_impl(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        self.rows(
            "SELECT seq, ts, owner, event, detail, prev, hash FROM audit
             WHERE owner = ?1 AND seq < ?2
               AND (?3 IS NULL OR event = ?3)
               AND (?4 IS NULL OR (json_valid(detail) AND json_extract(detail, '$.agent') = ?4))
               AND (?5 IS NULL OR ts >= ?5)
               AND (?6 IS NULL OR ts < ?6)
               AND (?8 IS NULL OR (json_valid(detail) AND json_extract(detail, '$.gid') = ?8))
             ORDER BY seq DESC LIMIT ?7",
            params![
                q.owner,
                q.before.unwrap_or(i64::MAX),
                q.event,
                q.agent,
                q.since,
                q.until,
                q.limit,
                q.gid
            ],
            audit_row,
        )
    }

    pub(super) fn usage_counts_impl(&self, owner: &str) -> Result<Vec<UsageCount>> {
        self.rows(
            "SELECT json_extract(detail, '$.agent') AS agent,
                    COALESCE(SUM(json_extract(detail, '$.decision') = 'allow'), 0),
                    COALESCE(SUM(json_extract(detail, '$.decision') = 'deny'), 0),
                    MAX(ts)
             FROM audit WHERE owner = ?1 AND event = 'usage' AND json_valid(detail)
             GROUP BY agent ORDER BY agent",
            params![owner],
            |r| {
                Ok(UsageCount {
                    agent: r.get(0)?,
                    allowed: r.get(1)?,
                    refused: r.get(2)?,
                    last: r.get(3)?,
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
            "SELECT json_extract(detail, '$.agent') AS agent, (ts - ?2) / ?3 AS slot,
                    COALESCE(SUM(json_extract(detail, '$.decision') = 'allow'), 0),
                    COALESCE(SUM(json_extract(detail, '$.decision') = 'deny'), 0)
             FROM audit WHERE owner = ?1 AND event = 'usage' AND ts >= ?2 AND json_valid(detail)
             GROUP BY agent, slot ORDER BY agent, slot",
            params![owner, since, width.max(1)],
            |r| {
                Ok(UsageSlot {
                    agent: r.get(0)?,
                    slot: r.get(1)?,
                    allowed: r.get(2)?,
                    refused: r.get(3)?,
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
                 PARTITION BY json_extract(detail, '$.agent') ORDER BY seq DESC) AS n
               FROM audit WHERE owner = ?1 AND event = 'usage' AND json_valid(detail)
                 AND json_extract(detail, '$.decision') = 'deny')
             WHERE n <= ?2 ORDER BY seq DESC",
            params![owner, per_agent],
            audit_row,
        )
    }

    pub(super) fn upstream_put_impl(&self, u: &UpstreamRec) -> Result<()> {
        self.exec(
            "INSERT OR REPLACE INTO upstreams(name, owner, rules, sealed, created_at, rotated_at)
                 VALUES (?1,?2,?3,?4,?5,?6)",
            params![
                u.name,
                u.owner,
                u.rules,
                u.sealed,
                u.created_at,
                u.rotated_at
            ],
        )?;
        Ok(())
    }

    pub(super) fn upstream_get_impl(&self, name: &str) -> Result<Option<UpstreamRec>> {
        Ok(self
            .rows(
                "SELECT name, owner, rules, sealed, created_at, rotated_at FROM upstreams WHERE name = ?1",
                params![name],
                upstream_row,
            )?
            .pop())
    }

    pub(super) fn upstream_list_impl(&self, owner: &str) -> Result<Vec<UpstreamRec>> {
        self.rows(
            "SELECT name, owner, rules, sealed, created_at, rotated_at FROM upstreams
             WHERE owner = ?1 ORDER BY name",
            params![owner],
            upstream_row,
        )
    }

    pub(super) fn upstream_all_impl(&self) -> Result<Vec<UpstreamRec>> {
        self.rows(
            "SELECT name, owner, rules, sealed, created_at, rotated_at FROM upstreams ORDER BY name",
            params![],
            upstream_row,
        )
    }

    pub(super) fn upstream_delete_impl(&self, name: &str) -> Result<bool> {
        let n = self.exec("DELETE FROM upstreams WHERE name = ?1", params![name])?;
        Ok(n > 0)
    }

    pub(super) fn connection_put_impl(&self, c: &ConnectionRec) -> Result<()> {
        self.exec(
            "INSERT OR REPLACE INTO upstream_connections(upstream, owner, id, status, sealed,
                   access_expires_at, connected_at, updated_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
            params![
                c.upstream,
                c.owner,
                c.id,
                c.status,
                c.sealed,
                c.access_expires_at,
                c.connected_at,
                c.updated_at
            ],
        )?;
        Ok(())
    }

    pub(super) fn connection_get_impl(&self, upstream: &str) -> Result<Option<ConnectionRec>> {
        Ok(self
            .rows(
                "SELECT upstream, owner, id, status, sealed, access_expires_at, connected_at,
                   updated_at FROM upstream_connections WHERE upstream = ?1",
                params![upstream],
                |r| {
                    Ok(ConnectionRec {
                        upstream: r.get(0)?,
                        owner: r.get(1)?,
                        id: r.get(2)?,
                        status: r.get(3)?,
                        sealed: r.get(4)?,
                        access_expires_at: r.get(5)?,
                        connected_at: r.get(6)?,
                        updated_at: r.get(7)?,
                    })
                },
            )?
            .pop())
    }

    pub(super) fn connection_delete_impl(&self, upstream: &str) -> Result<bool> {
        let n = self.exec(
            "DELETE FROM upstream_connections WHERE upstream = ?1",
            params![upstream],
        )?;
        Ok(n > 0)
    }

    pub(super) fn oauth_pending_put_impl(&self, p: &PendingAuth) -> Result<()> {
        // Expired ones go first: the table holds only live authorizations.
        self.exec(
            "DELETE FROM oauth_pending WHERE expires_at <= ?1",
            params![p.created_at],
        )?;
        self.exec(
            "INSERT INTO oauth_pending(state_hash, owner, upstream, sealed, created_at, expires_at,
                   browser) VALUES (?1,?2,?3,?4,?5,?6,?7)",
            params![
                p.state_hash,
                p.owner,
                p.upstream,
                p.sealed,
                p.created_at,
                p.expires_at,
                p.browser
            ],
        )?;
        Ok(())
    }

    pub(super) fn oauth_pending_take_impl(&self, state_hash: &str) -> Result<Option<PendingAuth>> {
        let found = self
            .rows(
                "SELECT state_hash, owner, upstream, sealed, created_at, expires_at, browser
                 FROM oauth_pending WHERE state_hash = ?1",
                params![state_hash],
                |r| {
                    Ok(PendingAuth {
                        state_hash: r.get(0)?,
                        owner: r.get(1)?,
                        upstream: r.get(2)?,
                        sealed: r.get(3)?,
                        created_at: r.get(4)?,
                        expires_at: r.get(5)?,
                        browser: r.get(6)?,
                    })
                },
            )?
            .pop();
        if found.is_some() {
            self.exec(
                "DELETE FROM oauth_pending WHERE state_hash = ?1",
                params![state_hash],
            )?;
        }
        Ok(found)
    }

    pub(super) fn invite_put_impl(&self, inv: &Invite) -> Result<()> {
        self.exec(
            "INSERT INTO resource_invites(hash, owner, audience, shared, expires_at) \
                 VALUES (?1,?2,?3,?4,?5)",
            params![
                inv.hash,
                inv.owner,
                inv.audience,
                inv.shared,
                inv.expires_at
            ],
        )?;
        Ok(())
    }

    pub(super) fn invite_take_impl(&self, hash: &str, now: i64) -> Result<Option<Invite>> {
        // Expired invitations go with any use.
        self.exec(
            "DELETE FROM resource_invites WHERE expires_at <= ?1",
            params![now],
        )?;
        let found = self
            .conn
            .prepare_cached(
                "SELECT owner, expires_at, audience, shared FROM resource_invites WHERE hash = ?1",
            )
            .map_err(db_err)?
            .query_row(params![hash], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, bool>(3)?,
                ))
            })
            .optional()
            .map_err(db_err)?;
        let Some((owner, expires_at, audience, shared)) = found else {
            return Ok(None);
        };
        self.exec(
            "DELETE FROM resource_invites WHERE hash = ?1",
            params![hash],
        )?;
        Ok(Some(Invite {
            hash: hash.to_owned(),
            owner,
            audience,
            shared,
            expires_at,
        }))
    }
}
