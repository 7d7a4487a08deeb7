//! The dashboard's template catalog and OAuth connection pages, signed in as
//! the owner, against a real local OAuth provider.

use crate::dashboard::{Web, signed_in};
use crate::gateway_oauth::{add_oauth, agent, call, consent, get_page};
use crate::oauth_provider::Provider;
use protonpass_e2e::Broker;

/// The provider link on the "Connect" page.
fn provider_link(html: &str, provider: &str) -> String {
    let start = html
        .find(&format!("href=\"{provider}/authorize?"))
        .unwrap_or_else(|| panic!("no provider link in {html}"))
        + "href=\"".len();
    html[start..][..html[start..].find('"').unwrap()].replace("&amp;", "&")
}

/// Start connecting `mail` on the dashboard and consent at the provider:
/// the provider's answer, a link back to the broker.
async fn consented(w: &mut Web, csrf: &str, p: &Provider) -> String {
    let start = w
        .submit("/upstreams/connect", csrf, &[("name", "mail")])
        .await;
    assert_eq!(start.status, 200, "{}", start.body);
    consent(&provider_link(&start.body, &p.url())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_catalog_shows_scopes_in_plain_words_searches_and_adds() {
    let b = Broker::start(&[]);
    let (mut w, csrf) = signed_in(&b).await;
    let all = w.get("/upstreams/catalog").await;
    assert_eq!(all.status, 200);
    for t in ["gmail", "google-calendar", "stripe", "slack", "openai"] {
        assert!(all.body.contains(&format!("id=\"t-{t}\"")), "{t}");
    }
    // Scopes in plain words with their risk, before anything is added.
    assert!(all.body.contains("Send mail to anyone in your name"));
    assert!(all.body.contains("HIGH RISK"));
    let found = w.get("/upstreams/catalog?q=calendar").await;
    assert!(found.body.contains("id=\"t-google-calendar\""));
    assert!(!found.body.contains("id=\"t-stripe\""));
    let none = w.get("/upstreams/catalog?q=%3Cscript%3E").await;
    assert!(none.body.contains("No template matches") && !none.body.contains("<script>"));
    // Adding needs the form token, and a key for a static-key template.
    let refused = w
        .post(
            "/upstreams/catalog/add",
            &[("template", "stripe"), ("secret", "sk_test_1")],
        )
        .await;
    assert_eq!(refused.status, 403);
    let no_key = w
        .submit("/upstreams/catalog/add", &csrf, &[("template", "stripe")])
        .await;
    assert_eq!(no_key.status, 400);
    let added = w
        .submit(
            "/upstreams/catalog/add",
            &csrf,
            &[
                ("template", "stripe"),
                ("name", "shop"),
                ("secret", "sk_test_1"),
            ],
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert!(added.body.contains("/gateway/shop"));
    let list = b.cli_ok(&["upstream", "list"]);
    assert_eq!(list[0]["name"], "shop");
    assert_eq!(list[0]["base_url"], "https://api.stripe.com");
    // An OAuth template asks for the client id and offers "Connect".
    let gmail = w
        .submit(
            "/upstreams/catalog/add",
            &csrf,
            &[
                ("template", "gmail"),
                ("client_id", "9.apps.googleusercontent.com"),
            ],
        )
        .await;
    assert_eq!(gmail.status, 200, "{}", gmail.body);
    assert!(gmail.body.contains("action=\"/upstreams/connect\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connect_and_disconnect_from_the_dashboard() {
    let p = Provider::start().await;
    let b = Broker::start(&[]);
    add_oauth(&b, &p, "mail", &p.url());
    let (mut w, csrf) = signed_in(&b).await;
    let page = w.get("/upstreams/connections").await;
    page.assert_shows("Not connected");
    let back = consented(&mut w, &csrf, &p).await;
    // The provider's answer reaching another browser (a leaked link): refused,
    // nothing connected.
    let (status, body) = get_page(&back).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("browser that started it"), "{body}");
    let page = w.get("/upstreams/connections").await;
    page.assert_shows("Not connected");
    // Started again and finished in the owner's own browser.
    let back = consented(&mut w, &csrf, &p).await;
    let done = w.get(back.strip_prefix(b.url.as_str()).unwrap()).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let page = w.get("/upstreams/connections").await;
    assert!(page.body.contains("Connected") && page.body.contains("Reconnect"));
    let a = agent(&b, "mail", "mail:read").await;
    assert_eq!(call(&b, &a, "GET", "/mail/messages").await.0, 200);
    let gone = w
        .submit("/upstreams/disconnect", &csrf, &[("name", "mail")])
        .await;
    assert_eq!(gone.status, 303);
    assert_eq!(p.with(|s| s.revoked.len()), 1);
    let page = w.get("/upstreams/connections?done=disconnected").await;
    assert!(page.body.contains("Not connected"));
    assert_eq!(call(&b, &a, "GET", "/mail/messages").await.0, 502);
}
