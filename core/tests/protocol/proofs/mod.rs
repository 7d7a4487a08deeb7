//! A failing case for each check of RFC 9449 section 4.3, with the wire code
//! and the finer reason asserted, and the accepted cases at the edges. Checks
//! 1 to 7 (the proof itself) are here, checks 8 to 12 and replay in
//! `proofs/request.rs`.

mod request;

use std::sync::{Arc, Barrier};

use protonpass_agent::{
    AgentKey, Error, ProofCheck, ProofInput, ProofOptions, ProofVerifier, Reason, VerifiedProof,
    access_token_hash, b64, create_proof, verify_proof,
};
use serde_json::{Map, Value, json};

use crate::support::{
    CountingRandom, NOW, URL, agent, assert_refused, other_agent, proof_claims, proof_header,
    sign_json, sign_text, with_header_text, with_segment,
};

const PROOF: &str = "invalid_dpop_proof";

fn check() -> ProofCheck<'static> {
    ProofCheck {
        method: "POST",
        url: URL,
        ..Default::default()
    }
}

fn verify(proof: &str) -> Result<VerifiedProof, Error> {
    verify_proof(proof, &check(), &ProofOptions::default(), NOW)
}

fn verify_at(proof: &str, now: i64) -> Result<VerifiedProof, Error> {
    verify_proof(proof, &check(), &ProofOptions::default(), now)
}

/// A proof from the agent's key, with header and claims changed by `h` and `c`.
fn proof_with(
    h: impl FnOnce(&mut Map<String, Value>),
    c: impl FnOnce(&mut Map<String, Value>),
) -> String {
    proof_with_key(&agent(), h, c)
}

fn proof_with_key(
    key: &AgentKey,
    h: impl FnOnce(&mut Map<String, Value>),
    c: impl FnOnce(&mut Map<String, Value>),
) -> String {
    let Value::Object(mut header) = proof_header(key) else {
        unreachable!()
    };
    let Value::Object(mut claims) = proof_claims("proof-jti-0123456789") else {
        unreachable!()
    };
    h(&mut header);
    c(&mut claims);
    sign_json(key, &Value::Object(header), &Value::Object(claims))
}

fn claims_with(c: impl FnOnce(&mut Map<String, Value>)) -> String {
    proof_with(|_| {}, c)
}

fn header_with(h: impl FnOnce(&mut Map<String, Value>)) -> String {
    proof_with(h, |_| {})
}

#[test]
fn a_well_formed_proof_is_accepted() {
    let ok = verify(&proof_with(|_| {}, |_| {})).unwrap();
    assert_eq!(ok.jkt, agent().thumbprint());
    assert_eq!(ok.htm, "POST");
    assert_eq!(ok.htu, URL);
    // Both names of Ed25519 are accepted.
    verify(&header_with(|h| {
        h.insert("alg".into(), "Ed25519".into());
    }))
    .unwrap();
    // And what create_proof makes, with a reason claim.
    let made = create_proof(
        &agent(),
        &ProofInput {
            method: "POST",
            url: URL,
            reason: Some("book the flight the owner chose"),
            ..Default::default()
        },
        NOW,
        &CountingRandom::default(),
    )
    .unwrap();
    let ok = verify(&made).unwrap();
    assert_eq!(
        ok.reason.as_deref(),
        Some("book the flight the owner chose")
    );
}

// Check 1: exactly one DPoP header.
#[test]
fn check_1_exactly_one_header() {
    let v = ProofVerifier::default();
    let p = claims_with(|_| {});
    let none: [&str; 0] = [];
    assert_refused(
        v.verify(&none, &check(), NOW),
        PROOF,
        Some(Reason::HeaderCount),
    );
    assert_refused(
        v.verify(&[p.as_str(), p.as_str()], &check(), NOW),
        PROOF,
        Some(Reason::HeaderCount),
    );
    let other = proof_with(
        |_| {},
        |c| {
            c.insert("jti".into(), "another-jti-0123456789".into());
        },
    );
    assert_refused(
        v.verify(&[p.as_str(), other.as_str()], &check(), NOW),
        PROOF,
        Some(Reason::HeaderCount),
    );
    v.verify(&[p.as_str()], &check(), NOW).unwrap();
}

// Check 2: a well-formed compact JWS.
#[test]
fn check_2_malformed_jws() {
    let p = claims_with(|_| {});
    let parts: Vec<&str> = p.split('.').collect();
    for bad in [
        String::new(),
        "abc".into(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{p}.{}", parts[2]),
        format!("{p}."),
        // JWS JSON serializations.
        json!({"protected": parts[0], "payload": parts[1], "signature": parts[2]}).to_string(),
        json!({"payload": parts[1], "signatures": [{"protected": parts[0], "signature": parts[2]}]})
            .to_string(),
        // Too large.
        proof_with(|_| {}, |c| {
            c.insert("pad".into(), "x".repeat(5000).into());
        }),
    ] {
        assert_refused(verify(&bad), PROOF, Some(Reason::Malformed));
    }
    // Segments that are not base64url, or not JSON objects.
    assert_refused(
        verify(&with_segment(&p, 0, "!!!")),
        PROOF,
        Some(Reason::Base64),
    );
    assert_refused(verify(&with_segment(&p, 1, "")), PROOF, Some(Reason::Json));
    assert_refused(
        verify(&with_segment(&p, 1, &b64::encode("[1,2]"))),
        PROOF,
        Some(Reason::Json),
    );
    assert_refused(
        verify(&with_header_text(&p, "null")),
        PROOF,
        Some(Reason::Json),
    );
    assert_refused(
        verify(&with_header_text(&p, "{\"alg\":\"EdDSA\"")),
        PROOF,
        Some(Reason::Json),
    );
    // Duplicate member names, which two parsers could read differently.
    let jwk = agent().public_jwk().to_json();
    let jwk = Value::Object(jwk).to_string();
    let dup_header = format!(r#"{{"typ":"dpop+jwt","alg":"EdDSA","alg":"EdDSA","jwk":{jwk}}}"#);
    let claims = proof_claims("proof-jti-0123456789").to_string();
    assert_refused(
        verify(&sign_text(&agent(), &dup_header, &claims)),
        PROOF,
        Some(Reason::Json),
    );
    let dup_claims = format!(
        r#"{{"jti":"proof-jti-0123456789","htm":"GET","htm":"POST","htu":"{URL}","iat":{NOW}}}"#
    );
    let header = proof_header(&agent()).to_string();
    assert_refused(
        verify(&sign_text(&agent(), &header, &dup_claims)),
        PROOF,
        Some(Reason::Json),
    );
    // Non-canonical base64url in the signature: padding and trailing bits.
    assert_refused(verify(&format!("{p}=")), PROOF, Some(Reason::Base64));
    assert_refused(
        verify(&non_canonical_trailing_bits(&p)),
        PROOF,
        Some(Reason::Base64),
    );
}

/// The same signature bytes with non-zero trailing bits in the last character.
pub fn non_canonical_trailing_bits(jws: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let sig = jws.rsplit('.').next().unwrap();
    assert_eq!(
        sig.len() % 4,
        2,
        "a 64-byte signature leaves four spare bits"
    );
    let last = *sig.as_bytes().last().unwrap();
    let idx = ALPHABET.iter().position(|c| *c == last).unwrap();
    assert_eq!(idx & 0b1111, 0);
    let mut changed = sig[..sig.len() - 1].to_owned();
    changed.push(ALPHABET[idx | 1] as char);
    with_segment(jws, 2, &changed)
}

// Check 3: every required header and claim is there, with the right type.
#[test]
fn check_3_missing_required_claims() {
    for name in ["jti", "htm", "htu", "iat"] {
        let p = claims_with(|c| {
            c.remove(name);
        });
        assert_refused(verify(&p), PROOF, Some(Reason::MissingClaim));
    }
    for name in ["jti", "htm", "htu"] {
        let p = claims_with(|c| {
            c.insert(name.into(), json!(42));
        });
        assert_refused(verify(&p), PROOF, Some(Reason::MissingClaim));
    }
    for name in ["typ", "alg", "jwk"] {
        let p = header_with(|h| {
            h.remove(name);
        });
        assert_refused(verify(&p), PROOF, Some(Reason::MissingClaim));
    }
    // jti: between 16 and 256 printable characters.
    for jti in [
        "short".to_owned(),
        "x".repeat(257),
        "has a space in it!!".into(),
        "tab\tin-the-jti-value".into(),
    ] {
        let p = claims_with(|c| {
            c.insert("jti".into(), jti.clone().into());
        });
        assert_refused(verify(&p), PROOF, Some(Reason::Jti));
    }
}

// Check 4: typ is dpop+jwt.
#[test]
fn check_4_typ() {
    for typ in [
        json!("jwt"),
        json!("JWT"),
        json!("at+jwt"),
        json!(""),
        json!(1),
        json!(null),
    ] {
        let p = header_with(|h| {
            h.insert("typ".into(), typ.clone());
        });
        assert_refused(verify(&p), PROOF, Some(Reason::Typ));
    }
}

// Check 5: alg is on the allow-list (asymmetric, never none, exact case).
#[test]
fn check_5_alg_not_allowed() {
    for alg in [
        "none", "None", "NONE", "nOnE", "HS256", "HS384", "HS512", "RS256", "PS256", "ES384",
        "ES256K", "eddsa", "EDDSA", "Eddsa", "ed25519", "ED25519", "es256", "",
    ] {
        let p = header_with(|h| {
            h.insert("alg".into(), alg.into());
        });
        assert_refused(verify(&p), PROOF, Some(Reason::Alg));
        // Unsigned, as an attacker would send it.
        let unsigned = format!("{}.", p.rsplit_once('.').unwrap().0);
        assert_refused(verify(&unsigned), PROOF, Some(Reason::Alg));
    }
    // A name that is not a string.
    let p = header_with(|h| {
        h.insert("alg".into(), json!(["EdDSA"]));
    });
    assert_refused(verify(&p), PROOF, Some(Reason::MissingClaim));
    // An allowed algorithm that does not fit the key type.
    let p = header_with(|h| {
        h.insert("alg".into(), "ES256".into());
    });
    assert_refused(verify(&p), PROOF, Some(Reason::Alg));
}

// Check 6: the signature verifies with the key in the header.
#[test]
fn check_6_signature() {
    let p = claims_with(|_| {});
    // Signed by another key than the one in the header.
    let forged = proof_with_key(
        &other_agent(),
        |h| {
            h.insert("jwk".into(), Value::Object(agent().public_jwk().to_json()));
        },
        |_| {},
    );
    assert_refused(verify(&forged), PROOF, Some(Reason::Signature));
    // Claims changed after signing.
    let changed_claims = claims_with(|c| {
        c.insert("jti".into(), "another-jti-0123456789".into());
    });
    let spliced = with_segment(&p, 1, changed_claims.split('.').nth(1).unwrap());
    assert_refused(verify(&spliced), PROOF, Some(Reason::Signature));
    // Header changed after signing (still valid, just different).
    let other_header = header_with(|h| {
        h.insert("alg".into(), "Ed25519".into());
    });
    let spliced = with_segment(&p, 0, other_header.split('.').next().unwrap());
    assert_refused(verify(&spliced), PROOF, Some(Reason::Signature));
    // Truncated, empty, zeroed and bit-flipped signatures.
    let sig = b64::decode(p.rsplit('.').next().unwrap()).unwrap();
    let mut flipped = sig.clone();
    flipped[10] ^= 1;
    for bad in [
        sig[..63].to_vec(),
        Vec::new(),
        vec![0; 64],
        flipped,
        [sig.clone(), vec![0]].concat(),
    ] {
        assert_refused(
            verify(&with_segment(&p, 2, &b64::encode(bad))),
            PROOF,
            Some(Reason::Signature),
        );
    }
}

// Check 7: the jwk is a public key (no private members) and carries the key
// (no kid, jku, x5u, x5c), and is not weak.
#[test]
fn check_7_private_key_in_jwk_and_other_key_headers() {
    let private = agent().to_private_jwk();
    let private: Value = serde_json::from_str(&private).unwrap();
    let p = header_with(|h| {
        h.insert("jwk".into(), private.clone());
    });
    assert_refused(verify(&p), PROOF, Some(Reason::ForbiddenHeader));
    // A symmetric key is a secret too.
    let p = header_with(|h| {
        h.insert("jwk".into(), json!({"kty": "oct", "k": "c2VjcmV0"}));
    });
    assert_refused(verify(&p), PROOF, Some(Reason::ForbiddenHeader));
    for member in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        let p = header_with(|h| {
            let mut jwk = agent().public_jwk().to_json();
            jwk.insert(member.into(), "AAAA".into());
            h.insert("jwk".into(), Value::Object(jwk));
        });
        assert_refused(verify(&p), PROOF, Some(Reason::ForbiddenHeader));
    }
    for (name, value) in [
        ("kid", json!("k1")),
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("x5c", json!(["MIIB"])),
    ] {
        let p = header_with(|h| {
            h.insert(name.into(), value.clone());
        });
        assert_refused(verify(&p), PROOF, Some(Reason::ForbiddenHeader));
    }
    // A jwk that is not an object, not a key type we take, or not a point.
    for jwk in [
        json!("key"),
        json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
        json!({"kty": "OKP", "crv": "X25519", "x": b64::encode(agent().public_bytes())}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode([0u8; 32])}),
    ] {
        let p = header_with(|h| {
            h.insert("jwk".into(), jwk.clone());
        });
        assert_refused(verify(&p), PROOF, Some(Reason::Key));
    }
    // Unknown critical extensions.
    let p = header_with(|h| {
        h.insert("crit".into(), json!(["exp"]));
    });
    assert_refused(verify(&p), PROOF, Some(Reason::Crit));
}
