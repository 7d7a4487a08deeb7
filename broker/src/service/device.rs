//! The device authorization grant (RFC 8628): requests, polling with
//! `slow_down`, and the owner's approval or denial with guessing limits.

use std::sync::Arc;

use protonpass_agent::wire::DeviceAuthorizationResponse;
use protonpass_agent::{Error, Random, Result, ScopeSet, VerifiedProof, random_id};
use serde_json::json;

use super::issue::{Mint, negotiate};
use super::{Broker, Params, audience_status};
use crate::audit::secret_hash;
use crate::config::{MAX_TTL, MIN_GRANT_TTL};
use crate::model::{DeviceReq, DeviceStatus, Grant, GrantStatus};
use crate::protocol::token_request::Secret;
use crate::store;

/// RFC 8628 section 6.1: base-20, no vowels, no look-alikes.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Characters in a user code.
pub const USER_CODE_LEN: usize = 8;
/// Budget of user-code entries on the web form per source and per owner, in
/// "live codes exposed": each wrong entry costs the number of live codes at
/// that moment, and an entry is checked only while the cost spent plus the
/// live codes stays within it. floor(20^8 / 2^32) = 5, so the chance that one
/// guesser hits any live code within a code's lifetime stays below
/// 5 / 20^8 < 2^-32, however many codes are live.
pub const GUESS_BUDGET: i64 = 5;
/// The source of entries made on the command line: the owner at the broker's
/// machine, who can read every waiting code (`pending`), so its mistakes are
/// not counted against the budget.
pub const CLI_SOURCE: &str = "cli";

/// A fresh user code, `XXXX-XXXX`.
pub fn new_user_code(rng: &dyn Random) -> Result<String> {
    let mut out = String::with_capacity(USER_CODE_LEN + 1);
    let mut buf = [0u8; 32];
    while out.len() < USER_CODE_LEN + 1 {
        rng.fill(&mut buf)?;
        for b in buf {
            // 240 = 12 * 20: rejection sampling keeps the letters uniform.
            if b < 240 && out.len() < USER_CODE_LEN + 1 {
                if out.len() == 4 {
                    out.push('-');
                }
                out.push(USER_CODE_ALPHABET[usize::from(b % 20)] as char);
            }
        }
    }
    Ok(out)
}

/// The canonical form of an entered user code: letters upper-cased, anything
/// else dropped. `None` if it cannot be a code.
pub fn normalize_user_code(input: &str) -> Option<String> {
    if input.len() > 64 {
        return None;
    }
    let s: String = input
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (s.len() == USER_CODE_LEN && s.bytes().all(|b| USER_CODE_ALPHABET.contains(&b))).then_some(s)
}

fn valid_client_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| !c.is_control())
}

/// The owner's decision on a device request.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Approve (true) or deny.
    pub approve: bool,
    /// Narrower scopes, if the owner chose them.
    pub scope: Option<String>,
    /// The audience, required when the request named none.
    pub audience: Option<String>,
    /// Grant lifetime, seconds.
    pub ttl: i64,
    /// Spend budgets on the approved scopes.
    pub budgets: Vec<super::budget::BudgetSpec>,
}

impl Decision {
    /// The owner refuses the request.
    pub fn deny() -> Self {
        Decision {
            approve: false,
            scope: None,
            audience: None,
            ttl: 0,
            budgets: Vec::new(),
        }
    }
}

/// What the owner decided on, for display.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Decided {
    /// The agent's self-asserted name.
    pub agent: String,
    /// Scopes approved (or requested, when denied).
    pub scope: String,
    /// Audience.
    pub audience: Option<String>,
    /// Approved or denied.
    pub approved: bool,
    /// Grant lifetime.
    pub ttl: i64,
}

/// A device request waiting for the owner's decision (`pending`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Waiting {
    /// The code the agent shows (`XXXX-XXXX`); `None` for a request made
    /// before the broker kept it.
    pub user_code: Option<String>,
    /// The agent's self-asserted name.
    pub agent: String,
    /// The scopes it asks for.
    pub scopes: Vec<String>,
    /// The audience it asks for, if it named one.
    pub audience: Option<String>,
    /// The agent's own words (the `reason` claim of its request's proof).
    pub reason: Option<String>,
    /// Thumbprint of the key that signed the request, if it sent a proof.
    pub key_thumbprint: Option<String>,
    /// When it asked, Unix seconds.
    pub created_at: i64,
    /// When its codes expire, Unix seconds.
    pub expires_at: i64,
}

impl Broker {
    /// The device requests waiting for a decision, oldest first. They belong
    /// to no owner until one decides.
    pub async fn pending(&self) -> Result<Vec<Waiting>> {
        let now = self.clock.now();
        let list = store::read(&self.store, move |tx| tx.devices_pending(now)).await?;
        Ok(Self::waiting(list))
    }

    /// The waiting requests the dashboard shows `owner`: those for an
    /// audience the owner registered, or all of them when the broker has one
    /// owner. With several owners, a request for an unregistered or another
    /// owner's audience is reached only by the code its agent shows (under
    /// the guessing limits), so that no owner reads or denies another's
    /// agents from a list.
    pub async fn pending_for(&self, owner: &str) -> Result<Vec<Waiting>> {
        let now = self.clock.now();
        let owner = owner.to_owned();
        let list = store::read(&self.store, move |tx| {
            let single = tx.owners()?.len() <= 1;
            let mut mine = Vec::new();
            for d in tx.devices_pending(now)? {
                let own = single
                    || d.resource.as_deref().is_some_and(|a| {
                        matches!(
                            audience_status(tx, &owner, a),
                            Ok(super::AudienceStatus::Own)
                        )
                    });
                if own {
                    mine.push(d);
                }
            }
            Ok(mine)
        })
        .await?;
        Ok(Self::waiting(list))
    }

    fn waiting(list: Vec<DeviceReq>) -> Vec<Waiting> {
        list.into_iter()
            .map(|d| Waiting {
                user_code: d.user_code,
                agent: d.client_id,
                scopes: d.scope.split(' ').map(str::to_owned).collect(),
                audience: d.resource,
                reason: d.reason,
                key_thumbprint: d.jkt,
                created_at: d.created_at,
                expires_at: d.expires_at,
            })
            .collect()
    }

    /// `POST /oauth/device_authorization`.
    pub async fn device_authorization(
        &self,
        p: &Params,
        dpop: &[String],
        source: &str,
    ) -> Result<DeviceAuthorizationResponse> {
        let r = self.device_authorization_inner(p, dpop, source).await;
        if let Err(e) = &r {
            self.metrics.error(e.code());
            self.audit_rejected("-", "device_authorization", e, json!({"source": source}));
        }
        r
    }

    async fn device_authorization_inner(
        &self,
        p: &Params,
        dpop: &[String],
        source: &str,
    ) -> Result<DeviceAuthorizationResponse> {
        let now = self.clock.now();
        // RFC 8628 does not define DPoP here; an agent that sends a proof anyway
        // binds the request to its key, so the owner sees which key asks and a
        // stolen device code is useless to any other key.
        let (jkt, reason) = if dpop.is_empty() {
            (None, None)
        } else {
            let v = {
                let url = format!("{}/oauth/device_authorization", self.issuer);
                let check = protonpass_agent::ProofCheck {
                    method: "POST",
                    url: &url,
                    ..Default::default()
                };
                self.proofs.verify(dpop, &check, now, Some(source))?
            };
            let v = v.once(self, now).await?;
            (Some(v.jkt), v.reason)
        };
        // Waiting requests are limited per requester, not in total: abandoned
        // requests of one agent never block another.
        let requester = match &jkt {
            Some(k) => format!("jkt:{k}"),
            None => format!("source:{source}"),
        };
        let client_id = p.req("client_id")?.to_owned();
        if !valid_client_id(&client_id) {
            return Err(Error::InvalidRequest(
                "client_id must be 1-128 printable characters".into(),
            ));
        }
        let scope = match p.get("scope") {
            Some(s) => ScopeSet::parse(s)?.to_string(),
            None if p.has("scope") => {
                return Err(Error::InvalidScope(
                    "the scope parameter holds no scope".into(),
                ));
            }
            None => {
                return Err(Error::InvalidScope(
                    "name the scopes the agent needs".into(),
                ));
            }
        };
        let resource = crate::protocol::token_request::requested_audience(p)?;
        if resource.as_ref().is_some_and(|r| r.len() > 512) {
            return Err(Error::InvalidTarget("the resource is too long".into()));
        }
        let device_code = format!("dc_{}", random_id(self.rng.as_ref(), 32)?);
        let device_hash = secret_hash(&device_code);
        let (ttl, interval, max_pending) = (
            self.cfg.device_ttl,
            self.cfg.device_interval,
            self.cfg.device_max_pending,
        );
        let rng: Arc<dyn Random> = self.rng.clone();
        let id = random_id(self.rng.as_ref(), 12)?;
        let user_code = store::write(&self.store, move |tx| {
            // A scope the named resource never defined never reaches an owner.
            if let Some(r) = &resource {
                super::catalog::check(tx, std::slice::from_ref(r), &scope)?;
            }
            // At the cap, the requester's oldest waiting requests give way to
            // the new one (an agent that restarted abandoned them).
            let waiting = tx.device_live_count_of(&requester, now)?;
            if waiting >= max_pending {
                let mut extra = waiting - max_pending + 1;
                for mut old in tx.devices_pending(now)? {
                    if extra == 0 {
                        break;
                    }
                    if old.requester.as_deref() == Some(requester.as_str()) {
                        old.expires_at = now;
                        tx.device_put(&old)?;
                        tx.audit_append(
                            now,
                            "-",
                            "device_superseded",
                            &json!({"request": old.id, "agent": old.client_id, "by": id})
                                .to_string(),
                        )?;
                        extra -= 1;
                    }
                }
            }
            let mut user_code = new_user_code(rng.as_ref())?;
            while tx
                .device_by_user_hash(&secret_hash(&user_code.replace('-', "")), now)?
                .is_some()
            {
                user_code = new_user_code(rng.as_ref())?;
            }
            let d = DeviceReq {
                id: id.clone(),
                device_hash,
                user_hash: secret_hash(&user_code.replace('-', "")),
                client_id: client_id.clone(),
                jkt: jkt.clone(),
                scope: scope.clone(),
                resource: resource.clone(),
                created_at: now,
                expires_at: now + ttl,
                interval,
                requester: Some(requester.clone()),
                user_code: Some(user_code.clone()),
                reason: reason.clone(),
                ..DeviceReq::default()
            };
            tx.device_put(&d)?;
            tx.audit_append(
                now,
                "-",
                "device_request",
                &json!({"request": id, "agent": client_id, "scope": scope, "resource": resource,
                        "jkt": jkt, "reason": reason})
                .to_string(),
            )?;
            Ok(user_code)
        })
        .await?;
        let verification_uri = format!("{}/device", self.issuer);
        Ok(DeviceAuthorizationResponse {
            device_code,
            verification_uri_complete: Some(format!("{verification_uri}?user_code={user_code}")),
            user_code,
            verification_uri,
            expires_in: ttl,
            interval: interval.max(1),
        })
    }

    /// The device-code grant at the token endpoint.
    pub(super) async fn device_poll(
        &self,
        device_code: &Secret,
        client_id: Option<String>,
        proof: VerifiedProof,
        mint: Mint,
    ) -> Result<std::result::Result<protonpass_agent::wire::TokenResponse, Error>> {
        let hash = secret_hash(device_code.expose());
        let now = mint.now;
        store::write(&self.store, move |tx| {
            let Some(mut d) = tx.device_by_device_hash(&hash)? else {
                return Err(Error::InvalidGrant("unknown device code".into()));
            };
            if client_id.as_ref().is_some_and(|c| *c != d.client_id) {
                return Err(Error::InvalidGrant(
                    "the device code was issued to another client".into(),
                ));
            }
            if d.jkt
                .as_deref()
                .is_some_and(|k| !super::token::eq_ct(k, &proof.jkt))
            {
                return Err(Error::InvalidGrant(
                    "the device code is bound to another key than the proof's".into(),
                ));
            }
            if d.status == DeviceStatus::Used {
                return Err(Error::InvalidGrant(
                    "the device code was already used".into(),
                ));
            }
            if now >= d.expires_at {
                return Err(Error::ExpiredToken);
            }
            if d.status == DeviceStatus::Denied {
                return Err(Error::AccessDenied);
            }
            // RFC 8628 section 3.5: only accepted polls (proof and nonce fine) reach here.
            if d.interval > 0
                && let Some(last) = d.last_poll
                && now - last < d.interval
            {
                d.interval += 5;
                d.last_poll = Some(now);
                tx.device_put(&d)?;
                return Ok(Err(Error::SlowDown));
            }
            d.last_poll = Some(now);
            if d.status == DeviceStatus::Pending {
                tx.device_put(&d)?;
                return Ok(Err(Error::AuthorizationPending));
            }
            let owner = d.owner.clone().unwrap_or_else(|| "default".into());
            let ttl = d.approved_ttl.unwrap_or(MIN_GRANT_TTL);
            let scope = d.approved_scope.clone().unwrap_or_else(|| d.scope.clone());
            let aud = d
                .approved_audience
                .clone()
                .or(d.resource.clone())
                .ok_or_else(|| Error::InvalidTarget("no audience was approved".into()))?;
            let g = Grant {
                gid: random_id(mint.rng.as_ref(), 16)?,
                owner,
                agent: d.client_id.clone(),
                scope: scope.clone(),
                audiences: vec![aud.clone()],
                jkt: Some(proof.jkt.clone()),
                status: GrantStatus::Active,
                origin: "device".into(),
                created_at: now,
                ttl,
                expires_at: now + ttl,
                enroll_hash: None,
                revoked_at: None,
            };
            tx.grant_put(&g)?;
            for text in &d.approved_budgets {
                let b = super::budget::BudgetSpec::parse(text)?.to_budget(&g, now)?;
                super::budget::put_budget(tx, &g.owner, &b, now)?;
            }
            d.status = DeviceStatus::Used;
            d.gid = Some(g.gid.clone());
            tx.device_put(&d)?;
            let scope = super::catalog::narrow(tx, &aud, &scope, None)?;
            let detail = json!({"request": d.id, "jkt": proof.jkt, "reason": proof.reason});
            Ok(Ok(super::token::first_tokens(
                &mint,
                tx,
                &g,
                scope,
                aud,
                "device_grant",
                detail,
                false,
            )?))
        })
        .await
    }

    /// The owner approves or denies the request with `user_code`. Wrong codes
    /// are limited per `source` and per owner (see [`GUESS_BUDGET`]), except on
    /// the command line ([`CLI_SOURCE`]).
    pub async fn decide(
        &self,
        owner: &str,
        source: &str,
        user_code: &str,
        dec: Decision,
    ) -> Result<Decided> {
        let now = self.clock.now();
        if dec.approve && !(MIN_GRANT_TTL..=MAX_TTL).contains(&dec.ttl) {
            return Err(Error::InvalidRequest(
                "a grant lives from 1 hour to 30 days".into(),
            ));
        }
        if let Some(s) = &dec.scope {
            ScopeSet::parse(s)?;
        }
        let normalized = normalize_user_code(user_code);
        let (owner, source) = (owner.to_owned(), source.to_owned());
        let window = self.cfg.device_ttl;
        store::write(&self.store, move |tx| {
            tx.owner_ensure(&owner, now)?;
            let live = tx.device_live_count(now)?.max(1);
            let (ko, ks) = (format!("owner:{owner}"), format!("source:{source}"));
            let counted = source != CLI_SOURCE;
            if counted && live > GUESS_BUDGET {
                tx.audit_append(now, &owner, "user_code_locked", &json!({"source": source, "live": live}).to_string())?;
                return Ok(Err(Error::TemporarilyUnavailable(format!(
                    "{live} requests are waiting, more than a code may be checked against here ({GUESS_BUDGET}); \
                     approve on the broker's machine: protonpass-broker approve CODE"
                ))));
            }
            let used = tx.attempt_sum(&ko, now - window)?.max(tx.attempt_sum(&ks, now - window)?);
            if counted && used + live > GUESS_BUDGET {
                tx.audit_append(now, &owner, "user_code_locked", &json!({"source": source}).to_string())?;
                return Ok(Err(Error::TemporarilyUnavailable(format!(
                    "too many wrong user codes: entry is locked for up to {window} s"
                ))));
            }
            let found = match &normalized {
                Some(n) => tx.device_by_user_hash(&secret_hash(n), now)?,
                None => None,
            };
            let Some(mut d) = found else {
                if counted {
                    tx.attempt_add(&ko, now, live)?;
                    tx.attempt_add(&ks, now, live)?;
                }
                tx.audit_append(now, &owner, "user_code_wrong", &json!({"source": source}).to_string())?;
                return Ok(Err(Error::InvalidGrant("no pending request has this code".into())));
            };
            d.owner = Some(owner.clone());
            if !dec.approve {
                d.status = DeviceStatus::Denied;
                tx.device_put(&d)?;
                tx.audit_append(now, &owner, "deny", &json!({"request": d.id, "agent": d.client_id, "scope": d.scope}).to_string())?;
                return Ok(Ok(Decided { agent: d.client_id, scope: d.scope, audience: d.resource, approved: false, ttl: 0 }));
            }
            let scope = match negotiate(&d.scope, dec.scope.as_deref()) {
                Ok(s) => s,
                Err(e) => return Ok(Err(e)),
            };
            let audience = match (&d.resource, &dec.audience) {
                (Some(r), Some(a)) if r != a => {
                    return Ok(Err(Error::InvalidTarget(format!("the agent asked for the audience {r}"))));
                }
                (Some(x), _) | (None, Some(x)) => x.clone(),
                (None, None) => {
                    return Ok(Err(Error::InvalidTarget("the request names no audience: pass --audience".into())));
                }
            };
            if let Err(e) = audience_status(tx, &owner, &audience)
                .and_then(|_| super::catalog::check(tx, std::slice::from_ref(&audience), &scope))
            {
                return Ok(Err(e));
            }
            for b in &dec.budgets {
                if let Err(e) = b.check(&scope) {
                    return Ok(Err(e));
                }
            }
            d.approved_budgets = dec.budgets.iter().map(ToString::to_string).collect();
            d.status = DeviceStatus::Approved;
            d.approved_scope = Some(scope.clone());
            d.approved_audience = Some(audience.clone());
            d.approved_ttl = Some(dec.ttl);
            tx.device_put(&d)?;
            tx.audit_append(
                now,
                &owner,
                "approve",
                &json!({"request": d.id, "agent": d.client_id, "requested_scope": d.scope, "scope": scope,
                        "aud": audience, "ttl": dec.ttl})
                .to_string(),
            )?;
            Ok(Ok(Decided { agent: d.client_id, scope, audience: Some(audience), approved: true, ttl: dec.ttl }))
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protonpass_agent::OsRandom;

    #[test]
    fn user_codes_are_base20_and_normalize() {
        for _ in 0..100 {
            let c = new_user_code(&OsRandom).unwrap();
            assert_eq!(c.len(), 9);
            assert_eq!(&c[4..5], "-");
            let n = normalize_user_code(&c.to_lowercase()).unwrap();
            assert_eq!(n, c.replace('-', ""));
        }
        assert_eq!(
            normalize_user_code("bcdf ghjk").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(
            normalize_user_code("b.c-d_f ghjk!").as_deref(),
            Some("BCDFGHJK")
        );
        assert!(normalize_user_code("AAAA-AAAA").is_none());
        assert!(normalize_user_code("BCDF-GHJ").is_none());
    }

    #[test]
    fn guess_budget_meets_the_bound() {
        // 5 live-code-guesses over 20^8 codes is below 2^-32.
        assert!((GUESS_BUDGET as f64) / 20f64.powi(8) < 2f64.powi(-32));
        assert!(((GUESS_BUDGET + 1) as f64) / 20f64.powi(8) >= 2f64.powi(-32));
    }
}
