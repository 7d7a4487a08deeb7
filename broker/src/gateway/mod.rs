//! The credential-injecting gateway (specification: `spec/10-gateway-rules.md`):
//! an owner's upstream APIs, each with a rules file and a secret kept
//! encrypted in the vault; agents call `{issuer}/gateway/{name}/...` with their
//! DPoP-bound token, and the gateway forwards the request with the owner's
//! real credential, which the agent never sees.

mod credential;
pub(crate) mod forward;
mod live;
pub mod oauth;
mod oauth_callback;
mod oauth_client;
pub mod oauth_config;
pub mod path;
pub(crate) mod proxy;
pub mod rules;
mod spend_call;
pub mod spend_rule;
pub mod templates;
mod token_cache;
pub(crate) mod upstreams;
pub(crate) mod vault;
mod watch;

pub(crate) use proxy::router;
