//! Checks 8 to 12 of RFC 9449 section 4.3 (what binds a proof to one request
//! and one token: method, URL, nonce, time, token hash, key) and replay.

use super::*;

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
