//! The HTTP plumbing against small local servers that misbehave: metadata
//! that names another issuer or points endpoints elsewhere, and a body that
//! never ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{MAX_BODY, discover};
use crate::clock::OsRandom;
use crate::error::Error;

/// Read one request's head (the tests' requests have no body).
async fn read_head(sock: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut b).await.unwrap();
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&b[..n]);
    }
}

/// A server answering every request with `metadata(base)` as JSON.
async fn serve_metadata(metadata: impl Fn(&str) -> Value + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let body = metadata(&base).to_string();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            read_head(&mut sock).await;
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    base
}

/// Moves a base URL somewhere else.
type Move = fn(&str) -> String;

fn good(base: &str) -> Value {
    json!({
        "issuer": base,
        "token_endpoint": format!("{base}/oauth/token"),
        "device_authorization_endpoint": format!("{base}/oauth/device_authorization"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "introspection_endpoint": format!("{base}/oauth/introspect"),
        "jwks_uri": format!("{base}/jwks.json"),
        "grant_types_supported": [],
        "dpop_signing_alg_values_supported": ["EdDSA"],
        "revocation_feed_endpoint": format!("{base}/revocations"),
        "revocation_stream_endpoint": format!("{base}/revocations/stream"),
        "usage_endpoint": format!("{base}/usage"),
    })
}

#[tokio::test]
async fn metadata_on_the_brokers_origin_is_accepted() {
    let base = serve_metadata(good).await;
    let m = discover(&base, &OsRandom).await.unwrap();
    assert_eq!(m.issuer, base);
    // One trailing slash on the broker URL is the same broker.
    let base = serve_metadata(good).await;
    assert!(discover(&format!("{base}/"), &OsRandom).await.is_ok());
}

#[tokio::test]
async fn metadata_naming_another_issuer_or_origin_is_refused() {
    let elsewhere: [(&str, Move); 6] = [
        ("https", |b| b.replacen("http", "https", 1)),
        ("port", |b| format!("{b}1")),
        ("host", |b| b.replacen("127.0.0.1", "127.0.0.2", 1)),
        ("longer host", |b| {
            b.replacen("127.0.0.1", "127.0.0.1.nip.io", 1)
        }),
        ("userinfo", |b| format!("{b}@evil.example")),
        ("garbage", |_| "not a url".to_owned()),
    ];
    let fields = [
        "token_endpoint",
        "device_authorization_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "jwks_uri",
        "revocation_feed_endpoint",
        "revocation_stream_endpoint",
        "usage_endpoint",
    ];
    for field in fields {
        for (how, move_base) in elsewhere {
            let base = serve_metadata(move |b| {
                let mut m = good(b);
                let path = m[field]
                    .as_str()
                    .unwrap()
                    .strip_prefix(b)
                    .unwrap()
                    .to_owned();
                m[field] = json!(format!("{}{path}", move_base(b)));
                m
            })
            .await;
            let e = discover(&base, &OsRandom).await.unwrap_err();
            let Error::InvalidResponse(msg) = &e else {
                panic!("{field} {how}: {e:?}")
            };
            assert!(msg.contains(field), "{field} {how}: {msg}");
        }
    }
    for (how, move_base) in elsewhere {
        let base = serve_metadata(move |b| {
            let mut m = good(b);
            m["issuer"] = json!(move_base(b));
            m
        })
        .await;
        let e = discover(&base, &OsRandom).await.unwrap_err();
        let Error::InvalidResponse(msg) = &e else {
            panic!("issuer {how}: {e:?}")
        };
        assert!(msg.contains("issuer"), "issuer {how}: {msg}");
    }
    // The issuer is the broker URL itself, not another path on its origin.
    let base = serve_metadata(|b| {
        let mut m = good(b);
        m["issuer"] = json!(format!("{b}/other"));
        m
    })
    .await;
    let e = discover(&base, &OsRandom).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidResponse(m) if m.contains("issuer")),
        "{e:?}"
    );
}

#[tokio::test]
async fn an_endless_body_is_cut_off_at_the_limit() {
    const SENT: usize = 64 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let written = Arc::new(AtomicUsize::new(0));
    let w = written.clone();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        read_head(&mut sock).await;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        sock.write_all(head.as_bytes()).await.unwrap();
        let data = vec![b' '; 64 << 10];
        let chunk = [format!("{:x}\r\n", data.len()).as_bytes(), &data, b"\r\n"].concat();
        while w.load(Ordering::SeqCst) < SENT {
            if sock.write_all(&chunk).await.is_err() {
                return;
            }
            w.fetch_add(data.len(), Ordering::SeqCst);
        }
        let _ = sock.write_all(b"0\r\n\r\n").await;
    });
    let e = discover(&base, &OsRandom).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidResponse(m) if m.contains("over")),
        "{e:?}"
    );
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    let sent = written.load(Ordering::SeqCst);
    assert!(
        sent > MAX_BODY / 2,
        "the server got to send {sent} bytes only"
    );
    assert!(
        sent < SENT / 2,
        "the client read {sent} bytes before giving up: it must stop near {MAX_BODY}"
    );
}

/// A server answering every request with `status` and an HTML body.
async fn serve_html(status: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            read_head(&mut sock).await;
            let body = "<html><body>Not here</body></html>";
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    base
}

#[tokio::test]
async fn a_wrong_broker_url_says_which_url_answered_what() {
    let base = serve_html("404 Not Found").await;
    let broker = format!("{base}/some/path");
    let e = discover(&broker, &OsRandom).await.unwrap_err();
    let Error::InvalidResponse(m) = &e else {
        panic!("{e:?}")
    };
    assert!(
        m.contains(&format!(
            "{broker}/.well-known/oauth-authorization-server answered HTTP 404"
        )),
        "{m}"
    );
    assert!(m.contains("without a path"), "{m}");
    // A page that is not metadata, answered with 200.
    let base = serve_html("200 OK").await;
    let e = discover(&base, &OsRandom).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidResponse(m) if m.contains("answered 200") && m.contains("no broker answers")),
        "{e:?}"
    );
}

#[tokio::test]
async fn tls_failures_and_refused_connections_are_told_apart() {
    // https to a port that speaks plain HTTP (it answers the ClientHello
    // with an HTTP error): a TLS failure, not "refused".
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let _ = sock
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                )
                .await;
        }
    });
    let e = discover(&base.replacen("http://", "https://", 1), &OsRandom)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::BrokerUnavailable(m) if m.contains("TLS failed") && !m.contains("refused")),
        "{e:?}"
    );
    // A port nothing listens on.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let e = discover(&format!("http://{addr}"), &OsRandom)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::BrokerUnavailable(m) if m.contains("connection refused") && m.contains("nothing listens")),
        "{e:?}"
    );
}

#[test]
fn a_discovered_document_is_kept_as_long_as_its_response_allows() {
    use reqwest::header::{CACHE_CONTROL, HeaderMap, HeaderValue};
    let life = |v: Option<&'static str>| {
        let mut h = HeaderMap::new();
        if let Some(v) = v {
            h.insert(CACHE_CONTROL, HeaderValue::from_static(v));
        }
        super::cache_lifetime(&h)
    };
    assert_eq!(life(None), Duration::from_secs(3600));
    assert_eq!(life(Some("public, max-age=60")), Duration::from_secs(60));
    assert_eq!(life(Some("max-age=31536000")), Duration::from_secs(86_400));
    assert_eq!(life(Some("no-store")), Duration::ZERO);
    assert_eq!(life(Some("max-age=60, no-cache")), Duration::ZERO);
    assert_eq!(life(Some("max-age=soon")), Duration::from_secs(3600));
}
