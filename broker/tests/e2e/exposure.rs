//! What an anonymous caller learns: `/metrics` (request counts of every
//! owner's agents) is for operators only, and the revocation feed carries only
//! what a verifier needs (opaque ids and expiry times).

use protonpass_e2e::{API, Broker, free_port, key};

async fn status_and_text(req: reqwest::RequestBuilder) -> (u16, String) {
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn metrics_answer_loopback_clients_only() {
    // Behind a trusted proxy on this host, the client is the forwarded address.
    let b = Broker::start(&[("PROTONPASS_BROKER_TRUSTED_PROXIES", "127.0.0.1")]);
    let url = format!("{}/metrics", b.url);
    let (status, text) = status_and_text(b.http.get(&url)).await;
    assert_eq!(status, 200);
    assert!(text.contains("protonpass_http_requests_total"), "{text}");
    let (status, text) =
        status_and_text(b.http.get(&url).header("x-forwarded-for", "203.0.113.9")).await;
    assert_eq!(status, 404, "{text}");
    assert!(!text.contains("protonpass_"), "{text}");
}

#[tokio::test]
async fn metrics_addr_moves_metrics_off_the_public_address() {
    let dir = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .unwrap();
    let port = free_port();
    let maddr = format!("127.0.0.1:{port}");
    let b = Broker::launch(dir.path(), "127.0.0.1:0", &["--metrics-addr", &maddr], &[]);
    // Some traffic to count.
    assert_eq!(b.get("/healthz").await.status, 200);
    assert_eq!(b.get("/metrics").await.status, 404);
    let (status, text) = status_and_text(b.http.get(format!("http://{maddr}/metrics"))).await;
    assert_eq!(status, 200);
    assert!(text.contains("protonpass_http_requests_total"), "{text}");
    // The metrics address serves nothing else.
    let (status, _) = status_and_text(b.http.get(format!(
        "http://{maddr}/.well-known/oauth-authorization-server"
    )))
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_revocation_feed_names_no_owner_agent_audience_or_scope() {
    let b = Broker::start(&[]);
    b.add_owners(&["alice"]);
    let agent = key();
    let r = b
        .enroll(
            &agent,
            "alice-travel-bot",
            "calendar:read",
            &["--owner", "alice"],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (at, gid) = (r.s("access_token"), r.s("grant_id"));
    let revoke = b.revoke_token(&at, "alice-travel-bot").await;
    assert_eq!(revoke.status, 200);
    b.cli_ok(&["--owner", "alice", "revoke", &gid]);
    let feed = b.feed(0).await;
    assert!(feed.len() >= 2, "{feed:?}");
    for e in &feed {
        let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(
            keys.iter()
                .all(|k| ["seq", "jti", "gid", "exp"].contains(k)),
            "{e}"
        );
    }
    let text = b.get("/revocations?after=0").await.body.to_string();
    for secret in ["alice", "travel-bot", "calendar", API] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}
