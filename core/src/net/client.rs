//! The agent side: `authenticate_with_proton` and the `Session` it returns.
//!
//! One concern per file, in the order of a session's life:
//! [`authenticate`] obtains the grant (stored, enrollment code or device
//! flow) and the first token; [`calls`] signs and sends the broker requests
//! (token endpoint, exchange, revocation); [`device`] is the device
//! authorization wait; [`session`] holds the tokens and closes them;
//! [`signing`] picks the audience, routes and signs each API request;
//! [`renewal`] renews tokens in the background; [`stepup`] asks the owner for
//! one-time authorizations.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use zeroize::Zeroizing;

use super::http;
use super::store::StoreKind;
use crate::clock::{Clock, OsRandom, Random, SystemClock};

mod authenticate;
mod calls;
mod device;
mod renewal;
mod session;
mod signing;
pub(super) mod stepup;

pub use authenticate::authenticate_with_proton;
pub use session::Session;

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

pub(super) fn env_or(v: &Option<String>, var: &str) -> Option<String> {
    v.clone()
        .or_else(|| std::env::var(var).ok())
        .filter(|s| !s.is_empty())
}
