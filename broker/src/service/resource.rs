//! Endpoints for agents and resource servers: revocation (RFC 7009),
//! introspection (RFC 7662), usage reports, and the revocation feed.

use protonpass_agent::wire::{Confirmation, IntrospectionResponse, RevocationFeed, UsageReport};
use protonpass_agent::{Error, Result, b64};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::issue::REFRESH_PREFIX;
use super::{Broker, Params, grant_live, revoke_grant, revoke_token};
use crate::audit::secret_hash;
use crate::model::{Resource, TokenKind, TokenStatus};
use crate::store;

/// Most uses in one usage report.
pub const MAX_USES: usize = 1000;

/// Client credentials as presented (Basic header or form).
#[derive(Clone, Default)]
pub struct ClientCreds {
    /// Client id.
    pub id: String,
    /// Secret.
    pub secret: String,
}

impl std::fmt::Debug for ClientCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCreds").field("id", &self.id).finish()
    }
}

/// Read `client_secret_basic` (RFC 6749 section 2.3.1) or `client_secret_post`.
/// Using both at once is `invalid_request`.
pub fn client_creds(authorization: Option<&str>, p: &Params) -> Result<ClientCreds> {
    let basic = authorization
        .and_then(|h| {
            h.strip_prefix("Basic ")
                .or_else(|| h.strip_prefix("basic "))
        })
        .map(str::trim);
    let post = p.get("client_secret");
    match (basic, post) {
        (Some(_), Some(_)) => Err(Error::InvalidRequest(
            "use one client authentication method".into(),
        )),
        (Some(b), None) => {
            let raw = base64_std_decode(b)
                .ok_or_else(|| Error::InvalidClient("malformed Basic credentials".into()))?;
            let text = String::from_utf8(raw)
                .map_err(|_| Error::InvalidClient("malformed Basic credentials".into()))?;
            let (id, secret) = text
                .split_once(':')
                .ok_or_else(|| Error::InvalidClient("malformed Basic credentials".into()))?;
            let dec = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.to_string())
            };
            Ok(ClientCreds {
                id: dec(id).unwrap_or_default(),
                secret: dec(secret).unwrap_or_default(),
            })
        }
        (None, Some(s)) => Ok(ClientCreds {
            id: p
                .req("client_id")
                .map_err(|_| Error::InvalidClient("client_id is missing".into()))?
                .to_owned(),
            secret: s.to_owned(),
        }),
        (None, None) => Err(Error::InvalidClient(
            "client authentication is required".into(),
        )),
    }
}

fn base64_std_decode(s: &str) -> Option<Vec<u8>> {
    // Standard alphabet with padding, as HTTP Basic uses.
    let url = s.trim_end_matches('=').replace('+', "-").replace('/', "_");
    b64::decode(&url)
}

/// The resource server `c` names, its secret checked (in constant time)
/// within `tx`: a caller that goes on to write authenticates in the same
/// transaction, one store round trip instead of two.
pub(crate) fn resource_by_creds(tx: &mut dyn store::Tx, c: &ClientCreds) -> Result<Resource> {
    let bad = || Error::InvalidClient("unknown client or wrong secret".into());
    let r = tx.resource_get(&c.id)?.ok_or_else(bad)?;
    if !bool::from(
        secret_hash(&c.secret)
            .as_bytes()
            .ct_eq(r.secret_hash.as_bytes()),
    ) {
        return Err(bad());
    }
    Ok(r)
}

impl Broker {
    /// Authenticate a resource server.
    pub async fn authenticate_resource(&self, c: &ClientCreds) -> Result<Resource> {
        let c = c.clone();
        store::read(&self.store, move |tx| resource_by_creds(tx, &c)).await
    }

    /// `POST /oauth/revoke`: the agent names itself by `client_id`; a token of
    /// another client, or an unknown one, is left alone (and answered 200).
    pub async fn revoke_request(&self, p: &Params) -> Result<()> {
        let now = self.clock.now();
        let token = p.req("token")?.to_owned();
        let client_id = p
            .get("client_id")
            .ok_or_else(|| {
                Error::InvalidClient("public clients name themselves with client_id".into())
            })?
            .to_owned();
        // RFC 7009 section 2.1: the hint only speeds up the lookup, and a hint
        // the server does not know is ignored (tokens are told apart by form).
        let claims = if token.starts_with(REFRESH_PREFIX) {
            None
        } else {
            match self.verify_own_token_any_binding(&token, now) {
                Ok(c) => Some(c),
                // Unknown, forged or expired: nothing to revoke (RFC 7009 section 2.2).
                Err(_) => return Ok(()),
            }
        };
        let seq = store::write(&self.store, move |tx| match claims {
            None => {
                let Some(rec) = tx.token_by_hash(&secret_hash(&token))? else {
                    return Ok(0);
                };
                if rec.kind != TokenKind::Refresh || rec.client_id != client_id {
                    return Ok(0);
                }
                let Some(mut g) = tx.grant_get(&rec.gid)? else {
                    return Ok(0);
                };
                if g.status == crate::model::GrantStatus::Revoked {
                    return Ok(0);
                }
                revoke_grant(tx, &mut g, now, "agent")
            }
            Some(c) => {
                let Some(mut rec) = tx.token_get(&c.jti)? else {
                    return Ok(0);
                };
                if rec.client_id != client_id || rec.status == TokenStatus::Revoked {
                    return Ok(0);
                }
                revoke_token(tx, &mut rec, now, "agent")
            }
        })
        .await?;
        self.feed_advanced(seq);
        Ok(())
    }

    /// `POST /oauth/introspect` for an authenticated resource server.
    pub async fn introspect(&self, rs: &Resource, p: &Params) -> Result<IntrospectionResponse> {
        let now = self.clock.now();
        let token = p.req("token")?.to_owned();
        let claims = if token.starts_with(REFRESH_PREFIX) {
            None
        } else {
            match self.verify_own_token_any_binding(&token, now) {
                Ok(c) => Some(c),
                Err(_) => {
                    return Ok(self.introspected(rs, None, now, IntrospectionResponse::default()));
                }
            }
        };
        // A step-up's one-time token is spent by its first introspection.
        let one_time = claims.is_some()
            && protonpass_agent::jws::parse(&token, protonpass_agent::token::MAX_TOKEN_LEN)
                .is_ok_and(|j| j.claims.get("one_time") == Some(&serde_json::Value::Bool(true)));
        let (issuer, rs2) = (self.issuer.clone(), rs.clone());
        let look = move |tx: &mut dyn store::Tx| {
            let inactive = IntrospectionResponse::default();
            let rec = match &claims {
                Some(c) => tx.token_get(&c.jti)?,
                None => tx.token_by_hash(&secret_hash(&token))?,
            };
            let Some(rec) = rec else { return Ok(inactive) };
            let Some(g) = tx.grant_get(&rec.gid)? else {
                return Ok(inactive);
            };
            let aud_ok = match rec.kind {
                TokenKind::Access => rec.aud.as_deref() == Some(rs2.audience.as_str()),
                TokenKind::Refresh => g.audiences.contains(&rs2.audience),
            };
            if rec.status != TokenStatus::Active
                || !grant_live(&g, now)
                || rec.exp <= now
                || !aud_ok
                || (g.owner != rs2.owner && !rs2.shared)
            {
                return Ok(inactive);
            }
            if one_time {
                super::stepup::redeem_one_time(
                    tx,
                    &rec.jti,
                    super::stepup::Redeem::Verify,
                    &rs2.client_id,
                    now,
                )?;
            }
            Ok(IntrospectionResponse {
                active: true,
                scope: Some(rec.scope),
                client_id: Some(rec.client_id),
                sub: Some(rec.owner),
                aud: rec.aud.or(Some(rs2.audience)),
                iss: Some(issuer),
                exp: Some(rec.exp),
                iat: Some(rec.iat),
                jti: Some(rec.jti),
                token_type: Some(match rec.kind {
                    TokenKind::Access if rec.jkt.is_empty() => "Bearer".into(),
                    TokenKind::Access => "DPoP".into(),
                    TokenKind::Refresh => "refresh_token".into(),
                }),
                // A bearer token (a client without DPoP) is bound to no key.
                cnf: (!rec.jkt.is_empty()).then_some(Confirmation { jkt: rec.jkt }),
                gid: Some(rec.gid),
            })
        };
        let resp = if one_time {
            store::write(&self.store, look).await?
        } else {
            store::read(&self.store, look).await?
        };
        Ok(self.introspected(rs, resp.jti.clone(), now, resp))
    }

    fn introspected(
        &self,
        rs: &Resource,
        jti: Option<String>,
        now: i64,
        resp: IntrospectionResponse,
    ) -> IntrospectionResponse {
        let (owner, text) = (
            rs.owner.clone(),
            json!({"resource": rs.client_id, "jti": jti, "active": resp.active}).to_string(),
        );
        if !store::write_detached(&self.store, move |tx| {
            tx.audit_append(now, &owner, "introspect", &text)
                .map(|_| ())
        }) {
            self.metrics.audit_dropped();
        }
        resp
    }

    /// `POST /audit/usage`: one audit record per use, durable before the answer,
    /// for the resource's owner. A use names its agent (`agent`, `gid`) when
    /// its `jti` is a token of that owner; any other use (no token, a forged
    /// one, another owner's) is recorded unattributed, and nothing of another
    /// owner's token is revealed.
    pub async fn usage(&self, rs: &Resource, report: UsageReport) -> Result<usize> {
        let now = self.clock.now();
        if report.uses.len() > MAX_USES {
            return Err(Error::InvalidRequest(format!(
                "at most {MAX_USES} uses per report"
            )));
        }
        for u in &report.uses {
            if u.jti.as_ref().is_some_and(|j| j.len() > 256)
                || u.method.len() > 16
                || u.path.len() > 2048
                || !matches!(u.decision.as_str(), "allow" | "deny")
                || u.reason.as_ref().is_some_and(|r| r.len() > 1200)
                || u.code.as_ref().is_some_and(|c| c.len() > 64)
                || u.scope.as_ref().is_some_and(|c| c.len() > 512)
            {
                return Err(Error::InvalidRequest(
                    "a usage entry is too large, or its decision is not allow or deny".into(),
                ));
            }
        }
        let n = report.uses.len();
        let rs = rs.clone();
        store::write(&self.store, move |tx| {
            for mut u in report.uses {
                // Reporters older than `code` sent a denial's code as `reason`.
                if u.decision == "deny" && u.code.is_none() {
                    u.code = u.reason.take();
                }
                let token = match &u.jti {
                    Some(j) => tx.token_get(j)?.filter(|t| t.owner == rs.owner),
                    None => None,
                };
                let detail = json!({"resource": rs.client_id, "aud": rs.audience, "jti": u.jti,
                                    "agent": token.as_ref().map(|t| &t.client_id),
                                    "gid": token.as_ref().map(|t| &t.gid),
                                    "method": u.method, "path": u.path, "decision": u.decision,
                                    "code": u.code, "reason": u.reason, "scope": u.scope, "at": u.at});
                tx.audit_append(now, &rs.owner, "usage", &detail.to_string())?;
            }
            Ok(())
        })
        .await?;
        Ok(n)
    }

    /// A page of the revocation feed.
    pub async fn feed_page(&self, after: i64, limit: i64) -> Result<RevocationFeed> {
        let now = self.clock.now();
        let limit = limit.clamp(1, 1000);
        let revocations = store::read(&self.store, move |tx| {
            tx.revocations_after(after, now, limit)
        })
        .await?;
        let next = revocations.last().map_or(after, |r| r.seq);
        Ok(RevocationFeed { revocations, next })
    }
}
