//! The core's protocol functions, one by one: RFC 7638 thumbprints, Ed25519
//! (RFC 8032/8037) signatures, `ath` and DPoP proof verification (RFC 9449).
//! They exist so that an application, and the conformance tests run against
//! `spec/vectors/`, can reach each function without a broker. Types are
//! converted and errors mapped here; nothing is decided. `lib/protocol.js` accepts a
//! JWK as an object and passes it here as JSON text.

use napi::bindgen_prelude::{Buffer, Uint8Array};
use napi_derive::napi;
use protonpass_agent::{
    self as core, AgentKey, Alg, Clock, Error, ProofCheck, ProofOptions, PublicJwk, SystemClock,
};

use crate::error::{map, to_napi};

/// The RFC 7638 SHA-256 thumbprint (base64url) of a JWK, from its required
/// members only (RSA, EC, OKP and oct keys); private members are ignored.
/// Throws `invalid_key` for a JWK without its required members.
#[napi(ts_args_type = "jwk: Jwk | string")]
pub fn jwk_thumbprint(jwk: String) -> napi::Result<String> {
    map(core::parse_jwk_json(&jwk).and_then(|m| core::jwk_thumbprint(&m)))
}

/// Verify `signature` over `message` with a public JWK under the JWS
/// algorithm `alg` (`EdDSA`, `Ed25519` or `ES256`), as a DPoP proof's
/// signature is checked: only OKP/Ed25519 and EC/P-256 keys, no private
/// members, no weak Ed25519 points. Throws `invalid_key` when the key or the
/// signature is refused, `invalid_request` for an algorithm off the list.
#[napi(ts_args_type = "jwk: Jwk | string, alg: string, message: Uint8Array, signature: Uint8Array")]
pub fn verify_signature(
    jwk: String,
    alg: String,
    message: Uint8Array,
    signature: Uint8Array,
) -> napi::Result<()> {
    let alg = Alg::parse(&alg).ok_or_else(|| {
        to_napi(&Error::InvalidRequest(format!(
            "algorithm {alg:?} is not accepted"
        )))
    })?;
    map(core::parse_jwk_json(&jwk)
        .and_then(|m| PublicJwk::from_json(&m))
        .and_then(|k| k.verifier())
        .and_then(|v| v.verify(alg, &message, &signature)))
}

/// Verify an Ed25519 signature with a raw 32-byte public key (the core's
/// strict verifier: canonical `S`, no small-order points). Throws
/// `invalid_key` when it does not verify.
#[napi]
pub fn verify_ed25519(
    public_key: Uint8Array,
    message: Uint8Array,
    signature: Uint8Array,
) -> napi::Result<()> {
    let pk = <[u8; 32]>::try_from(&*public_key).map_err(|_| {
        to_napi(&Error::InvalidKey(
            "an Ed25519 public key is 32 bytes".into(),
        ))
    })?;
    map(core::verify_ed25519_raw(&pk, &message, &signature))
}

/// Sign `message` with a private Ed25519 JWK (`x`, when present, must match
/// `d`). Deterministic: RFC 8037 A.4 is reproduced byte for byte.
#[napi(ts_args_type = "privateJwk: Jwk | string, message: Uint8Array")]
pub fn sign_ed25519(private_jwk: String, message: Uint8Array) -> napi::Result<Buffer> {
    let key = map(AgentKey::from_private_jwk(&private_jwk))?;
    Ok(Buffer::from(key.sign(&message).to_vec()))
}

/// The `ath` of an access token: base64url(SHA-256(token)) (RFC 9449 4.2).
#[napi]
pub fn access_token_hash(access_token: String) -> String {
    core::access_token_hash(&access_token)
}

/// What a DPoP proof is checked against.
#[napi(object)]
#[derive(Debug)]
pub struct ProofCheckOptions {
    /// The request method, e.g. `POST`.
    pub method: String,
    /// The full URL of the request.
    pub url: String,
    /// The time to check at, in seconds since the epoch (default: now).
    pub now: Option<i64>,
    /// The access token sent with the proof: the proof's `ath` must hash it.
    pub access_token: Option<String>,
    /// The thumbprint the token is bound to (`cnf.jkt`).
    pub expected_jkt: Option<String>,
    /// Accept ES256 proofs (default true).
    pub allow_es256: Option<bool>,
    /// Seconds a proof may be old (default 10).
    pub max_age: Option<i64>,
    /// Seconds a proof may be ahead of the clock (default 10).
    pub max_skew: Option<i64>,
}

/// Verify a DPoP proof (RFC 9449 section 4.3; replay is not checked, that
/// needs a cache). Returns the verified claims or throws `invalid_dpop_proof`
/// (`reason` says which check failed).
#[napi(ts_return_type = "VerifiedProof")]
pub fn verify_proof(
    proof: String,
    check: ProofCheckOptions,
) -> napi::Result<serde_json::Map<String, serde_json::Value>> {
    let defaults = ProofOptions::default();
    let opts = ProofOptions {
        max_age: check.max_age.unwrap_or(defaults.max_age),
        max_skew: check.max_skew.unwrap_or(defaults.max_skew),
        allow_es256: check.allow_es256.unwrap_or(defaults.allow_es256),
        ..defaults
    };
    let core_check = ProofCheck {
        method: &check.method,
        url: &check.url,
        access_token: check.access_token.as_deref(),
        expected_jkt: check.expected_jkt.as_deref(),
        nonce: None,
    };
    let now = check.now.unwrap_or_else(|| SystemClock.now());
    // The verified key and claims, as the core states them (`VerifiedProof`
    // in header.d.ts).
    map(core::verify_proof(&proof, &core_check, &opts, now)).map(|p| p.to_json())
}
