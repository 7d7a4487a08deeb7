//! What the owner sees of the agents waiting for approval.

use protonpass_agent::dpop::{ProofInput, create_proof};
use protonpass_agent::{Clock, OsRandom, SystemClock};

use crate::dashboard::signed_in;
use crate::kit::{API, Broker, Reply, key};

const REASON: &str = "book the <b>flight</b> the user chose";

/// A device request signed by a fresh key whose proof carries `REASON`.
async fn asking_with_reason(b: &Broker) -> Reply {
    let url = format!("{}/oauth/device_authorization", b.url);
    let proof = create_proof(
        &key(),
        &ProofInput {
            method: "POST",
            url: &url,
            reason: Some(REASON),
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
                ("scope", "travel:book"),
                ("resource", API),
            ],
            &[("DPoP", proof)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

#[tokio::test]
async fn the_agents_reason_is_shown_as_its_own_words() {
    let b = Broker::start(&[]);
    let d = asking_with_reason(&b).await;
    let list = b.cli_ok(&["pending"]);
    assert_eq!(list[0]["reason"], REASON, "{list}");
    let (code, text) = {
        let out = std::process::Command::new(crate::kit::BIN)
            .args(["--data", b.data.to_str().unwrap(), "pending"])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert_eq!(code, Some(0));
    assert!(text.contains("the agent's own words"), "{text}");

    let (mut w, csrf) = signed_in(&b).await;
    let uc = d.s("user_code");
    let p = w
        .post(
            "/device",
            &[("csrf", &csrf), ("step", "lookup"), ("user_code", &uc)],
        )
        .await;
    assert!(p.body.contains("in the agent's own words"), "{}", p.body);
    // Shown as text, never as markup.
    assert!(p.body.contains("book the &lt;b&gt;flight&lt;/b&gt; the user chose"), "{}", p.body);
}
