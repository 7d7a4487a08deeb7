//! Revocation (RFC 7009), introspection (RFC 7662), the feed and its stream,
//! owners as tenants, usage reports.

use std::time::Duration;

use serde_json::json;

use protonpass_e2e::{API, Broker, claims, key};

#[tokio::test]
async fn agent_revokes_access_then_refresh_token() {
    let b = Broker::start(&[]);
    let rs = b.resource(API, None);
    let agent = key();
    let r = b.enroll(&agent, "bot", "calendar:read", &[]).await;
    let (at, rt, gid) = (r.s("access_token"), r.s("refresh_token"), r.s("grant_id"));
    let i = b.introspect(&rs, &at).await;
    assert_eq!(i.body["active"], true, "{}", i.body);
    assert_eq!(i.body["cnf"]["jkt"], agent.thumbprint());
    assert_eq!(i.body["gid"], gid.as_str());
    assert_eq!(i.body["client_id"], "bot");
    assert_eq!(i.body["sub"], "default");
    assert_eq!(b.introspect(&rs, &rt).await.body["active"], true);

    // Another client's token is left alone; unknown tokens get 200.
    let other = b.revoke_token(&at, "not-bot").await;
    assert_eq!(other.status, 200);
    assert_eq!(b.introspect(&rs, &at).await.body["active"], true);
    let unknown = b.revoke_token("rt_nothing", "bot").await;
    assert_eq!(unknown.status, 200);

    // The agent revokes its access token: inactive, in the feed before the answer.
    let head = b.feed(0).await.len();
    let ok = b
        .post_form(
            "/oauth/revoke",
            &[
                ("token", &at),
                ("client_id", "bot"),
                ("token_type_hint", "access_token"),
            ],
            &[],
        )
        .await;
    assert_eq!(ok.status, 200);
    let feed = b.feed(0).await;
    assert_eq!(feed.len(), head + 1);
    let jti = claims(&at)["jti"].as_str().unwrap().to_owned();
    assert_eq!(feed.last().unwrap()["jti"], jti.as_str());
    assert!(feed.last().unwrap()["exp"].as_i64().unwrap() >= claims(&at)["exp"].as_i64().unwrap());
    assert_eq!(b.introspect(&rs, &at).await.body, json!({"active": false}));
    // The grant lives on.
    let r2 = b.refresh(&agent, &rt).await;
    assert_eq!(r2.status, 200);

    // Revoking the refresh token revokes the grant and all its tokens.
    let at2 = r2.s("access_token");
    let rt2 = r2.s("refresh_token");
    assert_eq!(b.revoke_token(&rt2, "bot").await.status, 200);
    assert_eq!(b.introspect(&rs, &at2).await.body["active"], false);
    let dead = b.refresh(&agent, &rt2).await;
    assert_eq!(dead.error(), "invalid_grant");
    let feed = b.feed(0).await;
    assert!(feed.iter().any(|e| e["gid"] == gid.as_str()));
    // Resumable: after the last position there is nothing new.
    let last = feed.last().unwrap()["seq"].as_i64().unwrap();
    assert!(b.feed(last).await.is_empty());
}

#[tokio::test]
async fn introspection_needs_a_registered_resource_server() {
    let b = Broker::start(&[]);
    let rs = b.resource(API, None);
    let agent = key();
    let at = b
        .enroll(&agent, "bot", "calendar:read", &[])
        .await
        .s("access_token");
    let bad = b
        .post_form(
            "/oauth/introspect",
            &[
                ("token", &at),
                ("client_id", &rs.0),
                ("client_secret", "wrong"),
            ],
            &[],
        )
        .await;
    assert_eq!((bad.status, bad.error()), (401, "invalid_client"));
    assert!(bad.headers.get("www-authenticate").is_some());
    let none = b
        .post_form("/oauth/introspect", &[("token", &at)], &[])
        .await;
    assert_eq!(none.status, 401);
    // client_secret_basic.
    let basic = b
        .http
        .post(format!("{}/oauth/introspect", b.url))
        .basic_auth(&rs.0, Some(&rs.1))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={at}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    let v: serde_json::Value = basic.json().await.unwrap();
    assert_eq!(v["active"], true);
    // A resource server for another audience learns nothing.
    let other = b.resource("https://other.example", None);
    assert_eq!(b.introspect(&other, &at).await.body["active"], false);

    // Usage reports, batched, land in the audit log.
    let u = b
        .http
        .post(format!("{}/audit/usage", b.url))
        .basic_auth(&rs.0, Some(&rs.1))
        .json(&json!({"uses": [
            {"jti": claims(&at)["jti"], "method": "GET", "path": "/events", "decision": "allow"},
            {"jti": claims(&at)["jti"], "method": "DELETE", "path": "/events/1", "decision": "deny", "reason": "insufficient_scope"}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(u.status(), 200);
    let out = std::process::Command::new(protonpass_e2e::broker_bin())
        .args(["--data", b.data.to_str().unwrap(), "audit", "export"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let usage: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "usage")
        .collect();
    assert_eq!(usage.len(), 2);
    assert!(text.lines().any(|l| l.contains("\"event\":\"introspect\"")));
}

#[tokio::test]
async fn owners_are_tenants() {
    let b = Broker::start(&[]);
    b.add_owners(&["alice", "bob"]);
    let agent = key();
    let g = b.create_grant("bobs-bot", "mail:read", &["--owner", "bob"]);
    let gid = g["grant_id"].as_str().unwrap().to_owned();
    let code = g["enrollment_code"].as_str().unwrap().to_owned();
    let r = b.redeem(&agent, &code).await;
    assert_eq!(r.status, 200);
    assert_eq!(claims(&r.s("access_token"))["sub"], "bob");
    let at = r.s("access_token");
    // The default owner can neither revoke nor see bob's grant.
    let (code, v) = b.cli(&["revoke", &gid]);
    assert_ne!(code, 0, "{v}");
    let (code, _) = b.cli(&["revoke", claims(&at)["jti"].as_str().unwrap()]);
    assert_ne!(code, 0);
    let list = b.cli_ok(&["grant", "list"]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|g| g["grant_id"] != gid.as_str())
    );
    // Bob registers his API; the default owner can neither register it too
    // nor learn about bob's token through a resource server of its own.
    let bobs = b.resource(API, Some("bob"));
    assert_eq!(b.introspect(&bobs, &at).await.body["active"], true);
    let (code, v) = b.cli(&["resource", "add", API]);
    assert_eq!(
        (code, v["error"].as_str()),
        (1, Some("invalid_target")),
        "{v}"
    );
    let mine = b.resource("https://other.example", None);
    assert_eq!(b.introspect(&mine, &at).await.body["active"], false);
    // Bob can.
    let v = b.cli_ok(&["revoke", "--agent", "bobs-bot", "--owner", "bob"]);
    assert_eq!(v["grants"][0], gid.as_str());
    assert_eq!(b.introspect(&bobs, &at).await.body["active"], false);
}

#[tokio::test]
async fn cli_revocation_reaches_stream_subscribers() {
    let b = Broker::start(&[]);
    let agent = key();
    let gid = b
        .enroll(&agent, "bot", "calendar:read", &[])
        .await
        .s("grant_id");
    let mut resp = b.revocation_stream(None).await;
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let v = b.cli_ok(&["revoke", &gid]);
    assert_eq!(v["grants"][0], gid.as_str());
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = resp.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains(&gid) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(found, "stream said: {seen}");
    assert!(seen.contains("event: revocation"));
    assert!(seen.contains("id: "));
    // Resuming after that id yields nothing old.
    let seq: i64 = seen
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut again = b.revocation_stream(Some(seq)).await;
    let got = tokio::time::timeout(Duration::from_millis(700), again.chunk()).await;
    if let Ok(Ok(Some(c))) = got {
        assert!(!String::from_utf8_lossy(&c).contains(&gid));
    }
}

#[tokio::test]
async fn sigterm_stops_the_broker_even_with_open_streams() {
    let mut b = Broker::start(&[]);
    let resp = b.revocation_stream(None).await;
    let status = b.terminate().expect("the broker did not stop");
    assert!(status.success(), "{status:?}");
    drop(resp);
}

/// A broker signalled right after it says it is listening (a service
/// manager stopping it at once) stops gracefully, not by the signal's
/// default action: its handler is in place before that line.
#[tokio::test]
async fn sigterm_right_after_the_listening_line_stops_the_broker_gracefully() {
    for _ in 0..5 {
        let mut b = Broker::start(&[]);
        let status = b.terminate().expect("the broker did not stop");
        assert!(status.success(), "{status:?}");
    }
}
