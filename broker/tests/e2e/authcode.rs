//! Third-party clients against the real binary: RFC 7591 registration, the
//! consent page, the authorization code grant with PKCE and a resource, and
//! the refusals (wrong redirect URI, no PKCE, a reused code, another
//! resource, a wrong verifier).

use protonpass_agent::b64;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::dashboard::{Web, field, signed_in};
use protonpass_e2e::{Broker, audit_records, claims, key};

pub const MCP: &str = "https://mcp.example/mcp";
pub const CB: &str = "http://127.0.0.1:8765/callback";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mJ0kzyAyqhVf7ZJ2t6kBAaVw5Uq0Fg-long-enough";

fn challenge(v: &str) -> String {
    b64::encode(Sha256::digest(v.as_bytes()))
}

async fn register(b: &Broker, body: Value) -> (u16, Value) {
    let r = b
        .http
        .post(format!("{}/oauth/register", b.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

pub fn authorize_query(client_id: &str, extra: &[(&str, &str)]) -> String {
    let ch = challenge(VERIFIER);
    let mut p = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", CB),
        ("code_challenge", ch.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "st-123"),
        ("scope", "travel:search travel:book"),
        ("resource", MCP),
    ];
    for (k, v) in extra {
        p.retain(|(n, _)| n != k);
        if !v.is_empty() {
            p.push((k, v));
        }
    }
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(p)
        .finish()
}

fn query_of(location: &str) -> Vec<(String, String)> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

pub fn param(location: &str, k: &str) -> String {
    query_of(location)
        .into_iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// Approve on the consent page; returns the redirect's `Location`.
pub async fn approve(w: &mut Web, query: &str, scopes: &[&str]) -> String {
    let p = w.get(&format!("/oauth/authorize?{query}")).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let csrf = p.csrf();
    let request = field(&p.body, "request").replace("&amp;", "&");
    let mut form = vec![
        ("csrf", csrf.as_str()),
        ("request", request.as_str()),
        ("ttl", "3600"),
        ("action", "approve"),
    ];
    for s in scopes {
        form.push(("scope", s));
    }
    let p = w.post("/oauth/authorize", &form).await;
    assert_eq!(p.status, 303, "{}", p.body);
    p.location().to_owned()
}

pub async fn redeem(
    b: &Broker,
    k: &protonpass_agent::AgentKey,
    cid: &str,
    code: &str,
    extra: &[(&str, &str)],
) -> protonpass_e2e::Reply {
    let mut p = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CB),
        ("client_id", cid),
        ("code_verifier", VERIFIER),
        ("resource", MCP),
    ];
    for (k, v) in extra {
        p.retain(|(n, _)| n != k);
        if !v.is_empty() {
            p.push((k, v));
        }
    }
    b.token(k, &p).await
}

#[tokio::test]
async fn a_registered_client_gets_a_token_for_exactly_the_approved_resource() {
    let b = Broker::start(&[]);
    let meta = b.get("/.well-known/oauth-authorization-server").await.body;
    assert_eq!(
        meta["authorization_endpoint"],
        json!(format!("{}/oauth/authorize", b.url))
    );
    assert_eq!(
        meta["registration_endpoint"],
        json!(format!("{}/oauth/register", b.url))
    );
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(meta["response_types_supported"], json!(["code"]));
    assert!(
        meta["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("authorization_code"))
    );

    let (status, reg) = register(
        &b,
        json!({"redirect_uris": [CB], "client_name": "Desk <b>assistant</b>",
               "token_endpoint_auth_method": "none"}),
    )
    .await;
    assert_eq!(status, 201, "{reg}");
    let cid = reg["client_id"].as_str().unwrap().to_owned();
    assert_eq!(reg["token_endpoint_auth_method"], "none");

    // Signed out: the consent page waits behind the sign-in page.
    let mut anon = Web::new(&b);
    let q = authorize_query(&cid, &[]);
    let p = anon.get(&format!("/oauth/authorize?{q}")).await;
    assert_eq!(p.status, 303);
    assert!(
        p.location()
            .starts_with("/login?next=%2Foauth%2Fauthorize%3F"),
        "{}",
        p.location()
    );

    let (mut w, _) = signed_in(&b).await;
    let p = w.get(&format!("/oauth/authorize?{q}")).await;
    assert_eq!(p.status, 200, "{}", p.body);
    // What the client asserts is shown inert; the redirect's origin may be a form target.
    assert!(
        p.body.contains("Desk &lt;b&gt;assistant&lt;/b&gt;"),
        "{}",
        p.body
    );
    assert!(p.body.contains("127.0.0.1"));

    // The owner unticks travel:book.
    let loc = approve(&mut w, &q, &["travel:search"]).await;
    assert!(loc.starts_with(&format!("{CB}?code=ac_")), "{loc}");
    assert_eq!(param(&loc, "state"), "st-123");
    assert_eq!(param(&loc, "iss"), b.url);
    let code = param(&loc, "code");

    let k = key();
    let t = redeem(&b, &k, &cid, &code, &[]).await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(t.s("token_type"), "DPoP");
    assert_eq!(t.s("scope"), "travel:search");
    let c = claims(&t.s("access_token"));
    assert_eq!(c["aud"], MCP);
    assert_eq!(c["client_id"], json!(cid));
    assert_eq!(c["cnf"]["jkt"], json!(k.thumbprint()));

    // The refresh token rotates, bound to the same key.
    let r = b.refresh(&k, &t.s("refresh_token")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(claims(&r.s("access_token"))["aud"], MCP);
    // ... and never for another resource.
    let other = b
        .token(
            &k,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &r.s("refresh_token")),
                ("resource", "https://other.example/mcp"),
            ],
        )
        .await;
    assert_eq!(other.error(), "invalid_target", "{}", other.body);

    // The code is single-use: presenting it again revokes what it got.
    let again = redeem(&b, &k, &cid, &code, &[]).await;
    assert_eq!(again.error(), "invalid_grant", "{}", again.body);
    let dead = b.refresh(&k, &r.s("refresh_token")).await;
    assert_eq!(dead.error(), "invalid_grant", "{}", dead.body);
    let events: Vec<String> = audit_records(&b)
        .iter()
        .map(|r| r["event"].as_str().unwrap_or("").to_owned())
        .collect();
    for e in ["client_register", "authorize", "code_grant", "revoke"] {
        assert!(events.iter().any(|x| x == e), "{e} in {events:?}");
    }
}

#[tokio::test]
async fn authorization_requests_that_cannot_be_trusted_are_refused() {
    let b = Broker::start(&[]);
    let (_, reg) = register(&b, json!({"redirect_uris": [CB]})).await;
    let cid = reg["client_id"].as_str().unwrap().to_owned();
    let (mut w, _) = signed_in(&b).await;

    // A redirect URI the client did not register: an error page, nothing sent there.
    for bad in [
        "http://127.0.0.1:8765/other",
        "https://evil.example/cb",
        "http://127.0.0.1:8765/callback#x",
    ] {
        let p = w
            .get(&format!(
                "/oauth/authorize?{}",
                authorize_query(&cid, &[("redirect_uri", bad)])
            ))
            .await;
        assert_eq!(p.status, 400, "{bad}: {}", p.body);
        assert!(p.location().is_empty());
    }
    let p = w
        .get(&format!(
            "/oauth/authorize?{}",
            authorize_query("mcp_unknown", &[])
        ))
        .await;
    assert_eq!(p.status, 400);

    // Anything else is an error for the client, but the browser is never
    // sent to a client's URI unseen (RFC 9700 section 4.11.2): signed out, the
    // owner signs in first; signed in, the owner sees the error and a link
    // back to the application carrying it.
    let mut anon = Web::new(&b);
    let p = anon
        .get(&format!(
            "/oauth/authorize?{}",
            authorize_query(&cid, &[("scope", "nocolon")])
        ))
        .await;
    assert_eq!(p.status, 303);
    assert!(p.location().starts_with("/login?next="), "{}", p.location());
    for (extra, want) in [
        (vec![("code_challenge", "")], "invalid_request"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge_method", "")], "invalid_request"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("resource", "")], "invalid_target"),
        (vec![("scope", "nocolon")], "invalid_scope"),
    ] {
        let p = w
            .get(&format!(
                "/oauth/authorize?{}",
                authorize_query(&cid, &extra)
            ))
            .await;
        assert_eq!(p.status, 400, "{extra:?}: {}", p.body);
        assert!(p.location().is_empty(), "{}", p.location());
        let back = p
            .body
            .split("href=\"")
            .map(|h| h.split('"').next().unwrap().replace("&amp;", "&"))
            .find(|h| h.starts_with(CB))
            .unwrap_or_else(|| panic!("{extra:?}: no link back: {}", p.body));
        assert_eq!(param(&back, "error"), want, "{extra:?}");
        assert_eq!(param(&back, "state"), "st-123");
        assert_eq!(param(&back, "iss"), b.url);
        assert!(p.body.contains(want), "{}", p.body);
    }

    // The owner denies.
    let q = authorize_query(&cid, &[]);
    let p = w.get(&format!("/oauth/authorize?{q}")).await;
    let request = field(&p.body, "request").replace("&amp;", "&");
    let p = w
        .post(
            "/oauth/authorize",
            &[
                ("csrf", &p.csrf()),
                ("request", &request),
                ("action", "deny"),
            ],
        )
        .await;
    assert_eq!(param(p.location(), "error"), "access_denied");
    // A form without the session's token changes nothing.
    let p = w
        .post(
            "/oauth/authorize",
            &[
                ("csrf", "forged"),
                ("request", &request),
                ("action", "approve"),
                ("scope", "travel:search"),
            ],
        )
        .await;
    assert_eq!(p.status, 403);

    // A code is bound to its client, redirect URI, verifier and resource.
    let k = key();
    let code = param(&approve(&mut w, &q, &["travel:search"]).await, "code");
    let (_, other) = register(&b, json!({"redirect_uris": [CB]})).await;
    let other_id = other["client_id"].as_str().unwrap().to_owned();
    let wrong_verifier = "x".repeat(43);
    for (extra, want) in [
        (vec![("client_id", other_id.as_str())], "invalid_grant"),
        (
            vec![("redirect_uri", "http://127.0.0.1:8765/other")],
            "invalid_grant",
        ),
        (
            vec![("code_verifier", wrong_verifier.as_str())],
            "invalid_grant",
        ),
        (vec![("code_verifier", "")], "invalid_request"),
        (
            vec![("resource", "https://other.example/mcp")],
            "invalid_target",
        ),
    ] {
        let r = redeem(&b, &k, &cid, &code, &extra).await;
        assert_eq!(r.error(), want, "{extra:?}: {}", r.body);
    }
    // None of those spent it.
    let ok = redeem(&b, &k, &cid, &code, &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    // Without a DPoP proof there is no token (the resource takes no bearer tokens).
    let code = param(&approve(&mut w, &q, &["travel:search"]).await, "code");
    let r = b
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
                ("client_id", &cid),
                ("code_verifier", VERIFIER),
            ],
            &[],
        )
        .await;
    assert_eq!(r.error(), "invalid_request", "{}", r.body);
    assert!(r.s("error_description").contains("DPoP"), "{}", r.body);
}

#[tokio::test]
async fn registration_holds_clients_to_the_rules() {
    let b = Broker::start(&[]);
    for (body, want) in [
        (
            json!({"redirect_uris": ["http://app.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb#f"]}),
            "invalid_redirect_uri",
        ),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": [CB], "token_endpoint_auth_method": "client_secret_basic"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [CB], "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (json!(["not", "an", "object"]), "invalid_client_metadata"),
    ] {
        let (status, r) = register(&b, body.clone()).await;
        assert_eq!(
            (status, r["error"].as_str().unwrap()),
            (400, want),
            "{body}"
        );
    }
    let r = b
        .http
        .post(format!("{}/oauth/register", b.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("redirect_uris=https://a.example/cb")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // One source registers at most 20 clients an hour.
    let mut last = 0;
    for _ in 0..21 {
        last = register(&b, json!({"redirect_uris": [CB]})).await.0;
    }
    assert_eq!(last, 429);
}

/// A code or refresh redeemed without any DPoP header.
async fn without_dpop(b: &Broker, params: &[(&str, &str)]) -> protonpass_e2e::Reply {
    b.post_form("/oauth/token", params, &[]).await
}

#[tokio::test]
async fn clients_without_dpop_get_short_bearer_tokens_only_where_the_owner_allows() {
    let b = Broker::start(&[]);
    let (_, reg) = register(&b, json!({"redirect_uris": [CB]})).await;
    let cid = reg["client_id"].as_str().unwrap().to_owned();
    let (mut w, _) = signed_in(&b).await;
    let q = authorize_query(&cid, &[]);
    let code_params = |code: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", CB.to_owned()),
            ("client_id", cid.clone()),
            ("code_verifier", VERIFIER.to_owned()),
            ("resource", MCP.to_owned()),
        ]
    };

    // Off by default: an unregistered resource, then a registered one.
    let mut rs = None;
    for register in [false, true] {
        if register {
            rs = Some(b.resource(MCP, None));
        }
        let code = param(&approve(&mut w, &q, &["travel:search"]).await, "code");
        let p = code_params(&code);
        let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = without_dpop(&b, &p).await;
        assert_eq!(r.error(), "invalid_request", "{}", r.body);
        assert!(r.s("error_description").contains("DPoP"), "{}", r.body);
    }

    b.cli_ok(&["resource", "bearer", MCP, "on"]);
    let code = param(&approve(&mut w, &q, &["travel:search"]).await, "code");
    let p = code_params(&code);
    let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let t = without_dpop(&b, &p).await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(t.s("token_type"), "Bearer");
    let c = claims(&t.s("access_token"));
    assert!(c.get("cnf").is_none(), "{c}");
    assert_eq!(c["aud"], MCP);
    assert!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap() <= 600);
    assert!(t.body["expires_in"].as_i64().unwrap() <= 600);

    // The resource can introspect it, as a bearer token.
    let rs = rs.unwrap();
    let i = b.introspect(&rs, &t.s("access_token")).await;
    assert_eq!(
        (i.body["active"].as_bool(), i.s("token_type").as_str()),
        (Some(true), "Bearer"),
        "{}",
        i.body
    );
    assert!(i.body.get("cnf").is_none_or(Value::is_null), "{}", i.body);
    // Its refresh token rotates without a proof, and a proof cannot take it over.
    let r = without_dpop(
        &b,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &t.s("refresh_token")),
        ],
    )
    .await;
    assert_eq!(
        (r.status, r.s("token_type").as_str()),
        (200, "Bearer"),
        "{}",
        r.body
    );
    let k = key();
    let stolen = b.refresh(&k, &r.s("refresh_token")).await;
    assert_eq!(stolen.error(), "invalid_grant", "{}", stolen.body);
    // The client revokes its bearer access token (RFC 7009); it is then inactive.
    let revoked = b
        .post_form(
            "/oauth/revoke",
            &[("token", &t.s("access_token")), ("client_id", &cid)],
            &[],
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let i = b.introspect(&rs, &t.s("access_token")).await;
    assert_eq!(i.body["active"], json!(false), "{}", i.body);
    // A bearer token is no subject for an exchange.
    let x = b
        .exchange(
            &k,
            &r.s("access_token"),
            protonpass_agent::wire::TOKEN_TYPE_ACCESS,
            &[],
        )
        .await;
    assert_eq!(x.error(), "invalid_grant", "{}", x.body);
    // A DPoP client of the same resource still gets DPoP-bound tokens.
    let code = param(&approve(&mut w, &q, &["travel:search"]).await, "code");
    let d = redeem(&b, &k, &cid, &code, &[]).await;
    assert_eq!(d.s("token_type"), "DPoP", "{}", d.body);
    // The audit says which tokens are bearer tokens.
    let grants: Vec<Value> = audit_records(&b)
        .into_iter()
        .filter(|r| r["event"] == "code_grant")
        .collect();
    assert_eq!(
        grants.last().unwrap()["detail"]["bearer"],
        json!(false),
        "{grants:?}"
    );
    assert!(
        grants.iter().any(|g| g["detail"]["bearer"] == json!(true)),
        "{grants:?}"
    );

    // Off again: the refresh token no longer works without a proof.
    b.cli_ok(&["resource", "bearer", MCP, "off"]);
    let r2 = without_dpop(
        &b,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r.s("refresh_token")),
        ],
    )
    .await;
    assert_eq!(r2.error(), "invalid_request", "{}", r2.body);

    // The owner sees the connected application, then disconnects it.
    let apps = w.get("/apps").await;
    assert_eq!(apps.status, 200);
    assert!(
        apps.body.contains(&cid) && apps.body.contains(MCP),
        "{}",
        apps.body
    );
    assert!(
        apps.body.contains("bearer tokens") && apps.body.contains("(DPoP)"),
        "{}",
        apps.body
    );
    let forged = w
        .post("/apps/disconnect", &[("csrf", "x"), ("client_id", &cid)])
        .await;
    assert_eq!(forged.status, 403);
    let p = w
        .post(
            "/apps/disconnect",
            &[("csrf", &apps.csrf()), ("client_id", &cid)],
        )
        .await;
    assert_eq!((p.status, p.location()), (303, "/apps?done=1"));
    let gone = b.refresh(&k, &d.s("refresh_token")).await;
    assert_eq!(gone.error(), "invalid_grant", "{}", gone.body);
    assert!(!w.get("/apps").await.body.contains(&cid));
}
