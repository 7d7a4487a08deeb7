//! The end of things an operator set up: a resource server's credential is
//! rotated (`resource rotate`), an owner is removed (`owner remove`).

use protonpass_agent::{Error, Result, random_id};
use serde::Serialize;
use serde_json::json;

use super::admin::Registered;
use super::{Broker, revoke_grant};
use crate::audit::secret_hash;
use crate::model::GrantStatus;
use crate::store;

/// What `owner remove` did.
#[derive(Debug, Clone, Serialize)]
pub struct OwnerRemoved {
    /// The owner.
    pub owner: String,
    /// Its live grants, revoked by this call (`--force`).
    pub revoked_grants: Vec<String>,
    /// Its resource servers, whose credentials stopped working.
    pub removed_resources: Vec<String>,
}

impl Broker {
    /// A new secret for one of `owner`'s resource servers (by client id or
    /// audience): the client id stays, the old secret stops working at once.
    pub async fn resource_rotate(&self, owner: &str, id: &str) -> Result<Registered> {
        let now = self.clock.now();
        let mut r = self.resource_find(owner, id).await?;
        let secret = random_id(self.rng.as_ref(), 32)?;
        r.secret_hash = secret_hash(&secret);
        let out = Registered {
            client_id: r.client_id.clone(),
            client_secret: secret,
            audience: r.audience.clone(),
            shared: r.shared,
            scopes: r.scopes.scopes.clone(),
        };
        store::write(&self.store, move |tx| {
            // Removed in between: nothing to rotate, and nothing recreated.
            if !tx.resource_delete(&r.client_id)? {
                return Ok(Err(Error::InvalidRequest(format!(
                    "the resource server {} was just removed",
                    r.client_id
                ))));
            }
            tx.resource_put(&r)?;
            tx.audit_append(
                now,
                &r.owner,
                "resource_rotate",
                &json!({"client_id": r.client_id, "audience": r.audience}).to_string(),
            )?;
            Ok(Ok(()))
        })
        .await??;
        Ok(out)
    }

    /// Remove an owner. Refused while it has live grants (waiting for
    /// enrollment or active) unless `force`, which revokes them first; its
    /// resource servers, dashboard password and sessions go with it.
    pub async fn owner_remove(&self, owner: &str, force: bool) -> Result<OwnerRemoved> {
        let now = self.clock.now();
        let owner = owner.to_owned();
        let (out, seq) = store::write(&self.store, move |tx| {
            if !tx.owners()?.iter().any(|o| o.name == owner) {
                return Ok(Err(Error::InvalidRequest(format!(
                    "no owner is named {owner}; `protonpass-broker owner list` shows them"
                ))));
            }
            let live: Vec<_> = tx
                .grants_of(&owner, None)?
                .into_iter()
                .filter(|g| g.status != GrantStatus::Revoked && g.expires_at > now)
                .collect();
            if !live.is_empty() && !force {
                return Ok(Err(Error::InvalidRequest(format!(
                    "the owner {owner} has {} live grant(s); revoke them first, or pass --force to revoke them and remove the owner",
                    live.len()
                ))));
            }
            let mut seq = 0;
            let mut revoked = Vec::new();
            for mut g in live {
                seq = revoke_grant(tx, &mut g, now, "owner_remove")?;
                revoked.push(g.gid);
            }
            let mut removed = Vec::new();
            for r in tx.resources_of(&owner)? {
                if tx.resource_delete(&r.client_id)? {
                    removed.push(r.client_id);
                }
            }
            tx.owner_delete(&owner)?;
            tx.audit_append(
                now,
                &owner,
                "owner_remove",
                &json!({"owner": owner, "forced": force, "revoked_grants": revoked,
                        "removed_resources": removed})
                .to_string(),
            )?;
            Ok(Ok((
                OwnerRemoved {
                    owner: owner.clone(),
                    revoked_grants: revoked,
                    removed_resources: removed,
                },
                seq,
            )))
        })
        .await??;
        self.feed_advanced(seq);
        Ok(out)
    }
}
