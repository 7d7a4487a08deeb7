//! Hostile input at the broker, end to end: forged and malformed access
//! tokens (RFC 8725), malformed and replayed DPoP proofs (RFC 9449 section
//! 4.3), grant and scope abuse, SQL in ids. Every attempt gets its RFC error
//! code, never a 500, and changes nothing but the audit log's rejection
//! records: each test snapshots every table before and after.
//!
//! The exact-boundary and per-check cases (each with its finer reason) are in
//! the core's tests (core/tests/protocol); here the same attacks go through the
//! real HTTP endpoints and the real store. Forged tokens are signed with the
//! broker's own key where that makes the attack stronger: the refusal then
//! comes from the token's shape, not from a bad signature.
//!
//! Hostile DPoP proofs are in `hostile/proofs.rs`, grant and scope abuse in
//! `hostile/grants.rs`.

mod grants;
mod proofs;

use std::collections::BTreeMap;

use protonpass_agent::{AgentKey, Clock, OsRandom, SystemClock, b64};
use rusqlite::OpenFlags;
use serde_json::{Map, Value, json};

use protonpass_e2e::{API, Broker, Reply, claims, key};

const TT_ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
const TT_REFRESH: &str = "urn:ietf:params:oauth:token-type:refresh_token";

/// Everything the broker keeps, except the audit log's rejection records and
/// the guessing-budget counters (both are what a rejection may add).
fn state(b: &Broker) -> BTreeMap<&'static str, Vec<String>> {
    let c = rusqlite::Connection::open_with_flags(
        b.data.join("broker.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut out = BTreeMap::new();
    for (table, sql) in [
        ("owners", "SELECT name FROM owners ORDER BY name"),
        (
            "grants",
            "SELECT gid || ' ' || coalesce(enroll_hash, '-') || ' ' || data FROM grants ORDER BY gid",
        ),
        (
            "tokens",
            "SELECT jti || ' ' || coalesce(hash, '-') || ' ' || data FROM tokens ORDER BY jti",
        ),
        (
            "devices",
            "SELECT id || ' ' || status || ' ' || data FROM devices ORDER BY id",
        ),
        (
            "resources",
            "SELECT client_id || ' ' || data FROM resources ORDER BY client_id",
        ),
        (
            "signing_keys",
            "SELECT kid || ' ' || data FROM signing_keys ORDER BY kid",
        ),
        (
            "revocations",
            "SELECT seq || ' ' || coalesce(jti, '-') || ' ' || coalesce(gid, '-') FROM revocations ORDER BY seq",
        ),
        (
            "audit",
            // Introspection is audited whatever it answers: a use, not a change.
            "SELECT event || ' ' || detail FROM audit WHERE event NOT IN ('rejected', 'introspect') ORDER BY seq",
        ),
    ] {
        let mut st = c.prepare(sql).unwrap();
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        out.insert(table, rows);
    }
    out
}

fn rejections(b: &Broker) -> i64 {
    let c = rusqlite::Connection::open_with_flags(
        b.data.join("broker.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.query_row(
        "SELECT count(*) FROM audit WHERE event = 'rejected'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// Rejection records are written off the request path: wait until `n` are in.
async fn rejections_reach(b: &Broker, n: i64) {
    for _ in 0..100 {
        if rejections(b) >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("expected {n} rejection records, found {}", rejections(b));
}

/// The broker's signing key, read from its data directory (as a thief of the
/// key file would; here it lets forged tokens carry a valid signature).
fn broker_key(b: &Broker) -> (String, AgentKey) {
    let dir = b.data.join("keys");
    let entry = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pem"))
        .unwrap();
    let kid = entry.file_stem().unwrap().to_str().unwrap().to_owned();
    let pem = std::fs::read_to_string(&entry).unwrap();
    (kid, AgentKey::from_pkcs8_pem(&pem).unwrap())
}

/// A compact JWS over exactly these header and payload bytes.
fn signed(header: &[u8], payload: &[u8], key: &AgentKey) -> String {
    let input = format!("{}.{}", b64::encode(header), b64::encode(payload));
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64::encode(sig))
}

/// HMAC-SHA256, for the "HS256 keyed with the public key" attack.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn part(jwt: &str, i: usize) -> Map<String, Value> {
    obj(serde_json::from_slice(&b64::decode(jwt.split('.').nth(i).unwrap()).unwrap()).unwrap())
}

fn to_vec(m: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(m).unwrap()
}

/// `m` with `name` set to `v`.
fn with(m: &Map<String, Value>, name: &str, v: Value) -> Map<String, Value> {
    let mut m = m.clone();
    m.insert(name.into(), v);
    m
}

/// `text` (a JSON object) with raw JSON `member` text added first.
fn prepend(text: &[u8], member: &[u8]) -> Vec<u8> {
    let mut out = b"{".to_vec();
    out.extend_from_slice(member);
    out.push(b',');
    out.extend_from_slice(&text[1..]);
    out
}

/// `text` (a JSON object) with raw JSON `member` text appended.
fn append(text: &[u8], member: &[u8]) -> Vec<u8> {
    let mut out = text[..text.len() - 1].to_vec();
    out.push(b',');
    out.extend_from_slice(member);
    out.push(b'}');
    out
}

fn rand_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    protonpass_agent::Random::fill(&OsRandom, &mut b).unwrap();
    b
}

fn assert_refused(r: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!((r.status, r.error()), (status, code), "{what}: {}", r.body);
    assert!(r.body.get("access_token").is_none(), "{what}");
    assert!(
        r.body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{what}: a typed error says why"
    );
}

#[tokio::test]
async fn forged_and_malformed_access_tokens_are_refused_and_change_nothing() {
    if protonpass_e2e::on_postgres() {
        return; // looks into SQLite's files or the data directory
    }
    let b = Broker::start(&[]);
    let agent = key();
    let enrolled = b
        .enroll(&agent, "bot", "calendar:read calendar:write", &[])
        .await;
    let at = enrolled.s("access_token");
    let (kid, broker) = broker_key(&b);
    let header = part(&at, 0);
    let body = part(&at, 1);
    let rs = b.resource(API, None);

    // The control: the same header and claims, re-signed here with the
    // broker's key, are a valid token. Every case below differs from it only
    // by the attack it names.
    let control = signed(&to_vec(&header), &to_vec(&body), &broker);
    let r = b.introspect(&rs, &control).await;
    assert_eq!(r.body["active"], true, "control: {}", r.body);

    let attacker = key();
    let jwks = b.get("/jwks.json").await.body["keys"][0].clone();
    let public_jwk_text = serde_json::to_string(&jwks).unwrap();
    let x = b64::decode(jwks["x"].as_str().unwrap()).unwrap();
    let claims_bytes = to_vec(&body);
    let mut cases: Vec<(String, String)> = Vec::new();
    let mut case = |name: &str, token: String| cases.push((name.to_owned(), token));

    // alg "none" in any letter case, with and without a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = to_vec(&with(&header, "alg", alg.into()));
        let unsigned = format!("{}.{}.", b64::encode(&h), b64::encode(&claims_bytes));
        case(&format!("alg {alg}"), unsigned.clone());
        let sig = control.rsplit('.').next().unwrap();
        case(&format!("alg {alg} with a signature"), unsigned + sig);
    }
    // HS256 with the broker's public key as the MAC key (JWK text, raw bytes).
    for (name, mac_key) in [
        (
            "HS256 keyed with the public JWK",
            public_jwk_text.as_bytes(),
        ),
        ("HS256 keyed with the raw public key", x.as_slice()),
    ] {
        let h = to_vec(&with(&header, "alg", "HS256".into()));
        let input = format!("{}.{}", b64::encode(&h), b64::encode(&claims_bytes));
        let mac = hmac_sha256(mac_key, input.as_bytes());
        case(name, format!("{input}.{}", b64::encode(mac)));
    }
    // Key-carrying headers: the attacker's own key, and the broker's key
    // named again, both signed by the key they name.
    let own = Value::Object(attacker.public_jwk().to_json());
    let mut h = with(&header, "jwk", own);
    h.remove("kid");
    case(
        "jwk header, attacker-signed",
        signed(&to_vec(&h), &claims_bytes, &attacker),
    );
    for (name, v) in [
        ("jwk", jwks.clone()),
        ("jku", json!("https://evil.example/jwks.json")),
        ("x5u", json!("https://evil.example/cert.pem")),
        ("x5c", json!(["MIIBszCCAVmgAwIBAgIUQ"])),
    ] {
        case(
            &format!("{name} header, broker-signed"),
            signed(&to_vec(&with(&header, name, v)), &claims_bytes, &broker),
        );
    }
    // Hostile kid values.
    for (name, v) in [
        ("kid path traversal", "../../../../etc/passwd".to_owned()), // check-repo: not a path
        ("kid SQL", format!("{kid}' OR '1'='1")),
        ("kid NUL", format!("{kid}\0")),
        ("kid 10 KB", "A".repeat(10 * 1024)),
    ] {
        case(
            name,
            signed(
                &to_vec(&with(&header, "kid", v.into())),
                &claims_bytes,
                &broker,
            ),
        );
    }
    // crit: unknown members, and b64:false (RFC 7797) which must not be honoured.
    let h = with(
        &with(&header, "crit", json!(["urn:x"])),
        "urn:x",
        json!(true),
    );
    case("unknown crit", signed(&to_vec(&h), &claims_bytes, &broker));
    let h = with(&with(&header, "crit", json!(["b64"])), "b64", json!(false));
    case(
        "crit b64 false",
        signed(&to_vec(&h), &claims_bytes, &broker),
    );
    case(
        "crit naming exp",
        signed(
            &to_vec(&with(&header, "crit", json!(["exp"]))),
            &claims_bytes,
            &broker,
        ),
    );
    // JWS JSON serialization (general and flattened) of the valid token.
    let p: Vec<&str> = control.split('.').collect();
    case(
        "JWS JSON flattened",
        json!({"protected": p[0], "payload": p[1], "signature": p[2]}).to_string(),
    );
    case(
        "JWS JSON general",
        json!({"payload": p[1], "signatures": [{"protected": p[0], "signature": p[2]}]})
            .to_string(),
    );
    // base64url strictness. A claim made of '?' characters at an offset that
    // is a multiple of three encodes as "Pz8_": the token has a '_' to turn
    // into the standard alphabet's '/'. The control with it is valid.
    let qm = prepend(&claims_bytes, br#""a":"???""#);
    let with_underscore = signed(&to_vec(&header), &qm, &broker);
    assert!(with_underscore.split('.').nth(1).unwrap().contains("Pz8_"));
    assert_eq!(
        b.introspect(&rs, &with_underscore).await.body["active"],
        true
    );
    case(
        "standard alphabet '/'",
        with_underscore.replacen("Pz8_", "Pz8/", 1),
    );
    let mut parts: Vec<String> = control.split('.').map(str::to_owned).collect();
    // The 64-byte signature takes 86 characters: 2 short of a multiple of four.
    parts[2].push_str("==");
    case("base64 padding", parts.join("."));
    let mut parts: Vec<String> = control.split('.').map(str::to_owned).collect();
    parts[1].insert(8, ' ');
    case("space inside a part", parts.join("."));
    let mut parts: Vec<String> = control.split('.').map(str::to_owned).collect();
    parts[1].insert(8, '\n');
    case("newline inside a part", parts.join("."));
    // The signature's last character carries 2 bits of data and 4 of padding:
    // setting a padding bit decodes to the same bytes in a lenient decoder.
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut parts: Vec<String> = control.split('.').map(str::to_owned).collect();
    let last = parts[2].pop().unwrap();
    let idx = alphabet.find(last).unwrap();
    parts[2].push(alphabet.as_bytes()[idx ^ 1] as char);
    case("non-zero trailing bits", parts.join("."));
    // Duplicate members in the header or the claims (signed).
    let h = append(&to_vec(&header), br#""alg":"none""#);
    case("duplicate alg", signed(&h, &claims_bytes, &broker));
    let c = append(
        &claims_bytes,
        br#""scope":"calendar:read calendar:write admin:all""#,
    );
    case(
        "duplicate scope claim",
        signed(&to_vec(&header), &c, &broker),
    );
    let c = append(
        &claims_bytes,
        format!(r#""exp":{}"#, i64::MAX / 2).as_bytes(),
    );
    case("duplicate exp claim", signed(&to_vec(&header), &c, &broker));
    // Not UTF-8.
    let c = prepend(&claims_bytes, b"\"a\":\"\xff\xfe\"");
    case("claims not UTF-8", signed(&to_vec(&header), &c, &broker));
    let h = prepend(&to_vec(&header), b"\"a\":\"\xc0\xaf\"");
    case(
        "header not UTF-8 (overlong '/')",
        signed(&h, &claims_bytes, &broker),
    );
    // Times: huge, negative, fractional, or strings.
    let now = SystemClock.now();
    for member in ["exp", "iat", "nbf"] {
        for (name, v) in [
            ("1e300", "1e300".to_owned()),
            ("2^64", "18446744073709551616".to_owned()),
            ("negative", "-1".to_owned()),
            ("fractional", format!("{}.5", now + 600)),
            ("a string", format!("\"{}\"", now + 600)),
            ("null", "null".to_owned()),
        ] {
            let mut m = body.clone();
            m.remove(member);
            let c = append(&to_vec(&m), format!("\"{member}\":{v}").as_bytes());
            case(
                &format!("{member} {name}"),
                signed(&to_vec(&header), &c, &broker),
            );
        }
    }
    // Oversized jti (the token still fits the parameter limit).
    let c = to_vec(&with(&body, "jti", "j".repeat(5000).into()));
    case("5000-byte jti", signed(&to_vec(&header), &c, &broker));
    // A proof is not an access token.
    let proof = b.proof(&agent, &b.token_url(), None);
    case("a DPoP proof as subject token", proof);

    let before = state(&b);
    let rejected = rejections(&b);
    let mut audited = 0;
    for (name, token) in &cases {
        // Past the form parameter limit (8 KB, more than any token the broker
        // issues) a token is refused before it is parsed, at every endpoint.
        let oversized = token.len() > 8192;
        let r = b.exchange(&agent, token, TT_ACCESS, &[]).await;
        let code = if oversized {
            "invalid_request"
        } else {
            "invalid_grant"
        };
        assert_refused(&r, 400, code, name);
        audited += i64::from(!oversized);
        let i = b.introspect(&rs, token).await;
        let v = b
            .post_form(
                "/oauth/revoke",
                &[("token", token), ("client_id", "bot")],
                &[],
            )
            .await;
        if oversized {
            assert_eq!((i.status, i.error()), (400, "invalid_request"), "{name}");
            assert_eq!((v.status, v.error()), (400, "invalid_request"), "{name}");
        } else {
            assert_eq!(
                (i.status, &i.body),
                (200, &json!({"active": false})),
                "{name}"
            );
            // RFC 7009: an invalid token is answered 200 and nothing happens.
            assert_eq!(v.status, 200, "{name}: {}", v.body);
        }
    }
    assert_eq!(
        state(&b),
        before,
        "a refused token changed the broker's state"
    );
    rejections_reach(&b, rejected + audited).await;
    assert_eq!(b.cli_ok(&["audit", "verify"])["ok"], true);

    // A body past the size limit is refused before it is read to the end.
    let huge = format!("{control}{}", "A".repeat(200_000));
    let r = b.exchange(&agent, &huge, TT_ACCESS, &[]).await;
    assert_refused(&r, 413, "invalid_request", "200 KB subject token");
    assert_eq!(state(&b), before);
    // And the real token still works.
    let r = b
        .exchange(&agent, &at, TT_ACCESS, &[("scope", "calendar:read")])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn an_expired_subject_token_is_refused() {
    if protonpass_e2e::on_postgres() {
        return; // looks into SQLite's files or the data directory
    }
    let b = Broker::start(&[("PROTONPASS_BROKER_ACCESS_TTL", "1")]);
    let agent = key();
    let r = b.enroll(&agent, "bot", "calendar:read", &[]).await;
    let at = r.s("access_token");
    let exp = claims(&at)["exp"].as_i64().unwrap();
    while SystemClock.now() <= exp {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let before = state(&b);
    let r = b.exchange(&agent, &at, TT_ACCESS, &[]).await;
    assert_refused(&r, 400, "invalid_grant", "expired subject");
    assert_eq!(state(&b), before);
}

#[tokio::test]
async fn sql_and_other_owners_ids_revoke_nothing() {
    if protonpass_e2e::on_postgres() {
        return; // looks into SQLite's files or the data directory
    }
    let b = Broker::start(&[]);
    b.add_owners(&["alice", "bob"]);
    let agent = key();
    let r = b.enroll(&agent, "bot", "calendar:read", &[]).await;
    let at = r.s("access_token");
    b.create_grant("bobs-bot", "mail:read", &["--owner", "bob"]);
    let before = state(&b);
    for id in [
        "' OR '1'='1",
        "x'; DELETE FROM grants; --",
        "%",
        "*",
        "_",
        "\" OR \"\"=\"",
        "g_%",
    ] {
        let (code, v) = b.cli(&["revoke", "--", id]);
        assert_ne!(code, 0, "{id}: {v}");
        let (code, v) = b.cli(&["revoke", "--agent", id]);
        // Naming an agent that has no grant revokes nothing (and may say so).
        assert!(
            code != 0 || v["grants"].as_array().is_some_and(Vec::is_empty),
            "{id}: {v}"
        );
        let r = b
            .post_form("/oauth/revoke", &[("token", id), ("client_id", "bot")], &[])
            .await;
        assert_eq!(r.status, 200);
        let r = b
            .post_form(
                "/oauth/revoke",
                &[("token", &format!("rt_{id}")), ("client_id", "' OR '1'='1")],
                &[],
            )
            .await;
        assert_eq!(r.status, 200);
    }
    // Bob's grant by another owner's hand: unknown, as if it did not exist.
    let (code, v) = b.cli(&["revoke", "--agent", "bobs-bot"]);
    assert!(
        code != 0 || v["grants"].as_array().is_some_and(Vec::is_empty),
        "{v}"
    );
    // The agent's own token revoked under another client_id: nothing happens.
    let r = b
        .post_form(
            "/oauth/revoke",
            &[("token", &at), ("client_id", "someone-else")],
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(state(&b), before, "a hostile id changed the broker's state");
}
