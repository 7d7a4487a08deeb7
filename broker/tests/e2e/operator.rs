//! Commands an operator reaches for: `resource rotate`, `owner remove`.

use protonpass_e2e::{Broker, audit_records};

const API: &str = "https://acme.example/api";

#[tokio::test]
async fn resource_rotate_gives_a_new_secret_and_the_old_one_stops_working() {
    let b = Broker::start(&[]);
    let old = b.resource(API, None);
    assert_eq!(b.introspect(&old, "not-a-token").await.status, 200);
    let v = b.cli_ok(&["resource", "rotate", API]);
    assert_eq!(v["client_id"], old.0.as_str(), "the client id stays: {v}");
    let new = (
        old.0.clone(),
        v["client_secret"].as_str().unwrap().to_owned(),
    );
    assert_ne!(new.1, old.1);
    let refused = b.introspect(&old, "not-a-token").await;
    assert_eq!((refused.status, refused.error()), (401, "invalid_client"));
    assert_eq!(b.introspect(&new, "not-a-token").await.status, 200);
    // By client id too; an unknown one is an error that names the fix.
    b.cli_ok(&["resource", "rotate", &old.0]);
    let (code, e) = b.cli(&["resource", "rotate", "https://other.example"]);
    assert_eq!(code, 1, "{e}");
    assert!(e.to_string().contains("resource list"), "{e}");
    let rotations = audit_records(&b)
        .into_iter()
        .filter(|r| r["event"] == "resource_rotate")
        .count();
    assert_eq!(rotations, 2);
}

#[tokio::test]
async fn owner_remove_refuses_live_grants_unless_forced() {
    let b = Broker::start(&[]);
    b.add_owners(&["acme"]);
    let rs = b.resource(API, Some("acme"));
    let g = b.create_grant("bot", "x:read", &["--owner", "acme"]);
    let (code, e) = b.cli(&["owner", "remove", "acme"]);
    assert_eq!(code, 1, "{e}");
    assert!(e.to_string().contains("--force"), "{e}");
    assert!(
        b.cli_ok(&["owner", "list"])
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "acme"),
        "a refused removal changes nothing"
    );

    let v = b.cli_ok(&["owner", "remove", "acme", "--force"]);
    assert_eq!(v["revoked_grants"][0], g["grant_id"], "{v}");
    assert_eq!(v["removed_resources"][0], rs.0.as_str(), "{v}");
    let owners = b.cli_ok(&["owner", "list"]);
    assert!(!owners.to_string().contains("acme"), "{owners}");
    // Its resource credential stops working; its name is unknown again.
    assert_eq!(b.introspect(&rs, "x").await.status, 401);
    let (code, _) = b.cli(&["grant", "list", "--owner", "acme"]);
    assert_eq!(code, 1);
    let (code, e) = b.cli(&["owner", "remove", "acme"]);
    assert_eq!(code, 1, "{e}");
    let rec = audit_records(&b)
        .into_iter()
        .find(|r| r["event"] == "owner_remove")
        .expect("audited");
    assert_eq!(rec["detail"]["forced"], true);
    // The revocation reaches the feed: the grant's tokens are refused.
    assert!(
        audit_records(&b)
            .iter()
            .any(|r| r["event"] == "revoke" && r["detail"]["by"] == "owner_remove")
    );
}
