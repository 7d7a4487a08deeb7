//! Dashboard pages in words: the sign-in page, unknown pages, the activity
//! page and each agent's usage chart.

use crate::dashboard::{enrolled_jti, report_usage, signed_in};
use protonpass_e2e::{API, Broker, key};

#[tokio::test]
async fn the_sign_in_page_says_where_the_password_comes_from() {
    let b = Broker::start(&[]);
    let p = reqwest::get(format!("{}/login", b.url)).await.unwrap();
    let body = p.text().await.unwrap();
    assert!(body.contains("protonpass-broker owner add NAME"), "{body}");
}

#[tokio::test]
async fn an_unknown_page_is_an_html_page_with_a_way_back() {
    let b = Broker::start(&[]);
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/agnets", b.url))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = r.text().await.unwrap();
    assert!(
        body.contains("Page not found") && body.contains("href=\"/\""),
        "{body}"
    );
    // Programs still get the JSON error.
    let r = http.get(format!("{}/agnets", b.url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "not_found");
}

#[tokio::test]
async fn activity_shows_agents_scopes_and_times_in_words() {
    let b = Broker::start(&[]);
    b.enroll(&key(), "trip-bot", "calendar:read", &[]).await;
    let (mut w, _) = signed_in(&b).await;
    let p = w.get("/audit").await;
    assert_eq!(p.status, 200);
    p.assert_shows("Agent <strong class=\"agent\">trip-bot</strong>");
    p.assert_shows("Access until");
    p.assert_shows("May: ");
    // Raw ids and timestamps are folded away, not shown as the record's words.
    p.assert_hides("<b>exp</b>");
    p.assert_shows("<summary>Identifiers</summary>");
}

#[tokio::test]
async fn each_agent_has_a_chart_of_calls_and_refusals() {
    let b = Broker::start(&[]);
    let jti = enrolled_jti(&b, "trip-bot", &[]).await;
    let rs = b.resource(API, None);
    report_usage(
        &b,
        &rs,
        serde_json::json!({"uses": [
            {"jti": jti, "method": "GET", "path": "/events", "decision": "allow"},
            {"jti": jti, "method": "GET", "path": "/events", "decision": "allow"},
            {"jti": jti, "method": "GET", "path": "/events", "decision": "deny", "code": "invalid_token", "reason": "expired"}
        ]}),
    )
    .await;
    let (mut w, _) = signed_in(&b).await;
    let p = w.get("/usage").await;
    p.assert_shows("<svg");
    p.assert_shows("Last 24 hours: 2 allowed, 1 refused");
    assert!(p.body.contains("class=\"allowed\"") && p.body.contains("class=\"refused\""));
    assert!(!p.body.contains("<script"));
}
