//! # protonpass-agent
//!
//! The protocol core of agent access tokens: Ed25519 keys and RFC 7638
//! thumbprints, DPoP proofs (RFC 9449), JWT access tokens (RFC 9068), and the
//! scope algebra. Everything here is pure: no network, no real clock (time
//! comes in as a parameter, see [`Clock`]), no global state.
//!
//! ```
//! use protonpass_agent::*;
//!
//! # // readme:begin protocol
//! let now = 1_700_000_000;
//! let rng = OsRandom;
//! // The broker's signing key and the agent's key.
//! let broker = SigningKey::new("k1", AgentKey::generate(&rng)?);
//! let agent = AgentKey::generate(&rng)?;
//! let token = broker.sign(&AccessTokenClaims {
//!     iss: "https://broker.example".into(), sub: "owner".into(),
//!     aud: "https://api.example".into(), client_id: "travel-bot".into(),
//!     iat: now, exp: now + 3600, jti: "t1".into(), scope: "travel:book".into(),
//!     jkt: agent.thumbprint().into(), gid: "g1".into(), act_sub: "travel-bot".into(),
//! });
//! // The agent proves possession of its key for one request.
//! let url = "https://api.example/bookings";
//! let proof = create_proof(&agent, &ProofInput { method: "POST", url,
//!     access_token: Some(&token), ..Default::default() }, now, &rng)?;
//! // The API checks token, proof, binding and replay in one call.
//! let mut keys = KeySet::default();
//! keys.insert("k1", &broker.key().public_jwk())?;
//! let ok = verify_request("POST", url, &[format!("DPoP {token}")], &[proof],
//!     &keys, &TokenValidation::new("https://broker.example", "https://api.example"),
//!     &ProofVerifier::default(), None, now)?;
//! ScopeSet::parse(&ok.claims.scope)?.require("travel:book")?;
//! # // readme:end protocol
//! # Ok::<(), protonpass_agent::Error>(())
//! ```

pub mod b64;
pub mod budget;
pub mod clock;
pub mod dpop;
pub mod error;
pub mod json;
pub mod jws;
pub mod keys;
pub mod replay;
pub mod request;
pub mod resource_metadata;
pub mod scope;
pub mod token;
pub mod wire;

#[cfg(feature = "net")]
pub mod net;
#[cfg(feature = "net")]
pub use net::{
    AuthOptions, CancelHandle, Challenge, DevicePrompt, GrantStore, Identity, OneTimeToken,
    Payment, PromptFn, Rejection, Session, StalePolicy, StepUpAsk, StoreKind, StoredGrant,
    Verifier, VerifierOptions, authenticate_with_proton,
};

pub use budget::{Period, SpendResponse};
pub use clock::{Clock, ManualClock, OsRandom, Random, SystemClock, random_id};
pub use dpop::{
    ProofCheck, ProofInput, ProofOptions, ProofVerifier, VerifiedProof, access_token_hash,
    create_proof, normalize_htu, verify_proof,
};
pub use error::{Error, Reason, Result};
pub use json::parse_object as parse_json_object;
pub use jws::Alg;
pub use keys::{
    AgentKey, KeyVerifier, PublicJwk, jwk_thumbprint, parse_jwk_json, verify_ed25519_raw,
};
pub use replay::ReplayCache;
pub use request::{
    VerifiedRequest, dpop_token, status_for, verify_request, www_authenticate,
    www_authenticate_needing,
};
pub use resource_metadata::{
    ResourceMetadata, metadata_path as resource_metadata_path,
    metadata_url as resource_metadata_url,
};
pub use scope::{Qualifier, Scope, ScopeSet};
pub use token::{
    AccessTokenClaims, Binding, KeySet, SigningKey, TokenValidation, verify_access_token,
    verify_bearer_access_token,
};

/// The crate version, shared by the whole workspace and the bindings.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
