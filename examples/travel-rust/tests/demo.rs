//! `make demo` runs in CI too: the whole travel journey must complete against
//! the real broker (built by the same `cargo test --workspace`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn the_travel_demo_completes() {
    let out = Command::new(env!("CARGO_BIN_EXE_travel-demo"))
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "POST /payments?amount=465 -> 200",
        "POST /payments?amount=800 -> 403",
        "the agent's next call fails",
        "audit log intact",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
}
