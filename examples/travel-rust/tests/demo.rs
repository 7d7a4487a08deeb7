//! `make demo` runs in CI too: the whole travel journey must complete against
//! the real broker (built by the same `cargo test --workspace`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../demo-kit/completes.rs"]
mod completes;

#[test]
fn the_travel_demo_completes() {
    completes::assert_completes(
        env!("CARGO_BIN_EXE_travel-demo"),
        &[
            "POST /payments?amount=465 -> 200",
            "POST /payments?amount=800 -> 403",
            "the agent's next call fails",
            "audit log intact",
        ],
    );
}
