//! A failing case for each check of RFC 9449 section 4.3, with the wire code
//! and the finer reason asserted, and the accepted cases at the edges.

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

// Check 8: htm matches the request method, exactly.
#[test]
fn check_8_htm() {
    for htm in ["GET", "post", "Post", "POST ", "PUT", ""] {
        let p = claims_with(|c| {
            c.insert("htm".into(), htm.into());
        });
        assert_refused(verify(&p), PROOF, Some(Reason::Htm));
    }
}

// Check 9: htu matches the request URL after normalization.
#[test]
fn check_9_htu_and_normalization() {
    let accepted = [
        "https://api.example/bookings",
        "https://api.example/bookings?page=2",
        "https://api.example/bookings#top",
        "https://api.example/bookings?a=1#x",
        "HTTPS://API.EXAMPLE/bookings",
        "https://Api.Example/bookings",
        "https://api.example:443/bookings",
        "HTTPS://api.EXAMPLE:443/bookings?x=y",
        "https://api.example/./bookings",
        "https://api.example/other/../bookings",
        "https://api.example/%62ookings",
    ];
    for htu in accepted {
        let p = claims_with(|c| {
            c.insert("htu".into(), htu.into());
        });
        let ok = verify(&p).unwrap_or_else(|e| panic!("{htu}: {e}"));
        assert_eq!(ok.htu, URL, "{htu}");
    }
    // The request URL is normalized too.
    let p = claims_with(|_| {});
    for url in [
        "https://API.example:443/bookings?q=1",
        "https://api.example/bookings#f",
    ] {
        let check = ProofCheck { url, ..check() };
        verify_proof(&p, &check, &ProofOptions::default(), NOW)
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    let refused = [
        "http://api.example/bookings",
        "https://api.example:8443/bookings",
        "https://api.example:80/bookings",
        "https://api.example/Bookings",
        "https://api.example/bookings/",
        "https://api.example/booking",
        "https://api.example/bookings/1",
        "https://api.example.evil/bookings",
        "https://evil.api.example/bookings",
        "https://user@api.example/bookings",
        "https://user:pw@api.example/bookings",
        "https://api.example/bookings%2F",
        "https://api.example",
        "/bookings",
        "api.example/bookings",
        "ftp://api.example/bookings",
        "wss://api.example/bookings",
        "not a url",
        "",
        // Characters a URI cannot hold, which URL parsers strip or encode.
        "https://api.example/bookings\u{0}",
        " https://api.example/bookings",
        "https://api.example/bookings\n",
        "https://api.example/book\tings",
        "https://api.example/bookings\u{7f}",
        "https://api.\u{0435}xample/bookings",
    ];
    for htu in refused {
        let p = claims_with(|c| {
            c.insert("htu".into(), htu.into());
        });
        assert_refused(verify(&p), PROOF, Some(Reason::Htu));
    }
}

// Check 10: a nonce, when the server requires one.
#[test]
fn check_10_nonce() {
    let accepts = |n: &str| n == "server-nonce-1";
    let with_nonce = |nonce: Option<Value>| {
        claims_with(|c| {
            if let Some(n) = nonce {
                c.insert("nonce".into(), n);
            }
        })
    };
    let requiring = ProofCheck {
        nonce: Some(&accepts),
        ..check()
    };
    let opts = ProofOptions::default();
    let missing = with_nonce(None);
    assert_refused(
        verify_proof(&missing, &requiring, &opts, NOW),
        "use_dpop_nonce",
        None,
    );
    let wrong = with_nonce(Some("server-nonce-0".into()));
    assert_refused(
        verify_proof(&wrong, &requiring, &opts, NOW),
        "use_dpop_nonce",
        None,
    );
    let right = with_nonce(Some("server-nonce-1".into()));
    let ok = verify_proof(&right, &requiring, &opts, NOW).unwrap();
    assert_eq!(ok.nonce.as_deref(), Some("server-nonce-1"));
    // A nonce of the wrong type is a malformed proof, not a retry.
    let typed = with_nonce(Some(json!(1)));
    assert_refused(
        verify_proof(&typed, &requiring, &opts, NOW),
        PROOF,
        Some(Reason::Nonce),
    );
    // A server that does not ask for a nonce ignores one.
    verify(&right).unwrap();
    // The nonce round never hides a bad signature: a bad proof is refused as such.
    let forged = with_segment(&missing, 2, &b64::encode([7u8; 64]));
    assert_refused(
        verify_proof(&forged, &requiring, &opts, NOW),
        PROOF,
        Some(Reason::Signature),
    );
}

// Check 11: iat within the window, default 10 s either way, edges inclusive.
#[test]
fn check_11_iat_window_edges() {
    let at = |iat: Value| {
        claims_with(|c| {
            c.insert("iat".into(), iat);
        })
    };
    verify(&at(json!(NOW))).unwrap();
    verify(&at(json!(NOW - 10))).unwrap();
    verify(&at(json!(NOW + 10))).unwrap();
    assert_refused(verify(&at(json!(NOW - 11))), PROOF, Some(Reason::Iat));
    assert_refused(verify(&at(json!(NOW + 11))), PROOF, Some(Reason::Iat));
    // The same proof, seen by servers at different times.
    let p = at(json!(NOW));
    verify_at(&p, NOW + 10).unwrap();
    assert_refused(verify_at(&p, NOW + 11), PROOF, Some(Reason::Iat));
    verify_at(&p, NOW - 10).unwrap();
    assert_refused(verify_at(&p, NOW - 11), PROOF, Some(Reason::Iat));
    // Malformed times are refused, never rounded.
    for bad in [
        json!(NOW as f64 + 0.5),
        json!(NOW.to_string()),
        json!(-1),
        json!(1e300),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(null),
    ] {
        assert_refused(verify(&at(bad)), PROOF, Some(Reason::Iat));
    }
    // Other windows are honoured.
    let wide = ProofOptions {
        max_age: 60,
        max_skew: 5,
        ..ProofOptions::default()
    };
    verify_proof(&at(json!(NOW - 60)), &check(), &wide, NOW).unwrap();
    assert_refused(
        verify_proof(&at(json!(NOW - 61)), &check(), &wide, NOW),
        PROOF,
        Some(Reason::Iat),
    );
    assert_refused(
        verify_proof(&at(json!(NOW + 6)), &check(), &wide, NOW),
        PROOF,
        Some(Reason::Iat),
    );
}

// exp and nbf, which a proof may carry.
#[test]
fn exp_and_nbf_in_a_proof() {
    let with = |name: &str, v: Value| {
        claims_with(|c| {
            c.insert(name.into(), v);
        })
    };
    verify(&with("exp", json!(NOW + 1))).unwrap();
    assert_refused(
        verify(&with("exp", json!(NOW))),
        PROOF,
        Some(Reason::Expired),
    );
    assert_refused(
        verify(&with("exp", json!(NOW - 5))),
        PROOF,
        Some(Reason::Expired),
    );
    assert_refused(
        verify(&with("exp", json!("never"))),
        PROOF,
        Some(Reason::Expired),
    );
    assert_refused(
        verify(&with("exp", json!(1.5))),
        PROOF,
        Some(Reason::Expired),
    );
    verify(&with("nbf", json!(NOW))).unwrap();
    verify(&with("nbf", json!(NOW + 10))).unwrap();
    assert_refused(
        verify(&with("nbf", json!(NOW + 11))),
        PROOF,
        Some(Reason::NotYetValid),
    );
    assert_refused(
        verify(&with("nbf", json!(-3))),
        PROOF,
        Some(Reason::NotYetValid),
    );
    // The reason claim: a string of at most 300 characters.
    verify(&with("reason", json!("é".repeat(300)))).unwrap();
    assert_refused(
        verify(&with("reason", json!("é".repeat(301)))),
        PROOF,
        Some(Reason::ReasonClaim),
    );
    assert_refused(
        verify(&with("reason", json!(5))),
        PROOF,
        Some(Reason::ReasonClaim),
    );
}

// Check 12: ath hashes the access token presented with the proof.
#[test]
fn check_12_ath() {
    let token = "an.access.token";
    let bound = ProofCheck {
        access_token: Some(token),
        ..check()
    };
    let opts = ProofOptions::default();
    let with_ath = |ath: Option<Value>| {
        claims_with(|c| {
            if let Some(a) = ath {
                c.insert("ath".into(), a);
            }
        })
    };
    verify_proof(
        &with_ath(Some(access_token_hash(token).into())),
        &bound,
        &opts,
        NOW,
    )
    .unwrap();
    for bad in [
        Some(json!(access_token_hash("another.access.token"))),
        Some(json!(access_token_hash(&format!("{token} ")))),
        Some(json!(b64::encode(token))),
        Some(json!(format!("{}=", access_token_hash(token)))),
        Some(json!("")),
        Some(json!(1)),
        None,
    ] {
        assert_refused(
            verify_proof(&with_ath(bad), &bound, &opts, NOW),
            PROOF,
            Some(Reason::Ath),
        );
    }
}

// Check 12 (continued): the proof's key is the one the token is bound to.
#[test]
fn check_12_jkt_binding() {
    let p = claims_with(|_| {});
    let opts = ProofOptions::default();
    let me = agent();
    let bound = ProofCheck {
        expected_jkt: Some(me.thumbprint()),
        ..check()
    };
    verify_proof(&p, &bound, &opts, NOW).unwrap();
    let other = other_agent();
    let elsewhere = ProofCheck {
        expected_jkt: Some(other.thumbprint()),
        ..check()
    };
    assert_refused(
        verify_proof(&p, &elsewhere, &opts, NOW),
        PROOF,
        Some(Reason::KeyBinding),
    );
    let empty = ProofCheck {
        expected_jkt: Some(""),
        ..check()
    };
    assert_refused(
        verify_proof(&p, &empty, &opts, NOW),
        PROOF,
        Some(Reason::KeyBinding),
    );
    let truncated = &me.thumbprint()[..42];
    let prefix = ProofCheck {
        expected_jkt: Some(truncated),
        ..check()
    };
    assert_refused(
        verify_proof(&p, &prefix, &opts, NOW),
        PROOF,
        Some(Reason::KeyBinding),
    );
}

// Replay (RFC 9449 section 11.1): a jti is used once per target.
#[test]
fn replay_is_refused_until_the_window_has_passed() {
    let v = ProofVerifier::default();
    let p = claims_with(|_| {});
    v.verify(&[&p], &check(), NOW).unwrap();
    assert_refused(v.verify(&[&p], &check(), NOW), PROOF, Some(Reason::Replay));
    assert_refused(
        v.verify(&[&p], &check(), NOW + 10),
        PROOF,
        Some(Reason::Replay),
    );
    // Once iat is out of the window the proof is refused as stale anyway.
    assert_refused(
        v.verify(&[&p], &check(), NOW + 11),
        PROOF,
        Some(Reason::Iat),
    );
    // Another jti passes.
    let q = claims_with(|c| {
        c.insert("jti".into(), "another-jti-0123456789".into());
    });
    v.verify(&[&q], &check(), NOW).unwrap();
    // A refused proof does not use up its jti.
    let fresh = claims_with(|c| {
        c.insert("jti".into(), "third-jti-0123456789".into());
    });
    let needs_token = ProofCheck {
        access_token: Some("t"),
        ..check()
    };
    assert_refused(
        v.verify(&[&fresh], &needs_token, NOW),
        PROOF,
        Some(Reason::Ath),
    );
    v.verify(&[&fresh], &check(), NOW).unwrap();
}

#[test]
fn concurrent_identical_proofs_pass_exactly_once() {
    const THREADS: usize = 8;
    for round in 0..20 {
        let v = Arc::new(ProofVerifier::default());
        let p = Arc::new(claims_with(|c| {
            c.insert("jti".into(), format!("concurrent-jti-{round:04}").into());
        }));
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (v, p, barrier) = (v.clone(), p.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    v.verify(&[p.as_str()], &check(), NOW)
                        .map(|_| ())
                        .map_err(|e| (e.code(), e.reason()))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let passed = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(passed, 1, "round {round}: {results:?}");
        for r in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(*r, (PROOF, Some(Reason::Replay)));
        }
    }
}
