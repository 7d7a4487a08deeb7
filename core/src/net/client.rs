//! The agent side: `authenticate_with_proton` and the `Session` it returns.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use zeroize::Zeroizing;

use super::audience;
use super::gateway_route::Routes;
use super::http::{self, NonceCache};
use super::shared_tokens::{self, ShareKey, Shared};
use super::store::{GrantStore, StoreKind, StoredGrant};
use crate::clock::{Clock, OsRandom, Random, SystemClock};
use crate::dpop::{ProofInput, create_proof};
use crate::error::{Error, Result};
use crate::keys::AgentKey;
use crate::scope::ScopeSet;
use crate::wire::{DeviceAuthorizationResponse, ServerMetadata, TokenResponse};

#[path = "stepup.rs"]
pub(super) mod stepup;

const GT_DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";
const GT_PREAUTH: &str = "urn:ietf:params:oauth:grant-type:pre-authorized_code";
const GT_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const TT_REFRESH: &str = "urn:ietf:params:oauth:token-type:refresh_token";
const TT_ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The longest lifetime DESIGN allows (30 days), in seconds.
const MAX_TOKEN_LIFETIME: i64 = 30 * 86_400;

/// What the owner must be shown to approve a device request (RFC 8628 3.3).
/// The same fields in every language (camelCase in JavaScript).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePrompt {
    /// Where the owner approves.
    pub verification_uri: String,
    /// The same, with the code filled in.
    pub verification_uri_complete: Option<String>,
    /// The code the owner confirms.
    pub user_code: String,
    /// Seconds until the request expires.
    pub expires_in: u64,
}

/// What a response asks of the client ([`Session::observe_response`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Challenge {
    /// Nothing: hand the response to the caller.
    None,
    /// `use_dpop_nonce`: the nonce is recorded; sign again and retry once.
    Nonce,
    /// `invalid_token` (expired or revoked): renew, sign again and retry once.
    Renew,
}

/// A callback that shows the prompt; called once per approval.
pub type PromptFn = Arc<dyn Fn(&DevicePrompt) + Send + Sync>;

/// The default prompt: one line on stderr.
pub fn stderr_prompt() -> PromptFn {
    Arc::new(|p: &DevicePrompt| {
        let url = p
            .verification_uri_complete
            .as_deref()
            .unwrap_or(&p.verification_uri);
        eprintln!(
            "To allow this agent, open {url} and confirm the code {} (valid {} min). Waiting for approval...",
            p.user_code,
            p.expires_in / 60
        );
    })
}

/// Stops a wait for the owner's approval from outside: a binding cancels it
/// when the prompt callback fails, on Ctrl-C, or when its caller gives up.
/// The wait then withdraws the pending request at the broker and ends with
/// [`Error::Cancelled`] within a second. Clones share one state.
#[derive(Clone, Default)]
pub struct CancelHandle(Arc<CancelState>);

#[derive(Default)]
struct CancelState {
    cancelled: AtomicBool,
    notify: tokio::sync::Notify,
}

impl CancelHandle {
    /// A handle that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancel: any wait using this handle ends.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether [`CancelHandle::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves once the handle is cancelled.
    pub async fn cancelled(&self) {
        // `notified()` registers before the flag is read: no wake-up is lost.
        let wake = self.0.notify.notified();
        if self.is_cancelled() {
            return;
        }
        wake.await;
    }
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CancelHandle")
            .field(&self.is_cancelled())
            .finish()
    }
}

/// Options of [`authenticate_with_proton`]. Omitted values come from the
/// environment (`PROTONPASS_BROKER_URL`, `PROTONPASS_AGENT_NAME`,
/// `PROTONPASS_PROFILE`, `PROTONPASS_ENROLLMENT_CODE`, `PROTONPASS_HOME`).
#[derive(Clone)]
pub struct AuthOptions {
    /// The broker's URL.
    pub broker: Option<String>,
    /// The agent's self-chosen name (its `client_id`); default `agent`.
    pub agent_name: Option<String>,
    /// The profile the grant is stored under; default `default`.
    pub profile: Option<String>,
    /// Where grants are kept; default the file store.
    pub store: Option<StoreKind>,
    /// How to show the device prompt; default one line on stderr.
    pub prompt: Option<PromptFn>,
    /// Ends the wait for the owner's approval when cancelled (the pending
    /// request is withdrawn at the broker). Dropping the future of
    /// [`authenticate_with_proton`] withdraws it too.
    pub cancel: Option<CancelHandle>,
    /// Requested lifetime of access tokens, in seconds (the broker caps it).
    pub ttl: Option<u64>,
    /// Scopes that must be granted; default: every requested scope. When the
    /// owner narrows a new grant below them, it is revoked at once and the
    /// call fails with [`Error::ScopeNotGranted`].
    pub required: Option<Vec<String>>,
    /// Why the agent acts: shown to the owner at approval (`pending`, the
    /// approval page) as the agent's own words, and signed into every proof.
    pub reason: Option<String>,
    /// A one-time enrollment code from the owner (headless agents).
    pub enrollment_code: Option<String>,
    /// Seal the stored key and refresh token with this passphrase
    /// (`PROTONPASS_PASSPHRASE`).
    pub passphrase: Option<Zeroizing<String>>,
    /// When the stored grant lacks required scopes, start a new approval.
    pub extend: bool,
    /// Let the session ask the owner for one-time authorizations
    /// ([`Session::step_up`], [`Session::send_with_step_up`];
    /// `spec/14-step-up.md`). Off by default.
    pub allow_step_up: bool,
    /// Renew access tokens in the background; default true.
    pub background_renewal: bool,
    /// The clock (tests set it).
    pub clock: Arc<dyn Clock>,
    /// The randomness source.
    pub rng: Arc<dyn Random>,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            broker: None,
            agent_name: None,
            profile: None,
            store: None,
            prompt: None,
            cancel: None,
            ttl: None,
            required: None,
            reason: None,
            enrollment_code: None,
            passphrase: None,
            extend: false,
            allow_step_up: false,
            background_renewal: true,
            clock: Arc::new(SystemClock),
            rng: Arc::new(OsRandom),
        }
    }
}

impl fmt::Debug for AuthOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthOptions")
            .field("broker", &self.broker)
            .field("agent_name", &self.agent_name)
            .field("profile", &self.profile)
            .field("store", &self.store)
            .field("ttl", &self.ttl)
            .field("required", &self.required)
            .field(
                "enrollment_code",
                &self.enrollment_code.as_ref().map(|_| "<redacted>"),
            )
            .field("extend", &self.extend)
            .field("allow_step_up", &self.allow_step_up)
            .finish()
    }
}

fn env_or(v: &Option<String>, var: &str) -> Option<String> {
    v.clone()
        .or_else(|| std::env::var(var).ok())
        .filter(|s| !s.is_empty())
}

/// Talks to the broker's token endpoint with DPoP, answering nonce challenges.
#[derive(Clone)]
struct BrokerCalls {
    meta: Arc<ServerMetadata>,
    key: AgentKey,
    agent: String,
    nonces: &'static NonceCache,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn Random>,
    reason: Option<String>,
}

impl BrokerCalls {
    async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        with_proof: bool,
    ) -> Result<(u16, Vec<u8>)> {
        let http = http::client()?;
        let body = serde_urlencoded::to_string(form)
            .map_err(|e| Error::InvalidRequest(format!("cannot encode the form: {e}")))?;
        // At most two tries: the second answers a `use_dpop_nonce` challenge.
        for attempt in 0..2 {
            let mut req = http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone());
            if with_proof {
                let nonce = self.nonces.get(url);
                let proof = create_proof(
                    &self.key,
                    &ProofInput {
                        method: "POST",
                        url,
                        access_token: None,
                        nonce: nonce.as_deref(),
                        reason: self.reason.as_deref(),
                    },
                    self.clock.now(),
                    self.rng.as_ref(),
                )?;
                req = req.header("DPoP", proof);
            }
            let resp = req.send().await.map_err(|e| http::unreachable(url, &e))?;
            self.nonces.remember(url, resp.headers());
            let status = resp.status().as_u16();
            let bytes = http::read_body(resp).await?;
            if status != 200
                && attempt == 0
                && with_proof
                && matches!(http::error_from_body(status, &bytes), Error::UseDpopNonce)
            {
                continue;
            }
            return Ok((status, bytes));
        }
        Err(Error::InvalidResponse(
            "the broker kept asking for a new DPoP nonce".into(),
        ))
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<TokenResponse> {
        let (status, body) = self
            .post_form(&self.meta.token_endpoint, form, true)
            .await?;
        if status != 200 {
            return Err(http::error_from_body(status, &body));
        }
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::InvalidResponse(format!("token response: {e}")))?;
        if !t.token_type.eq_ignore_ascii_case("dpop") {
            return Err(Error::InvalidResponse(format!(
                "expected a DPoP-bound token, got token_type {:?}",
                t.token_type
            )));
        }
        Ok(t)
    }

    async fn exchange(
        &self,
        refresh_token: &str,
        scope: &str,
        audience: &str,
        ttl: Option<u64>,
    ) -> Result<TokenResponse> {
        let ttl_s = ttl.map(|t| t.to_string());
        let mut form = vec![
            ("grant_type", GT_EXCHANGE),
            ("subject_token", refresh_token),
            ("subject_token_type", TT_REFRESH),
            ("requested_token_type", TT_ACCESS),
            ("scope", scope),
            ("audience", audience),
            ("client_id", self.agent.as_str()),
        ];
        if let Some(t) = &ttl_s {
            form.push(("expires_in", t));
        }
        self.token(&form).await
    }

    async fn device_grant(
        &self,
        scope: &str,
        audience: &str,
        prompt: &PromptFn,
        cancel: Option<&CancelHandle>,
    ) -> Result<TokenResponse> {
        let endpoint = self.meta.device_authorization_endpoint.as_str();
        let form = [
            ("client_id", self.agent.as_str()),
            ("scope", scope),
            ("resource", audience),
        ];
        // A proof here binds the request to this key: the owner sees the key's
        // fingerprint when approving, and only this key can collect the grant.
        let (status, body) = self.post_form(endpoint, &form, true).await?;
        if status != 200 {
            return Err(http::error_from_body(status, &body));
        }
        let d: DeviceAuthorizationResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::InvalidResponse(format!("device authorization response: {e}")))?;
        // From here on the broker holds a request for this agent: however the
        // wait ends early (cancelled, or this future dropped), it is withdrawn.
        let mut guard = WithdrawOnDrop(Some((self.clone(), Zeroizing::new(d.device_code.clone()))));
        prompt(&DevicePrompt {
            verification_uri: d.verification_uri.clone(),
            verification_uri_complete: d.verification_uri_complete.clone(),
            user_code: d.user_code.clone(),
            expires_in: u64::try_from(d.expires_in).unwrap_or(0),
        });
        let outcome = match cancel {
            Some(c) => tokio::select! {
                r = self.poll_device(&d) => Some(r),
                () = c.cancelled() => None,
            },
            None => Some(self.poll_device(&d).await),
        };
        match outcome {
            Some(r) => {
                guard.0 = None;
                r
            }
            None => {
                // Bounded: the caller is waiting to see its own error.
                let withdraw = self.cancel_device(&d.device_code);
                if let Err(e) = tokio::time::timeout(Duration::from_secs(2), withdraw)
                    .await
                    .unwrap_or_else(|_| Err(Error::BrokerUnavailable("timed out".into())))
                {
                    tracing::warn!(error = e.code(), "could not withdraw the device request");
                }
                // Withdrawn (or tried): dropping this future no longer withdraws.
                guard.0 = None;
                Err(Error::Cancelled(
                    "stopped waiting for the owner's approval; the request was withdrawn".into(),
                ))
            }
        }
    }

    async fn poll_device(&self, d: &DeviceAuthorizationResponse) -> Result<TokenResponse> {
        // Whatever the broker says, wait at most a day and poll at least every
        // five minutes: no answer can overflow the deadline or stall the agent.
        let lifetime = u64::try_from(d.expires_in).unwrap_or(0).min(86_400);
        let mut interval = u64::try_from(d.interval).unwrap_or(5).clamp(1, 300);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(lifetime);
        loop {
            tokio::time::sleep(Duration::from_secs(interval)).await;
            if tokio::time::Instant::now() > deadline {
                return Err(Error::ExpiredToken);
            }
            let form = [
                ("grant_type", GT_DEVICE),
                ("device_code", d.device_code.as_str()),
                ("client_id", self.agent.as_str()),
            ];
            match self.token(&form).await {
                Ok(t) => return Ok(t),
                Err(Error::AuthorizationPending) => {}
                Err(Error::SlowDown) => interval = (interval + 5).min(300),
                Err(e) => return Err(e),
            }
        }
    }

    /// Withdraw a pending device request (spec 4.4.1), signed by this key.
    async fn cancel_device(&self, device_code: &str) -> Result<()> {
        let url = device_cancel_url(&self.meta.device_authorization_endpoint);
        let form = [
            ("device_code", device_code),
            ("client_id", self.agent.as_str()),
        ];
        match self.post_form(&url, &form, true).await? {
            (200, _) => Ok(()),
            (status, body) => Err(http::error_from_body(status, &body)),
        }
    }

    async fn revoke(&self, token: &str, hint: &str) -> Result<()> {
        let endpoint = self.meta.revocation_endpoint.as_str();
        let form = [
            ("token", token),
            ("token_type_hint", hint),
            ("client_id", self.agent.as_str()),
        ];
        let mut last = Error::BrokerUnavailable("revocation not attempted".into());
        // Revocation is idempotent: retry on 503 and network faults, in bounded time.
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(http::backoff(attempt - 1, self.rng.as_ref())).await;
            }
            match self.post_form(endpoint, &form, false).await {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => {
                    last = http::error_from_body(status, &body);
                    if status != 503 {
                        return Err(last);
                    }
                }
                Err(e @ Error::BrokerUnavailable(_)) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}

/// Where a device request is withdrawn: the device authorization endpoint
/// followed by `/cancel` (spec 4.4.1).
fn device_cancel_url(endpoint: &str) -> String {
    format!("{}/cancel", endpoint.trim_end_matches('/'))
}

/// Withdraws the device request when the wait is dropped before it ended
/// (an asyncio task or a Promise cancelled): the request is sent from the
/// runtime, in the background.
struct WithdrawOnDrop(Option<(BrokerCalls, Zeroizing<String>)>);

impl Drop for WithdrawOnDrop {
    fn drop(&mut self) {
        if let Some((calls, code)) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let withdraw = calls.cancel_device(&code);
                if tokio::time::timeout(Duration::from_secs(5), withdraw)
                    .await
                    .is_err()
                {
                    tracing::warn!("could not withdraw the device request: timed out");
                }
            });
        }
    }
}

struct AccessToken {
    token: Zeroizing<String>,
    issued_at: i64,
    expires_at: i64,
    scope: ScopeSet,
}

struct SessionInner {
    calls: BrokerCalls,
    broker: String,
    profile: String,
    store: GrantStore,
    requested: ScopeSet,
    required: ScopeSet,
    ttl: Option<u64>,
    tokens: RwLock<HashMap<String, AccessToken>>,
    primary_audience: String,
    /// The audiences served through the broker's gateway, and where.
    routes: Routes,
    renew_lock: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    /// The step-up prompt when step-ups are allowed.
    step_up: Option<PromptFn>,
    /// Ends a wait for a step-up too.
    cancel: Option<CancelHandle>,
}

/// An authenticated agent session: DPoP-bound access tokens per audience,
/// renewed in the background, revoked by [`Session::close`] (and, best effort,
/// on drop).
pub struct Session {
    inner: Arc<SessionInner>,
    renewal: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("agent", &self.inner.calls.agent)
            .field("broker", &self.inner.broker)
            .field("audience", &self.inner.primary_audience)
            .field("scopes", &self.scopes().to_string())
            .finish()
    }
}

/// Ask the broker for access: load the stored grant for (broker, profile,
/// agent name), or obtain one (enrollment code, else the device authorization
/// grant with the owner's approval), then exchange it for an access token for
/// `scopes` on `audience`. Missing required scopes are
/// [`Error::ScopeNotGranted`].
pub async fn authenticate_with_proton<S: AsRef<str>>(
    scopes: &[S],
    audience: &str,
    opts: AuthOptions,
) -> Result<Session> {
    // RFC 9728 discovery when no broker (or no scope) is given.
    let (broker, scopes) = super::discovery::resolve(
        scopes,
        audience,
        env_or(&opts.broker, "PROTONPASS_BROKER_URL"),
    )
    .await?;
    let broker = broker.trim_end_matches('/').to_owned();
    let agent = env_or(&opts.agent_name, "PROTONPASS_AGENT_NAME").unwrap_or_else(|| "agent".into());
    let profile = env_or(&opts.profile, "PROTONPASS_PROFILE").unwrap_or_else(|| "default".into());
    let enrollment = env_or(&opts.enrollment_code, "PROTONPASS_ENROLLMENT_CODE");
    if audience.is_empty() {
        return Err(Error::InvalidRequest(
            "an audience (the API's URL) is required".into(),
        ));
    }
    if agent.is_empty() || agent.len() > 64 || agent.chars().any(char::is_control) {
        return Err(Error::InvalidRequest(
            "the agent name is 1 to 64 printable characters".into(),
        ));
    }
    let requested = ScopeSet::from_list(&scopes)?;
    let required = match &opts.required {
        Some(r) if r.is_empty() => ScopeSet::default(),
        Some(r) => ScopeSet::from_list(r)?,
        None => requested.clone(),
    };
    if opts.ttl == Some(0) {
        return Err(Error::InvalidRequest(
            "ttl is the access tokens' lifetime in seconds: at least 1".into(),
        ));
    }
    if !requested.covers_all(&required) {
        return Err(Error::InvalidScope(format!(
            "required scopes [{}] must be among the requested ones",
            requested.missing(&required)
        )));
    }
    let passphrase = opts.passphrase.clone().or_else(|| {
        std::env::var("PROTONPASS_PASSPHRASE")
            .ok()
            .map(Zeroizing::new)
    });
    let store = GrantStore::new(match opts.store.clone() {
        Some(k) => k,
        None => StoreKind::default_file()?,
    })
    .with_passphrase(passphrase);
    let meta = http::discover(&broker, opts.rng.as_ref()).await?;
    let routes = Routes::default();
    routes
        .learn(&broker, &meta, audience, opts.rng.as_ref())
        .await?;

    let lock_store = store.clone();
    let lock_profile = profile.clone();
    let _lock = tokio::task::spawn_blocking(move || lock_store.lock(&lock_profile))
        .await
        .map_err(|e| Error::Storage(format!("lock task failed: {e}")))??;

    let stored = store.load(&broker, &profile, &agent)?;
    let now = opts.clock.now();
    let stored = stored.filter(|g| g.expires_at.is_none_or(|t| t > now));
    let needs_new = match &stored {
        None => true,
        Some(g) => {
            let granted = ScopeSet::parse(&g.scope).unwrap_or_default();
            if granted.covers_all(&required) {
                false
            } else if opts.extend {
                true
            } else {
                return Err(Error::ScopeNotGranted {
                    missing: granted.missing(&required).to_string(),
                    granted: granted.to_string(),
                });
            }
        }
    };
    let key = match (&stored, needs_new) {
        (Some(g), false) => g.key.clone(),
        _ => AgentKey::generate(opts.rng.as_ref())?,
    };
    // An extension replaces the stored grant: the old one is revoked once the
    // new one is safely stored, rather than left live and unreachable. It
    // asks for the old grant's scopes as well as the new ones, so that it
    // takes nothing away from other sessions of this profile (the owner can
    // still narrow it on the approval page).
    let superseded = match (&stored, needs_new) {
        (Some(g), true) => Some(g.refresh_token.clone()),
        _ => None,
    };
    let ask = match (&stored, needs_new) {
        (Some(g), true) => {
            let mut all = ScopeSet::parse(&g.scope).unwrap_or_default();
            for s in &requested {
                all.insert(s.clone());
            }
            all
        }
        _ => requested.clone(),
    };
    let calls = BrokerCalls {
        meta,
        key,
        agent: agent.clone(),
        nonces: NonceCache::global(),
        clock: opts.clock.clone(),
        rng: opts.rng.clone(),
        reason: opts.reason.clone(),
    };
    let mut grant = match stored {
        Some(g) if !needs_new => g,
        _ => {
            let scope = ask.to_string();
            let t = match &enrollment {
                Some(code) => {
                    calls
                        .token(&[
                            ("grant_type", GT_PREAUTH),
                            ("pre-authorized_code", code.as_str()),
                            ("client_id", agent.as_str()),
                        ])
                        .await?
                }
                None => {
                    let prompt = opts.prompt.clone().unwrap_or_else(stderr_prompt);
                    calls
                        .device_grant(&scope, audience, &prompt, opts.cancel.as_ref())
                        .await?
                }
            };
            let refresh = t.refresh_token.clone().ok_or_else(|| {
                Error::InvalidResponse("the broker returned no refresh token (grant)".into())
            })?;
            // The owner may narrow the scopes on the approval page. A grant
            // without every required scope is refused: revoked at once rather
            // than stored or left live, unused (a stored grant it replaces
            // stays as it was).
            let granted = ScopeSet::parse(&t.scope).unwrap_or_else(|_| ask.clone());
            if !granted.covers_all(&required) {
                if let Err(e) = calls.revoke(&refresh, "refresh_token").await {
                    tracing::warn!(error = e.code(), "could not revoke the refused grant");
                }
                return Err(Error::ScopeNotGranted {
                    missing: granted.missing(&required).to_string(),
                    granted: granted.to_string(),
                });
            }
            let g = StoredGrant {
                key: calls.key.clone(),
                refresh_token: Zeroizing::new(refresh),
                scope: if t.scope.is_empty() {
                    scope
                } else {
                    t.scope.clone()
                },
                expires_at: t.grant_expires_at,
            };
            store.save(&broker, &profile, &agent, &g)?;
            if let Some(old) = &superseded
                && let Err(e) = calls.revoke(old, "refresh_token").await
            {
                // The new grant stands; the old one ends at its expiry.
                tracing::warn!(
                    error = e.code(),
                    "could not revoke the grant this one extends"
                );
            }
            // The grant's first access token carries all of the grant's
            // scopes; the session takes a token of just the requested ones
            // below, so this one is revoked rather than left live, unused.
            if let Err(e) = calls.revoke(&t.access_token, "access_token").await {
                tracing::warn!(
                    error = e.code(),
                    "could not revoke the grant's first access token"
                );
            }
            g
        }
    };
    // A live session of this process may already hold a token for exactly
    // this (shared_tokens.rs): take a share of it instead of a round trip.
    let share = ShareKey {
        broker: broker.clone(),
        profile: profile.clone(),
        agent: agent.clone(),
        jkt: grant.key.thumbprint().to_owned(),
        audience: audience.to_owned(),
        scope: requested.to_string(),
        ttl: opts.ttl,
    };
    let adopted = if needs_new {
        None
    } else {
        shared_tokens::adopt(&share, now)
    };
    let access = match adopted {
        Some(s) => {
            drop(_lock);
            AccessToken {
                token: s.token,
                issued_at: s.issued_at,
                expires_at: s.expires_at,
                scope: ScopeSet::parse(&s.scope).unwrap_or_default(),
            }
        }
        None => {
            let t = calls
                .exchange(
                    &grant.refresh_token,
                    &requested.to_string(),
                    audience,
                    opts.ttl,
                )
                .await;
            let t = match t {
                Err(Error::InvalidGrant(m)) => {
                    // The stored grant was revoked or has expired: forget it so that the
                    // next call asks the owner again.
                    store.remove(&broker, &profile, &agent)?;
                    return Err(Error::InvalidGrant(format!(
                        "{m} (the stored grant was revoked or expired and has been forgotten; authenticate again to ask the owner)"
                    )));
                }
                other => other?,
            };
            if let Some(r) = &t.refresh_token {
                grant.refresh_token = Zeroizing::new(r.clone());
                store.save(&broker, &profile, &agent, &grant)?;
            }
            drop(_lock);
            let access = access_from(&t, now)?;
            shared_tokens::register(
                share,
                Shared {
                    token: access.token.clone(),
                    issued_at: access.issued_at,
                    expires_at: access.expires_at,
                    scope: access.scope.to_string(),
                },
            );
            access
        }
    };
    if !access.scope.covers_all(&required) {
        return Err(Error::ScopeNotGranted {
            missing: access.scope.missing(&required).to_string(),
            granted: access.scope.to_string(),
        });
    }
    let mut tokens = HashMap::new();
    tokens.insert(audience.to_owned(), access);
    let inner = Arc::new(SessionInner {
        calls,
        broker,
        profile,
        store,
        requested,
        required,
        ttl: opts.ttl,
        tokens: RwLock::new(tokens),
        primary_audience: audience.to_owned(),
        routes,
        renew_lock: tokio::sync::Mutex::new(()),
        closed: AtomicBool::new(false),
        step_up: opts.allow_step_up.then(|| {
            opts.prompt
                .clone()
                .unwrap_or_else(stepup::stderr_step_up_prompt)
        }),
        cancel: opts.cancel.clone(),
    });
    let renewal = opts
        .background_renewal
        .then(|| tokio::spawn(renewal_loop(Arc::downgrade(&inner))));
    Ok(Session { inner, renewal })
}

fn access_from(t: &TokenResponse, now: i64) -> Result<AccessToken> {
    let scope = ScopeSet::parse(&t.scope)
        .map_err(|_| Error::InvalidResponse("the token response has no valid scope".into()))?;
    Ok(AccessToken {
        token: Zeroizing::new(t.access_token.clone()),
        issued_at: now,
        // DESIGN caps lifetimes at 30 days; a larger claim cannot overflow the
        // renewal arithmetic.
        expires_at: now.saturating_add(t.expires_in.clamp(1, MAX_TOKEN_LIFETIME)),
        scope,
    })
}

/// Sleep until about three quarters of the shortest token lifetime (with
/// ±10 % jitter), renew, repeat; back off on failure; stop with the session.
async fn renewal_loop(weak: Weak<SessionInner>) {
    let mut failures = 0u32;
    loop {
        let wait = {
            let Some(inner) = weak.upgrade() else { return };
            if inner.closed.load(Ordering::SeqCst) {
                return;
            }
            let now = inner.calls.clock.now();
            let due = inner.tokens.read().ok().and_then(|m| {
                m.values()
                    .map(|a| a.issued_at + (a.expires_at - a.issued_at) * 3 / 4)
                    .min()
            });
            let secs = due.map_or(60, |d| (d - now).max(0));
            let mut b = [0u8; 1];
            let jitter = match inner.calls.rng.fill(&mut b) {
                Ok(()) => secs as f64 * 0.1 * (f64::from(b[0]) / 127.5 - 1.0),
                Err(_) => 0.0,
            };
            let base = Duration::from_secs_f64((secs as f64 + jitter).max(0.2));
            if failures > 0 {
                http::backoff(failures.min(5), inner.calls.rng.as_ref())
            } else {
                base
            }
        };
        tokio::time::sleep(wait).await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        match renew(&inner, false).await {
            Ok(()) => failures = 0,
            Err(Error::InvalidGrant(_)) => return,
            Err(_) => failures += 1,
        }
    }
}

/// Exchange the grant again for every audience whose token is due (or all, if
/// `force`), under the profile lock so that concurrent processes never spend
/// each other's rotated refresh tokens.
async fn renew(inner: &Arc<SessionInner>, force: bool) -> Result<()> {
    let _one = inner.renew_lock.lock().await;
    let now = inner.calls.clock.now();
    let due: Vec<(String, String)> = {
        let m = inner
            .tokens
            .read()
            .map_err(|_| Error::Server("session state poisoned".into()))?;
        m.iter()
            .filter(|(_, a)| force || now >= a.issued_at + (a.expires_at - a.issued_at) * 3 / 4)
            .map(|(aud, a)| (aud.clone(), a.scope.to_string()))
            .collect()
    };
    if due.is_empty() {
        return Ok(());
    }
    let audiences: Vec<String> = due.into_iter().map(|(aud, _)| aud).collect();
    let fresh = exchange_under_lock(inner, &audiences).await?;
    if let Ok(mut m) = inner.tokens.write() {
        for (aud, _) in &fresh {
            // The replaced token ends at its expiry; this session no longer
            // holds a share of it.
            if let Some(old) = m.get(aud) {
                shared_tokens::release(&old.token);
            }
        }
        m.extend(fresh);
    }
    Ok(())
}

/// Exchange the stored grant for a token per audience, under the profile lock
/// (re-reading the grant first, storing a rotated refresh token at once), so
/// that concurrent processes never spend each other's refresh tokens.
async fn exchange_under_lock(
    inner: &Arc<SessionInner>,
    audiences: &[String],
) -> Result<Vec<(String, AccessToken)>> {
    let store = inner.store.clone();
    let profile = inner.profile.clone();
    let _lock = tokio::task::spawn_blocking(move || store.lock(&profile))
        .await
        .map_err(|e| Error::Storage(format!("lock task failed: {e}")))??;
    let agent = inner.calls.agent.clone();
    let mut grant = inner
        .store
        .load(&inner.broker, &inner.profile, &agent)?
        .ok_or_else(|| Error::InvalidGrant("the stored grant is gone".into()))?;
    let mut out = Vec::with_capacity(audiences.len());
    for aud in audiences {
        let t = inner
            .calls
            .exchange(
                &grant.refresh_token,
                &inner.requested.to_string(),
                aud,
                inner.ttl,
            )
            .await?;
        if let Some(r) = &t.refresh_token {
            grant.refresh_token = Zeroizing::new(r.clone());
            inner
                .store
                .save(&inner.broker, &inner.profile, &agent, &grant)?;
        }
        out.push((aud.clone(), access_from(&t, inner.calls.clock.now())?));
    }
    Ok(out)
}

impl Session {
    /// The scopes granted for the session's (first) audience.
    pub fn scopes(&self) -> ScopeSet {
        self.with_token(&self.inner.primary_audience, |a| a.scope.clone())
            .unwrap_or_default()
    }

    /// When the current access token for the first audience expires.
    pub fn expires_at(&self) -> i64 {
        self.with_token(&self.inner.primary_audience, |a| a.expires_at)
            .unwrap_or_default()
    }

    /// The agent's key thumbprint (what tokens are bound to).
    pub fn thumbprint(&self) -> &str {
        self.inner.calls.key.thumbprint()
    }

    /// The audiences this session holds tokens for.
    pub fn audiences(&self) -> Vec<String> {
        self.inner
            .tokens
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn with_token<T>(&self, aud: &str, f: impl FnOnce(&AccessToken) -> T) -> Option<T> {
        self.inner.tokens.read().ok()?.get(aud).map(f)
    }

    /// The audience a URL belongs to: the one with the longest path among
    /// those the URL lies under ([`audience::pick`]); a URL under none of
    /// them is refused, so the token never goes anywhere else.
    fn audience_for(&self, url: &str) -> Result<String> {
        let m = self
            .inner
            .tokens
            .read()
            .map_err(|_| Error::Server("session state poisoned".into()))?;
        let refused = match audience::pick(m.keys(), url) {
            Ok(a) => {
                self.inner.routes.check_direct(a)?;
                return Ok(a.clone());
            }
            Err(e) => e,
        };
        let held: Vec<&String> = m.keys().collect();
        if let Some(a) = self.inner.routes.audience_of_gateway_url(&held, url) {
            return Ok(a.clone());
        }
        // The broker's own gateway (`{issuer}/gateway/...`) is not "another
        // place": the token goes back to the broker that issued it, which
        // checks its audience against the upstream's. With one audience the
        // token to attach is clear; with several, the caller must say which
        // (a session per upstream).
        let gateway = format!(
            "{}/gateway/",
            self.inner.calls.meta.issuer.trim_end_matches('/')
        );
        if audience::covers(&gateway, url)
            && m.len() == 1
            && let Some(a) = m.keys().next()
        {
            return Ok(a.clone());
        }
        Err(refused)
    }

    /// Where a request for `url` goes: for a URL under an audience the broker
    /// serves through its gateway, the same path and query under the gateway
    /// URL (`spec/10-gateway-rules.md`); any other URL unchanged. Sign and
    /// send the routed URL ([`Session::send`] does both).
    pub fn route(&self, url: &str) -> Result<String> {
        let m = self
            .inner
            .tokens
            .read()
            .map_err(|_| Error::Server("session state poisoned".into()))?;
        let held: Vec<&String> = m.keys().collect();
        self.inner.routes.route(&held, url)
    }

    /// The headers for one request: `Authorization: DPoP <token>` and a fresh
    /// `DPoP` proof bound to the token (`ath`), with the origin's nonce and the
    /// reason when there is one. The URL must lie under one of the session's
    /// audiences (same scheme, host and port, path under the audience's path);
    /// anything else is [`Error::InvalidRequest`].
    pub fn headers(&self, method: &str, url: &str) -> Result<Vec<(String, String)>> {
        self.headers_with_reason(method, url, None)
    }

    /// [`Session::headers`] with a per-request reason (overrides the session's).
    pub fn headers_with_reason(
        &self,
        method: &str,
        url: &str,
        reason: Option<&str>,
    ) -> Result<Vec<(String, String)>> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(Error::InvalidGrant("the session is closed".into()));
        }
        let aud = self.audience_for(url)?;
        let token = self
            .with_token(&aud, |a| a.token.clone())
            .ok_or_else(|| Error::InvalidRequest(format!("no token for {aud}")))?;
        let nonce = self.inner.calls.nonces.get(url);
        let proof = create_proof(
            &self.inner.calls.key,
            &ProofInput {
                method,
                url,
                access_token: Some(&token),
                nonce: nonce.as_deref(),
                reason: reason.or(self.inner.calls.reason.as_deref()),
            },
            self.inner.calls.clock.now(),
            self.inner.calls.rng.as_ref(),
        )?;
        Ok(vec![
            (
                "Authorization".to_owned(),
                format!("DPoP {}", token.as_str()),
            ),
            ("DPoP".to_owned(), proof),
        ])
    }

    /// Send a request with DPoP headers. Answers a `use_dpop_nonce` challenge
    /// (caching the nonce per origin) and an expired-token 401 with one
    /// transparent retry each. A URL outside the session's audiences is
    /// refused with [`Error::InvalidRequest`] before anything is sent; one
    /// under an audience the broker serves through its gateway goes to the
    /// gateway ([`Session::route`]).
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Option<Vec<u8>>,
        reason: Option<&str>,
    ) -> Result<reqwest::Response> {
        let routed = self.route(url)?;
        let url = routed.as_str();
        let http = http::client()?;
        let m = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| Error::InvalidRequest(format!("bad HTTP method {method:?}")))?;
        let mut renewed = false;
        let mut nonce_retried = false;
        loop {
            let mut req = http.request(m.clone(), url);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            for (k, v) in self.headers_with_reason(method, url, reason)? {
                req = req.header(k, v);
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let resp = req.send().await.map_err(|e| http::unreachable(url, &e))?;
            self.inner.calls.nonces.remember(url, resp.headers());
            if resp.status().as_u16() != 401 {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            if challenge.contains("use_dpop_nonce") && !nonce_retried {
                nonce_retried = true;
                continue;
            }
            if challenge.contains("invalid_token") && !renewed {
                renewed = true;
                renew(&self.inner, true).await?;
                continue;
            }
            return Ok(resp);
        }
    }

    /// For HTTP stacks other than [`Session::send`] (the Python and Node
    /// bindings): record what a response to a request signed by this session
    /// says (its `DPoP-Nonce`) and tell whether to sign again and retry once,
    /// by the same rules as [`Session::send`].
    pub fn observe_response(
        &self,
        url: &str,
        status: u16,
        www_authenticate: Option<&str>,
        dpop_nonce: Option<&str>,
    ) -> Challenge {
        if let Some(n) = dpop_nonce {
            self.inner.calls.nonces.insert(url, n);
        }
        let challenge = www_authenticate.unwrap_or_default();
        if status != 401 {
            Challenge::None
        } else if challenge.contains("use_dpop_nonce") && dpop_nonce.is_some() {
            Challenge::Nonce
        } else if challenge.contains("invalid_token") {
            Challenge::Renew
        } else {
            Challenge::None
        }
    }

    /// Renew every access token now.
    pub async fn renew(&self) -> Result<()> {
        renew(&self.inner, true).await
    }

    /// Get a token for another audience too (one access token per audience).
    pub async fn add_audience(&self, audience: &str) -> Result<ScopeSet> {
        let inner = &self.inner;
        inner
            .routes
            .learn(
                &inner.broker,
                &inner.calls.meta,
                audience,
                inner.calls.rng.as_ref(),
            )
            .await?;
        let (_, access) = exchange_under_lock(inner, &[audience.to_owned()])
            .await?
            .pop()
            .ok_or_else(|| Error::InvalidResponse("no token for the audience".into()))?;
        if !access.scope.covers_all(&inner.required) {
            return Err(Error::ScopeNotGranted {
                missing: access.scope.missing(&inner.required).to_string(),
                granted: access.scope.to_string(),
            });
        }
        let scope = access.scope.clone();
        if let Ok(mut m) = inner.tokens.write() {
            m.insert(audience.to_owned(), access);
        }
        Ok(scope)
    }

    /// Revoke the session's access tokens (and the grant too when
    /// `revoke_grant`), then stop renewing. Bounded in time; retries on 503.
    pub async fn close(&self, revoke_grant: bool) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // A renewal in flight (in the background or from `send`) finishes
        // first: cancelling it midway could lose a refresh token the broker
        // had just rotated, and letting it run on could put fresh tokens back
        // after they were revoked. The background task is stopped only then,
        // while it sleeps or waits for the lock.
        let _renewing = self.inner.renew_lock.lock().await;
        if let Some(h) = &self.renewal {
            h.abort();
        }
        close_inner(&self.inner, revoke_grant).await
    }

    /// Revoke the session's access tokens when the process receives SIGINT or
    /// SIGTERM (Unix) or Ctrl-C, then let the host's own handling continue.
    /// Returns the watcher task; abort it to stop watching.
    pub fn close_on_signal(&self) -> tokio::task::JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            if !inner.closed.swap(true, Ordering::SeqCst) {
                let _ = close_inner(&inner, false).await;
            }
        })
    }

    /// Whether [`Session::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }
}

async fn close_inner(inner: &Arc<SessionInner>, revoke_grant: bool) -> Result<()> {
    let tokens: Vec<Zeroizing<String>> = inner
        .tokens
        .write()
        .map(|mut m| m.drain().map(|(_, a)| a.token).collect())
        .unwrap_or_default();
    let mut first_err = None;
    for t in tokens {
        // A token another live session of this process shares stays live.
        if !shared_tokens::release(&t) {
            continue;
        }
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            inner.calls.revoke(&t, "access_token"),
        )
        .await
        .unwrap_or_else(|_| Err(Error::BrokerUnavailable("revocation timed out".into())));
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    if revoke_grant {
        let agent = inner.calls.agent.clone();
        let store = inner.store.clone();
        let profile = inner.profile.clone();
        let _lock = tokio::task::spawn_blocking(move || store.lock(&profile))
            .await
            .map_err(|e| Error::Storage(format!("lock task failed: {e}")))??;
        if let Some(g) = inner.store.load(&inner.broker, &inner.profile, &agent)? {
            if let Err(e) = inner.calls.revoke(&g.refresh_token, "refresh_token").await {
                first_err.get_or_insert(e);
            }
            inner.store.remove(&inner.broker, &inner.profile, &agent)?;
        }
    }
    first_err.map_or(Ok(()), Err)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let renewal = self.renewal.take();
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            if let Some(h) = renewal {
                h.abort();
            }
            return;
        }
        // Best effort: revoke on the current runtime if there is one, after a
        // renewal in flight has finished (as `close` does).
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let inner = self.inner.clone();
                handle.spawn(async move {
                    let _renewing = inner.renew_lock.lock().await;
                    if let Some(h) = renewal {
                        h.abort();
                    }
                    let _ = close_inner(&inner, false).await;
                });
            }
            Err(_) => {
                if let Some(h) = renewal {
                    h.abort();
                }
                if let Ok(mut m) = self.inner.tokens.write() {
                    for (_, a) in m.drain() {
                        shared_tokens::release(&a.token);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::{MAX_TOKEN_LIFETIME, access_from};
    use crate::wire::TokenResponse;

    #[test]
    fn a_token_is_held_for_at_most_30_days_whatever_the_broker_says() {
        let now = 1_700_000_000;
        let held = |expires_in: i64| {
            let t = TokenResponse {
                access_token: "at".into(),
                token_type: "DPoP".into(),
                expires_in,
                scope: "calendar:read".into(),
                refresh_token: None,
                issued_token_type: None,
                grant_id: None,
                audience: None,
                grant_expires_at: None,
            };
            access_from(&t, now).unwrap().expires_at - now
        };
        assert_eq!(MAX_TOKEN_LIFETIME, 30 * 86_400);
        assert_eq!(held(MAX_TOKEN_LIFETIME), MAX_TOKEN_LIFETIME);
        assert_eq!(held(MAX_TOKEN_LIFETIME + 1), MAX_TOKEN_LIFETIME);
        assert_eq!(held(i64::MAX), MAX_TOKEN_LIFETIME);
        assert_eq!(held(0), 1);
        assert_eq!(held(-5), 1);
    }
}
