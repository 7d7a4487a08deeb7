//! Issue 9 figure, printed (never asserted): the resource-server verifier's
//! memory per revoked, unexpired token (target: at most 64 bytes).
//!
//! Measured through the real `Verifier` reading a real broker's revocation
//! feed, with a counting global allocator around the system allocator: for
//! each size N, a new verifier is started against a feed of N revocations (it
//! reads the feed page by page before `Verifier::new` returns); the bytes this
//! process holds afterwards, minus those held before it started and minus what
//! a verifier with an empty feed holds, divided by N. A verifier that follows
//! the SSE stream through a burst also keeps the HTTP connection's grown read
//! buffer (a few hundred KB, whatever the number of entries): a constant, not
//! a per-token cost, so it is left out by starting fresh. Sizes
//! include the worst case for an open-addressing table, one entry past a
//! growth (twice the buckets, half of them empty), and the high-water mark
//! while that growth copies the table (old and new tables both alive).
//!
//! The revocations are appended straight to the broker's SQLite `revocations`
//! table (the schema of broker/src/store/sqlite/mod.rs), while the broker runs:
//! revoking a million tokens one by one through the CLI or HTTP would take
//! hours. The broker picks up rows written by another process as it does for
//! its CLI (it polls the feed head every 10 ms) and streams them to the
//! verifier like any revocation.
//!
//! ```sh
//! cargo build --release -p protonpass-broker
//! PROTONPASS_BROKER_BIN=$PWD/target/release/protonpass-broker cargo bench -p protonpass-e2e --bench revocation_memory
//! # short try: MEMORY_SIZES=10000,14337,100000
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::alloc::System;
use std::time::{Duration, Instant};

use cap::Cap;
use protonpass_agent::{Clock, OsRandom, SystemClock, Verifier, VerifierOptions, random_id};
use protonpass_e2e::{Broker, broker_bin};

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

const AUD: &str = "https://api.example/travel";

/// 10k, one past the growth to 32,768 buckets, 100k, one past the growth to
/// 262,144 buckets, one past the growth to 2,097,152 buckets, 1M.
const SIZES: &[usize] = &[10_000, 14_337, 100_000, 114_689, 917_505, 1_000_000];

/// What a hashbrown table of `n` entries of `entry` bytes occupies: a
/// power-of-two number of buckets, at most 7/8 full, each with one control
/// byte, plus 16 trailing control bytes.
fn table_bytes(n: usize, entry: usize) -> usize {
    let buckets = if n < 4 {
        4
    } else if n < 8 {
        8
    } else {
        (n * 8).div_ceil(7).next_power_of_two()
    };
    buckets * (entry + 1) + 16
}

fn main() {
    let sizes: Vec<usize> = std::env::var("MEMORY_SIZES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().parse().unwrap()).collect())
        .unwrap_or_else(|| SIZES.to_vec());
    let broker = Broker::start(&[]);
    let rt = protonpass_e2e::bench_runtime();
    let settle = || std::thread::sleep(Duration::from_millis(500));
    let new_verifier = || {
        let v = rt
            .block_on(Verifier::new(VerifierOptions::new(broker.url.clone(), AUD)))
            .unwrap();
        let t = Instant::now();
        while !v.feed_status().1 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "feed never connected"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        v
    };
    let drop_verifier = |v: Verifier| {
        v.stop();
        drop(v);
        settle();
    };
    // Warm up (the HTTP client is created once per process), then the fixed
    // cost of a verifier with no revocation.
    drop_verifier(new_verifier());
    let before = ALLOC.allocated();
    let v = new_verifier();
    settle();
    let fixed = ALLOC.allocated().saturating_sub(before);
    drop_verifier(v);
    println!(
        "verifier memory per revoked token (broker {}; a new verifier catches up through the feed; counting allocator)",
        broker_bin().display()
    );
    println!("  a verifier with no revocation holds {fixed} bytes (subtracted below)");

    let mut db = rusqlite::Connection::open(broker.data.join("broker.db")).unwrap();
    db.busy_timeout(Duration::from_secs(30)).unwrap();
    let exp = SystemClock.now() + 86_400;
    let mut held = 0usize;
    println!(
        "  {:>9}  {:>12}  {:>11}  {:>16}  {:>22}",
        "entries", "bytes held", "bytes/entry", "table (computed)", "high-water bytes/entry"
    );
    for &n in &sizes {
        // Append revocations of unexpired token ids, as the broker records them.
        let tx = db.transaction().unwrap();
        {
            let mut ins = tx
                .prepare("INSERT INTO revocations(jti, gid, exp, owner) VALUES (?1, NULL, ?2, 'default')")
                .unwrap();
            for _ in held..n {
                ins.execute(rusqlite::params![random_id(&OsRandom, 16).unwrap(), exp])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
        held = n;
        // A new verifier reads the whole feed (page by page) before it
        // returns, then follows the stream.
        let before = ALLOC.allocated();
        let t = Instant::now();
        let v = new_verifier();
        let took = t.elapsed();
        // Let transient buffers go.
        settle();
        assert_eq!(v.revoked_count(), n);
        let bytes = ALLOC.allocated().saturating_sub(before + fixed);
        let peak = ALLOC.max_allocated().saturating_sub(before + fixed);
        drop_verifier(v);
        println!(
            "  {n:>9}  {bytes:>12}  {:>11.1}  {:>16.1}  {:>22.1}   ({:.1} s to catch up)",
            bytes as f64 / n as f64,
            table_bytes(n, 24) as f64 / n as f64,
            peak as f64 / n as f64,
            took.as_secs_f64()
        );
    }
    println!(
        "  (an entry is a 16-byte digest of the id and its 8-byte expiry; 'high-water' is the most\n   held, reached while the last growth copied the table: old and new tables both alive)"
    );
}
