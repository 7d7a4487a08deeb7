//! Issue 20 figures, printed (never asserted): the round trip of one spend
//! through the broker (`Verifier::spend` -> `POST /budget/spend` -> one store
//! transaction), one client at a time, and spends per second with 64 clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use protonpass_agent::*;
use protonpass_e2e::Broker;
use protonpass_e2e::bench::latency_percentile;

const AUD: &str = "http://api.test/shop";
const CLIENTS: usize = 64;

/// The `p` percentile of `v`, in milliseconds.
fn pct(v: &[Duration], p: f64) -> f64 {
    latency_percentile(v, p).as_secs_f64() * 1e3
}

fn main() {
    let rt = protonpass_e2e::bench_runtime();
    rt.block_on(run());
}

async fn run() {
    let broker = Broker::with_args(&["--rate-limit", "off"]);
    let rs = broker.cli_ok(&["resource", "add", AUD]);
    let g = broker.create_grant_on(
        "bench-shop",
        "payment:execute",
        AUD,
        &["--budget", "payment:execute=1000000000/EUR/total"],
    );
    let home = tempfile::tempdir().unwrap();
    let s = authenticate_with_proton(
        &["payment:execute"],
        AUD,
        AuthOptions {
            broker: Some(broker.url.clone()),
            agent_name: Some("bench-shop".into()),
            store: Some(StoreKind::File(home.path().to_path_buf())),
            enrollment_code: Some(g["enrollment_code"].as_str().unwrap().to_owned()),
            background_renewal: false,
            prompt: Some(Arc::new(|_: &DevicePrompt| panic!("no prompt"))),
            ..AuthOptions::default()
        },
    )
    .await
    .unwrap();
    let mut o = VerifierOptions::new(broker.url.clone(), AUD);
    o.credentials = Some((
        rs["client_id"].as_str().unwrap().to_owned(),
        rs["client_secret"].as_str().unwrap().to_owned().into(),
    ));
    let v = Verifier::new(o).await.unwrap();
    let url = "http://api.test/shop/pay";
    let agent = v
        .verify("POST", url, &s.headers("POST", url).unwrap())
        .await
        .unwrap();

    // 1. One client: spend round trip.
    let mut lat = Vec::new();
    for i in 0..1100 {
        let t = Instant::now();
        v.spend(
            &agent,
            "payment:execute",
            "1.00",
            "EUR",
            &format!("seq-{i}"),
        )
        .await
        .unwrap();
        if i >= 100 {
            lat.push(t.elapsed());
        }
    }
    println!(
        "spend round trip through the broker, one client: p50 {:.2} ms, p99 {:.2} ms (n={}, target p50 <= 1 ms on loopback)",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        1000
    );

    // 2. 64 clients at once, each spending in a loop.
    let per = 200;
    let t = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (v, agent) = (v.clone(), agent.clone());
            tokio::spawn(async move {
                for i in 0..per {
                    v.spend(
                        &agent,
                        "payment:execute",
                        "1.00",
                        "EUR",
                        &format!("c{c}-{i}"),
                    )
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let el = t.elapsed();
    println!(
        "spends with {CLIENTS} clients: {:.0} spends/s ({} spends in {:.2} s)",
        (CLIENTS * per) as f64 / el.as_secs_f64(),
        CLIENTS * per,
        el.as_secs_f64()
    );
}
