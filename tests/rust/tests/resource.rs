//! Hostile requests at a resource server protected by the core's verifier (the
//! axum layer), with tokens from the real broker: stolen tokens, unbound and
//! forged tokens, replays under concurrency, forged forwarding headers. Every
//! refusal is a 401 with the RFC 6750 / RFC 9449 error in `WWW-Authenticate`.
//! (The per-check cases of token and proof verification are in the core's
//! tests, core/tests/protocol; the broker's own endpoints in the broker's.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Api, enrolled, get_with};
use protonpass_agent::*;
use protonpass_e2e::{Broker, dpop};
use serde_json::{Map, Value, json};

/// A broker, an enrolled agent's session (its home dir must outlive it), and
/// the URL of the API's protected route.
async fn setting() -> (Broker, tempfile::TempDir, Session, String) {
    setting_with(false).await
}

/// [`setting`] with an API that requires server nonces or not.
async fn setting_with(require_nonce: bool) -> (Broker, tempfile::TempDir, Session, String) {
    let broker = Broker::start(&[]);
    let home = tempfile::tempdir().unwrap();
    let api = Api::bind().await;
    let s = enrolled(&broker, home.path(), &api.aud).await;
    let mut o = VerifierOptions::new(broker.url.clone(), api.aud.clone());
    o.require_nonce = require_nonce;
    let v = Verifier::new(o).await.unwrap();
    let url = format!("{}/travel/flights", api.serve(v).await);
    (broker, home, s, url)
}

/// The broker's signing key from its data directory, as a thief would have it.
fn broker_key(b: &Broker) -> (String, AgentKey) {
    let p = std::fs::read_dir(b.data.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pem"))
        .unwrap();
    let kid = p.file_stem().unwrap().to_str().unwrap().to_owned();
    (
        kid,
        AgentKey::from_pkcs8_pem(&std::fs::read_to_string(&p).unwrap()).unwrap(),
    )
}

fn part(jwt: &str, i: usize) -> Map<String, Value> {
    match serde_json::from_slice(&b64::decode(jwt.split('.').nth(i).unwrap()).unwrap()).unwrap() {
        Value::Object(m) => m,
        other => panic!("{other}"),
    }
}

fn proof(key: &AgentKey, url: &str, token: &str) -> String {
    dpop(key, "GET", url, Some(token), None)
}

/// A GET of `url` with `token` in the DPoP scheme and a proof by `key`
/// whose `ath` is that of `proved` (the token itself, or another).
async fn get_dpop(
    http: &reqwest::Client,
    url: &str,
    key: &AgentKey,
    token: &str,
    proved: &str,
) -> (u16, String) {
    let h = [
        ("authorization", format!("DPoP {token}")),
        ("dpop", proof(key, url, proved)),
    ];
    get_with(http, url, &h).await
}

fn assert_challenge(got: &(u16, String), code: &str, what: &str) {
    assert_eq!(got.0, 401, "{what}: {}", got.1);
    assert!(
        got.1.starts_with("DPoP ") && got.1.contains(&format!("error=\"{code}\"")),
        "{what}: {}",
        got.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stolen_unbound_and_forged_tokens_are_refused() {
    let (broker, _home, s, url) = setting().await;
    let http = reqwest::Client::new();
    let h = s.headers("GET", &url).unwrap();
    let token = h[0].1.trim_start_matches("DPoP ").to_owned();
    let thief = AgentKey::generate(&OsRandom).unwrap();
    // The control: the agent's own request passes.
    let ok = get_with(
        &http,
        &url,
        &[("authorization", h[0].1.clone()), ("dpop", h[1].clone().1)],
    )
    .await;
    assert_eq!(ok.0, 200, "{}", ok.1);

    // A stolen token with the thief's own proof: the key is not the token's.
    let r = get_dpop(&http, &url, &thief, &token, &token).await;
    assert_challenge(&r, "invalid_dpop_proof", "stolen token, thief's proof");
    // A stolen token as a bearer token.
    let r = get_with(&http, &url, &[("authorization", format!("Bearer {token}"))]).await;
    assert_challenge(&r, "invalid_token", "DPoP-bound token as Bearer");
    let (kid, bk) = broker_key(&broker);
    let header = part(&token, 0);
    let claims = part(&token, 1);
    let sign = |h: &Map<String, Value>, c: &Map<String, Value>, k: &AgentKey| {
        let input = format!(
            "{}.{}",
            b64::encode(serde_json::to_vec(h).unwrap()),
            b64::encode(serde_json::to_vec(c).unwrap())
        );
        let sig = k.sign(input.as_bytes());
        format!("{input}.{}", b64::encode(sig))
    };
    let mut unbound = claims.clone();
    unbound.remove("cnf");
    let unbound = sign(&header, &unbound, &bk);
    // An unbound token (no cnf), validly signed by the broker's key: with the
    // DPoP scheme and a good proof, and as Bearer. Neither is accepted.
    let r = get_dpop(&http, &url, &thief, &unbound, &unbound).await;
    assert_challenge(&r, "invalid_token", "unbound token, DPoP scheme");
    let r = get_with(
        &http,
        &url,
        &[("authorization", format!("Bearer {unbound}"))],
    )
    .await;
    assert_challenge(&r, "invalid_token", "unbound token as Bearer");
    // A token bound to the thief's key, signed by anyone but the broker.
    let mut rebound = claims.clone();
    rebound.insert("cnf".into(), json!({"jkt": thief.thumbprint()}));
    let forged: Vec<(&str, String)> = vec![
        ("signed by the thief", sign(&header, &rebound, &thief)),
        ("alg none", {
            let mut h = header.clone();
            h.insert("alg".into(), "none".into());
            let t = sign(&h, &rebound, &thief);
            t[..t.rfind('.').unwrap() + 1].to_owned()
        }),
        ("jwk header with the thief's key", {
            let mut h = header.clone();
            h.remove("kid");
            h.insert("jwk".into(), Value::Object(thief.public_jwk().to_json()));
            sign(&h, &rebound, &thief)
        }),
        ("kid traversal", {
            let mut h = header.clone();
            h.insert("kid".into(), format!("../{kid}").into());
            sign(&h, &rebound, &thief)
        }),
        ("another audience", {
            let mut c = claims.clone();
            c.insert("aud".into(), "http://api.test/bank".into());
            c.insert("cnf".into(), json!({"jkt": thief.thumbprint()}));
            sign(&header, &c, &bk)
        }),
    ];
    for (name, t) in &forged {
        let r = get_dpop(&http, &url, &thief, t, t).await;
        assert_challenge(&r, "invalid_token", name);
    }
    // A token the broker would have issued to the thief passes: the control
    // that the refusals above are the attacks', not the test's.
    let t = sign(&header, &rebound, &bk);
    let r = get_dpop(&http, &url, &thief, &t, &t).await;
    assert_eq!(r.0, 200, "{}", r.1);
    // The same key's proof made for another of its tokens: ath does not match.
    let mut other = rebound.clone();
    other.insert("jti".into(), "another-token".into());
    let other = sign(&header, &other, &bk);
    let r = get_dpop(&http, &url, &thief, &t, &other).await;
    assert_challenge(&r, "invalid_dpop_proof", "proof for another token (ath)");
    s.close(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_forwarded_headers_and_nonces() {
    let (broker, home, s, url) = setting().await;
    let http = reqwest::Client::new();

    // 32 copies of one request at once: exactly one is served.
    let h = s.headers("GET", &url).unwrap();
    let hs: Vec<(&'static str, String)> =
        vec![("authorization", h[0].1.clone()), ("dpop", h[1].1.clone())];
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (http, url, hs) = (http.clone(), url.clone(), hs.clone());
        set.spawn(async move { get_with(&http, &url, &hs).await });
    }
    let all: Vec<(u16, String)> = set.join_all().await;
    assert_eq!(all.iter().filter(|r| r.0 == 200).count(), 1);
    for r in all.iter().filter(|r| r.0 != 200) {
        assert_challenge(r, "invalid_dpop_proof", "replay");
    }

    // A proof made for the forged origin the forwarding headers name: the
    // server goes by its configured public URL, not by the request's headers.
    let token = h[0].1.trim_start_matches("DPoP ").to_owned();
    // (The session refuses to sign for a URL outside its audience, so the
    // proof is made with its key as stored.)
    let evil = "https://evil.example/travel/flights";
    let key = GrantStore::new(StoreKind::File(home.path().to_path_buf()))
        .load(&broker.url, "default", "ci-bot")
        .unwrap()
        .unwrap()
        .key;
    let r = get_with(
        &http,
        &url,
        &[
            ("authorization", format!("DPoP {token}")),
            ("dpop", proof(&key, evil, &token)),
            ("x-forwarded-host", "evil.example".into()),
            ("x-forwarded-proto", "https".into()),
            ("forwarded", "host=evil.example;proto=https".into()),
        ],
    )
    .await;
    assert_challenge(&r, "invalid_dpop_proof", "forged X-Forwarded-*");

    // With nonces required: a proof without one is challenged with a fresh
    // nonce (forged nonces are refused in the core's and the broker's tests).
    s.close(true).await.unwrap();
    let (_broker, _home, s, url) = setting_with(true).await;
    let h = s.headers("GET", &url).unwrap();
    let resp = http
        .get(&url)
        .header("authorization", &h[0].1)
        .header("dpop", &h[1].1)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("dpop-nonce"));
    let www = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(www.contains("error=\"use_dpop_nonce\""), "{www}");
    // The session answers the challenge by itself.
    let ok = s.send("GET", &url, &[], None, None).await.unwrap();
    assert_eq!(ok.status(), 200);
    s.close(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grants_first_token_is_revoked_and_the_sessions_works() {
    let (broker, _home, s, url) = setting().await;
    let http = reqwest::Client::new();
    let feed = broker.feed(0).await;
    let revoked: Vec<&str> = feed.iter().filter_map(|e| e["jti"].as_str()).collect();
    // The enrollment's token (all of the grant's scopes) is in the feed; the
    // session's own token, exchanged for the requested scopes, is not.
    assert_eq!(revoked.len(), 1, "{feed:?}");
    let h = s.headers("GET", &url).unwrap();
    let token = h[0].1.trim_start_matches("DPoP ");
    assert_ne!(part(token, 1)["jti"].as_str().unwrap(), revoked[0]);
    let r = get_with(
        &http,
        &url,
        &[("authorization", h[0].1.clone()), ("dpop", h[1].1.clone())],
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    s.close(false).await.unwrap();
}

/// A captured request's headers, as [`get_with`] takes them.
fn sent(h: &[(String, String)]) -> Vec<(&str, String)> {
    h.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

/// Poll the JWKS until it publishes exactly `want` (the broker reloads its
/// keys about every second).
async fn await_published(broker: &Broker, mut want: Vec<String>) {
    want.sort();
    for _ in 0..50 {
        if broker.published_kids().await == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(broker.published_kids().await, want);
}

async fn active(broker: &Broker, rs: &Value, token: &str) -> bool {
    let id = |k: &str| rs[k].as_str().unwrap().to_owned();
    let rs = (id("client_id"), id("client_secret"));
    broker.introspect(&rs, token).await.body["active"]
        .as_bool()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_key_verifies_until_drop_after_then_leaves_the_jwks() {
    let (broker, _home, s, url) = setting().await;
    let aud = url.trim_end_matches("/flights").to_owned();
    let http = reqwest::Client::new();
    let rs = broker.cli_ok(&["resource", "add", &aud]);
    // Requests with the first token, each with its own (single-use) proof.
    let old: Vec<Vec<(String, String)>> = (0..2).map(|_| s.headers("GET", &url).unwrap()).collect();
    let old_token = old[0][0].1.trim_start_matches("DPoP ").to_owned();
    let old_kid = part(&old_token, 0)["kid"].as_str().unwrap().to_owned();
    assert_eq!(get_with(&http, &url, &sent(&old[0])).await.0, 200);

    let new_kid = broker.cli_ok(&["keys", "rotate"])["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_kid, old_kid);
    await_published(&broker, vec![old_kid.clone(), new_kid.clone()]).await;
    // During the overlap the running verifier and introspection still accept
    // the old key's token.
    assert_eq!(get_with(&http, &url, &sent(&old[1])).await.0, 200);
    assert!(active(&broker, &rs, &old_token).await);
    // New tokens carry the new kid; the verifier learns the key on first
    // sight of it (fetching the JWKS at most once every 10 s).
    s.renew().await.unwrap();
    let h = s.headers("GET", &url).unwrap();
    let new_token = h[0].1.trim_start_matches("DPoP ").to_owned();
    assert_eq!(part(&new_token, 0)["kid"], new_kid.as_str());
    assert!(active(&broker, &rs, &new_token).await);
    let mut last = (0, String::new());
    for _ in 0..30 {
        last = get_with(&http, &url, &sent(&s.headers("GET", &url).unwrap())).await;
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(last.0, 200, "{}", last.1);

    // The old key is kept until every token it signed has expired (plus a
    // minute): its drop_after is past the old token's exp.
    let db = rusqlite::Connection::open(broker.data.join("broker.db")).unwrap();
    let meta: Value = serde_json::from_str(
        &db.query_row(
            "SELECT data FROM signing_keys WHERE kid = ?1",
            [&old_kid],
            |r| r.get::<_, String>(0),
        )
        .unwrap(),
    )
    .unwrap();
    let exp = part(&old_token, 1)["exp"].as_i64().unwrap();
    assert!(meta["drop_after"].as_i64().unwrap() > exp, "{meta}");
    // Once the old key's tokens are all past (its retirement and drop_after
    // moved an hour and a minute into the past here, rather than waited for),
    // it leaves the JWKS, and the broker no longer vouches for its tokens.
    let past = SystemClock.now() - 3600 - 61;
    db.execute(
        "UPDATE signing_keys SET data = json_set(data, '$.retired_at', ?1, '$.drop_after', ?2) WHERE kid = ?3",
        rusqlite::params![past, past + 3600 + 60, old_kid],
    )
    .unwrap();
    await_published(&broker, vec![new_kid.clone()]).await;
    assert!(!active(&broker, &rs, &old_token).await);
    // Anyone who reads the JWKS now refuses the old token.
    let jwks = http
        .get(format!("{}/jwks.json", broker.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let keys = KeySet::from_jwks_json(&jwks).unwrap();
    let val = TokenValidation::new(broker.url.clone(), aud);
    assert!(verify_access_token(&old_token, &keys, &val, SystemClock.now()).is_err());
    verify_access_token(&new_token, &keys, &val, SystemClock.now()).unwrap();
}
