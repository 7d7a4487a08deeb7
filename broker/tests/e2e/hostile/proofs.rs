//! Malformed and replayed DPoP proofs at the token endpoint (RFC 9449
//! section 4.3): each refused with its code, changing nothing.

use super::*;

/// A hostile proof request: name, DPoP headers, other headers, and the
/// expected status and error code.
type ProofCase = (
    String,
    Vec<String>,
    Vec<(&'static str, String)>,
    u16,
    &'static str,
);

/// A proof with this header and these claims, signed by `key`.
fn proof_of(header: &Map<String, Value>, claims: &Map<String, Value>, key: &AgentKey) -> String {
    signed(&to_vec(header), &to_vec(claims), key)
}

#[tokio::test]
async fn hostile_proofs_at_the_token_endpoint_are_refused_and_change_nothing() {
    if protonpass_e2e::on_postgres() {
        return; // looks into SQLite's files or the data directory
    }
    // The default window is 60 s (nonces give freshness); a 10 s window puts
    // both edges where a test can reach them with a margin for the clock.
    let b = Broker::start(&[("PROTONPASS_BROKER_PROOF_WINDOW", "10")]);
    let agent = key();
    let enrolled = b.enroll(&agent, "bot", "calendar:read", &[]).await;
    let mut rt = enrolled.s("refresh_token");
    // The kit has fetched a nonce; a valid proof looks like this one.
    let nonce = {
        let r = b
            .post_form("/oauth/token", &[("grant_type", "refresh_token")], &[])
            .await;
        r.headers["dpop-nonce"].to_str().unwrap().to_owned()
    };
    let url = b.token_url();
    let good = b.proof(&agent, &url, Some(&nonce));
    let gh = part(&good, 0);
    let gc = part(&good, 1);
    let now = SystemClock.now();
    let fresh = |c: &Map<String, Value>| {
        with(
            &with(c, "jti", b64::encode(rand_bytes()).into()),
            "iat",
            SystemClock.now().into(),
        )
    };

    let mut cases: Vec<ProofCase> = Vec::new();
    let mut case = |name: &str, proofs: Vec<String>, code: &'static str| {
        cases.push((name.to_owned(), proofs, Vec::new(), 400, code))
    };
    // Section 4.3, check by check.
    case("no DPoP header", vec![], "invalid_dpop_proof");
    case(
        "two DPoP headers",
        vec![good.clone(), b.proof(&agent, &url, Some(&nonce))],
        "invalid_dpop_proof",
    );
    case("not a JWT", vec!["not.a.jwt".into()], "invalid_dpop_proof");
    case("empty", vec![String::new()], "invalid_dpop_proof");
    let mut missing = Vec::new();
    for claim in ["jti", "htm", "htu", "iat"] {
        let mut c = fresh(&gc);
        c.remove(claim);
        missing.push((format!("no {claim}"), proof_of(&gh, &c, &agent)));
    }
    for (n, p) in missing {
        case(&n, vec![p], "invalid_dpop_proof");
    }
    for typ in ["jwt", "at+jwt", "DPOP+JWT "] {
        case(
            &format!("typ {typ}"),
            vec![proof_of(&with(&gh, "typ", typ.into()), &fresh(&gc), &agent)],
            "invalid_dpop_proof",
        );
    }
    for alg in ["none", "HS256", "RS256", "ES256"] {
        case(
            &format!("alg {alg}"),
            vec![proof_of(&with(&gh, "alg", alg.into()), &fresh(&gc), &agent)],
            "invalid_dpop_proof",
        );
    }
    let mut bad_sig: Vec<String> = proof_of(&gh, &fresh(&gc), &agent)
        .split('.')
        .map(str::to_owned)
        .collect();
    bad_sig[2] = b64::encode([7u8; 64]);
    case(
        "wrong signature",
        vec![bad_sig.join(".")],
        "invalid_dpop_proof",
    );
    let other = key();
    case(
        "signed by another key than its jwk",
        vec![proof_of(&gh, &fresh(&gc), &other)],
        "invalid_dpop_proof",
    );
    let private: Value = serde_json::from_str(&agent.to_private_jwk()).unwrap();
    case(
        "private key in jwk",
        vec![proof_of(&with(&gh, "jwk", private), &fresh(&gc), &agent)],
        "invalid_dpop_proof",
    );
    let mut no_jwk = gh.clone();
    no_jwk.remove("jwk");
    case(
        "no jwk",
        vec![proof_of(&no_jwk, &fresh(&gc), &agent)],
        "invalid_dpop_proof",
    );
    case(
        "jku instead of jwk",
        vec![proof_of(
            &with(&no_jwk, "jku", "https://evil.example/k".into()),
            &fresh(&gc),
            &agent,
        )],
        "invalid_dpop_proof",
    );
    // A small-order public key with the "keyless" signature (R = identity,
    // S = 0) that a cofactored or lenient verifier accepts for any message.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let small = with(
        &gh,
        "jwk",
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(identity)}),
    );
    let input = format!(
        "{}.{}",
        b64::encode(to_vec(&small)),
        b64::encode(to_vec(&fresh(&gc)))
    );
    let mut keyless = identity.to_vec();
    keyless.extend_from_slice(&[0u8; 32]);
    case(
        "small-order key, keyless signature",
        vec![format!("{input}.{}", b64::encode(keyless))],
        "invalid_dpop_proof",
    );
    for htm in ["GET", "post", "PUT"] {
        case(
            &format!("htm {htm}"),
            vec![proof_of(&gh, &with(&fresh(&gc), "htm", htm.into()), &agent)],
            "invalid_dpop_proof",
        );
    }
    let origin = b.url.clone();
    let host_port = origin.trim_start_matches("http://").to_owned();
    for htu in [
        format!("{origin}/oauth/token/"),
        format!("{origin}/oauth/revoke"),
        format!("{origin}/OAUTH/token"),
        format!("https://{host_port}/oauth/token"),
        "http://evil.example/oauth/token".to_owned(),
        format!("{origin}/oauth%2Ftoken"),
        format!("{origin}/oauth/token\u{0}"),
        format!("http://user@{host_port}/oauth/token"),
    ] {
        case(
            &format!("htu {htu:?}"),
            vec![proof_of(&gh, &with(&fresh(&gc), "htu", htu.into()), &agent)],
            "invalid_dpop_proof",
        );
    }
    for (name, d) in [
        ("12 s old", -12),
        // Far enough ahead that the proof is still outside the window when
        // it is sent, after the cases before it.
        ("30 s ahead", 30),
        ("a day old", -86_400),
    ] {
        case(
            &format!("iat {name}"),
            vec![proof_of(
                &gh,
                &with(&fresh(&gc), "iat", (SystemClock.now() + d).into()),
                &agent,
            )],
            "invalid_dpop_proof",
        );
    }
    for (name, v) in [
        ("fractional", json!(now as f64 + 0.5)),
        ("a string", json!(now.to_string())),
    ] {
        case(
            &format!("iat {name}"),
            vec![proof_of(&gh, &with(&fresh(&gc), "iat", v), &agent)],
            "invalid_dpop_proof",
        );
    }
    let mut no_nonce = fresh(&gc);
    no_nonce.remove("nonce");
    case(
        "no nonce after one was issued",
        vec![proof_of(&gh, &no_nonce, &agent)],
        "use_dpop_nonce",
    );
    case(
        "forged nonce",
        vec![proof_of(
            &gh,
            &with(&fresh(&gc), "nonce", "A".repeat(43).into()),
            &agent,
        )],
        "use_dpop_nonce",
    );
    case(
        "proof by another key than the refresh token's",
        vec![b.proof(&other, &url, Some(&nonce))],
        "invalid_grant",
    );
    // Forged X-Forwarded-* from a peer that is not a trusted proxy: the proof
    // names the forged origin, the broker goes by its own.
    cases.push((
        "X-Forwarded-Host/Proto from an untrusted peer".into(),
        vec![proof_of(
            &gh,
            &with(
                &fresh(&gc),
                "htu",
                "https://evil.example/oauth/token".into(),
            ),
            &agent,
        )],
        vec![
            ("X-Forwarded-Host", "evil.example".into()),
            ("X-Forwarded-Proto", "https".into()),
            ("Forwarded", "host=evil.example;proto=https".into()),
        ],
        400,
        "invalid_dpop_proof",
    ));
    // A proof past the header size limit is refused before anything reads it.
    cases.push((
        "oversized proof".into(),
        vec![proof_of(
            &gh,
            &with(&fresh(&gc), "pad", "x".repeat(20_000).into()),
            &agent,
        )],
        vec![],
        431,
        "invalid_request",
    ));

    let before = state(&b);
    let rejected = rejections(&b);
    // Nonce challenges are not rejections; an oversized request never reaches
    // the token endpoint's code.
    let audited = cases
        .iter()
        .filter(|c| c.3 == 400 && c.4 != "use_dpop_nonce")
        .count() as i64;
    // The server closes a connection after an oversized request: no pooling.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for (name, proofs, headers, want, code) in &cases {
        let mut req = http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded");
        for p in proofs {
            req = req.header("DPoP", p);
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("grant_type", "refresh_token"),
                ("refresh_token", rt.as_str()),
            ])
            .finish();
        let r = req.body(body).send().await.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (status, v["error"].as_str().unwrap_or("")),
            (*want, *code),
            "{name}: {v}"
        );
    }
    assert_eq!(
        state(&b),
        before,
        "a refused proof changed the broker's state"
    );
    rejections_reach(&b, rejected + audited).await;

    // Replay under concurrency: 16 copies of one valid proof at once; exactly
    // one is served, and the grant is not treated as refresh-token reuse.
    let replayed = b.proof(&agent, &url, Some(&nonce));
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
    ];
    let headers = [("DPoP", replayed.clone())];
    let sends = (0..16).map(|_| b.post_form("/oauth/token", &form, &headers));
    let replies = futures_util::future::join_all(sends).await;
    let ok: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        ok.len(),
        1,
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    for r in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_dpop_proof"),
            "{}",
            r.body
        );
    }
    rt = ok[0].s("refresh_token");
    // What RFC 9449 says to ignore or normalize is accepted: a query and a
    // fragment, the scheme's case, percent-encoded unreserved characters (RFC
    // 3986 section 6.2.2), and an iat inside the window. (The exact window
    // edges and the default-port and host-case rules are checked with a fixed
    // clock in core/tests/protocol/proofs.rs; this broker listens on a port
    // that is not the default.)
    for (name, htu, d) in [
        ("iat 8 s old", url.clone(), -8),
        ("iat 8 s ahead", url.clone(), 8),
        (
            "upper-case scheme",
            url.replacen("http://", "HTTP://", 1),
            0,
        ),
        (
            "percent-encoded unreserved characters",
            url.replacen("/token", "/%74oken", 1),
            0,
        ),
        ("a query and a fragment", format!("{url}?x=1#f"), 0),
    ] {
        let p = proof_of(
            &gh,
            &with(
                &with(&fresh(&gc), "htu", htu.into()),
                "iat",
                (SystemClock.now() + d).into(),
            ),
            &agent,
        );
        let r = b
            .post_form(
                "/oauth/token",
                &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
                &[("DPoP", p)],
            )
            .await;
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        rt = r.s("refresh_token");
    }
    assert_eq!(b.cli_ok(&["grant", "list"])[0]["status"], "active");
    assert_eq!(b.cli_ok(&["audit", "verify"])["ok"], true);
}
