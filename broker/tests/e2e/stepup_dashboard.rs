//! The dashboard's step-up page shows, beside the amount, payee, reason and
//! budgets, what the agent did lately under the same grant: its spends (time,
//! scope, amount), refunds, the calls its services reported and its step-ups, newest
//! first, and nothing of another grant that carries the same agent name.

use crate::stepup::{ask, payment, spend};
use protonpass_e2e::{API, claims, key};

fn jti(token: &str) -> String {
    claims(token)["jti"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_pending_step_up_shows_the_agents_recent_usage() {
    let b = protonpass_e2e::Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    let rs = b.resource(API, None);
    let budget = ["--budget", "payment:execute=300/EUR/day"];
    let k = key();
    let r = b
        .enroll(&k, "travel", "payment:execute:under-100", &budget)
        .await;
    let (at, gid) = (r.s("access_token"), r.s("grant_id"));
    // Another grant of the same owner under the same agent name.
    let other = b
        .enroll(&key(), "travel", "payment:execute:under-100", &budget)
        .await;

    for (amount, k) in [("40", "taxi-1"), ("25.5", "taxi-2")] {
        let s = spend(&b, &rs, &gid, &jti(&at), amount, k).await;
        assert_eq!(s.status, 200, "{}", s.body);
    }
    // The API gives the taxi's 25.50 back; refunds carry the grant, not the agent.
    let rf = b
        .http
        .post(format!("{}/budget/refund", b.url))
        .basic_auth(&rs.0, Some(&rs.1))
        .json(&serde_json::json!({"grant_id": gid, "idempotency_key": "taxi-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(rf.status(), 200);
    // A spend above the token's per-call limit is refused, and shown so.
    let s = spend(&b, &rs, &gid, &jti(&at), "150", "too-much").await;
    assert_eq!(s.status, 403, "{}", s.body);
    let s = spend(
        &b,
        &rs,
        &other.s("grant_id"),
        &jti(&other.s("access_token")),
        "77",
        "elsewhere",
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.body);
    // The API reports the refused call that led to the step-up.
    let u = b
        .http
        .post(format!("{}/audit/usage", b.url))
        .basic_auth(&rs.0, Some(&rs.1))
        .json(&serde_json::json!({"uses": [
            {"jti": jti(&at), "method": "POST", "path": "/pay", "decision": "deny",
             "code": "insufficient_scope", "scope": "payment:execute"}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(u.status(), 200);
    let r = ask(
        &b,
        &k,
        &at,
        &[
            ("authorization_details", &payment("250")),
            ("binding_message", "Flight to Paris"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let (mut w, _) = crate::dashboard::signed_in(&b).await;
    let p = w.get("/stepup").await;
    assert_eq!(p.status, 200);
    let body = &p.body;
    assert!(body.contains("Its recent usage"), "{body}");
    assert!(body.contains("260.00 left"), "{body}");
    let table = &body[body.find("<table class=\"recent\">").expect(body)..];
    let table = &table[..table.find("</table>").unwrap()];
    let rows: Vec<&str> = table.split("<tr>").skip(2).collect();
    // Newest first: the step-up being asked, the refused call, the refused
    // spend, the refund, the two spends; nothing of the grant's creation or
    // budget settings, which are not usage.
    assert!(rows[0].contains("Asked for a step-up"), "{table}");
    assert!(rows[0].contains("250.00 EUR"), "{table}");
    assert!(
        rows[1].contains("Called POST /pay: refused (insufficient_scope)"),
        "{table}"
    );
    assert!(
        rows[2].contains("<td>Spend refused (insufficient_scope)</td>"),
        "{table}"
    );
    assert!(rows[2].contains("150 EUR"), "{table}");
    assert!(rows[3].contains("<td>Refunded</td>"), "{table}");
    assert!(rows[3].contains("25.50 EUR"), "{table}");
    assert_eq!(rows.len(), 6, "{table}");
    for (row, amount) in rows[4..6].iter().zip(["25.50 EUR", "40.00 EUR"]) {
        assert!(row.contains("<td>Spent</td>"), "{table}");
        assert!(row.contains("<code>payment:execute</code>"), "{table}");
        assert!(row.contains(amount), "{table}");
        assert!(row.contains(" UTC</td>"), "{table}");
    }
    // The other grant's spend is not this agent's usage.
    assert!(!body.contains("77.00"), "{body}");
}
