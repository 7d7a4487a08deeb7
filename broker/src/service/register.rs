//! Resource servers that register themselves at start: the owner makes a
//! one-time invitation (`protonpass-broker resource invite`), the server sends
//! it as a bearer token to `POST /resource/register` with its audience and
//! scope catalog, and gets its client credentials back.
//!
//! An invitation is a 32-byte random token of which only the SHA-256 is kept;
//! it works once (taken in the registering transaction) and expires (1 hour by
//! default, at most 1 day). A failed registration leaves it unspent. The same
//! owner registering an audience again replaces its scope catalog and its
//! client secret (the server registers at every start and uses the answer);
//! another owner's audience is `invalid_target`.

use protonpass_agent::{Error, Reason, Result, random_id};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::Broker;
use super::admin::Registered;
use crate::audit::secret_hash;
use crate::config::check_audience;
use crate::model::Resource;
use crate::scope_catalog::{self, JsonScope};
use crate::store::{self, Invite};

/// Token prefix, so that a leaked invitation is recognisable.
pub const INVITE_PREFIX: &str = "rri_";
/// Longest invitation lifetime, seconds.
pub const MAX_INVITE_TTL: i64 = 86_400;
/// Shortest invitation lifetime, seconds.
pub const MIN_INVITE_TTL: i64 = 60;

/// A new invitation (the token is shown once).
#[derive(Clone, Serialize)]
pub struct Invitation {
    /// The bearer token for `POST /resource/register`.
    pub registration_token: String,
    /// Where to send it.
    pub registration_endpoint: String,
    /// The owner the resource will belong to.
    pub owner: String,
    /// The one audience it registers.
    pub audience: String,
    /// Whether that resource is shared.
    pub shared: bool,
    /// Unix seconds after which it no longer works.
    pub expires_at: i64,
}

impl std::fmt::Debug for Invitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invitation")
            .field("owner", &self.owner)
            .field("registration_token", &"<redacted>")
            .finish()
    }
}

/// The body of `POST /resource/register`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The audience (the resource's URL).
    pub resource: String,
    /// Its scope catalog (may be empty: no catalog).
    #[serde(default)]
    pub scopes: Vec<JsonScope>,
    /// An API serving many owners.
    #[serde(default)]
    pub shared: bool,
}

fn refused() -> Error {
    Error::InvalidToken {
        reason: Reason::Other,
        message: "unknown, spent or expired registration token".into(),
    }
}

impl Broker {
    /// Make an invitation for `owner` to register (or update) exactly
    /// `audience`, shared or not, valid `ttl` seconds. The server holding it
    /// chooses nothing else: not another of the owner's resources, not
    /// another audience.
    pub async fn resource_invite(
        &self,
        owner: &str,
        audience: &str,
        shared: bool,
        ttl: i64,
    ) -> Result<Invitation> {
        check_audience(audience)?;
        let now = self.clock.now();
        if !(MIN_INVITE_TTL..=MAX_INVITE_TTL).contains(&ttl) {
            return Err(Error::InvalidRequest(format!(
                "an invitation lives {MIN_INVITE_TTL} s to {MAX_INVITE_TTL} s (1m to 1d)"
            )));
        }
        let token = format!("{INVITE_PREFIX}{}", random_id(self.rng.as_ref(), 32)?);
        let inv = Invite {
            hash: secret_hash(&token),
            owner: owner.to_owned(),
            audience: audience.to_owned(),
            shared,
            expires_at: now + ttl,
        };
        let out = Invitation {
            registration_token: token,
            registration_endpoint: format!("{}/resource/register", self.issuer),
            owner: owner.to_owned(),
            audience: audience.to_owned(),
            shared,
            expires_at: inv.expires_at,
        };
        store::write(&self.store, move |tx| {
            tx.owner_ensure(&inv.owner, now)?;
            if tx
                .resources_for_audience(&inv.audience)?
                .iter()
                .any(|r| r.owner != inv.owner)
            {
                return Err(Error::InvalidTarget(format!(
                    "the audience {} is registered by another owner",
                    inv.audience
                )));
            }
            tx.invite_put(&inv)?;
            tx.audit_append(
                now,
                &inv.owner,
                "resource_invite",
                &json!({"expires_at": inv.expires_at, "audience": inv.audience, "shared": inv.shared})
                    .to_string(),
            )?;
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// `POST /resource/register` with the invitation `token` and the parsed body.
    pub async fn resource_register(&self, token: &str, req: RegisterRequest) -> Result<Registered> {
        let now = self.clock.now();
        check_audience(&req.resource)?;
        let scopes = scope_catalog::from_json(req.scopes)
            .map_err(|e| Error::InvalidScope(format!("scope entry {}: {}", e.line, e.message)))?;
        if !token.starts_with(INVITE_PREFIX) || token.len() > 128 {
            return Err(refused());
        }
        let hash = secret_hash(token);
        let client_secret = random_id(self.rng.as_ref(), 32)?;
        let new_id = format!("rs_{}", random_id(self.rng.as_ref(), 12)?);
        let (audience, shared) = (req.resource, req.shared);
        let secret_h = secret_hash(&client_secret);
        let r = store::write(&self.store, move |tx| {
            let inv = tx.invite_take(&hash, now)?.ok_or_else(refused)?;
            if !bool::from(inv.hash.as_bytes().ct_eq(hash.as_bytes())) {
                return Err(refused());
            }
            // The invitation names the one audience (and sharing) it
            // registers; a refusal rolls back, leaving the invitation unspent.
            if audience != inv.audience {
                return Err(Error::InvalidTarget(format!(
                    "this registration token is for {}, not {audience}",
                    inv.audience
                )));
            }
            if shared != inv.shared {
                return Err(Error::InvalidRequest(format!(
                    "this registration token registers the resource with shared = {}",
                    inv.shared
                )));
            }
            let existing = tx.resources_for_audience(&audience)?;
            if existing.iter().any(|o| o.owner != inv.owner) {
                return Err(Error::InvalidTarget(format!(
                    "the audience {audience} is registered by another owner"
                )));
            }
            let (r, event) = match existing.into_iter().next() {
                Some(mut mine) => {
                    mine.secret_hash = secret_h;
                    mine.scopes = scopes;
                    mine.shared = shared;
                    tx.resource_replace(&mine)?;
                    (mine, "resource_update")
                }
                None => {
                    let r = Resource {
                        client_id: new_id,
                        owner: inv.owner.clone(),
                        audience,
                        secret_hash: secret_h,
                        created_at: now,
                        shared,
                        scopes,
                        accept_bearer: false,
                    };
                    tx.resource_put(&r)?;
                    (r, "resource_add")
                }
            };
            super::audit_resource(tx, now, event, &r, Some("registration"))?;
            Ok(r)
        })
        .await?;
        Ok(Registered {
            client_id: r.client_id,
            client_secret,
            audience: r.audience,
            shared: r.shared,
            scopes: r.scopes.scopes,
        })
    }
}
