//! Every check of a gateway call before the upstream is contacted: the
//! token and proof, revocation, the owner, the path and its rule, and a
//! one-time token's redemption (`spec/10-gateway-rules.md` section 10.3).

use super::*;
use crate::service::proof::Unrecorded;

/// A request that passed every check: what to forward where.
pub(super) struct Allowed {
    pub(super) up: Arc<Upstream>,
    pub(super) rec: UpstreamRec,
    pub(super) path: String,
    pub(super) jti: String,
    pub(super) gid: String,
    /// The proof's `jti`.
    pub(super) proof_jti: String,
    /// The matching rule's spend and its budget scope, if it spends.
    pub(super) spend: Option<(crate::gateway::spend_rule::SpendRule, String)>,
    /// Whether the token is a step-up's one-time token.
    pub(super) one_time: bool,
    /// The revocation feed, followed from before the checks read the store:
    /// a revocation after that read (while the upstream works on the
    /// request, or while its answer comes) is seen as a change.
    pub(super) feed: tokio::sync::watch::Receiver<i64>,
}

/// A request whose token and proof passed.
struct Verified {
    claims: std::sync::Arc<protonpass_agent::AccessTokenClaims>,
    proof: protonpass_agent::VerifiedProof,
}

/// The token (verified once, then from the cache) and the proof (every
/// request), as `protonpass_agent::verify_request` checks them.
#[allow(clippy::too_many_arguments)]
fn check_token(
    gw: &Gateway,
    req: &ProofCheck<'_>,
    authz: &[String],
    dpop: &[String],
    keys: &protonpass_agent::KeySet,
    validation: &TokenValidation,
    now: i64,
) -> Result<
    (
        std::sync::Arc<protonpass_agent::AccessTokenClaims>,
        Unrecorded,
    ),
    Error,
> {
    let token = dpop_token(authz)?;
    let claims = gw.tokens.verify(token, keys, validation, now)?;
    let check = ProofCheck {
        access_token: Some(token),
        expected_jkt: Some(&claims.jkt),
        ..*req
    };
    let proof = gw.b.proofs.verify(dpop, &check, now, None)?;
    Ok((claims, proof))
}

/// Every check before the upstream is contacted, in the order of
/// `spec/10-gateway-rules.md` section 10.3; a refusal is the response to send.
pub(super) async fn authorize(
    gw: &Gateway,
    name: &str,
    req: &Parts,
    call: &mut Call,
) -> Result<Allowed, Response> {
    let b = &gw.b;
    let feed = b.feed.subscribe();
    let now = b.clock.now();
    let (authz, dpop) = (
        header_values(&req.headers, "authorization"),
        header_values(&req.headers, "dpop"),
    );
    // The feed head and the upstream's record, read after the request arrived
    // (shared with the requests that arrived with it).
    let seen = if rules::valid_name(name) {
        let Some(seen) = gw.live.read(&b.store, name).await else {
            let e = Error::TemporarilyUnavailable("storage unavailable".into());
            return Err(refuse(call, &e, None, None));
        };
        Some(seen)
    } else {
        None
    };
    let (head, rec) = match seen {
        Some(s) => (s.head, s.upstream),
        None => (0, None),
    };
    let Some(rec) = rec else {
        call.status = 404;
        call.error = Some("not_found");
        return Err(json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such upstream",
        ));
    };
    call.owner = rec.owner.clone();
    let up = gw
        .rules_of(&rec)
        .map_err(|e| refuse(call, &e, None, None))?;

    // The token and proof, as a native API checks them; htu is the gateway URL
    // from the issuer, never from the Host header.
    let raw = req.uri.path();
    let url = format!("{}{raw}", b.issuer);
    let mut validation = TokenValidation::new(b.issuer.clone(), up.audience.clone());
    // The gateway redeems one-time tokens itself.
    validation.accept_one_time = true;
    validation.leeway = 0;
    let accepts = |n: &str| b.nonces.accepts(n, now);
    let nonce: Option<&dyn Fn(&str) -> bool> = if b.cfg.dpop_nonce {
        Some(&accepts)
    } else {
        None
    };
    let keys = b.keyring();
    let method = req.method.as_str();
    let checked = check_token(
        gw,
        &ProofCheck {
            method,
            url: &url,
            access_token: None,
            expected_jkt: None,
            nonce,
        },
        &authz,
        &dpop,
        &keys.keyset,
        &validation,
        now,
    );
    let checked = match checked {
        Ok((claims, proof)) => {
            call.agent = claims.client_id.clone();
            call.gid = claims.gid.clone();
            call.reason = proof.reason().map(str::to_owned);
            // Replicas sharing a store accept a proof once between them, as
            // at the broker's own endpoints (nothing to do for a store of
            // one process).
            proof
                .once(b, now)
                .await
                .map(|proof| Verified { claims, proof })
        }
        Err(e) => Err(e),
    };
    let v = checked.map_err(|e| {
        let fresh = matches!(e, Error::UseDpopNonce).then(|| b.nonces.issue(now));
        let mut r = refuse(call, &e, None, fresh);
        if r.status() == StatusCode::UNAUTHORIZED {
            announce_metadata(&mut r, b, name, &up);
        }
        r
    })?;

    // Revocation cuts off at once: the store, not only the token's expiry. A
    // token found live under the feed head just read is still live (only a
    // revocation, which moves the head, or expiry ends that).
    let one_time = if gw.live.known_live(&v.claims.jti, &v.claims.gid, head, now) {
        false
    } else {
        let (jti, gid) = (v.claims.jti.clone(), v.claims.gid.clone());
        let (token, grant, one_time) = store::read(&b.store, move |tx| {
            Ok((
                tx.token_get(&jti)?,
                tx.grant_get(&gid)?,
                tx.stepup_by_jti(&jti)?.is_some(),
            ))
        })
        .await
        .map_err(|e| refuse(call, &e, None, None))?;
        let live = match (&token, &grant) {
            (Some(t), Some(g)) => t.status == TokenStatus::Active && grant_live(g, now),
            _ => false,
        };
        if !live {
            let e = Error::InvalidToken {
                reason: Reason::Revoked,
                message: "the token or its grant was revoked".into(),
            };
            return Err(refuse(call, &e, None, None));
        }
        // A one-time token is spent without a revocation: never remembered.
        if let (false, Some(g)) = (one_time, &grant) {
            let until = g.expires_at.min(v.claims.exp);
            gw.live
                .remember(&v.claims.jti, &v.claims.gid, head, until, now);
        }
        one_time
    };
    if v.claims.sub != rec.owner {
        let e = Error::InsufficientScope(
            "this upstream belongs to another owner: only its owner's grants can use it".into(),
        );
        return Err(refuse(call, &e, None, None));
    }

    let rest = raw
        .strip_prefix("/gateway/")
        .and_then(|a| a.strip_prefix(name))
        .unwrap_or_default();
    let path = normalise(rest).map_err(|why| {
        let e = Error::InvalidRequest(format!("the path cannot be forwarded safely: {}", why.0));
        refuse(call, &e, None, None)
    })?;
    call.path = path.clone();
    let granted = ScopeSet::parse(&v.claims.scope).unwrap_or_default();
    let Some(rule) = crate::gateway::spend_rule::admitted(&up.rules, method, &path, &granted)
    else {
        let needed = rules::matching_scopes(&up.rules, method, &path);
        let msg = match needed.first() {
            Some(s) => format!("this request needs the scope {s}"),
            None => format!("no rule of upstream {name} allows {method} {path}"),
        };
        let e = Error::InsufficientScope(msg);
        return Err(refuse(call, &e, needed.first().map(String::as_str), None));
    };
    let spend = rule.spend.clone().and_then(|sp| {
        crate::gateway::spend_rule::budget_scope(&rule.scope).map(|scope| (sp, scope))
    });
    // A step-up's one-time token works once here too: a rule that spends
    // redeems it with the spend, any other call now.
    if one_time && spend.is_none() {
        let jti = v.claims.jti.clone();
        store::write(&b.store, move |tx| {
            use crate::service::stepup::{Redeem, redeem_one_time};
            redeem_one_time(tx, &jti, Redeem::Use, "gateway", now).map(drop)
        })
        .await
        .map_err(|e| refuse(call, &for_agent(e, true), None, None))?;
    }
    Ok(Allowed {
        up,
        rec,
        path,
        jti: v.claims.jti.clone(),
        gid: v.claims.gid.clone(),
        proof_jti: v.proof.jti.clone(),
        spend,
        one_time,
        feed,
    })
}

/// The broker's refusal of a spend or a redemption as the agent's: a revoked
/// or expired grant, or a one-time token already used, is the token's
/// failure (`401 invalid_token`, RFC 6750), never a server error.
pub(super) fn for_agent(e: Error, one_time: bool) -> Error {
    match e {
        Error::InvalidGrant(message) => Error::InvalidToken {
            reason: if one_time {
                Reason::OneTime
            } else {
                Reason::Revoked
            },
            message,
        },
        other => other,
    }
}
