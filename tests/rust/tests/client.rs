//! Issue 5 end to end: the Rust client and verifier against the real broker
//! binary over real HTTP with a real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::{Api, enrolled, get_with};
use protonpass_agent::*;
use protonpass_e2e::{Broker, audit_records};

fn opts(broker: &Broker, home: &std::path::Path) -> AuthOptions {
    AuthOptions {
        broker: Some(broker.url.clone()),
        agent_name: Some("travel-bot".into()),
        store: Some(StoreKind::File(home.to_path_buf())),
        prompt: Some(Arc::new(|_: &DevicePrompt| panic!("no prompt expected"))),
        ..AuthOptions::default()
    }
}

/// Run the device flow, approving through the CLI from another thread when
/// the prompt shows the code. Returns the session and the prompt seen.
async fn device_login(
    broker: &Broker,
    home: &std::path::Path,
    aud: &str,
    scopes: &[&str],
    approve_args: &[&str],
) -> (Result<Session>, Option<DevicePrompt>) {
    let seen: Arc<Mutex<Option<DevicePrompt>>> = Arc::default();
    let data = broker.data.clone();
    let approve: Vec<String> = approve_args.iter().map(|s| s.to_string()).collect();
    let seen2 = seen.clone();
    let prompt: PromptFn = Arc::new(move |p: &DevicePrompt| {
        *seen2.lock().unwrap() = Some(p.clone());
        let code = p.user_code.clone();
        let data = data.clone();
        let approve = approve.clone();
        std::thread::spawn(move || {
            let mut cmd = std::process::Command::new(protonpass_e2e::broker_bin());
            if approve.first().map(String::as_str) == Some("deny") {
                cmd.arg("deny").arg(&code);
            } else {
                cmd.arg("approve").arg(&code).args(&approve);
            }
            let out = cmd.arg("--data").arg(&data).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        });
    });
    let mut o = opts(broker, home);
    o.prompt = Some(prompt);
    let s = authenticate_with_proton(scopes, aud, o).await;
    let p = seen.lock().unwrap().clone();
    (s, p)
}

async fn verifier_for(broker: &Broker, aud: &str, require_nonce: bool) -> Verifier {
    let mut o = VerifierOptions::new(broker.url.clone(), aud);
    o.require_nonce = require_nonce;
    o.max_staleness = Duration::from_secs(5);
    Verifier::new(o).await.unwrap()
}

/// Poll `f` until it returns true or the deadline passes.
async fn eventually(secs: u64, mut f: impl AsyncFnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn api_url(base: &str, path: &str) -> String {
    format!("{base}/travel{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_grant_then_stored_grant_then_revocation() {
    let broker = Broker::with_args(&["--device-interval", "1"]);
    let home = tempfile::tempdir().unwrap();
    let api = Api::bind().await;
    let aud = api.aud.clone();
    let (s, prompt) = device_login(
        &broker,
        home.path(),
        &aud,
        &["travel:search", "travel:book"],
        &[],
    )
    .await;
    let s = s.unwrap();
    let p = prompt.expect("the prompt was shown");
    assert_eq!(p.user_code.len(), 9, "XXXX-XXXX");
    assert!(s.scopes().covers(&Scope::parse("travel:book").unwrap()));

    // Second run: the stored grant is used, no prompt (the default prompt panics).
    let s2 = authenticate_with_proton(&["travel:search"], &aud, opts(&broker, home.path()))
        .await
        .unwrap();
    assert_eq!(s2.scopes().to_string(), "travel:search");
    assert_eq!(s2.thumbprint(), s.thumbprint(), "same key, same grant");

    // The API accepts the session's requests.
    let v = verifier_for(&broker, &aud, false).await;
    let base = api.serve(v.clone()).await;
    let r = s2
        .send(
            "GET",
            &api_url(&base, "/flights"),
            &[],
            None,
            Some("find flights"),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // close() revokes the session's access token: the running verifier rejects it.
    let hdrs = s2.headers("GET", &api_url(&base, "/flights")).unwrap();
    s2.close(false).await.unwrap();
    let url = api_url(&base, "/flights");
    let rejected = eventually(5, async || {
        let h = s2_headers_fresh(&hdrs, &url);
        v.verify("GET", &url, &h)
            .await
            .is_err_and(|r| r.error.reason() == Some(Reason::Revoked))
    })
    .await;
    assert!(
        rejected,
        "the verifier learned of the revocation through the feed"
    );

    // The first session still works (its token was not revoked)...
    let r = s.send("GET", &url, &[], None, None).await.unwrap();
    assert_eq!(r.status(), 200);
    // ...until the owner revokes the whole agent.
    broker.cli_ok(&["revoke", "--agent", "travel-bot"]);
    // The API answers 401; the session's one renewal attempt then finds the
    // grant revoked, and the caller gets a typed invalid_grant error.
    let cut = eventually(5, async || {
        match s.send("GET", &url, &[], None, None).await {
            Err(e) => e.code() == "invalid_grant",
            Ok(r) => r.status() == 401,
        }
    })
    .await;
    assert!(cut, "an owner revocation reaches the running verifier");
}

/// Re-sign nothing: the headers captured before close() carry a proof that
/// was never used, so the verifier's answer is about the token alone.
fn s2_headers_fresh(h: &[(String, String)], _url: &str) -> Vec<(String, String)> {
    h.to_vec()
}

fn enroll(broker: &Broker, aud: &str, scopes: &str, ttl: &str) -> String {
    let v = broker.create_grant_on("ci-bot", scopes, aud, &["--ttl", ttl]);
    v["enrollment_code"]
        .as_str()
        .or_else(|| v["code"].as_str())
        .unwrap_or_else(|| panic!("no enrollment code in {v}"))
        .to_owned()
}

fn headless(broker: &Broker, home: &std::path::Path, code: Option<String>) -> AuthOptions {
    AuthOptions {
        agent_name: Some("ci-bot".into()),
        enrollment_code: code,
        ..opts(broker, home)
    }
}

/// A headless agent enrolled for `travel:search` (the home dir must outlive it).
async fn enrolled_session(broker: &Broker, aud: &str) -> (Session, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap();
    let s = enrolled(broker, home.path(), aud).await;
    (s, home)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_narrowing_and_required_scopes() {
    let broker = Broker::start(&[]);
    let home = tempfile::tempdir().unwrap();
    let api = Api::bind().await;
    let aud = api.aud.clone();
    let code = enroll(
        &broker,
        &aud,
        "travel:search payment:execute:under-100",
        "1h",
    );

    // The owner named the agent: another name cannot redeem the code (and the
    // refusal does not spend it).
    let wrong_home = tempfile::tempdir().unwrap();
    let mut wrong = headless(&broker, wrong_home.path(), Some(code.clone()));
    wrong.agent_name = Some("other-bot".into());
    let e = authenticate_with_proton(&["travel:search"], &aud, wrong)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_grant", "{e}");
    assert!(e.to_string().contains("ci-bot"), "{e}");

    // Ask for more than the grant: the limit is narrowed, the rest dropped,
    // and nothing missing is required.
    let mut o = headless(&broker, home.path(), Some(code.clone()));
    o.required = Some(vec!["travel:search".into()]);
    let s = authenticate_with_proton(
        &["travel:search", "payment:execute:under-500", "travel:book"],
        &aud,
        o,
    )
    .await
    .unwrap();
    assert_eq!(
        s.scopes().to_string(),
        "travel:search payment:execute:under-100"
    );

    // The enrollment code is single use.
    let other_home = tempfile::tempdir().unwrap();
    let e = authenticate_with_proton(
        &["travel:search"],
        &aud,
        headless(&broker, other_home.path(), Some(code)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "invalid_grant", "{e}");

    // A required scope the stored grant lacks is an error naming it.
    let e = authenticate_with_proton(&["travel:book"], &aud, headless(&broker, home.path(), None))
        .await
        .unwrap_err();
    match &e {
        Error::ScopeNotGranted { missing, granted } => {
            assert_eq!(missing, "travel:book");
            assert!(granted.contains("travel:search"), "{granted}");
        }
        other => panic!("expected scope_not_granted, got {other:?}"),
    }

    // The API enforces the narrowed limit on amounts.
    let v = verifier_for(&broker, &aud, false).await;
    let base = api.serve(v).await;
    let s = authenticate_with_proton(
        &["payment:execute:under-100"],
        &aud,
        headless(&broker, home.path(), None),
    )
    .await
    .unwrap();
    let ok = s
        .send("POST", &api_url(&base, "/pay?amount=80"), &[], None, None)
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let refused = s
        .send("POST", &api_url(&base, "/pay?amount=120"), &[], None, None)
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let www = refused.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(www.contains("insufficient_scope"), "{www}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_across_short_lifetimes_and_nonce_challenge() {
    let broker = Broker::with_args(&["--access-ttl", "3s"]);
    let api = Api::bind().await;
    let (s, _home) = enrolled_session(&broker, &api.aud).await;
    // The API demands server nonces: the first request is challenged and the
    // session answers transparently.
    let v = verifier_for(&broker, &api.aud, true).await;
    let base = api.serve(v).await;
    let url = api_url(&base, "/flights");
    let first_exp = s.expires_at();
    // Three lifetimes: every request must pass, on renewed tokens.
    for _ in 0..9 {
        let r = s.send("GET", &url, &[], None, None).await.unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.headers().get("www-authenticate"));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        s.expires_at() > first_exp,
        "the token was renewed in the background"
    );
    s.close(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_drops_and_resumes_and_broker_restarts_under_a_session() {
    let mut broker = Broker::start(&[]);
    let api = Api::bind().await;
    let aud = api.aud.clone();
    let (s, _home) = enrolled_session(&broker, &aud).await;
    let v = verifier_for(&broker, &aud, false).await;
    let base = api.serve(v.clone()).await;
    let url = api_url(&base, "/flights");
    assert_eq!(
        s.send("GET", &url, &[], None, None).await.unwrap().status(),
        200
    );

    // The broker goes away; the owner revokes from the CLI meanwhile (it needs
    // no running server); the broker comes back; the verifier resumes the feed.
    broker.kill();
    let grants = broker.cli_ok(&["grant", "list"]);
    let gid = grants
        .as_array()
        .and_then(|a| a.first())
        .and_then(|g| g["grant_id"].as_str())
        .unwrap_or_else(|| panic!("no grant id in {grants}"))
        .to_owned();
    broker.cli_ok(&["revoke", &gid]);
    broker.restart();
    let cut = eventually(15, async || {
        match s.send("GET", &url, &[], None, None).await {
            Err(e) => e.code() == "invalid_grant",
            Ok(r) => r.status() == 401,
        }
    })
    .await;
    assert!(
        cut,
        "the revocation made while the feed was down reached the verifier"
    );

    // A new grant works against the restarted broker, and renewal too.
    let home2 = tempfile::tempdir().unwrap();
    let code = enroll(&broker, &aud, "travel:search", "1h");
    let s2 = authenticate_with_proton(
        &["travel:search"],
        &aud,
        headless(&broker, home2.path(), Some(code)),
    )
    .await
    .unwrap();
    broker.restart();
    s2.renew().await.unwrap();
    assert_eq!(
        s2.send("GET", &url, &[], None, None)
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifier_rejections_over_http_carry_the_right_challenge() {
    let broker = Broker::start(&[]);
    let api = Api::bind().await;
    let (s, _home) = enrolled_session(&broker, &api.aud).await;
    let v = verifier_for(&broker, &api.aud, false).await;
    let base = api.serve(v).await;
    let url = api_url(&base, "/flights");
    let http = reqwest::Client::new();
    let hdrs = s.headers("GET", &url).unwrap();
    let token = hdrs[0].1.trim_start_matches("DPoP ").to_owned();
    let proof = hdrs[1].1.clone();

    let send = async |h: Vec<(&str, String)>| get_with(&http, &url, &h).await;
    // No credentials: a bare challenge listing the algorithms.
    let (st, www) = send(vec![]).await;
    assert_eq!(st, 401);
    assert!(
        www.starts_with("DPoP") && www.contains("algs=") && !www.contains("error="),
        "{www}"
    );
    // A DPoP-bound token as Bearer.
    let (st, www) = send(vec![("authorization", format!("Bearer {token}"))]).await;
    assert_eq!(st, 401);
    assert!(www.contains("error=\"invalid_token\""), "{www}");
    // No proof.
    let (st, www) = send(vec![("authorization", format!("DPoP {token}"))]).await;
    assert_eq!(st, 401);
    assert!(www.contains("error=\"invalid_dpop_proof\""), "{www}");
    // A good request, then the same proof again: replay.
    let good = vec![
        ("authorization", format!("DPoP {token}")),
        ("dpop", proof.clone()),
    ];
    assert_eq!(send(good.clone()).await.0, 200);
    let (st, www) = send(good).await;
    assert_eq!(st, 401);
    assert!(www.contains("invalid_dpop_proof"), "{www}");
    // A proof for another URL.
    let other = s.headers("GET", &api_url(&base, "/other")).unwrap();
    let (st, www) = send(vec![
        ("authorization", format!("DPoP {token}")),
        ("dpop", other[1].1.clone()),
    ])
    .await;
    assert_eq!(st, 401);
    assert!(www.contains("invalid_dpop_proof"), "{www}");
    // A tampered token.
    let mut bad = token.clone();
    bad.insert(bad.len() / 2, 'A');
    let h = s.headers("GET", &url).unwrap();
    let (st, www) = send(vec![
        ("authorization", format!("DPoP {bad}")),
        ("dpop", h[1].1.clone()),
    ])
    .await;
    assert_eq!(st, 401);
    assert!(www.contains("invalid_token"), "{www}");
    // Two proofs.
    let h1 = s.headers("GET", &url).unwrap();
    let h2 = s.headers("GET", &url).unwrap();
    let r = http
        .get(&url)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", h1[1].1.clone())
        .header("dpop", h2[1].1.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Denied scope: 403 with insufficient_scope.
    let s_pay = s
        .send("POST", &api_url(&base, "/pay?amount=1"), &[], None, None)
        .await
        .unwrap();
    assert_eq!(s_pay.status(), 403);
    let www = s_pay.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        www.contains("error=\"insufficient_scope\"") && www.contains("scope=\"payment:execute\""),
        "{www}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_goes_only_to_urls_under_the_audience() {
    let broker = Broker::start(&[]);
    let api = Api::bind().await;
    let (s, _home) = enrolled_session(&broker, &api.aud).await;
    let token = s.headers("GET", &api_url(&api.base, "/flights")).unwrap()[0]
        .1
        .trim_start_matches("DPoP ")
        .to_owned();
    // A listener standing for anywhere else: it must never be contacted.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_at = trap.local_addr().unwrap().to_string();
    let contacted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let c = contacted.clone();
    tokio::spawn(async move {
        while trap.accept().await.is_ok() {
            c.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let host_port = api.base.trim_start_matches("http://").to_owned();
    let elsewhere = [
        format!("http://{trap_at}/travel/flights"),
        format!(
            "http://localhost:{}/travel/flights",
            trap_at.rsplit(':').next().unwrap()
        ),
        format!("https://{host_port}/travel/flights"),
        format!("http://{host_port}@{trap_at}/travel/flights"),
        format!("{}/admin", api.base),
        format!("{}/travelx", api.base),
        format!("{}/travel/../admin", api.base),
        format!("{}/travel/%2e%2e/admin", api.base),
        format!("{}/travel/..%2fadmin", api.base),
        format!("{}/travel/..%5Cadmin", api.base),
        "/travel/flights".to_owned(),
    ];
    for url in &elsewhere {
        let refusals = [
            s.headers("GET", url).unwrap_err(),
            s.headers_with_reason("GET", url, Some("why")).unwrap_err(),
            s.send("GET", url, &[], None, None).await.unwrap_err(),
        ];
        for e in refusals {
            let Error::InvalidRequest(m) = &e else {
                panic!("{url}: {e:?}")
            };
            assert!(m.contains(&api.aud), "{url}: {m}");
            assert!(!m.contains(&token) && !m.contains("admin"), "{url}: {m}");
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !contacted.load(std::sync::atomic::Ordering::SeqCst),
        "a refused request reached the network"
    );
    // Under the audience, requests go through.
    let v = verifier_for(&broker, &api.aud, false).await;
    let base = api.serve(v).await;
    let r = s
        .send("GET", &api_url(&base, "/flights"), &[], None, None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.close(false).await.unwrap();
}

/// The bearer part of a session's Authorization header.
fn token_of(s: &Session, url: &str) -> String {
    s.headers("GET", url)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.split_once(' ').unwrap().1.to_owned())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_one_process_share_a_token_and_the_last_close_revokes_it() {
    let broker = Broker::start(&[]);
    let api = Api::bind().await;
    let aud = api.aud.clone();
    let (first, home) = enrolled_session(&broker, &aud).await;
    let v = verifier_for(&broker, &aud, false).await;
    let base = api.serve(v.clone()).await;
    let url = api_url(&base, "/flights");
    let exchanges = || {
        audit_records(&broker)
            .iter()
            .filter(|r| r["event"] == "exchange")
            .count()
    };
    let before = exchanges();
    assert!(before > 0, "the first session's exchange is audited");

    // Two more sessions for the same grant, audience and scopes: no round
    // trip to the broker, the same live token.
    let second = authenticate_with_proton(
        &["travel:search"],
        &aud,
        headless(&broker, home.path(), None),
    )
    .await
    .unwrap();
    let third = authenticate_with_proton(
        &["travel:search"],
        &aud,
        headless(&broker, home.path(), None),
    )
    .await
    .unwrap();
    assert_eq!(token_of(&second, &url), token_of(&first, &url));
    assert_eq!(token_of(&third, &url), token_of(&first, &url));
    assert_eq!(exchanges(), before, "no exchange at the broker");

    // Closing two of them does not cut off the one still running ...
    let held = first.headers("GET", &url).unwrap();
    first.close(false).await.unwrap();
    second.close(false).await.unwrap();
    let r = third.send("GET", &url, &[], None, None).await.unwrap();
    assert_eq!(r.status(), 200);
    // ... and closing the last one revokes the token.
    third.close(false).await.unwrap();
    let rejected = eventually(5, async || {
        v.verify("GET", &url, &held)
            .await
            .is_err_and(|r| r.error.reason() == Some(Reason::Revoked))
    })
    .await;
    assert!(rejected, "the last close revoked the shared token");

    // A new session after that exchanges again.
    let fourth = authenticate_with_proton(
        &["travel:search"],
        &aud,
        headless(&broker, home.path(), None),
    )
    .await
    .unwrap();
    assert_ne!(token_of(&fourth, &url), token_of_headers(&held));
    fourth.close(false).await.unwrap();
}

fn token_of_headers(h: &[(String, String)]) -> String {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.split_once(' ').unwrap().1.to_owned())
        .unwrap()
}
