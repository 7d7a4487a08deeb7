//! A Rust agent through the broker's gateway: a session for the upstream's
//! audience sends requests for the upstream's real URLs to the gateway URL
//! (the broker's metadata names it), signed for the gateway URL, and the
//! upstream receives the owner's credential, never the agent's token. The
//! real host (`api.code-host.example`) does not resolve: a request that
//! reached it instead of the gateway would fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use protonpass_agent::*;
use protonpass_e2e::{Broker, broker_bin};

const AUD: &str = "https://api.code-host.example";
const SECRET: &str = "ghp_rust-agent-gateway-secret";

/// What the upstream saw: the request target, `x-api-key`, `authorization`.
type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>)>>>;

#[tokio::test]
async fn a_rust_session_calls_an_upstream_through_the_gateway() {
    // The upstream: records the credential and path it got.
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let s = s2.clone();
        async move {
            let h = |n: &str| req.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
            s.lock()
                .unwrap()
                .push((req.uri().to_string(), h("x-api-key"), h("authorization")));
            "from upstream"
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let broker = Broker::start(&[]);
    let rules = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        rules.path(),
        format!(
            "name = \"code-host\"\nbase_url = \"http://127.0.0.1:{port}\"\naudience = \"{AUD}\"\n\
             allow_private_network = true\ncredential = {{ header = \"X-Api-Key\", value = \"{{secret}}\" }}\n\
             [[rule]]\nmethods = [\"GET\"]\npath = \"/repos/{{owner}}/{{repo}}/**\"\nscope = \"repo:read:{{repo}}\"\n"
        ),
    )
    .unwrap();
    let mut add = Command::new(broker_bin())
        .args([
            "upstream",
            "add",
            rules.path().to_str().unwrap(),
            "--secret-stdin",
            "--json",
        ])
        .arg("--data")
        .arg(&broker.data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(SECRET.as_bytes())
        .unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let g = broker.create_grant_on("coder", "repo:read:proj", AUD, &[]);
    let home = tempfile::tempdir().unwrap();
    let opts = AuthOptions {
        broker: Some(broker.url.clone()),
        agent_name: Some("coder".into()),
        enrollment_code: Some(g["enrollment_code"].as_str().unwrap().to_owned()),
        store: Some(StoreKind::File(home.path().to_path_buf())),
        prompt: Some(Arc::new(|_: &DevicePrompt| panic!("no prompt expected"))),
        ..AuthOptions::default()
    };
    let session = authenticate_with_proton(&["repo:read:proj"], AUD, opts)
        .await
        .unwrap();

    let base = format!("{}/gateway/code-host", broker.url);
    let r = session
        .send(
            "GET",
            &format!("{base}/repos/me/proj/commits"),
            &[],
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "from upstream");
    let (target, key, authz) = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(target, "/repos/me/proj/commits");
    assert_eq!(key.as_deref(), Some(SECRET));
    assert_eq!(authz, None, "the agent's token reached the upstream");

    let before = seen.lock().unwrap().len();
    let r = session
        .send("GET", &format!("{base}/repos/me/other"), &[], None, None)
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(seen.lock().unwrap().len(), before);

    // The metadata names the audience and its gateway URL, and nothing else
    // of the upstream.
    let meta = broker
        .get("/.well-known/oauth-authorization-server")
        .await
        .body;
    assert_eq!(
        meta["protonpass_gateways"],
        serde_json::json!([{"audience": AUD, "gateway_url": base}])
    );

    // The upstream's real URLs: routed to the gateway, signed for it.
    let real = format!("{AUD}/repos/me/proj/commits?per_page=2");
    assert_eq!(
        session.route(&real).unwrap(),
        format!("{base}/repos/me/proj/commits?per_page=2")
    );
    let r = session.send("GET", &real, &[], None, None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "from upstream");
    let (target, key, authz) = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(target, "/repos/me/proj/commits?per_page=2");
    assert_eq!(key.as_deref(), Some(SECRET));
    assert_eq!(authz, None);
    let r = session
        .send("GET", &format!("{AUD}/repos/me/other"), &[], None, None)
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The token never goes to the upstream's own host: headers for a real
    // URL are refused (route it first), and URLs outside the audience are
    // neither rewritten nor signed.
    let e = session.headers("GET", &real).unwrap_err();
    assert_eq!(e.code(), "invalid_request", "{e}");
    let h = session
        .headers("GET", &session.route(&real).unwrap())
        .unwrap();
    assert!(h.iter().any(|(k, _)| k == "DPoP"));
    for outside in [
        "https://api.code-host.example.evil.com/repos/me/proj",
        "https://evil.example/repos/me/proj?https://api.code-host.example/",
        "https://api.code-host.example@evil.example/repos/me/proj",
    ] {
        assert_eq!(session.route(outside).unwrap(), outside);
        let e = session
            .send("GET", outside, &[], None, None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "invalid_request", "{outside}: {e}");
    }
    let calls = seen.lock().unwrap().len();
    assert_eq!(calls, before + 1);

    // A second session of the process with the stored grant takes a share of
    // the live token, and with it the route learned when the token came: the
    // real URL still goes to the gateway (the real host does not resolve).
    let again = AuthOptions {
        broker: Some(broker.url.clone()),
        agent_name: Some("coder".into()),
        store: Some(StoreKind::File(home.path().to_path_buf())),
        prompt: Some(Arc::new(|_: &DevicePrompt| panic!("no prompt expected"))),
        ..AuthOptions::default()
    };
    let second = authenticate_with_proton(&["repo:read:proj"], AUD, again)
        .await
        .unwrap();
    assert_eq!(second.route(&real).unwrap(), session.route(&real).unwrap());
    let r = second.send("GET", &real, &[], None, None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(seen.lock().unwrap().len(), calls + 1);
}
