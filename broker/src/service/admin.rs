//! What the owner does: create pre-authorized grants, list grants, revoke, and
//! register resource servers. Used by the CLI (and later the dashboard).

use protonpass_agent::{Error, Result, ScopeSet, random_id};
use serde::Serialize;
use serde_json::json;

use super::{Broker, audience_status, audit_resource, revoke_grant, revoke_token};
use crate::audit::secret_hash;
use crate::config::{MAX_TTL, MIN_GRANT_TTL};
use crate::model::{DeviceStatus, Grant, GrantStatus, Resource, TokenStatus};
use crate::scope_catalog::{ScopeCatalog, ScopeInfo};
use crate::store;

/// A new pre-authorized grant and its one-time enrollment code.
#[derive(Clone, Serialize)]
pub struct Enrollment {
    /// The grant id.
    pub grant_id: String,
    /// The one-time code the agent redeems.
    pub enrollment_code: String,
    /// When the code expires.
    pub code_expires_at: i64,
    /// The agent.
    pub agent: String,
    /// Scopes.
    pub scope: String,
    /// Audiences.
    pub audiences: Vec<String>,
    /// Grant lifetime from redemption, seconds.
    pub ttl: i64,
}

impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrollment")
            .field("grant_id", &self.grant_id)
            .field("enrollment_code", &"<redacted>")
            .finish()
    }
}

/// A registered resource server with its secret (shown once).
#[derive(Clone, Serialize)]
pub struct Registered {
    /// Client id.
    pub client_id: String,
    /// The secret.
    pub client_secret: String,
    /// Audience.
    pub audience: String,
    /// Whether every owner may grant it.
    pub shared: bool,
    /// The scopes it defines (empty: no catalog).
    pub scopes: Vec<ScopeInfo>,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// What a revocation did.
#[derive(Debug, Clone, Serialize)]
pub struct Revoked {
    /// Grant ids revoked by this call.
    pub grants: Vec<String>,
    /// Token ids revoked one by one by this call.
    pub tokens: Vec<String>,
    /// Live tokens (access and refresh) of the grants revoked by this call:
    /// revoked with them.
    pub covered_tokens: usize,
    /// Ids that were already revoked: nothing changed for them.
    pub already_revoked: Vec<String>,
    /// Approvals the agent had not collected yet, cancelled.
    pub cancelled_approvals: usize,
}

impl Revoked {
    fn none() -> Revoked {
        Revoked {
            grants: vec![],
            tokens: vec![],
            covered_tokens: 0,
            already_revoked: vec![],
            cancelled_approvals: 0,
        }
    }
}

/// The live tokens of a grant, which its revocation covers.
fn live_tokens(tx: &mut dyn store::Tx, gid: &str, now: i64) -> Result<usize> {
    Ok(tx
        .tokens_of_grant(gid)?
        .iter()
        .filter(|t| t.status != TokenStatus::Revoked && t.exp > now)
        .count())
}

fn valid_audience(a: &str) -> bool {
    !a.is_empty() && a.len() <= 512 && !a.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Broker {
    /// Create a pre-authorized grant for `agent`.
    pub async fn grant_create(
        &self,
        owner: &str,
        agent: &str,
        scope: &str,
        audiences: &[String],
        ttl: i64,
        budgets: Vec<super::budget::BudgetSpec>,
    ) -> Result<Enrollment> {
        let now = self.clock.now();
        if agent.is_empty() || agent.len() > 128 || agent.chars().any(char::is_control) {
            return Err(Error::InvalidRequest(
                "the agent name must be 1-128 printable characters".into(),
            ));
        }
        let scope = ScopeSet::parse(scope)?.to_string();
        if audiences.is_empty() || !audiences.iter().all(|a| valid_audience(a)) {
            return Err(Error::InvalidTarget(
                "name at least one audience (a URI without spaces)".into(),
            ));
        }
        if !(MIN_GRANT_TTL..=MAX_TTL).contains(&ttl) {
            return Err(Error::InvalidRequest(
                "a grant lives from 1 hour to 30 days".into(),
            ));
        }
        let code = format!("ec_{}", random_id(self.rng.as_ref(), 24)?);
        let g = Grant {
            gid: random_id(self.rng.as_ref(), 16)?,
            owner: owner.to_owned(),
            agent: agent.to_owned(),
            scope: scope.clone(),
            audiences: audiences.to_vec(),
            jkt: None,
            status: GrantStatus::Enrolling,
            origin: "pre-authorized".into(),
            created_at: now,
            ttl,
            expires_at: now + self.cfg.enrollment_ttl,
            enroll_hash: Some(secret_hash(&code)),
            revoked_at: None,
        };
        let out = Enrollment {
            grant_id: g.gid.clone(),
            enrollment_code: code,
            code_expires_at: g.expires_at,
            agent: g.agent.clone(),
            scope,
            audiences: g.audiences.clone(),
            ttl,
        };
        store::write(&self.store, move |tx| {
            for aud in &g.audiences {
                audience_status(tx, &g.owner, aud)?;
            }
            super::catalog::check(tx, &g.audiences, &g.scope)?;
            tx.owner_ensure(&g.owner, now)?;
            tx.grant_put(&g)?;
            tx.audit_append(
                now,
                &g.owner,
                "grant_create",
                &json!({"gid": g.gid, "agent": g.agent, "scope": g.scope, "audiences": g.audiences, "ttl": g.ttl}).to_string(),
            )?;
            for spec in &budgets {
                super::budget::put_budget(tx, &g.owner, &spec.to_budget(&g, now)?, now)?;
            }
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// How `aud` stands for `owner` (see [`audience_status`]).
    pub async fn audience_status_of(
        &self,
        owner: &str,
        aud: &str,
    ) -> Result<super::AudienceStatus> {
        let (owner, aud) = (owner.to_owned(), aud.to_owned());
        store::read(&self.store, move |tx| Ok(audience_status(tx, &owner, &aud))).await?
    }

    /// The owner's grants.
    pub async fn grant_list(&self, owner: &str) -> Result<Vec<Grant>> {
        let owner = owner.to_owned();
        store::read(&self.store, move |tx| tx.grants_of(&owner, None)).await
    }

    /// Revoke a grant or a token of `owner` by id. Another owner's ids are
    /// refused exactly like unknown ones.
    pub async fn revoke_id(&self, owner: &str, id: &str) -> Result<Revoked> {
        let now = self.clock.now();
        let (owner, id) = (owner.to_owned(), id.to_owned());
        let (out, seq) = store::write(&self.store, move |tx| {
            let not_found =
                || Error::InvalidRequest("no grant or token of this owner has this id".into());
            // Another owner's id: audited, and answered like an unknown one.
            let refused = |tx: &mut dyn store::Tx| -> Result<(Result<Revoked>, i64)> {
                tx.audit_append(
                    now,
                    &owner,
                    "revoke_refused",
                    &json!({"id": id}).to_string(),
                )?;
                Ok((Err(not_found()), 0))
            };
            if let Some(mut g) = tx.grant_get(&id)? {
                if g.owner != owner {
                    return refused(tx);
                }
                let mut r = Revoked::none();
                if g.status == GrantStatus::Revoked {
                    r.already_revoked.push(g.gid);
                    return Ok((Ok(r), 0));
                }
                r.covered_tokens = live_tokens(tx, &g.gid, now)?;
                let seq = revoke_grant(tx, &mut g, now, "owner")?;
                r.grants.push(g.gid);
                return Ok((Ok(r), seq));
            }
            if let Some(mut t) = tx.token_get(&id)? {
                if t.owner != owner {
                    return refused(tx);
                }
                let mut r = Revoked::none();
                if t.status == TokenStatus::Revoked {
                    r.already_revoked.push(t.jti);
                    return Ok((Ok(r), 0));
                }
                let seq = revoke_token(tx, &mut t, now, "owner")?;
                r.tokens.push(t.jti);
                return Ok((Ok(r), seq));
            }
            Ok((Err(not_found()), 0))
        })
        .await?;
        self.feed_advanced(seq);
        out
    }

    /// Revoke every grant of one agent.
    pub async fn revoke_agent(&self, owner: &str, agent: &str) -> Result<Revoked> {
        let now = self.clock.now();
        let (owner, agent) = (owner.to_owned(), agent.to_owned());
        let (out, seq) = store::write(&self.store, move |tx| {
            let mut r = Revoked::none();
            let mut seq = 0;
            for mut g in tx.grants_of(&owner, Some(&agent))? {
                if g.status == GrantStatus::Revoked {
                    r.already_revoked.push(g.gid);
                } else {
                    r.covered_tokens += live_tokens(tx, &g.gid, now)?;
                    seq = revoke_grant(tx, &mut g, now, "owner")?;
                    r.grants.push(g.gid);
                }
            }
            // An approval the agent has not collected yet is cut off too: it
            // would otherwise become a fresh grant at the agent's next poll.
            for mut d in tx.devices_approved(now)? {
                if d.client_id == agent && d.owner.as_deref() == Some(owner.as_str()) {
                    d.status = DeviceStatus::Denied;
                    tx.device_put(&d)?;
                    r.cancelled_approvals += 1;
                    tx.audit_append(
                        now,
                        &owner,
                        "deny",
                        &serde_json::json!({"agent": agent, "request": d.id, "by": "owner", "after": "approval"})
                            .to_string(),
                    )?;
                }
            }
            Ok((r, seq))
        })
        .await?;
        self.feed_advanced(seq);
        Ok(out)
    }

    /// Register a resource server for `audience` (`shared`: any owner may
    /// grant it). An audience another owner registered is refused.
    /// `scopes`: the scope catalog it defines (empty: none).
    pub async fn resource_add(
        &self,
        owner: &str,
        audience: &str,
        shared: bool,
        scopes: ScopeCatalog,
    ) -> Result<Registered> {
        let now = self.clock.now();
        if !valid_audience(audience) {
            return Err(Error::InvalidTarget(
                "the audience must be a URI without spaces".into(),
            ));
        }
        let out = Registered {
            client_id: format!("rs_{}", random_id(self.rng.as_ref(), 12)?),
            client_secret: random_id(self.rng.as_ref(), 32)?,
            audience: audience.to_owned(),
            shared,
            scopes: scopes.scopes.clone(),
        };
        let r = Resource {
            client_id: out.client_id.clone(),
            owner: owner.to_owned(),
            audience: audience.to_owned(),
            secret_hash: secret_hash(&out.client_secret),
            created_at: now,
            shared,
            scopes,
            accept_bearer: false,
        };
        store::write(&self.store, move |tx| {
            let existing = tx.resources_for_audience(&r.audience)?;
            if existing.iter().any(|other| other.owner != r.owner) {
                return Err(Error::InvalidTarget(format!(
                    "the audience {} is registered by another owner",
                    r.audience
                )));
            }
            // One credential per audience: a second would be a secret nobody
            // remembers to remove.
            if let Some(mine) = existing.first() {
                return Err(Error::InvalidRequest(format!(
                    "the audience {} is already registered as {}; see `protonpass-broker resource show {}`, \
                     or remove it first to register a new credential",
                    r.audience, mine.client_id, mine.client_id
                )));
            }
            tx.owner_ensure(&r.owner, now)?;
            tx.resource_put(&r)?;
            audit_resource(tx, now, "resource_add", &r, None)?;
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// The resource servers `owner` registered.
    pub async fn resource_list(&self, owner: &str) -> Result<Vec<Resource>> {
        let owner = owner.to_owned();
        store::read(&self.store, move |tx| tx.resources_of(&owner)).await
    }

    /// One of `owner`'s resource servers, by client id or audience. Another
    /// owner's answers as unknown.
    pub async fn resource_find(&self, owner: &str, id: &str) -> Result<Resource> {
        let (owner, id) = (owner.to_owned(), id.to_owned());
        store::read(&self.store, move |tx| {
            tx.resources_of(&owner)?
                .into_iter()
                .find(|r| r.client_id == id || r.audience == id)
                .ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "no resource server of this owner is {id}; `protonpass-broker resource list` shows them"
                    ))
                })
        })
        .await
    }

    /// Remove one of `owner`'s resource servers (by client id or audience):
    /// its credential stops working at once.
    pub async fn resource_remove(&self, owner: &str, id: &str) -> Result<Resource> {
        let now = self.clock.now();
        let r = self.resource_find(owner, id).await?;
        let r2 = r.clone();
        store::write(&self.store, move |tx| {
            if tx.resource_delete(&r2.client_id)? {
                tx.audit_append(
                    now,
                    &r2.owner,
                    "resource_remove",
                    &json!({"client_id": r2.client_id, "audience": r2.audience}).to_string(),
                )?;
            }
            Ok(())
        })
        .await?;
        Ok(r)
    }
}
