//! Known-answer tests: RFC 8037, RFC 7638, RFC 9449 and both Wycheproof
//! Ed25519 files, all read from `spec/vectors` at test time.

use protonpass_agent::keys::verify_ed25519_raw;
use protonpass_agent::{
    AgentKey, Alg, Error, ProofCheck, ProofOptions, PublicJwk, Reason, access_token_hash, b64,
    json, jwk_thumbprint, verify_proof,
};
use serde_json::Value;

use crate::support::{assert_refused, hex, hex32, load, obj};

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("vector field {path:?} is not a string"))
}

/// Verify a compact JWS with an Ed25519 public key the way the core does:
/// strict base64url, strict JSON header, the `alg` allow-list, then our
/// signature check. The payload need not be JSON (RFC 8037 A.4 signs text).
fn verify_compact(jws: &str, jwk: &PublicJwk) -> Result<(), Error> {
    let parts: Vec<&str> = jws.split('.').collect();
    let [h, p, sig] = parts[..] else {
        return Err(Error::InvalidRequest("not three parts".into()));
    };
    let header = b64::decode(h).ok_or_else(|| Error::InvalidRequest("header b64".into()))?;
    let header = json::parse_object(&header).map_err(Error::InvalidRequest)?;
    let alg = json::req_str(&header, "alg").map_err(Error::InvalidRequest)?;
    let alg = Alg::parse(alg).ok_or_else(|| Error::InvalidRequest(format!("alg {alg}")))?;
    b64::decode(p).ok_or_else(|| Error::InvalidRequest("payload b64".into()))?;
    let sig = b64::decode(sig).ok_or_else(|| Error::InvalidRequest("signature b64".into()))?;
    jwk.verifier()?
        .verify(alg, format!("{h}.{p}").as_bytes(), &sig)
}

#[test]
fn rfc8037_private_jwk_public_jwk_and_thumbprint() {
    let v = load("rfc8037-vectors.json");
    let key = AgentKey::from_private_jwk(&v["A1_private_jwk"].to_string()).unwrap();
    assert_eq!(key.public_bytes(), hex32(s(&v, &["raw_hex", "x_public"])));

    let public = PublicJwk::from_json(&obj(v["A2_public_jwk"].clone())).unwrap();
    assert_eq!(key.public_jwk(), public);
    assert_eq!(Value::Object(public.to_json()), v["A2_public_jwk"]);
    assert_eq!(
        public.canonical_json(),
        s(&v, &["A3_thumbprint", "canonical_json"])
    );
    assert_eq!(
        b64::decode(&public.thumbprint()).unwrap(),
        hex(s(&v, &["A3_thumbprint", "sha256_hex"]))
    );
    assert_eq!(key.thumbprint(), s(&v, &["A3_thumbprint", "base64url"]));
    assert_eq!(public.thumbprint(), s(&v, &["A3_thumbprint", "base64url"]));

    // The seed alone gives the same key.
    let from_seed = AgentKey::from_seed(&hex32(s(&v, &["raw_hex", "d_seed"])));
    assert_eq!(from_seed.public_bytes(), key.public_bytes());
}

#[test]
fn rfc8037_signature_is_reproduced_byte_for_byte_and_verifies() {
    let v = load("rfc8037-vectors.json");
    let a4 = &v["A4_sign"];
    let key = AgentKey::from_private_jwk(&v["A1_private_jwk"].to_string()).unwrap();

    assert_eq!(
        b64::encode(s(a4, &["protected_header_json"])),
        s(a4, &["protected_header_b64url"])
    );
    assert_eq!(
        b64::encode(s(a4, &["payload_utf8"])),
        s(a4, &["payload_b64url"])
    );
    let signing_input = s(a4, &["signing_input"]);
    let sig = key.sign(signing_input.as_bytes());
    assert_eq!(sig.to_vec(), hex(s(a4, &["signature_hex"])));
    assert_eq!(b64::encode(sig), s(a4, &["signature_b64url"]));
    assert_eq!(
        format!("{signing_input}.{}", b64::encode(sig)),
        s(a4, &["jws_compact"])
    );

    // A.5: it verifies, through the raw check and the JWK verifier.
    assert_eq!(s(&v, &["A5_verify", "expected"]), "valid");
    verify_ed25519_raw(&key.public_bytes(), signing_input.as_bytes(), &sig).unwrap();
    verify_compact(s(a4, &["jws_compact"]), &key.public_jwk()).unwrap();
}

#[test]
fn rfc8037_derived_negative_cases_are_refused() {
    let v = load("rfc8037-vectors.json");
    let jwk = PublicJwk::from_json(&obj(v["A2_public_jwk"].clone())).unwrap();
    let cases = v["derived_negative_cases_not_from_rfc"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let name = s(case, &["name"]);
        assert_eq!(s(case, &["expected"]), "reject", "{name}");
        let jws = s(case, &["jws"]);
        let err = verify_compact(jws, &jwk).expect_err(name);
        match name {
            "alg_none_same_payload" | "alg_case_variant_NONE" => {
                assert_eq!(err.code(), "invalid_request", "{name}: {err}");
                assert!(err.to_string().contains("alg"), "{name}: {err}");
                // The core's JWS reader refuses it at the allow-list.
                let e = protonpass_agent::jws::parse(jws, 4096).unwrap_err();
                assert_eq!(e.reason(), Some(Reason::Alg), "{name}: {e}");
            }
            _ => assert_eq!(err.code(), "invalid_key", "{name}: {err}"),
        }
    }
}

#[test]
fn rfc7638_thumbprints() {
    let v = load("rfc7638-vectors.json");
    let vectors = v["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 3);
    for t in vectors {
        let name = s(t, &["name"]);
        let jwk = obj(t["jwk"].clone());
        let expected = s(t, &["thumbprint_b64url"]);
        let octets: Vec<u8> = t["sha256_octets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(b64::encode(&octets), expected, "{name}: octets");
        assert_eq!(jwk_thumbprint(&jwk).unwrap(), expected, "{name}");

        // Optional members never change the thumbprint.
        let mut extra = jwk.clone();
        extra.insert("kid".into(), "another".into());
        extra.insert("use".into(), "sig".into());
        assert_eq!(jwk_thumbprint(&extra).unwrap(), expected, "{name}: extra");

        if name.contains("okp") || name.contains("ec_p256") {
            let public = PublicJwk::from_json(&jwk).unwrap();
            assert_eq!(public.canonical_json(), s(t, &["canonical_json"]), "{name}");
            assert_eq!(public.thumbprint(), expected, "{name}");
        } else {
            // RSA is not a key type the core verifies with.
            assert_eq!(
                PublicJwk::from_json(&jwk).unwrap_err().code(),
                "invalid_key"
            );
        }
    }
}

#[test]
fn rfc9449_example_proofs_verify_at_their_iat() {
    let v = load("rfc9449-vectors.json");
    let opts = ProofOptions::default();
    let jkt = s(&v, &["jkt_vector_section_6_1", "jkt"]);

    // Section 4.1: the proof sent to the token endpoint.
    let p = &v["proof_token_endpoint_section_4_1"];
    let iat = p["payload"]["iat"].as_i64().unwrap();
    let check = ProofCheck {
        method: s(p, &["request", "method"]),
        url: s(p, &["request", "uri"]),
        ..Default::default()
    };
    let ok = verify_proof(s(p, &["jwt"]), &check, &opts, iat).unwrap();
    assert_eq!(ok.alg, Alg::Es256);
    assert_eq!(ok.jkt, jkt);
    assert_eq!(ok.jti, s(p, &["payload", "jti"]));
    assert_eq!(ok.htu, s(p, &["payload", "htu"]));
    assert_eq!(ok.iat, iat);

    // Their iat is from 2019: at any real time they are stale.
    assert_refused(
        verify_proof(s(p, &["jwt"]), &check, &opts, iat + 11),
        "invalid_dpop_proof",
        Some(Reason::Iat),
    );
    // A server that does not take ES256 refuses them at the allow-list.
    let ed_only = ProofOptions {
        allow_es256: false,
        ..ProofOptions::default()
    };
    assert_refused(
        verify_proof(s(p, &["jwt"]), &check, &ed_only, iat),
        "invalid_dpop_proof",
        Some(Reason::Alg),
    );

    // Section 7.1: the proof sent with an access token.
    let p = &v["proof_resource_request_section_7_1"];
    let iat = p["payload"]["iat"].as_i64().unwrap();
    let auth = s(p, &["request", "authorization"]);
    let token = auth.strip_prefix("DPoP ").unwrap();
    let check = ProofCheck {
        method: s(p, &["request", "method"]),
        url: s(p, &["request", "uri"]),
        access_token: Some(token),
        expected_jkt: Some(jkt),
        nonce: None,
    };
    let ok = verify_proof(s(p, &["jwt"]), &check, &opts, iat).unwrap();
    assert_eq!(ok.jkt, jkt);
    // The same proof presented with another token fails on ath.
    let other = ProofCheck {
        access_token: Some("another-token"),
        ..check
    };
    assert_refused(
        verify_proof(s(p, &["jwt"]), &other, &opts, iat),
        "invalid_dpop_proof",
        Some(Reason::Ath),
    );
}

#[test]
fn rfc9449_ath_and_jkt_vectors() {
    let v = load("rfc9449-vectors.json");
    let ath = &v["ath_vector_section_7_1"];
    assert_eq!(
        access_token_hash(s(ath, &["access_token"])),
        s(ath, &["ath"])
    );
    let jkt = &v["jkt_vector_section_6_1"];
    let jwk = obj(jkt["jwk"].clone());
    assert_eq!(jwk_thumbprint(&jwk).unwrap(), s(jkt, &["jkt"]));
    assert_eq!(
        PublicJwk::from_json(&jwk).unwrap().thumbprint(),
        s(jkt, &["jkt"])
    );
}

/// The Wycheproof verdicts of one file: (valid, invalid, acceptable) counts.
fn run_wycheproof(file: &str) -> (usize, usize, usize) {
    let v = load(file);
    let mut counts = (0, 0, 0);
    let mut disagreements = Vec::new();
    for group in v["testGroups"].as_array().unwrap() {
        // The v1 file names the key `publicKey`, the older one `key`.
        let key = if group["publicKey"].is_object() {
            &group["publicKey"]
        } else {
            &group["key"]
        };
        let pk_bytes = hex(s(key, &["pk"]));
        // The JWK form of the key, where the file has one, must be the same key.
        let jwk = if group["publicKeyJwk"].is_object() {
            Some(&group["publicKeyJwk"])
        } else if group["jwk"].is_object() {
            Some(&group["jwk"])
        } else {
            None
        };
        if let Some(jwk) = jwk {
            assert_eq!(b64::decode(s(jwk, &["x"])).unwrap(), pk_bytes);
        }
        for t in group["tests"].as_array().unwrap() {
            let id = t["tcId"].as_u64().unwrap();
            let msg = hex(s(t, &["msg"]));
            let sig = hex(s(t, &["sig"]));
            let verdict = match <[u8; 32]>::try_from(pk_bytes.as_slice()) {
                Ok(pk) => verify_ed25519_raw(&pk, &msg, &sig),
                Err(_) => Err(Error::InvalidKey("public key is not 32 bytes".into())),
            };
            // The path a proof takes: key checked (and weak keys refused), then
            // the same signature check.
            let via_jwk = <[u8; 32]>::try_from(pk_bytes.as_slice())
                .map_err(|_| Error::InvalidKey("length".into()))
                .and_then(|pk| PublicJwk::Ed25519(pk).verifier())
                .and_then(|k| k.verify(Alg::EdDsa, &msg, &sig));
            match s(t, &["result"]) {
                "valid" => {
                    counts.0 += 1;
                    if verdict.is_err() || via_jwk.is_err() {
                        disagreements.push(format!("{file} tc {id}: valid but refused"));
                    }
                }
                "invalid" => {
                    counts.1 += 1;
                    if verdict.is_ok() || via_jwk.is_ok() {
                        disagreements.push(format!("{file} tc {id}: invalid but accepted"));
                    }
                }
                "acceptable" => counts.2 += 1,
                other => panic!("{file} tc {id}: unknown result {other}"),
            }
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    assert_eq!(
        counts.0 + counts.1 + counts.2,
        v["numberOfTests"].as_u64().unwrap() as usize,
        "{file}: every case was read"
    );
    counts
}

#[test]
fn wycheproof_ed25519_v1_every_valid_and_invalid_case() {
    let counts = run_wycheproof("wycheproof/testvectors_v1_ed25519_test.json");
    eprintln!("wycheproof v1 ed25519 (valid, invalid, acceptable): {counts:?}");
    assert_eq!(counts, (88, 62, 0));
}

#[test]
fn wycheproof_eddsa_every_valid_and_invalid_case() {
    let counts = run_wycheproof("wycheproof/testvectors_eddsa_test.json");
    eprintln!("wycheproof eddsa (valid, invalid, acceptable): {counts:?}");
    assert_eq!(counts, (84, 61, 0));
}
