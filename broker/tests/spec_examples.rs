//! The examples of the specification (`spec/*.md`), generated with the real
//! code so that they cannot go stale.
//!
//! Every example sits in a spec file between `<!-- example: NAME -->` and
//! `<!-- /example -->`. This test builds each one with a fixed clock, fixed
//! keys (the RFC 8037 key from `spec/vectors/`) and deterministic randomness,
//! and compares it with the text between the markers. With
//! `PROTONPASS_BLESS=1` it rewrites the spec files instead.

// A test crate: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::response::IntoResponse;
use axum::response::sse::{Event, Sse};
use protonpass_agent::wire::{
    Confirmation, DeviceAuthorizationResponse, ErrorBody, IntrospectionResponse, RevocationEvent,
    RevocationFeed, ServerMetadata, TOKEN_TYPE_ACCESS, TokenResponse, UsageEvent, UsageReport,
    oauth_status,
};
use protonpass_agent::{
    AccessTokenClaims, AgentKey, Clock, Error, KeySet, ProofCheck, ProofInput, ProofVerifier,
    Random, Reason, Scope, ScopeSet, SigningKey, TokenValidation, b64, create_proof, json,
    normalize_htu, random_id, status_for, verify_access_token, verify_request, www_authenticate,
};
use protonpass_broker::audit::{GENESIS, record_hash};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// 2026-01-01T00:00:00Z: the fixed clock of every example.
const NOW: i64 = 1_767_225_600;
const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "https://api.example.com";
const OWNER: &str = "alice";
const AGENT: &str = "travel-bot";
const SCOPE: &str = "travel:search travel:book:under-500";

/// Deterministic "randomness": SHA-256 of a counter. For examples only.
#[derive(Debug, Default)]
struct Counter(AtomicU64);

impl Random for Counter {
    fn fill(&self, buf: &mut [u8]) -> protonpass_agent::Result<()> {
        for chunk in buf.chunks_mut(32) {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            let d = Sha256::digest(format!("protonpass spec example {n}"));
            chunk.copy_from_slice(&d[..chunk.len()]);
        }
        Ok(())
    }
}

fn spec_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec")
}

fn rfc8037_key() -> AgentKey {
    let text = std::fs::read_to_string(spec_dir().join("vectors/rfc8037-vectors.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    AgentKey::from_private_jwk(&v["A1_private_jwk"].to_string()).unwrap()
}

fn fence(lang: &str, body: &str) -> String {
    format!("```{lang}\n{}\n```", body.trim_end())
}

fn pretty(v: &impl serde::Serialize) -> String {
    fence("json", &serde_json::to_string_pretty(v).unwrap())
}

/// The decoded header and payload of a compact JWS.
fn decode_jws(jws: &str) -> (Value, Value) {
    let mut parts = jws.split('.');
    let mut part = || {
        let bytes = b64::decode(parts.next().unwrap()).unwrap();
        Value::Object(json::parse_object(&bytes).unwrap())
    };
    (part(), part())
}

/// Wrap a long single-line value for display (a JWS has no white space, so
/// the reader joins the lines back).
fn wrap(s: &str, width: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars
        .chunks(width)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

struct World {
    rng: Counter,
    broker: SigningKey,
    agent: AgentKey,
    claims: AccessTokenClaims,
    token: String,
    url: &'static str,
    proof: String,
    refresh: String,
}

impl World {
    fn new() -> World {
        let rng = Counter::default();
        let broker_key = AgentKey::from_seed(&Sha256::digest("protonpass spec broker key").into());
        // The broker names a key by the first 16 characters of its thumbprint.
        let kid: String = broker_key.thumbprint().chars().take(16).collect();
        let broker = SigningKey::new(kid, broker_key);
        let agent = rfc8037_key();
        let claims = AccessTokenClaims {
            iss: ISSUER.into(),
            sub: OWNER.into(),
            aud: AUDIENCE.into(),
            client_id: AGENT.into(),
            iat: NOW,
            exp: NOW + 3600,
            jti: random_id(&rng, 16).unwrap(),
            scope: SCOPE.into(),
            jkt: agent.thumbprint().into(),
            gid: random_id(&rng, 16).unwrap(),
            act_sub: AGENT.into(),
        };
        let token = broker.sign(&claims);
        let url = "https://api.example.com/bookings?trip=42";
        let input = ProofInput {
            method: "POST",
            url,
            access_token: Some(&token),
            nonce: None,
            reason: Some("book the flight the user chose"),
        };
        let proof = create_proof(&agent, &input, NOW, &rng).unwrap();
        let refresh = format!("rt_{}", random_id(&rng, 32).unwrap());
        World {
            rng,
            broker,
            agent,
            claims,
            token,
            url,
            proof,
            refresh,
        }
    }

    fn keys(&self) -> KeySet {
        let mut keys = KeySet::default();
        keys.insert(&self.broker.kid, &self.broker.key().public_jwk())
            .unwrap();
        keys
    }
}

/// Every example, by name.
fn examples() -> BTreeMap<&'static str, String> {
    let w = World::new();
    let mut out = BTreeMap::new();
    tokens(&w, &mut out);
    dpop(&w, &mut out);
    scopes(&mut out);
    wire(&w, &mut out);
    errors(&w, &mut out);
    feed(&mut out);
    audit(&mut out);
    from_the_binary(&w, &mut out);
    out
}

fn tokens(w: &World, out: &mut BTreeMap<&'static str, String>) {
    // The token verifies as a resource server would check it.
    let v = TokenValidation::new(ISSUER, AUDIENCE);
    let got = verify_access_token(&w.token, &w.keys(), &v, NOW).unwrap();
    assert_eq!(got, w.claims);
    let (header, claims) = decode_jws(&w.token);
    out.insert("access-token", fence("text", &wrap(&w.token, 76)));
    out.insert("access-token-header", pretty(&header));
    out.insert("access-token-claims", pretty(&claims));
    let jwks = serde_json::json!({ "keys": [Value::Object(w.broker.public_jwk_json())] });
    out.insert("jwks", pretty(&jwks));
}

fn dpop(w: &World, out: &mut BTreeMap<&'static str, String>) {
    // The request passes the whole check (token, proof, binding, replay).
    let ok = verify_request(
        "POST",
        w.url,
        &[format!("DPoP {}", w.token)],
        std::slice::from_ref(&w.proof),
        &w.keys(),
        &TokenValidation::new(ISSUER, AUDIENCE),
        &ProofVerifier::default(),
        None,
        NOW,
    )
    .unwrap();
    assert_eq!(ok.proof.jkt, w.agent.thumbprint());
    let (header, claims) = decode_jws(&w.proof);
    out.insert("dpop-proof", fence("text", &wrap(&w.proof, 76)));
    out.insert("dpop-proof-header", pretty(&header));
    out.insert("dpop-proof-claims", pretty(&claims));
    out.insert(
        "resource-request",
        fence(
            "http",
            &format!(
                "POST /bookings?trip=42 HTTP/1.1\nHost: api.example.com\n\
                 Authorization: DPoP {}\nDPoP: {}",
                w.token, w.proof
            ),
        ),
    );

    // A token-endpoint proof: no `ath`, a server nonce. The nonce has the
    // broker's shape (8-byte minute bucket, 16-byte keyed hash); its hash
    // part here is a placeholder.
    let mut raw = [0u8; 24];
    raw[..8].copy_from_slice(&NOW.div_euclid(60).to_be_bytes());
    w.rng.fill(&mut raw[8..]).unwrap();
    let nonce = b64::encode(raw);
    let input = ProofInput {
        method: "POST",
        url: &format!("{ISSUER}/oauth/token"),
        access_token: None,
        nonce: Some(&nonce),
        reason: None,
    };
    let p = create_proof(&w.agent, &input, NOW, &w.rng).unwrap();
    out.insert(
        "dpop-proof-token-endpoint-claims",
        pretty(&decode_jws(&p).1),
    );

    let jwk = w.agent.public_jwk();
    out.insert(
        "jkt",
        fence(
            "text",
            &format!(
                "public JWK      {}\ncanonical JSON  {}\nSHA-256 (hex)   {}\njkt             {}",
                serde_json::to_string(&jwk.to_json()).unwrap(),
                jwk.canonical_json(),
                hex(&Sha256::digest(jwk.canonical_json())),
                jwk.thumbprint()
            ),
        ),
    );
    out.insert(
        "ath",
        fence(
            "text",
            &format!(
                "ath = BASE64URL(SHA-256(ASCII(access token))) = {}",
                protonpass_agent::access_token_hash(&w.token)
            ),
        ),
    );

    let mut t = String::from("| URL as sent | `htu` compared as |\n|---|---|\n");
    #[rustfmt::skip]
    let htu_cases = [
        "https://api.example.com/bookings", "HTTPS://API.Example.COM/bookings",
        "https://api.example.com:443/bookings", "http://api.example.com:80/",
        "https://api.example.com:8443/bookings", "https://api.example.com",
        "https://api.example.com/a/./b/../c", "https://api.example.com/bookings?trip=42#top",
        "https://api.example.com/%7Euser/%41%2fx", "https://api.example.com/%e2%82%ac",
        "https://api.example.com/caf\u{e9}", "https://xn--caf-dma.example/",
        "https://caf\u{e9}.example/", "https://user:pw@api.example.com/",
        "ftp://api.example.com/", "/bookings",
    ];
    for input in htu_cases {
        let got = normalize_htu(input).map_or("refused".to_owned(), |n| format!("`{n}`"));
        let _ = writeln!(t, "| `{input}` | {got} |");
    }
    out.insert("htu-normalization", t.trim_end().to_owned());
}

fn scopes(out: &mut BTreeMap<&'static str, String>) {
    let mut t = String::from("| scope | result |\n|---|---|\n");
    #[rustfmt::skip]
    let scope_cases = [
        "calendar:read", "repo:write:my-project",
        "repo:write:*", "payment:execute:under-100",
        "payment:execute:under-99.50", "payment:execute:under-99999999999999999999999999999",
        "payment:execute:under-0.00000000000000000000000000001", "payment:execute:under-1.99999999999999999999999999999",
        "files:read:underdog", "Calendar:read",
        "calendar:*", "calendar",
        "a:b:c:d", "payment:execute:under-abc",
        "payment:execute:under-1e3", "payment:execute:under-.5",
        "payment:execute:under--1", "c\u{430}lendar:read",
        "calendar\u{ff1a}read", "repo:write:my\u{2010}project",
        "calendar:read\u{200b}", "-calendar:read",
        "repo:write:a*",
    ];
    for s in scope_cases {
        let shown: String = s.escape_unicode_if_needed();
        let got = match Scope::parse(s) {
            Ok(p) => format!(
                "resource `{}`, action `{}`, qualifier {}",
                p.resource(),
                p.action(),
                match p.qualifier() {
                    protonpass_agent::Qualifier::None => "none".to_owned(),
                    protonpass_agent::Qualifier::Any => "`*` (any)".to_owned(),
                    protonpass_agent::Qualifier::Name(n) => format!("name `{n}`"),
                    protonpass_agent::Qualifier::Limit { bound, .. } =>
                        format!("limit: amounts < {bound}"),
                }
            ),
            Err(e) => format!("refused (`{}`)", e.code()),
        };
        let _ = writeln!(t, "| {shown} | {got} |");
    }
    out.insert("scope-parse", t.trim_end().to_owned());

    let mut t = String::from("| requested (needed) | held | covered |\n|---|---|---|\n");
    #[rustfmt::skip]
    let coverage_cases = [
        ("calendar:read", "calendar:read"),
        ("calendar:read", "calendar:write"),
        ("calendar:read", "calendars:read"),
        ("repo:write:my-project", "repo:write"),
        ("repo:write:my-project", "repo:write:*"),
        ("repo:write", "repo:write:*"),
        ("repo:write:*", "repo:write"),
        ("repo:write", "repo:write:my-project"),
        ("repo:write:*", "repo:write:my-project"),
        ("repo:write:my-project", "repo:write:other"),
        ("repo:write:my-project-evil", "repo:write:my-project"),
        ("repo:write:my-project", "repo:write:my"),
        ("payment:execute:under-50", "payment:execute:under-100"),
        ("payment:execute:under-100", "payment:execute:under-100.00"),
        ("payment:execute:under-100.5", "payment:execute:under-100"),
        ("payment:execute:under-100", "payment:execute"),
        ("payment:execute", "payment:execute:under-100"),
        ("payment:execute:*", "payment:execute:under-100"),
        ("payment:execute:card", "payment:execute:under-100"),
    ];
    for (a, b) in coverage_cases {
        let covered = ScopeSet::parse(b)
            .unwrap()
            .covers(&Scope::parse(a).unwrap());
        let _ = writeln!(
            t,
            "| `{a}` | `{b}` | {} |",
            if covered { "yes" } else { "no" }
        );
    }
    out.insert("scope-coverage", t.trim_end().to_owned());

    let grant = "payment:execute:under-100 calendar:read repo:write:my-project";
    let g = ScopeSet::parse(grant).unwrap();
    let mut t = format!("Bound (grant): `{grant}`\n\n| requested | issued |\n|---|---|\n");
    #[rustfmt::skip]
    let requests = [
        "calendar:read", "payment:execute:under-50",
        "payment:execute:under-500", "payment:execute",
        "repo:write", "repo:write:my-project-evil",
        "calendar:read calendar:write repo:write:my-project", "payment:execute:under-500 payment:execute:under-20",
        "admin:all",
    ];
    for r in requests {
        let got = g.negotiate(&ScopeSet::parse(r).unwrap());
        let shown = if got.is_empty() {
            "nothing: `invalid_scope`".to_owned()
        } else {
            format!("`{got}`")
        };
        let _ = writeln!(t, "| `{r}` | {shown} |");
    }
    out.insert("scope-negotiation", t.trim_end().to_owned());

    let held = ScopeSet::parse("payment:execute:under-100").unwrap();
    let mut t =
        String::from("Held: `payment:execute:under-100`\n\n| amount | allowed |\n|---|---|\n");
    for a in ["0", "99.99", "100", "100.00", "100.01", "-1"] {
        let ok = held.allows_amount("payment:execute", a.parse().unwrap());
        let _ = writeln!(t, "| {a} | {} |", if ok { "yes" } else { "no" });
    }
    out.insert("scope-amounts", t.trim_end().to_owned());
}

trait EscapeIfNeeded {
    fn escape_unicode_if_needed(&self) -> String;
}

impl EscapeIfNeeded for str {
    /// `code` for ASCII; the code points spelled out otherwise, so that a
    /// homoglyph is visible.
    fn escape_unicode_if_needed(&self) -> String {
        if self.is_ascii() {
            return format!("`{self}`");
        }
        let spelled: String = self
            .chars()
            .map(|c| {
                if c.is_ascii() {
                    c.to_string()
                } else {
                    format!("U+{:04X}", u32::from(c))
                }
            })
            .collect::<Vec<_>>()
            .join("");
        format!("`{spelled}` (non-ASCII)")
    }
}

fn wire(w: &World, out: &mut BTreeMap<&'static str, String>) {
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

fn errors(w: &World, out: &mut BTreeMap<&'static str, String>) {
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

fn feed(out: &mut BTreeMap<&'static str, String>) {
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

fn audit(out: &mut BTreeMap<&'static str, String>) {
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

fn hex(bytes: &[u8]) -> String {
    protonpass_broker::audit::hex(bytes)
}

/// One HTTP/1.1 exchange with the broker: the status line, the headers
/// (lower-case names) and the body.
fn http(addr: &str, head: &str, body: &str) -> (String, BTreeMap<String, String>, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// A token request and the real broker's answer, as text. The nonce changes
/// every minute and with every broker process, so it is shown as a name.
fn token_round_trip(addr: &str, dpop: Option<&str>, form: &str, shown: &str) -> String {
    let mut head = String::from(
        "POST /oauth/token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
    );
    if let Some(p) = dpop {
        head.push_str(&format!("\r\nDPoP: {p}"));
    }
    let (status, headers, body) = http(addr, &head, form);
    let mut out = format!(
        "POST /oauth/token HTTP/1.1\nHost: auth.example.com\nContent-Type: application/x-www-form-urlencoded\n{shown}\n{form}\n\n{status}\n"
    );
    for name in ["cache-control", "content-type", "dpop-nonce"] {
        let v = headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {headers:?}"));
        let v = if name == "dpop-nonce" {
            assert_eq!(b64::decode(v).map(|b| b.len()), Some(24), "{v}");
            "<NONCE>"
        } else {
            v.as_str()
        };
        let _ = writeln!(out, "{name}: {v}");
    }
    out.push('\n');
    out.push_str(&body);
    out
}

/// What the real broker binary serves: the metadata document, and the
/// order of the token endpoint's checks (proof, then nonce, then grant).
fn from_the_binary(w: &World, out: &mut BTreeMap<&'static str, String>) {
    // Owner-only: the broker refuses a data directory others can read.
    let dir = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .unwrap();
    // One upstream served through the gateway, which the metadata lists.
    let rules = dir.path().join("code-host.toml");
    std::fs::write(
        &rules,
        "name = \"code-host\"\nbase_url = \"https://api.code-host.example\"\n\
         credential = { header = \"Authorization\", value = \"Bearer {secret}\" }\n\
         [[rule]]\nmethods = [\"GET\"]\npath = \"/repos/{owner}/{repo}/**\"\nscope = \"repo:read:{repo}\"\n",
    )
    .unwrap();
    let mut add = Command::new(env!("CARGO_BIN_EXE_protonpass-broker"))
        .args(["--data", dir.path().to_str().unwrap()])
        .args(["upstream", "add", rules.to_str().unwrap(), "--secret-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"example-secret\n")
        .unwrap();
    assert!(add.wait().unwrap().success());
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_protonpass-broker"))
            .args(["--data", dir.path().to_str().unwrap(), "serve"])
            .args(["--addr", "127.0.0.1:0", "--issuer", ISSUER])
            .env("PROTONPASS_BROKER_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    let addr = v["addr"].as_str().unwrap().to_owned();

    let (status, _, body) = http(
        &addr,
        "GET /.well-known/oauth-authorization-server HTTP/1.1",
        "",
    );
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let meta: ServerMetadata = serde_json::from_str(&body).unwrap();
    out.insert("metadata", pretty(&meta));

    // The broker reads the real clock, so these proofs do too; what is shown
    // does not depend on it.
    let now = protonpass_agent::SystemClock.now();
    let form = "grant_type=refresh_token&refresh_token=rt_unknown";
    let proof = |nonce: Option<&str>| {
        let input = ProofInput {
            method: "POST",
            url: &meta.token_endpoint,
            nonce,
            ..Default::default()
        };
        create_proof(&w.agent, &input, now, &w.rng).unwrap()
    };
    let mut t = token_round_trip(&addr, None, form, "");
    t.push_str("\n\n");
    let (_, headers, _) = http(
        &addr,
        "POST /oauth/token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        form,
    );
    let nonce = headers["dpop-nonce"].clone();
    t.push_str(&token_round_trip(
        &addr,
        Some(&proof(None)),
        form,
        "DPoP: <proof without nonce>\n",
    ));
    t.push_str("\n\n");
    t.push_str(&token_round_trip(
        &addr,
        Some(&proof(Some(&nonce))),
        form,
        "DPoP: <proof with nonce: NONCE>\n",
    ));
    out.insert("token-endpoint-checks", fence("http", &t));
}

/// The broker process, stopped when dropped (also when a check fails).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One marked example in a spec file.
struct Marked {
    file: PathBuf,
    name: String,
    /// Byte range of the text between the markers.
    range: std::ops::Range<usize>,
}

const OPEN: &str = "<!-- example: ";
const CLOSE: &str = "<!-- /example -->";

fn markers(file: &Path, text: &str) -> Vec<Marked> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(OPEN) {
        let start = from + i;
        // A marker is a line of its own; one quoted inside text is not.
        if start > 0 && !text[..start].ends_with('\n') {
            from = start + OPEN.len();
            continue;
        }
        let name_end = start + text[start..].find(" -->").unwrap();
        let name = text[start + OPEN.len()..name_end].trim().to_owned();
        let body_start = name_end + " -->".len();
        let body_start = body_start + usize::from(text[body_start..].starts_with('\n'));
        let end = body_start
            + text[body_start..]
                .find(CLOSE)
                .unwrap_or_else(|| panic!("{}: example {name} is not closed", file.display()));
        out.push(Marked {
            file: file.to_owned(),
            name,
            range: body_start..end,
        });
        from = end + CLOSE.len();
    }
    out
}

fn spec_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(spec_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    files
}

/// The lines that differ, numbered, for the failure message.
fn diff(expected: &str, found: &str) -> String {
    let (e, f): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), found.lines().collect());
    let mut out = String::new();
    for i in 0..e.len().max(f.len()) {
        let (a, b) = (e.get(i), f.get(i));
        if a != b {
            let _ = writeln!(
                out,
                "  line {}:\n    spec: {:?}\n    code: {:?}",
                i + 1,
                b,
                a
            );
        }
    }
    out
}

#[test]
fn spec_examples_match_the_code() {
    let generated = examples();
    let bless = std::env::var("PROTONPASS_BLESS").is_ok_and(|v| v == "1");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for file in spec_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let marks = markers(&file, &text);
        let mut new_text = text.clone();
        for m in marks.iter().rev() {
            *seen.entry(m.name.clone()).or_default() += 1;
            let Some(want) = generated.get(m.name.as_str()) else {
                failures.push(format!(
                    "{}: example `{}` has no generator in broker/tests/spec_examples.rs",
                    m.file.display(),
                    m.name
                ));
                continue;
            };
            let want = format!("{want}\n");
            let found = &text[m.range.clone()];
            if found != want {
                if bless {
                    new_text.replace_range(m.range.clone(), &want);
                } else {
                    failures.push(format!(
                        "{}: example `{}` differs from what the code produces:\n{}",
                        m.file.display(),
                        m.name,
                        diff(&want, found)
                    ));
                }
            }
        }
        if bless && new_text != text {
            std::fs::write(&file, new_text).unwrap();
        }
    }
    for name in generated.keys() {
        match seen.get(*name) {
            None => failures.push(format!(
                "example `{name}` is generated but no spec file has `<!-- example: {name} -->`"
            )),
            Some(1) => {}
            Some(n) => failures.push(format!("example `{name}` is marked {n} times")),
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\n(run with PROTONPASS_BLESS=1 to rewrite the spec from the code)",
        failures.join("\n\n")
    );
}

#[test]
fn examples_are_deterministic() {
    // Two runs give the same bytes: nothing reads the real clock or the OS RNG.
    let (a, b) = (World::new(), World::new());
    assert_eq!(a.token, b.token);
    assert_eq!(a.proof, b.proof);
    assert_eq!(a.refresh, b.refresh);
}
