//! Rules that spend: the gateway reads the amount from the request, spends
//! from the owner's budget before forwarding, refuses without contacting the
//! upstream when the budget or the token's limit does not allow it, never
//! spends twice for one idempotency key, and gives the spend back when the
//! upstream refuses the call.

use super::*;

/// Rules that spend, appended to the code host's.
const PAY_RULES: &str = include_str!("../fixtures/gateway/pay-rules.toml");

fn remaining(b: &Broker, gid: &str) -> String {
    let show = b.cli_ok(&["grant", "show", gid]);
    show["budgets"][0]["remaining"].as_str().unwrap().to_owned()
}

/// A one-time token for a payment of `amount` EUR, asked by agent `a` and
/// approved by the owner.
async fn one_time_token(
    b: &Broker,
    a: &(AgentKey, String, String),
    amount: &str,
) -> (AgentKey, String, String) {
    let t = crate::stepup::approved(b, &a.0, &a.1, amount).await;
    (a.0.clone(), t, a.2.clone())
}

async fn pay(
    b: &Broker,
    a: &(AgentKey, String, String),
    amount: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(extra);
    let body = format!(r#"{{"amount": "{amount}", "to": "hotel"}}"#);
    call(b, a, "POST", "/pay", Some(body.into()), &h).await
}

#[tokio::test]
async fn a_rule_spends_the_amount_of_the_request_from_the_budget() {
    let up = Upstream::start().await;
    let b = Broker::start(&[]);
    let base = format!("http://127.0.0.1:{}", up.port);
    let text = format!("{}{PAY_RULES}", rules("code-host", &base, true));
    let (code, v) = add_upstream(&b, &text, "default");
    assert_eq!(code, 0, "{v}");
    let a = agent(&b, "default", "payment:execute:under-100").await;
    b.cli_ok(&protonpass_e2e::payment_budget_args(
        &a.2, "50", "EUR", "day",
    ));

    // Spent, then forwarded with the body intact.
    let (status, body) = json(pay(&b, &a, "20", &[]).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.last().target, "/pay");
    assert_eq!(remaining(&b, &a.2), "30.00");

    // One idempotency key, one spend, however often the agent retries.
    for _ in 0..2 {
        let r = pay(&b, &a, "20", &[("idempotency-key", "order-1")]).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(remaining(&b, &a.2), "10.00");

    // Over the budget: refused, the upstream never contacted.
    let before = up.calls();
    let r = pay(&b, &a, "20", &[]).await;
    assert_eq!(r.status(), 403);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("budget_exceeded"), "{challenge}");
    // The challenge names what the call needed, for the agent's step-up.
    assert!(
        challenge.ends_with(", scope=\"payment:execute\", amount=\"20\", currency=\"EUR\""),
        "{challenge}"
    );
    assert_eq!(json(r).await.1["error"], "budget_exceeded");
    // Over the token's own limit (under-100), and no amount at all: refused too.
    let r = pay(&b, &a, "150", &[]).await;
    assert_eq!(r.status(), 403);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.starts_with("DPoP error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.ends_with(", amount=\"150\", currency=\"EUR\""),
        "{challenge}"
    );
    let r = call(
        &b,
        &a,
        "POST",
        "/pay",
        Some("{}".into()),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await.1["error"], "invalid_request");
    assert_eq!(up.calls(), before, "a refused spend reached the upstream");
    assert_eq!(remaining(&b, &a.2), "10.00");

    // The upstream declines: the spend is given back.
    let r = call(
        &b,
        &a,
        "POST",
        "/declined",
        Some("x".into()),
        &[("x-amount", "5")],
    )
    .await;
    assert_eq!(r.status(), 402);
    assert_eq!(up.calls(), before + 1);
    assert_eq!(remaining(&b, &a.2), "10.00");

    // A key whose spend was given back cannot be used again (the call never
    // went through, so a retry under it would go unpaid).
    let declined = |key: &'static str| {
        let b = &b;
        let a = &a;
        async move {
            call(
                b,
                a,
                "POST",
                "/declined",
                Some("x".into()),
                &[("x-amount", "5"), ("idempotency-key", key)],
            )
            .await
        }
    };
    assert_eq!(declined("k5").await.status(), 402);
    assert_eq!(remaining(&b, &a.2), "10.00");
    let calls = up.calls();
    let r = declined("k5").await;
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await.1["error"], "invalid_request");
    assert_eq!(up.calls(), calls, "a refunded key reached the upstream");
    // A retry under the key of a payment that went through spends nothing
    // more, and its failure gives nothing back.
    let r = pay(&b, &a, "5", &[("idempotency-key", "k6")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(remaining(&b, &a.2), "5.00");
    assert_eq!(declined("k6").await.status(), 402);
    assert_eq!(remaining(&b, &a.2), "5.00");
    // The same amount sent twice in a form is refused.
    let r = call(
        &b,
        &a,
        "POST",
        "/pay",
        Some(r#"{"amount": "1", "amount": "900"}"#.into()),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(r.status(), 400);
    let before = up.calls();

    // Revoking the grant stops the spending at once.
    b.cli_ok(&["revoke", &a.2]);
    let r = pay(&b, &a, "1", &[]).await;
    assert_eq!(r.status(), 401);
    assert_eq!(up.calls(), before);
}

#[test]
fn bad_spend_rules_are_refused_with_their_line() {
    let b = Broker::start(&[]);
    for (bad, why) in [
        (
            r#"spend = { amount = "cookie:x", currency = "EUR" }"#,
            "not a source",
        ),
        (
            r#"spend = { amount = "json:/a", currency = "EURO" }"#,
            "currency",
        ),
        (
            r#"spend = { amount = "json:/a", currency = "EUR", unit = "cents" }"#,
            "unit",
        ),
        (r#"spend = { amount = "json:/a" }"#, "currency"),
    ] {
        let text = format!(
            "{}\n[[rule]]\nmethods = [\"POST\"]\npath = \"/pay\"\nscope = \"payment:execute\"\n{bad}\n",
            rules("code-host", "https://pay.example", false)
        );
        let (code, v) = add_upstream(&b, &text, "default");
        assert_ne!(code, 0, "{bad}: {v}");
        let msg = v.to_string();
        assert!(msg.contains(why), "{bad}: {msg}");
    }
}

#[tokio::test]
async fn a_one_time_token_passes_the_gateway_once_and_the_grants_token_stays_live() {
    let up = Upstream::start().await;
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    let base = format!("http://127.0.0.1:{}", up.port);
    let quote = "\n[[rule]]\nmethods = [\"GET\"]\npath = \"/quote\"\nscope = \"payment:execute:under-100\"\n";
    let text = format!("{}{quote}", rules("code-host", &base, true));
    let (code, v) = add_upstream(&b, &text, "default");
    assert_eq!(code, 0, "{v}");
    let a = agent(&b, "default", "payment:execute:under-100").await;
    // The grant's own token, found live once and then remembered.
    for _ in 0..2 {
        assert_eq!(call(&b, &a, "GET", "/quote", None, &[]).await.status(), 200);
    }

    let once = one_time_token(&b, &a, "250").await;

    // Spent by its first call, refused at the second without reaching the upstream.
    assert_eq!(
        call(&b, &once, "GET", "/quote", None, &[]).await.status(),
        200
    );
    let before = up.calls();
    let (status, v) = json(call(&b, &once, "GET", "/quote", None, &[]).await).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("invalid_token")),
        "{v}"
    );
    assert_eq!(
        up.calls(),
        before,
        "a spent one-time token reached the upstream"
    );
    // No revocation: the grant's token still passes.
    assert_eq!(call(&b, &a, "GET", "/quote", None, &[]).await.status(), 200);
}

/// A one-time token that pays through a spending rule reaches the upstream
/// once: a retry under its key, a key an earlier spend already used, or a
/// new key after its spend are each `401 invalid_token`, the upstream not
/// contacted.
#[tokio::test]
async fn a_one_time_token_that_spends_reaches_the_upstream_once_whatever_the_key() {
    let up = Upstream::start().await;
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    let base = format!("http://127.0.0.1:{}", up.port);
    let text = format!("{}{PAY_RULES}", rules("code-host", &base, true));
    let (code, v) = add_upstream(&b, &text, "default");
    assert_eq!(code, 0, "{v}");
    let a = agent(&b, "default", "payment:execute:under-100").await;
    // The grant's own token pays 20 under `k-old`.
    let r = pay(&b, &a, "20", &[("idempotency-key", "k-old")]).await;
    assert_eq!(r.status(), 200);

    let once = one_time_token(&b, &a, "250").await;
    let refused = |status: u16, v: &serde_json::Value| {
        assert_eq!(
            (status, v["error"].as_str()),
            (401, Some("invalid_token")),
            "{v}"
        );
    };

    // Under a key an earlier spend used: that spend's answer redeems nothing,
    // and the call is not forwarded.
    let before = up.calls();
    let (status, v) = json(pay(&b, &once, "20", &[("idempotency-key", "k-old")]).await).await;
    refused(status, &v);
    assert_eq!(up.calls(), before, "a replayed key reached the upstream");
    // Its own payment under a new key: spent and forwarded once.
    let r = pay(&b, &once, "250", &[("idempotency-key", "k-new")]).await;
    assert_eq!(r.status(), 200);
    let after = up.calls();
    assert_eq!(after, before + 1);
    // The same key again, and another key: refused, never forwarded.
    for key in ["k-new", "k-3"] {
        let (status, v) = json(pay(&b, &once, "250", &[("idempotency-key", key)]).await).await;
        refused(status, &v);
    }
    assert_eq!(
        up.calls(),
        after,
        "a spent one-time token reached the upstream"
    );
}
