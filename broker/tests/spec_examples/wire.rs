//! The examples of the wire messages, errors, the revocation feed and the
//! audit chain, from the core and the broker's library.

use super::*;

pub(super) fn wire(w: &World, out: &mut BTreeMap<&'static str, String>) {
    let grant_exp = NOW + 30 * 24 * 3600;
    let response = TokenResponse {
        access_token: w.token.clone(),
        token_type: "DPoP".into(),
        expires_in: w.claims.exp - NOW,
        scope: w.claims.scope.clone(),
        refresh_token: Some(w.refresh.clone()),
        issued_token_type: None,
        grant_id: Some(w.claims.gid.clone()),
        audience: Some(AUDIENCE.into()),
        grant_expires_at: Some(grant_exp),
    };
    out.insert("token-response", pretty(&elide_token(&response)));
    let exchange = TokenResponse {
        scope: "travel:search".into(),
        expires_in: 600,
        // The exchanged refresh token's successor (every use rotates it).
        refresh_token: Some(format!("rt_{}", random_id(&w.rng, 32).unwrap())),
        issued_token_type: Some(TOKEN_TYPE_ACCESS.into()),
        ..response
    };
    out.insert("token-response-exchange", pretty(&elide_token(&exchange)));
    let device = DeviceAuthorizationResponse {
        device_code: format!("dc_{}", random_id(&w.rng, 32).unwrap()),
        user_code: "WDJB-MJHT".into(),
        verification_uri: format!("{ISSUER}/device"),
        verification_uri_complete: Some(format!("{ISSUER}/device?user_code=WDJB-MJHT")),
        expires_in: 600,
        interval: 5,
    };
    out.insert("device-authorization-response", pretty(&device));
    let active = IntrospectionResponse {
        active: true,
        scope: Some(w.claims.scope.clone()),
        client_id: Some(AGENT.into()),
        sub: Some(OWNER.into()),
        aud: Some(AUDIENCE.into()),
        iss: Some(ISSUER.into()),
        exp: Some(w.claims.exp),
        iat: Some(w.claims.iat),
        jti: Some(w.claims.jti.clone()),
        token_type: Some("DPoP".into()),
        cnf: Some(Confirmation {
            jkt: w.claims.jkt.clone(),
        }),
        gid: Some(w.claims.gid.clone()),
    };
    out.insert("introspection-active", pretty(&active));
    out.insert(
        "introspection-inactive",
        pretty(&IntrospectionResponse::default()),
    );
    let report = UsageReport {
        uses: vec![
            UsageEvent {
                jti: Some(w.claims.jti.clone()),
                method: "POST".into(),
                path: "/bookings".into(),
                decision: "allow".into(),
                reason: Some("book the flight the user chose".into()),
                code: None,
                scope: None,
                at: Some(NOW),
            },
            UsageEvent {
                jti: Some(w.claims.jti.clone()),
                method: "DELETE".into(),
                path: "/bookings/42".into(),
                decision: "deny".into(),
                reason: None,
                code: Some("insufficient_scope".into()),
                scope: Some("travel:book".into()),
                at: Some(NOW + 5),
            },
            UsageEvent {
                jti: None,
                method: "GET".into(),
                path: "/bookings".into(),
                decision: "deny".into(),
                reason: Some("signature".into()),
                code: Some("invalid_token".into()),
                scope: None,
                at: Some(NOW + 9),
            },
        ],
    };
    out.insert("usage-report", pretty(&report));
}

/// A token response with the JWT shortened for display.
fn elide_token(r: &TokenResponse) -> TokenResponse {
    let mut r = r.clone();
    let head: String = r.access_token.chars().take(24).collect();
    r.access_token = format!("{head}...");
    r
}

pub(super) fn errors(w: &World, out: &mut BTreeMap<&'static str, String>) {
    #[rustfmt::skip]
    let all = [
        Error::InvalidRequest("m".into()), Error::InvalidClient("m".into()), Error::InvalidGrant("m".into()),
        Error::UnsupportedGrantType("m".into()), Error::InvalidScope("m".into()), Error::InvalidTarget("m".into()),
        Error::UnsupportedTokenType("m".into()), Error::AuthorizationPending, Error::SlowDown,
        Error::AccessDenied, Error::ExpiredToken,
        Error::InvalidDpopProof { reason: Reason::Other, message: "m".into() }, Error::UseDpopNonce,
        Error::InvalidToken { reason: Reason::Other, message: "m".into() },
        Error::InsufficientScope("m".into()), Error::TemporarilyUnavailable("m".into()), Error::Server("m".into()),
        Error::InvalidKey("m".into()),
        Error::ScopeNotGranted { missing: "m".into(), granted: "m".into() },
        Error::BrokerUnavailable("m".into()), Error::InvalidResponse("m".into()), Error::Storage("m".into()),
        Error::BudgetExceeded("m".into()),
        Error::Cancelled("m".into()), Error::InvalidAuthorizationDetails("m".into()),
    ];
    let mut t = String::from(
        "| `error` | HTTP status at the broker | HTTP status at a resource server |\n|---|---|---|\n",
    );
    for e in &all {
        let _ = writeln!(
            t,
            "| `{}` | {} | {} |",
            e.code(),
            oauth_status(e),
            status_for(e)
        );
    }
    out.insert("error-status", t.trim_end().to_owned());

    #[rustfmt::skip]
    let reasons = [
        (Reason::HeaderCount, "zero or several `DPoP` headers, or several `Authorization` headers"),
        (Reason::Malformed, "not three dot-separated parts, a JWS JSON serialization, too large, or no token after the scheme"),
        (Reason::Base64, "a part is not canonical unpadded base64url"),
        (Reason::Json, "header or payload is not a UTF-8 JSON object, or has a duplicate member name"),
        (Reason::MissingClaim, "a required header member or claim is missing or has the wrong type"),
        (Reason::Typ, "`typ` is not `at+jwt` (token) or `dpop+jwt` (proof)"),
        (Reason::Alg, "`alg` not on the allow-list, or not fitting the key"),
        (Reason::Crit, "a `crit` or `b64` header member is present"),
        (Reason::ForbiddenHeader, "`jwk`, `jku`, `x5u`, `x5c` in a token; `jku`, `x5u`, `x5c`, `kid` or private key members in a proof"),
        (Reason::Key, "the proof's `jwk` is malformed, of another type, or a weak (small-order) key"),
        (Reason::Signature, "the signature does not verify"),
        (Reason::Htm, "`htm` differs from the request method"),
        (Reason::Htu, "`htu` differs from the request URL after normalisation, or is not a URI"),
        (Reason::Iat, "`iat` outside the accepted window, or not a valid NumericDate"),
        (Reason::Expired, "`exp` has passed (or is malformed)"),
        (Reason::NotYetValid, "`nbf` (or a token's `iat`) is in the future"),
        (Reason::Nonce, "the `nonce` claim is not a string"),
        (Reason::Ath, "`ath` missing, not a string, or not the hash of the presented token"),
        (Reason::KeyBinding, "the proof's key is not the token's `cnf.jkt`"),
        (Reason::Replay, "this proof (`jti`, `htm`, `htu`) was already used"),
        (Reason::Jti, "`jti` shorter than 16 or longer than 256 characters, or not printable ASCII"),
        (Reason::Issuer, "`iss` is not the expected issuer"),
        (Reason::Audience, "`aud` does not contain this resource server"),
        (Reason::UnknownKid, "`kid` names no key of the JWKS"),
        (Reason::Scheme, "the `Authorization` scheme is not `DPoP` (`Bearer` included)"),
        (Reason::Revoked, "the token or its grant was revoked"),
        (Reason::OneTime, "a step-up's one-time token already used, or refused by a resource server without the credentials to redeem it"),
        (Reason::ReasonClaim, "`reason` is not a string of at most 300 characters"),
        (Reason::Other, "anything else (also what a client reads from the wire)"),
    ];
    let mut t = String::from("| reason | meaning |\n|---|---|\n");
    for (r, what) in reasons {
        let _ = writeln!(t, "| `{r}` | {what} |");
    }
    out.insert("reason-codes", t.trim_end().to_owned());

    // Real refusals, produced by the real checks.
    let keys = w.keys();
    let v = TokenValidation::new(ISSUER, AUDIENCE);
    let proofs = ProofVerifier::default();
    let authz = [format!("DPoP {}", w.token)];
    let check = |p: &ProofVerifier| {
        verify_request(
            "POST",
            w.url,
            &authz,
            std::slice::from_ref(&w.proof),
            &keys,
            &v,
            p,
            None,
            NOW,
        )
    };
    check(&proofs).unwrap();
    let replay = check(&proofs).unwrap_err();
    let expired = verify_access_token(&w.token, &keys, &v, NOW + 3600 + 10).unwrap_err();
    let none: [&str; 0] = [];
    let missing = protonpass_agent::dpop_token(&none[..]).unwrap_err();
    let bearer = protonpass_agent::dpop_token(&[format!("Bearer {}", w.token)]).unwrap_err();
    let held = ScopeSet::parse(&w.claims.scope).unwrap();
    let scope = held.require("travel:cancel").unwrap_err();
    let nonce = {
        let reject_all = |_: &str| false;
        let c = ProofCheck {
            method: "POST",
            url: w.url,
            access_token: Some(&w.token),
            expected_jkt: Some(&w.claims.jkt),
            nonce: Some(&reject_all),
        };
        ProofVerifier::default()
            .verify(std::slice::from_ref(&w.proof), &c, NOW)
            .unwrap_err()
    };
    let mut t = String::new();
    for (what, e, sc) in [
        ("no Authorization header", &missing, None),
        ("a DPoP-bound token sent as Bearer", &bearer, None),
        ("the token has expired", &expired, None),
        ("the proof was already used", &replay, None),
        ("a nonce is required", &nonce, None),
        ("the token lacks a scope", &scope, Some("travel:cancel")),
    ] {
        let _ = writeln!(
            t,
            "# {what}\nHTTP/1.1 {}\nWWW-Authenticate: {}\n",
            status_for(e),
            www_authenticate(e, sc).unwrap()
        );
    }
    out.insert("www-authenticate", fence("http", &t));

    let mut bodies = Vec::new();
    for e in [&replay, &Error::UseDpopNonce, &expired] {
        bodies.push(ErrorBody::from(e));
    }
    bodies.push(ErrorBody::from(Error::InvalidGrant(
        "refresh token reuse: the grant is revoked".into(),
    )));
    bodies.push(ErrorBody::from(Error::Server("disk full".into())));
    let text: Vec<String> = bodies
        .iter()
        .map(|b| serde_json::to_string(b).unwrap())
        .collect();
    out.insert("error-bodies", fence("json", &text.join("\n")));
}

pub(super) fn feed(out: &mut BTreeMap<&'static str, String>) {
    let events = vec![
        RevocationEvent {
            seq: 41,
            jti: Some("q0yXgyxZ1Tb4aQ3Dh2nLwA".into()),
            gid: None,
            exp: NOW + 3600,
        },
        RevocationEvent {
            seq: 42,
            jti: None,
            gid: Some("Vb8m3kq9S0y1p2tYwR7cEg".into()),
            exp: NOW + 30 * 24 * 3600,
        },
    ];
    let page = RevocationFeed {
        revocations: events.clone(),
        next: 42,
    };
    out.insert("revocation-feed-page", pretty(&page));
    out.insert(
        "revocation-feed-empty",
        pretty(&RevocationFeed {
            revocations: vec![],
            next: 42,
        }),
    );
    // The stream, rendered by the same axum code the broker uses.
    let stream = futures_util::stream::iter(events.into_iter().map(|e| {
        Ok::<_, Infallible>(
            Event::default()
                .id(e.seq.to_string())
                .event("revocation")
                .json_data(&e)
                .unwrap(),
        )
    }));
    let resp = Sse::new(stream).into_response();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let body = rt
        .block_on(axum::body::to_bytes(resp.into_body(), 1 << 20))
        .unwrap();
    out.insert(
        "revocation-stream",
        fence("text", std::str::from_utf8(&body).unwrap()),
    );
}

pub(super) fn audit(out: &mut BTreeMap<&'static str, String>) {
    let (seq, ts, owner, event) = (1, NOW, OWNER, "revoke");
    let detail = serde_json::json!({"gid": "Vb8m3kq9S0y1p2tYwR7cEg", "agent": AGENT, "by": "owner", "feed_seq": 42})
        .to_string();
    let hash = record_hash(seq, ts, owner, event, &detail, GENESIS);
    // `audit export` prints each record as one JSON object, members in this order.
    let record = format!(
        "{{\"seq\":{seq},\"ts\":{ts},\"owner\":{},\"event\":{},\"detail\":{},\"prev\":\"{GENESIS}\",\"hash\":\"{hash}\"}}",
        serde_json::to_string(owner).unwrap(),
        serde_json::to_string(event).unwrap(),
        serde_json::to_string(&detail).unwrap(),
    );
    out.insert("audit-record", fence("json", &record));
    let mut t = String::new();
    let mut input = Vec::new();
    for (name, part) in [
        ("seq", seq.to_string()),
        ("ts", ts.to_string()),
        ("owner", owner.to_owned()),
        ("event", event.to_owned()),
        ("detail", detail.clone()),
        ("prev", GENESIS.to_owned()),
    ] {
        let len = (part.len() as u64).to_be_bytes();
        let n = part.len();
        let _ = writeln!(
            t,
            "{name:<7} {n:>3} bytes, prefix {}, then: {part}",
            hex(&len)
        );
        input.extend_from_slice(&len);
        input.extend_from_slice(part.as_bytes());
    }
    assert_eq!(hex(&Sha256::digest(&input)), hash);
    let _ = writeln!(
        t,
        "\nhash = hex(SHA-256(those {} bytes)) = {hash}",
        input.len()
    );
    out.insert("audit-hash-input", fence("text", &t));
}
