//! The resource-server side: verify DPoP-bound requests against the broker's
//! keys, with a replay cache, a cache of verified tokens, and revocations
//! learned from the broker's feed; a step-up's one-time token is redeemed
//! at the broker on its first use (never cached).
//!
//! One concern per file: [`check`] verifies a request (token, proof,
//! revocation, staleness policy); [`identity`] is what a verified request
//! tells the API, or the rejection to answer with; [`feed`] follows the
//! broker's revocation feed; [`usage`] reports each request to the broker;
//! [`spend`] spends against the owner's budgets.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

mod check;
mod feed;
mod identity;
mod spend;
mod usage;

pub use identity::{Identity, Rejection};

use super::http;
use crate::clock::{Clock, OsRandom, Random, SystemClock};
use crate::dpop::{ProofOptions, ProofVerifier};
use crate::error::{Error, Result};
use crate::token::{AccessTokenClaims, KeySet, TokenValidation};
use crate::wire::{ServerMetadata, UsageEvent};
use check::fetch_jwks;
use feed::{Revoked, feed_loop, poll_feed};
use usage::usage_loop;

/// What to do when the revocation feed has been unreachable for longer than
/// [`VerifierOptions::max_staleness`].
#[derive(Clone)]
pub enum StalePolicy {
    /// Refuse every request with 503 until the feed is back (the default).
    FailClosed,
    /// Ask the broker's introspection endpoint about each token.
    Introspect {
        /// The resource server's client id (`resource add`).
        client_id: String,
        /// Its secret.
        client_secret: Zeroizing<String>,
    },
}

impl fmt::Debug for StalePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StalePolicy::FailClosed => f.write_str("FailClosed"),
            StalePolicy::Introspect { client_id, .. } => {
                write!(
                    f,
                    "Introspect {{ client_id: {client_id:?}, client_secret: <redacted> }}"
                )
            }
        }
    }
}

/// Settings of a [`Verifier`].
#[derive(Clone)]
pub struct VerifierOptions {
    /// The broker's issuer URL (compared verbatim with `iss`).
    pub issuer: String,
    /// This API's audience.
    pub audience: String,
    /// Require server-provided DPoP nonces (off by default).
    pub require_nonce: bool,
    /// Follow the revocation feed (on by default).
    pub follow_feed: bool,
    /// How long the feed may be unreachable before [`StalePolicy`] applies.
    pub max_staleness: Duration,
    /// What to do when it is stale.
    pub stale_policy: StalePolicy,
    /// Proof checks (iat window, sizes, ES256).
    pub proof: ProofOptions,
    /// Replay cache capacity.
    pub replay_capacity: usize,
    /// The owner this API serves: a token acting for anyone else (its `sub`)
    /// is refused with `invalid_token` (reason `owner`). The broker signs
    /// tokens for every owner with the same keys, so without this an API
    /// accepts the tokens of any owner whose grants name its audience.
    pub owner: Option<String>,
    /// Report each request to the broker (`POST /audit/usage`, batched every
    /// second) with these credentials (client id, secret): allowed ones, and
    /// refused ones with their error code and finer reason, including the
    /// refusals of [`Identity::require`] and [`Identity::require_amount`].
    pub usage_reports: Option<(String, Zeroizing<String>)>,
    /// This API's credentials at the broker (client id, secret: `resource
    /// add`) for [`Verifier::spend`] and [`Verifier::refund`], and to redeem
    /// a step-up's one-time token (`one_time: true`) on its first use; when
    /// `None`, those of `usage_reports` or of the introspection policy are
    /// used. A verifier with none of them refuses one-time tokens
    /// (`invalid_token`): it could not tell their first use from a second.
    pub credentials: Option<(String, Zeroizing<String>)>,
    /// The URL of this API's protected-resource metadata (RFC 9728), announced
    /// as `resource_metadata` in every `401` challenge. Set it when the API
    /// serves the document (see [`crate::resource_metadata`]).
    pub resource_metadata: Option<String>,
    /// Also accept bearer tokens (`Authorization: Bearer`, no proof) that the
    /// broker issued without a key binding, to clients that cannot do DPoP
    /// (off by default; the owner turns it on per resource at the broker,
    /// which then issues such tokens for at most 10 minutes). A DPoP-bound
    /// token sent as Bearer is still refused.
    pub accept_bearer: bool,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Randomness (nonces).
    pub rng: Arc<dyn Random>,
}

impl fmt::Debug for VerifierOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierOptions")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("require_nonce", &self.require_nonce)
            .field("follow_feed", &self.follow_feed)
            .field("owner", &self.owner)
            .field("accept_bearer", &self.accept_bearer)
            .field("max_staleness", &self.max_staleness)
            .field("stale_policy", &self.stale_policy)
            .finish()
    }
}

impl VerifierOptions {
    /// Defaults for `issuer` and `audience`.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        VerifierOptions {
            issuer: issuer.into(),
            audience: audience.into(),
            require_nonce: false,
            follow_feed: true,
            max_staleness: Duration::from_secs(60),
            stale_policy: StalePolicy::FailClosed,
            proof: ProofOptions::default(),
            replay_capacity: 1 << 18,
            owner: None,
            usage_reports: None,
            credentials: None,
            resource_metadata: None,
            accept_bearer: false,
            clock: Arc::new(SystemClock),
            rng: Arc::new(OsRandom),
        }
    }
}

const TOKEN_CACHE_MAX: usize = 4096;

struct Inner {
    opts: VerifierOptions,
    meta: Arc<ServerMetadata>,
    validation: TokenValidation,
    keys: RwLock<KeySet>,
    last_jwks_fetch: Mutex<Option<Instant>>,
    proofs: ProofVerifier,
    revoked: Revoked,
    token_cache: RwLock<HashMap<[u8; 32], Arc<AccessTokenClaims>>>,
    feed_seq: AtomicI64,
    feed_contact: Mutex<Instant>,
    feed_connected: AtomicBool,
    nonce_secret: [u8; 32],
    /// Uses waiting for the next report, each with its number.
    usage: Mutex<Vec<(u64, UsageEvent)>>,
    /// The number of the next use.
    use_seq: AtomicU64,
    /// The allowed uses of the last report (a late refusal needs their details).
    usage_sent: Mutex<Vec<(u64, UsageEvent)>>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// Verifies DPoP-bound requests for one API (audience).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.opts.issuer)
            .field("audience", &self.inner.opts.audience)
            .field("revoked", &self.inner.revoked.len())
            .field("feed_seq", &self.inner.feed_seq.load(Ordering::Relaxed))
            .finish()
    }
}

impl Verifier {
    /// Discover the broker, fetch its keys and the current revocations, and
    /// start following the feed. Must run inside a tokio runtime.
    pub async fn new(opts: VerifierOptions) -> Result<Self> {
        let meta = http::discover(&opts.issuer, opts.rng.as_ref()).await?;
        if meta.issuer != opts.issuer.trim_end_matches('/') && meta.issuer != opts.issuer {
            return Err(Error::InvalidResponse(format!(
                "the broker says its issuer is {:?}, not {:?}",
                meta.issuer, opts.issuer
            )));
        }
        let mut nonce_secret = [0u8; 32];
        opts.rng.fill(&mut nonce_secret)?;
        let mut validation = TokenValidation::new(meta.issuer.clone(), opts.audience.clone());
        // This verifier redeems one-time tokens at the broker (check.rs).
        validation.accept_one_time = true;
        let inner = Arc::new(Inner {
            proofs: ProofVerifier::new(opts.proof.clone(), opts.replay_capacity),
            validation,
            keys: RwLock::new(KeySet::default()),
            last_jwks_fetch: Mutex::new(None),
            revoked: Revoked::default(),
            token_cache: RwLock::new(HashMap::new()),
            feed_seq: AtomicI64::new(0),
            feed_contact: Mutex::new(Instant::now()),
            feed_connected: AtomicBool::new(false),
            nonce_secret,
            usage: Mutex::new(Vec::new()),
            use_seq: AtomicU64::new(0),
            usage_sent: Mutex::new(Vec::new()),
            stop: tokio::sync::watch::Sender::new(false),
            meta,
            opts,
        });
        fetch_jwks(&inner).await?;
        if inner.opts.follow_feed {
            poll_feed(&inner).await?;
            tokio::spawn(feed_loop(Arc::downgrade(&inner), inner.stop.subscribe()));
        }
        if inner.opts.usage_reports.is_some() {
            tokio::spawn(usage_loop(Arc::downgrade(&inner), inner.stop.subscribe()));
        }
        Ok(Verifier { inner })
    }

    /// The last feed position seen and whether the stream is connected.
    pub fn feed_status(&self) -> (i64, bool) {
        (
            self.inner.feed_seq.load(Ordering::SeqCst),
            self.inner.feed_connected.load(Ordering::SeqCst),
        )
    }

    /// How many revoked ids are held.
    pub fn revoked_count(&self) -> usize {
        self.inner.revoked.len()
    }

    /// Stop the background tasks (also happens when the last clone is dropped).
    pub fn stop(&self) {
        self.inner.stop.send_replace(true);
    }
}

/// Resolves when the verifier is stopped or dropped (its sender goes away).
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}
