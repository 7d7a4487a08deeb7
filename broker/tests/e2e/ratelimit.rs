//! Per-source rate limits: a flood from one address gets `429` with
//! `Retry-After`, decided before any other work (nothing audited, nothing
//! stored), and never stops an agent on another address.

use std::net::IpAddr;

use protonpass_e2e::{Broker, audit_records, key};

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// Send `n` bad token requests; returns how many were refused with 429.
async fn flood(b: &Broker, http: &reqwest::Client, n: usize, xff: Option<&str>) -> usize {
    let mut limited = 0;
    for _ in 0..n {
        let mut req = http
            .post(b.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=nonsense");
        if let Some(x) = xff {
            req = req.header("x-forwarded-for", x);
        }
        let r = req.send().await.unwrap();
        if r.status() == 429 {
            limited += 1;
            let wait: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&wait), "Retry-After {wait}");
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["error"], "temporarily_unavailable", "{v}");
        } else {
            assert_eq!(r.status(), 400);
        }
    }
    limited
}

fn rejected(b: &Broker) -> usize {
    audit_records(b)
        .iter()
        .filter(|r| r["event"] == "rejected")
        .count()
}

#[tokio::test]
async fn a_flood_from_one_address_does_not_stop_an_agent_on_another() {
    let b = Broker::start(&[("PROTONPASS_BROKER_RATE_LIMIT", "5/s")]);
    let before = rejected(&b);
    let limited = flood(&b, &client_from("127.0.0.2"), 40, None).await;
    // A burst of 10 is admitted, then about 5 a second.
    assert!((20..=30).contains(&limited), "{limited} of 40 limited");
    // What was refused for the rate cost nothing: only the admitted requests
    // reached the token endpoint (and its rejection audit).
    // (Rejection records are written in the background: wait for them.)
    let mut audited = rejected(&b) - before;
    for _ in 0..50 {
        if audited >= 40 - limited {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        audited = rejected(&b) - before;
    }
    assert_eq!(audited, 40 - limited);
    // An agent on another address is served meanwhile.
    let r = b.enroll(&key(), "bot", "calendar:read", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_source() {
    let b = Broker::start(&[
        ("PROTONPASS_BROKER_RATE_LIMIT", "5/s"),
        ("PROTONPASS_BROKER_TRUSTED_PROXIES", "127.0.0.3"),
    ]);
    let proxy = client_from("127.0.0.3");
    assert!(flood(&b, &proxy, 30, Some("192.0.2.7")).await >= 15);
    // Another client behind the same proxy is not limited.
    assert_eq!(flood(&b, &proxy, 5, Some("192.0.2.8")).await, 0);
    // From an untrusted peer the header is ignored: the peer is the source.
    let other = client_from("127.0.0.4");
    assert!(flood(&b, &other, 30, Some("192.0.2.9")).await >= 15);
}

#[tokio::test]
async fn the_limit_can_be_turned_off() {
    let b = Broker::start(&[("PROTONPASS_BROKER_RATE_LIMIT", "off")]);
    assert_eq!(flood(&b, &client_from("127.0.0.2"), 60, None).await, 0);
}
