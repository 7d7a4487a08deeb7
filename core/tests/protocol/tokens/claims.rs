//! The claims of an access token (issuer, audience, times, kind, required
//! members, integrity) and the whole DPoP-bound request check.

use super::*;

#[test]
fn wrong_issuer_is_refused() {
    for iss in [
        "https://broker.example/",
        "https://BROKER.example",
        "http://broker.example",
        "https://broker.example.evil",
        "https://evil.example",
        "",
    ] {
        let token = claims_with(|c| {
            c.insert("iss".into(), iss.into());
        });
        assert_refused(verify(&token), TOKEN, Some(Reason::Issuer));
    }
}

#[test]
fn audience_not_containing_ours_is_refused() {
    for aud in [
        json!("https://other.example"),
        json!("https://api.example/"),
        json!("https://api.example.evil"),
        json!("HTTPS://API.EXAMPLE"),
        json!(""),
        json!([]),
        json!(["https://other.example"]),
        json!([["https://api.example"]]),
        json!([{"aud": "https://api.example"}]),
    ] {
        let token = claims_with(|c| {
            c.insert("aud".into(), aud.clone());
        });
        assert_refused(verify(&token), TOKEN, Some(Reason::Audience));
    }
    for aud in [json!(5), json!(null), json!({"aud": AUDIENCE})] {
        let token = claims_with(|c| {
            c.insert("aud".into(), aud.clone());
        });
        assert_refused(verify(&token), TOKEN, Some(Reason::MissingClaim));
    }
}

#[test]
fn expiry_and_not_before_with_leeway() {
    // Default leeway: 10 s.
    let exp_at = |exp: i64| {
        claims_with(|c| {
            c.insert("exp".into(), exp.into());
        })
    };
    verify(&exp_at(NOW + 1)).unwrap();
    verify(&exp_at(NOW)).unwrap();
    verify(&exp_at(NOW - 9)).unwrap();
    assert_refused(verify(&exp_at(NOW - 10)), TOKEN, Some(Reason::Expired));
    assert_refused(verify(&exp_at(NOW - 3600)), TOKEN, Some(Reason::Expired));
    assert_refused(verify(&exp_at(0)), TOKEN, Some(Reason::Expired));
    // No leeway.
    let strict = TokenValidation {
        leeway: 0,
        ..validation()
    };
    let token = exp_at(NOW + 1);
    verify_access_token(&token, &keys(), &strict, NOW).unwrap();
    assert_refused(
        verify_access_token(&token, &keys(), &strict, NOW + 1),
        TOKEN,
        Some(Reason::Expired),
    );
    // Issued in the future, or not valid yet.
    let iat_at = |iat: i64| {
        claims_with(|c| {
            c.insert("iat".into(), iat.into());
        })
    };
    verify(&iat_at(NOW + 10)).unwrap();
    assert_refused(verify(&iat_at(NOW + 11)), TOKEN, Some(Reason::NotYetValid));
    let nbf_at = |nbf: i64| {
        claims_with(|c| {
            c.insert("nbf".into(), nbf.into());
        })
    };
    verify(&nbf_at(NOW + 10)).unwrap();
    assert_refused(verify(&nbf_at(NOW + 11)), TOKEN, Some(Reason::NotYetValid));
}

#[test]
fn tokens_and_proofs_are_not_interchangeable() {
    let token = SigningKey::new(KID, broker_key()).sign(&claims());
    // An access token presented as a DPoP proof.
    let check = ProofCheck {
        method: "POST",
        url: URL,
        ..Default::default()
    };
    assert_refused(
        verify_proof(&token, &check, &ProofOptions::default(), NOW),
        "invalid_dpop_proof",
        Some(Reason::Typ),
    );
    // A DPoP proof presented as an access token, even one made with the
    // broker's own key.
    for key in [agent(), broker_key()] {
        let proof = create_proof(
            &key,
            &ProofInput {
                method: "POST",
                url: URL,
                ..Default::default()
            },
            NOW,
            &CountingRandom::default(),
        )
        .unwrap();
        assert_refused(verify(&proof), TOKEN, Some(Reason::Typ));
    }
    // A plain JWT or a missing typ.
    for typ in [
        Some("JWT"),
        Some("jwt"),
        Some("dpop+jwt"),
        Some("at+jwt "),
        None,
    ] {
        let token = header_with(|h| match typ {
            Some(t) => {
                h.insert("typ".into(), t.into());
            }
            None => {
                h.remove("typ");
            }
        });
        let reason = if typ.is_some() {
            Reason::Typ
        } else {
            Reason::MissingClaim
        };
        assert_refused(verify(&token), TOKEN, Some(reason));
    }
}

#[test]
fn each_required_claim_must_be_present() {
    for name in [
        "iss",
        "sub",
        "aud",
        "client_id",
        "iat",
        "exp",
        "jti",
        "scope",
        "cnf",
        "gid",
        "act",
    ] {
        let token = claims_with(|c| {
            c.remove(name);
        });
        assert_refused(verify(&token), TOKEN, Some(Reason::MissingClaim));
    }
    // Nested members and wrong types.
    for (name, value) in [
        ("cnf", json!({})),
        ("cnf", json!({"jkt": 1})),
        ("cnf", json!("jkt")),
        ("act", json!({})),
        ("act", json!({"sub": null})),
        ("sub", json!(1)),
        ("scope", json!(["travel:book"])),
        ("jti", json!(7)),
        ("gid", json!(null)),
        ("client_id", json!({})),
    ] {
        let token = claims_with(|c| {
            c.insert(name.into(), value.clone());
        });
        assert_refused(verify(&token), TOKEN, Some(Reason::MissingClaim));
    }
}

#[test]
fn a_token_changed_after_signing_is_refused() {
    let token = SigningKey::new(KID, broker_key()).sign(&claims());
    let escalated = claims_with(|c| {
        c.insert("scope".into(), "admin:all".into());
    });
    let spliced = with_segment(&token, 1, escalated.split('.').nth(1).unwrap());
    assert_refused(verify(&spliced), TOKEN, Some(Reason::Signature));
    let mut sig = b64::decode(token.rsplit('.').next().unwrap()).unwrap();
    sig[0] ^= 0x80;
    assert_refused(
        verify(&with_segment(&token, 2, &b64::encode(&sig))),
        TOKEN,
        Some(Reason::Signature),
    );
}

#[test]
fn whole_request_check_binds_token_and_proof() {
    let token = SigningKey::new(KID, broker_key()).sign(&claims());
    let rng = CountingRandom::default();
    let proof_by = |key: &AgentKey, access_token: Option<&str>| {
        create_proof(
            key,
            &ProofInput {
                method: "GET",
                url: "https://api.example/bookings?id=7",
                access_token,
                ..Default::default()
            },
            NOW,
            &rng,
        )
        .unwrap()
    };
    let verifier = ProofVerifier::default();
    let run = |auth: &[String], dpop: &[String]| {
        verify_request(
            "GET",
            "https://api.example/bookings?id=7",
            auth,
            dpop,
            &keys(),
            &validation(),
            &verifier,
            None,
            NOW,
        )
    };
    let auth = [format!("DPoP {token}")];
    let ok = run(&auth, &[proof_by(&agent(), Some(&token))]).unwrap();
    assert_eq!(ok.claims.jti, "token-1");
    assert_eq!(ok.proof.jkt, agent().thumbprint());

    // A thief holding the token but not the key.
    assert_refused(
        run(&auth, &[proof_by(&other_agent(), Some(&token))]),
        "invalid_dpop_proof",
        Some(Reason::KeyBinding),
    );
    // A proof made for no token, or for another one.
    assert_refused(
        run(&auth, &[proof_by(&agent(), None)]),
        "invalid_dpop_proof",
        Some(Reason::Ath),
    );
    assert_refused(
        run(&auth, &[proof_by(&agent(), Some("other"))]),
        "invalid_dpop_proof",
        Some(Reason::Ath),
    );
    // The token sent as a bearer token, or under no scheme.
    let proof = proof_by(&agent(), Some(&token));
    for bad in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        token.clone(),
    ] {
        assert_refused(
            run(&[bad], std::slice::from_ref(&proof)),
            TOKEN,
            Some(Reason::Scheme),
        );
    }
    assert_refused(
        run(&[], std::slice::from_ref(&proof)),
        TOKEN,
        Some(Reason::MissingClaim),
    );
    assert_refused(
        run(
            &[auth[0].clone(), auth[0].clone()],
            std::slice::from_ref(&proof),
        ),
        TOKEN,
        Some(Reason::HeaderCount),
    );
    assert_refused(
        run(&auth, &[]),
        "invalid_dpop_proof",
        Some(Reason::HeaderCount),
    );
}

/// A step-up's one-time token must be redeemed at the broker on first use,
/// which a local check cannot do: refused unless the caller redeems it.
#[test]
fn a_one_time_token_is_refused_unless_the_caller_redeems_it() {
    let token = claims_with(|c| {
        c.insert("one_time".into(), Value::Bool(true));
    });
    let e = verify(&token).unwrap_err();
    assert_eq!(e.reason(), Some(Reason::OneTime), "{e}");
    assert_eq!(e.code(), "invalid_token");
    let mut v = validation();
    v.accept_one_time = true;
    let c = verify_access_token(&token, &keys(), &v, NOW).unwrap();
    assert_eq!(c.jti, "token-1");
    // `one_time: false` is an ordinary token.
    let token = claims_with(|c| {
        c.insert("one_time".into(), Value::Bool(false));
    });
    assert!(verify(&token).is_ok());
}
