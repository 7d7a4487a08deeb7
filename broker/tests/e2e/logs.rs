//! The broker's log: JSON lines on stderr, filtered by `PROTONPASS_BROKER_LOG`,
//! and never a secret in them, whatever was issued while it ran.

use protonpass_agent::wire::TOKEN_TYPE_REFRESH;
use serde_json::Value;

use crate::device::{poll, start_device};
use protonpass_e2e::{API, Broker, key};

/// Every line the broker wrote on stderr, each parsed (and checked) as a
/// JSON object with a level and a message.
fn log_lines(b: &Broker) -> Vec<Value> {
    let text = std::fs::read_to_string(b.data.join("broker.log")).unwrap();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {l:?}"));
            let level = v["level"].as_str().unwrap_or_default();
            assert!(
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
                "no level: {l}"
            );
            assert!(
                v["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "no message: {l}"
            );
            v
        })
        .collect()
}

fn has(lines: &[Value], level: &str, message: &str) -> bool {
    lines
        .iter()
        .any(|v| v["level"] == level && v["fields"]["message"] == message)
}

/// Run every flow that hands out a secret; returns the secrets.
async fn issue_everything(b: &Broker) -> Vec<String> {
    let mut secrets = Vec::new();
    let agent = key();
    let g = b.create_grant("bot", "calendar:read", &[]);
    secrets.push(g["enrollment_code"].as_str().unwrap().to_owned());
    let r = b.enroll(&agent, "bot", "calendar:read", &[]).await;
    let (at, rt) = (r.s("access_token"), r.s("refresh_token"));
    let x = b.exchange(&agent, &rt, TOKEN_TYPE_REFRESH, &[]).await;
    assert_eq!(x.status, 200, "{}", x.body);
    // The exchange spent `rt`: refresh with its successor.
    let rt2 = x.s("refresh_token");
    let f = b.refresh(&agent, &rt2).await;
    assert_eq!(f.status, 200, "{}", f.body);
    // A reused refresh token is refused (and revokes the grant): a refusal
    // logs nothing of what was sent either.
    let reuse = b.refresh(&agent, &rt).await;
    assert_eq!(reuse.error(), "invalid_grant");
    let rs = b.resource(API, None);
    assert_eq!(b.introspect(&rs, &at).await.status, 200);
    let d = start_device(b, "travel:book", Some(API)).await;
    b.cli_ok(&["approve", &d.s("user_code")]);
    let t = poll(b, &agent, &d.s("device_code")).await;
    assert_eq!(t.status, 200, "{}", t.body);
    let setup = b.cli_ok(&["owner", "add", "default"])["setup_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = setup.split("token=").nth(1).unwrap().to_owned();
    assert_eq!(b.get(&format!("/setup?token={token}")).await.status, 200);
    secrets.extend([
        at,
        rt,
        rt2,
        x.s("access_token"),
        f.s("access_token"),
        f.s("refresh_token"),
        rs.1,
        d.s("device_code"),
        d.s("user_code"),
        t.s("access_token"),
        t.s("refresh_token"),
        token,
    ]);
    assert!(secrets.iter().all(|s| s.len() >= 8), "{secrets:?}");
    secrets
}

#[tokio::test]
async fn every_line_is_json_and_no_secret_is_logged() {
    let mut b = Broker::start(&[
        ("PROTONPASS_BROKER_LOG", "trace"),
        ("PROTONPASS_BROKER_DEVICE_INTERVAL", "0"),
    ]);
    let secrets = issue_everything(&b).await;
    assert!(b.terminate().is_some_and(|s| s.success()));
    let lines = log_lines(&b);
    assert!(has(&lines, "INFO", "listening"));
    assert!(has(&lines, "DEBUG", "token issued"));
    assert!(has(&lines, "INFO", "stopped"));
    let text = std::fs::read_to_string(b.data.join("broker.log")).unwrap();
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "the log holds a secret: {s}");
    }
}

#[tokio::test]
async fn the_filter_selects_what_is_written() {
    // The default is info: no debug lines.
    let mut b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    issue_everything(&b).await;
    b.terminate();
    let lines = log_lines(&b);
    assert!(has(&lines, "INFO", "listening"));
    assert!(lines.iter().all(|v| v["level"] != "DEBUG"));
    // At warn, only warnings and errors.
    let mut b = Broker::start(&[
        ("PROTONPASS_BROKER_LOG", "warn"),
        ("PROTONPASS_BROKER_DEVICE_INTERVAL", "0"),
    ]);
    issue_everything(&b).await;
    b.terminate();
    assert!(
        log_lines(&b)
            .iter()
            .all(|v| v["level"] == "WARN" || v["level"] == "ERROR")
    );
    // A directive per module, as tracing's filter syntax has it.
    let mut b = Broker::start(&[
        ("PROTONPASS_BROKER_LOG", "warn,protonpass_broker=debug"),
        ("PROTONPASS_BROKER_DEVICE_INTERVAL", "0"),
    ]);
    issue_everything(&b).await;
    b.terminate();
    let lines = log_lines(&b);
    assert!(has(&lines, "DEBUG", "token issued"));
    assert!(lines.iter().all(|v| {
        v["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("protonpass_broker"))
            || v["level"] == "WARN"
            || v["level"] == "ERROR"
    }));
}
