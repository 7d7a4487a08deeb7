//! DPoP proof verification on arbitrary input: it must never panic, and what it
//! accepts must satisfy the request it was checked against.
//!
//! The fixed agent key, time, URL and token match the seed corpus written by
//! `core/tests/protocol/seeds.rs`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use protonpass_agent::{AgentKey, ProofCheck, ProofOptions, normalize_htu, verify_proof};

const NOW: i64 = 1_700_000_000;
const URL: &str = "https://api.example/bookings";
const TOKEN: &str = "fuzz-access-token";

fn agent_jkt() -> &'static str {
    static JKT: OnceLock<String> = OnceLock::new();
    JKT.get_or_init(|| AgentKey::from_seed(&[0x11; 32]).thumbprint().to_owned())
}

fuzz_target!(|data: &[u8]| {
    let Ok(proof) = std::str::from_utf8(data) else {
        return;
    };
    let opts = ProofOptions::default();
    let plain = ProofCheck {
        method: "POST",
        url: URL,
        ..Default::default()
    };
    let accepts = |n: &str| n == "server-nonce";
    let bound = ProofCheck {
        access_token: Some(TOKEN),
        expected_jkt: Some(agent_jkt()),
        nonce: Some(&accepts),
        ..plain
    };
    let loose = verify_proof(proof, &plain, &opts, NOW);
    let strict = verify_proof(proof, &bound, &opts, NOW);
    if let Ok(p) = &loose {
        assert_eq!(p.htm, "POST");
        assert_eq!(normalize_htu(&p.htu).as_deref(), Some(URL));
        assert!((NOW - 10..=NOW + 10).contains(&p.iat));
        assert!(p.jti.len() >= 16);
    }
    if let Ok(p) = &strict {
        // The stricter check never accepts what the plain one refuses.
        assert!(loose.is_ok());
        assert_eq!(p.jkt, agent_jkt());
        assert_eq!(p.nonce.as_deref(), Some("server-nonce"));
    }
    let _ = normalize_htu(proof);
});
