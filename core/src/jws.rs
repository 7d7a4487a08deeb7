//! Compact JWS (RFC 7515) as DPoP proofs and access tokens use it.
//!
//! Why not a general JOSE crate: the proofs this project must accept are signed
//! under two names for one algorithm (`EdDSA`, RFC 8037, and `Ed25519`, RFC 9864,
//! which jsonwebtoken 12 refuses while parsing the header), and the strictness
//! required here (duplicate member names, non-canonical base64url, unknown `crit`,
//! one algorithm per key) is not what those crates check. The cryptography is
//! ed25519-dalek and p256; this module only splits, decodes and dispatches.

use serde_json::{Map, Value};

use crate::b64;
use crate::error::{Error, Reason, Result};
use crate::json;

/// The algorithms on the allow-list. Nothing else is ever accepted: not `none`,
/// not a MAC, not RSA, and names are matched exactly (case-sensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// Ed25519 under its RFC 8037 name.
    EdDsa,
    /// Ed25519 under its RFC 9864 name (what current JS clients send).
    Ed25519,
    /// ECDSA P-256 SHA-256, accepted from third-party DPoP clients.
    Es256,
}

impl Alg {
    /// Parse an `alg` header value against the allow-list.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(Alg::EdDsa),
            "Ed25519" => Some(Alg::Ed25519),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }

    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::EdDsa => "EdDSA",
            Alg::Ed25519 => "Ed25519",
            Alg::Es256 => "ES256",
        }
    }
}

/// A compact JWS split and decoded, signature not yet checked.
#[derive(Debug)]
pub struct Jws<'a> {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The payload as a JSON object.
    pub claims: Map<String, Value>,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, what was signed.
    pub signing_input: &'a str,
    /// The raw signature bytes.
    pub signature: Vec<u8>,
    /// The header's algorithm, already on the allow-list.
    pub alg: Alg,
}

/// Split and decode a compact JWS of at most `max_len` bytes. Failures are
/// reported as proof errors; token callers convert with `into_token_error`.
pub fn parse(token: &str, max_len: usize) -> Result<Jws<'_>> {
    if token.len() > max_len {
        return Err(Error::proof(Reason::Malformed, "the JWT is too large"));
    }
    if token.starts_with('{') {
        return Err(Error::proof(
            Reason::Malformed,
            "JWS JSON serialization is not accepted; use the compact form",
        ));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::proof(
            Reason::Malformed,
            "a compact JWS has exactly three parts",
        ));
    };
    let decode = |seg: &str, what: &str| {
        b64::decode(seg).ok_or_else(|| {
            Error::proof(
                Reason::Base64,
                format!("the {what} is not canonical unpadded base64url"),
            )
        })
    };
    let header_bytes = decode(h, "header")?;
    let payload_bytes = decode(p, "payload")?;
    let signature = decode(s, "signature")?;
    let header = json::parse_object(&header_bytes)
        .map_err(|e| Error::proof(Reason::Json, format!("header: {e}")))?;
    let alg_name =
        json::req_str(&header, "alg").map_err(|e| Error::proof(Reason::MissingClaim, e))?;
    let alg = Alg::parse(alg_name).ok_or_else(|| {
        Error::proof(
            Reason::Alg,
            format!("algorithm {alg_name:?} is not accepted"),
        )
    })?;
    if header.contains_key("crit") {
        return Err(Error::proof(
            Reason::Crit,
            "the `crit` header names extensions this implementation does not understand",
        ));
    }
    if header.contains_key("b64") {
        return Err(Error::proof(
            Reason::Crit,
            "unencoded payloads (RFC 7797) are not accepted",
        ));
    }
    let claims = json::parse_object(&payload_bytes)
        .map_err(|e| Error::proof(Reason::Json, format!("payload: {e}")))?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    Ok(Jws {
        header,
        claims,
        signing_input,
        signature,
        alg,
    })
}

/// Sign `header` and `claims` as a compact JWS with `sign`, which returns the
/// Ed25519 signature of its input (`|m| key.sign(m)` for an
/// [`AgentKey`](crate::keys::AgentKey); keys build on this module, not the
/// reverse). The header must already name `alg: EdDSA`.
pub fn sign(
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
    sign: impl FnOnce(&[u8]) -> [u8; 64],
) -> String {
    // Serializing a Map of plain JSON values cannot fail; fall back to `{}` anyway.
    let h = serde_json::to_vec(header).unwrap_or_else(|_| b"{}".to_vec());
    let c = serde_json::to_vec(claims).unwrap_or_else(|_| b"{}".to_vec());
    let mut out = String::with_capacity((h.len() + c.len()) * 4 / 3 + 100);
    out.push_str(&b64::encode(&h));
    out.push('.');
    out.push_str(&b64::encode(&c));
    let sig = sign(out.as_bytes());
    out.push('.');
    out.push_str(&b64::encode(sig));
    out
}
