//! `authenticateWithProton` and the `Session` it returns.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::Either;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use protonpass_agent as core;

use crate::error::map;

/// What the owner must be shown to approve the agent (RFC 8628 section 3.3).
#[napi(object)]
#[derive(Debug, Clone)]
pub struct DevicePrompt {
    /// Where the owner approves.
    pub verification_uri: String,
    /// The same, with the code filled in.
    pub verification_uri_complete: Option<String>,
    /// The code the owner confirms.
    pub user_code: String,
    /// Seconds until the request expires.
    pub expires_in: u32,
}

impl From<&core::DevicePrompt> for DevicePrompt {
    fn from(p: &core::DevicePrompt) -> Self {
        DevicePrompt {
            verification_uri: p.verification_uri.clone(),
            verification_uri_complete: p.verification_uri_complete.clone(),
            user_code: p.user_code.clone(),
            expires_in: u32::try_from(p.expires_in).unwrap_or(u32::MAX),
        }
    }
}

/// A weak (does not keep Node alive by itself) callback taking the prompt.
type PromptCallback = ThreadsafeFunction<DevicePrompt, (), DevicePrompt, napi::Status, false, true>;

/// Options of `authenticateWithProton`. `broker`, `agentName`, `profile` and
/// `enrollmentCode` may be omitted and then come from `PROTONPASS_BROKER_URL`,
/// `PROTONPASS_AGENT_NAME`, `PROTONPASS_PROFILE` and
/// `PROTONPASS_ENROLLMENT_CODE`, and grants are stored under `PROTONPASS_HOME`
/// (default: the user's config directory). Without a broker URL at all, the
/// broker is found from the resource's RFC 9728 metadata; without `scope`,
/// the scopes are the resource's `401` challenge `scope`, else its
/// `scopes_supported`.
#[napi(object, object_to_js = false)]
pub struct AuthenticateOptions {
    /// The scopes to ask for, e.g. `['travel:search', 'travel:book']`, or one
    /// space-separated string.
    pub scope: Option<Either<String, Vec<String>>>,
    /// The API the token is for (its audience URL, e.g. `https://travel.example`).
    pub audience: Option<String>,
    /// The same as `audience` (RFC 8707's name), e.g. `https://api.example/mcp`.
    pub resource: Option<String>,
    /// The broker's URL.
    pub broker: Option<String>,
    /// The agent's self-chosen name (its `client_id`); default `agent`.
    pub agent_name: Option<String>,
    /// The profile the grant is stored under; default `default`.
    pub profile: Option<String>,
    /// Where grants are kept: `'memory'` (this process only) or a directory.
    pub store: Option<String>,
    /// Shows the owner what to approve; called once per approval. Default: one
    /// line on stderr.
    #[napi(ts_type = "(prompt: DevicePrompt) => void")]
    pub on_prompt: Option<PromptCallback>,
    /// Requested lifetime of access tokens, in seconds (the broker caps it).
    pub ttl: Option<u32>,
    /// Scopes that must be granted (default: every requested scope); a missing
    /// one fails with code `scope_not_granted` (and a new grant without it is
    /// revoked at once). Pass `[]` to accept any subset the owner grants.
    pub required: Option<Vec<String>>,
    /// Why the agent acts (at most 300 characters): shown to the owner on the
    /// approval page and by `protonpass-broker pending`, marked as the agent's
    /// own words (nothing checks it), and signed into every proof.
    pub reason: Option<String>,
    /// A one-time enrollment code from the owner (headless agents).
    pub enrollment_code: Option<String>,
    /// When the stored grant lacks required scopes, ask the owner again for
    /// the additional ones instead of failing.
    pub extend: Option<bool>,
    /// Renew access tokens in the background before they expire; default true.
    pub background_renewal: Option<bool>,
    /// Let the session ask the owner for one-time authorizations
    /// (`session.stepUp`, `spec/14-step-up.md`); default false.
    pub allow_step_up: Option<bool>,
    /// Set by the package (from `newWait`): the id `cancelWait` ends this
    /// call's wait for approval by. Use `signal` instead.
    #[napi(skip_typescript)]
    pub wait_id: Option<u32>,
}

/// The waits for approval JavaScript may end, by id (`lib/session.js` ends one
/// when `onPrompt` throws or the caller's `AbortSignal` fires).
static WAITS: LazyLock<Mutex<HashMap<u32, core::CancelHandle>>> = LazyLock::new(Mutex::default);
static NEXT_WAIT: AtomicU32 = AtomicU32::new(1);

/// A new id for `authenticateWithProton`'s `waitId` (used by the package).
#[napi(js_name = "newWait", skip_typescript)]
pub fn new_wait() -> u32 {
    let id = NEXT_WAIT.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut w) = WAITS.lock() {
        w.insert(id, core::CancelHandle::new());
    }
    id
}

/// End the wait for approval of the call given `id` (if it still waits,
/// the request is withdrawn at the broker and the call rejects with code
/// `cancelled`) and forget the id.
#[napi(js_name = "cancelWait", skip_typescript)]
pub fn cancel_wait(id: u32) {
    if let Some(h) = WAITS.lock().ok().and_then(|mut w| w.remove(&id)) {
        h.cancel();
    }
}

/// Forgets a wait once its call returned.
struct WaitEntry(Option<u32>);

impl Drop for WaitEntry {
    fn drop(&mut self) {
        if let (Some(id), Ok(mut w)) = (self.0, WAITS.lock()) {
            w.remove(&id);
        }
    }
}

impl fmt::Debug for AuthenticateOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticateOptions")
            .field("audience", &self.audience)
            .field("broker", &self.broker)
            .field("agent_name", &self.agent_name)
            .field("profile", &self.profile)
            .field("store", &self.store)
            .field(
                "enrollment_code",
                &self.enrollment_code.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

fn scope_list(s: Either<String, Vec<String>>) -> Vec<String> {
    match s {
        Either::A(s) => s.split_whitespace().map(str::to_owned).collect(),
        Either::B(v) => v,
    }
}

/// Ask the broker for access and return a `Session`: uses the stored grant
/// for (broker, profile, agent name), or obtains one (the enrollment code, else
/// the owner's approval through the device flow), then exchanges it for an
/// access token for `scope` on `audience`.
#[napi(js_name = "authenticateWithProton")]
pub async fn authenticate_with_proton(options: AuthenticateOptions) -> napi::Result<Session> {
    let AuthenticateOptions {
        scope,
        audience,
        resource,
        broker,
        agent_name,
        profile,
        store,
        on_prompt,
        ttl,
        required,
        reason,
        enrollment_code,
        extend,
        background_renewal,
        allow_step_up,
        wait_id,
    } = options;
    let _entry = WaitEntry(wait_id);
    let cancel = wait_id.and_then(|id| WAITS.lock().ok().and_then(|w| w.get(&id).cloned()));
    let prompt: Option<core::PromptFn> = on_prompt.map(|cb| {
        let cb = Arc::new(cb);
        let f: core::PromptFn = Arc::new(move |p: &core::DevicePrompt| {
            cb.call(
                DevicePrompt::from(p),
                ThreadsafeFunctionCallMode::NonBlocking,
            );
        });
        f
    });
    let opts = core::AuthOptions {
        broker,
        agent_name,
        profile,
        store: store.map(|s| match s.as_str() {
            "memory" => core::StoreKind::Memory,
            dir => core::StoreKind::File(PathBuf::from(dir)),
        }),
        prompt,
        cancel,
        ttl: ttl.map(u64::from),
        required,
        reason,
        enrollment_code,
        extend: extend.unwrap_or(false),
        background_renewal: background_renewal.unwrap_or(true),
        allow_step_up: allow_step_up.unwrap_or(false),
        ..core::AuthOptions::default()
    };
    let scopes = scope.map(scope_list).unwrap_or_default();
    let audience = match (audience, resource) {
        (Some(a), Some(r)) if a != r => {
            return Err(crate::error::to_napi(&core::Error::InvalidRequest(
                "audience and resource name different APIs: pass one of them".into(),
            )));
        }
        (a, r) => r.or(a).unwrap_or_default(),
    };
    let s = map(core::authenticate_with_proton(&scopes, &audience, opts).await)?;
    Ok(Session { inner: Arc::new(s) })
}

/// What a step-up asks for beyond the challenge: for a payment, the payee
/// (and the amount and currency when the challenge does not name them), and
/// the reason shown to the owner.
#[napi(object)]
#[derive(Debug, Default)]
pub struct StepUpOptions {
    /// A decimal string, e.g. `'250.00'`.
    pub amount: Option<String>,
    /// ISO 4217 code, e.g. `'EUR'`.
    pub currency: Option<String>,
    /// Who is paid.
    pub payee: Option<String>,
    /// The agent's reason (at most 200 characters), shown to the owner verbatim.
    pub binding_message: Option<String>,
}

/// A step-up's one-time token: bound to the agent's key, carrying exactly
/// the approved details, valid for one call (`session.oneTimeHeaders`).
#[napi]
#[derive(Debug)]
pub struct OneTimeToken {
    inner: Arc<core::OneTimeToken>,
}

#[napi]
impl OneTimeToken {
    /// The audience it is for.
    #[napi(getter)]
    pub fn audience(&self) -> String {
        self.inner.audience.clone()
    }
    /// The scope it carries.
    #[napi(getter)]
    pub fn scope(&self) -> String {
        self.inner.scope.clone()
    }
    /// Seconds it lives from issue (at most 300).
    #[napi(getter)]
    pub fn expires_in(&self) -> i64 {
        self.inner.expires_in
    }
    /// The approved authorization details, as JSON text.
    #[napi(getter)]
    pub fn authorization_details(&self) -> String {
        self.inner.authorization_details.to_string()
    }
}

/// What to do after a response to a request signed with `session.headers`.
#[napi(string_enum = "lowercase")]
#[derive(Debug, PartialEq, Eq)]
pub enum Challenge {
    /// Hand the response to the caller.
    None,
    /// The server asked for a DPoP nonce (now recorded): sign again and retry once.
    Nonce,
    /// The token was refused as invalid or expired: renew, sign again and retry once.
    Renew,
}

/// An authenticated agent session: DPoP-bound access tokens per audience,
/// renewed in the background, revoked by `close()`.
#[napi]
#[derive(Debug)]
pub struct Session {
    inner: Arc<core::Session>,
}

#[napi]
impl Session {
    /// The headers for one request: `Authorization: DPoP <token>` and a fresh
    /// `DPoP` proof bound to the token, the method and the URL (with the
    /// origin's nonce and the reason when there are some). A URL outside the
    /// session's audiences (same scheme, host and port, path under the
    /// audience's path) is refused with `invalid_request`.
    #[napi]
    pub fn headers(
        &self,
        method: String,
        url: String,
        reason: Option<String>,
    ) -> napi::Result<HashMap<String, String>> {
        let h = map(self
            .inner
            .headers_with_reason(&method, &url, reason.as_deref()))?;
        Ok(h.into_iter().collect())
    }

    /// Where a request for `url` goes: for a URL under an audience the
    /// broker serves through its gateway, the same path and query under the
    /// gateway URL (sign that URL); any other URL unchanged.
    #[napi]
    pub fn route(&self, url: String) -> napi::Result<String> {
        map(self.inner.route(&url))
    }

    /// Record what a response to a request signed by this session says (its
    /// `DPoP-Nonce`) and tell whether to sign again and retry once.
    #[napi]
    pub fn observe_response(
        &self,
        url: String,
        status: u16,
        www_authenticate: Option<String>,
        dpop_nonce: Option<String>,
    ) -> Challenge {
        match self.inner.observe_response(
            &url,
            status,
            www_authenticate.as_deref(),
            dpop_nonce.as_deref(),
        ) {
            core::Challenge::Nonce => Challenge::Nonce,
            core::Challenge::Renew => Challenge::Renew,
            _ => Challenge::None,
        }
    }

    /// The scopes granted for the session's (first) audience.
    #[napi(getter)]
    pub fn scopes(&self) -> Vec<String> {
        self.inner
            .scopes()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// When the current access token for the first audience expires, in
    /// seconds since the epoch (like a JWT `exp`).
    #[napi(getter)]
    pub fn expires_at(&self) -> i64 {
        self.inner.expires_at()
    }

    /// The RFC 7638 thumbprint of the agent's key (what tokens are bound to).
    #[napi(getter)]
    pub fn thumbprint(&self) -> String {
        self.inner.thumbprint().to_owned()
    }

    /// The audiences this session holds tokens for.
    #[napi(getter)]
    pub fn audiences(&self) -> Vec<String> {
        self.inner.audiences()
    }

    /// Whether `close()` ran.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Ask the owner for a one-time authorization of the call to `url` that
    /// was refused with `wwwAuthenticate` (a 403 `insufficient_scope` or
    /// `budget_exceeded`), wait for the decision (`onPrompt` is told once),
    /// and resolve with the one-time token. Needs `allowStepUp`. Rejects
    /// with `access_denied`, `expired_token` or `invalid_grant`.
    #[napi]
    pub async fn step_up(
        &self,
        url: String,
        www_authenticate: String,
        options: Option<StepUpOptions>,
    ) -> napi::Result<OneTimeToken> {
        let o = options.unwrap_or_default();
        let payment = o.payee.map(|payee| core::Payment {
            amount: o.amount.unwrap_or_default(),
            currency: o.currency.unwrap_or_default(),
            payee,
        });
        let ask = core::StepUpAsk::from_challenge(
            &www_authenticate,
            payment.as_ref(),
            o.binding_message.as_deref(),
        )
        .ok_or_else(|| {
            crate::error::to_napi(&core::Error::InvalidRequest(
                "the challenge asks for no step-up: expected a 403 insufficient_scope or budget_exceeded with a scope".into(),
            ))
        })?;
        let s = self.inner.clone();
        let t = map(s.step_up(&url, &ask).await)?;
        Ok(OneTimeToken { inner: Arc::new(t) })
    }

    /// The headers for the one call a one-time token allows.
    #[napi]
    pub fn one_time_headers(
        &self,
        token: &OneTimeToken,
        method: String,
        url: String,
    ) -> napi::Result<HashMap<String, String>> {
        let h = map(self.inner.one_time_headers(&token.inner, &method, &url))?;
        Ok(h.into_iter().collect())
    }

    /// Renew every access token now (rotating the refresh token).
    #[napi]
    pub async fn renew(&self) -> napi::Result<()> {
        let s = self.inner.clone();
        map(s.renew().await)
    }

    /// Get a token for another audience too; returns the scopes granted for it.
    #[napi]
    pub async fn add_audience(&self, audience: String) -> napi::Result<Vec<String>> {
        let s = self.inner.clone();
        let granted = map(s.add_audience(&audience).await)?;
        Ok(granted.iter().map(ToString::to_string).collect())
    }

    /// Revoke the session's access tokens (and the stored grant too when
    /// `revokeGrant` is true), then stop renewing. Bounded in time.
    #[napi]
    pub async fn close(&self, revoke_grant: Option<bool>) -> napi::Result<()> {
        let s = self.inner.clone();
        map(s.close(revoke_grant.unwrap_or(false)).await)
    }

    /// `close()` that blocks the calling thread for at most `timeoutMs`
    /// (default 2000): for `process.on('exit')`, where nothing asynchronous
    /// runs any more. Returns whether the revocation completed.
    #[napi]
    pub fn close_sync(&self, timeout_ms: Option<u32>) -> bool {
        let s = self.inner.clone();
        let limit = Duration::from_millis(u64::from(timeout_ms.unwrap_or(2000)));
        napi::bindgen_prelude::block_on(async move {
            matches!(
                tokio::time::timeout(limit, s.close(false)).await,
                Ok(Ok(()))
            )
        })
    }
}
