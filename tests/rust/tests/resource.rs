//! Hostile requests at a resource server protected by the core's verifier (the
//! axum layer), with tokens from the real broker: stolen tokens, unbound and
//! forged tokens, replays under concurrency, forged forwarding headers. Every
//! refusal is a 401 with the RFC 6750 / RFC 9449 error in `WWW-Authenticate`.
//! (The per-check cases of token and proof verification are in the core's
//! tests, core/tests/protocol; the broker's own endpoints in the broker's.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::Api;
use protonpass_agent::*;
use protonpass_e2e::Broker;
use serde_json::{Map, Value, json};

async fn session(broker: &Broker, home: &std::path::Path, aud: &str) -> Session {
    let v = broker.cli_json(&[
        "grant",
        "create",
        "--agent",
        "ci-bot",
        "--scope",
        "travel:search",
        "--audience",
        aud,
    ]);
    let code = v["enrollment_code"].as_str().unwrap().to_owned();
    let opts = AuthOptions {
        broker: Some(broker.issuer.clone()),
        agent_name: Some("ci-bot".into()),
        enrollment_code: Some(code),
        store: Some(StoreKind::File(home.to_path_buf())),
        prompt: Some(Arc::new(|_: &DevicePrompt| panic!("no prompt expected"))),
        ..AuthOptions::default()
    };
    authenticate_with_proton(&["travel:search"], aud, opts)
        .await
        .unwrap()
}

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
    let s = session(&broker, home.path(), &api.aud).await;
    let mut o = VerifierOptions::new(broker.issuer.clone(), api.aud.clone());
    o.require_nonce = require_nonce;
    let v = Verifier::new(o).await.unwrap();
    let url = format!("{}/travel/flights", api.serve(v).await);
    (broker, home, s, url)
}

/// The broker's signing key from its data directory, as a thief would have it.
fn broker_key(b: &Broker) -> (String, AgentKey) {
    let p = std::fs::read_dir(b.data().join("keys"))
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
    create_proof(
        key,
        &ProofInput {
            method: "GET",
            url,
            access_token: Some(token),
            ..Default::default()
        },
        SystemClock.now(),
        &OsRandom,
    )
    .unwrap()
}

/// (status, WWW-Authenticate) for a GET with these headers.
async fn get_with(http: &reqwest::Client, url: &str, h: &[(&str, String)]) -> (u16, String) {
    let mut r = http.get(url);
    for (k, v) in h {
        r = r.header(*k, v);
    }
    let resp = r.send().await.unwrap();
    let www = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (resp.status().as_u16(), www)
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
    let r = get_with(
        &http,
        &url,
        &[
            ("authorization", format!("DPoP {token}")),
            ("dpop", proof(&thief, &url, &token)),
        ],
    )
    .await;
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
    let r = get_with(
        &http,
        &url,
        &[
            ("authorization", format!("DPoP {unbound}")),
            ("dpop", proof(&thief, &url, &unbound)),
        ],
    )
    .await;
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
        let r = get_with(
            &http,
            &url,
            &[
                ("authorization", format!("DPoP {t}")),
                ("dpop", proof(&thief, &url, t)),
            ],
        )
        .await;
        assert_challenge(&r, "invalid_token", name);
    }
    // A token the broker would have issued to the thief passes: the control
    // that the refusals above are the attacks', not the test's.
    let t = sign(&header, &rebound, &bk);
    let r = get_with(
        &http,
        &url,
        &[
            ("authorization", format!("DPoP {t}")),
            ("dpop", proof(&thief, &url, &t)),
        ],
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    // The same key's proof made for another of its tokens: ath does not match.
    let mut other = rebound.clone();
    other.insert("jti".into(), "another-token".into());
    let other = sign(&header, &other, &bk);
    let r = get_with(
        &http,
        &url,
        &[
            ("authorization", format!("DPoP {t}")),
            ("dpop", proof(&thief, &url, &other)),
        ],
    )
    .await;
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
        .load(&broker.issuer, "default", "ci-bot")
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
    let feed: Value = http
        .get(format!("{}/revocations?after=0", broker.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let revoked: Vec<&str> = feed["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["jti"].as_str())
        .collect();
    // The enrollment's token (all of the grant's scopes) is in the feed; the
    // session's own token, exchanged for the requested scopes, is not.
    assert_eq!(revoked.len(), 1, "{feed}");
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
