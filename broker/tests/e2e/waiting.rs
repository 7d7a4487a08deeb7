//! What the owner sees of the agents waiting for approval.

use crate::dashboard::signed_in;
use crate::device::ask_signed;
use protonpass_e2e::{API, Broker, Reply, key};

const REASON: &str = "book the <b>flight</b> the user chose";

/// A device request signed by a fresh key whose proof carries `REASON`.
async fn asking_with_reason(b: &Broker) -> Reply {
    ask_signed(b, &key(), "travel:book", Some(REASON)).await
}

#[tokio::test]
async fn the_agents_reason_is_shown_as_its_own_words() {
    let b = Broker::start(&[]);
    let d = asking_with_reason(&b).await;
    let list = b.cli_ok(&["pending"]);
    assert_eq!(list[0]["reason"], REASON, "{list}");
    let (code, text) = {
        let out = std::process::Command::new(protonpass_e2e::broker_bin())
            .args(["--data", b.data.to_str().unwrap(), "pending"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(code, Some(0));
    assert!(text.contains("the agent's own words"), "{text}");

    let (mut w, csrf) = signed_in(&b).await;
    let uc = d.s("user_code");
    let p = w.lookup(&csrf, &uc).await;
    assert!(p.body.contains("in the agent's own words"), "{}", p.body);
    // Shown as text, never as markup.
    assert!(
        p.body
            .contains("book the &lt;b&gt;flight&lt;/b&gt; the user chose"),
        "{}",
        p.body
    );
}

#[tokio::test]
async fn the_dashboard_lists_waiting_agents_and_denies_one() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    let d = crate::device::start_device(&b, "travel:book", Some(API)).await;
    let uc = d.s("user_code");
    let (mut w, csrf) = signed_in(&b).await;
    let p = w.get("/pending").await;
    assert_eq!(p.status, 200);
    assert!(
        p.body.contains("travel-bot") && p.body.contains(&uc),
        "{}",
        p.body
    );
    assert!(
        p.body.contains(&format!("/device?user_code={uc}")),
        "{}",
        p.body
    );
    // A form without the page's token is refused.
    let r = w.post("/pending/deny", &[("user_code", &uc)]).await;
    assert_eq!(r.status, 403);
    let r = w
        .post("/pending/deny", &[("csrf", &csrf), ("user_code", &uc)])
        .await;
    assert_eq!((r.status, r.location()), (303, "/pending?done=denied"));
    assert!(
        w.get("/pending?done=denied")
            .await
            .body
            .contains("No agent is waiting")
    );
    // The agent's wait ends with its typed error.
    let poll = crate::device::poll(&b, &key(), &d.s("device_code")).await;
    assert_eq!(poll.error(), "access_denied", "{}", poll.body);
    // Denying again: it is not waiting any more.
    let r = w
        .post("/pending/deny", &[("csrf", &csrf), ("user_code", &uc)])
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn with_several_owners_each_lists_and_denies_only_requests_for_its_own_audiences() {
    use crate::dashboard::{PASSWORD, Web, set_password};
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    b.add_owners(&["alice", "bob"]);
    b.cli_ok(&["resource", "add", API, "--owner", "alice"]);
    let d = crate::device::start_device(&b, "travel:book", Some(API)).await;
    let uc = d.s("user_code");
    let page_of = |owner: &'static str| {
        let b = &b;
        async move {
            set_password(b, owner, PASSWORD);
            let mut w = Web::new(b);
            let p = w.login(owner, PASSWORD).await;
            assert_eq!(p.status, 303, "{}", p.body);
            let page = w.get("/pending").await;
            assert_eq!(page.status, 200);
            (w, page)
        }
    };
    // Bob neither sees alice's agent nor denies it from a list.
    let (mut bob, page) = page_of("bob").await;
    assert!(!page.body.contains(&uc), "{}", page.body);
    let csrf = page.csrf();
    let r = bob
        .post("/pending/deny", &[("csrf", &csrf), ("user_code", &uc)])
        .await;
    assert_eq!(r.status, 404);
    // Alice sees it, and it is still waiting.
    let (_, page) = page_of("alice").await;
    assert!(page.body.contains(&uc), "{}", page.body);
    let poll = crate::device::poll(&b, &key(), &d.s("device_code")).await;
    assert_eq!(poll.error(), "authorization_pending", "{}", poll.body);
}
