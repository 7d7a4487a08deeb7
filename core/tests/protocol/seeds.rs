//! Seed corpora for the fuzz targets in `fuzz/`. Ignored by default; run
//! `cargo test -p protonpass-agent --test protocol -- --ignored write_fuzz_seeds`
//! to regenerate `fuzz/corpus/*`. The fixed keys, times and URLs here are the
//! ones the fuzz targets use (see `fuzz/fuzz_targets/*.rs`).

use std::path::PathBuf;

use protonpass_agent::{AccessTokenClaims, ProofInput, SigningKey, create_proof};
use serde_json::{Value, json};

use crate::support::{
    AUDIENCE, CountingRandom, ISSUER, KID, NOW, URL, agent, broker_key, load, sign_json,
};

const FUZZ_TOKEN: &str = "fuzz-access-token";

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
#[ignore = "writes the fuzz seed corpora; run explicitly"]
fn write_fuzz_seeds() {
    let rng = CountingRandom::default();
    let proof = |input: ProofInput<'_>| create_proof(&agent(), &input, NOW, &rng).unwrap();
    let base = ProofInput {
        method: "POST",
        url: URL,
        ..Default::default()
    };
    write("proof_verify", "plain", proof(base).as_bytes());
    write(
        "proof_verify",
        "with_ath",
        proof(ProofInput {
            access_token: Some(FUZZ_TOKEN),
            ..base
        })
        .as_bytes(),
    );
    write(
        "proof_verify",
        "with_nonce_reason",
        proof(ProofInput {
            nonce: Some("server-nonce"),
            reason: Some("book the cheapest flight"),
            url: "https://API.example:443/bookings?x=1#f",
            ..base
        })
        .as_bytes(),
    );
    let mut header = crate::support::proof_header(&agent());
    header["alg"] = json!("Ed25519");
    let mut claims = crate::support::proof_claims("seed-jti-ed25519-name");
    claims["exp"] = json!(NOW + 60);
    claims["nbf"] = json!(NOW - 1);
    write(
        "proof_verify",
        "alg_ed25519",
        sign_json(&agent(), &header, &claims).as_bytes(),
    );
    let rfc = load("rfc9449-vectors.json");
    let es256 = rfc["proof_token_endpoint_section_4_1"]["jwt"]
        .as_str()
        .unwrap();
    write("proof_verify", "rfc9449_es256", es256.as_bytes());

    let signer = SigningKey::new(KID, broker_key());
    let claims = AccessTokenClaims {
        iss: ISSUER.into(),
        sub: "owner".into(),
        aud: AUDIENCE.into(),
        client_id: "travel-bot".into(),
        iat: NOW,
        exp: NOW + 3600,
        jti: "seed-token".into(),
        scope: "travel:search payment:execute:under-100".into(),
        jkt: agent().thumbprint().into(),
        gid: "grant".into(),
        act_sub: "travel-bot".into(),
    };
    write("token_verify", "valid", signer.sign(&claims).as_bytes());
    write(
        "token_verify",
        "expired",
        signer
            .sign(&AccessTokenClaims {
                exp: NOW - 100,
                ..claims.clone()
            })
            .as_bytes(),
    );
    let mut m = claims.to_json();
    m.insert("aud".into(), json!(["https://other.example", AUDIENCE]));
    m.insert("nbf".into(), json!(NOW));
    let header = json!({"typ": "application/at+jwt", "alg": "EdDSA", "kid": KID});
    write(
        "token_verify",
        "aud_list",
        sign_json(&broker_key(), &header, &Value::Object(m)).as_bytes(),
    );

    for (name, text) in [
        ("simple", "calendar:read\ncalendar:read calendar:write"),
        (
            "limits",
            "payment:execute:under-100 repo:write:my-project\npayment:execute:under-500 repo:write:my-project-evil",
        ),
        (
            "any",
            "repo:write:* offline_access\nrepo:write:x repo:write",
        ),
        (
            "decimal",
            "payment:execute:under-99.5\npayment:execute:under-100.25",
        ),
    ] {
        write("scope_parse", name, text.as_bytes());
    }
}

/// The committed seeds still pass the checks the fuzz targets run, so that
/// fuzzing starts from inputs that reach the end of verification.
#[test]
fn committed_fuzz_seeds_still_verify() {
    use protonpass_agent::{
        KeySet, ProofCheck, ProofOptions, TokenValidation, verify_access_token, verify_proof,
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let read = |target: &str, name: &str| {
        std::fs::read_to_string(dir.join(target).join(name))
            .unwrap_or_else(|e| panic!("fuzz seed {target}/{name}: {e}"))
    };
    let opts = ProofOptions::default();
    let plain = ProofCheck {
        method: "POST",
        url: URL,
        ..Default::default()
    };
    for name in ["plain", "with_ath", "with_nonce_reason", "alg_ed25519"] {
        verify_proof(&read("proof_verify", name), &plain, &opts, NOW)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let me = agent();
    let accepts = |n: &str| n == "server-nonce";
    let bound = ProofCheck {
        access_token: Some(FUZZ_TOKEN),
        expected_jkt: Some(me.thumbprint()),
        ..plain
    };
    verify_proof(&read("proof_verify", "with_ath"), &bound, &opts, NOW).unwrap();
    let with_nonce = ProofCheck {
        nonce: Some(&accepts),
        ..plain
    };
    verify_proof(
        &read("proof_verify", "with_nonce_reason"),
        &with_nonce,
        &opts,
        NOW,
    )
    .unwrap();

    let mut keys = KeySet::default();
    keys.insert(KID, &broker_key().public_jwk()).unwrap();
    let v = TokenValidation::new(ISSUER, AUDIENCE);
    for name in ["valid", "aud_list"] {
        verify_access_token(&read("token_verify", name), &keys, &v, NOW)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(verify_access_token(&read("token_verify", "expired"), &keys, &v, NOW).is_err());
}
