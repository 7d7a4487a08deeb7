//! What owners and agents rely on: the call forwarded with the credential,
//! audited; redirects returned; upstream down or slow; private addresses;
//! revocation; another owner's agent; the CLI; large bodies streamed.

use super::*;
use protonpass_e2e::audit_records;

#[tokio::test]
async fn an_allowed_call_is_forwarded_with_the_credential_and_audited() {
    let (b, up, a) = setup_agent().await;
    let r = call(
        &b,
        &a,
        "GET",
        "/repos/me/proj/commits?per_page=2",
        None,
        &[
            ("cookie", "session=agent"),
            ("x-api-key", "Key forged"),
            ("accept", "application/json"),
        ],
    )
    .await;
    let headers = r.headers().clone();
    let (status, body) = json(r).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/repos/me/proj/commits");
    let seen = up.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, "/repos/me/proj/commits?per_page=2");
    assert_eq!(
        seen.header("x-api-key"),
        Some(format!("Key {SECRET}").as_str())
    );
    assert_eq!(seen.header("accept"), Some("application/json"));
    for h in ["authorization", "dpop", "cookie"] {
        assert_eq!(seen.header(h), None, "{h} was forwarded");
    }
    assert_eq!(
        seen.header("host"),
        Some(format!("127.0.0.1:{}", up.port).as_str())
    );
    for (_, v) in &headers {
        assert!(!v.to_str().unwrap_or("").contains(SECRET));
    }

    // The call is in the hash chain with who, what and how it went, and no secret.
    let mut rec = None;
    for _ in 0..50 {
        rec = audit_records(&b)
            .into_iter()
            .rfind(|r| r["event"] == "gateway" && r["detail"]["status"] == 200);
        if rec.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let rec = rec.expect("no audit record of the call");
    let d = &rec["detail"];
    assert_eq!(rec["owner"], "default");
    assert_eq!(d["upstream"], "code-host");
    assert_eq!(d["agent"], "coder");
    assert_eq!(d["gid"], a.2.as_str());
    assert_eq!(d["method"], "GET");
    assert_eq!(d["path"], "/repos/me/proj/commits");
    assert_eq!(d["reason"], "testing the gateway");
    assert!(d["bytes_out"].as_u64().unwrap() > 0, "{d}");
    assert!(d["latency_ms"].is_u64(), "{d}");
    let (code, v) = b.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{v}");

    // Redirects come back to the agent, never followed with the credential.
    let before = up.calls();
    let r = call(&b, &a, "GET", "/redirect", None, &[]).await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "http://127.0.0.1:9/elsewhere");
    assert_eq!(up.calls(), before + 1);

    // Revocation cuts the agent off at the next call.
    b.cli_ok(&["revoke", &a.2]);
    let before = up.calls();
    let r = call(&b, &a, "GET", "/repos/me/proj", None, &[]).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(json(r).await.1["error"], "invalid_token");
    assert_eq!(up.calls(), before, "a revoked token reached the upstream");

    // The refusal is audited too.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(audit_records(&b).iter().any(|r| r["event"] == "gateway"
        && r["detail"]["status"] == 401
        && r["detail"]["error_reason"] == "revoked"
        && r["detail"]["reason"] == "testing the gateway"));
    assert_secret_nowhere(&b);
}

#[tokio::test]
async fn another_owners_agent_is_refused_and_the_upstream_not_contacted() {
    let (b, up) = setup().await;
    b.add_owners(&["bob"]);
    let bob = agent(&b, "bob", SCOPES).await;
    let before = up.calls();
    let r = call(&b, &bob, "GET", "/repos/me/proj", None, &[]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(json(r).await.1["error"], "insufficient_scope");
    assert_eq!(up.calls(), before);
    // Bob cannot take the name, see, rotate or remove alice's upstream.
    let (code, v) = add_upstream(
        &b,
        &rules("code-host", "https://api.code-host.example", false),
        "bob",
    );
    assert_ne!(code, 0, "{v}");
    assert!(
        v["error_description"].as_str().unwrap().contains("taken"),
        "{v}"
    );
    for args in [
        vec!["--owner", "bob", "upstream", "show", "code-host"],
        vec!["--owner", "bob", "upstream", "remove", "code-host"],
    ] {
        let (code, _) = b.cli(&args);
        assert_ne!(code, 0, "{args:?}");
    }
    let v = b.cli_ok(&["--owner", "bob", "upstream", "list"]);
    assert_eq!(v, serde_json::json!([]));
    let v = b.cli_ok(&["upstream", "list"]);
    assert_eq!(v[0]["name"], "code-host");
}

#[tokio::test]
async fn upstream_down_slow_or_private_is_a_gateway_error() {
    let (b, up, a) = setup_agent().await;
    // Slow: 504 after the rules' timeout (2 s; the upstream takes 5).
    let r = call(&b, &a, "GET", "/slow", None, &[]).await;
    assert_eq!(r.status(), 504);
    assert_eq!(json(r).await.1["error"], "gateway_timeout");

    // A loopback upstream without allow_private_network never gets the request.
    let base = format!("https://localhost:{}", up.port);
    let t = rules("private", &base, false);
    let (code, v) = add_upstream(&b, &t, "default");
    assert_eq!(code, 0, "{v}");
    let url = format!("{}/gateway/private/repos/me/proj", b.url);
    let before = up.calls();
    let r = signed(&b, &a, "GET", &url).await;
    assert_eq!(r.status(), 502);
    assert_eq!(json(r).await.1["error"], "bad_gateway");
    assert_eq!(up.calls(), before);

    // Down: 502.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let (code, v) = add_upstream(
        &b,
        &rules("dead", &format!("http://127.0.0.1:{port}"), true),
        "default",
    );
    assert_eq!(code, 0, "{v}");
    let r = signed(
        &b,
        &a,
        "GET",
        &format!("{}/gateway/dead/repos/me/proj", b.url),
    )
    .await;
    assert_eq!(r.status(), 502);
    let body = json(r).await.1;
    assert_eq!(body["error"], "bad_gateway");
    assert!(!body.to_string().contains(SECRET));
}

/// A GET to any gateway URL, signed, with the nonce round.
async fn signed(
    b: &Broker,
    a: &(AgentKey, String, String),
    method: &str,
    url: &str,
) -> reqwest::Response {
    let mut nonce: Option<String> = None;
    loop {
        let proof = dpop(&a.0, method, url, Some(&a.1), nonce.as_deref());
        let r = b
            .http
            .request(method.parse().unwrap(), url)
            .header("authorization", format!("DPoP {}", a.1))
            .header("dpop", proof)
            .send()
            .await
            .unwrap();
        match r.headers().get("dpop-nonce") {
            Some(n) if r.status() == 401 && nonce.is_none() => {
                nonce = Some(n.to_str().unwrap().to_owned());
            }
            _ => return r,
        }
    }
}

#[tokio::test]
async fn the_cli_refuses_bad_rules_and_manages_upstreams_without_showing_the_secret() {
    let (b, up) = setup().await;
    let bad = "name = \"x\"\nbase_url = \"https://x.example\"\ncredential = { query = \"k\" }\n[[rule]]\nmethods = [\"GET\"]\npath = \"/r/{repo}\"\nscope = \"repo:read:{owner}\"\n";
    let (code, v) = add_upstream(&b, bad, "default");
    assert_ne!(code, 0);
    let d = v["error_description"].as_str().unwrap();
    assert!(d.contains("line 7") && d.contains("{owner}"), "{v}");
    let (code, v) = add_upstream(
        &b,
        &rules("code-host", "https://a.example", false),
        "default",
    );
    assert_ne!(code, 0);
    assert!(
        v["error_description"].as_str().unwrap().contains("exists"),
        "{v}"
    );

    let v = b.cli_ok(&["upstream", "show", "code-host"]);
    assert_eq!(v["credential"], "header x-api-key");
    assert_eq!(v["rules"][0]["scope"], "repo:read:{repo}");
    assert!(!v.to_string().contains(SECRET));

    // Rotation: the new secret is what the upstream gets (and it refuses it).
    let rotate = ["upstream", "rotate", "code-host", "--secret-stdin"];
    let (code, v) = b.cli_with_stdin(&rotate, "rotated-secret\n");
    assert_eq!(code, 0, "{v}");
    let a = agent(&b, "default", SCOPES).await;
    let r = call(&b, &a, "GET", "/repos/me/proj", None, &[]).await;
    assert_eq!(r.status(), 401, "the upstream took a rotated-away secret");
    assert_eq!(up.last().header("x-api-key"), Some("Key rotated-secret"));

    let exported = b.cli_ok(&["upstream", "export", "code-host"]);
    let text = exported["rules"].as_str().unwrap().to_owned();
    assert!(text.contains("[[rule]]") && !text.contains(SECRET));

    b.cli_ok(&["upstream", "remove", "code-host"]);
    let r = call(&b, &a, "GET", "/repos/me/proj", None, &[]).await;
    assert_eq!(r.status(), 404);
    // The export imports back as it was, with the original secret.
    let (code, v) = add_upstream(&b, &text, "default");
    assert_eq!(code, 0, "{v}");
    let r = call(&b, &a, "GET", "/repos/me/proj", None, &[]).await;
    assert_eq!(r.status(), 200);
    b.cli_ok(&["upstream", "remove", "code-host"]);
    let events: Vec<String> = audit_records(&b)
        .iter()
        .map(|r| r["event"].as_str().unwrap().to_owned())
        .collect();
    for e in ["upstream_add", "upstream_rotate", "upstream_remove"] {
        assert!(events.iter().any(|x| x == e), "{e} not audited: {events:?}");
    }
    assert_secret_nowhere(&b);
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_with_bounded_memory() {
    let (b, _up, a) = setup_agent().await;
    // Warm up (connection pools, first allocations).
    let r = call(&b, &a, "GET", "/repos/me/proj", None, &[]).await;
    assert_eq!(r.status(), 200);
    let before = rss_kib(b.pid(), "VmRSS:");

    let r = call(&b, &a, "GET", "/big", None, &[]).await;
    assert_eq!(r.status(), 200);
    let mut n = 0usize;
    let mut s = r.bytes_stream();
    while let Some(c) = s.next().await {
        n += c.unwrap().len();
    }
    assert_eq!(n, 64 * MIB);

    let chunk = bytes_chunk();
    let stream =
        futures_util::stream::iter((0..64).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let read = upload(&b, &a, reqwest::Body::wrap_stream(stream)).await;
    assert_eq!(read, (64 * MIB).to_string());

    let peak = rss_kib(b.pid(), "VmHWM:");
    let growth = peak.saturating_sub(before) / 1024;
    assert!(
        growth < 24,
        "the broker grew by {growth} MiB moving 2 x 64 MiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_cuts_a_response_off_mid_stream() {
    let (b, _up, a) = setup_agent().await;
    let r = call(&b, &a, "GET", "/drip", None, &[]).await;
    assert_eq!(r.status(), 200);
    let mut s = r.bytes_stream();
    let first = s.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    let start = std::time::Instant::now();
    b.cli_ok(&["revoke", &a.2]);
    let mut got = first.len();
    let mut broken = false;
    while let Some(c) = s.next().await {
        match c {
            Ok(c) => got += c.len(),
            Err(_) => {
                broken = true;
                break;
            }
        }
    }
    assert!(broken, "the transfer ended as if complete ({got} bytes)");
    assert!(got < 100 * 1024, "everything was sent");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    cut_is_audited(&b, "/drip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_cuts_off_a_small_answer_of_stated_size_while_it_is_read() {
    let (b, _up, a) = setup_agent().await;
    // Read whole before anything is sent to the agent: the agent's
    // connection ends with no answer at all, never a complete-looking
    // answer, and never a refusal (a `401` would have the SDK renew and send
    // the request again, which the upstream has already acted on).
    let took = revoked_during(&b, &a, "/drip-sized", 500).await;
    assert!(took < std::time::Duration::from_secs(3), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_while_the_upstream_works_keeps_its_answer_from_the_agent() {
    let (b, _up, a) = setup_agent().await;
    // The upstream answers `/late` after 1.5 s; the check passed before.
    revoked_during(&b, &a, "/late", 300).await;
}

/// `GET path`, with the agent's grant revoked `after_ms` into the call: no
/// answer reaches the agent, and the cut is audited. Returns how long the
/// call took.
async fn revoked_during(
    b: &Broker,
    a: &(AgentKey, String, String),
    path: &str,
    after_ms: u64,
) -> std::time::Duration {
    let start = std::time::Instant::now();
    let revoke = async {
        tokio::time::sleep(std::time::Duration::from_millis(after_ms)).await;
        b.cli_ok(&["revoke", &a.2]);
    };
    let (r, ()) = tokio::join!(try_call(b, a, "GET", path), revoke);
    let took = start.elapsed();
    match r {
        Err(e) => assert!(e.is_request(), "{e:?}"),
        Ok(r) => panic!(
            "an answer to {path} reached the agent after the revocation: {}",
            r.status()
        ),
    }
    cut_is_audited(b, path).await;
    took
}

#[tokio::test]
async fn a_query_credential_replaces_the_agents_and_stays_out_of_even_trace_logs() {
    let up = Upstream::start().await;
    let b = Broker::start(&[("PROTONPASS_BROKER_LOG", "trace")]);
    let base = format!("http://127.0.0.1:{}", up.port);
    let t = rules("q", &base, true).replace(
        "credential = { header = \"X-Api-Key\", value = \"Key {secret}\" }",
        "credential = { query = \"api_key\" }",
    );
    let (code, v) = add_upstream(&b, &t, "default");
    assert_eq!(code, 0, "{v}");
    let a = agent(&b, "default", SCOPES).await;
    let url = format!(
        "{}/gateway/q/repos/me/proj?api_key=forged&x=1&api%5Fkey=also",
        b.url
    );
    let r = signed(&b, &a, "GET", &url).await;
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.target, format!("/repos/me/proj?x=1&api_key={SECRET}"));
    assert_eq!(seen.header("x-api-key"), None);
    // Everything the broker wrote, its trace log included, is free of the secret.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_secret_nowhere(&b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_is_not_a_slow_upstream() {
    let (b, _up, a) = setup_agent().await;
    // 3 s of upload against a 2 s response timeout: the wait starts once the
    // body is sent.
    let stream = futures_util::stream::unfold(0u32, |i| async move {
        if i == 6 {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        Some((Ok::<_, std::io::Error>(vec![b'u'; 1000]), i + 1))
    });
    let read = upload(&b, &a, reqwest::Body::wrap_stream(stream)).await;
    assert_eq!(read, "6000");
}

/// The gateway's audit record of the call to `path` says it was cut by a
/// revocation (written when the call ends: waited for up to 5 s).
async fn cut_is_audited(b: &Broker, path: &str) {
    for _ in 0..50 {
        let cut = audit_records(b).iter().any(|r| {
            r["event"] == "gateway"
                && r["detail"]["path"] == path
                && r["detail"]["error_reason"] == "revoked"
        });
        if cut {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the cut of {path} is not in the audit log");
}

/// `POST /upload` through the gateway with `body`: what the upstream says it
/// read (the answer must be a 200).
async fn upload(b: &Broker, a: &(AgentKey, String, String), body: reqwest::Body) -> String {
    let r = call(b, a, "POST", "/upload", Some(body), &[]).await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}
