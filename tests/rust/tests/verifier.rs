//! The verifier as the broker's owners see it: every request it decides is
//! reported to the broker's audit log (allowed, and refused with the error
//! code and finer reason, attributed to the agent when the token was
//! verified), and an API serves one owner only: another owner's token is
//! refused, exactly as the broker's introspection answers for that owner's
//! resource.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Api;
use protonpass_agent::*;
use protonpass_e2e::{Broker, audit_records};
use serde_json::Value;

/// An agent of `owner` enrolled with `scope` for `aud`.
async fn session(
    broker: &Broker,
    home: &std::path::Path,
    owner: &str,
    scope: &str,
    aud: &str,
) -> Session {
    let v = broker.cli_ok(&[
        "--owner",
        owner,
        "grant",
        "create",
        "--agent",
        &format!("{owner}-bot"),
        "--scope",
        scope,
        "--audience",
        aud,
    ]);
    let opts = AuthOptions {
        broker: Some(broker.url.clone()),
        agent_name: Some(format!("{owner}-bot")),
        enrollment_code: Some(v["enrollment_code"].as_str().unwrap().to_owned()),
        store: Some(StoreKind::File(home.to_path_buf())),
        prompt: Some(Arc::new(|_: &DevicePrompt| panic!("no prompt expected"))),
        ..AuthOptions::default()
    };
    let scopes: Vec<&str> = scope.split(' ').collect();
    authenticate_with_proton(&scopes, aud, opts).await.unwrap()
}

/// The `usage` records of the resource `client_id`, from `audit export`,
/// once there are at least `n` (reports are batched every second).
fn usage_records(broker: &Broker, client_id: &str, n: usize) -> Vec<(String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let recs: Vec<(String, Value)> = audit_records(broker)
            .into_iter()
            .filter(|r| r["event"] == "usage")
            .map(|r| (r["owner"].as_str().unwrap().to_owned(), r["detail"].clone()))
            .filter(|(_, d): &(String, Value)| d["resource"] == client_id)
            .collect();
        if recs.len() >= n || Instant::now() > deadline {
            return recs;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn send(http: &reqwest::Client, method: &str, url: &str, h: &[(String, String)]) -> u16 {
    let mut r = http.request(method.parse().unwrap(), url);
    for (k, v) in h {
        r = r.header(k, v);
    }
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_and_refused_calls_reach_the_owners_audit() {
    let broker = Broker::start(&[]);
    let home = tempfile::tempdir().unwrap();
    let api = Api::bind().await;
    let s = session(&broker, home.path(), "default", "travel:search", &api.aud).await;
    let (id, secret) = broker.resource(&api.aud, Some("default"));
    let mut o = VerifierOptions::new(broker.url.clone(), api.aud.clone());
    o.usage_reports = Some((id.clone(), secret.into()));
    let base = api.serve(Verifier::new(o).await.unwrap()).await;
    let http = reqwest::Client::new();

    // Allowed, with the agent's stated reason.
    let flights = format!("{base}/travel/flights");
    let h = s
        .headers_with_reason("GET", &flights, Some("compare fares"))
        .unwrap();
    assert_eq!(send(&http, "GET", &flights, &h).await, 200);
    // Refused by the verifier for a verified token: the same proof again.
    assert_eq!(send(&http, "GET", &flights, &h).await, 401);
    // Refused by the application after verification (`require_amount`).
    let pay = format!("{base}/travel/pay?amount=5");
    let h = s.headers("POST", &pay).unwrap();
    assert_eq!(send(&http, "POST", &pay, &h).await, 403);
    // Refused without any token: reported, unattributed.
    assert_eq!(send(&http, "GET", &flights, &[]).await, 401);

    let recs = usage_records(&broker, &id, 4);
    assert_eq!(recs.len(), 4, "{recs:?}");
    assert!(recs.iter().all(|(owner, _)| owner == "default"));
    let find = |decision: &str, code: Option<&str>| {
        recs.iter()
            .map(|(_, d)| d)
            .find(|d| d["decision"] == decision && d["code"].as_str() == code)
            .unwrap_or_else(|| panic!("no {decision} {code:?} in {recs:?}"))
    };
    let allowed = find("allow", None);
    assert_eq!(allowed["agent"], "default-bot");
    assert_eq!(allowed["reason"], "compare fares");
    assert_eq!(allowed["path"], "/travel/flights");
    let replay = find("deny", Some("invalid_dpop_proof"));
    assert_eq!(replay["reason"], "replay");
    assert_eq!(replay["agent"], "default-bot");
    assert_eq!(replay["jti"], allowed["jti"]);
    let scope = find("deny", Some("insufficient_scope"));
    assert_eq!(scope["agent"], "default-bot");
    assert_eq!(scope["scope"], "payment:execute");
    assert_eq!(scope["method"], "POST");
    let anonymous = find("deny", Some("invalid_token"));
    assert_eq!(anonymous["reason"], "missing_claim");
    assert!(anonymous["jti"].is_null() && anonymous["agent"].is_null());
    s.close(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_refusals_is_reported_whole() {
    // More refusals in a second than the broker takes in one report (1000):
    // the verifier splits the batch instead of losing it.
    let broker = Broker::start(&[]);
    let api = Api::bind().await;
    let (id, secret) = broker.resource(&api.aud, Some("default"));
    let mut o = VerifierOptions::new(broker.url.clone(), api.aud.clone());
    o.usage_reports = Some((id.clone(), secret.into()));
    let url = format!(
        "{}/travel/flights",
        api.serve(Verifier::new(o).await.unwrap()).await
    );
    let http = reqwest::Client::new();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..1500 {
        let (http, url) = (http.clone(), url.clone());
        set.spawn(async move { send(&http, "GET", &url, &[]).await });
    }
    assert!(set.join_all().await.iter().all(|s| *s == 401));
    let recs = usage_records(&broker, &id, 1500);
    assert_eq!(recs.len(), 1500);
}

/// A token of each owner, and owner A's verifier and resource credentials.
struct TwoOwners {
    broker: Broker,
    _homes: (tempfile::TempDir, tempfile::TempDir),
    alice: Session,
    bob: Session,
    resource: (String, String),
    api: Api,
}

async fn two_owners() -> TwoOwners {
    let broker = Broker::start(&[]);
    broker.add_owners(&["alice", "bob"]);
    let homes = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let api = Api::bind().await;
    // Bob's grant comes first: once alice registers the audience, no other
    // owner can be granted it, but a token bob already holds still exists.
    let bob = session(&broker, homes.1.path(), "bob", "travel:search", &api.aud).await;
    let resource = broker.resource(&api.aud, Some("alice"));
    let alice = session(&broker, homes.0.path(), "alice", "travel:search", &api.aud).await;
    TwoOwners {
        broker,
        _homes: homes,
        alice,
        bob,
        resource,
        api,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_serves_its_owner_only() {
    let t = two_owners().await;
    let mut o = VerifierOptions::new(t.broker.url.clone(), t.api.aud.clone());
    o.owner = Some("alice".into());
    o.usage_reports = Some((t.resource.0.clone(), t.resource.1.clone().into()));
    let base = t.api.serve(Verifier::new(o).await.unwrap()).await;
    let url = format!("{base}/travel/flights");
    let http = reqwest::Client::new();

    let resp = http
        .get(&url)
        .headers(header_map(&t.alice.headers("GET", &url).unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "flights for alice-bot");
    let resp = http
        .get(&url)
        .headers(header_map(&t.bob.headers("GET", &url).unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let www = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(www.contains("error=\"invalid_token\""), "{www}");
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("owner"),
        "{body}"
    );
    // Alice's audit shows bob's attempt, refused for the owner, without
    // naming bob's agent.
    let recs = usage_records(&t.broker, &t.resource.0, 2);
    let refused = recs
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["decision"] == "deny")
        .unwrap_or_else(|| panic!("{recs:?}"));
    assert_eq!(refused["code"], "invalid_token");
    assert_eq!(refused["reason"], "owner");
    assert!(refused["agent"].is_null(), "{refused}");
    assert!(recs.iter().all(|(owner, _)| owner == "alice"));
    t.alice.close(true).await.unwrap();
    t.bob.close(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_verification_agrees_with_introspection() {
    let t = two_owners().await;
    let mut o = VerifierOptions::new(t.broker.url.clone(), t.api.aud.clone());
    o.owner = Some("alice".into());
    let v = Verifier::new(o).await.unwrap();
    let url = &format!("{}/flights", t.api.aud);
    for (who, s) in [("alice", &t.alice), ("bob", &t.bob)] {
        let h = s.headers("GET", url).unwrap();
        let local = v.verify("GET", url, &h).await;
        let token = h[0].1.trim_start_matches("DPoP ");
        let remote = t.broker.introspect(&t.resource, token).await.body;
        assert_eq!(
            local.is_ok(),
            remote["active"] == true,
            "{who}: local {local:?}, introspection {remote}"
        );
        assert_eq!(local.is_ok(), who == "alice", "{who}: {local:?}");
        if let Ok(id) = local {
            assert_eq!(id.owner, "alice");
            assert_eq!(remote["sub"], "alice");
        }
    }
    v.stop();
    t.alice.close(true).await.unwrap();
    t.bob.close(true).await.unwrap();
}

fn header_map(h: &[(String, String)]) -> reqwest::header::HeaderMap {
    let mut m = reqwest::header::HeaderMap::new();
    for (k, v) in h {
        m.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    m
}
