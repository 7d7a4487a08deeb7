//! The owner's side of step-up: denial and approval through the dashboard's
//! forms end the agent's wait and are audited, another owner's dashboard
//! neither sees nor decides them, and the webhook is retried with a doubling
//! backoff until a delivery succeeds, each attempt signed.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::dashboard::{PASSWORD, Web, field, set_password, signed_in};
use crate::stepup::{ask, first_waiting, payment, poll, setup};
use crate::stepup_webhook::{header, receiver, set_webhook, signed, wait_for};
use protonpass_e2e::audit_records;

#[tokio::test]
async fn the_dashboards_deny_and_approve_end_the_wait_and_another_owner_cannot_decide() {
    let (b, k, at, gid, _rs) = setup().await;
    b.add_owners(&["mallory"]);
    let denied = ask(&b, &k, &at, &[("authorization_details", &payment("150"))]).await;
    let denied_id = first_waiting(&b);

    // Another owner, signed in to its own dashboard: nothing of it is shown,
    // and its forms cannot decide it (with a valid token of its own session).
    set_password(&b, "mallory", PASSWORD);
    let mut m = Web::new(&b);
    let p = m.login("mallory", PASSWORD).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let page = m.get("/stepup").await;
    assert_eq!(page.status, 200);
    page.assert_hides(&denied_id);
    page.assert_hides("150.00");
    page.assert_hides("Air Example");
    let csrf = m.get("/agents").await.csrf();
    for decision in ["approve", "deny"] {
        let r = m
            .submit(
                "/stepup/decide",
                &csrf,
                &[("id", &denied_id), ("decision", decision)],
            )
            .await;
        assert_eq!(r.status, 404, "{decision}: {}", r.body);
    }
    assert_eq!(
        poll(&b, &k, &denied.s("auth_req_id")).await.error(),
        "authorization_pending"
    );

    // The owner denies it with the page's own form.
    let (mut w, _) = signed_in(&b).await;
    let page = w.get("/stepup").await;
    assert_eq!(field(&page.body, "id"), denied_id);
    let r = w
        .submit(
            "/stepup/decide",
            &page.csrf(),
            &[("id", &denied_id), ("decision", "deny")],
        )
        .await;
    r.assert_redirect("/stepup?done=denied");
    let p = poll(&b, &k, &denied.s("auth_req_id")).await;
    assert_eq!((p.status, p.error()), (400, "access_denied"), "{}", p.body);
    // Denied once, for good.
    assert_eq!(
        poll(&b, &k, &denied.s("auth_req_id")).await.error(),
        "access_denied"
    );
    assert!(!w.get("/stepup").await.body.contains(&denied_id));

    // Approval through the page: the agent's token comes.
    let approved = ask(&b, &k, &at, &[("authorization_details", &payment("120"))]).await;
    let page = w.get("/stepup").await;
    let approved_id = field(&page.body, "id");
    assert_ne!(approved_id, denied_id);
    let r = w
        .submit(
            "/stepup/decide",
            &page.csrf(),
            &[("id", &approved_id), ("decision", "approve")],
        )
        .await;
    r.assert_redirect("/stepup?done=approved");
    let t = poll(&b, &k, &approved.s("auth_req_id")).await;
    assert_eq!(t.status, 200, "{}", t.body);

    // Each decision is the owner's record, by the owner, in the owner's log.
    let recs = audit_records(&b);
    let decision = |event: &str, id: &str| -> Value {
        let r: Vec<&Value> = recs
            .iter()
            .filter(|r| r["event"] == event && r["detail"]["stepup"] == id)
            .collect();
        assert_eq!(r.len(), 1, "{event} {id}: {recs:?}");
        r[0].clone()
    };
    for (event, id) in [
        ("stepup_deny", &denied_id),
        ("stepup_approve", &approved_id),
    ] {
        let r = decision(event, id);
        assert_eq!(r["owner"], "default", "{r}");
        assert_eq!(
            (
                &r["detail"]["by"],
                &r["detail"]["gid"],
                &r["detail"]["agent"]
            ),
            (&json!("owner"), &json!(gid), &json!("travel")),
            "{r}"
        );
    }
    // Mallory's refused attempts decided nothing: no record of mallory's.
    assert!(
        !recs
            .iter()
            .any(|r| r["owner"] == "mallory" && r["event"].as_str().unwrap().starts_with("stepup")),
        "{recs:?}"
    );
}

/// Verify a delivery as spec/14 tells a receiver to: its signature with
/// `secret`, and a timestamp near the clock.
fn verify(secret: &str, h: &HeaderMap, body: &[u8]) -> bool {
    let ts: i64 = header(h, "webhook-timestamp").parse().unwrap_or(0);
    let now = protonpass_agent::Clock::now(&protonpass_agent::SystemClock);
    (now - ts).abs() <= 300 && signed(secret, h, body)
}

#[tokio::test]
async fn the_webhook_is_retried_with_a_doubling_backoff_until_it_succeeds() {
    let (b, k, at, gid, _rs) = setup().await;
    let fail = 3;
    let (url, seen) = receiver(
        fail,
        Duration::ZERO,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::OK,
    )
    .await;
    let secret = set_webhook(&b, &url)["secret"].as_str().unwrap().to_owned();
    let r = ask(&b, &k, &at, &[("authorization_details", &payment("250"))]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Three failures, then the success: four deliveries.
    wait_for(&seen, fail + 1, Duration::from_secs(20)).await;
    // The next retry would come one doubled wait (4 s) later: none comes.
    tokio::time::sleep(Duration::from_millis(4800)).await;
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), fail + 1, "a success stops the retries");

    // The waits between attempts grow, each about twice the one before
    // (0.5 s, 1 s, 2 s): compared with each other, with room for a slow machine.
    let gaps: Vec<f64> = got
        .windows(2)
        .map(|w| w[1].2.duration_since(w[0].2).as_secs_f64())
        .collect();
    assert!(
        gaps.windows(2).all(|g| g[1] > g[0] * 1.2),
        "the waits do not grow: {gaps:?}"
    );
    assert!(gaps[2] > gaps[0] * 2.5, "not doubling: {gaps:?}");
    assert!(gaps[2] < gaps[0] * 8.0, "more than doubling: {gaps:?}");

    let id = first_waiting(&b);
    for (h, body, _) in &got {
        assert!(verify(&secret, h, body), "bad signature: {h:?}");
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            (&v["type"], &v["data"]["id"]),
            (&json!("stepup.pending"), &json!(id))
        );
        assert_eq!(v["data"]["grant_id"], gid.as_str());
        assert_eq!(header(h, "webhook-id"), header(&got[0].0, "webhook-id"));
    }
    // Nothing but the owner's secret verifies them.
    let other = format!("whsec_{}", STANDARD.encode([7u8; 32]));
    assert!(!verify(&other, &got[0].0, &got[0].1));
    // The event changed nothing in the request: the owner still decides.
    assert_eq!(
        poll(&b, &k, &r.s("auth_req_id")).await.error(),
        "authorization_pending"
    );
}
