//! Helpers shared by the integration tests: vector loading, fixed keys, and
//! hand-built JWS so that tests can craft exactly the input they mean.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use protonpass_agent::b64;
use protonpass_agent::{AgentKey, Error, Random, Reason};
use serde_json::{Map, Value, json};

/// The time every test runs at (2023-11-14).
pub const NOW: i64 = 1_700_000_000;
/// The URL most proofs are made for.
pub const URL: &str = "https://api.example/bookings";
pub const ISSUER: &str = "https://broker.example";
pub const AUDIENCE: &str = "https://api.example";
pub const KID: &str = "k1";

/// Where the known-answer vectors are: the specification's conformance data,
/// `spec/vectors/` in this repository.
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors")
}

/// Read one vector file as JSON; a missing file fails the test loudly.
pub fn load(name: &str) -> Value {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read vector file {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

pub fn hex32(s: &str) -> [u8; 32] {
    hex(s).try_into().expect("32 bytes")
}

pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// A deterministic "random" source, so that generated proofs are reproducible.
#[derive(Debug, Default)]
pub struct CountingRandom(AtomicU64);

impl Random for CountingRandom {
    fn fill(&self, buf: &mut [u8]) -> protonpass_agent::Result<()> {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (n as u8)
                .wrapping_mul(31)
                .wrapping_add(i as u8)
                .wrapping_add(1);
        }
        Ok(())
    }
}

/// The agent's key in most tests.
pub fn agent() -> AgentKey {
    AgentKey::from_seed(&[0x11; 32])
}

/// Another agent (an attacker, or a second client).
pub fn other_agent() -> AgentKey {
    AgentKey::from_seed(&[0x22; 32])
}

/// The broker's token signing key.
pub fn broker_key() -> AgentKey {
    AgentKey::from_seed(&[0x33; 32])
}

/// Sign arbitrary header and payload bytes with an Ed25519 key as compact JWS.
pub fn sign_bytes(key: &AgentKey, header: &[u8], payload: &[u8]) -> String {
    let signing_input = format!("{}.{}", b64::encode(header), b64::encode(payload));
    let sig = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64::encode(sig))
}

/// Sign the JSON texts as given (so that tests can write duplicate members).
pub fn sign_text(key: &AgentKey, header: &str, payload: &str) -> String {
    sign_bytes(key, header.as_bytes(), payload.as_bytes())
}

pub fn sign_json(key: &AgentKey, header: &Value, payload: &Value) -> String {
    sign_text(key, &header.to_string(), &payload.to_string())
}

/// Replace one of the three segments of a compact JWS.
pub fn with_segment(jws: &str, index: usize, segment: &str) -> String {
    let mut parts: Vec<&str> = jws.split('.').collect();
    parts[index] = segment;
    parts.join(".")
}

/// A compact JWS whose header is `header` (as text), with the payload and
/// signature of `jws` kept: for checks that run before the signature.
pub fn with_header_text(jws: &str, header: &str) -> String {
    with_segment(jws, 0, &b64::encode(header.as_bytes()))
}

/// Assert an error's wire code and finer reason, with a readable failure.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, Error>,
    code: &str,
    reason: Option<Reason>,
) -> Error {
    match result {
        Ok(v) => panic!("expected {code}/{reason:?}, but it was accepted: {v:?}"),
        Err(e) => {
            assert_eq!((e.code(), e.reason()), (code, reason), "wrong refusal: {e}");
            e
        }
    }
}

/// The standard proof header for `key`.
pub fn proof_header(key: &AgentKey) -> Value {
    json!({
        "typ": "dpop+jwt",
        "alg": "EdDSA",
        "jwk": Value::Object(key.public_jwk().to_json()),
    })
}

/// Standard proof claims for `POST URL` at `NOW`.
pub fn proof_claims(jti: &str) -> Value {
    json!({
        "jti": jti,
        "htm": "POST",
        "htu": URL,
        "iat": NOW,
    })
}
