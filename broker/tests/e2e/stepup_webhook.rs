//! The owner's step-up webhook: a request that waits for the owner is POSTed,
//! signed (Standard Webhooks), to the owner's URL in the background and
//! retried after a failure; one the owner's policy approves is not.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use protonpass_e2e::Broker;
use serde_json::Value;

use crate::stepup::{ask, first_waiting, payment, policy_up_to, setup};

/// (headers, body, arrival) of each delivery a receiver got.
pub(crate) type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>, Instant)>>>;

/// A receiver on loopback that answers `failure` to its first `fail`
/// deliveries (each after `delay`) and `success` to the others: (URL, what
/// it received).
pub(crate) async fn receiver(
    fail: usize,
    delay: Duration,
    failure: StatusCode,
    success: StatusCode,
) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: HeaderMap, body: axum::body::Bytes| {
            let s = s.clone();
            async move {
                let n = {
                    let mut v = s.lock().unwrap();
                    v.push((h, body.to_vec(), Instant::now()));
                    v.len()
                };
                if n <= fail {
                    tokio::time::sleep(delay).await;
                    failure
                } else {
                    success
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://127.0.0.1:{port}/hook"), seen)
}

/// Wait until `seen` holds `n` deliveries, for `within` at most.
pub(crate) async fn wait_for(seen: &Seen, n: usize, within: Duration) {
    let start = Instant::now();
    while seen.lock().unwrap().len() < n {
        assert!(
            start.elapsed() < within,
            "{} deliveries, expected {n}",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The default owner's webhook set to `url` on loopback: what the CLI printed.
pub(crate) fn set_webhook(b: &Broker, url: &str) -> Value {
    b.cli_ok(&[
        "owner",
        "webhook",
        "set",
        "default",
        url,
        "--allow-private-network",
    ])
}

/// Check the Standard Webhooks signature of a delivery with `secret`: the
/// secret's bytes after `whsec_`, HMAC-SHA-256 over `{id}.{timestamp}.{body}`,
/// compared in constant time with each `v1,` entry.
pub(crate) fn signed(secret: &str, h: &HeaderMap, body: &[u8]) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let ts = header(h, "webhook-timestamp");
    header(h, "webhook-signature").split(' ').any(|entry| {
        let Some(sig) = entry
            .strip_prefix("v1,")
            .and_then(|s| STANDARD.decode(s).ok())
        else {
            return false;
        };
        let mut m = <Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(&key).unwrap();
        m.update(format!("{}.{ts}.", header(h, "webhook-id")).as_bytes());
        m.update(body);
        m.verify_slice(&sig).is_ok()
    })
}

#[tokio::test]
async fn a_waiting_step_up_is_posted_signed_and_retried_after_a_failure() {
    let (b, k, at, gid, _rs) = setup().await;
    // Slow, then failing, at first: the agent's request must not wait for it.
    let (url, seen) = receiver(
        1,
        Duration::from_secs(3),
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::NO_CONTENT,
    )
    .await;

    // Loopback and http only when the owner says so.
    let (code, e) = b.cli(&["owner", "webhook", "set", "default", &url]);
    assert_eq!(code, 1, "{e}");
    assert!(e.to_string().contains("--allow-private-network"), "{e}");
    let (code, _) = b.cli(&["owner", "webhook", "set", "nobody", "https://example.com/h"]);
    assert_eq!(code, 1);
    let set = set_webhook(&b, &url);
    let secret = set["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{set}");
    let shown = b.cli_ok(&["owner", "webhook", "show", "default"]);
    assert_eq!(shown["url"], url.as_str());
    assert_eq!(shown["allow_private_network"], true);
    assert!(!shown.to_string().contains(&secret[6..]), "{shown}");

    // The agent's request is answered without waiting for the receiver.
    let t = Instant::now();
    let r = ask(
        &b,
        &k,
        &at,
        &[
            ("authorization_details", &payment("250")),
            ("binding_message", "Book flight AB123"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );

    // The first delivery fails (500); the retry, later, succeeds.
    wait_for(&seen, 2, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "no delivery after a success");
    let id = first_waiting(&b);
    for (h, body, _) in &got {
        assert!(signed(&secret, h, body), "bad signature: {h:?}");
        assert!(!signed("whsec_AAAA", h, body));
        assert_eq!(header(h, "content-type"), "application/json");
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["type"], "stepup.pending");
        let d = &v["data"];
        assert_eq!(d["id"], id.as_str(), "{v}");
        assert_eq!(d["agent"], "travel");
        assert_eq!(d["grant_id"], gid.as_str());
        assert_eq!(d["amount"], "250.00");
        assert_eq!(d["currency"], "EUR");
        assert_eq!(d["payee"], "Air Example");
        assert_eq!(d["binding_message"], "Book flight AB123");
        assert_eq!(d["approve_url"], format!("{}/stepup", b.url).as_str());
        assert!(!String::from_utf8_lossy(body).contains("ar_"), "{v}");
    }
    // One event, one id, each attempt signed anew.
    assert_eq!(
        header(&got[0].0, "webhook-id"),
        header(&got[1].0, "webhook-id")
    );
    assert!(header(&got[0].0, "webhook-id").starts_with("msg_"));
    // A tampered body does not verify.
    let mut bad = got[1].1.clone();
    bad[0] ^= 1;
    assert!(!signed(&secret, &got[1].0, &bad));

    // A request the grant's policy approves does not wait: no event.
    policy_up_to(&b, &gid, "50");
    let r = ask(&b, &k, &at, &[("authorization_details", &payment("20"))]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(seen.lock().unwrap().len(), 2);

    // The secret is in no log line.
    let log = std::fs::read_to_string(b.data.join("broker.log")).unwrap();
    assert!(!log.contains(&secret[6..]));

    let audit = protonpass_e2e::audit_records(&b);
    assert!(
        audit.iter().any(|r| r["event"] == "webhook_set"),
        "{audit:?}"
    );
    assert!(!format!("{audit:?}").contains(&secret[6..]));

    // Removed: nothing is sent any more.
    assert_eq!(
        b.cli_ok(&["owner", "webhook", "remove", "default"])["removed"],
        true
    );
    assert_eq!(
        b.cli_ok(&["owner", "webhook", "show", "default"]),
        Value::Null
    );
    let r = ask(&b, &k, &at, &[("authorization_details", &payment("99"))]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_private_webhook_is_refused_without_the_option() {
    let (b, ..) = setup().await;
    for url in [
        "http://example.com/h",
        "https://10.0.0.1/h",
        "https://[::1]/h",
        "https://user@example.com/h",
        "not a url",
    ] {
        let (code, e) = b.cli(&["owner", "webhook", "set", "default", url]);
        assert_eq!(
            (code, e["error"].as_str()),
            (1, Some("invalid_request")),
            "{url}: {e}"
        );
    }
    assert_eq!(
        b.cli_ok(&["owner", "webhook", "show", "default"]),
        Value::Null
    );
}
