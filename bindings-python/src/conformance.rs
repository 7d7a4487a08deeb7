//! The core's protocol functions, one by one: RFC 7638 thumbprints, Ed25519
//! (RFC 8032/8037) signatures, `ath` and DPoP proof verification (RFC 9449).
//! They exist so that an application, and the conformance tests run against
//! `spec/vectors/`, can reach each function without a broker. Types are
//! converted and errors mapped here; nothing is decided.

use std::collections::BTreeMap;

use protonpass_agent::{
    self as core, AgentKey, Alg, Clock, Error, ProofCheck, ProofOptions, PublicJwk, SystemClock,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::to_py;

/// The public key of a JWK as the core reads it (OKP/Ed25519 or EC/P-256),
/// with its members as a dict.
fn jwk_members(jwk: &PublicJwk) -> BTreeMap<String, String> {
    jwk.to_json()
        .into_iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
        .collect()
}

/// The RFC 7638 SHA-256 thumbprint (base64url) of a JWK given as JSON text,
/// from its required members only (RSA, EC, OKP and oct keys).
#[pyfunction]
fn jwk_thumbprint(jwk: &str) -> PyResult<String> {
    core::parse_jwk_json(jwk)
        .and_then(|m| core::jwk_thumbprint(&m))
        .map_err(to_py)
}

/// Verify `signature` over `message` with a public JWK (JSON text) under the
/// JWS algorithm `alg`: the check a DPoP proof's signature gets. Raises
/// `ProtonPassError` with code `invalid_key` when the key is refused (private
/// members, unsupported type, weak point) or the signature does not verify.
#[pyfunction]
fn verify_signature(jwk: &str, alg: &str, message: &[u8], signature: &[u8]) -> PyResult<()> {
    let alg = Alg::parse(alg).ok_or_else(|| {
        to_py(Error::InvalidRequest(format!(
            "algorithm {alg:?} is not accepted"
        )))
    })?;
    core::parse_jwk_json(jwk)
        .and_then(|m| PublicJwk::from_json(&m))
        .and_then(|k| k.verifier())
        .and_then(|v| v.verify(alg, message, signature))
        .map_err(to_py)
}

/// Verify an Ed25519 signature with a raw 32-byte public key (the core's
/// strict verifier: canonical `S`, no small-order points).
#[pyfunction]
fn verify_ed25519(public_key: &[u8], message: &[u8], signature: &[u8]) -> PyResult<()> {
    let pk = <[u8; 32]>::try_from(public_key).map_err(|_| {
        to_py(Error::InvalidKey(
            "an Ed25519 public key is 32 bytes".into(),
        ))
    })?;
    core::verify_ed25519_raw(&pk, message, signature).map_err(to_py)
}

/// Sign `message` with a private Ed25519 JWK (JSON text; `x`, when present,
/// must match `d`). Ed25519 is deterministic: the same input gives the same
/// 64 bytes.
#[pyfunction]
fn sign_ed25519<'py>(
    py: Python<'py>,
    private_jwk: &str,
    message: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let key = AgentKey::from_private_jwk(private_jwk).map_err(to_py)?;
    Ok(PyBytes::new(py, &key.sign(message)))
}

/// The `ath` of an access token: base64url(SHA-256(token)) (RFC 9449 4.2).
#[pyfunction]
fn access_token_hash(access_token: &str) -> String {
    core::access_token_hash(access_token)
}

/// A DPoP proof that passed every check of RFC 9449 section 4.3 (replay
/// aside): its key and claims.
#[pyclass(frozen, module = "protonpass_agent._native", name = "VerifiedProof")]
#[derive(Debug)]
pub struct VerifiedProof {
    /// The proof's public JWK.
    #[pyo3(get)]
    jwk: BTreeMap<String, String>,
    /// Its RFC 7638 thumbprint.
    #[pyo3(get)]
    jkt: String,
    /// The JWS algorithm (`EdDSA`, `Ed25519` or `ES256`).
    #[pyo3(get)]
    alg: &'static str,
    /// `jti`.
    #[pyo3(get)]
    jti: String,
    /// `htm`.
    #[pyo3(get)]
    htm: String,
    /// `htu`, normalized.
    #[pyo3(get)]
    htu: String,
    /// `iat`.
    #[pyo3(get)]
    iat: i64,
    /// The nonce it carried.
    #[pyo3(get)]
    nonce: Option<String>,
    /// The agent's stated reason, if any.
    #[pyo3(get)]
    reason: Option<String>,
}

/// Verify a DPoP proof for a request (`method`, full `url`) at time `now`
/// (seconds since the epoch; the system clock when omitted). With
/// `access_token`, the proof's `ath` must hash it; with `expected_jkt`, its
/// key must have that thumbprint. Replay is not checked (that needs a cache).
/// Raises `InvalidProof` (`.reason` says which check failed).
#[pyfunction]
#[pyo3(signature = (proof, method, url, *, now = None, access_token = None, expected_jkt = None, allow_es256 = true, max_age = 10, max_skew = 10))]
#[allow(clippy::too_many_arguments)]
fn verify_proof(
    proof: &str,
    method: &str,
    url: &str,
    now: Option<i64>,
    access_token: Option<&str>,
    expected_jkt: Option<&str>,
    allow_es256: bool,
    max_age: i64,
    max_skew: i64,
) -> PyResult<VerifiedProof> {
    let check = ProofCheck {
        method,
        url,
        access_token,
        expected_jkt,
        nonce: None,
    };
    let opts = ProofOptions {
        max_age,
        max_skew,
        allow_es256,
        ..ProofOptions::default()
    };
    let now = now.unwrap_or_else(|| SystemClock.now());
    let p = core::verify_proof(proof, &check, &opts, now).map_err(to_py)?;
    Ok(VerifiedProof {
        jwk: jwk_members(&p.jwk),
        jkt: p.jkt,
        alg: p.alg.as_str(),
        jti: p.jti,
        htm: p.htm,
        htu: p.htu,
        iat: p.iat,
        nonce: p.nonce,
        reason: p.reason,
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<VerifiedProof>()?;
    m.add_function(wrap_pyfunction!(jwk_thumbprint, m)?)?;
    m.add_function(wrap_pyfunction!(verify_signature, m)?)?;
    m.add_function(wrap_pyfunction!(verify_ed25519, m)?)?;
    m.add_function(wrap_pyfunction!(sign_ed25519, m)?)?;
    m.add_function(wrap_pyfunction!(access_token_hash, m)?)?;
    m.add_function(wrap_pyfunction!(verify_proof, m)?)?;
    Ok(())
}
