//! The mail demo runs in `make test` (`cargo test --workspace`): the whole
//! journey must complete against the real broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn the_mail_demo_completes() {
    let out = Command::new(env!("CARGO_BIN_EXE_mail-demo"))
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "connected: conn-",
        "GET /messages -> 200",
        "POST /send -> 403",
        "upstream_not_connected",
        "audit log intact",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
}
