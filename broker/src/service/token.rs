//! The token endpoint: pre-authorized code, device code, refresh (rotating,
//! with reuse detection), token exchange and CIBA polls (`stepup.rs`), every
//! one with a DPoP proof.

use std::sync::Arc;

use protonpass_agent::wire::{TOKEN_TYPE_ACCESS, TokenResponse};
use protonpass_agent::{
    Error, ProofCheck, Result, TokenValidation, VerifiedProof, json, jws, verify_access_token,
};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::issue::{Mint, negotiate, pick_audience};
use super::proof::Unrecorded;
use super::{Broker, catalog, grant_live, revoke_grant};
use crate::audit::secret_hash;
use crate::model::{Grant, GrantStatus, TokenKind, TokenStatus};
use crate::protocol::token_request::{Refused, Secret, SubjectKind, TokenRequest};
use crate::store::{self, TokenLookup};

/// A flow's answer inside its transaction: the outer error rolls the
/// transaction back; the inner one is answered after the state change commits
/// (a slow_down poll, a reused refresh token revoking its grant).
type Committed = std::result::Result<TokenResponse, Error>;

pub(super) fn eq_ct(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn response(
    access: &super::issue::Minted,
    refresh: Option<String>,
    scope: String,
    aud: String,
    gid: &str,
    grant_exp: i64,
    now: i64,
    exchange: bool,
) -> TokenResponse {
    TokenResponse {
        access_token: access.token.clone(),
        token_type: "DPoP".into(),
        expires_in: access.exp - now,
        scope,
        refresh_token: refresh,
        issued_token_type: exchange.then(|| TOKEN_TYPE_ACCESS.to_owned()),
        grant_id: Some(gid.to_owned()),
        audience: Some(aud),
        grant_expires_at: Some(grant_exp),
    }
}

/// The answer to a grant's redemption (enrollment code, authorization code)
/// or refresh: its new access and refresh tokens, `token_type` Bearer for a
/// bearer client.
pub(super) fn grant_response(
    access: &super::issue::Minted,
    refresh: String,
    scope: String,
    aud: String,
    g: &Grant,
    now: i64,
    bearer: bool,
) -> TokenResponse {
    let r = response(
        access,
        Some(refresh),
        scope,
        aud,
        &g.gid,
        g.expires_at,
        now,
        false,
    );
    super::issue::bearer_type(r, bearer)
}

/// A grant's first tokens (enrollment, device grant, authorization code): a
/// refresh token and an access token for `scope` on `aud`, audited as
/// `event` with the members of `detail` beside the tokens', and the answer.
#[allow(clippy::too_many_arguments)]
pub(super) fn first_tokens(
    mint: &Mint,
    tx: &mut dyn store::Tx,
    g: &Grant,
    scope: String,
    aud: String,
    event: &str,
    detail: serde_json::Value,
    bearer: bool,
) -> Result<TokenResponse> {
    let (refresh, rjti) = mint.refresh(tx, g)?;
    let access = mint.access(tx, g, &scope, &aud, g.expires_at)?.sign();
    let mut audit = json!({"gid": g.gid, "agent": g.agent, "jti": access.jti,
        "refresh_jti": rjti, "scope": scope, "aud": aud, "exp": access.exp,
        "grant_exp": g.expires_at});
    if let (Some(m), serde_json::Value::Object(more)) = (audit.as_object_mut(), detail) {
        m.extend(more);
    }
    tx.audit_append(mint.now, &g.owner, event, &audit.to_string())?;
    Ok(grant_response(
        &access, refresh, scope, aud, g, mint.now, bearer,
    ))
}

/// What a token exchange asks for beyond its subject.
struct Ask {
    scope: Option<String>,
    audience: Option<String>,
    lifetime: Option<i64>,
}

impl Broker {
    fn mint(&self, now: i64) -> Mint {
        Mint {
            issuer: self.issuer.clone(),
            key: self.keyring().current.clone(),
            rng: self.rng.clone(),
            access_ttl: self.cfg.access_ttl,
            now,
        }
    }

    /// Verify the token request's DPoP proof (nonce when configured, replay
    /// always; [`Unrecorded::once`] records it where replicas share the store).
    pub fn token_proof(&self, dpop: &[String], now: i64, source: &str) -> Result<Unrecorded> {
        let url = format!("{}/oauth/token", self.issuer);
        let accepts = |n: &str| self.nonces.accepts(n, now);
        let check = ProofCheck {
            method: "POST",
            url: &url,
            access_token: None,
            expected_jkt: None,
            nonce: if self.cfg.dpop_nonce {
                Some(&accepts)
            } else {
                None
            },
        };
        self.proofs.verify(dpop, &check, now, Some(source))
    }

    /// Handle one token request, as [`TokenRequest::parse`] read it (a
    /// [`Refused::Form`] is answered by the caller without coming here).
    pub async fn token(
        self: &Arc<Self>,
        req: std::result::Result<TokenRequest, Refused>,
        dpop: &[String],
        source: &str,
    ) -> Result<TokenResponse> {
        let now = self.clock.now();
        let grant_type = match &req {
            Ok(r) => Some(r.grant_type().to_owned()),
            Err(r) => r.grant_type().map(str::to_owned),
        };
        let result = self.token_inner(req, dpop, now, source).await;
        match &result {
            Ok(t) => {
                self.metrics.issued(grant_type.as_deref().unwrap_or("-"));
                tracing::debug!(
                    grant_type = grant_type.as_deref().unwrap_or("-"),
                    gid = t.grant_id.as_deref().unwrap_or("-"),
                    scope = %t.scope,
                    "token issued"
                );
            }
            Err(e) => {
                self.metrics.error(e.code());
                if !matches!(
                    e,
                    Error::AuthorizationPending | Error::SlowDown | Error::UseDpopNonce
                ) {
                    self.audit_rejected(
                        "-",
                        "token",
                        e,
                        json!({"grant_type": grant_type, "source": source}),
                    );
                }
            }
        }
        result
    }

    async fn token_inner(
        self: &Arc<Self>,
        req: std::result::Result<TokenRequest, Refused>,
        dpop: &[String],
        now: i64,
        source: &str,
    ) -> Result<TokenResponse> {
        // The request's own faults come before the proof's, the grant's
        // parameters after it (see `Refused`).
        let req = match req {
            Err(Refused::Form(error) | Refused::Request { error, .. }) => return Err(error),
            req => req,
        };
        // A third-party client that sends no DPoP header at all may redeem a
        // code or refresh for a bearer token, where the resource's owner
        // allows it (`service::authcode`); every other request is proved.
        let maybe_bearer = dpop.is_empty()
            && matches!(
                req,
                Ok(TokenRequest::AuthorizationCode { .. } | TokenRequest::Refresh { .. })
            );
        let proof = if maybe_bearer {
            None
        } else {
            Some(self.token_proof(dpop, now, source)?.once(self, now).await?)
        };
        // What a proof-less request is answered when a proof is needed after
        // all (the request has no DPoP header, so computing it touches no
        // replay state).
        let missing = || {
            self.token_proof(dpop, now, source)
                .err()
                .unwrap_or_else(|| Error::InvalidRequest("send a DPoP proof".into()))
        };
        let proved = |p: Option<VerifiedProof>| p.ok_or_else(missing);
        let mint = self.mint(now);
        match req.map_err(Refused::into_error)? {
            TokenRequest::PreAuthorized {
                code,
                scope,
                audience,
                client_id,
            } => {
                self.pre_authorized(&code, scope, audience, client_id, proved(proof)?, mint)
                    .await?
            }
            TokenRequest::DeviceCode {
                device_code,
                client_id,
            } => {
                self.device_poll(&device_code, client_id, proved(proof)?, mint)
                    .await?
            }
            TokenRequest::Refresh {
                refresh_token,
                scope,
                audience,
            } => {
                let proof = proof.ok_or_else(missing);
                self.refresh(&refresh_token, scope, audience, proof, mint)
                    .await?
            }
            TokenRequest::AuthorizationCode {
                code,
                redirect_uri,
                client_id,
                code_verifier,
                audience,
            } => {
                self.authorization_code(
                    &code,
                    client_id,
                    redirect_uri,
                    &code_verifier,
                    audience,
                    proof,
                    mint,
                )
                .await?
            }
            TokenRequest::Exchange {
                subject_token,
                subject_kind,
                scope,
                audience,
                lifetime,
            } => {
                let ask = Ask {
                    scope,
                    audience,
                    lifetime,
                };
                self.exchange(subject_token, subject_kind, ask, proved(proof)?, mint)
                    .await?
            }
            TokenRequest::Ciba { auth_req_id } => {
                self.ciba_poll(&auth_req_id, proved(proof)?, mint).await?
            }
        }
    }

    async fn pre_authorized(
        &self,
        code: &Secret,
        scope_req: Option<String>,
        aud_req: Option<String>,
        client_id: Option<String>,
        proof: VerifiedProof,
        mint: Mint,
    ) -> Result<Committed> {
        let hash = secret_hash(code.expose());
        let now = mint.now;
        store::write(&self.store, move |tx| {
            let Some(mut g) = tx.grant_by_enroll_hash(&hash)? else {
                return Err(Error::InvalidGrant(
                    "unknown or already used enrollment code".into(),
                ));
            };
            // The owner named the agent: a redeemer calling itself something else
            // would hold tokens it cannot revoke by its own client_id (RFC 7009
            // leaves another client's tokens alone). The code stays unspent.
            if let Some(c) = client_id.as_deref()
                && c != g.agent
            {
                return Err(Error::InvalidGrant(format!(
                    "this enrollment code was issued for the agent {:?}: redeem it with that client_id",
                    g.agent
                )));
            }
            if g.status != GrantStatus::Enrolling {
                return Err(Error::InvalidGrant(
                    "unknown or already used enrollment code".into(),
                ));
            }
            if now >= g.expires_at {
                // expired_token is RFC 8628's, for device codes; an expired
                // enrollment code is simply no longer a valid grant.
                return Err(Error::InvalidGrant("the enrollment code has expired".into()));
            }
            let scope = negotiate(&g.scope, scope_req.as_deref())?;
            let aud = pick_audience(&g.audiences, aud_req.as_deref())?;
            let scope = catalog::narrow(tx, &aud, &scope, scope_req.as_deref())?;
            g.jkt = Some(proof.jkt.clone());
            g.status = GrantStatus::Active;
            g.enroll_hash = None;
            g.expires_at = now + g.ttl;
            tx.grant_put(&g)?;
            let detail = json!({"jkt": proof.jkt, "reason": proof.reason});
            Ok(Ok(first_tokens(
                &mint, tx, &g, scope, aud, "enroll", detail, false,
            )?))
        })
        .await
    }

    async fn refresh(
        &self,
        refresh_token: &Secret,
        scope_req: Option<String>,
        aud_req: Option<String>,
        proof: std::result::Result<VerifiedProof, Error>,
        mut mint: Mint,
    ) -> Result<Committed> {
        let hash = secret_hash(refresh_token.expose());
        let now = mint.now;
        // No proof: a bearer client (`service::authcode`), whose refresh
        // token is bound to no key; a DPoP-bound one is answered `missing`.
        let (jkt, reason, missing) = match proof {
            Ok(p) => (p.jkt, p.reason, None),
            Err(e) => (String::new(), None, Some(e)),
        };
        let bearer = missing.is_some();
        if bearer {
            mint.access_ttl = mint.access_ttl.min(super::authcode::BEARER_TTL);
        }
        let first = TokenLookup::Hash(hash.clone());
        let (r, seq) = store::write_reading(&self.store, first, move |tx| {
            let bad = || Error::InvalidGrant("unknown, spent or revoked refresh token".into());
            let found = tx.token_by_hash(&hash)?;
            // Without a proof, only a bearer client's refresh token goes on;
            // anything else gets the missing proof's error, as before a
            // lookup (the answer tells nothing about the token).
            if let Some(e) = missing
                && !found
                    .as_ref()
                    .is_some_and(|r| r.kind == TokenKind::Refresh && r.jkt.is_empty())
            {
                return Err(e);
            }
            let Some(mut rec) = found else {
                return Err(bad());
            };
            if rec.kind != TokenKind::Refresh {
                return Err(bad());
            }
            if !eq_ct(&rec.jkt, &jkt) {
                return Err(Error::InvalidGrant(
                    "the refresh token is bound to another key than the proof's".into(),
                ));
            }
            let Some(mut g) = tx.grant_get(&rec.gid)? else {
                return Err(bad());
            };
            if rec.status == TokenStatus::Used && g.status == GrantStatus::Active {
                // RFC 9700 section 4.14.2: a spent refresh token came back; one of
                // its two users is not the agent. Revoke the whole grant.
                let seq = revoke_grant(tx, &mut g, now, "refresh_token_reuse")?;
                return Ok((
                    Err(Error::InvalidGrant(
                        "refresh token reuse: the grant is revoked".into(),
                    )),
                    Some(seq),
                ));
            }
            if rec.status != TokenStatus::Active || !grant_live(&g, now) {
                return Err(bad());
            }
            rec.status = TokenStatus::Used;
            tx.token_put(&rec)?;
            let scope = negotiate(&g.scope, scope_req.as_deref())?;
            let aud = pick_audience(&g.audiences, aud_req.as_deref())?;
            let scope = catalog::narrow(tx, &aud, &scope, scope_req.as_deref())?;
            if bearer && !super::authcode::bearer_allowed(tx, &aud)? {
                return Err(super::authcode::dpop_only(&aud));
            }
            let (refresh, rjti) = mint.refresh(tx, &g)?;
            let access = mint.access(tx, &g, &scope, &aud, g.expires_at)?;
            let minted = access.pending();
            tx.audit_append(
                now,
                &g.owner,
                "refresh",
                &json!({"gid": g.gid, "agent": g.agent, "spent_jti": rec.jti, "refresh_jti": rjti,
                        "jti": minted.jti, "scope": scope, "aud": aud, "exp": minted.exp,
                        "reason": reason, "bearer": bearer})
                .to_string(),
            )?;
            Ok((
                Ok((
                    grant_response(&minted, refresh, scope, aud, &g, now, bearer),
                    access,
                )),
                None,
            ))
        })
        .await?;
        self.feed_advanced_if(seq);
        // Signed now that it is committed, off the store's writer.
        Ok(r.map(|(t, access)| access.sign_into(t)))
    }

    async fn exchange(
        &self,
        subject: Secret,
        subject_kind: SubjectKind,
        ask: Ask,
        proof: VerifiedProof,
        mint: Mint,
    ) -> Result<Committed> {
        let Ask {
            scope: scope_req,
            audience: aud_req,
            lifetime,
        } = ask;
        let now = mint.now;
        // An access token subject is verified before the transaction.
        let claims = match subject_kind {
            SubjectKind::Refresh => None,
            SubjectKind::Access => Some(self.verify_own_access_token(subject.expose(), now)?),
        };
        let first = match &claims {
            None => TokenLookup::Hash(secret_hash(subject.expose())),
            Some(c) => TokenLookup::Jti(c.jti.clone()),
        };
        let (r, seq) = store::write_reading(&self.store, first, move |tx| {
            let bad = || Error::InvalidGrant("the subject token is unknown, expired or revoked".into());
            // A refresh token subject is spent by the exchange and replaced
            // (RFC 9700 section 4.14.2): a copy used after the original, or
            // the original after the copy, is a reuse that revokes the grant.
            let (g, bound_scope, bound_aud, cap, subject_jti, spent) = match &claims {
                None => {
                    let Some(mut rec) = tx.token_by_hash(&secret_hash(subject.expose()))? else { return Err(bad()) };
                    if rec.kind != TokenKind::Refresh {
                        return Err(bad());
                    }
                    if !eq_ct(&rec.jkt, &proof.jkt) {
                        return Err(Error::InvalidGrant("the subject token is bound to another key".into()));
                    }
                    let Some(mut g) = tx.grant_get(&rec.gid)? else { return Err(bad()) };
                    if rec.status == TokenStatus::Used && g.status == GrantStatus::Active {
                        let seq = revoke_grant(tx, &mut g, now, "refresh_token_reuse")?;
                        return Ok((Err(Error::InvalidGrant("refresh token reuse: the grant is revoked".into())), Some(seq)));
                    }
                    if rec.status != TokenStatus::Active {
                        return Err(bad());
                    }
                    rec.status = TokenStatus::Used;
                    let (s, a, e) = (g.scope.clone(), g.audiences.clone(), g.expires_at);
                    let jti = rec.jti.clone();
                    (g, s, a, e, jti, Some(rec))
                }
                Some(c) => {
                    let Some(rec) = tx.token_get(&c.jti)? else { return Err(bad()) };
                    if rec.status != TokenStatus::Active || !eq_ct(&c.jkt, &proof.jkt) {
                        return Err(if rec.status == TokenStatus::Active {
                            Error::InvalidGrant("the subject token is bound to another key".into())
                        } else {
                            bad()
                        });
                    }
                    // A step-up's one-time token is spent by use, never
                    // turned into a token that can be used again.
                    if tx.stepup_by_jti(&rec.jti)?.is_some() {
                        return Err(Error::InvalidGrant("a one-time token cannot be exchanged".into()));
                    }
                    let Some(g) = tx.grant_get(&rec.gid)? else { return Err(bad()) };
                    (g, c.scope.clone(), vec![c.aud.clone()], c.exp, rec.jti, None)
                }
            };
            if !grant_live(&g, now) || cap <= now {
                return Err(bad());
            }
            let scope = negotiate(&bound_scope, scope_req.as_deref())?;
            let aud = pick_audience(&bound_aud, aud_req.as_deref())?;
            let scope = catalog::narrow(tx, &aud, &scope, scope_req.as_deref())?;
            let cap = lifetime.map_or(cap, |l| cap.min(now.saturating_add(l)));
            let refresh = match &spent {
                Some(rec) => {
                    tx.token_put(rec)?;
                    Some(mint.refresh(tx, &g)?)
                }
                None => None,
            };
            let access = mint.access(tx, &g, &scope, &aud, cap)?;
            let minted = access.pending();
            tx.audit_append(
                now,
                &g.owner,
                "exchange",
                &json!({"gid": g.gid, "agent": g.agent, "subject_jti": subject_jti, "jti": minted.jti,
                        "refresh_jti": refresh.as_ref().map(|r| &r.1),
                        "requested_scope": scope_req, "scope": scope, "aud": aud, "exp": minted.exp,
                        "reason": proof.reason})
                .to_string(),
            )?;
            let refresh = refresh.map(|r| r.0);
            let t = response(&minted, refresh, scope, aud, &g.gid, g.expires_at, now, true);
            Ok((Ok((t, access)), None))
        })
        .await?;
        self.feed_advanced_if(seq);
        // Signed now that it is committed, off the store's writer.
        Ok(r.map(|(t, access)| access.sign_into(t)))
    }

    /// Verify a JWT this broker issued (signature, issuer, expiry), for any audience.
    pub fn verify_own_access_token(
        &self,
        token: &str,
        now: i64,
    ) -> Result<protonpass_agent::AccessTokenClaims> {
        let invalid = || Error::InvalidGrant("the access token is invalid or expired".into());
        let parsed =
            jws::parse(token, protonpass_agent::token::MAX_TOKEN_LEN).map_err(|_| invalid())?;
        let aud = json::opt_str(&parsed.claims, "aud")
            .ok()
            .flatten()
            .ok_or_else(invalid)?
            .to_owned();
        let mut v = TokenValidation::new(self.issuer.clone(), aud);
        // The broker knows its one-time tokens: each caller decides about them.
        (v.leeway, v.accept_one_time) = (0, true);
        verify_access_token(token, &self.keyring().keyset, &v, now).map_err(|_| invalid())
    }

    /// [`Self::verify_own_access_token`], also accepting a bearer token (no
    /// `cnf`, `jkt` empty): for revocation and introspection, never for an
    /// exchange (a bearer token is no subject to derive tokens from).
    pub fn verify_own_token_any_binding(
        &self,
        token: &str,
        now: i64,
    ) -> Result<protonpass_agent::AccessTokenClaims> {
        self.verify_own_access_token(token, now).or_else(|e| {
            let aud = jws::parse(token, protonpass_agent::token::MAX_TOKEN_LEN)
                .ok()
                .and_then(|p| {
                    json::opt_str(&p.claims, "aud")
                        .ok()
                        .flatten()
                        .map(str::to_owned)
                })
                .ok_or_else(|| e.clone())?;
            let mut v = TokenValidation::new(self.issuer.clone(), aud);
            (v.leeway, v.accept_one_time) = (0, true);
            protonpass_agent::verify_bearer_access_token(token, &self.keyring().keyset, &v, now)
                .map_err(|_| e)
        })
    }
}
