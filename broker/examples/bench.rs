//! Throughput of the broker's token endpoint with its durable store: refresh
//! grants and token exchanges per second at several concurrency levels, with
//! p50/p99 latency, next to node-oidc-provider (in-memory store) doing DPoP
//! refresh grants on the same machine. Every request carries a fresh DPoP
//! proof made with the core crate; both servers get the same client.
//!
//! ```sh
//! cargo build --release -p protonpass-broker --examples
//! (cd broker/bench && npm install)
//! target/release/examples/bench --broker target/release/protonpass-broker \
//!     --oidc broker/bench/oidc-provider.mjs --seconds 5 --levels 1,16,64
//! ```
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protonpass_agent::{AgentKey, Clock, OsRandom, ProofInput, SystemClock, create_proof};
use serde_json::Value;
use tokio::sync::Mutex;

const PRE: &str = "urn:ietf:params:oauth:grant-type:pre-authorized_code";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const RT_TYPE: &str = "urn:ietf:params:oauth:token-type:refresh_token";
const API: &str = "https://api.example";

struct Args {
    broker: String,
    oidc: Option<String>,
    seconds: u64,
    levels: Vec<usize>,
}

fn args() -> Args {
    let mut a = Args {
        broker: "target/release/protonpass-broker".into(),
        oidc: None,
        seconds: 5,
        levels: vec![1, 16, 64],
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < v.len() {
        match v[i].as_str() {
            "--broker" => a.broker = v[i + 1].clone(),
            "--oidc" => a.oidc = Some(v[i + 1].clone()),
            "--seconds" => a.seconds = v[i + 1].parse().unwrap(),
            "--levels" => a.levels = v[i + 1].split(',').map(|s| s.parse().unwrap()).collect(),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

fn first_line(child: &mut Child) -> Value {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

/// Kills the child process when dropped, even when the benchmark fails.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One agent: its key, its current refresh token, its nonce.
struct Agent {
    key: AgentKey,
    refresh: String,
    nonce: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Refresh,
    Exchange,
}

async fn request(http: &reqwest::Client, url: &str, a: &mut Agent, op: Op) -> bool {
    for _ in 0..3 {
        let proof = create_proof(
            &a.key,
            &ProofInput {
                method: "POST",
                url,
                nonce: a.nonce.as_deref(),
                ..Default::default()
            },
            SystemClock.now(),
            &OsRandom,
        )
        .unwrap();
        let params: Vec<(&str, &str)> = match op {
            Op::Refresh => vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", &a.refresh),
                ("client_id", "bench"),
            ],
            Op::Exchange => vec![
                ("grant_type", EXCHANGE),
                ("subject_token", &a.refresh),
                ("subject_token_type", RT_TYPE),
                ("scope", "travel:book"),
                ("audience", API),
            ],
        };
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let Ok(r) = http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("DPoP", proof)
            .body(body)
            .send()
            .await
        else {
            return false;
        };
        if let Some(n) = r.headers().get("dpop-nonce") {
            a.nonce = n.to_str().ok().map(str::to_owned);
        }
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if status == 200 {
            if let Some(rt) = v["refresh_token"].as_str() {
                a.refresh = rt.to_owned();
            }
            return true;
        }
        if v["error"] != "use_dpop_nonce" {
            eprintln!("error: {v}");
            return false;
        }
    }
    false
}

struct Result {
    ok: usize,
    failed: usize,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn run(
    http: &reqwest::Client,
    url: &str,
    agents: &[Arc<Mutex<Agent>>],
    op: Op,
    seconds: u64,
) -> Result {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for a in agents {
        let (http, url, a) = (http.clone(), url.to_owned(), a.clone());
        tasks.push(tokio::spawn(async move {
            let mut a = a.lock().await;
            let mut lat = Vec::new();
            let mut failed = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                if request(&http, &url, &mut a, op).await {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    // This agent's token chain is broken: stop it rather than flood.
                    failed += 1;
                    break;
                }
            }
            (lat, failed)
        }));
    }
    let mut all = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await.unwrap();
        all.extend(l);
        failed += f;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Result {
        ok: all.len(),
        failed,
        rps: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

fn report(name: &str, c: usize, r: &Result) {
    println!(
        "{name:<34} c={c:<3} {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} ok, {} failed)",
        r.rps, r.p50_ms, r.p99_ms, r.ok, r.failed
    );
}

#[tokio::main]
async fn main() {
    let a = args();
    let max = *a.levels.iter().max().unwrap();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let dir = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .unwrap();
    let data = dir.path().to_str().unwrap().to_owned();

    // Our broker, durable store, nonces on (the default).
    let broker = Command::new(&a.broker)
        // Every client shares one address: the per-source limit would measure itself.
        .args([
            "--data",
            &data,
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--rate-limit",
            "off",
        ])
        .env("PROTONPASS_BROKER_ACCESS_TTL", "1h")
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("BENCH_BROKER_STDERR").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap();
    let mut broker = Guard(broker);
    let issuer = first_line(&mut broker.0)["issuer"]
        .as_str()
        .unwrap()
        .to_owned();
    let token_url = format!("{issuer}/oauth/token");
    let mut ours = Vec::new();
    for i in 0..max {
        let out = Command::new(&a.broker)
            .args([
                "--data",
                &data,
                "--json",
                "grant",
                "create",
                "--agent",
                &format!("bench-{i}"),
            ])
            .args([
                "--scope",
                "travel:search travel:book",
                "--audience",
                API,
                "--ttl",
                "30d",
            ])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let code = v["enrollment_code"].as_str().unwrap().to_owned();
        let mut agent = Agent {
            key: AgentKey::generate(&OsRandom).unwrap(),
            refresh: code,
            nonce: None,
        };
        // Redeem: the refresh slot holds the code until then.
        let mut ok = false;
        for _ in 0..3 {
            let proof = create_proof(
                &agent.key,
                &ProofInput {
                    method: "POST",
                    url: &token_url,
                    nonce: agent.nonce.as_deref(),
                    ..Default::default()
                },
                SystemClock.now(),
                &OsRandom,
            )
            .unwrap();
            let r = http
                .post(&token_url)
                .header("DPoP", proof)
                .form(&[
                    ("grant_type", PRE),
                    ("pre-authorized_code", agent.refresh.as_str()),
                ])
                .send()
                .await
                .unwrap();
            if let Some(n) = r.headers().get("dpop-nonce") {
                agent.nonce = n.to_str().ok().map(str::to_owned);
            }
            let v: Value = r.json().await.unwrap();
            if let Some(rt) = v["refresh_token"].as_str() {
                agent.refresh = rt.to_owned();
                ok = true;
                break;
            }
        }
        assert!(ok, "enrollment failed");
        ours.push(Arc::new(Mutex::new(agent)));
    }

    let mut rows = Vec::new();
    println!(
        "protonpass-broker (SQLite, synchronous=FULL, DPoP nonces on), {} s per run",
        a.seconds
    );
    for &c in &a.levels {
        let r = run(&http, &token_url, &ours[..c], Op::Refresh, a.seconds).await;
        report("protonpass-broker refresh", c, &r);
        let x = run(&http, &token_url, &ours[..c], Op::Exchange, a.seconds).await;
        report("protonpass-broker token exchange", c, &x);
        rows.push((c, r, x));
    }
    drop(broker);

    let Some(script) = a.oidc else { return };
    let node = Command::new("node")
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut node = Guard(node);
    let info = first_line(&mut node.0);
    let url = info["url"].as_str().unwrap().to_owned();
    let token_endpoint = info["token_endpoint"].as_str().unwrap().to_owned();
    let keys: Vec<AgentKey> = (0..max)
        .map(|_| AgentKey::generate(&OsRandom).unwrap())
        .collect();
    let jkts: Vec<&str> = keys.iter().map(|k| k.thumbprint()).collect();
    let seeded: Value = http
        .post(format!("{url}/seed"))
        .json(&serde_json::json!({ "jkts": jkts }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let theirs: Vec<_> = keys
        .into_iter()
        .zip(seeded["refresh_tokens"].as_array().unwrap())
        .map(|(key, rt)| {
            Arc::new(Mutex::new(Agent {
                key,
                refresh: rt.as_str().unwrap().to_owned(),
                nonce: None,
            }))
        })
        .collect();
    println!("node-oidc-provider 9.13.3 (in-memory adapter, DPoP, refresh rotation), same client");
    for (c, ours_r, ours_x) in &rows {
        let r = run(
            &http,
            &token_endpoint,
            &theirs[..*c],
            Op::Refresh,
            a.seconds,
        )
        .await;
        report("node-oidc-provider refresh", *c, &r);
        let ratio = |x: f64| {
            if r.rps > 0.0 {
                x / r.rps
            } else {
                f64::INFINITY
            }
        };
        println!(
            "  ratio at c={c}: refresh {:.1}x, exchange {:.1}x (ours / node-oidc-provider refresh)",
            ratio(ours_r.rps),
            ratio(ours_x.rps)
        );
    }
    drop(node);
}
