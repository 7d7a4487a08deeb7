//! The resource-server side: verify DPoP-bound requests against the broker's
//! keys, with a replay cache, a cache of verified tokens, and revocations
//! learned from the broker's feed.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

mod spend;

use super::http;
use crate::clock::{Clock, OsRandom, Random, SystemClock};
use crate::dpop::{ProofCheck, ProofOptions, ProofVerifier, VerifiedProof};
use crate::error::{Error, Reason, Result};
use crate::request::{dpop_token, status_for, www_authenticate};
use crate::scope::ScopeSet;
use crate::token::{AccessTokenClaims, KeySet, TokenValidation};
use crate::wire::{
    IntrospectionResponse, RevocationEvent, RevocationFeed, ServerMetadata, UsageEvent, UsageReport,
};

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
    /// add`) for [`Verifier::spend`] and [`Verifier::refund`]; when `None`,
    /// those of `usage_reports` or of the introspection policy are used.
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

/// Who is calling: what a verified request tells the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The owner the agent acts for (`sub`).
    pub owner: String,
    /// The agent (`client_id`).
    pub agent: String,
    /// The token's scopes.
    pub scopes: ScopeSet,
    /// The token id (`jti`).
    pub token_id: String,
    /// The grant id (`gid`).
    pub grant_id: String,
    /// The agent's stated reason for this request, signed in its proof.
    pub reason: Option<String>,
    /// The agent key's thumbprint.
    pub jkt: String,
    /// When the token expires.
    pub expires_at: i64,
    /// This request's entry in the usage report, if reports are on.
    use_ticket: UseTicket,
}

/// Where a verified request's use waits to be reported, so that a refusal the
/// application decides afterwards ([`Identity::require`]) turns its `allow`
/// into a `deny` instead of counting the request twice.
#[derive(Clone, Default)]
struct UseTicket(Option<(Weak<Inner>, u64)>);

impl fmt::Debug for UseTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "reported" } else { "-" })
    }
}

// Two identities are equal whatever their report entries.
impl PartialEq for UseTicket {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for UseTicket {}

impl UseTicket {
    fn refused(&self, error: &Error, scope: &str) {
        let Some((weak, id)) = &self.0 else { return };
        let Some(inner) = weak.upgrade() else { return };
        let Ok(mut u) = inner.usage.lock() else {
            return;
        };
        let set = |e: &mut UsageEvent| {
            e.decision = "deny".into();
            e.code = Some(error.code().to_owned());
            e.reason = error.reason().map(|r| r.as_str().to_owned());
            e.scope = Some(scope.to_owned());
        };
        if let Some((_, e)) = u.iter_mut().rev().find(|(n, _)| n == id) {
            set(e);
        } else if let Some(mut e) = inner.last_sent(*id)
            && u.len() < USAGE_MAX
        {
            // Already sent as allowed (the batch left in between): the refusal
            // follows as its own entry.
            set(&mut e);
            u.push((*id, e));
        }
    }
}

impl Identity {
    /// Does the token allow `scope`? `Err` is a 403 rejection (reported to
    /// the broker as this request's refusal when usage reports are on).
    pub fn require(&self, scope: &str) -> std::result::Result<(), Rejection> {
        self.scopes.require(scope).map_err(|e| {
            self.use_ticket.refused(&e, scope);
            Rejection::new(e, Some(scope), None)
        })
    }

    /// Does the token allow `resource_action` for `amount`?
    pub fn require_amount(
        &self,
        resource_action: &str,
        amount: rust_decimal::Decimal,
    ) -> std::result::Result<(), Rejection> {
        self.scopes
            .require_amount(resource_action, amount)
            .map_err(|e| {
                self.use_ticket.refused(&e, resource_action);
                Rejection::new(e, Some(resource_action), None)
            })
    }
}

/// A refused request: the error, the status, and the headers to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The typed error (`.code()` is the wire code).
    pub error: Error,
    /// 401, 403, 400 or 503.
    pub status: u16,
    /// The exact `WWW-Authenticate` value (RFC 6750 / RFC 9449 section 7.1).
    pub www_authenticate: Option<String>,
    /// A fresh `DPoP-Nonce` to send, when the error asks for one.
    pub dpop_nonce: Option<String>,
}

impl Rejection {
    /// The rejection for `error`, with its status and challenge.
    pub fn from_error(error: Error) -> Self {
        Rejection::new(error, None, None)
    }

    fn new(error: Error, scope: Option<&str>, dpop_nonce: Option<String>) -> Self {
        Rejection {
            status: status_for(&error),
            www_authenticate: www_authenticate(&error, scope),
            error,
            dpop_nonce,
        }
    }

    /// The RFC 6749-style JSON body to send.
    pub fn body(&self) -> String {
        serde_json::json!({
            "error": self.error.code(),
            "error_description": self.error.to_string(),
        })
        .to_string()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.error, self.status)
    }
}

/// Revoked token and grant ids until their expiry, stored as 16-byte digests
/// so that each entry costs the same few dozen bytes whatever the id.
#[derive(Default)]
struct Revoked(RwLock<HashMap<[u8; 16], i64>>);

fn rev_key(kind: u8, id: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update([kind]);
    h.update(id.as_bytes());
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

impl Revoked {
    fn add(&self, e: &RevocationEvent) {
        let Ok(mut m) = self.0.write() else { return };
        if let Some(j) = &e.jti {
            m.insert(rev_key(b'j', j), e.exp);
        }
        if let Some(g) = &e.gid {
            m.insert(rev_key(b'g', g), e.exp);
        }
    }
    fn is_revoked(&self, jti: &str, gid: &str) -> bool {
        let Ok(m) = self.0.read() else { return true };
        m.contains_key(&rev_key(b'j', jti)) || m.contains_key(&rev_key(b'g', gid))
    }
    fn purge(&self, now: i64) {
        if let Ok(mut m) = self.0.write() {
            m.retain(|_, exp| *exp > now);
        }
    }
    fn len(&self) -> usize {
        self.0.read().map(|m| m.len()).unwrap_or(0)
    }
}

const TOKEN_CACHE_MAX: usize = 4096;
/// Most uses waiting to be reported; beyond, new ones are dropped.
const USAGE_MAX: usize = 10_000;
/// Most uses in one report (the broker's `MAX_USES`).
const USAGE_REPORT_MAX: usize = 1000;
/// Most bytes of uses in one report (the broker takes bodies up to 64 KiB;
/// one use is at most about 4 KiB).
const USAGE_REPORT_BYTES: usize = 56 * 1024;

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
        let validation = TokenValidation::new(meta.issuer.clone(), opts.audience.clone());
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

    /// Verify one request: `method`, the full `url` as the client addressed it,
    /// and its headers (names case-insensitive). Returns who is calling, or the
    /// rejection to answer with.
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
                self.cache_claims(token, claims.clone(), now);
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
        if inner.opts.follow_feed && self.feed_stale() {
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
        let scopes = ScopeSet::parse(&claims.scope).map_err(|_| {
            reject(Error::token(
                Reason::MissingClaim,
                "the token's scope is malformed",
            ))
        })?;
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

    /// Queue the report of one request: allowed, or refused with its code
    /// and finer reason (and the token id when the token was verified). A
    /// nonce challenge is the protocol's normal course, not a refusal.
    fn record_use(
        &self,
        method: &str,
        url: &str,
        r: std::result::Result<Identity, Rejection>,
        jti: Option<String>,
    ) -> std::result::Result<Identity, Rejection> {
        if matches!(&r, Err(rej) if rej.error == Error::UseDpopNonce) {
            return r;
        }
        let path = url::Url::parse(url)
            .map(|u| u.path().to_owned())
            .unwrap_or_default();
        // Within the broker's limits: one oversized entry would cost the
        // whole batch, and anyone can send a long path.
        let mut event = UsageEvent {
            jti,
            method: truncated(method, 16),
            path: truncated(&path, 2048),
            decision: "allow".into(),
            reason: None,
            code: None,
            scope: None,
            at: Some(self.inner.opts.clock.now()),
        };
        match &r {
            Ok(id) => {
                event.jti = Some(id.token_id.clone());
                event.reason = id.reason.clone();
            }
            Err(rej) => {
                event.decision = "deny".into();
                event.code = Some(rej.error.code().to_owned());
                event.reason = rej.error.reason().map(|x| x.as_str().to_owned());
            }
        }
        let id = self.inner.use_seq.fetch_add(1, Ordering::Relaxed);
        let queued = match self.inner.usage.lock() {
            Ok(mut u) if u.len() < USAGE_MAX => {
                u.push((id, event));
                true
            }
            _ => false,
        };
        r.map(|mut identity| {
            if queued {
                identity.use_ticket = UseTicket(Some((Arc::downgrade(&self.inner), id)));
            }
            identity
        })
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncated(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl Inner {
    /// The entry of use `id` if it left with the last report as allowed.
    fn last_sent(&self, id: u64) -> Option<UsageEvent> {
        let sent = self.usage_sent.lock().ok()?;
        sent.iter()
            .find(|(n, e)| *n == id && e.decision == "allow")
            .map(|(_, e)| e.clone())
    }
}

async fn fetch_jwks(inner: &Arc<Inner>) -> Result<()> {
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

fn feed_url(inner: &Inner) -> String {
    inner.meta.revocation_feed_endpoint.clone()
}

fn mark_contact(inner: &Inner) {
    if let Ok(mut t) = inner.feed_contact.lock() {
        *t = Instant::now();
    }
}

fn apply(inner: &Inner, e: &RevocationEvent) {
    inner.revoked.add(e);
    inner.feed_seq.fetch_max(e.seq, Ordering::SeqCst);
}

/// One page-by-page catch-up through `GET /revocations?after=SEQ`.
async fn poll_feed(inner: &Arc<Inner>) -> Result<()> {
    let http = http::client()?;
    loop {
        let after = inner.feed_seq.load(Ordering::SeqCst);
        let url = format!("{}?after={after}", feed_url(inner));
        let resp = http
            .get(&url)
            .send()
            .await
            .map_err(|e| http::unreachable("reading the revocation feed", &e))?;
        let status = resp.status().as_u16();
        let body = http::read_body(resp).await?;
        if status != 200 {
            return Err(http::error_from_body(status, &body));
        }
        let page: RevocationFeed = serde_json::from_slice(&body)
            .map_err(|e| Error::InvalidResponse(format!("revocation feed: {e}")))?;
        mark_contact(inner);
        let empty = page.revocations.is_empty();
        for e in &page.revocations {
            apply(inner, e);
        }
        if empty || page.next <= after {
            return Ok(());
        }
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

/// Follow the SSE stream, resuming from the last sequence number; between
/// connection attempts, catch up by polling. Holds the verifier only weakly
/// (between events), and ends as soon as it is stopped or dropped.
async fn feed_loop(weak: Weak<Inner>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut failures = 0u32;
    let mut last_purge = Instant::now();
    loop {
        let (stream_url, after) = {
            let Some(inner) = weak.upgrade() else { return };
            let url = inner
                .meta
                .revocation_stream_endpoint
                .clone()
                .unwrap_or_else(|| format!("{}/stream", feed_url(&inner)));
            (url, inner.feed_seq.load(Ordering::SeqCst))
        };
        let connected = tokio::select! {
            c = follow_stream(&weak, &stream_url, after) => c,
            () = stopped(&mut stop) => return,
        };
        let wait = {
            let Some(inner) = weak.upgrade() else { return };
            inner.feed_connected.store(false, Ordering::SeqCst);
            if connected {
                failures = 0;
            } else {
                failures = failures.saturating_add(1);
            }
            let _ = poll_feed(&inner).await;
            if last_purge.elapsed() > Duration::from_secs(60) {
                inner.revoked.purge(inner.opts.clock.now());
                last_purge = Instant::now();
            }
            if failures == 0 {
                Duration::from_millis(100)
            } else {
                http::backoff(failures.min(4), inner.opts.rng.as_ref())
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// Returns whether the stream was connected at all.
async fn follow_stream(weak: &Weak<Inner>, url: &str, after: i64) -> bool {
    let Ok(http) = http::client() else {
        return false;
    };
    // A stream has no overall timeout: liveness comes from the server's
    // keep-alive comments, checked by the staleness window.
    let resp = http
        .get(format!("{url}?after={after}"))
        .header("accept", "text/event-stream")
        .header("last-event-id", after.to_string())
        .timeout(Duration::from_secs(365 * 24 * 3600))
        .send()
        .await;
    let Ok(resp) = resp else { return false };
    if resp.status().as_u16() != 200 {
        return false;
    }
    let idle = {
        let Some(inner) = weak.upgrade() else {
            return true;
        };
        inner.feed_connected.store(true, Ordering::SeqCst);
        mark_contact(&inner);
        // Reconnect well before the staleness bound when the stream is quiet
        // (the broker's keep-alive may come less often than the bound): a
        // healthy feed is never stale.
        inner.opts.max_staleness / 2
    };
    let contact = weak.clone();
    let bytes = resp.bytes_stream().map(move |chunk| {
        // Any bytes, keep-alive comments included, prove the feed is alive.
        if let Some(i) = contact.upgrade() {
            mark_contact(&i);
        }
        chunk
    });
    let mut events = eventsource_stream::EventStream::new(bytes);
    loop {
        let next = tokio::time::timeout(idle, events.next()).await;
        let Ok(Some(Ok(ev))) = next else { return true };
        let Some(inner) = weak.upgrade() else {
            return true;
        };
        if ev.data.is_empty() {
            continue;
        }
        match serde_json::from_str::<RevocationEvent>(&ev.data) {
            Ok(e) => apply(&inner, &e),
            // Never skip an event: a later one would move the position past it.
            // Reconnect, and let the poll catch up from the last applied entry.
            Err(_) => return true,
        }
    }
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

async fn usage_loop(weak: Weak<Inner>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stopped(&mut stop) => return,
        }
        let Some(inner) = weak.upgrade() else { return };
        // Both locks at once (in the order `UseTicket::refused` takes them):
        // a refusal finds its use either still queued or among those sent.
        let uses: Vec<UsageEvent> = match (inner.usage.lock(), inner.usage_sent.lock()) {
            (Ok(mut u), Ok(mut sent)) => {
                *sent = std::mem::take(&mut *u);
                sent.iter().map(|(_, e)| e.clone()).collect()
            }
            _ => continue,
        };
        if uses.is_empty() {
            continue;
        }
        let (Some((id, secret)), Some(endpoint)) = (
            &inner.opts.usage_reports,
            inner.meta.usage_endpoint.as_deref(),
        ) else {
            continue;
        };
        let Ok(http) = http::client() else { continue };
        for report in reports(uses) {
            let _ = http
                .post(endpoint)
                .basic_auth(id, Some(secret.as_str()))
                .json(&report)
                .send()
                .await;
        }
    }
}

/// `uses` split into reports the broker accepts: it refuses a report whole
/// beyond [`USAGE_REPORT_MAX`] uses or [`USAGE_REPORT_BYTES`] of body.
fn reports(uses: Vec<UsageEvent>) -> Vec<UsageReport> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0;
    for u in uses {
        let size = serde_json::to_vec(&u).map_or(0, |v| v.len()) + 1;
        if !cur.is_empty() && (cur.len() == USAGE_REPORT_MAX || bytes + size > USAGE_REPORT_BYTES) {
            out.push(UsageReport {
                uses: std::mem::take(&mut cur),
            });
            bytes = 0;
        }
        bytes += size;
        cur.push(u);
    }
    if !cur.is_empty() {
        out.push(UsageReport { uses: cur });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::truncated;

    #[test]
    fn large_batches_are_split_into_reports_the_broker_takes() {
        let use_of = |path: String| crate::wire::UsageEvent {
            jti: None,
            method: "GET".into(),
            path,
            decision: "deny".into(),
            reason: None,
            code: Some("invalid_token".into()),
            scope: None,
            at: Some(1),
        };
        for (n, path) in [(2500, "/a".to_owned()), (100, "/".repeat(2048))] {
            let uses: Vec<_> = (0..n).map(|i| use_of(format!("{path}{i}"))).collect();
            let r = super::reports(uses.clone());
            assert!(r.len() > 1, "{n} uses in one report");
            for report in &r {
                assert!(report.uses.len() <= 1000);
                assert!(serde_json::to_vec(report).unwrap().len() <= 64 * 1024);
            }
            let again: Vec<_> = r.into_iter().flat_map(|r| r.uses).collect();
            assert_eq!(again, uses);
        }
    }

    #[test]
    fn reported_fields_are_cut_on_a_character_boundary() {
        assert_eq!(truncated("GET", 16), "GET");
        assert_eq!(truncated(&"a".repeat(3000), 2048).len(), 2048);
        // 'é' is two bytes: cutting at 3 bytes would split the second one.
        assert_eq!(truncated("éé", 3), "é");
    }
}
