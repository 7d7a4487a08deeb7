//! Owners are isolated from each other: an audience that one owner registered
//! belongs to that owner (unless registered as shared), through the CLI, the
//! device flow, token issuance for older grants, introspection and the
//! dashboard. And refresh tokens: every use spends one, and a spent one
//! coming back revokes the whole grant (RFC 9700 section 4.14.2).

use protonpass_e2e::{Broker, grant_create_args, key};

const ALICE_API: &str = "https://api.alice.example";
const SHARED_API: &str = "https://api.shared.example";
const TT_REFRESH: &str = "urn:ietf:params:oauth:token-type:refresh_token";
const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Two owners, alice and bob; alice registered `ALICE_API` (hers alone) and
/// `SHARED_API` (shared).
fn two_owners() -> (Broker, (String, String), (String, String)) {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    b.add_owners(&["alice", "bob"]);
    let own = b.resource(ALICE_API, Some("alice"));
    let v = b.cli_ok(&[
        "resource", "add", SHARED_API, "--shared", "--owner", "alice",
    ]);
    assert_eq!(v["shared"], true, "{v}");
    let shared = (
        v["client_id"].as_str().unwrap().to_owned(),
        v["client_secret"].as_str().unwrap().to_owned(),
    );
    (b, own, shared)
}

fn grant_args<'a>(aud: &'a str, owner: &'a str) -> Vec<&'a str> {
    let mut args = grant_create_args("bot", "x:read", aud);
    args.extend_from_slice(&["--owner", owner]);
    args
}

#[tokio::test]
async fn another_owners_audience_cannot_be_granted_from_the_cli() {
    let (b, _, _) = two_owners();
    let (code, v) = b.cli(&grant_args(ALICE_API, "bob"));
    assert_eq!(
        (code, v["error"].as_str()),
        (1, Some("invalid_target")),
        "{v}"
    );
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("another owner"),
        "{v}"
    );
    // Nothing stored for bob.
    let list = b.cli_ok(&["grant", "list", "--owner", "bob"]);
    assert_eq!(list.as_array().map_or(0, Vec::len), 0, "{list}");
    // Alice may, a shared audience and an unregistered one are open to bob.
    b.cli_ok(&grant_args(ALICE_API, "alice"));
    b.cli_ok(&grant_args(SHARED_API, "bob"));
    b.cli_ok(&grant_args("https://unregistered.example", "bob"));
    // Bob cannot register alice's audience to make it his, shared or not.
    for extra in [&[][..], &["--shared"][..]] {
        let mut args = vec!["resource", "add", ALICE_API, "--owner", "bob"];
        args.extend_from_slice(extra);
        let (code, v) = b.cli(&args);
        assert_eq!(
            (code, v["error"].as_str()),
            (1, Some("invalid_target")),
            "{v}"
        );
    }
}

#[tokio::test]
async fn another_owners_audience_cannot_be_approved_in_the_device_flow() {
    let (b, _, _) = two_owners();
    let k = key();
    let d = b.device_authorization("bot", "x:read", ALICE_API).await;
    assert_eq!(d.status, 200, "{}", d.body);
    let uc = d.s("user_code");
    let (code, v) = b.cli(&["approve", &uc, "--owner", "bob"]);
    assert_eq!(
        (code, v["error"].as_str()),
        (1, Some("invalid_target")),
        "{v}"
    );
    // The request is still pending: the right owner can approve it.
    let poll = [
        ("grant_type", DEVICE),
        ("device_code", &d.s("device_code")[..]),
        ("client_id", "bot"),
    ];
    assert_eq!(b.token(&k, &poll).await.error(), "authorization_pending");
    b.cli_ok(&["approve", &uc, "--owner", "alice"]);
    let t = b.token(&k, &poll).await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(protonpass_e2e::claims(&t.s("access_token"))["sub"], "alice");
}

#[tokio::test]
async fn a_grant_made_before_the_audience_was_registered_issues_nothing_more_for_it() {
    let b = Broker::start(&[]);
    b.add_owners(&["alice", "bob"]);
    let aud = "https://later.example";
    let g = b.cli_ok(&grant_args(aud, "bob"));
    let k = key();
    let t = b.redeem(&k, g["enrollment_code"].as_str().unwrap()).await;
    assert_eq!(t.status, 200, "{}", t.body);
    b.resource(aud, Some("alice"));
    let r = b.exchange(&k, &t.s("refresh_token"), TT_REFRESH, &[]).await;
    assert_eq!((r.status, r.error()), (400, "invalid_target"), "{}", r.body);
}

#[tokio::test]
async fn introspection_answers_for_the_owner_or_for_every_owner_of_a_shared_api() {
    let (b, own, shared) = two_owners();
    let k = key();
    let mine = b.cli_ok(&grant_args(ALICE_API, "alice"));
    let a = b
        .redeem(&k, mine["enrollment_code"].as_str().unwrap())
        .await;
    assert_eq!(
        b.introspect(&own, &a.s("access_token")).await.body["active"],
        true
    );
    let theirs = b.cli_ok(&grant_args(SHARED_API, "bob"));
    let t = b
        .redeem(&k, theirs["enrollment_code"].as_str().unwrap())
        .await;
    let i = b.introspect(&shared, &t.s("access_token")).await;
    assert_eq!(
        (i.body["active"].clone(), i.body["sub"].clone()),
        (true.into(), "bob".into())
    );
    // Alice's own (unshared) resource server knows nothing of bob's token.
    assert_eq!(
        b.introspect(&own, &t.s("access_token")).await.body["active"],
        false
    );
}

#[tokio::test]
async fn every_exchange_rotates_the_refresh_token_and_a_copy_used_later_revokes_the_grant() {
    let b = Broker::start(&[]);
    b.add_owners(&["alice", "bob"]);
    let k = key();
    let enrolled = b.enroll(&k, "bot", "calendar:read", &[]).await;
    let original = enrolled.s("refresh_token");
    // The agent renews by exchange: the refresh token it used is spent.
    let r1 = b.exchange(&k, &original, TT_REFRESH, &[]).await;
    assert_eq!(r1.status, 200, "{}", r1.body);
    let rotated = r1.s("refresh_token");
    assert_ne!(rotated, original);
    let r2 = b.exchange(&k, &rotated, TT_REFRESH, &[]).await;
    assert_eq!(r2.status, 200, "{}", r2.body);
    // A copy of the grant file taken before: its refresh token is spent.
    let stolen = b.exchange(&k, &original, TT_REFRESH, &[]).await;
    assert_eq!(stolen.error(), "invalid_grant", "{}", stolen.body);
    assert!(stolen.body.to_string().contains("reuse"), "{}", stolen.body);
    // The whole grant is gone: the real agent's newest token too, and the
    // access tokens already issued are in the revocation feed by grant id.
    let real = b
        .exchange(&k, &r2.s("refresh_token"), TT_REFRESH, &[])
        .await;
    assert_eq!(real.error(), "invalid_grant", "{}", real.body);
    let gid = enrolled.s("grant_id");
    assert!(b.feed(0).await.iter().any(|e| e["gid"] == gid.as_str()));
    // The owner sees why in the audit, and on the dashboard's activity page.
    let audit = b.cli_ok(&["audit", "tail", "-n", "50"]);
    assert!(audit.to_string().contains("refresh_token_reuse"), "{audit}");
    let (mut web, _) = crate::dashboard::signed_in(&b).await;
    let page = web.get("/audit").await;
    assert!(
        page.body.contains("refresh token was used twice"),
        "{}",
        page.body
    );
}
