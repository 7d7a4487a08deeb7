//! Step-up approval (`spec/14-step-up.md`): OpenID CIBA in poll mode with
//! RFC 9396 authorization details. An agent of a live grant, authenticated
//! by its DPoP-bound access token, asks its owner for a one-time
//! authorization; the owner (or the grant's auto-approval policy) decides;
//! the agent polls the token endpoint with the CIBA grant type and gets a
//! token bound to its key that carries exactly the approved details, lives
//! at most [`ONE_TIME_TTL`] seconds and is spent on first redemption.

use protonpass_agent::budget::{format_amount, parse_amount};
use protonpass_agent::wire::{BACKCHANNEL_PATH, TokenResponse};
use protonpass_agent::{Error, ProofCheck, Reason, Result, VerifiedProof, random_id};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::issue::Mint;
use super::{Broker, audience_status, catalog, grant_live, owner_grant};
use crate::audit::secret_hash;
use crate::model::{StepUp, StepUpPolicy, StepUpStatus, TokenStatus};
use crate::protocol::authz_details::{Details, binding_message};
use crate::protocol::params::Params;
use crate::protocol::token_request::{Secret, requested_audience};
use crate::store::{self, Tx};

/// Longest life of a one-time token, seconds.
pub const ONE_TIME_TTL: i64 = 300;
/// Longest `requested_expiry`, seconds.
pub const MAX_EXPIRY: i64 = 600;
/// Most step-up requests of one grant waiting at once.
pub const MAX_LIVE_PER_GRANT: i64 = 5;
/// Prefix of `auth_req_id` values.
const AUTH_REQ_PREFIX: &str = "ar_";

/// The backchannel authentication response (CIBA section 7.3).
#[derive(Clone, Serialize)]
pub struct BcResponse {
    /// The secret the agent polls with.
    pub auth_req_id: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Minimum seconds between polls.
    pub interval: i64,
    /// The owner and the request, when it waits for the owner (not sent).
    #[serde(skip)]
    pub pending: Option<(String, StepUpView)>,
}

impl std::fmt::Debug for BcResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BcResponse")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// A step-up as the owner sees it.
#[derive(Debug, Clone, Serialize)]
pub struct StepUpView {
    /// Public id.
    pub id: String,
    /// The agent.
    pub agent: String,
    /// The grant.
    pub grant_id: String,
    /// The audience.
    pub audience: String,
    /// The authorization details (normalized JSON array).
    pub authorization_details: Value,
    /// The agent's reason, as sent.
    pub binding_message: Option<String>,
    /// When asked.
    pub created_at: i64,
    /// When it expires.
    pub expires_at: i64,
}

impl StepUpView {
    /// The owner's view of a stored request.
    pub fn of(s: &StepUp) -> Self {
        StepUpView {
            id: s.id.clone(),
            agent: s.agent.clone(),
            grant_id: s.gid.clone(),
            audience: s.aud.clone(),
            authorization_details: serde_json::from_str(&s.details).unwrap_or(Value::Null),
            binding_message: s.binding_message.clone(),
            created_at: s.created_at,
            expires_at: s.expires_at,
        }
    }
}

fn bad_token(m: &str) -> Error {
    Error::InvalidToken {
        reason: Reason::Other,
        message: m.into(),
    }
}

/// `requested_expiry`: whole seconds, 1 to [`MAX_EXPIRY`]; `default` (the
/// broker's `stepup_ttl`) when the agent names none.
fn requested_expiry(p: &Params, default: i64) -> Result<i64> {
    match p.get("requested_expiry") {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=MAX_EXPIRY).contains(&n) && v.bytes().all(|c| c.is_ascii_digit()) => {
                Ok(n)
            }
            _ => Err(Error::InvalidRequest(format!(
                "requested_expiry is a whole number of seconds from 1 to {MAX_EXPIRY}"
            ))),
        },
    }
}

/// Whether the grant's policy approves these details without asking: every
/// entry a payment in the policy's currency, their total at most its
/// maximum, and each payment within what its scope's budget has left.
fn policy_approves(
    tx: &mut dyn Tx,
    policy: Option<&StepUpPolicy>,
    d: &Details,
    now: i64,
) -> Result<bool> {
    let Some(p) = policy else { return Ok(false) };
    if d.0.len() != d.payments().count() {
        return Ok(false);
    }
    let mut total: i64 = 0;
    for (scope, amount, currency, _) in d.payments() {
        if currency != p.currency {
            return Ok(false);
        }
        total = total.saturating_add(amount);
        let budget = tx
            .budgets_of(&p.gid)?
            .into_iter()
            .find(|b| b.scope == scope);
        if let Some(b) = budget {
            let (_, remaining, _) = super::budget::standing(tx, &b, now)?;
            if b.currency != currency || amount > remaining {
                return Ok(false);
            }
        }
    }
    Ok(total <= p.max)
}

impl Broker {
    /// `POST /oauth/bc-authorize`: a step-up request, authenticated by the
    /// agent's DPoP-bound access token (`Authorization: DPoP`).
    pub async fn backchannel(
        &self,
        p: &Params,
        authorization: Option<&str>,
        dpop: &[String],
        source: &str,
    ) -> Result<BcResponse> {
        let r: Result<BcResponse> = async {
            let now = self.clock.now();
            let token = authorization
                .and_then(|h| h.strip_prefix("DPoP "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| bad_token("send the agent's access token as Authorization: DPoP"))?
                .to_owned();
            let claims = self
                .verify_own_access_token(&token, now)
                .map_err(|_| bad_token("the access token is invalid or expired"))?;
            let proof = {
                let url = format!("{}{BACKCHANNEL_PATH}", self.issuer);
                let accepts = |n: &str| self.nonces.accepts(n, now);
                let check = ProofCheck {
                    method: "POST",
                    url: &url,
                    access_token: Some(&token),
                    expected_jkt: Some(&claims.jkt),
                    nonce: if self.cfg.dpop_nonce {
                        Some(&accepts)
                    } else {
                        None
                    },
                };
                self.proofs.verify(dpop, &check, now, Some(source))?
            };
            let proof = proof.once(self, now).await?;
            let details = Details::parse(p.req("authorization_details").map_err(|_| {
                Error::InvalidAuthorizationDetails("authorization_details is required".into())
            })?)?;
            let message = binding_message(p.get("binding_message"))?;
            let expiry = requested_expiry(p, self.cfg.stepup_ttl)?;
            let asked = requested_audience(p)?;
            let aud = match (asked.as_deref(), details.location()) {
                (Some(a), Some(l)) if a != l => {
                    return Err(Error::InvalidTarget(
                        "resource and the details' locations name different audiences".into(),
                    ));
                }
                (Some(a), _) | (None, Some(a)) => a.to_owned(),
                (None, None) => claims.aud.clone(),
            };
            let scope = details.token_scope()?;
            let details_text = details.to_json().to_string();
            let auth_req_id = format!("{AUTH_REQ_PREFIX}{}", random_id(self.rng.as_ref(), 32)?);
            let id = random_id(self.rng.as_ref(), 12)?;
            let hash = secret_hash(&auth_req_id);
            let jti = claims.jti.clone();
            // The device flow's polling interval (0 in tests: no slow_down).
            let interval = self.cfg.device_interval;
            let pending = store::write(&self.store, move |tx| {
                let dead = || bad_token("the access token is revoked or its grant is not live");
                let rec = tx.token_get(&jti)?.ok_or_else(dead)?;
                let g = tx.grant_get(&rec.gid)?.ok_or_else(dead)?;
                if rec.status != TokenStatus::Active || !grant_live(&g, now) {
                    return Err(dead());
                }
                if tx.stepup_by_jti(&rec.jti)?.is_some() {
                    return Err(bad_token("a one-time token cannot ask for a step-up"));
                }
                // Within what the owner may give: an audience it owns, or one
                // unregistered or shared; scopes its catalog defines.
                audience_status(tx, &g.owner, &aud)?;
                catalog::check(tx, std::slice::from_ref(&aud), &scope)
                    .map_err(|e| Error::InvalidAuthorizationDetails(e.description()))?;
                if tx.stepup_live_count(&g.gid, now)? >= MAX_LIVE_PER_GRANT {
                    return Err(Error::InvalidRequest(format!(
                        "at most {MAX_LIVE_PER_GRANT} step-up requests of a grant wait at once"
                    )));
                }
                let policy = tx.stepup_policy_get(&g.gid)?;
                let auto = policy_approves(tx, policy.as_ref(), &details, now)?;
                let s = StepUp {
                    id: id.clone(),
                    hash,
                    owner: g.owner.clone(),
                    gid: g.gid.clone(),
                    agent: g.agent.clone(),
                    jkt: proof.jkt.clone(),
                    aud: aud.clone(),
                    details: details_text,
                    scope: scope.clone(),
                    binding_message: message.clone(),
                    status: if auto {
                        StepUpStatus::Approved
                    } else {
                        StepUpStatus::Pending
                    },
                    decided_by: auto.then(|| "policy".to_owned()),
                    created_at: now,
                    expires_at: now + expiry,
                    interval,
                    last_poll: None,
                    jti: None,
                    redeemed_by: None,
                };
                tx.stepup_put(&s)?;
                let details_json: Value = serde_json::from_str(&s.details).unwrap_or(Value::Null);
                tx.audit_append(
                    now,
                    &g.owner,
                    "stepup_request",
                    &json!({"stepup": s.id, "gid": g.gid, "agent": g.agent, "jti": rec.jti,
                            "aud": aud, "authorization_details": details_json, "scope": scope,
                            "binding_message": message, "exp": s.expires_at,
                            "reason": proof.reason})
                    .to_string(),
                )?;
                if auto {
                    tx.audit_append(
                        now,
                        &g.owner,
                        "stepup_approve",
                        &json!({"stepup": s.id, "gid": g.gid, "agent": g.agent, "by": "policy"})
                            .to_string(),
                    )?;
                }
                Ok((!auto).then(|| (s.owner.clone(), StepUpView::of(&s))))
            })
            .await?;
            Ok(BcResponse {
                auth_req_id,
                expires_in: expiry,
                interval: interval.max(1),
                pending,
            })
        }
        .await;
        if let Err(e) = &r {
            self.metrics.error(e.code());
            self.audit_rejected("-", "backchannel", e, json!({"source": source}));
        }
        r
    }

    /// The token endpoint's CIBA grant: a poll for a step-up's outcome.
    pub(super) async fn ciba_poll(
        &self,
        auth_req_id: &Secret,
        proof: VerifiedProof,
        mint: Mint,
    ) -> Result<std::result::Result<TokenResponse, Error>> {
        let hash = secret_hash(auth_req_id.expose());
        let now = mint.now;
        store::write(&self.store, move |tx| {
            let Some(mut s) = tx.stepup_by_hash(&hash)? else {
                return Err(Error::InvalidGrant("unknown auth_req_id".into()));
            };
            if !super::token::eq_ct(&s.jkt, &proof.jkt) {
                return Err(Error::InvalidGrant(
                    "the auth_req_id is bound to another key than the proof's".into(),
                ));
            }
            if s.status == StepUpStatus::Issued {
                return Err(Error::InvalidGrant(
                    "the auth_req_id was already used".into(),
                ));
            }
            if now >= s.expires_at {
                return Err(Error::ExpiredToken);
            }
            if s.status == StepUpStatus::Denied {
                return Err(Error::AccessDenied);
            }
            let g = tx.grant_get(&s.gid)?;
            let Some(g) = g.filter(|g| grant_live(g, now)) else {
                return Err(Error::InvalidGrant(
                    "the grant behind this step-up was revoked or has expired".into(),
                ));
            };
            if s.interval > 0
                && let Some(last) = s.last_poll
                && now - last < s.interval
            {
                s.interval += 5;
                s.last_poll = Some(now);
                tx.stepup_put(&s)?;
                return Ok(Err(Error::SlowDown));
            }
            s.last_poll = Some(now);
            if s.status == StepUpStatus::Pending {
                tx.stepup_put(&s)?;
                return Ok(Err(Error::AuthorizationPending));
            }
            let details: Value = serde_json::from_str(&s.details)
                .map_err(|e| Error::Server(format!("stored details unreadable: {e}")))?;
            let mut extra = Map::new();
            extra.insert("authorization_details".into(), details.clone());
            extra.insert("one_time".into(), Value::Bool(true));
            let cap = now + ONE_TIME_TTL;
            let access = mint
                .access(tx, &g, &s.scope, &s.aud, cap)?
                .with_claims(extra)
                .sign();
            s.status = StepUpStatus::Issued;
            s.jti = Some(access.jti.clone());
            tx.stepup_put(&s)?;
            tx.audit_append(
                now,
                &g.owner,
                "stepup_token",
                &json!({"stepup": s.id, "gid": g.gid, "agent": g.agent, "jti": access.jti,
                        "jkt": proof.jkt, "scope": s.scope, "aud": s.aud, "exp": access.exp,
                        "authorization_details": details, "reason": proof.reason})
                .to_string(),
            )?;
            Ok(Ok(TokenResponse {
                access_token: access.token.clone(),
                token_type: "DPoP".into(),
                expires_in: access.exp - now,
                scope: s.scope.clone(),
                refresh_token: None,
                issued_token_type: None,
                grant_id: Some(g.gid.clone()),
                audience: Some(s.aud.clone()),
                grant_expires_at: Some(g.expires_at),
            }))
        })
        .await
    }

    /// An owner's step-up requests waiting for a decision.
    pub async fn stepups_pending(&self, owner: &str) -> Result<Vec<StepUpView>> {
        let now = self.clock.now();
        let owner = owner.to_owned();
        store::read(&self.store, move |tx| {
            Ok(tx
                .stepups_pending(&owner, now)?
                .iter()
                .map(StepUpView::of)
                .collect())
        })
        .await
    }

    /// Approve or deny one of the owner's waiting step-up requests.
    pub async fn stepup_decide(&self, owner: &str, id: &str, approve: bool) -> Result<StepUpView> {
        let now = self.clock.now();
        let (owner, id) = (owner.to_owned(), id.to_owned());
        store::write(&self.store, move |tx| {
            let not_waiting = || Error::InvalidGrant("no such step-up request is waiting".into());
            let mut s = tx
                .stepup_get(&id)?
                .filter(|s| s.owner == owner)
                .ok_or_else(not_waiting)?;
            if s.status != StepUpStatus::Pending || now >= s.expires_at {
                return Err(not_waiting());
            }
            if approve && !tx.grant_get(&s.gid)?.is_some_and(|g| grant_live(&g, now)) {
                return Err(Error::InvalidGrant(
                    "the grant behind this step-up was revoked or has expired".into(),
                ));
            }
            s.status = if approve {
                StepUpStatus::Approved
            } else {
                StepUpStatus::Denied
            };
            s.decided_by = Some("owner".into());
            tx.stepup_put(&s)?;
            tx.audit_append(
                now,
                &owner,
                if approve {
                    "stepup_approve"
                } else {
                    "stepup_deny"
                },
                &json!({"stepup": s.id, "gid": s.gid, "agent": s.agent, "by": "owner"}).to_string(),
            )?;
            Ok(StepUpView::of(&s))
        })
        .await
    }

    /// `grant stepup-policy`: set (`Some((max, currency))`) or clear a grant's
    /// auto-approval policy. Returns the policy as set.
    pub async fn stepup_policy_set(
        &self,
        owner: &str,
        gid: &str,
        limit: Option<(String, String)>,
    ) -> Result<Option<(String, String)>> {
        let now = self.clock.now();
        let (owner, gid) = (owner.to_owned(), gid.to_owned());
        store::write(&self.store, move |tx| {
            owner_grant(tx, &owner, &gid, true)?;
            let Some((max, currency)) = limit else {
                let had = tx.stepup_policy_delete(&gid)?;
                if had {
                    tx.audit_append(
                        now,
                        &owner,
                        "stepup_policy",
                        &json!({"gid": gid, "auto_approve": null}).to_string(),
                    )?;
                }
                return Ok(None);
            };
            let minor = parse_amount(&max, &currency)?;
            tx.stepup_policy_put(&StepUpPolicy {
                gid: gid.clone(),
                currency: currency.clone(),
                max: minor,
                updated_at: now,
            })?;
            let shown = format_amount(minor, &currency);
            tx.audit_append(
                now,
                &owner,
                "stepup_policy",
                &json!({"gid": gid, "auto_approve": {"max": shown, "currency": currency}})
                    .to_string(),
            )?;
            Ok(Some((shown, currency)))
        })
        .await
    }

    /// A grant's auto-approval policy, as (max, currency).
    pub async fn stepup_policy_of(&self, gid: &str) -> Result<Option<(String, String)>> {
        let gid = gid.to_owned();
        store::read(&self.store, move |tx| {
            Ok(tx
                .stepup_policy_get(&gid)?
                .map(|p| (format_amount(p.max, &p.currency), p.currency)))
        })
        .await
    }
}

/// How a one-time token is redeemed ([`redeem_one_time`]).
#[derive(Debug, Clone, Copy)]
pub enum Redeem<'a> {
    /// A resource server's verification (introspection): the token is no
    /// longer accepted anywhere, but that resource server may still spend
    /// the approved payment with it once ([`TokenStatus::Redeemed`]).
    Verify,
    /// A use that ends it (the gateway forwarding a call that spends nothing).
    Use,
    /// A spend of (scope, minor units, currency): it must match an approved
    /// payment; a token redeemed by the same resource server's verification
    /// is accepted once more for it.
    Spend(&'a str, i64, &'a str),
}

/// How long after its expiry the approved payment of a one-time token
/// verified in time may still be spent, in seconds.
const REDEEMED_SPEND_GRACE: i64 = 60;

/// Redeem a one-time token inside the caller's write transaction: the first
/// redemption marks it used (or redeemed by verification, see [`Redeem`]);
/// a second is refused with `invalid_grant`. `by` is the resource server.
/// Returns `None` when `jti` is not a one-time token, else whether the owner
/// (not the grant's auto-approval policy) approved it.
pub fn redeem_one_time(
    tx: &mut dyn Tx,
    jti: &str,
    how: Redeem<'_>,
    by: &str,
    now: i64,
) -> Result<Option<bool>> {
    let Some(mut s) = tx.stepup_by_jti(jti)? else {
        return Ok(None);
    };
    let Some(mut rec) = tx.token_get(jti)? else {
        return Ok(None);
    };
    let used = || Error::InvalidGrant("this one-time token was already used".into());
    match (rec.status, how) {
        (TokenStatus::Active, _) => {}
        // Verified by this resource server, its approved payment not spent yet.
        (TokenStatus::Redeemed, Redeem::Spend(..)) if s.redeemed_by.as_deref() == Some(by) => {}
        _ => return Err(used()),
    }
    // A one-time token works only while it lives; the payment of one verified
    // just before its end may still be spent for a minute (the API's spend
    // follows its verification).
    let grace = if rec.status == TokenStatus::Redeemed {
        REDEEMED_SPEND_GRACE
    } else {
        0
    };
    if rec.exp.saturating_add(grace) <= now {
        return Err(Error::InvalidGrant(
            "this one-time token has expired".into(),
        ));
    }
    if let Redeem::Spend(scope, amount, currency) = how {
        let details = Details::parse(&s.details)?;
        let ok = details
            .payments()
            .any(|(sc, a, c, _)| sc == scope && c == currency && amount <= a);
        if !ok {
            return Err(Error::InsufficientScope(
                "the spend is outside the payment the owner approved".into(),
            ));
        }
    }
    let first = rec.status == TokenStatus::Active;
    rec.status = match how {
        Redeem::Verify => TokenStatus::Redeemed,
        Redeem::Use | Redeem::Spend(..) => TokenStatus::Used,
    };
    tx.token_put(&rec)?;
    if let Redeem::Verify = how {
        s.redeemed_by = Some(by.to_owned());
        tx.stepup_put(&s)?;
    }
    // One `stepup_redeemed` record per token: its first use.
    if first {
        tx.audit_append(
            now,
            &s.owner,
            "stepup_redeemed",
            &json!({"stepup": s.id, "gid": s.gid, "agent": s.agent, "jti": jti, "by": by})
                .to_string(),
        )?;
    }
    Ok(Some(s.decided_by.as_deref() == Some("owner")))
}

#[cfg(test)]
#[path = "stepup_tests.rs"]
mod tests;
