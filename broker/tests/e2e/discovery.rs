//! RFC 9728 protected-resource metadata of the gateway's upstreams, and the
//! `resource_metadata` parameter of the gateway's 401 challenges.

use crate::gateway::{AUD, Upstream, add_upstream, rules};
use protonpass_e2e::Broker;

#[tokio::test]
async fn an_upstream_whose_audience_is_its_gateway_url_is_discoverable() {
    let b = Broker::start(&[]);
    let up = Upstream::start().await;
    let base = format!("http://127.0.0.1:{}", up.port);
    let gw = format!("{}/gateway/code", b.url);
    let text = rules("code", &base, true)
        .replace(&format!("audience = \"{AUD}\""), &format!("audience = \"{gw}\""))
        .replace(
            "description = \"A code host for the tests\"",
            "description = \"A code host for the tests\"\nsuggested_scopes = [\"repo:read:proj\", \"misc:read\"]",
        );
    let (code, v) = add_upstream(&b, &text, "default");
    assert_eq!(code, 0, "{v}");
    let m = b
        .get("/.well-known/oauth-protected-resource/gateway/code")
        .await;
    assert_eq!(m.status, 200, "{}", m.body);
    assert_eq!(m.body["resource"], gw.as_str());
    assert_eq!(m.body["authorization_servers"][0], b.url.as_str());
    assert_eq!(m.body["scopes_supported"][1], "misc:read");
    assert_eq!(m.body["dpop_bound_access_tokens_required"], true);
    let r = b.get("/gateway/code/repos/o/proj/x").await;
    assert_eq!(r.status, 401);
    let www = r.headers["www-authenticate"].to_str().unwrap();
    assert!(
        www.contains(&format!(
            "resource_metadata=\"{}/.well-known/oauth-protected-resource/gateway/code\"",
            b.url
        )),
        "{www}"
    );

    // An upstream whose tokens are for another audience is not discoverable
    // through the gateway: its metadata could not name a resource that works.
    let (code, v) = add_upstream(&b, &rules("other", &base, true), "default");
    assert_eq!(code, 0, "{v}");
    let m = b
        .get("/.well-known/oauth-protected-resource/gateway/other")
        .await;
    assert_eq!(m.status, 404);
    let r = b.get("/gateway/other/repos/o/proj/x").await;
    assert_eq!(r.status, 401);
    assert!(
        !r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("resource_metadata")
    );
    assert_eq!(
        b.get("/.well-known/oauth-protected-resource/gateway/nope")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn device_authorization_takes_rfc_8707_resource_indicators() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    let ask = |p: Vec<(&'static str, &'static str)>| {
        let b = &b;
        async move {
            let mut all = vec![("client_id", "travel-bot"), ("scope", "travel:book")];
            all.extend(p);
            b.post_form("/oauth/device_authorization", &all, &[]).await
        }
    };
    for bad in [
        vec![("resource", "https://api.example/#frag")],
        vec![("resource", "not a uri")],
        vec![
            ("resource", "https://api.example"),
            ("audience", "https://other.example"),
        ],
    ] {
        let r = ask(bad.clone()).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_target"),
            "{bad:?}: {}",
            r.body
        );
    }
    // `audience` alone names the audience as well, and the token is for exactly it.
    let d = ask(vec![("audience", "https://api.example/mcp")]).await;
    assert_eq!(d.status, 200, "{}", d.body);
    let (code, v) = b.cli(&["approve", &d.s("user_code")]);
    assert_eq!(code, 0, "{v}");
    let t = crate::device::poll(&b, &protonpass_e2e::key(), &d.s("device_code")).await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(
        protonpass_e2e::claims(&t.s("access_token"))["aud"],
        "https://api.example/mcp"
    );
}
