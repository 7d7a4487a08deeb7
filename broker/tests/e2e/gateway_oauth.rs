//! OAuth upstreams end to end, against the real local OAuth provider of
//! `oauth_provider.rs`: `upstream connect` with PKCE, `state` and `iss`; the
//! gateway injecting the provider's access token; refreshes (rotated,
//! refused, concurrent); `upstream disconnect` revoking at the provider.
//! And the template catalog from the command line.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use protonpass_agent::AgentKey;
use serde_json::Value;

use crate::gateway::{json, no_redirects, signed};
use crate::oauth_provider::{CLIENT_SECRET, Provider};
use protonpass_e2e::{Broker, audit_records, broker_bin, key};

/// `upstream add` (a file or `--template`) with `stdin` as standard input.
pub fn add(b: &Broker, args: &[&str], stdin: Option<&str>) -> (i32, Value) {
    let args: Vec<&str> = ["upstream", "add"].iter().chain(args).copied().collect();
    b.cli_with_stdin(&args, stdin.unwrap_or_default())
}

pub fn add_oauth(b: &Broker, p: &Provider, name: &str, issuer: &str) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), p.rules(name, issuer)).unwrap();
    let (code, v) = add(
        b,
        &[f.path().to_str().unwrap(), "--secret-stdin"],
        Some(&format!("{CLIENT_SECRET}\n")),
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["credential"], "oauth2 header authorization", "{v}");
}

/// `upstream connect NAME --json`, started: the child and its first line.
fn start_connect(b: &Broker, name: &str) -> (Child, BufReader<std::process::ChildStdout>, Value) {
    let mut c = Command::new(broker_bin())
        .args(["--data", b.data.to_str().unwrap(), "--json"])
        .args(["upstream", "connect", name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line}"));
    (c, out, v)
}

/// What the owner's browser does: the provider consents and redirects; the
/// answer is the callback URL on the broker.
pub async fn consent(authorize_url: &str) -> String {
    let r = no_redirects().get(authorize_url).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    r.headers()["location"].to_str().unwrap().to_owned()
}

pub async fn get_page(url: &str) -> (u16, String) {
    let r = no_redirects().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Connect `name` all the way; returns the connection id.
async fn connect(b: &Broker, name: &str) -> String {
    let (child, out, v) = start_connect(b, name);
    let back = consent(v["authorize_url"].as_str().unwrap()).await;
    let done = finish_connect((child, out), &back).await;
    assert_eq!(done["connected"], true, "{done}");
    done["connection"].as_str().unwrap().to_owned()
}

/// The provider's redirect `back` followed to the broker: the `upstream
/// connect` command ends well, with what it printed last.
async fn finish_connect(
    (mut child, mut out): (Child, BufReader<std::process::ChildStdout>),
    back: &str,
) -> Value {
    let (status, body) = get_page(back).await;
    assert_eq!(status, 200, "{body}");
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(child.wait().unwrap().success());
    serde_json::from_str(&line).unwrap()
}

/// An agent of the default owner enrolled for `name`'s audience.
pub async fn agent(b: &Broker, name: &str, scope: &str) -> (AgentKey, String) {
    let g = b.create_grant_on(
        "mail-reader",
        scope,
        &format!("https://mail.example/{name}"),
        &[],
    );
    let k = key();
    let r = b.redeem(&k, g["enrollment_code"].as_str().unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    (k, r.s("access_token"))
}

/// A signed call through the gateway (with the nonce round if needed).
pub async fn call(b: &Broker, a: &(AgentKey, String), method: &str, path: &str) -> (u16, Value) {
    let url = format!("{}/gateway{path}", b.url);
    let reason = "reading the owner's mail";
    let r = signed(&a.0, &a.1, (method, &url), reason, None, &[]).await;
    json(r.unwrap()).await
}

fn events(b: &Broker, event: &str) -> Vec<Value> {
    audit_records(b)
        .into_iter()
        .filter(|r| r["event"] == event)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connect_with_pkce_and_state_then_read_mail_but_never_send() {
    let p = Provider::start().await;
    let b = Broker::start(&[]);
    add_oauth(&b, &p, "mail", &p.url());
    // Not connected yet: a clear 502.
    let a = agent(&b, "mail", "mail:read").await;
    let (s, v) = call(&b, &a, "GET", "/mail/messages").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (502, Some("upstream_not_connected")),
        "{v}"
    );

    let (child, out, started) = start_connect(&b, "mail");
    let auth = url::Url::parse(started["authorize_url"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = auth.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["redirect_uri"], format!("{}/upstreams/callback", b.url));
    assert_eq!(q["scope"], "mail.read");
    assert!(q["state"].len() >= 43 && q["code_challenge"].len() == 43);
    let back = consent(auth.as_str()).await;
    // A wrong state is refused and connects nothing.
    let forged = back.replace(&format!("state={}", q["state"]), "state=forged");
    assert_ne!(forged, back);
    let (status, _) = get_page(&forged).await;
    assert_eq!(status, 400);
    let (s, _) = call(&b, &a, "GET", "/mail/messages").await;
    assert_eq!(s, 502);
    // The real answer connects; the CLI sees it.
    let done = finish_connect((child, out), &back).await;
    let conn = done["connection"].as_str().unwrap().to_owned();
    // The state is single use.
    let (status, _) = get_page(&back).await;
    assert_eq!(status, 400);

    let (s, v) = call(&b, &a, "GET", "/mail/messages").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["messages"][0]["subject"], "Your flight to Lisbon");
    // Sending needs mail:send: refused by the gateway, the provider untouched.
    let before = p.with(|s| s.mail_calls);
    let (s, v) = call(&b, &a, "POST", "/mail/send").await;
    assert_eq!((s, v["error"].as_str()), (403, Some("insufficient_scope")));
    assert_eq!(p.with(|s| s.mail_calls), before);

    let st = b.cli_ok(&["upstream", "connection", "mail"]);
    assert_eq!(
        (st["status"].as_str(), st["connection"].as_str()),
        (Some("connected"), Some(conn.as_str()))
    );
    // The audit names the connection of each call, and holds no token.
    let calls = events(&b, "gateway");
    assert!(
        calls
            .iter()
            .any(|r| r["detail"]["status"] == 200 && r["detail"]["connection"] == conn.as_str()),
        "{calls:?}"
    );
    let all = serde_json::to_string(&audit_records(&b)).unwrap();
    for t in p.with(|s| s.refresh_tokens.clone()) {
        assert!(!all.contains(&t));
    }
    assert!(!all.contains(CLIENT_SECRET));
    // No file of the data directory (database, WAL, keys, logs) holds a
    // token or the client secret: they are sealed.
    let mut secrets = p.all_tokens();
    secrets.push(CLIENT_SECRET.to_owned());
    assert!(secrets.len() >= 3);
    assert_nothing_in(&b.data, &secrets);
}

fn assert_nothing_in(dir: &std::path::Path, secrets: &[String]) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            assert_nothing_in(&p, secrets);
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        for s in secrets {
            let found = bytes.windows(s.len()).any(|w| w == s.as_bytes());
            assert!(!found, "a token or secret is in {}", p.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answer_from_another_issuer_is_refused() {
    let p = Provider::start().await;
    let b = Broker::start(&[]);
    add_oauth(&b, &p, "mail", "https://accounts.other.example");
    let (mut child, _out, started) = start_connect(&b, "mail");
    let back = consent(started["authorize_url"].as_str().unwrap()).await;
    assert!(back.contains("iss="));
    let (status, body) = get_page(&back).await;
    assert_eq!(status, 400, "{body}");
    let failed = events(&b, "upstream_connect_failed");
    assert_eq!(failed[0]["detail"]["error"], "iss_mismatch", "{failed:?}");
    child.kill().unwrap();
    let _ = child.wait();
    let st = b.cli_ok(&["upstream", "connection", "mail"]);
    assert_eq!(st["status"], "not_connected");

    // A provider that leaves iss out: refused when the rules require it.
    p.with(|s| s.omit_iss = true);
    let strict = p
        .rules("strict", &p.url())
        .replace("client_id =", "require_iss = true\nclient_id =");
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), strict).unwrap();
    let (code, v) = add(
        &b,
        &[f.path().to_str().unwrap(), "--secret-stdin"],
        Some(&format!("{CLIENT_SECRET}\n")),
    );
    assert_eq!(code, 0, "{v}");
    let (mut child, _out, started) = start_connect(&b, "strict");
    let back = consent(started["authorize_url"].as_str().unwrap()).await;
    assert!(!back.contains("iss="));
    let (status, _) = get_page(&back).await;
    assert_eq!(status, 400);
    let failed = events(&b, "upstream_connect_failed");
    assert!(
        failed.iter().any(|r| r["detail"]["error"] == "iss_missing"),
        "{failed:?}"
    );
    child.kill().unwrap();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_refresh_once_and_rotated_tokens_are_kept() {
    let p = Provider::start().await;
    p.with(|s| {
        s.rotate = true;
        s.code_expires_in = 1; // already inside the refresh margin
        s.refresh_expires_in = 34; // fresh for a few seconds only
        s.refresh_delay_ms = 300;
    });
    let b = Broker::start(&[]);
    add_oauth(&b, &p, "mail", &p.url());
    connect(&b, "mail").await;
    let a = agent(&b, "mail", "mail:read").await;
    let results =
        futures_util::future::join_all((0..12).map(|_| call(&b, &a, "GET", "/mail/messages/m1")))
            .await;
    for (s, v) in &results {
        assert_eq!(*s, 200, "{v}");
    }
    assert_eq!(
        p.with(|s| s.refreshes),
        1,
        "exactly one refresh reached the provider"
    );
    // Once stale again, the next refresh must use the rotated refresh token
    // (the provider refuses the first one now).
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let (s, v) = call(&b, &a, "GET", "/mail/messages").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(p.with(|s| s.refreshes), 2);
    assert_eq!(p.with(|s| s.refresh_tokens.len()), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_refresh_breaks_the_connection_until_reconnected() {
    let p = Provider::start().await;
    p.with(|s| s.code_expires_in = 1);
    let b = Broker::start(&[]);
    add_oauth(&b, &p, "mail", &p.url());
    let first = connect(&b, "mail").await;
    let a = agent(&b, "mail", "mail:read").await;
    p.with(|s| s.refuse = true);
    let (s, v) = call(&b, &a, "GET", "/mail/messages").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (502, Some("upstream_connection_broken")),
        "{v}"
    );
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("reconnect")
    );
    // Broken stays broken without asking the provider again.
    let (s, _) = call(&b, &a, "GET", "/mail/messages").await;
    assert_eq!(s, 502);
    assert_eq!(p.with(|s| s.refreshes), 1);
    let st = b.cli_ok(&["upstream", "connection", "mail"]);
    assert_eq!(st["status"], "broken");
    let broken = events(&b, "upstream_connection_broken");
    assert_eq!(
        broken[0]["detail"]["connection"],
        first.as_str(),
        "{broken:?}"
    );
    assert_eq!(broken[0]["detail"]["error"], "invalid_grant");
    // Reconnecting makes a new connection that works.
    p.with(|s| {
        s.refuse = false;
        s.code_expires_in = 3600;
    });
    let second = connect(&b, "mail").await;
    assert_ne!(first, second);
    let (s, v) = call(&b, &a, "GET", "/mail/messages").await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disconnect_revokes_at_the_provider_and_cuts_agents_off() {
    let p = Provider::start().await;
    let b = Broker::start(&[]);
    add_oauth(&b, &p, "mail", &p.url());
    connect(&b, "mail").await;
    let a = agent(&b, "mail", "mail:read").await;
    let (s, _) = call(&b, &a, "GET", "/mail/messages").await;
    assert_eq!(s, 200);
    let v = b.cli_ok(&["upstream", "disconnect", "mail"]);
    assert_eq!(
        (v["disconnected"].as_bool(), v["revoked"].as_bool()),
        (Some(true), Some(true)),
        "{v}"
    );
    let refresh = p.with(|s| s.refresh_tokens[0].clone());
    assert_eq!(p.with(|s| s.revoked.clone()), vec![refresh]);
    let (s, v) = call(&b, &a, "GET", "/mail/messages").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (502, Some("upstream_not_connected"))
    );
    assert_eq!(b.cli(&["upstream", "disconnect", "mail"]).0, 1);
    assert_eq!(
        events(&b, "upstream_disconnect")[0]["detail"]["revoked"],
        true
    );
}

#[test]
fn the_template_catalog_from_the_command_line() {
    let b = Broker::start(&[]);
    let list = b.cli_ok(&["upstream", "templates"]);
    let list = list.as_array().unwrap();
    assert!(list.len() >= 20);
    for t in list {
        assert!(t["name"].is_string() && t["description"].is_string(), "{t}");
        assert!(
            ["oauth2", "header", "query", "basic"].contains(&t["credential"].as_str().unwrap())
        );
        assert!(!t["scopes"].as_array().unwrap().is_empty(), "{t}");
    }
    let found = b.cli_ok(&["upstream", "templates", "--search", "calendar"]);
    assert!(
        found
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "google-calendar")
    );
    // A static-key template needs its secret; an OAuth one only a client id.
    assert_ne!(add(&b, &["--template", "stripe"], None).0, 0);
    let (code, v) = add(
        &b,
        &["--template", "stripe", "--secret-stdin"],
        Some("sk_test_123\n"),
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["gateway_url"], format!("{}/gateway/stripe", b.url));
    let (code, v) = add(
        &b,
        &[
            "--template",
            "gmail",
            "--name",
            "my-mail",
            "--client-id",
            "42.apps.googleusercontent.com",
        ],
        None,
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["credential"], "oauth2 header authorization");
    let (code, v) = add(
        &b,
        &[
            "--template",
            "jira",
            "--base-url",
            "https://acme.atlassian.net",
            "--secret-stdin",
        ],
        Some("token\n"),
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["base_url"], "https://acme.atlassian.net");
    assert_ne!(
        add(
            &b,
            &["--template", "no-such-api", "--secret-stdin"],
            Some("x\n")
        )
        .0,
        0
    );
    // An exported upstream is a template again: it parses, with its catalog.
    let e = b.cli_ok(&["upstream", "export", "my-mail"]);
    let text = e["rules"].as_str().unwrap();
    assert!(
        text.contains("[credential.oauth2]") && text.contains("[[scope]]"),
        "{text}"
    );
    assert!(text.contains("42.apps.googleusercontent.com"));
    // Connecting a static-key upstream makes no sense.
    assert_ne!(b.cli(&["upstream", "connect", "stripe", "--no-wait"]).0, 0);
}
