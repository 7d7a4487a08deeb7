//! Access token verification against a fixed key set on arbitrary input: it
//! must never panic, and a token it accepts must carry the expected issuer and
//! audience and be unexpired.
//!
//! The fixed broker key, kid, issuer, audience and time match the seed corpus
//! written by `core/tests/protocol/seeds.rs`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use protonpass_agent::token::peek_kid;
use protonpass_agent::{AgentKey, KeySet, TokenValidation, dpop_token, verify_access_token};

const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://broker.example";
const AUDIENCE: &str = "https://api.example";

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut set = KeySet::default();
        let broker = AgentKey::from_seed(&[0x33; 32]);
        if set.insert("k1", &broker.public_jwk()).is_err() {
            unreachable!("a generated key is never weak");
        }
        set
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let validation = TokenValidation::new(ISSUER, AUDIENCE);
    if let Ok(claims) = verify_access_token(token, keys(), &validation, NOW) {
        assert_eq!(claims.iss, ISSUER);
        assert_eq!(claims.aud, AUDIENCE);
        assert!(NOW < claims.exp + validation.leeway);
        assert_eq!(peek_kid(token).as_deref(), Some("k1"));
    }
    let _ = dpop_token(&[token]);
    let _ = KeySet::from_jwks_json(token);
});
