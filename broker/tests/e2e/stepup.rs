//! Step-up approval (OpenID CIBA, poll mode, RFC 9396 authorization
//! details): the agent asks at `/oauth/bc-authorize` with its DPoP-bound
//! access token, the owner decides, the agent polls the token endpoint, and
//! the one-time token it gets is spent on first use.

use protonpass_agent::{AgentKey, OsRandom, ProofInput, create_proof};
use serde_json::{Value, json};

use protonpass_e2e::{API, Broker, Reply, audit_records, claims, key};

const CIBA: &str = "urn:openid:params:grant-type:ciba";

pub(crate) fn payment(amount: &str) -> String {
    json!([{"type": "payment", "amount": amount, "currency": "EUR", "payee": "Air Example"}])
        .to_string()
}

/// A broker with no poll interval, a resource server for API, and an agent
/// enrolled for payments under 100: (broker, agent key, access token, grant id, resource).
pub(crate) async fn setup() -> (Broker, AgentKey, String, String, (String, String)) {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    let rs = b.resource(API, None);
    let k = key();
    let r = b
        .enroll(&k, "travel", "payment:execute:under-100 trips:book", &[])
        .await;
    (b, k, r.s("access_token"), r.s("grant_id"), rs)
}

/// A backchannel request with `token` and a proof of `k` over it (with the
/// nonce the broker asks for).
pub(crate) async fn ask(b: &Broker, k: &AgentKey, token: &str, params: &[(&str, &str)]) -> Reply {
    let url = format!("{}/oauth/bc-authorize", b.url);
    let mut nonce: Option<String> = None;
    for _ in 0..2 {
        let proof = create_proof(
            k,
            &ProofInput {
                method: "POST",
                url: &url,
                access_token: Some(token),
                nonce: nonce.as_deref(),
                ..Default::default()
            },
            protonpass_agent::Clock::now(&protonpass_agent::SystemClock),
            &OsRandom,
        )
        .unwrap();
        let r = b
            .post_form(
                "/oauth/bc-authorize",
                params,
                &[("authorization", format!("DPoP {token}")), ("DPoP", proof)],
            )
            .await;
        if r.error() != "use_dpop_nonce" {
            return r;
        }
        nonce = r
            .headers
            .get("dpop-nonce")
            .map(|v| v.to_str().unwrap().to_owned());
    }
    panic!("the nonce round did not settle");
}

/// The agent's poll of the token endpoint for request `id`.
pub(crate) async fn poll(b: &Broker, k: &AgentKey, id: &str) -> Reply {
    b.token(k, &[("grant_type", CIBA), ("auth_req_id", id)])
        .await
}

/// The id of the first request waiting for the default owner.
pub(crate) fn first_waiting(b: &Broker) -> String {
    b.cli_ok(&["stepup", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A one-time token for a payment of `amount` EUR, asked by the agent `k`
/// with its token `at` and approved by the owner.
pub(crate) async fn approved(b: &Broker, k: &AgentKey, at: &str, amount: &str) -> String {
    let r = ask(b, k, at, &[("authorization_details", &payment(amount))]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    b.cli_ok(&["stepup", "approve", &first_waiting(b)]);
    let t = poll(b, k, &r.s("auth_req_id")).await;
    assert_eq!(t.status, 200, "{}", t.body);
    t.s("access_token")
}

/// The owner's policy for grant `gid`: approved at once up to `max` EUR.
pub(crate) fn policy_up_to(b: &Broker, gid: &str, max: &str) -> Value {
    b.cli_ok(&[
        "grant",
        "stepup-policy",
        gid,
        "--max",
        max,
        "--currency",
        "EUR",
    ])
}

/// The id (`jti`) of an access token.
pub(crate) fn jti(token: &str) -> String {
    claims(token)["jti"].as_str().unwrap().to_owned()
}

pub(crate) async fn spend(
    b: &Broker,
    rs: &(String, String),
    gid: &str,
    jti: &str,
    amount: &str,
    key: &str,
) -> Reply {
    let r = b
        .http
        .post(format!("{}/budget/spend", b.url))
        .basic_auth(&rs.0, Some(&rs.1))
        .json(
            &json!({"grant_id": gid, "token_id": jti, "scope": "payment:execute",
                      "amount": amount, "currency": "EUR", "idempotency_key": key}),
        )
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    Reply {
        status,
        body: r.json().await.unwrap_or(Value::Null),
        headers,
    }
}

#[tokio::test]
async fn metadata_advertises_the_backchannel_endpoint() {
    let b = Broker::start(&[]);
    let m = b.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(
        m.body["backchannel_authentication_endpoint"],
        format!("{}/oauth/bc-authorize", b.url).as_str()
    );
    assert_eq!(
        m.body["backchannel_token_delivery_modes_supported"],
        json!(["poll"])
    );
    assert_eq!(
        m.body["authorization_details_types_supported"],
        json!(["payment", "scope"])
    );
}

#[tokio::test]
async fn an_approved_payment_gets_a_one_time_token_spent_once() {
    let (b, k, at, gid, rs) = setup().await;
    let r = ask(
        &b,
        &k,
        &at,
        &[
            ("authorization_details", &payment("250")),
            ("binding_message", "Book flight <AB123> & hotel"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.s("auth_req_id");
    assert!(
        id.starts_with("ar_") && r.body["expires_in"] == 300,
        "{}",
        r.body
    );

    let p = poll(&b, &k, &id).await;
    assert_eq!((p.status, p.error()), (400, "authorization_pending"));
    // Another key cannot poll it.
    let p = poll(&b, &key(), &id).await;
    assert_eq!(p.error(), "invalid_grant");

    let list = b.cli_ok(&["stepup", "list"]);
    let w = &list[0];
    assert_eq!(w["agent"], "travel");
    assert_eq!(w["binding_message"], "Book flight <AB123> & hotel");
    assert_eq!(w["authorization_details"][0]["amount"], "250.00");
    b.cli_ok(&["stepup", "approve", w["id"].as_str().unwrap()]);
    // Decided once: a second decision finds nothing waiting.
    assert_ne!(b.cli(&["stepup", "deny", w["id"].as_str().unwrap()]).0, 0);

    let t = poll(&b, &k, &id).await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert!(t.body.get("refresh_token").is_none());
    assert_eq!(t.body["authorization_details"][0]["amount"], "250.00");
    let c = claims(&t.s("access_token"));
    assert_eq!(c["one_time"], true);
    assert_eq!(c["cnf"]["jkt"], k.thumbprint());
    assert_eq!(c["scope"], "payment:execute:under-250.01");
    assert_eq!(c["aud"], API);
    assert_eq!(c["authorization_details"][0]["payee"], "Air Example");
    assert!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap() <= 300);
    // The auth_req_id is spent.
    assert_eq!(poll(&b, &k, &id).await.error(), "invalid_grant");

    // Neither exchanged for a reusable token nor used to ask again.
    let x = b
        .exchange(
            &k,
            &t.s("access_token"),
            "urn:ietf:params:oauth:token-type:access_token",
            &[],
        )
        .await;
    assert_eq!(x.error(), "invalid_grant", "{}", x.body);
    let again = ask(
        &b,
        &k,
        &t.s("access_token"),
        &[("authorization_details", &payment("1"))],
    )
    .await;
    assert_eq!((again.status, again.error()), (401, "invalid_token"));

    let jti = c["jti"].as_str().unwrap();
    // More than approved: refused, and the token is not spent by it.
    let s = spend(&b, &rs, &gid, jti, "250.01", "k0").await;
    assert_eq!(
        (s.status, s.body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let s = spend(&b, &rs, &gid, jti, "250", "k1").await;
    assert_eq!(s.status, 200, "{}", s.body);
    // The same idempotency key answers the same; a new spend is refused.
    assert_eq!(spend(&b, &rs, &gid, jti, "250", "k1").await.status, 200);
    let s = spend(&b, &rs, &gid, jti, "250", "k2").await;
    assert_eq!(
        (s.status, s.body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{}",
        s.body
    );
    let i = b.introspect(&rs, &t.s("access_token")).await;
    assert_eq!(i.body["active"], false);

    let events: Vec<String> = audit_records(&b)
        .iter()
        .map(|r| r["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    for e in [
        "stepup_request",
        "stepup_approve",
        "stepup_token",
        "stepup_redeemed",
        "spend",
    ] {
        assert!(events.iter().any(|x| x == e), "{e} missing from {events:?}");
    }
}

#[tokio::test]
async fn introspection_redeems_a_one_time_token_once() {
    let (b, k, at, _gid, rs) = setup().await;
    policy_up_to(&b, &_gid, "50");
    let details = json!([{"type": "scope", "scope": "calendar:write"}]).to_string();
    // A scope is never auto-approved by a payments policy.
    let r = ask(&b, &k, &at, &[("authorization_details", &details)]).await;
    assert_eq!(
        poll(&b, &k, &r.s("auth_req_id")).await.error(),
        "authorization_pending"
    );
    // A payment within the policy is approved at once.
    let r = ask(&b, &k, &at, &[("authorization_details", &payment("40"))]).await;
    let t = poll(&b, &k, &r.s("auth_req_id")).await;
    assert_eq!(t.status, 200, "{}", t.body);
    let first = b.introspect(&rs, &t.s("access_token")).await;
    assert_eq!(first.body["active"], true, "{}", first.body);
    let second = b.introspect(&rs, &t.s("access_token")).await;
    assert_eq!(second.body["active"], false);
    // Above the policy's maximum: the owner is asked.
    let r = ask(&b, &k, &at, &[("authorization_details", &payment("60"))]).await;
    assert_eq!(
        poll(&b, &k, &r.s("auth_req_id")).await.error(),
        "authorization_pending"
    );
    let by: Vec<Value> = audit_records(&b)
        .into_iter()
        .filter(|r| r["event"] == "stepup_approve")
        .map(|r| r["detail"]["by"].clone())
        .collect();
    assert_eq!(by, vec![json!("policy")]);
}

#[tokio::test]
async fn denial_expiry_and_revocation_end_the_wait_with_typed_errors() {
    let (b, k, at, gid, _rs) = setup().await;
    let r = ask(&b, &k, &at, &[("authorization_details", &payment("150"))]).await;
    let list = b.cli_ok(&["stepup", "list"]);
    b.cli_ok(&["stepup", "deny", list[0]["id"].as_str().unwrap()]);
    assert_eq!(
        poll(&b, &k, &r.s("auth_req_id")).await.error(),
        "access_denied"
    );

    let r = ask(
        &b,
        &k,
        &at,
        &[
            ("authorization_details", &payment("150")),
            ("requested_expiry", "1"),
        ],
    )
    .await;
    assert_eq!(r.body["expires_in"], 1);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        poll(&b, &k, &r.s("auth_req_id")).await.error(),
        "expired_token"
    );

    let r = ask(&b, &k, &at, &[("authorization_details", &payment("150"))]).await;
    b.cli_ok(&["revoke", &gid]);
    let p = poll(&b, &k, &r.s("auth_req_id")).await;
    assert_eq!(p.error(), "invalid_grant", "{}", p.body);
    // A revoked grant's token asks for nothing more.
    let again = ask(&b, &k, &at, &[("authorization_details", &payment("1"))]).await;
    assert_eq!((again.status, again.error()), (401, "invalid_token"));
}

#[tokio::test]
async fn hostile_backchannel_requests_get_typed_errors_and_leave_nothing() {
    let (b, k, at, _gid, _rs) = setup().await;
    b.add_owners(&["mallory"]);
    b.resource("https://mallory.example", Some("mallory"));
    let ok = payment("10");
    // No token, a refresh token, a bearer scheme, another key's proof.
    let none = b
        .post_form(
            "/oauth/bc-authorize",
            &[("authorization_details", &ok)],
            &[],
        )
        .await;
    assert_eq!((none.status, none.error()), (401, "invalid_token"));
    assert!(none.headers.get("www-authenticate").is_some());
    let bearer = b
        .post_form(
            "/oauth/bc-authorize",
            &[("authorization_details", &ok)],
            &[("authorization", format!("Bearer {at}"))],
        )
        .await;
    assert_eq!(bearer.status, 401);
    let stolen = ask(&b, &key(), &at, &[("authorization_details", &ok)]).await;
    assert_eq!(
        (stolen.status, stolen.error()),
        (400, "invalid_dpop_proof"),
        "{}",
        stolen.body
    );

    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![], "invalid_authorization_details"),
        (
            vec![("authorization_details", "{}".into())],
            "invalid_authorization_details",
        ),
        (
            vec![(
                "authorization_details",
                r#"[{"type":"payment","amount":250,"currency":"EUR","payee":"x"}]"#.into(),
            )],
            "invalid_authorization_details",
        ),
        (
            vec![(
                "authorization_details",
                r#"[{"type":"openid_credential"}]"#.into(),
            )],
            "invalid_authorization_details",
        ),
        (
            vec![(
                "authorization_details",
                r#"[{"type":"payment","amount":"1","currency":"EUR","payee":"x","extra":1}]"#
                    .into(),
            )],
            "invalid_authorization_details",
        ),
        (
            vec![
                ("authorization_details", ok.clone()),
                ("binding_message", "line\nbreak".into()),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("authorization_details", ok.clone()),
                ("binding_message", "m".repeat(201)),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("authorization_details", ok.clone()),
                ("requested_expiry", "601".into()),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("authorization_details", ok.clone()),
                ("resource", "https://mallory.example".into()),
            ],
            "invalid_target",
        ),
        (
            vec![
                (
                    "authorization_details",
                    r#"[{"type":"scope","scope":"a:b","locations":["https://x.example"]}]"#.into(),
                ),
                ("resource", API.into()),
            ],
            "invalid_target",
        ),
    ];
    for (params, want) in cases {
        let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = ask(&b, &k, &at, &p).await;
        assert_eq!((r.status, r.error()), (400, want), "{params:?}: {}", r.body);
    }
    assert_eq!(b.cli_ok(&["stepup", "list"]), json!([]));
    assert_eq!(
        b.cli_ok(&["stepup", "list", "--owner", "mallory"]),
        json!([])
    );
    // Bounded: at most five waiting per grant.
    for _ in 0..5 {
        assert_eq!(
            ask(&b, &k, &at, &[("authorization_details", &ok)])
                .await
                .status,
            200
        );
    }
    let r = ask(&b, &k, &at, &[("authorization_details", &ok)]).await;
    assert_eq!((r.status, r.error()), (400, "invalid_request"));
}

#[tokio::test]
async fn the_owner_approves_on_the_dashboard_in_plain_words() {
    let (b, k, at, _gid, _rs) = setup().await;
    let r = ask(
        &b,
        &k,
        &at,
        &[
            ("authorization_details", &payment("250")),
            ("binding_message", "<script>alert(1)</script> Paris trip"),
        ],
    )
    .await;
    let (mut w, _) = crate::dashboard::signed_in(&b).await;
    let p = w.get("/stepup").await;
    assert_eq!(p.status, 200);
    assert!(
        p.body.contains("Pay <strong class=\"amount\">250.00 EUR</strong> to <strong class=\"payee\">Air Example</strong>"),
        "{}",
        p.body
    );
    assert!(
        p.body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt; Paris trip")
    );
    assert!(!p.body.contains("<script>"));
    let id = crate::dashboard::field(&p.body, "id");
    let csrf = p.csrf();
    // A forged form (no or another token) changes nothing.
    let forged = w
        .post(
            "/stepup/decide",
            &[
                ("csrf", "x".repeat(32).as_str()),
                ("id", &id),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(
        poll(&b, &k, &r.s("auth_req_id")).await.error(),
        "authorization_pending"
    );
    let ok = w
        .submit(
            "/stepup/decide",
            &csrf,
            &[("id", &id), ("decision", "approve")],
        )
        .await;
    ok.assert_redirect("/stepup?done=approved");
    assert_eq!(poll(&b, &k, &r.s("auth_req_id")).await.status, 200);
    // Decided once: a second decision finds nothing waiting.
    let again = w
        .submit(
            "/stepup/decide",
            &csrf,
            &[("id", &id), ("decision", "deny")],
        )
        .await;
    assert_eq!(again.status, 404);
}
