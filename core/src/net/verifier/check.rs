//! Verifying one request: the token (cached once verified, keys refetched
//! for an unknown `kid`), the owner, revocation, the DPoP proof and server
//! nonces, and what to do when the revocation feed is stale; a step-up's
//! one-time token is redeemed at the broker on its first use instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::usage::UseTicket;
use super::{Identity, Inner, Rejection, StalePolicy, TOKEN_CACHE_MAX, Verifier, http};
use crate::dpop::{ProofCheck, VerifiedProof};
use crate::error::{Error, Reason, Result};
use crate::request::dpop_token;
use crate::scope::ScopeSet;
use crate::token::{AccessTokenClaims, KeySet};
use crate::wire::IntrospectionResponse;

/// Whether the one `Authorization` value uses the Bearer scheme.
fn bearer_scheme<S: AsRef<str>>(authz: &[S]) -> bool {
    match authz {
        [v] => v
            .as_ref()
            .split_once(' ')
            .is_some_and(|(s, _)| s.eq_ignore_ascii_case("bearer")),
        _ => false,
    }
}

/// The token of a one-valued `Authorization: Bearer TOKEN` (RFC 6750).
fn bearer_token<S: AsRef<str>>(authz: &[S]) -> Result<&str> {
    let token = authz
        .first()
        .and_then(|v| v.as_ref().split_once(' '))
        .map(|(_, t)| t.trim_matches(' '))
        .unwrap_or("");
    if token.is_empty() || token.contains(' ') {
        return Err(Error::token(
            Reason::Malformed,
            "the Authorization header holds no token",
        ));
    }
    Ok(token)
}

fn header_values<'a, K: AsRef<str>, V: AsRef<str>>(
    headers: &'a [(K, V)],
    name: &str,
) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
        .collect()
}

impl Verifier {
    /// Verify one request: `method`, the full `url` as the client addressed it,
    /// and its headers (names case-insensitive). Returns who is calling, or the
    /// rejection to answer with. A step-up's one-time token (`one_time: true`)
    /// is redeemed at the broker with this API's credentials once every local
    /// check passed: accepted once, then `invalid_token` (reason `one_time`);
    /// refused without credentials; a 503 when the broker cannot answer.
    pub async fn verify<K: AsRef<str>, V: AsRef<str>>(
        &self,
        method: &str,
        url: &str,
        headers: &[(K, V)],
    ) -> std::result::Result<Identity, Rejection> {
        let mut jti = None;
        let r = self.verify_inner(method, url, headers, &mut jti).await;
        let r = match (&self.inner.opts.resource_metadata, r) {
            (Some(m), Err(mut rej)) if rej.status == 401 => {
                rej.www_authenticate = rej
                    .www_authenticate
                    .map(|c| crate::resource_metadata::with_resource_metadata(&c, m));
                Err(rej)
            }
            (_, r) => r,
        };
        if self.inner.opts.usage_reports.is_none() {
            return r;
        }
        self.record_use(method, url, r, jti)
    }

    /// `jti` receives the token's id as soon as its signature is verified, so
    /// that a later refusal is reported against it.
    async fn verify_inner<K: AsRef<str>, V: AsRef<str>>(
        &self,
        method: &str,
        url: &str,
        headers: &[(K, V)],
        jti: &mut Option<String>,
    ) -> std::result::Result<Identity, Rejection> {
        let inner = &self.inner;
        let reject = |e: Error| Rejection::new(e, None, None);
        let authz = header_values(headers, "authorization");
        let dpop = header_values(headers, "dpop");
        let bearer = inner.opts.accept_bearer && bearer_scheme(&authz);
        let token = if bearer {
            bearer_token(&authz).map_err(reject)?
        } else {
            dpop_token(&authz).map_err(reject)?
        };
        let now = inner.opts.clock.now();
        let binding = if bearer {
            crate::token::Binding::Bearer
        } else {
            crate::token::Binding::Dpop
        };
        // A one-time token is never cached: only a non-one-time token is
        // found there.
        let mut one_time = false;
        let claims = match self.cached_claims(token, now) {
            // The cache holds claims of either kind: the binding must still
            // match the scheme this request used.
            Some(c) if c.jkt.is_empty() != bearer => {
                return Err(reject(Error::token(
                    Reason::Scheme,
                    if bearer {
                        "this token is DPoP-bound: use the DPoP scheme with a proof"
                    } else {
                        "this is a bearer token: send it with the Bearer scheme"
                    },
                )));
            }
            Some(c) => c,
            None => {
                if let Some(kid) = crate::token::peek_kid(token) {
                    let known = inner.keys.read().map(|k| k.contains(&kid)).unwrap_or(false);
                    if !known {
                        // Rate-limited inside: at most one JWKS fetch per 10 s.
                        let _ = fetch_jwks(inner).await;
                    }
                }
                let claims = {
                    let keys = inner
                        .keys
                        .read()
                        .map_err(|_| reject(Error::Server("key set poisoned".into())))?;
                    crate::token::verify_token_bound(
                        token,
                        &keys,
                        &inner.validation,
                        now,
                        jti,
                        binding,
                    )
                    .map_err(reject)?
                };
                let claims = Arc::new(claims);
                // Its signature is verified: its `one_time` claim can be read.
                one_time = crate::token::is_one_time(token);
                if !one_time {
                    self.cache_claims(token, claims.clone(), now);
                }
                claims
            }
        };
        *jti = Some(claims.jti.clone());
        if let Some(owner) = &inner.opts.owner
            && claims.sub != *owner
        {
            return Err(reject(Error::token(
                Reason::Owner,
                "the token acts for another owner than the one this API serves",
            )));
        }
        // Revocation before the proof: a revoked token consumes no replay entry.
        if inner.revoked.is_revoked(&claims.jti, &claims.gid) {
            return Err(reject(Error::token(
                Reason::Revoked,
                "the token or its grant was revoked by the owner",
            )));
        }
        // The proof check holds a non-Send closure: keep it out of any await.
        // A bearer token has no proof to check.
        let proof: Option<VerifiedProof> = if bearer {
            None
        } else {
            let nonce_ok = |n: &str| self.nonce_valid(n, now);
            let check = ProofCheck {
                method,
                url,
                access_token: Some(token),
                expected_jkt: Some(&claims.jkt),
                nonce: if inner.opts.require_nonce {
                    Some(&nonce_ok)
                } else {
                    None
                },
            };
            inner
                .proofs
                .verify(&dpop, &check, now)
                .map_err(|e| {
                    let nonce = matches!(e, Error::UseDpopNonce).then(|| self.issue_nonce(now));
                    Rejection::new(e, None, nonce)
                })
                .map(Some)?
        };
        let scopes = ScopeSet::parse(&claims.scope).map_err(|_| {
            reject(Error::token(
                Reason::MissingClaim,
                "the token's scope is malformed",
            ))
        })?;
        if one_time {
            // Spent on first use: redeemed at the broker once every local
            // check passed, which also vouches that it is not revoked.
            self.redeem_one_time(token).await.map_err(reject)?;
        } else if inner.opts.follow_feed && self.feed_stale() {
            match &inner.opts.stale_policy {
                StalePolicy::FailClosed => {
                    return Err(reject(Error::TemporarilyUnavailable(
                        "cannot confirm the token is not revoked: the broker's revocation feed is unreachable".into(),
                    )));
                }
                StalePolicy::Introspect {
                    client_id,
                    client_secret,
                } => {
                    let active = introspect(inner, token, client_id, client_secret)
                        .await
                        .map_err(|e| match e {
                            // Neither the feed nor introspection can vouch for
                            // the token: the same answer as FailClosed.
                            Error::BrokerUnavailable(m) => reject(Error::TemporarilyUnavailable(
                                format!("cannot confirm the token is not revoked: {m}"),
                            )),
                            e => reject(e),
                        })?;
                    if !active {
                        return Err(reject(Error::token(
                            Reason::Revoked,
                            "the broker says the token is not active",
                        )));
                    }
                }
            }
        }
        Ok(Identity {
            owner: claims.sub.clone(),
            agent: claims.client_id.clone(),
            scopes,
            token_id: claims.jti.clone(),
            grant_id: claims.gid.clone(),
            reason: proof.and_then(|p| p.reason),
            jkt: claims.jkt.clone(),
            expires_at: claims.exp,
            use_ticket: UseTicket::default(),
        })
    }

    /// Redeem a step-up's one-time token at the broker (introspection, which
    /// marks it used in the transaction that checks it): accepted once, by
    /// one verifier of one API; any later use is `invalid_token`. Without
    /// resource credentials this API cannot redeem it and refuses it.
    async fn redeem_one_time(&self, token: &str) -> Result<()> {
        let Ok((id, secret)) = self.credentials() else {
            return Err(Error::token(
                Reason::OneTime,
                "this API accepts no one-time (step-up) tokens: it needs its resource credentials (client id and secret, `protonpass-broker resource add`) to redeem them at the broker",
            ));
        };
        let active = introspect(&self.inner, token, &id, &secret)
            .await
            .map_err(|e| {
                // The details (the broker's address, its words) are for this
                // API's log, not for the agent.
                tracing::warn!(error = %e, "cannot redeem a one-time token at the broker");
                match e {
                    // This API's misconfiguration, never the agent's fault.
                    Error::InvalidClient(_) => {
                        Error::Server("the broker refused this API's credentials".into())
                    }
                    // No answer to rely on: never an acceptance.
                    _ => Error::TemporarilyUnavailable(
                        "cannot redeem the one-time token at the broker now: try again".into(),
                    ),
                }
            })?;
        if !active {
            return Err(Error::token(
                Reason::OneTime,
                "this one-time token was already used (or its grant was revoked)",
            ));
        }
        Ok(())
    }

    fn cached_claims(&self, token: &str, now: i64) -> Option<Arc<AccessTokenClaims>> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let c = self.inner.token_cache.read().ok()?.get(&key).cloned()?;
        (now < c.exp.saturating_add(self.inner.validation.leeway)).then_some(c)
    }

    fn cache_claims(&self, token: &str, claims: Arc<AccessTokenClaims>, now: i64) {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Ok(mut m) = self.inner.token_cache.write() {
            if m.len() >= TOKEN_CACHE_MAX {
                m.retain(|_, c| now < c.exp);
                if m.len() >= TOKEN_CACHE_MAX {
                    m.clear();
                }
            }
            m.insert(key, claims);
        }
    }

    fn nonce_for_bucket(&self, bucket: i64) -> String {
        let mut h = Sha256::new();
        h.update(self.inner.nonce_secret);
        h.update(bucket.to_be_bytes());
        let d = h.finalize();
        format!("{bucket:x}.{}", crate::b64::encode(&d[..16]))
    }

    /// A fresh server nonce (valid for 60 to 120 seconds).
    pub fn issue_nonce(&self, now: i64) -> String {
        self.nonce_for_bucket(now.div_euclid(60))
    }

    fn nonce_valid(&self, nonce: &str, now: i64) -> bool {
        use subtle::ConstantTimeEq;
        let b = now.div_euclid(60);
        [b, b - 1].iter().any(|bucket| {
            bool::from(
                self.nonce_for_bucket(*bucket)
                    .as_bytes()
                    .ct_eq(nonce.as_bytes()),
            )
        })
    }

    fn feed_stale(&self) -> bool {
        self.inner
            .feed_contact
            .lock()
            .map(|t| t.elapsed() > self.inner.opts.max_staleness)
            .unwrap_or(true)
    }
}

pub(super) async fn fetch_jwks(inner: &Arc<Inner>) -> Result<()> {
    {
        let mut last = inner
            .last_jwks_fetch
            .lock()
            .map_err(|_| Error::Server("poisoned".into()))?;
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            return Ok(());
        }
        *last = Some(Instant::now());
    }
    let http = http::client()?;
    let resp = http
        .get(&inner.meta.jwks_uri)
        .send()
        .await
        .map_err(|e| http::unreachable("fetching the JWKS", &e))?;
    let status = resp.status().as_u16();
    let body = http::read_body(resp).await?;
    if status != 200 {
        return Err(http::error_from_body(status, &body));
    }
    let text =
        String::from_utf8(body).map_err(|_| Error::InvalidResponse("JWKS not UTF-8".into()))?;
    let set = KeySet::from_jwks_json(&text)?;
    if let Ok(mut k) = inner.keys.write() {
        *k = set;
    }
    // A key may have left the set (rotated out, or withdrawn after a
    // compromise): tokens verified under the old set are checked again.
    if let Ok(mut c) = inner.token_cache.write() {
        c.clear();
    }
    Ok(())
}

async fn introspect(inner: &Arc<Inner>, token: &str, id: &str, secret: &str) -> Result<bool> {
    let http = http::client()?;
    let resp = http
        .post(&inner.meta.introspection_endpoint)
        .basic_auth(id, Some(secret))
        .form(&[("token", token), ("token_type_hint", "access_token")])
        .send()
        .await
        .map_err(|e| http::unreachable("introspecting the token", &e))?;
    let status = resp.status().as_u16();
    let body = http::read_body(resp).await?;
    if status != 200 {
        return Err(http::error_from_body(status, &body));
    }
    let r: IntrospectionResponse = serde_json::from_slice(&body)
        .map_err(|e| Error::InvalidResponse(format!("introspection: {e}")))?;
    Ok(r.active)
}
