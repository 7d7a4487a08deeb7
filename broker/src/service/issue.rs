//! Minting tokens inside a transaction: access tokens (JWT, recorded by `jti`)
//! and refresh tokens (opaque, stored as a SHA-256 hash).

use std::sync::Arc;

use protonpass_agent::{AccessTokenClaims, Error, Random, ScopeSet, SigningKey, random_id};

use crate::audit::secret_hash;
use crate::model::{Grant, TokenKind, TokenRec, TokenStatus};
use crate::store::{Result, Tx};

/// Prefix of refresh tokens (lets revocation tell them from JWTs at a glance).
pub const REFRESH_PREFIX: &str = "rt_";

/// What minting needs.
#[derive(Debug, Clone)]
pub struct Mint {
    /// Issuer URL.
    pub issuer: String,
    /// Signing key.
    pub key: Arc<SigningKey>,
    /// Randomness.
    pub rng: Arc<dyn Random>,
    /// Access token lifetime.
    pub access_ttl: i64,
    /// Now.
    pub now: i64,
}

/// An access token just minted.
#[derive(Clone)]
pub struct Minted {
    /// The JWT.
    pub token: String,
    /// Its id.
    pub jti: String,
    /// Its expiry.
    pub exp: i64,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("jti", &self.jti)
            .field("exp", &self.exp)
            .finish()
    }
}

/// An access token recorded and not yet signed ([`Mint::access`]).
pub struct Unsigned {
    claims: AccessTokenClaims,
    extra: serde_json::Map<String, serde_json::Value>,
    key: Arc<SigningKey>,
}

impl std::fmt::Debug for Unsigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsigned")
            .field("jti", &self.claims.jti)
            .field("exp", &self.claims.exp)
            .finish()
    }
}

impl Unsigned {
    /// Its id and expiry, with the token still empty: what a response is
    /// built from inside the transaction ([`Unsigned::sign_into`] fills it).
    pub fn pending(&self) -> Minted {
        Minted {
            token: String::new(),
            jti: self.claims.jti.clone(),
            exp: self.claims.exp,
        }
    }

    /// With claims beyond the standard ones (a step-up's one-time token:
    /// `authorization_details`, `one_time`).
    pub fn with_claims(mut self, extra: serde_json::Map<String, serde_json::Value>) -> Self {
        self.extra = extra;
        self
    }

    /// Sign it.
    pub fn sign(self) -> Minted {
        Minted {
            token: self.key.sign_with(&self.claims, self.extra),
            jti: self.claims.jti,
            exp: self.claims.exp,
        }
    }

    /// Sign it into the response built from [`Unsigned::pending`].
    pub fn sign_into(
        self,
        mut t: protonpass_agent::wire::TokenResponse,
    ) -> protonpass_agent::wire::TokenResponse {
        t.access_token = self.sign().token;
        t
    }
}

impl Mint {
    /// Record an access token of grant `g` for `aud` with `scope`, expiring
    /// no later than `cap` (and never after the grant). The token is signed
    /// by [`Unsigned::sign`], once the transaction has committed where the
    /// caller can wait, so that the store's single writer does not spend its
    /// time signing.
    pub fn access(
        &self,
        tx: &mut dyn Tx,
        g: &Grant,
        scope: &str,
        aud: &str,
        cap: i64,
    ) -> Result<Unsigned> {
        let jkt = g
            .jkt
            .clone()
            .ok_or_else(|| Error::InvalidGrant("the grant is not bound to a key".into()))?;
        // A grant made before another owner registered its audience issues
        // nothing more for it.
        super::audience_status(tx, &g.owner, aud)?;
        let exp = (self.now + self.access_ttl).min(cap).min(g.expires_at);
        if exp <= self.now {
            return Err(Error::InvalidGrant("the grant has expired".into()));
        }
        let jti = random_id(self.rng.as_ref(), 16)?;
        let claims = AccessTokenClaims {
            iss: self.issuer.clone(),
            sub: g.owner.clone(),
            aud: aud.to_owned(),
            client_id: g.agent.clone(),
            iat: self.now,
            exp,
            jti: jti.clone(),
            scope: scope.to_owned(),
            jkt: jkt.clone(),
            gid: g.gid.clone(),
            act_sub: g.agent.clone(),
        };
        tx.token_put(&TokenRec {
            jti,
            gid: g.gid.clone(),
            owner: g.owner.clone(),
            kind: TokenKind::Access,
            client_id: g.agent.clone(),
            scope: scope.to_owned(),
            aud: Some(aud.to_owned()),
            iat: self.now,
            exp,
            jkt,
            hash: None,
            status: TokenStatus::Active,
        })?;
        Ok(Unsigned {
            claims,
            extra: serde_json::Map::new(),
            key: self.key.clone(),
        })
    }

    /// Mint and record a refresh token of grant `g`; it lives as long as the grant.
    pub fn refresh(&self, tx: &mut dyn Tx, g: &Grant) -> Result<(String, String)> {
        let jkt = g
            .jkt
            .clone()
            .ok_or_else(|| Error::InvalidGrant("the grant is not bound to a key".into()))?;
        let token = format!("{REFRESH_PREFIX}{}", random_id(self.rng.as_ref(), 32)?);
        let jti = random_id(self.rng.as_ref(), 16)?;
        tx.token_put(&TokenRec {
            jti: jti.clone(),
            gid: g.gid.clone(),
            owner: g.owner.clone(),
            kind: TokenKind::Refresh,
            client_id: g.agent.clone(),
            scope: g.scope.clone(),
            aud: None,
            iat: self.now,
            exp: g.expires_at,
            jkt,
            hash: Some(secret_hash(&token)),
            status: TokenStatus::Active,
        })?;
        Ok((token, jti))
    }
}

/// The scopes to issue: the requested ones negotiated against `bound`, or all
/// of `bound` when none are requested. Nothing left is `invalid_scope`.
pub fn negotiate(bound: &str, requested: Option<&str>) -> Result<String> {
    let bound = ScopeSet::parse(bound)?;
    match requested {
        None => Ok(bound.to_string()),
        Some(r) => {
            let got = bound.negotiate(&ScopeSet::parse(r)?);
            if got.is_empty() {
                Err(Error::InvalidScope(
                    "none of the requested scopes is granted".into(),
                ))
            } else {
                Ok(got.to_string())
            }
        }
    }
}

/// The audience to issue for: the requested one if the bound allows it, else
/// the bound's first. Outside the bound is `invalid_target`.
pub fn pick_audience(bound: &[String], requested: Option<&str>) -> Result<String> {
    match requested {
        Some(r) if bound.iter().any(|a| a == r) => Ok(r.to_owned()),
        Some(_) => Err(Error::InvalidTarget(
            "the audience is outside the grant".into(),
        )),
        None => bound
            .first()
            .cloned()
            .ok_or_else(|| Error::InvalidTarget("the grant names no audience".into())),
    }
}

/// `token_type` `Bearer` for a token bound to no key.
pub fn bearer_type(
    mut t: protonpass_agent::wire::TokenResponse,
    bearer: bool,
) -> protonpass_agent::wire::TokenResponse {
    if bearer {
        "Bearer".clone_into(&mut t.token_type);
    }
    t
}
