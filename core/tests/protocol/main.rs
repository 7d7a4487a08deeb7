//! Integration tests of the protocol core: known-answer vectors read from
//! `spec/vectors`, every check of RFC 9449 section 4.3, the RFC 8725 attacks
//! on access tokens, and key handling. One test binary for the whole crate.

// Test helpers outside `#[test]` functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keys;
mod proofs;
mod seeds;
mod support;
mod tokens;
mod vectors;
