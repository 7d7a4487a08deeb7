//! A Rust agent through the broker's gateway with the SDK as it is: a session
//! for the upstream's audience sends to the gateway URL with `Session::send`
//! (the session signs for the URL it is given and answers the nonce
//! challenge), and the upstream receives the owner's credential, never the
//! agent's token. SDK routing (the upstream's real URL rewritten to the
//! gateway) is not there yet: the agent names the gateway URL itself.
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
        .arg(broker.data())
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

    let g = broker.cli_json(&[
        "grant",
        "create",
        "--agent",
        "coder",
        "--scope",
        "repo:read:proj",
        "--audience",
        AUD,
    ]);
    let home = tempfile::tempdir().unwrap();
    let opts = AuthOptions {
        broker: Some(broker.issuer.clone()),
        agent_name: Some("coder".into()),
        enrollment_code: Some(g["enrollment_code"].as_str().unwrap().to_owned()),
        store: Some(StoreKind::File(home.path().to_path_buf())),
        prompt: Some(Arc::new(|_: &DevicePrompt| panic!("no prompt expected"))),
        ..AuthOptions::default()
    };
    let session = authenticate_with_proton(&["repo:read:proj"], AUD, opts)
        .await
        .unwrap();

    let base = format!("{}/gateway/code-host", broker.issuer);
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
}
