//! Scope catalogs on resources (`resource add --scopes FILE`) and resource
//! self-registration (`resource invite`, `POST /resource/register`).

use serde_json::{Value, json};

use crate::device::{poll, start_device};
use protonpass_e2e::{API, Broker, PRE_AUTHORIZED_CODE, Reply, audit_records, claims, key};

pub(crate) const CALENDAR: &str = "https://calendar.example";

/// Two calendar scopes, one of low and one of medium risk.
pub(crate) const CATALOG: &str = include_str!("../fixtures/catalogs/calendar.toml");

/// `resource add AUDIENCE --scopes FILE` with `CATALOG` in the file, for
/// `owner` when given; answers what the CLI printed.
pub(crate) fn add_with_catalog(b: &Broker, audience: &str, owner: Option<&str>) -> Value {
    let path = b
        .data
        .join(format!("{}-scopes.toml", owner.unwrap_or("calendar")));
    std::fs::write(&path, CATALOG).unwrap();
    let mut args = vec![
        "resource",
        "add",
        audience,
        "--scopes",
        path.to_str().unwrap(),
    ];
    if let Some(o) = owner {
        args.extend_from_slice(&["--owner", o]);
    }
    b.cli_ok(&args)
}

fn with_catalog(b: &Broker) {
    let v = add_with_catalog(b, CALENDAR, None);
    assert_eq!(v["scopes"][0]["name"], "calendar:read");
    assert_eq!(v["scopes"][1]["risk"], "medium");
}

async fn device(b: &Broker, scope: &str, resource: &str) -> Reply {
    b.device_authorization("travel-bot", scope, resource).await
}

#[tokio::test]
async fn undefined_scopes_never_reach_an_owner() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    with_catalog(&b);
    let shown = b.cli_ok(&["resource", "show", CALENDAR]);
    assert_eq!(shown["scopes"].as_array().unwrap().len(), 2);

    for bad in [
        "calendar:read-evil",
        "calendar:read calendar:delete",
        "mail:read",
    ] {
        let r = device(&b, bad, CALENDAR).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_scope"),
            "{bad}: {}",
            r.body
        );
    }
    assert_eq!(b.cli_ok(&["pending"]).as_array().unwrap().len(), 0);
    // Narrower forms of a defined scope, and protocol scopes, are fine.
    let ok = device(&b, "calendar:read:primary offline_access", CALENDAR).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    // A resource without a catalog keeps accepting any well-formed scope.
    let r = device(&b, "anything:goes", API).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // An approval naming the catalogued audience for a request without one
    // is refused too.
    let d = start_device(&b, "calendar:delete", None).await;
    let (code, v) = b.cli(&["approve", &d.s("user_code"), "--audience", CALENDAR]);
    assert_ne!(code, 0);
    assert_eq!(v["error"], "invalid_scope", "{v}");
    let refused: Vec<Value> = audit_records(&b)
        .into_iter()
        .filter(|r| r["event"] == "rejected" && r["detail"]["error"] == "invalid_scope")
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");

    // The approved request yields a token with exactly the defined scope.
    let (code, v) = b.cli(&["approve", &ok.s("user_code")]);
    assert_eq!(code, 0, "{v}");
    let t = poll(&b, &key(), &ok.s("device_code")).await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(
        claims(&t.s("access_token"))["scope"],
        "calendar:read:primary"
    );
}

#[tokio::test]
async fn grants_tokens_and_exchanges_keep_to_the_catalog() {
    let b = Broker::start(&[]);
    with_catalog(&b);
    let (code, v) = b.cli(&[
        "grant",
        "create",
        "--agent",
        "a",
        "--scope",
        "calendar:read-evil",
        "--audience",
        CALENDAR,
    ]);
    assert_ne!(code, 0);
    assert_eq!(v["error"], "invalid_scope", "{v}");
    // A grant for two APIs carries each one's scopes; each token only its own.
    let g = b.create_grant_on(
        "a",
        "calendar:read travel:book",
        CALENDAR,
        &["--audience", API],
    );
    let k = key();
    let t = b
        .token(
            &k,
            &[
                ("grant_type", PRE_AUTHORIZED_CODE),
                (
                    "pre-authorized_code",
                    g["enrollment_code"].as_str().unwrap(),
                ),
                ("resource", CALENDAR),
            ],
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.body);
    let c = claims(&t.s("access_token"));
    assert_eq!(
        (c["aud"].as_str(), c["scope"].as_str()),
        (Some(CALENDAR), Some("calendar:read"))
    );
    let rt = t.s("refresh_token");
    // Asking by name for a scope the resource never defined is invalid_scope,
    // and spends nothing.
    let r = b
        .token(
            &k,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
                ("scope", "calendar:read-evil"),
                ("resource", CALENDAR),
            ],
        )
        .await;
    assert_eq!((r.status, r.error()), (400, "invalid_scope"), "{}", r.body);
    let r = b
        .exchange(
            &k,
            &t.s("access_token"),
            protonpass_agent::wire::TOKEN_TYPE_ACCESS,
            &[("scope", "calendar:admin")],
        )
        .await;
    assert_eq!((r.status, r.error()), (400, "invalid_scope"), "{}", r.body);
    let r = b
        .token(
            &k,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
                ("resource", API),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        claims(&r.s("access_token"))["scope"],
        "calendar:read travel:book"
    );
}

async fn register(b: &Broker, token: Option<&str>, body: &str) -> Reply {
    let mut req = b
        .http
        .post(format!("{}/resource/register", b.url))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let r = req.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let text = r.text().await.unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

fn invite(b: &Broker, owner: &str, audience: &str) -> String {
    let v = b.cli_ok(&[
        "resource", "invite", audience, "--owner", owner, "--ttl", "10m",
    ]);
    assert!(
        v["registration_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/resource/register")
    );
    v["registration_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_resource_registers_itself_once_per_invitation() {
    let b = Broker::start(&[]);
    b.add_owners(&["alice", "bob"]);
    let body = json!({"resource": "https://travel.example/mcp", "shared": false, "scopes": [
        {"name": "travel:search", "description": "Search flights", "risk": "low"},
        {"name": "travel:book", "description": "Book flights", "risk": "medium"}]})
    .to_string();
    let t = invite(&b, "alice", "https://travel.example/mcp");
    // The invitation registers the audience it names, unshared as it said:
    // nothing else, and a refusal leaves it unspent.
    let other = json!({"resource": "https://pay.example/api", "shared": false, "scopes": []});
    let r = register(&b, Some(&t), &other.to_string()).await;
    assert_eq!((r.status, r.error()), (400, "invalid_target"), "{}", r.body);
    let as_shared = json!({"resource": "https://travel.example/mcp", "shared": true, "scopes": []});
    let r = register(&b, Some(&t), &as_shared.to_string()).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_request"),
        "{}",
        r.body
    );
    assert!(!audit_records(&b).iter().any(|r| r.to_string().contains(&t)));

    // Hostile requests first: none spends the invitation.
    let r = register(&b, None, &body).await;
    assert_eq!((r.status, r.error()), (401, "invalid_token"));
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    let r = register(&b, Some("rri_wrong"), &body).await;
    assert_eq!((r.status, r.error()), (401, "invalid_token"));
    let r = register(&b, Some(&t), "{not json").await;
    assert_eq!((r.status, r.error()), (400, "invalid_request"));
    let r = register(
        &b,
        Some(&t),
        &json!({"resource": "https://x.example", "extra": 1}).to_string(),
    )
    .await;
    assert_eq!((r.status, r.error()), (400, "invalid_request"));
    let r = register(&b, Some(&t), &json!({"resource": "not a url"}).to_string()).await;
    assert_eq!((r.status, r.error()), (400, "invalid_target"));
    let bad_scope = json!({"resource": "https://x.example", "scopes": [
        {"name": "x:y", "description": "d", "risk": "severe"}]});
    let r = register(&b, Some(&t), &bad_scope.to_string()).await;
    assert_eq!((r.status, r.error()), (400, "invalid_scope"), "{}", r.body);
    let r = register(&b, Some(&t), &"x".repeat(70 * 1024)).await;
    assert_eq!(r.status, 413);

    let first = register(&b, Some(&t), &body).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["audience"], "https://travel.example/mcp");
    assert_eq!(first.body["scopes"][1]["description"], "Book flights");
    assert!(first.s("client_secret").len() >= 32);
    let shown = b.cli_ok(&[
        "resource",
        "show",
        "https://travel.example/mcp",
        "--owner",
        "alice",
    ]);
    assert_eq!(shown["scopes"][0]["name"], "travel:search");
    // Single use.
    let again = register(&b, Some(&t), &body).await;
    assert_eq!((again.status, again.error()), (401, "invalid_token"));

    // A second invitation of the same owner updates the catalog and the secret.
    let t2 = invite(&b, "alice", "https://travel.example/mcp");
    let upd = json!({"resource": "https://travel.example/mcp", "scopes": [
        {"name": "travel:search", "description": "Search flights", "risk": "low"}]});
    let second = register(&b, Some(&t2), &upd.to_string()).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.s("client_id"), first.s("client_id"));
    assert_ne!(second.s("client_secret"), first.s("client_secret"));
    let old = b
        .introspect(&(first.s("client_id"), first.s("client_secret")), "x")
        .await;
    assert_eq!(old.error(), "invalid_client");
    let new = b
        .introspect(&(second.s("client_id"), second.s("client_secret")), "x")
        .await;
    assert_eq!(new.status, 200);
    let r = device_for(&b, "travel:book", "https://travel.example/mcp").await;
    assert_eq!(r.error(), "invalid_scope");

    // Another owner gets no invitation for the audience at all.
    let (code, v) = b.cli(&[
        "resource",
        "invite",
        "https://travel.example/mcp",
        "--owner",
        "bob",
    ]);
    assert_eq!(
        (code, v["error"].as_str()),
        (1, Some("invalid_target")),
        "{v}"
    );
    let audits = audit_records(&b);
    assert!(
        audits
            .iter()
            .any(|r| r["event"] == "resource_update" && r["owner"] == "alice")
    );
    assert!(audits.iter().any(|r| r["event"] == "rejected"
        && r["detail"]["request"] == "resource_register"
        && r["detail"]["error"] == "invalid_target"));
    assert!(
        !audits
            .iter()
            .any(|r| r.to_string().contains(&second.s("client_secret")))
    );
}

async fn device_for(b: &Broker, scope: &str, resource: &str) -> Reply {
    device(b, scope, resource).await
}

#[tokio::test]
async fn the_approval_page_shows_the_catalog_words() {
    let b = Broker::start(&[]);
    let path = b.data.join("travel.toml");
    std::fs::write(
        &path,
        "[[scope]]\nname = \"travel:book\"\ndescription = \"Book flights\"\nrisk = \"medium\"\n\
         [[scope]]\nname = \"payment:execute:under-500\"\ndescription = \"Pay up to 500 EUR per payment\"\nrisk = \"high\"\n",
    )
    .unwrap();
    b.cli_ok(&["resource", "add", API, "--scopes", path.to_str().unwrap()]);
    let d = device(&b, "travel:book payment:execute:under-100", API).await;
    assert_eq!(d.status, 200, "{}", d.body);
    let (mut w, csrf) = crate::dashboard::signed_in(&b).await;
    let p = w.lookup(&csrf, &d.s("user_code")).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("Book flights"), "{}", p.body);
    assert!(
        p.body.contains(
            "Pay up to 500 EUR per payment <strong class=\"risk high\">high risk</strong>"
        ),
        "{}",
        p.body
    );
    assert!(
        p.body
            .contains("<code class=\"raw\">payment:execute:under-100</code>")
    );
}
