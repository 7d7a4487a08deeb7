//! Key handling: generation, JWK and PKCS#8 round trips, redacted Debug, weak
//! (small-order) keys and inconsistent private JWKs.

use protonpass_agent::keys::verify_ed25519_raw;
use protonpass_agent::{
    AgentKey, Alg, KeySet, OsRandom, ProofCheck, ProofOptions, PublicJwk, Reason, SigningKey, b64,
    jwk_thumbprint, parse_jwk_json, verify_proof,
};
use serde_json::{Value, json};

use crate::support::{NOW, URL, agent, assert_refused, hex32, obj, proof_claims, sign_json};

#[test]
fn generated_keys_are_distinct_and_usable() {
    let a = AgentKey::generate(&OsRandom).unwrap();
    let b = AgentKey::generate(&OsRandom).unwrap();
    assert_ne!(a.public_bytes(), b.public_bytes());
    assert_ne!(a.thumbprint(), b.thumbprint());
    assert_eq!(a.thumbprint(), a.public_jwk().thumbprint());
    let sig = a.sign(b"hello");
    let v = a.public_jwk().verifier().unwrap();
    v.verify(Alg::EdDsa, b"hello", &sig).unwrap();
    v.verify(Alg::Ed25519, b"hello", &sig).unwrap();
    assert_eq!(
        v.verify(Alg::EdDsa, b"hellO", &sig).unwrap_err().code(),
        "invalid_key"
    );
    // Another key's verifier refuses it.
    assert!(
        b.public_jwk()
            .verifier()
            .unwrap()
            .verify(Alg::EdDsa, b"hello", &sig)
            .is_err()
    );
}

#[test]
fn private_jwk_round_trip() {
    let a = AgentKey::generate(&OsRandom).unwrap();
    let text = a.to_private_jwk();
    let m = obj(serde_json::from_str(&text).unwrap());
    assert_eq!(m["kty"], "OKP");
    assert_eq!(m["crv"], "Ed25519");
    assert_eq!(m["x"], Value::String(b64::encode(a.public_bytes())));
    let back = AgentKey::from_private_jwk(&text).unwrap();
    assert_eq!(back.public_bytes(), a.public_bytes());
    assert_eq!(back.thumbprint(), a.thumbprint());
    assert_eq!(back.sign(b"m"), a.sign(b"m"));
    // Without `x` it is derived from `d`.
    let only_d = json!({"kty": "OKP", "crv": "Ed25519", "d": m["d"]}).to_string();
    assert_eq!(
        AgentKey::from_private_jwk(&only_d).unwrap().public_bytes(),
        a.public_bytes()
    );
}

#[test]
fn pkcs8_pem_round_trip() {
    let a = AgentKey::generate(&OsRandom).unwrap();
    let pem = a.to_pkcs8_pem().unwrap();
    assert!(
        pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "{}",
        pem.len()
    );
    let back = AgentKey::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(back.public_bytes(), a.public_bytes());
    assert_eq!(back.sign(b"m"), a.sign(b"m"));
    for bad in [
        "",
        "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "not a pem",
    ] {
        assert_eq!(
            AgentKey::from_pkcs8_pem(bad).unwrap_err().code(),
            "invalid_key",
            "{bad:?}"
        );
    }
}

#[test]
fn debug_output_never_shows_secrets() {
    let seed = [0xA5u8; 32];
    let key = AgentKey::from_seed(&seed);
    let jwk = key.to_private_jwk();
    let d = obj(serde_json::from_str(&jwk).unwrap())["d"]
        .as_str()
        .unwrap()
        .to_owned();
    let pem = key.to_pkcs8_pem().unwrap();
    let pem_body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let seed_hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let seed_bytes_debug = format!("{seed:?}");
    let signing = SigningKey::new("k1", key.clone());

    for shown in [
        format!("{key:?}"),
        format!("{key:#?}"),
        format!("{signing:?}"),
        format!("{signing:#?}"),
    ] {
        assert!(shown.contains("redacted"), "{shown}");
        assert!(!shown.contains(&d), "{shown}");
        assert!(!shown.to_lowercase().contains(&seed_hex), "{shown}");
        assert!(!shown.contains(&seed_bytes_debug), "{shown}");
        assert!(!shown.contains("165, 165, 165"), "{shown}");
        for line in &pem_body {
            assert!(!shown.contains(line), "{shown}");
        }
    }

    // A proof check holding an access token does not print the token.
    let check = ProofCheck {
        method: "GET",
        url: URL,
        access_token: Some("secret-access-token-value"),
        ..Default::default()
    };
    let shown = format!("{check:?}");
    assert!(!shown.contains("secret-access-token-value"), "{shown}");
}

/// Encodings of the eight small-order points of edwards25519, and
/// non-canonical encodings of some of them (from the Ed25519 literature:
/// "Taming the many EdDSAs", and libsodium's blocklist).
const SMALL_ORDER: &[&str] = &[
    // identity (order 1)
    "0100000000000000000000000000000000000000000000000000000000000000",
    // order 2 (y = -1)
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    // order 4 (y = 0, both signs of x)
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    // order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    // non-canonical: identity with the sign bit, y = p + 1, y = p, y = -1 with sign bit
    "0100000000000000000000000000000000000000000000000000000000000080",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
];

#[test]
fn small_order_keys_are_refused_everywhere() {
    for (i, point) in SMALL_ORDER.iter().enumerate() {
        let x = hex32(point);
        let jwk = PublicJwk::Ed25519(x);
        assert_eq!(jwk.verifier().unwrap_err().code(), "invalid_key", "{point}");

        let json = obj(json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(x)}));
        assert_eq!(
            PublicJwk::from_json(&json).unwrap_err().code(),
            "invalid_key",
            "{point}"
        );
        assert_eq!(
            KeySet::default().insert("k", &jwk).unwrap_err().code(),
            "invalid_key"
        );
        let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k",
            "x": b64::encode(x)}]});
        assert_eq!(
            KeySet::from_jwks_json(&jwks.to_string())
                .unwrap_err()
                .code(),
            "invalid_key"
        );

        // A proof carrying such a key in its header is refused before any
        // signature is looked at (a forged signature of all zeros here).
        let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": Value::Object(json)});
        let claims = proof_claims(&format!("small-order-proof-{i:02}"));
        let signed = sign_json(&agent(), &header, &claims);
        let parts: Vec<&str> = signed.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], parts[1], b64::encode([0u8; 64]));
        let check = ProofCheck {
            method: "POST",
            url: URL,
            ..Default::default()
        };
        assert_refused(
            verify_proof(&forged, &check, &ProofOptions::default(), NOW),
            "invalid_dpop_proof",
            Some(Reason::Key),
        );
    }
}

/// Under a small-order public key, "signatures" made without any secret (R a
/// small-order point, s = 0) satisfy the plain Ed25519 equation for some
/// messages; the core's verification refuses every one of them.
#[test]
fn keyless_signatures_under_small_order_keys_never_verify() {
    let order_8_subgroup = &SMALL_ORDER[..8];
    let mut tried = 0;
    for a in SMALL_ORDER {
        for r in order_8_subgroup {
            for msg in [&b""[..], b"proof", b"a longer message to sign"] {
                let mut sig = [0u8; 64];
                sig[..32].copy_from_slice(&hex32(r));
                let verdict = verify_ed25519_raw(&hex32(a), msg, &sig);
                assert!(verdict.is_err(), "A={a} R={r} msg={msg:?}");
                tried += 1;
            }
        }
    }
    assert_eq!(tried, SMALL_ORDER.len() * 8 * 3);
}

#[test]
fn private_jwk_with_x_not_matching_d_is_refused() {
    let a = agent();
    let other = crate::support::other_agent();
    let m = obj(serde_json::from_str(&a.to_private_jwk()).unwrap());
    let mismatched = json!({"kty": "OKP", "crv": "Ed25519", "d": m["d"],
        "x": b64::encode(other.public_bytes())});
    assert_eq!(
        AgentKey::from_private_jwk(&mismatched.to_string())
            .unwrap_err()
            .code(),
        "invalid_key"
    );
    for bad in [
        json!({"kty": "OKP", "crv": "Ed25519", "d": m["d"], "x": "AAAA"}),
        json!({"kty": "OKP", "crv": "Ed25519"}),
        json!({"kty": "OKP", "crv": "Ed25519", "d": "AAAA"}),
        json!({"kty": "OKP", "crv": "Ed25519", "d": format!("{}=", m["d"].as_str().unwrap())}),
        json!({"kty": "OKP", "crv": "X25519", "d": m["d"]}),
        json!({"kty": "EC", "crv": "Ed25519", "d": m["d"]}),
        json!({"crv": "Ed25519", "d": m["d"]}),
        json!({"kty": "OKP", "crv": "Ed25519", "d": 5}),
    ] {
        assert_eq!(
            AgentKey::from_private_jwk(&bad.to_string())
                .unwrap_err()
                .code(),
            "invalid_key",
            "{bad}"
        );
    }
    // Duplicate members are refused rather than resolved either way.
    let dup = format!(
        r#"{{"kty":"OKP","crv":"Ed25519","d":{},"d":{}}}"#,
        m["d"],
        serde_json::to_string(&b64::encode([0u8; 32])).unwrap()
    );
    assert_eq!(
        AgentKey::from_private_jwk(&dup).unwrap_err().code(),
        "invalid_key"
    );
}

#[test]
fn public_jwk_refuses_private_members_and_bad_coordinates() {
    let x = b64::encode(agent().public_bytes());
    for bad in [
        json!({"kty": "OKP", "crv": "Ed25519", "x": x, "d": x}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": x, "k": "AA"}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": format!("{x}=")}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": &x[..42]}),
        json!({"kty": "OKP", "crv": "X25519", "x": x}),
        json!({"kty": "oct", "k": "AAAA"}),
        json!({"kty": "EC", "crv": "P-256", "x": x, "y": x}),
        json!({"kty": "OKP", "crv": "Ed25519"}),
    ] {
        assert_eq!(
            PublicJwk::from_json(&obj(bad.clone())).unwrap_err().code(),
            "invalid_key",
            "{bad}"
        );
    }
}

#[test]
fn signing_key_publishes_its_jwk_with_kid() {
    let k = SigningKey::new("2026-key", crate::support::broker_key());
    let m = k.public_jwk_json();
    assert_eq!(m["kid"], "2026-key");
    assert_eq!(m["use"], "sig");
    assert_eq!(m["alg"], "EdDSA");
    assert_eq!(m["kty"], "OKP");
    let jwks = json!({"keys": [Value::Object(m)]}).to_string();
    let set = KeySet::from_jwks_json(&jwks).unwrap();
    assert!(set.contains("2026-key"));
    assert_eq!(set.len(), 1);
}

#[test]
fn a_jwk_is_read_from_json_text_and_anything_else_is_an_invalid_key() {
    // RFC 8037 A.2 and its RFC 7638 thumbprint (A.3).
    let text = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
    let m = parse_jwk_json(text).unwrap();
    let jkt = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
    assert_eq!(jwk_thumbprint(&m).unwrap(), jkt);
    assert_eq!(PublicJwk::from_json(&m).unwrap().thumbprint(), jkt);
    for (bad, why) in [
        (r#"{"kty":"OKP","crv":"#, "EOF while parsing"),
        (r#"{"kty":"OKP","kty":"EC"}"#, "duplicate member name"),
        ("", "EOF while parsing"),
        (r#"["kty","OKP"]"#, "not a JSON object"),
        (r#""OKP""#, "not a JSON object"),
        ("null", "not a JSON object"),
    ] {
        let e = parse_jwk_json(bad).unwrap_err();
        assert_eq!(e.code(), "invalid_key", "{bad:?}");
        assert!(e.description().contains(why), "{bad:?}: {e}");
    }
}
