use super::*;

fn base(s: &str) -> url::Url {
    url::Url::parse(s).unwrap()
}

#[test]
fn private_and_special_addresses_are_not_public() {
    for ip in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "::1",
        "::",
        "fd00::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::7f00:1",
        "::127.0.0.1",
    ] {
        assert!(!is_public(ip.parse().unwrap()), "{ip}");
    }
    for ip in [
        "1.1.1.1",
        "8.8.8.8",
        "2606:4700:4700::1111",
        "::ffff:1.1.1.1",
    ] {
        assert!(is_public(ip.parse().unwrap()), "{ip}");
    }
}

#[test]
fn the_url_keeps_the_rules_host_and_replaces_the_credential_parameter() {
    let b = base("https://api.example/v1");
    let none = Credential::Header {
        name: "x-key".into(),
        template: "{secret}".into(),
    };
    let u = upstream_url(&b, "/a/b", Some("x=1&y=%20"), &none, b"s").unwrap();
    assert_eq!(u.as_str(), "https://api.example/v1/a/b?x=1&y=%20");
    let u = upstream_url(&b, "/", None, &none, b"s").unwrap();
    assert_eq!(u.as_str(), "https://api.example/v1/");
    // Paths that look like authorities stay paths on the rules' host.
    let u = upstream_url(&b, "/@evil.example/x", None, &none, b"s").unwrap();
    assert_eq!(u.as_str(), "https://api.example/v1/@evil.example/x");
    let root = base("https://api.example/");
    let u = upstream_url(&root, "//evil.example/x", None, &none, b"s");
    assert!(
        u.as_ref()
            .map(|u| url::Url::parse(u).unwrap().host_str() == Some("api.example"))
            .unwrap_or(true),
        "a path changed the host"
    );

    let q = Credential::Query {
        param: "api_key".into(),
    };
    let u = upstream_url(
        &b,
        "/a",
        Some("api_key=agent&x=1&api%5Fkey=2"),
        &q,
        b"s e&c",
    )
    .unwrap();
    assert_eq!(u.as_str(), "https://api.example/v1/a?x=1&api_key=s%20e%26c");
}

#[test]
fn agent_credentials_and_hop_by_hop_headers_stay_behind() {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("authorization", "DPoP tok"),
        ("dpop", "proof"),
        ("cookie", "a=b"),
        ("host", "evil.example"),
        ("connection", "close, x-secret-hop"),
        ("x-secret-hop", "1"),
        ("transfer-encoding", "chunked"),
        ("x-forwarded-host", "evil.example"),
        ("x-api-key", "agent-chosen"),
        ("accept", "application/json"),
        ("content-type", "text/plain"),
    ] {
        h.append(k, HeaderValue::from_static(v));
    }
    let cred = Credential::Header {
        name: "x-api-key".into(),
        template: "Key {secret}".into(),
    };
    let out = request_headers(&h, &cred, b"sek").unwrap();
    let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["accept", "content-type", "x-api-key"]);
    assert_eq!(out["x-api-key"], "Key sek");
    assert!(out["x-api-key"].is_sensitive());

    let basic = Credential::Basic {
        template: "me:{secret}".into(),
    };
    let out = request_headers(&h, &basic, b"pw").unwrap();
    assert_eq!(out["authorization"], "Basic bWU6cHc=");
    assert_eq!(out.get_all("authorization").iter().count(), 1);

    let mut r = HeaderMap::new();
    r.append("content-type", HeaderValue::from_static("text/plain"));
    r.append("x-echo", HeaderValue::from_static("you sent Key sek"));
    r.append("keep-alive", HeaderValue::from_static("timeout=5"));
    let back = response_headers(&r, b"sek");
    let names: Vec<&str> = back.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["content-type"]);
}
