//! The owner's command line as people and scripts use it: what it lists, what
//! it refuses, and what it says.

use protonpass_agent::{Clock, OsRandom, ProofInput, SystemClock, create_proof};

use crate::device::poll;
use crate::kit::{API, Broker, Reply, key};

/// A device request signed by `k`, with the agent's `reason` in its proof.
async fn ask(b: &Broker, k: &protonpass_agent::AgentKey, reason: Option<&str>) -> Reply {
    let url = format!("{}/oauth/device_authorization", b.url);
    let proof = create_proof(
        k,
        &ProofInput {
            method: "POST",
            url: &url,
            reason,
            ..Default::default()
        },
        SystemClock.now(),
        &OsRandom,
    )
    .unwrap();
    let r = b
        .post_form(
            "/oauth/device_authorization",
            &[
                ("client_id", "travel-bot"),
                ("scope", "travel:book travel:search"),
                ("resource", API),
            ],
            &[("DPoP", proof)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

#[tokio::test]
async fn pending_lists_what_waits_and_deny_ends_the_wait_at_once() {
    let b = Broker::start(&[]);
    assert_eq!(b.cli_ok(&["pending"]), serde_json::json!([]));
    let k = key();
    let d = ask(&b, &k, Some("book the Lisbon trip")).await;
    let now = SystemClock.now();
    let v = b.cli_ok(&["pending"]);
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    let w = &list[0];
    assert_eq!(w["user_code"], d.s("user_code"));
    assert_eq!(w["agent"], "travel-bot");
    assert_eq!(
        w["scopes"],
        serde_json::json!(["travel:book", "travel:search"])
    );
    assert_eq!(w["audience"], API);
    assert_eq!(w["reason"], "book the Lisbon trip");
    assert_eq!(w["key_thumbprint"], k.thumbprint());
    let exp = w["expires_at"].as_i64().expect("a number");
    assert!((now + 590..=now + 610).contains(&exp), "{exp} vs {now}");

    // People read the code, the reason marked as the agent's words, and times.
    let out = std::process::Command::new(crate::kit::BIN)
        .args(["--data", b.data.to_str().unwrap(), "pending"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&d.s("user_code")), "{text}");
    assert!(text.contains("the agent's own words"), "{text}");
    assert!(text.contains(" UTC (in "), "{text}");

    // The agent polls at its pace; the owner's denial answers its next poll,
    // without waiting out the interval.
    assert_eq!(
        poll(&b, &k, &d.s("device_code")).await.error(),
        "authorization_pending"
    );
    let v = b.cli_ok(&["deny", &d.s("user_code")]);
    assert_eq!(v["approved"], false);
    let r = poll(&b, &k, &d.s("device_code")).await;
    assert_eq!((r.status, r.error()), (400, "access_denied"));
    assert_eq!(b.cli_ok(&["pending"]), serde_json::json!([]));
}

#[test]
fn pending_on_a_missing_data_directory_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nothing-here");
    let out = std::process::Command::new(crate::kit::BIN)
        .args(["--data", data.to_str().unwrap(), "pending"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no broker data at"), "{err}");
    assert!(!data.exists());
}

#[tokio::test]
async fn issuers_and_audiences_are_absolute_http_urls_without_query_or_fragment() {
    let dir = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .unwrap();
    for bad in [
        "auth.example.com",
        "ftp://auth.example.com",
        "https://auth.example.com/?tenant=1",
        "https://auth.example.com/#top",
        "https://user:pw@auth.example.com",
    ] {
        let v = crate::kit::serve_refused(dir.path(), &["--issuer", bad], &[]);
        assert_eq!(v["error"], "invalid_request", "{bad}: {v}");
        let d = v["error_description"].as_str().unwrap();
        assert!(d.contains("--issuer") && d.contains("http(s) URL"), "{d}");
    }
    let b = Broker::start(&[]);
    for bad in [
        "api.example",
        "https://api.example/?x=1",
        "https://api.example#a",
    ] {
        for args in [
            vec!["resource", "add", bad],
            vec![
                "grant",
                "create",
                "--agent",
                "bot",
                "--scope",
                "x:read",
                "--audience",
                bad,
            ],
            vec!["approve", "BCDF-GHJK", "--audience", bad],
        ] {
            let (code, v) = b.cli(&args);
            assert_eq!(code, 1, "{args:?}");
            assert_eq!(v["error"], "invalid_target", "{args:?}: {v}");
        }
    }
    // Nothing was registered or granted on the way.
    assert_eq!(b.cli_ok(&["grant", "list"]), serde_json::json!([]));
    b.cli_ok(&["resource", "add", "https://api.example/v1"]);
}

#[tokio::test]
async fn an_owner_must_exist_before_a_command_acts_for_it() {
    let b = Broker::start(&[]);
    for args in [
        vec!["grant", "list", "--owner", "bob"],
        vec!["resource", "add", API, "--owner", "bob"],
        vec!["revoke", "--agent", "x", "--owner", "bob"],
        vec!["pending", "--owner", "bob"],
    ] {
        let out = std::process::Command::new(crate::kit::BIN)
            .args(["--data", b.data.to_str().unwrap()])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no owner bob; add it with `protonpass-broker owner add bob`"),
            "{args:?}: {err}"
        );
    }
    // `default` exists on a fresh broker; `owner add` creates the tenant.
    b.cli_ok(&["grant", "list"]);
    b.cli_ok(&["owner", "add", "bob"]);
    assert_eq!(
        b.cli_ok(&["grant", "list", "--owner", "bob"]),
        serde_json::json!([])
    );
}

#[tokio::test]
async fn a_second_server_on_the_same_data_refuses_and_names_the_first() {
    let mut b = Broker::start(&[]);
    let v = crate::kit::serve_refused(&b.data, &[], &[]);
    let d = v["error_description"].as_str().unwrap();
    assert!(d.contains(&format!("process {}", b.pid())), "{d}");
    assert!(d.contains(b.addr()), "{d}");
    // The first one still serves.
    assert_eq!(b.get("/jwks.json").await.status, 200);
    // Once it is gone (even killed), the data directory is free again.
    b.kill();
    let dir = b.take_dir();
    let again = Broker::start_in(dir.path(), &[]);
    assert_eq!(again.get("/jwks.json").await.status, 200);
}

#[tokio::test]
async fn links_use_the_address_the_broker_serves_under() {
    // Before any `serve`, the address is unknown: no made-up link.
    let dir = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .unwrap();
    let out = std::process::Command::new(crate::kit::BIN)
        .args([
            "--data",
            dir.path().to_str().unwrap(),
            "--json",
            "owner",
            "add",
            "alice",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["setup_url"], serde_json::Value::Null, "{v}");
    assert!(
        v["setup_path"]
            .as_str()
            .unwrap()
            .starts_with("/setup?token="),
        "{v}"
    );

    // A broker on a port of its own: the CLI's links point there, also after
    // it stopped, not at the default 127.0.0.1:8080.
    let mut b = Broker::start_in(dir.path(), &[]);
    let v = b.cli_ok(&["owner", "add", "alice"]);
    let link = v["setup_url"].as_str().unwrap().to_owned();
    assert!(
        link.starts_with(&format!("{}/setup?token=", b.url)),
        "{link}"
    );
    let page = b.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    b.kill();
    let v = b.cli_ok(&["owner", "add", "alice"]);
    assert!(v["setup_url"].as_str().unwrap().starts_with(&b.url), "{v}");
}
