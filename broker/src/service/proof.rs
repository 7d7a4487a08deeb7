//! DPoP proofs at the broker's own endpoints and its gateway: a proof that
//! passes its checks counts once in this process (the core's replay cache)
//! and, when replicas share the store, once across all of them
//! ([`store::proof_once`]). The only way from a request's proof to a
//! [`VerifiedProof`] is [`Unrecorded::once`], so an endpoint cannot accept a
//! proof and forget the shared record.

use protonpass_agent::{ProofCheck, ProofVerifier, ReplayCache, Result, VerifiedProof};

use super::Broker;
use crate::store;

/// The broker's proof verifier (wraps the core's, whose replay cache is this
/// process's alone).
#[derive(Debug)]
pub struct Proofs(ProofVerifier);

/// A proof that passed every check of this process, not yet recorded in a
/// store that replicas share.
#[must_use = "a proof is accepted only once `once` has recorded it"]
#[derive(Debug)]
pub struct Unrecorded(VerifiedProof);

impl Proofs {
    pub(super) fn new(inner: ProofVerifier) -> Self {
        Proofs(inner)
    }

    /// Check the request's one DPoP header against `check` and this
    /// process's replay cache, for a request from `source` (the client's
    /// address, `None` when unknown: see [`ProofVerifier::verify_from`]).
    pub fn verify(
        &self,
        dpop: &[String],
        check: &ProofCheck<'_>,
        now: i64,
        source: Option<&str>,
    ) -> Result<Unrecorded> {
        self.0
            .verify_from(
                dpop,
                check,
                now,
                source.and_then(crate::ratelimit::source_tag),
            )
            .map(Unrecorded)
    }

    /// The replay cache (for metrics).
    pub fn replay_cache(&self) -> &ReplayCache {
        self.0.replay_cache()
    }
}

impl Unrecorded {
    /// The agent's stated reason (for the record of a refused request).
    pub fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }

    /// Record the proof in the store replicas share (nothing to do for a
    /// store of one process) and accept it; a proof another replica
    /// accepted first is refused as a replay.
    pub async fn once(self, b: &Broker, now: i64) -> Result<VerifiedProof> {
        let p = self.0;
        if b.store.shares_proofs() {
            let key = ReplayCache::key(&p.jti, &p.htm, &p.htu);
            // Remembered as long as the process's replay cache remembers it.
            let forget_at = p
                .iat
                .saturating_add(b.proofs.0.options.max_age)
                .saturating_add(1);
            store::proof_once(&b.store, key, now, forget_at).await?;
        }
        Ok(p)
    }
}
