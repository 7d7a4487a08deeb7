//! The network side (feature `net`): the agent client
//! ([`authenticate_with_proton`]) and the resource-server [`Verifier`].
//!
//! One HTTP stack (reqwest with rustls, no OpenSSL), timeouts on every call,
//! retries with backoff and jitter for idempotent calls only, and typed errors
//! that say what to do.

mod audience;
mod client;
pub mod discovery;
mod gateway_route;
mod http;
mod shared_tokens;
mod store;
mod verifier;

#[cfg(feature = "axum")]
pub mod axum_layer;

pub use client::stepup::{OneTimeToken, Payment, StepUpAsk, stderr_step_up_prompt};
pub use client::{
    AuthOptions, CancelHandle, Challenge, DevicePrompt, PromptFn, Session,
    authenticate_with_proton, stderr_prompt,
};
pub use http::discover;
pub use store::{GrantStore, StoreKind, StoredGrant};
pub use verifier::{Identity, Rejection, StalePolicy, Verifier, VerifierOptions};
