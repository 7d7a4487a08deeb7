//! The owner's command line as people and scripts use it: what it lists, what
//! it refuses, and what it says.

use protonpass_agent::{Clock, SystemClock};

use crate::device::{ask_signed, poll};
use protonpass_e2e::{API, Broker, Reply, grant_create_args, key};

/// A device request signed by `k`, with the agent's `reason` in its proof.
async fn ask(b: &Broker, k: &protonpass_agent::AgentKey, reason: Option<&str>) -> Reply {
    ask_signed(b, k, "travel:book travel:search", reason).await
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
    let out = std::process::Command::new(protonpass_e2e::broker_bin())
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
    let out = std::process::Command::new(protonpass_e2e::broker_bin())
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
        let v = protonpass_e2e::serve_refused(dir.path(), &["--issuer", bad], &[]);
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
            grant_create_args("bot", "x:read", bad),
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
        let out = std::process::Command::new(protonpass_e2e::broker_bin())
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
    if protonpass_e2e::on_postgres() {
        return; // replicas share a PostgreSQL store: no serve lock
    }
    let mut b = Broker::start(&[]);
    let v = protonpass_e2e::serve_refused(&b.data, &[], &[]);
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
    let out = std::process::Command::new(protonpass_e2e::broker_bin())
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

#[tokio::test]
async fn resource_servers_are_listed_shown_removed_and_registered_once() {
    let b = Broker::start(&[]);
    assert_eq!(b.cli_ok(&["resource", "list"]), serde_json::json!([]));
    let rs = b.resource(API, None);
    let (code, v) = b.cli(&["resource", "add", API]);
    assert_eq!(code, 1, "{v}");
    let d = v["error_description"].as_str().unwrap();
    assert!(d.contains("already registered") && d.contains(&rs.0), "{d}");
    let list = b.cli_ok(&["resource", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["client_id"], rs.0.as_str());
    assert!(list[0]["created_at"].is_i64());
    assert!(list[0].get("secret_hash").is_none(), "{list}");
    assert_eq!(
        b.cli_ok(&["resource", "show", API])["client_id"],
        rs.0.as_str()
    );
    assert_eq!(b.cli_ok(&["resource", "show", &rs.0])["audience"], API);
    // Another owner neither sees nor removes it.
    b.add_owners(&["bob"]);
    assert_eq!(
        b.cli_ok(&["resource", "list", "--owner", "bob"]),
        serde_json::json!([])
    );
    let (code, _) = b.cli(&["resource", "remove", &rs.0, "--owner", "bob"]);
    assert_eq!(code, 1);
    let t = b.enroll(&key(), "bot", "travel:book", &[]).await;
    assert_eq!(b.introspect(&rs, &t.s("access_token")).await.status, 200);
    b.cli_ok(&["resource", "remove", &rs.0]);
    // Its credential stops working at once.
    let r = b.introspect(&rs, &t.s("access_token")).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let (code, _) = b.cli(&["resource", "show", &rs.0]);
    assert_eq!(code, 1);
    // Registered again: a new credential.
    let again = b.resource(API, None);
    assert_ne!(again.0, rs.0);
}

#[tokio::test]
async fn revoke_says_what_changed() {
    let b = Broker::start(&[]);
    let (code, v) = b.cli(&["revoke", "g_unknown"]);
    assert_eq!(code, 1, "{v}");
    let (code, v) = b.cli(&["revoke", "--agent", "nobody"]);
    assert_eq!(code, 1, "{v}");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("nothing to revoke")
    );
    // An enrolled agent holds an access and a refresh token.
    let t = b.enroll(&key(), "bot", "travel:book", &[]).await;
    let gid = t.s("grant_id");
    let v = b.cli_ok(&["revoke", &gid]);
    assert_eq!(v["grants"], serde_json::json!([gid]));
    assert_eq!(v["covered_tokens"], 2, "{v}");
    // Again: nothing changes, and it says so.
    let v = b.cli_ok(&["revoke", &gid]);
    assert_eq!(v["grants"], serde_json::json!([]));
    assert_eq!(v["already_revoked"], serde_json::json!([gid]));
    let out = std::process::Command::new(protonpass_e2e::broker_bin())
        .args([
            "--data",
            b.data.to_str().unwrap(),
            "revoke",
            "--agent",
            "bot",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Already revoked"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn keys_and_owners_are_listed() {
    let b = Broker::start(&[]);
    let first = b.cli_ok(&["keys", "list"]);
    assert_eq!(first.as_array().unwrap().len(), 1, "{first}");
    assert_eq!(first[0]["status"], "current");
    let new = b.cli_ok(&["keys", "rotate"])["kid"].clone();
    let keys = b.cli_ok(&["keys", "list"]);
    let current: Vec<_> = keys
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["status"] == "current")
        .collect();
    assert_eq!(current.len(), 1, "{keys}");
    assert_eq!(current[0]["kid"], new);
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == first[0]["kid"]
                && k["status"] == "retired"
                && k["drop_after"].is_i64())
    );

    b.add_owners(&["bob"]);
    let owners = b.cli_ok(&["owner", "list"]);
    let names: Vec<_> = owners
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob", "default"]);
    assert!(owners[0]["created_at"].is_i64());
}

/// Kills the child process when dropped, also when an assertion fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn audit_tail_follows_new_records() {
    use std::io::BufRead as _;
    let b = Broker::start(&[]);
    let grant = |agent: &str| {
        b.create_grant(agent, "x:read", &[]);
    };
    grant("first");
    let mut child = KillOnDrop(
        std::process::Command::new(protonpass_e2e::broker_bin())
            .args([
                "--data",
                b.data.to_str().unwrap(),
                "--json",
                "audit",
                "tail",
                "-n",
                "1",
                "-f",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufReader::new(child.0.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        while let Some(Ok(l)) = lines.next() {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let next = || -> serde_json::Value {
        let l = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a record within 10 s");
        serde_json::from_str(&l).unwrap()
    };
    // The last record first, then the new ones as they are written.
    assert_eq!(next()["detail"]["agent"], "first");
    grant("second");
    let v = next();
    assert_eq!(v["event"], "grant_create", "{v}");
    // The detail is an object, not JSON inside a string; times are numbers.
    assert_eq!(v["detail"]["agent"], "second", "{v}");
    assert!(v["ts"].is_i64());
}

/// Run the CLI without --json; returns stdout.
fn human(b: &Broker, args: &[&str]) -> String {
    let out = std::process::Command::new(protonpass_e2e::broker_bin())
        .args(["--data", b.data.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn people_read_dates_and_durations_and_what_each_time_is() {
    let b = Broker::start(&[]);
    let mut args = grant_create_args("bot", "x:read", API);
    args.extend_from_slice(&["--ttl", "1d"]);
    let text = human(&b, &args);
    // The code's expiry and the grant's lifetime are two different times.
    assert!(text.contains("lasts 1 d from redemption"), "{text}");
    assert!(text.contains("the code expires at 20"), "{text}");
    assert!(text.contains(" UTC (in 15 min)"), "{text}");
    let text = human(&b, &["grant", "list"]);
    assert!(text.contains("waiting for enrollment; lasts 1 d"), "{text}");
    assert!(
        text.contains("created 20") && text.contains(" UTC"),
        "{text}"
    );
    // JSON keeps numbers.
    let v = b.cli_ok(&["grant", "list"]);
    assert!(
        v[0]["created_at"].is_i64() && v[0]["expires_at"].is_i64(),
        "{v}"
    );

    let d = crate::device::start_device(&b, "travel:book", Some(API)).await;
    let text = human(&b, &["approve", &d.s("user_code"), "--ttl", "1h"]);
    assert!(
        text.contains("the grant lasts 1 h from when the agent collects it"),
        "{text}"
    );
    let text = human(&b, &["audit", "tail", "-n", "1"]);
    assert!(text.contains(" UTC "), "{text}");
}

#[test]
fn each_commands_help_shows_its_own_options_first_and_server_options_only_for_serve() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(protonpass_e2e::broker_bin())
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let h = help(&["grant", "create"]);
    let own = h.find("--agent").unwrap();
    assert!(own < h.find("--data").unwrap(), "{h}");
    assert!(h.contains("[default: 1h]"), "{h}");
    assert!(!h.contains("--addr") && !h.contains("--device-ttl"), "{h}");
    let h = help(&["approve"]);
    assert!(
        h.find("--scope").unwrap() < h.find("--owner").unwrap(),
        "{h}"
    );
    assert!(!h.contains("--trusted-proxy"), "{h}");
    let h = help(&["serve"]);
    assert!(
        h.contains("--addr <ADDR>") && h.contains("[default: 127.0.0.1:8080]"),
        "{h}"
    );
    assert!(
        h.contains("--device-max-pending") && h.contains("[default: 5]"),
        "{h}"
    );
    // Hidden is not gone: server settings still apply to every command.
    let h = help(&["audit", "tail"]);
    assert!(h.contains("[default: 20]"), "{h}");
}

#[test]
fn output_to_a_reader_that_went_away_ends_quietly() {
    // `protonpass-broker ... | head`: the reader is gone before the command
    // writes; it must end with SIGPIPE's status, not a panic.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(protonpass_e2e::broker_bin())
        .args(["upstream", "templates"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
