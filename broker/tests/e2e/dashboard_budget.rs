//! Changing a budget of an existing grant on the owner's dashboard (as
//! `grant budget` does): the form on `/agents` is CSRF-protected and
//! owner-scoped, the next spend sees the new limit, and bad input (negative,
//! too many decimals for the currency, unknown period, a scope the grant does
//! not have) is refused with a clear error and changes nothing.

use serde_json::{Value, json};

use crate::dashboard::{PASSWORD, Web, set_password, signed_in};
use protonpass_e2e::{API, Broker, claims, key};

/// `POST /budget/spend` of `amount` EUR for payment:execute, as the API does.
async fn spend(b: &Broker, rs: &(String, String), at: &str, amount: &str, k: &str) -> (u16, Value) {
    let c = claims(at);
    let r = b
        .http
        .post(format!("{}/budget/spend", b.url))
        .basic_auth(&rs.0, Some(&rs.1))
        .json(
            &json!({"grant_id": c["gid"], "token_id": c["jti"], "scope": "payment:execute",
                      "amount": amount, "currency": "EUR", "idempotency_key": k}),
        )
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The grant's budgets as `grant show --json` lists them.
fn budgets(b: &Broker, gid: &str) -> Value {
    b.cli_ok(&["grant", "show", gid])["budgets"].clone()
}

fn form<'a>(
    csrf: &'a str,
    gid: &'a str,
    scope: &'a str,
    limit: &'a str,
    currency: &'a str,
    period: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("grant", gid),
        ("scope", scope),
        ("limit", limit),
        ("currency", currency),
        ("period", period),
    ]
}

#[tokio::test]
async fn the_owner_changes_a_budget_on_the_dashboard_and_the_next_spend_sees_it() {
    let b = Broker::start(&[]);
    let rs = b.resource(API, None);
    let r = b
        .enroll(
            &key(),
            "travel",
            "payment:execute:under-100 travel:search",
            &["--budget", "payment:execute=50/EUR/day"],
        )
        .await;
    let (at, gid) = (r.s("access_token"), r.s("grant_id"));
    assert_eq!(spend(&b, &rs, &at, "40", "s-1").await.0, 200);
    let (st, body) = spend(&b, &rs, &at, "20", "s-2").await;
    assert_eq!((st, body["error"].as_str()), (403, Some("budget_exceeded")));

    let (mut w, csrf) = signed_in(&b).await;
    let page = w.get("/agents").await;
    page.assert_shows("40.00 of 50.00 EUR spent this day");
    page.assert_shows("action=\"/agents/budget\"");
    page.assert_shows("<option value=\"payment:execute\">");

    // Raise it to 100 a day: what was spent today still counts.
    let p = w
        .post(
            "/agents/budget",
            &form(&csrf, &gid, "payment:execute", "100", "EUR", "day"),
        )
        .await;
    p.assert_redirect("/agents?done=budget");
    let page = w.get("/agents?done=budget").await;
    page.assert_shows("The budget was set.");
    page.assert_shows("40.00 of 100.00 EUR spent this day");
    let (st, body) = spend(&b, &rs, &at, "20", "s-3").await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["remaining"], "40.00");
    // The change is in the audit chain, as the CLI's is.
    let audit = b.cli_ok(&["audit", "export"]);
    let text = audit
        .as_str()
        .map_or_else(|| audit.to_string(), str::to_owned);
    assert!(
        text.lines()
            .any(|l| l.contains("budget_set") && l.contains("100.00")),
        "{text}"
    );

    // Bad input: a clear 400 each time, and nothing changed.
    let before = budgets(&b, &gid);
    assert_eq!(before[0]["limit"], "100.00");
    for (scope, limit, currency, period, says) in [
        ("payment:execute", "-5", "EUR", "day", "decimal string"),
        (
            "payment:execute",
            "12.345",
            "EUR",
            "day",
            "at most 2 decimal",
        ),
        (
            "payment:execute",
            "10",
            "EUR",
            "fortnight",
            "a period is hour, day, week, month or total",
        ),
        (
            "calendar:write",
            "10",
            "EUR",
            "day",
            "does not allow calendar:write",
        ),
        ("payment:execute", "", "EUR", "day", "decimal string"),
    ] {
        let p = w
            .post(
                "/agents/budget",
                &form(&csrf, &gid, scope, limit, currency, period),
            )
            .await;
        assert_eq!(p.status, 400, "{scope} {limit} {period}: {}", p.body);
        assert!(p.body.contains(says), "{says}: {}", p.body);
        assert_eq!(budgets(&b, &gid), before, "{scope} {limit} {period}");
    }
    // Without the form token: refused, nothing changed.
    let p = w
        .post(
            "/agents/budget",
            &form("forged", &gid, "payment:execute", "1", "EUR", "day"),
        )
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert_eq!(budgets(&b, &gid), before);

    // Another owner cannot change it: the same answer as an unknown grant.
    set_password(&b, "bob", PASSWORD);
    let mut bob = Web::new(&b);
    let p = bob.login("bob", PASSWORD).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let bob_csrf = bob.get("/agents").await.csrf();
    let p = bob
        .post(
            "/agents/budget",
            &form(&bob_csrf, &gid, "payment:execute", "1000", "EUR", "day"),
        )
        .await;
    assert_eq!(p.status, 404, "{}", p.body);
    let p = bob
        .post(
            "/agents/budget",
            &form(
                &bob_csrf,
                "g-unknown",
                "payment:execute",
                "1000",
                "EUR",
                "day",
            ),
        )
        .await;
    assert_eq!(p.status, 404, "{}", p.body);
    assert_eq!(budgets(&b, &gid), before);
    assert!(!bob.get("/agents").await.body.contains(&gid));

    // A budget for another period replaces this one: 30 in total.
    let p = w
        .post(
            "/agents/budget",
            &form(&csrf, &gid, "payment:execute", "30", "eur", "total"),
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let after = budgets(&b, &gid);
    assert_eq!(after.as_array().unwrap().len(), 1, "{after}");
    assert_eq!(
        (after[0]["limit"].as_str(), after[0]["period"].as_str()),
        (Some("30.00"), Some("total"))
    );
    let (st, body) = spend(&b, &rs, &at, "1", "s-4").await;
    assert_eq!(
        (st, body["error"].as_str()),
        (403, Some("budget_exceeded")),
        "{body}"
    );
}
