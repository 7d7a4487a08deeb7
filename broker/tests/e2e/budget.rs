//! Spend budgets: set by the owner (CLI), spent and refunded by resource
//! servers through `POST /budget/spend` and `/budget/refund`.

use serde_json::{Value, json};

use protonpass_e2e::{
    API, Broker, Reply, audit_records, grant_create_args, key, payment_budget_args,
};

async fn call(b: &Broker, path: &str, rs: &(String, String), body: Value) -> Reply {
    let r = b
        .http
        .post(format!("{}{path}", b.url))
        .basic_auth(&rs.0, Some(&rs.1))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        body,
        headers,
    }
}

/// An enrolled agent with a daily budget of 500 EUR on payment:execute, and
/// a resource server for its audience: (grant id, token id, resource).
async fn setup(b: &Broker, limit: &str) -> (String, String, (String, String)) {
    let rs = b.resource(API, None);
    let r = b
        .enroll(
            &key(),
            "travel",
            "payment:execute:under-100 trips:book",
            &[],
        )
        .await;
    let gid = r.s("grant_id");
    let jti = protonpass_e2e::claims(&r.s("access_token"))["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    b.cli_ok(&payment_budget_args(&gid, limit, "EUR", "day"));
    (gid, jti, rs)
}

fn refund(gid: &str, key: &str) -> Value {
    json!({"grant_id": gid, "idempotency_key": key})
}

fn spend(gid: &str, jti: &str, amount: &str, key: &str) -> Value {
    json!({"grant_id": gid, "token_id": jti, "scope": "payment:execute",
           "amount": amount, "currency": "EUR", "idempotency_key": key})
}

#[tokio::test]
async fn spends_count_against_the_budget_once_per_key_and_refunds_give_back() {
    let b = Broker::start(&[]);
    let (gid, jti, rs) = setup(&b, "100").await;

    let r = call(&b, "/budget/spend", &rs, spend(&gid, &jti, "60.50", "k1")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["remaining"], "39.50");
    assert_eq!(r.body["limit"], "100.00");
    assert_eq!(r.body["period"], "day");
    // The same key again: the same answer, nothing spent twice.
    let again = call(&b, "/budget/spend", &rs, spend(&gid, &jti, "60.50", "k1")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, r.body);
    // The same key for another amount is a caller's bug.
    let other = call(&b, "/budget/spend", &rs, spend(&gid, &jti, "1", "k1")).await;
    assert_eq!(other.error(), "invalid_request", "{}", other.body);

    // Over the budget: 403 budget_exceeded, with a challenge; nothing spent.
    let over = call(&b, "/budget/spend", &rs, spend(&gid, &jti, "40", "k2")).await;
    assert_eq!(over.status, 403, "{}", over.body);
    assert_eq!(over.error(), "budget_exceeded");
    let www = over.headers["www-authenticate"].to_str().unwrap();
    assert!(www.contains("error=\"budget_exceeded\""), "{www}");
    // Over the per-call limit of the token (under-100): insufficient_scope.
    let big = call(&b, "/budget/spend", &rs, spend(&gid, &jti, "100", "k3")).await;
    assert_eq!(big.error(), "insufficient_scope", "{}", big.body);

    let show = b.cli_ok(&["grant", "show", &gid]);
    assert_eq!(show["budgets"][0]["spent"], "60.50", "{show}");
    assert_eq!(show["budgets"][0]["remaining"], "39.50");
    assert_eq!(show["budgets"][0]["currency"], "EUR");

    // Refund by the original key gives it back, once.
    let rf = call(&b, "/budget/refund", &rs, refund(&gid, "k1")).await;
    assert_eq!(rf.status, 200, "{}", rf.body);
    assert_eq!(rf.body["refunded"], true);
    assert_eq!(rf.body["remaining"], "100.00");
    let rf2 = call(&b, "/budget/refund", &rs, refund(&gid, "k1")).await;
    assert_eq!(rf2.body, rf.body);
    // A refunded key stays spent: it does not spend again, and the retry is
    // refused (never the first answer again, which would read as paid).
    let replay = call(&b, "/budget/spend", &rs, spend(&gid, &jti, "60.50", "k1")).await;
    assert_eq!(
        (replay.status, replay.error()),
        (400, "invalid_request"),
        "{}",
        replay.body
    );
    assert_eq!(
        replay.body["error_description"],
        "the spend under this idempotency key was given back: a new call needs a new key"
    );
    let show = b.cli_ok(&["grant", "show", &gid]);
    assert_eq!(show["budgets"][0]["spent"], "0.00", "{show}");
    let unknown = call(&b, "/budget/refund", &rs, refund(&gid, "nope")).await;
    assert_eq!(unknown.error(), "invalid_request");

    let now_ok = call(&b, "/budget/spend", &rs, spend(&gid, &jti, "99.99", "k4")).await;
    assert_eq!(now_ok.body["remaining"], "0.01", "{}", now_ok.body);

    // Every spend and refund is in the chain, and the chain holds.
    let recs = audit_records(&b);
    let events: Vec<&str> = recs.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(
        events.iter().filter(|e| **e == "spend").count(),
        2,
        "{events:?}"
    );
    assert_eq!(events.iter().filter(|e| **e == "refund").count(), 1);
    assert!(events.contains(&"budget_set"));
    let v = b.cli_ok(&["audit", "verify"]);
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test]
async fn only_the_grants_own_resource_spends_and_revocation_stops_it_at_once() {
    let b = Broker::start(&[]);
    let (gid, jti, rs) = setup(&b, "500").await;
    // Another audience's resource server cannot spend on this grant.
    let other = b.resource("https://other.example", None);
    let r = call(&b, "/budget/spend", &other, spend(&gid, &jti, "1", "a")).await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.body);
    // Wrong secret: 401 invalid_client.
    let bad = (rs.0.clone(), "wrong".to_owned());
    let r = call(&b, "/budget/spend", &bad, spend(&gid, &jti, "1", "a")).await;
    assert_eq!(r.status, 401);
    // The credentials are what a caller hears about first, whatever the body
    // (they are checked in the spend's own transaction, or before any
    // refusal of the body).
    for (path, body) in [
        ("/budget/spend", json!([1])),
        ("/budget/spend", spend(&gid, &jti, "0", "a")),
        ("/budget/refund", refund(&gid, "")),
        ("/budget/refund", refund(&gid, "a")),
    ] {
        let r = call(&b, path, &bad, body.clone()).await;
        assert_eq!(r.status, 401, "{path} {body}: {}", r.body);
        assert_eq!(r.error(), "invalid_client", "{}", r.body);
    }
    // Hostile bodies get typed errors.
    for body in [
        spend(&gid, &jti, "1.001", "a"),
        spend(&gid, &jti, "-1", "a"),
        spend(&gid, &jti, "1e2", "a"),
        spend(&gid, &jti, "0", "a"),
        spend(&gid, &jti, "1", ""),
        json!({"grant_id": gid, "token_id": jti, "scope": "payment:execute", "amount": 1.5,
               "currency": "EUR", "idempotency_key": "a"}),
        json!({"grant_id": gid}),
        json!([1]),
        spend(&gid, &jti, "1", "a")
            .as_object()
            .map(|o| {
                let mut o = o.clone();
                o.insert("scope".into(), "payment:execute:under-5".into());
                Value::Object(o)
            })
            .unwrap(),
    ] {
        let r = call(&b, "/budget/spend", &rs, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(
            matches!(r.error(), "invalid_request" | "invalid_scope"),
            "{}",
            r.body
        );
    }
    // The budget's currency only.
    let mut usd = spend(&gid, &jti, "1", "usd");
    usd["currency"] = "USD".into();
    assert_eq!(
        call(&b, "/budget/spend", &rs, usd).await.error(),
        "invalid_request"
    );

    assert_eq!(
        call(&b, "/budget/spend", &rs, spend(&gid, &jti, "1", "x"))
            .await
            .status,
        200
    );
    b.cli_ok(&["revoke", &gid]);
    let r = call(&b, "/budget/spend", &rs, spend(&gid, &jti, "1", "y")).await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.body);
    // Giving back still works after revocation.
    let rf = call(&b, "/budget/refund", &rs, refund(&gid, "x")).await;
    assert_eq!(rf.status, 200, "{}", rf.body);
}

#[test]
fn sixty_four_parallel_spends_of_ten_against_five_hundred_exactly_fifty_succeed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let b = Broker::start(&[]);
    let (gid, jti, rs) = rt.block_on(setup(&b, "500"));
    // On PostgreSQL, half of them go through a second broker process on the
    // same database (a replica); SQLite has one serving process.
    let replica = protonpass_e2e::on_postgres().then(|| Broker::start_in(&b.data, &[]));
    let urls: Vec<String> = std::iter::once(&b)
        .chain(replica.as_ref())
        .map(|x| format!("{}/budget/spend", x.url))
        .collect();
    // 64 OS threads, each with its own connection, released at once.
    let gate = std::sync::Arc::new(std::sync::Barrier::new(64));
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let (url, gid, jti, rs, gate) = (
                urls[i % urls.len()].clone(),
                gid.clone(),
                jti.clone(),
                rs.clone(),
                gate.clone(),
            );
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let http = reqwest::Client::new();
                    gate.wait();
                    http.post(&url)
                        .basic_auth(&rs.0, Some(&rs.1))
                        .json(&spend(&gid, &jti, "10", &format!("p{i}")))
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
        })
        .collect();
    let codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 50, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 403).count(), 14, "{codes:?}");
    let show = b.cli_ok(&["grant", "show", &gid]);
    assert_eq!(show["budgets"][0]["spent"], "500.00", "{show}");
    assert_eq!(show["budgets"][0]["remaining"], "0.00");
}

#[test]
fn budgets_are_set_at_creation_and_checked() {
    let b = Broker::start(&[]);
    let g = b.create_grant(
        "a",
        "payment:execute",
        &["--budget", "payment:execute=25.5/EUR/week"],
    );
    let gid = g["grant_id"].as_str().unwrap();
    let show = b.cli_ok(&["grant", "show", gid]);
    assert_eq!(show["budgets"][0]["limit"], "25.50", "{show}");
    assert_eq!(show["budgets"][0]["period"], "week");
    assert_eq!(show["budgets"][0]["spent"], "0.00");
    // A budget on a scope the grant lacks, or malformed, creates nothing.
    for bad in [
        "calendar:read=5/EUR/day",
        "payment:execute=5/EUR/year",
        "payment:execute=5.001/EUR/day",
        "payment:execute=5/eur/day",
        "payment:execute=5",
    ] {
        let mut args = grant_create_args("b", "payment:execute", API);
        args.extend_from_slice(&["--budget", bad]);
        let (code, v) = b.cli(&args);
        assert_ne!(code, 0, "{bad}: {v}");
    }
    let list = b.cli_ok(&["grant", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // Replacing keeps one budget per scope.
    let v = b.cli_ok(&payment_budget_args(gid, "1000", "JPY", "total"));
    assert_eq!(v["limit"], "1000");
    let show = b.cli_ok(&["grant", "show", gid]);
    assert_eq!(show["budgets"].as_array().unwrap().len(), 1);
    assert_eq!(show["budgets"][0]["period_ends_at"], Value::Null);
    // Another owner's grant is unknown.
    b.add_owners(&["bob"]);
    let (code, _) = b.cli(
        &[
            &["--owner", "bob"][..],
            &payment_budget_args(gid, "1", "EUR", "day"),
        ]
        .concat(),
    );
    assert_ne!(code, 0);
}

#[tokio::test]
async fn the_dashboard_sets_budgets_at_creation_and_shows_them() {
    let b = Broker::start(&[]);
    let (mut w, csrf) = crate::dashboard::signed_in(&b).await;
    let form = |budget: &'static str| {
        [
            ("csrf", csrf.clone()),
            ("agent", "shop".to_owned()),
            ("scope", "payment:execute".to_owned()),
            ("audience", API.to_owned()),
            ("ttl", "3600".to_owned()),
            ("budget", budget.to_owned()),
        ]
    };
    let bad = form("payment:execute=5/EUR/fortnight");
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = w.post("/agents/grant", &bad).await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(b.cli_ok(&["grant", "list"]).as_array().unwrap().is_empty());
    let good = form("payment:execute=80/EUR/month\r\n");
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = w.post("/agents/grant", &good).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let list = b.cli_ok(&["grant", "list"]);
    let gid = list[0]["grant_id"].as_str().unwrap();
    let show = b.cli_ok(&["grant", "show", gid]);
    assert_eq!(show["budgets"][0]["limit"], "80.00", "{show}");
    assert_eq!(show["budgets"][0]["period"], "month");
    let page = w.get("/agents").await;
    assert!(
        page.body.contains("0.00 of 80.00 EUR spent this month"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn budgets_set_at_device_approval_come_with_the_grant() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    let d = crate::device::start_device(&b, "payment:execute trips:book", Some(API)).await;
    let uc = d.s("user_code");
    // A budget on a scope the owner does not approve is refused; nothing changes.
    let (code, v) = b.cli(&[
        "approve",
        &uc,
        "--scope",
        "trips:book",
        "--budget",
        "payment:execute=50/EUR/day",
    ]);
    assert_ne!(code, 0, "{v}");
    assert_eq!(v["error"], "invalid_scope", "{v}");
    b.cli_ok(&["approve", &uc, "--budget", "payment:execute=50/EUR/day"]);
    let agent = key();
    let r = crate::device::poll(&b, &agent, &d.s("device_code")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let show = b.cli_ok(&["grant", "show", &r.s("grant_id")]);
    assert_eq!(show["budgets"][0]["scope"], "payment:execute", "{show}");
    assert_eq!(show["budgets"][0]["limit"], "50.00");
    assert_eq!(show["budgets"][0]["period"], "day");
}

#[tokio::test]
async fn the_dashboard_approval_page_sets_budgets() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    let d = crate::device::start_device(&b, "payment:execute", Some(API)).await;
    let uc = d.s("user_code");
    let (mut w, csrf) = crate::dashboard::signed_in(&b).await;
    let p = w.lookup(&csrf, &uc).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("name=\"budget\""), "{}", p.body);
    let p = w
        .approve(
            &csrf,
            &uc,
            &["payment:execute"],
            "3600",
            &[("budget", "payment:execute=20/CHF/week")],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let r = crate::device::poll(&b, &key(), &d.s("device_code")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let show = b.cli_ok(&["grant", "show", &r.s("grant_id")]);
    assert_eq!(show["budgets"][0]["limit"], "20.00", "{show}");
    assert_eq!(show["budgets"][0]["currency"], "CHF");
}

#[tokio::test]
async fn a_database_of_before_running_totals_migrates_with_what_was_spent() {
    let mut b = Broker::start(&[]);
    let (gid, jti, rs) = setup(&b, "100").await;
    for (amount, key) in [("30", "k1"), ("20", "k2")] {
        let r = call(&b, "/budget/spend", &rs, spend(&gid, &jti, amount, key)).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let rf = call(&b, "/budget/refund", &rs, refund(&gid, "k1"));
    assert_eq!(rf.await.status, 200);
    let dir = b.take_dir();
    b.kill();
    // What a broker of schema version 4 left: the spends, no running totals.
    protonpass_e2e::store_sql(
        dir.path(),
        "DROP TABLE spend_totals; UPDATE schema_version SET version = 4",
    );
    let b = Broker::start_in(dir.path(), &[]);
    if !protonpass_e2e::on_postgres() {
        let db = rusqlite::Connection::open(dir.path().join("broker.db")).unwrap();
        let spent: i64 = db
            .query_row("SELECT spent FROM spend_totals", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            spent, 2000,
            "backfilled from the spends, the refund left out"
        );
    }
    let r = call(&b, "/budget/spend", &rs, spend(&gid, &jti, "60", "k3")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["remaining"], "20.00");
    let over = call(&b, "/budget/spend", &rs, spend(&gid, &jti, "30", "k4")).await;
    assert_eq!(over.error(), "budget_exceeded", "{}", over.body);
    let show = b.cli_ok(&["grant", "show", &gid]);
    assert_eq!(show["budgets"][0]["spent"], "80.00", "{show}");
}
