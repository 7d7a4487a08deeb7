//! The mail demo runs in `make test` (`cargo test --workspace`): the whole
//! journey must complete against the real broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../demo-kit/completes.rs"]
mod completes;

#[test]
fn the_mail_demo_completes() {
    completes::assert_completes(
        env!("CARGO_BIN_EXE_mail-demo"),
        &[
            "connected: conn-",
            "GET /messages -> 200",
            "POST /send -> 403",
            "upstream_not_connected",
            "audit log intact",
        ],
    );
}
