//! Hostile requests to the gateway: rules' edges, traversal, encoded
//! traversal, CRLF, oversized headers, absolute-form targets and a Host for
//! another host. None reaches the upstream unless a rule allows what is
//! forwarded, and what is forwarded is what was matched.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// A request sent as raw HTTP/1.1, so that its path reaches the broker exactly
/// as written (an HTTP client would resolve `..` and `%2e%2e` itself):
/// (status, headers, body), after the nonce round.
async fn raw_call(
    b: &Broker,
    a: &(AgentKey, String, String),
    method: &str,
    path: &str,
) -> (u16, String, Value) {
    let target = format!("/gateway/code-host{path}");
    let htu = format!("{}{}", b.url, target.split('?').next().unwrap());
    let mut nonce: Option<String> = None;
    loop {
        let proof = dpop(&a.0, method, &htu, Some(&a.1), nonce.as_deref());
        let resp = raw(
            b,
            format!(
                "{method} {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: DPoP {}\r\nDPoP: {proof}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                b.addr(),
                a.1
            ),
        )
        .await;
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        let status: u16 = head.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
        let n = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("dpop-nonce: "))
            .map(|l| l["dpop-nonce: ".len()..].trim().to_owned());
        let head = head.to_ascii_lowercase();
        if status == 401 && nonce.is_none() && n.is_some() {
            nonce = n;
            continue;
        }
        let v = serde_json::from_str(body).unwrap_or(Value::String(body.into()));
        return (status, head, v);
    }
}

async fn refused(
    b: &Broker,
    up: &Upstream,
    a: &(AgentKey, String, String),
    method: &str,
    path: &str,
) -> (u16, Value) {
    let before = up.calls();
    let (status, head, v) = raw_call(b, a, method, path).await;
    assert_eq!(
        up.calls(),
        before,
        "{method} {path} reached the upstream: {status} {v}"
    );
    if status == 403 {
        assert!(head.contains("insufficient_scope"), "{path}: {head}");
    }
    (status, v)
}

#[tokio::test]
async fn rules_edges_and_traversal_never_reach_what_they_do_not_allow() {
    let (b, up, a) = setup_agent().await;

    // No rule: refused.
    let (s, v) = refused(&b, &up, &a, "DELETE", "/repos/me/proj").await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (403, "insufficient_scope")
    );
    // A rule, but a scope the token lacks.
    let (s, v) = refused(&b, &up, &a, "GET", "/admin/users").await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (403, "insufficient_scope")
    );
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("admin:all"),
        "{v}"
    );
    let (s, _) = refused(&b, &up, &a, "GET", "/repos/me/other/commits").await;
    assert_eq!(s, 403);

    // repo:write:proj does not reach proj-evil, however the path is written.
    for p in [
        "/repos/me/proj-evil/issues",
        "/repos/me/proj/../proj-evil/issues",
        "/repos/me/proj/issues/../../proj-evil/issues",
        "/repos/me/./proj-evil//issues",
        "/repos/me/proj%2D%65vil/issues",
    ] {
        let (s, _) = refused(&b, &up, &a, "POST", p).await;
        assert_eq!(s, 403, "{p}");
    }
    // Encoded traversal and ambiguous escapes: refused before matching.
    for p in [
        "/repos/me/proj/issues/%2e%2e/%2e%2e/proj-evil/issues",
        "/repos/me/proj%2f..%2fproj-evil/issues",
        "/repos/me/proj/issues/..%5c..%5cx",
        "/repos/me/proj/issues/%00",
        "/repos/me/proj/issues/%0d%0aX-Injected:%201",
    ] {
        let (s, v) = refused(&b, &up, &a, "POST", p).await;
        assert_eq!(
            (s, v["error"].as_str().unwrap()),
            (400, "invalid_request"),
            "{p}"
        );
    }
    // Above the root.
    let (s, v) = refused(&b, &up, &a, "GET", "/../../repos/me/proj").await;
    assert_eq!(s, 400, "{v}");

    // What is allowed is forwarded in its normal form.
    let (s, _, v) = raw_call(&b, &a, "POST", "/repos/me/x/../proj/issues/./1//comments").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(up.last().target, "/repos/me/proj/issues/1/comments");
    // A CRLF in the query stays encoded: no header is added upstream.
    let r = call(
        &b,
        &a,
        "GET",
        "/repos/me/proj?q=%0d%0aX-Injected:%201",
        None,
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.header("x-injected"), None);
    assert_eq!(seen.target, "/repos/me/proj?q=%0d%0aX-Injected:%201");
}

#[tokio::test]
async fn oversized_headers_and_bad_proofs_are_refused_before_the_upstream() {
    let (b, up, a) = setup_agent().await;
    let big = "x".repeat(20 * 1024);
    let before = up.calls();
    let r = call(&b, &a, "GET", "/repos/me/proj", None, &[("x-big", &big)]).await;
    assert_eq!(r.status(), 431);
    assert_eq!(up.calls(), before);

    // No token; a Bearer token; a proof for another URL; a replayed proof.
    let url = format!("{}/gateway/code-host/repos/me/proj", b.url);
    let r = b.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("DPoP")
    );
    let r = b
        .http
        .get(&url)
        .header("authorization", format!("Bearer {}", a.1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let other = format!("{}/gateway/code-host/repos/me/other", b.url);
    let nonce = call(&b, &a, "GET", "/repos/me/proj", None, &[])
        .await
        .headers()
        .get("dpop-nonce")
        .map(|v| v.to_str().unwrap().to_owned());
    let proof = |u: &str| dpop(&a.0, "GET", u, Some(&a.1), nonce.as_deref());
    let before = up.calls();
    let p = proof(&other);
    let r = b
        .http
        .get(&url)
        .header("authorization", format!("DPoP {}", a.1))
        .header("dpop", p)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(json(r).await.1["error"], "invalid_dpop_proof");
    assert_eq!(up.calls(), before);
}

/// Send raw HTTP/1.1 to the broker; returns the status line and the response.
async fn raw(b: &Broker, text: String) -> String {
    let mut s = tokio::net::TcpStream::connect(b.addr()).await.unwrap();
    s.write_all(text.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_target_host_comes_from_the_rules_alone() {
    let (b, up, a) = setup_agent().await;
    // A Host header for another host.
    let r = call(
        &b,
        &a,
        "GET",
        "/repos/me/proj",
        None,
        &[
            ("host", "evil.example"),
            ("x-forwarded-host", "evil.example"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(
        seen.header("host"),
        Some(format!("127.0.0.1:{}", up.port).as_str())
    );
    assert_eq!(seen.header("x-forwarded-host"), None);

    // Absolute-form: the authority in the request line changes nothing.
    let nonce = call(&b, &a, "GET", "/repos/me/proj", None, &[])
        .await
        .headers()
        .get("dpop-nonce")
        .map(|v| v.to_str().unwrap().to_owned());
    let path = "/gateway/code-host/repos/me/proj/absolute";
    let proof = dpop(
        &a.0,
        "GET",
        &format!("{}{path}", b.url),
        Some(&a.1),
        nonce.as_deref(),
    );
    let before = up.calls();
    let resp = raw(
        &b,
        format!(
            "GET http://evil.example{path} HTTP/1.1\r\nHost: evil.example\r\nAuthorization: DPoP {}\r\nDPoP: {proof}\r\nConnection: close\r\n\r\n",
            a.1
        ),
    )
    .await;
    if resp.starts_with("HTTP/1.1 200") {
        let seen = up.last();
        assert_eq!(seen.target, "/repos/me/proj/absolute");
        assert_eq!(
            seen.header("host"),
            Some(format!("127.0.0.1:{}", up.port).as_str())
        );
    } else {
        // Or refused outright; then nothing reached the upstream.
        assert!(resp.starts_with("HTTP/1.1 4"), "{resp}");
        assert_eq!(up.calls(), before);
    }
    // Authority-form (CONNECT) is not a gateway request.
    let before = up.calls();
    let resp = raw(
        &b,
        "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 4"), "{resp}");
    // A header with a bare CR or an obs-fold is a malformed request.
    let resp = raw(
        &b,
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nX-A: a\rX-Injected: 1\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 4"), "{resp}");
    assert_eq!(up.calls(), before);
}
