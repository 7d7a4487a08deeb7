//! The RFC 8725 attacks on access tokens, each refused with the right code and
//! reason, and the whole DPoP-bound request check. The attacks on the token's
//! form are here, the checks of its claims and of the whole request in
//! `tokens/claims.rs`.

mod claims;

use protonpass_agent::{
    AccessTokenClaims, AgentKey, Error, KeySet, ProofCheck, ProofInput, ProofOptions,
    ProofVerifier, Reason, SigningKey, TokenValidation, b64, create_proof, verify_access_token,
    verify_bearer_access_token, verify_proof, verify_request,
};
use serde_json::{Map, Value, json};

use crate::proofs::non_canonical_trailing_bits;
use crate::support::{
    AUDIENCE, CountingRandom, ISSUER, KID, NOW, URL, agent, assert_refused, broker_key,
    other_agent, sign_bytes, sign_json, sign_text, with_header_text, with_segment,
};

const TOKEN: &str = "invalid_token";

fn claims() -> AccessTokenClaims {
    AccessTokenClaims {
        iss: ISSUER.into(),
        sub: "owner-1".into(),
        aud: AUDIENCE.into(),
        client_id: "travel-bot".into(),
        iat: NOW,
        exp: NOW + 3600,
        jti: "token-1".into(),
        scope: "travel:search travel:book".into(),
        jkt: agent().thumbprint().into(),
        gid: "grant-1".into(),
        act_sub: "travel-bot".into(),
    }
}

fn keys() -> KeySet {
    let mut k = KeySet::default();
    k.insert(KID, &broker_key().public_jwk()).unwrap();
    k
}

fn validation() -> TokenValidation {
    TokenValidation::new(ISSUER, AUDIENCE)
}

fn verify(token: &str) -> Result<AccessTokenClaims, Error> {
    verify_access_token(token, &keys(), &validation(), NOW)
}

fn header() -> Map<String, Value> {
    let Value::Object(h) = json!({"typ": "at+jwt", "alg": "EdDSA", "kid": KID}) else {
        unreachable!()
    };
    h
}

/// A token signed by the broker's key, with header and claims changed.
fn token_with(
    h: impl FnOnce(&mut Map<String, Value>),
    c: impl FnOnce(&mut Map<String, Value>),
) -> String {
    token_signed_by(&broker_key(), h, c)
}

fn token_signed_by(
    key: &AgentKey,
    h: impl FnOnce(&mut Map<String, Value>),
    c: impl FnOnce(&mut Map<String, Value>),
) -> String {
    let mut header = header();
    let mut claims = claims().to_json();
    h(&mut header);
    c(&mut claims);
    sign_json(key, &Value::Object(header), &Value::Object(claims))
}

fn claims_with(c: impl FnOnce(&mut Map<String, Value>)) -> String {
    token_with(|_| {}, c)
}

fn header_with(h: impl FnOnce(&mut Map<String, Value>)) -> String {
    token_with(h, |_| {})
}

/// HMAC-SHA256, for the "HS256 keyed with the public key" attack.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

#[test]
fn a_broker_token_is_accepted() {
    let signer = SigningKey::new(KID, broker_key());
    let token = signer.sign(&claims());
    assert_eq!(verify(&token).unwrap(), claims());
    // Accepted forms: the long media type, and an audience list containing us.
    verify(&header_with(|h| {
        h.insert("typ".into(), "application/at+jwt".into());
    }))
    .unwrap();
    let c = verify(&claims_with(|c| {
        c.insert("aud".into(), json!(["https://other.example", AUDIENCE]));
    }))
    .unwrap();
    assert_eq!(c.aud, AUDIENCE);
    // A key set read from the broker's JWKS works the same.
    let jwks = json!({"keys": [Value::Object(signer.public_jwk_json())]}).to_string();
    let set = KeySet::from_jwks_json(&jwks).unwrap();
    verify_access_token(&token, &set, &validation(), NOW).unwrap();
}

#[test]
fn bearer_tokens_have_no_cnf_and_each_kind_verifies_only_as_itself() {
    // A bearer token (issued to a client without DPoP) carries no `cnf`.
    let bearer_claims = AccessTokenClaims {
        jkt: String::new(),
        ..claims()
    };
    let bearer = SigningKey::new(KID, broker_key()).sign(&bearer_claims);
    let payload: Value =
        serde_json::from_slice(&b64::decode(bearer.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert!(payload.get("cnf").is_none(), "{payload}");
    let got = verify_bearer_access_token(&bearer, &keys(), &validation(), NOW).unwrap();
    assert_eq!((got.jkt.as_str(), got.aud.as_str()), ("", AUDIENCE));
    // The DPoP check refuses it: no key to bind a proof to.
    assert_refused(verify(&bearer), TOKEN, Some(Reason::MissingClaim));
    // A DPoP-bound token is never accepted as a bearer token.
    let bound = SigningKey::new(KID, broker_key()).sign(&claims());
    assert_refused(
        verify_bearer_access_token(&bound, &keys(), &validation(), NOW),
        TOKEN,
        Some(Reason::Scheme),
    );
    // Audience and expiry hold for bearer tokens as for the others.
    let mut v = validation();
    v.audience = "https://other.example".into();
    assert_refused(
        verify_bearer_access_token(&bearer, &keys(), &v, NOW),
        TOKEN,
        Some(Reason::Audience),
    );
    assert_refused(
        verify_bearer_access_token(&bearer, &keys(), &validation(), NOW + 7200),
        TOKEN,
        Some(Reason::Expired),
    );
}

#[test]
fn alg_none_in_any_case_is_refused() {
    for alg in ["none", "None", "NONE", "nOnE", "", "none "] {
        let header = json!({"typ": "at+jwt", "alg": alg, "kid": KID}).to_string();
        let payload = Value::Object(claims().to_json()).to_string();
        let unsigned = format!("{}.{}.", b64::encode(&header), b64::encode(&payload));
        assert_refused(verify(&unsigned), TOKEN, Some(Reason::Alg));
        // With a signature that would verify under EdDSA, still refused.
        let signed = sign_text(&broker_key(), &header, &payload);
        assert_refused(verify(&signed), TOKEN, Some(Reason::Alg));
    }
}

#[test]
fn hs256_with_the_public_key_as_mac_key_is_refused() {
    let public = broker_key().public_bytes();
    let jwk_text = Value::Object(broker_key().public_jwk().to_json()).to_string();
    let x = b64::encode(public);
    let header = json!({"typ": "at+jwt", "alg": "HS256", "kid": KID}).to_string();
    let payload = Value::Object(claims().to_json()).to_string();
    let input = format!("{}.{}", b64::encode(&header), b64::encode(&payload));
    for mac_key in [&public[..], jwk_text.as_bytes(), x.as_bytes()] {
        let token = format!(
            "{input}.{}",
            b64::encode(hmac_sha256(mac_key, input.as_bytes()))
        );
        assert_refused(verify(&token), TOKEN, Some(Reason::Alg));
    }
    // Other algorithms: allowed for proofs, never for tokens.
    for alg in [
        "Ed25519", "ES256", "HS384", "HS512", "RS256", "PS256", "eddsa", "EDDSA",
    ] {
        let token = header_with(|h| {
            h.insert("alg".into(), alg.into());
        });
        assert_refused(verify(&token), TOKEN, Some(Reason::Alg));
    }
}

#[test]
fn key_carrying_headers_are_refused() {
    let attacker = other_agent();
    // The attacker signs with its own key and ships it in the header.
    let embedded = token_signed_by(
        &attacker,
        |h| {
            h.insert("jwk".into(), Value::Object(attacker.public_jwk().to_json()));
        },
        |_| {},
    );
    assert_refused(verify(&embedded), TOKEN, Some(Reason::ForbiddenHeader));
    for (name, value) in [
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("x5c", json!(["MIIBszCCAVmgAwIBAgIU"])),
    ] {
        let token = token_signed_by(
            &attacker,
            |h| {
                h.insert(name.into(), value.clone());
            },
            |_| {},
        );
        assert_refused(verify(&token), TOKEN, Some(Reason::ForbiddenHeader));
        // Even signed by the broker (a confused issuer), the header is refused.
        let token = header_with(|h| {
            h.insert(name.into(), value.clone());
        });
        assert_refused(verify(&token), TOKEN, Some(Reason::ForbiddenHeader));
    }
}

#[test]
fn kid_unknown_traversal_huge_or_missing_is_refused() {
    for kid in [
        "k2".to_owned(),
        "K1".into(),
        "k1 ".into(),
        "".into(),
        "../../../../../../dev/null".into(), // check-repo: not a path
        "k1/../k1".into(),
        "..%2f..%2fetc%2fpasswd".into(),
        "k1\u{0}".into(),
        "' OR '1'='1".into(),
        "x".repeat(4000),
    ] {
        let token = header_with(|h| {
            h.insert("kid".into(), kid.clone().into());
        });
        assert_refused(verify(&token), TOKEN, Some(Reason::UnknownKid));
    }
    // Past the size limit the token is not even parsed.
    let token = header_with(|h| {
        h.insert("kid".into(), "x".repeat(7000).into());
    });
    assert_refused(verify(&token), TOKEN, Some(Reason::Malformed));
    for kid in [None, Some(json!(1)), Some(json!(["k1"])), Some(json!(null))] {
        let token = header_with(|h| match &kid {
            None => {
                h.remove("kid");
            }
            Some(v) => {
                h.insert("kid".into(), v.clone());
            }
        });
        assert_refused(verify(&token), TOKEN, Some(Reason::MissingClaim));
    }
    // A known kid with a signature from another key.
    let token = token_signed_by(&other_agent(), |_| {}, |_| {});
    assert_refused(verify(&token), TOKEN, Some(Reason::Signature));
    // An empty key set knows no kid.
    let token = token_with(|_| {}, |_| {});
    assert_refused(
        verify_access_token(&token, &KeySet::default(), &validation(), NOW),
        TOKEN,
        Some(Reason::UnknownKid),
    );
}

#[test]
fn unknown_crit_and_unencoded_payload_are_refused() {
    for crit in [json!(["exp"]), json!(["b64"]), json!([]), json!("exp")] {
        let token = header_with(|h| {
            h.insert("crit".into(), crit.clone());
        });
        assert_refused(verify(&token), TOKEN, Some(Reason::Crit));
    }
    let token = header_with(|h| {
        h.insert("b64".into(), json!(false));
    });
    assert_refused(verify(&token), TOKEN, Some(Reason::Crit));
}

#[test]
fn jws_json_serialization_is_refused() {
    let token = token_with(|_| {}, |_| {});
    let p: Vec<&str> = token.split('.').collect();
    for json in [
        json!({"protected": p[0], "payload": p[1], "signature": p[2]}),
        json!({"payload": p[1], "signatures": [{"protected": p[0], "signature": p[2]}]}),
    ] {
        assert_refused(verify(&json.to_string()), TOKEN, Some(Reason::Malformed));
        let pretty = serde_json::to_string_pretty(&json).unwrap();
        assert_refused(verify(&pretty), TOKEN, Some(Reason::Malformed));
    }
    // Not three segments, or three empty ones.
    for bad in [
        String::new(),
        ".".into(),
        "a.b".into(),
        format!("{token}.x"),
        format!("{token}."),
    ] {
        assert_refused(verify(&bad), TOKEN, Some(Reason::Malformed));
    }
    assert_refused(verify(".."), TOKEN, Some(Reason::Json));
}

#[test]
fn duplicate_member_names_are_refused() {
    let claims_json = Value::Object(claims().to_json()).to_string();
    // In the header: which kid, which alg?
    for header in [
        format!(r#"{{"typ":"at+jwt","alg":"EdDSA","kid":"{KID}","kid":"k2"}}"#),
        format!(r#"{{"typ":"at+jwt","alg":"none","alg":"EdDSA","kid":"{KID}"}}"#),
        format!(r#"{{"typ":"at+jwt","typ":"dpop+jwt","alg":"EdDSA","kid":"{KID}"}}"#),
    ] {
        let token = sign_text(&broker_key(), &header, &claims_json);
        assert_refused(verify(&token), TOKEN, Some(Reason::Json));
    }
    // In the claims, top level and nested: which audience, which key binding?
    let header = Value::Object(header()).to_string();
    let top = claims_json.replacen("\"aud\":", "\"aud\":\"https://evil.example\",\"aud\":", 1);
    let nested = claims_json.replacen("\"cnf\":{", "\"cnf\":{\"jkt\":\"attacker\",", 1);
    let scope = claims_json.replacen("\"scope\":", "\"scope\":\"admin:all\",\"scope\":", 1);
    for payload in [top, nested, scope] {
        assert_ne!(payload, claims_json);
        let token = sign_text(&broker_key(), &header, &payload);
        assert_refused(verify(&token), TOKEN, Some(Reason::Json));
    }
}

#[test]
fn non_canonical_base64url_is_refused() {
    let token = token_with(|_| {}, |_| {});
    let parts: Vec<&str> = token.split('.').collect();
    // Padding on any segment.
    for (i, part) in parts.iter().enumerate() {
        for pad in ["=", "==", "==="] {
            let padded = format!("{part}{pad}");
            assert_refused(
                verify(&with_segment(&token, i, &padded)),
                TOKEN,
                Some(Reason::Base64),
            );
        }
    }
    // The standard alphabet (+ and /) for the same bytes.
    let mut n = 0;
    let std_token = loop {
        let t = claims_with(|c| {
            c.insert("jti".into(), format!("token-{n}").into());
        });
        if t.contains(['-', '_']) {
            break t;
        }
        n += 1;
        assert!(n < 100);
    };
    assert_refused(
        verify(&std_token.replace('-', "+").replace('_', "/")),
        TOKEN,
        Some(Reason::Base64),
    );
    assert_refused(
        verify(&with_segment(&token, 0, "+/+/")),
        TOKEN,
        Some(Reason::Base64),
    );
    // White space inside or around a segment.
    let mid = parts[1].len() / 2;
    for ws in [" ", "\n", "\r\n", "\t"] {
        let spaced = format!("{}{ws}{}", &parts[1][..mid], &parts[1][mid..]);
        assert_refused(
            verify(&with_segment(&token, 1, &spaced)),
            TOKEN,
            Some(Reason::Base64),
        );
        assert_refused(verify(&format!("{ws}{token}")), TOKEN, Some(Reason::Base64));
        assert_refused(verify(&format!("{token}{ws}")), TOKEN, Some(Reason::Base64));
    }
    // Non-zero trailing bits: the same signature bytes, encoded differently.
    let odd = non_canonical_trailing_bits(&token);
    assert_ne!(odd, token);
    assert_eq!(
        b64::decode(odd.rsplit('.').next().unwrap()),
        None,
        "the strict decoder refuses it"
    );
    assert_refused(verify(&odd), TOKEN, Some(Reason::Base64));
}

#[test]
fn non_utf8_json_is_refused() {
    let claims_json = Value::Object(claims().to_json()).to_string();
    let header_json = Value::Object(header()).to_string();
    let bad_header = b"{\"typ\":\"at+jwt\",\"alg\":\"EdDSA\",\"kid\":\"k1\",\"x\":\"\xff\"}";
    let token = sign_bytes(&broker_key(), bad_header, claims_json.as_bytes());
    assert_refused(verify(&token), TOKEN, Some(Reason::Json));
    let mut bad_claims = claims_json.clone().into_bytes();
    let at = bad_claims.len() - 1;
    bad_claims.splice(at..at, b",\"note\":\"caf\xe9\"".iter().copied());
    let token = sign_bytes(&broker_key(), header_json.as_bytes(), &bad_claims);
    assert_refused(verify(&token), TOKEN, Some(Reason::Json));
    // An overlong encoding of '/' and a UTF-16 BOM.
    let overlong = b"{\"typ\":\"at+jwt\",\"alg\":\"EdDSA\",\"kid\":\"k1\",\"x\":\"\xc0\xaf\"}";
    let token = sign_bytes(&broker_key(), overlong, claims_json.as_bytes());
    assert_refused(verify(&token), TOKEN, Some(Reason::Json));
    let bom = [&[0xfe, 0xff][..], header_json.as_bytes()].concat();
    let token = sign_bytes(&broker_key(), &bom, claims_json.as_bytes());
    assert_refused(verify(&token), TOKEN, Some(Reason::Json));
    // A header that is valid JSON text but not an object.
    let token = with_header_text(&token, "\"at+jwt\"");
    assert_refused(verify(&token), TOKEN, Some(Reason::Json));
}

#[test]
fn malformed_times_are_refused() {
    let bad_times = [
        json!(1e20),
        json!(NOW as f64 + 0.5),
        json!(3600.0),
        json!(-1),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(253_402_300_801_i64),
        json!((NOW + 3600).to_string()),
        json!(null),
        json!(true),
        json!([NOW]),
    ];
    for t in &bad_times {
        let token = claims_with(|c| {
            c.insert("exp".into(), t.clone());
        });
        assert_refused(verify(&token), TOKEN, Some(Reason::Expired));
        let token = claims_with(|c| {
            c.insert("iat".into(), t.clone());
        });
        assert_refused(verify(&token), TOKEN, Some(Reason::Iat));
        let token = claims_with(|c| {
            c.insert("nbf".into(), t.clone());
        });
        assert_refused(verify(&token), TOKEN, Some(Reason::NotYetValid));
    }
}
