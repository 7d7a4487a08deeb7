//! Node.js addon for `protonpass-agent`: converts types, maps errors, bridges
//! async. Every protocol decision lives in the core crate; `lib/*.js` add the
//! JavaScript conveniences (`session.fetch`, Express middleware, error classes).

mod conformance;
mod error;
mod metadata;
mod session;
mod verifier;

use napi_derive::napi;

pub use conformance::{
    ProofCheckOptions, access_token_hash, jwk_thumbprint, sign_ed25519, verify_ed25519,
    verify_proof, verify_signature,
};
pub use metadata::{
    ResourceMetadataOptions, resource_metadata_json, resource_metadata_path, resource_metadata_url,
};
pub use session::{
    AuthenticateOptions, Challenge, DevicePrompt, Session, authenticate_with_proton, cancel_wait,
    new_wait,
};
pub use verifier::{
    ClientCredentials, Identity, Rejection, Requirement, Verdict, Verifier, VerifierConfig,
    VerifyRequest, scope_refusal,
};

/// The version of the package and of the core it wraps (one version for the
/// whole project).
#[napi]
pub fn version() -> String {
    protonpass_agent::VERSION.to_owned()
}
