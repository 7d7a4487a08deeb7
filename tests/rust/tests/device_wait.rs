//! Waiting for the owner's approval: a cancelled or abandoned wait ends at
//! once and withdraws the request at the broker; a grant narrowed below the
//! required scopes is refused and revoked, not kept.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use protonpass_agent::*;
use protonpass_e2e::{Broker, audit_records};

fn opts(broker: &Broker, store: StoreKind) -> AuthOptions {
    AuthOptions {
        broker: Some(broker.url.clone()),
        agent_name: Some("travel-bot".into()),
        store: Some(store),
        ..AuthOptions::default()
    }
}

fn pending(broker: &Broker) -> Vec<serde_json::Value> {
    broker.cli_ok(&["pending"]).as_array().unwrap().clone()
}

fn audit_events(broker: &Broker, event: &str) -> usize {
    audit_records(broker)
        .iter()
        .filter(|r| r["event"] == event)
        .count()
}

const AUD: &str = "http://127.0.0.1:9/travel";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_wait_ends_within_a_second_and_withdraws_the_request() {
    let broker = Broker::with_args(&["--device-interval", "1"]);
    let cancel = CancelHandle::new();
    let c2 = cancel.clone();
    let shown: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let s2 = shown.clone();
    let mut o = opts(&broker, StoreKind::Memory);
    // The prompt fails the way a binding reports a failing callback.
    o.prompt = Some(Arc::new(move |_: &DevicePrompt| {
        *s2.lock().unwrap() = Some(Instant::now());
        c2.cancel();
    }));
    o.cancel = Some(cancel);
    let r = authenticate_with_proton(&["travel:search"], AUD, o).await;
    let t0 = shown.lock().unwrap().expect("the prompt was shown");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(r.unwrap_err().code(), "cancelled");
    assert!(pending(&broker).is_empty(), "the request was withdrawn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_wait_withdraws_the_request() {
    let broker = Broker::with_args(&["--device-interval", "1"]);
    let mut o = opts(&broker, StoreKind::Memory);
    o.prompt = Some(Arc::new(|_: &DevicePrompt| {}));
    let wait = authenticate_with_proton(&["travel:search"], AUD, o);
    assert!(
        tokio::time::timeout(Duration::from_secs(2), wait)
            .await
            .is_err()
    );
    let end = Instant::now() + Duration::from_secs(5);
    while !pending(&broker).is_empty() {
        assert!(Instant::now() < end, "the request is still waiting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(audit_events(&broker, "device_cancelled"), 1);
}

/// Approve through the CLI with `args` when the prompt shows the code.
fn approving(broker: &Broker, args: &[&str]) -> PromptFn {
    let data = broker.data.clone();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    Arc::new(move |p: &DevicePrompt| {
        let (data, args, code) = (data.clone(), args.clone(), p.user_code.clone());
        std::thread::spawn(move || {
            let out = std::process::Command::new(protonpass_e2e::broker_bin())
                .arg("approve")
                .arg(&code)
                .args(&args)
                .arg("--data")
                .arg(&data)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        });
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrowed_grant_gives_what_was_granted_unless_a_required_scope_is_missing() {
    let broker = Broker::with_args(&["--device-interval", "1"]);
    let narrow = ["--scope", "travel:search"];
    // Only travel:search is required: the agent gets what was granted.
    let mut o = opts(&broker, StoreKind::Memory);
    o.prompt = Some(approving(&broker, &narrow));
    o.required = Some(vec!["travel:search".into()]);
    let s = authenticate_with_proton(&["travel:search", "travel:book"], AUD, o)
        .await
        .unwrap();
    assert_eq!(s.scopes().to_string(), "travel:search");
    s.close(true).await.unwrap();

    // travel:book is required (the default: all of them): a clear error
    // naming it, and the grant is revoked, in a file store as in memory.
    for store in [
        StoreKind::Memory,
        StoreKind::File(tempfile::tempdir().unwrap().keep()),
    ] {
        let mut o = opts(&broker, store);
        o.prompt = Some(approving(&broker, &narrow));
        let e = authenticate_with_proton(&["travel:search", "travel:book"], AUD, o)
            .await
            .unwrap_err();
        match e {
            Error::ScopeNotGranted { missing, granted } => {
                assert_eq!(missing, "travel:book");
                assert_eq!(granted, "travel:search");
            }
            other => panic!("{other:?}"),
        }
    }
    let grants = broker.cli_ok(&["grant", "list"]);
    let live: Vec<_> = grants
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["status"] == "active")
        .collect();
    assert!(
        live.is_empty(),
        "a refused grant is not left alive: {grants}"
    );
}
