//! The broker's flows, independent of HTTP: each takes parameters, reads the
//! injected clock and randomness, and runs its reads and writes (including its
//! audit record) in one store transaction.

pub mod admin;
pub mod authcode;
pub mod budget;
pub mod catalog;
pub mod device;
pub mod device_cancel;
pub mod issue;
pub mod lifecycle;
pub mod proof;
pub mod register;
pub mod resource;
pub mod stepup;
pub mod token;
pub mod upkeep;

use std::sync::{Arc, RwLock};

use protonpass_agent::{Clock, Error, ProofOptions, ProofVerifier, Random, Result};
use serde_json::{Value, json};

use crate::config::Config;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::model::{Grant, GrantStatus, Resource, TokenRec, TokenStatus};
use crate::protocol::nonce::NonceSource;
use crate::store::{self, Store, Tx};

pub use crate::protocol::params::Params;

/// The broker: configuration, store, keys, and the shared verifiers.
#[derive(Debug)]
pub struct Broker {
    /// Settings.
    pub cfg: Config,
    /// The issuer URL (no trailing slash).
    pub issuer: String,
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Randomness.
    pub rng: Arc<dyn Random>,
    /// Signing keys.
    pub keys: RwLock<Arc<KeyRing>>,
    /// DPoP proof checks, this process's replay cache and the shared record.
    pub proofs: proof::Proofs,
    /// DPoP nonces.
    pub nonces: NonceSource,
    /// Counters.
    pub metrics: Metrics,
    /// The newest revocation feed position known to this process.
    pub feed: tokio::sync::watch::Sender<i64>,
    /// Per-source rate limit of the flood-prone endpoints (`None`: off).
    pub limiter: Option<crate::ratelimit::SourceLimiter>,
    /// The newest audit chain position this process verified.
    pub chain_memo: upkeep::ChainMemo,
    /// Set when shutdown starts: `/readyz` answers 503 while requests drain.
    pub draining: std::sync::atomic::AtomicBool,
    /// Client ID Metadata Documents fetched lately (`service::authcode`).
    pub client_documents: crate::client_document::DocumentCache,
}

impl Broker {
    /// Assemble a broker.
    pub fn new(
        cfg: Config,
        issuer: String,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn Random>,
        keys: KeyRing,
    ) -> Result<Self> {
        let nonces = NonceSource::new(rng.as_ref())?;
        let opts = ProofOptions {
            max_age: cfg.proof_window,
            max_skew: cfg.proof_window,
            ..ProofOptions::default()
        };
        let head = store::read_blocking(&store, |tx| tx.revocation_head())?;
        let cfg_limit = cfg.rate_limit;
        let (feed, _) = tokio::sync::watch::channel(head);
        Ok(Broker {
            cfg,
            issuer,
            store,
            clock,
            rng,
            keys: RwLock::new(Arc::new(keys)),
            // Room for the proofs of the last window at about 17,000 requests/s
            // (a full cache refuses new proofs rather than forget live ones).
            proofs: proof::Proofs::new(ProofVerifier::new(opts, 1 << 20)),
            nonces,
            metrics: Metrics::default(),
            limiter: cfg_limit.and_then(crate::ratelimit::SourceLimiter::new),
            feed,
            chain_memo: upkeep::ChainMemo::default(),
            draining: std::sync::atomic::AtomicBool::new(false),
            client_documents: crate::client_document::DocumentCache::default(),
        })
    }

    /// The current key ring.
    pub fn keyring(&self) -> Arc<KeyRing> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replace the key ring.
    pub fn set_keyring(&self, k: KeyRing) {
        match self.keys.write() {
            Ok(mut g) => *g = Arc::new(k),
            Err(p) => *p.into_inner() = Arc::new(k),
        }
    }

    /// [`Broker::feed_advanced`] after a write that revoked something only
    /// on some paths (a reused refresh token or authorization code).
    fn feed_advanced_if(&self, seq: Option<i64>) {
        if let Some(seq) = seq {
            self.feed_advanced(seq);
        }
    }

    /// Tell feed subscribers about a new position.
    pub fn feed_advanced(&self, seq: i64) {
        self.feed.send_if_modified(|cur| {
            if seq > *cur {
                *cur = seq;
                true
            } else {
                false
            }
        });
    }

    /// Record a rejected request in the audit log, without waiting.
    pub fn audit_rejected(&self, owner: &str, what: &str, err: &Error, mut detail: Value) {
        if let Value::Object(m) = &mut detail {
            m.insert("request".into(), what.into());
            m.insert("error".into(), err.code().into());
            if let Some(r) = err.reason() {
                m.insert("reason".into(), r.as_str().into());
            }
        }
        let (now, owner, text) = (self.clock.now(), owner.to_owned(), detail.to_string());
        if !store::write_detached(&self.store, move |tx| {
            tx.audit_append(now, &owner, "rejected", &text).map(|_| ())
        }) {
            self.metrics.audit_dropped();
        }
    }
}

/// How an audience stands for an owner who grants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AudienceStatus {
    /// No owner registered a resource server for it.
    Unregistered,
    /// The owner registered it.
    Own,
    /// Another owner registered it as shared (an API serving many users).
    Shared,
}

/// Whether `owner` may grant `aud`: an audience registered by another owner
/// belongs to that owner, unless it registered it as shared. Refused as
/// `invalid_target`.
pub fn audience_status(tx: &mut dyn Tx, owner: &str, aud: &str) -> Result<AudienceStatus> {
    let regs = tx.resources_for_audience(aud)?;
    if regs.is_empty() {
        Ok(AudienceStatus::Unregistered)
    } else if regs.iter().any(|r| r.owner == owner) {
        Ok(AudienceStatus::Own)
    } else if regs.iter().any(|r| r.shared) {
        Ok(AudienceStatus::Shared)
    } else {
        Err(Error::InvalidTarget(format!(
            "the audience {aud} is registered by another owner: only that owner can grant it"
        )))
    }
}

/// Whether a grant can issue tokens at `now`.
pub fn grant_live(g: &Grant, now: i64) -> bool {
    g.status == GrantStatus::Active && now < g.expires_at
}

/// The owner's grant `gid` for an owner's command; another owner's grant is
/// answered like a missing one. With `unrevoked`, a revoked grant is refused.
pub(super) fn owner_grant(
    tx: &mut dyn Tx,
    owner: &str,
    gid: &str,
    unrevoked: bool,
) -> Result<Grant> {
    let g = tx
        .grant_get(gid)?
        .filter(|g| g.owner == owner)
        .ok_or_else(|| Error::InvalidRequest(format!("no grant {gid} of this owner")))?;
    if unrevoked && g.status == GrantStatus::Revoked {
        return Err(Error::InvalidRequest(format!("the grant {gid} is revoked")));
    }
    Ok(g)
}

/// Audit a change (`event`) to a resource server's record, with its scopes'
/// names; `by` says where the change came from when not from the operator.
pub(super) fn audit_resource(
    tx: &mut dyn Tx,
    now: i64,
    event: &str,
    r: &Resource,
    by: Option<&str>,
) -> Result<()> {
    let mut detail = json!({"client_id": r.client_id, "audience": r.audience, "shared": r.shared,
        "scopes": r.scopes.scopes.iter().map(|s| &s.name).collect::<Vec<_>>()});
    if let (Some(by), Some(m)) = (by, detail.as_object_mut()) {
        m.insert("by".into(), by.into());
    }
    tx.audit_append(now, &r.owner, event, &detail.to_string())
        .map(drop)
}

/// Revoke a grant and put it in the feed; returns the feed position.
pub fn revoke_grant(tx: &mut dyn Tx, g: &mut Grant, now: i64, by: &str) -> store::Result<i64> {
    g.status = GrantStatus::Revoked;
    g.revoked_at = Some(now);
    g.enroll_hash = None;
    tx.grant_put(g)?;
    let seq = tx.revocation_add(None, Some(&g.gid), g.expires_at.max(now + 1), &g.owner)?;
    tx.audit_append(
        now,
        &g.owner,
        "revoke",
        &json!({"gid": g.gid, "agent": g.agent, "by": by, "feed_seq": seq}).to_string(),
    )?;
    Ok(seq)
}

/// Revoke one token and put it in the feed; returns the feed position.
pub fn revoke_token(tx: &mut dyn Tx, t: &mut TokenRec, now: i64, by: &str) -> store::Result<i64> {
    t.status = TokenStatus::Revoked;
    tx.token_put(t)?;
    let seq = tx.revocation_add(Some(&t.jti), None, t.exp.max(now + 1), &t.owner)?;
    tx.audit_append(
        now,
        &t.owner,
        "revoke",
        &json!({"jti": t.jti, "gid": t.gid, "agent": t.client_id, "by": by, "feed_seq": seq})
            .to_string(),
    )?;
    Ok(seq)
}
