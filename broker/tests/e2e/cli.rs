//! The owner's command line as people and scripts use it: what it lists, what
//! it refuses, and what it says.

use protonpass_agent::{Clock, OsRandom, ProofInput, SystemClock, create_proof};

use crate::device::poll;
use crate::kit::{API, Broker, Reply, key};

/// A device request signed by `k`, with the agent's `reason` in its proof.
async fn ask(b: &Broker, k: &protonpass_agent::AgentKey, reason: Option<&str>) -> Reply {
    let url = format!("{}/oauth/device_authorization", b.url);
    let proof = create_proof(
        k,
        &ProofInput {
            method: "POST",
            url: &url,
            reason,
            ..Default::default()
        },
        SystemClock.now(),
        &OsRandom,
    )
    .unwrap();
    let r = b
        .post_form(
            "/oauth/device_authorization",
            &[
                ("client_id", "travel-bot"),
                ("scope", "travel:book travel:search"),
                ("resource", API),
            ],
            &[("DPoP", proof)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

#[tokio::test]
async fn pending_lists_what_waits_and_deny_ends_the_wait_at_once() {
    let b = Broker::start(&[]);
    assert_eq!(b.cli_ok(&["pending"]), serde_json::json!([]));
    let k = key();
    let d = ask(&b, &k, Some("book the Lisbon trip")).await;
    let now = SystemClock.now();
    let v = b.cli_ok(&["pending"]);
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    let w = &list[0];
    assert_eq!(w["user_code"], d.s("user_code"));
    assert_eq!(w["agent"], "travel-bot");
    assert_eq!(
        w["scopes"],
        serde_json::json!(["travel:book", "travel:search"])
    );
    assert_eq!(w["audience"], API);
    assert_eq!(w["reason"], "book the Lisbon trip");
    assert_eq!(w["key_thumbprint"], k.thumbprint());
    let exp = w["expires_at"].as_i64().expect("a number");
    assert!((now + 590..=now + 610).contains(&exp), "{exp} vs {now}");

    // People read the code, the reason marked as the agent's words, and times.
    let out = std::process::Command::new(crate::kit::BIN)
        .args(["--data", b.data.to_str().unwrap(), "pending"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&d.s("user_code")), "{text}");
    assert!(text.contains("the agent's own words"), "{text}");
    assert!(text.contains(" UTC (in "), "{text}");

    // The agent polls at its pace; the owner's denial answers its next poll,
    // without waiting out the interval.
    assert_eq!(
        poll(&b, &k, &d.s("device_code")).await.error(),
        "authorization_pending"
    );
    let v = b.cli_ok(&["deny", &d.s("user_code")]);
    assert_eq!(v["approved"], false);
    let r = poll(&b, &k, &d.s("device_code")).await;
    assert_eq!((r.status, r.error()), (400, "access_denied"));
    assert_eq!(b.cli_ok(&["pending"]), serde_json::json!([]));
}

#[test]
fn pending_on_a_missing_data_directory_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nothing-here");
    let out = std::process::Command::new(crate::kit::BIN)
        .args(["--data", data.to_str().unwrap(), "pending"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no broker data at"), "{err}");
    assert!(!data.exists());
}
