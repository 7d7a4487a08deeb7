//! Step-up and budgets, the points beside the main flow: a step-up for a
//! scope outside the grant (and one the owner may not give), the owner's
//! auto-approval policy against the budget, refused spends in the verified
//! audit chain, a resource server of another owner on the same audience, and
//! the broker's default request lifetime (`stepup_ttl`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::catalog::{CALENDAR, add_with_catalog};
use crate::stepup::{ask, first_waiting, jti, payment, policy_up_to, poll, setup, spend};
use protonpass_e2e::{API, Broker, audit_records, claims, key};

/// The audit records, waiting a little for those written after the answer
/// (refusals are recorded off the request's path) until `want` holds.
async fn audit_until(b: &Broker, want: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..50 {
        let recs = audit_records(b);
        if want(&recs) {
            return recs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the audit log never showed it: {:?}", audit_records(b));
}

#[tokio::test]
async fn a_scope_outside_the_grant_is_approved_once_and_one_the_owner_may_not_give_is_refused() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    b.add_owners(&["mallory"]);
    // The calendar defines calendar:read and calendar:write; the agent holds read.
    let cal = add_with_catalog(&b, CALENDAR, None);
    let creds = (
        cal["client_id"].as_str().unwrap().to_owned(),
        cal["client_secret"].as_str().unwrap().to_owned(),
    );
    b.resource("https://mallory.example", Some("mallory"));
    let k = key();
    let g = b.create_grant_on("planner", "calendar:read", CALENDAR, &[]);
    let r = b.redeem(&k, g["enrollment_code"].as_str().unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let at = r.s("access_token");
    assert!(!claims(&at)["scope"].as_str().unwrap().contains("write"));

    // Within what the owner may give: its own audience, a catalogued scope.
    let write = json!([{"type": "scope", "scope": "calendar:write"}]).to_string();
    let r = ask(
        &b,
        &k,
        &at,
        &[
            ("authorization_details", &write),
            ("binding_message", "Add the dentist appointment"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.s("auth_req_id");
    assert_eq!(poll(&b, &k, &id).await.error(), "authorization_pending");
    let waiting = b.cli_ok(&["stepup", "list"]);
    assert_eq!(
        waiting[0]["authorization_details"],
        json!([{"type": "scope", "scope": "calendar:write"}])
    );
    assert_eq!(waiting[0]["audience"], CALENDAR);
    b.cli_ok(&["stepup", "approve", waiting[0]["id"].as_str().unwrap()]);
    let t = poll(&b, &k, &id).await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(t.body["scope"], "calendar:write");
    let c = claims(&t.s("access_token"));
    assert_eq!(
        (&c["scope"], &c["aud"], &c["one_time"]),
        (&json!("calendar:write"), &json!(CALENDAR), &json!(true))
    );
    assert_eq!(c["cnf"]["jkt"], k.thumbprint());

    // The calendar API accepts it for calendar:write: its introspection
    // (which redeems a one-time token) answers active with that scope, once.
    let i = b.introspect(&creds, &t.s("access_token")).await;
    assert_eq!(i.body["active"], true, "{}", i.body);
    assert_eq!(i.body["scope"], "calendar:write");
    assert_eq!(i.body["aud"], CALENDAR, "{}", i.body);
    let i = b.introspect(&creds, &t.s("access_token")).await;
    assert_eq!(i.body["active"], false, "{}", i.body);
    // The grant's own token still does not carry it.
    let own = b.introspect(&creds, &at).await;
    assert_eq!(own.body["scope"], "calendar:read", "{}", own.body);

    // What the owner may not give is refused at the request, and nothing waits:
    // a scope the audience's catalog does not define, an audience another
    // owner registered (not shared).
    let refused = [
        (
            json!([{"type": "scope", "scope": "calendar:delete"}]),
            None,
            "invalid_authorization_details",
        ),
        (
            json!([{"type": "scope", "scope": "calendar:write admin:all"}]),
            None,
            "invalid_authorization_details",
        ),
        (
            json!([{"type": "scope", "scope": "files:read",
                    "locations": ["https://mallory.example"]}]),
            None,
            "invalid_target",
        ),
        (
            json!([{"type": "scope", "scope": "files:read"}]),
            Some("https://mallory.example"),
            "invalid_target",
        ),
    ];
    for (details, resource, want) in refused {
        let d = details.to_string();
        let mut params = vec![("authorization_details", d.as_str())];
        if let Some(r) = resource {
            params.push(("resource", r));
        }
        let r = ask(&b, &k, &at, &params).await;
        assert_eq!((r.status, r.error()), (400, want), "{details}: {}", r.body);
    }
    assert_eq!(b.cli_ok(&["stepup", "list"]), json!([]));
    assert_eq!(
        b.cli_ok(&["stepup", "list", "--owner", "mallory"]),
        json!([])
    );
    let recs = audit_records(&b);
    let asked = recs
        .iter()
        .filter(|r| r["event"] == "stepup_request")
        .count();
    assert_eq!(asked, 1, "only the accepted request is a stepup_request");
}

/// Set a daily `payment:execute` budget of `limit` EUR on grant `gid`.
fn day_budget(b: &Broker, gid: &str, limit: &str) {
    b.cli_ok(&protonpass_e2e::payment_budget_args(
        gid, limit, "EUR", "day",
    ));
}

#[tokio::test]
async fn the_policy_approves_under_its_maximum_only_while_the_budget_lasts() {
    let (b, k, at, gid, rs) = setup().await;
    day_budget(&b, &gid, "100");
    // "Automatic under 50 EUR, ask me above."
    let set = policy_up_to(&b, &gid, "50");
    assert!(set.to_string().contains("50.00"), "{set}");

    // Under the maximum, within the budget (100 left): approved at once.
    let r = ask(&b, &k, &at, &[("authorization_details", &payment("50"))]).await;
    let t = poll(&b, &k, &r.s("auth_req_id")).await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(
        claims(&t.s("access_token"))["scope"],
        "payment:execute:under-50.01"
    );

    // 70 spent: 30 left today.
    let s = spend(&b, &rs, &gid, &jti(&at), "70", "hotel").await;
    assert_eq!(s.body["remaining"], "30.00", "{}", s.body);

    // Under the maximum but over what the budget has left: the owner is asked.
    let r = ask(&b, &k, &at, &[("authorization_details", &payment("40"))]).await;
    let over_budget = r.s("auth_req_id");
    assert_eq!(
        poll(&b, &k, &over_budget).await.error(),
        "authorization_pending"
    );
    // Under the maximum and within what is left: approved, and it spends.
    let r = ask(&b, &k, &at, &[("authorization_details", &payment("25"))]).await;
    let t = poll(&b, &k, &r.s("auth_req_id")).await;
    assert_eq!(t.status, 200, "{}", t.body);
    let s = spend(&b, &rs, &gid, &jti(&t.s("access_token")), "25", "taxi").await;
    assert_eq!(
        (s.status, &s.body["remaining"]),
        (200, &json!("5.00")),
        "{}",
        s.body
    );
    // Above the maximum: asked, whatever the budget.
    let r = ask(&b, &k, &at, &[("authorization_details", &payment("50.01"))]).await;
    assert_eq!(
        poll(&b, &k, &r.s("auth_req_id")).await.error(),
        "authorization_pending"
    );
    // Another currency than the policy's: asked.
    let yen =
        json!([{"type": "payment", "amount": "10", "currency": "USD", "payee": "Air Example"}]);
    let r = ask(&b, &k, &at, &[("authorization_details", &yen.to_string())]).await;
    assert_eq!(
        poll(&b, &k, &r.s("auth_req_id")).await.error(),
        "authorization_pending"
    );

    let waiting = b.cli_ok(&["stepup", "list"]);
    let amounts: Vec<&str> = waiting
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["authorization_details"][0]["amount"].as_str().unwrap())
        .collect();
    assert_eq!(amounts.len(), 3, "{waiting}");
    for a in ["40.00", "50.01", "10.00"] {
        assert!(amounts.contains(&a), "{a} not waiting: {amounts:?}");
    }
    let by: Vec<Value> = audit_records(&b)
        .into_iter()
        .filter(|r| r["event"] == "stepup_approve")
        .map(|r| r["detail"]["by"].clone())
        .collect();
    assert_eq!(by, vec![json!("policy"), json!("policy")]);
}

#[tokio::test]
async fn refused_spends_are_in_the_audit_chain_and_the_chain_verifies() {
    let (b, k, at, gid, rs) = setup().await;
    day_budget(&b, &gid, "100");
    // A step-up request and the owner's denial.
    let r = ask(&b, &k, &at, &[("authorization_details", &payment("150"))]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    b.cli_ok(&["stepup", "deny", &first_waiting(&b)]);
    let token = jti(&at);
    assert_eq!(spend(&b, &rs, &gid, &token, "60", "a").await.status, 200);
    let s = spend(&b, &rs, &gid, &token, "50", "b").await;
    assert_eq!(s.status, 403, "{}", s.body);
    assert_eq!(s.body["error"], "budget_exceeded");
    let www = s.headers["www-authenticate"].to_str().unwrap();
    assert!(www.contains("error=\"budget_exceeded\""), "{www}");
    // Above the token's per-call limit: refused too.
    let s = spend(&b, &rs, &gid, &token, "100", "c").await;
    assert_eq!(s.body["error"], "insufficient_scope", "{}", s.body);

    let recs = audit_until(&b, |recs| {
        recs.iter()
            .filter(|r| r["event"] == "rejected" && r["detail"]["request"] == "spend")
            .count()
            == 2
    })
    .await;
    let refused: Vec<&Value> = recs
        .iter()
        .filter(|r| r["event"] == "rejected" && r["detail"]["request"] == "spend")
        .map(|r| &r["detail"])
        .collect();
    let d = refused
        .iter()
        .find(|d| d["error"] == "budget_exceeded")
        .unwrap_or_else(|| panic!("{refused:?}"));
    assert_eq!(
        (
            &d["gid"],
            &d["amount"],
            &d["currency"],
            &d["key"],
            &d["resource"]
        ),
        (
            &json!(gid),
            &json!("50"),
            &json!("EUR"),
            &json!("b"),
            &json!(rs.0)
        )
    );
    assert!(refused.iter().any(|d| d["error"] == "insufficient_scope"));
    // The refusals spent nothing: one spend record, 40 left.
    assert_eq!(recs.iter().filter(|r| r["event"] == "spend").count(), 1);
    let show = b.cli_ok(&["grant", "show", &gid]);
    assert_eq!(show["budgets"][0]["remaining"], "40.00", "{show}");
    for e in ["stepup_request", "stepup_deny", "spend", "rejected"] {
        assert!(recs.iter().any(|r| r["event"] == e), "{e} missing");
    }
    // Every record, refusals included, is in the verified hash chain.
    let v = b.cli_ok(&["audit", "verify"]);
    assert_eq!(v["ok"], true, "{v}");
    let last = recs.last().unwrap();
    assert!(
        v["head_seq"].as_i64().unwrap() >= last["seq"].as_i64().unwrap(),
        "{v}"
    );
    let seqs: Vec<i64> = recs.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[tokio::test]
async fn a_resource_server_of_another_owner_on_the_same_audience_spends_nothing() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    b.add_owners(&["mallory"]);
    // The owner grants an audience nobody registered yet, with a budget.
    let k = key();
    let r = b
        .enroll(
            &k,
            "travel",
            "payment:execute:under-100",
            &["--budget", "payment:execute=300/EUR/day"],
        )
        .await;
    let (at, gid) = (r.s("access_token"), r.s("grant_id"));
    // The policy gives the agent a one-time token for 20 EUR.
    policy_up_to(&b, &gid, "50");
    let r = ask(&b, &k, &at, &[("authorization_details", &payment("20"))]).await;
    let t = poll(&b, &k, &r.s("auth_req_id")).await;
    assert_eq!(t.status, 200, "{}", t.body);
    let one = jti(&t.s("access_token"));
    // Another owner then registers that audience for itself (not shared).
    let theirs = b.resource(API, Some("mallory"));
    let s = spend(&b, &theirs, &gid, &jti(&at), "10", "steal-1").await;
    assert_eq!(
        (s.status, s.body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{}",
        s.body
    );
    // Nor with the one-time token.
    let s = spend(&b, &theirs, &gid, &one, "20", "steal-2").await;
    assert_eq!(s.body["error"], "invalid_grant", "{}", s.body);
    // Its introspection does not redeem it either.
    let i = b.introspect(&theirs, &t.s("access_token")).await;
    assert_eq!(i.body["active"], false, "{}", i.body);

    let show = b.cli_ok(&["grant", "show", &gid]);
    assert_eq!(
        (
            &show["budgets"][0]["spent"],
            &show["budgets"][0]["remaining"]
        ),
        (&json!("0.00"), &json!("300.00")),
        "{show}"
    );
    let recs = audit_records(&b);
    assert!(
        !recs
            .iter()
            .any(|r| r["event"] == "spend" || r["event"] == "stepup_redeemed"),
        "{recs:?}"
    );
    // The refund of a key it never spent under is refused too.
    let rf = b
        .http
        .post(format!("{}/budget/refund", b.url))
        .basic_auth(&theirs.0, Some(&theirs.1))
        .json(&json!({"grant_id": gid, "idempotency_key": "steal-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(rf.status(), 400);
}

#[tokio::test]
async fn the_broker_sets_how_long_a_request_waits() {
    let b = Broker::start(&[
        ("PROTONPASS_BROKER_DEVICE_INTERVAL", "0"),
        ("PROTONPASS_BROKER_STEPUP_TTL", "1"),
    ]);
    b.resource(API, None);
    let k = key();
    let at = b
        .enroll(&k, "travel", "payment:execute:under-100", &[])
        .await
        .s("access_token");
    let r = ask(&b, &k, &at, &[("authorization_details", &payment("150"))]).await;
    assert_eq!(r.body["expires_in"], 1, "{}", r.body);
    // The agent may still ask for another lifetime, up to 600 s.
    let r2 = ask(
        &b,
        &k,
        &at,
        &[
            ("authorization_details", &payment("150")),
            ("requested_expiry", "600"),
        ],
    )
    .await;
    assert_eq!(r2.body["expires_in"], 600, "{}", r2.body);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        poll(&b, &k, &r.s("auth_req_id")).await.error(),
        "expired_token"
    );
    assert_eq!(
        poll(&b, &k, &r2.s("auth_req_id")).await.error(),
        "authorization_pending"
    );
    // Past ten minutes is refused at start.
    let dir = tempfile::tempdir().unwrap();
    let e = protonpass_e2e::serve_refused(dir.path(), &["--stepup-ttl", "11m"], &[]);
    assert_eq!(e["error"], "invalid_request", "{e}");
}
