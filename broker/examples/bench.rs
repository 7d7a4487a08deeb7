//! Throughput of the broker's token endpoint with its durable store: refresh
//! grants and token exchanges per second at several concurrency levels, with
//! p50/p99 latency, next to node-oidc-provider (in-memory store) doing DPoP
//! refresh grants on the same machine. Every request carries a fresh DPoP
//! proof made with the core crate; both servers get the same client. With
//! `--pg URL` (a throwaway cluster: `broker/bench/run.sh` makes one), the
//! same refresh and exchange load at the highest level against one, then two
//! broker replicas sharing that PostgreSQL database.
//!
//! ```sh
//! cargo build --release -p protonpass-broker --examples
//! (cd broker/bench && npm install)
//! target/release/examples/bench --broker target/release/protonpass-broker \
//!     --oidc broker/bench/oidc-provider.mjs --seconds 5 --levels 1,16,64 \
//!     [--pg postgres://USER@HOST:PORT/DB [--only pg]]
//! ```
//!
//! `--only pg` runs the PostgreSQL part alone (at the highest level).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protonpass_agent::wire::{GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_REFRESH};
use protonpass_agent::{AgentKey, OsRandom};
use protonpass_e2e::bench::{Flags, Guard, agent_client, cli_at, cpu_ticks, first_line, redeem_at};
use protonpass_e2e::{API, dpop, grant_create_args, private_dir};
use serde_json::Value;
use tokio::sync::Mutex;

struct Args {
    broker: String,
    oidc: Option<String>,
    pg: Option<String>,
    /// `--only pg`: the PostgreSQL runs alone (at the highest level).
    only_pg: bool,
    seconds: u64,
    levels: Vec<usize>,
}

fn args() -> Args {
    let f = Flags::from_env(&[
        "--broker",
        "--oidc",
        "--pg",
        "--only",
        "--seconds",
        "--levels",
    ]);
    let only_pg = match f.get("--only") {
        None => false,
        Some("pg") => true,
        Some(_) => panic!("unknown argument --only"),
    };
    Args {
        broker: f.broker(),
        oidc: f.get("--oidc").map(str::to_owned),
        pg: f.get("--pg").map(str::to_owned),
        only_pg,
        seconds: f.parsed("--seconds", 5),
        levels: f.get("--levels").map_or_else(
            || vec![1, 16, 64],
            |v| v.split(',').map(|s| s.parse().unwrap()).collect(),
        ),
    }
}

/// One agent: its HTTP client, the token endpoint it calls, its key, its
/// current refresh token, its nonce.
struct Agent {
    http: reqwest::Client,
    url: String,
    key: AgentKey,
    refresh: String,
    nonce: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Refresh,
    Exchange,
}

async fn request(a: &mut Agent, op: Op) -> bool {
    let http = a.http.clone();
    let url = a.url.clone();
    let url = url.as_str();
    for _ in 0..3 {
        let proof = dpop(&a.key, "POST", url, None, a.nonce.as_deref());
        let params: Vec<(&str, &str)> = match op {
            Op::Refresh => vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", &a.refresh),
                ("client_id", "bench"),
            ],
            Op::Exchange => vec![
                ("grant_type", GRANT_TOKEN_EXCHANGE),
                ("subject_token", &a.refresh),
                ("subject_token_type", TOKEN_TYPE_REFRESH),
                ("scope", "travel:book"),
                ("audience", API),
            ],
        };
        let Ok(r) = http
            .post(url)
            .header("DPoP", proof)
            .form(&params)
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
    /// CPU time per answered request of each process group measured (µs).
    cpu_us: Vec<(&'static str, f64)>,
}

/// Processes whose CPU time a run reports per request: the broker replicas,
/// and the throwaway PostgreSQL cluster's server processes when it runs.
#[derive(Clone, Default)]
struct Cpu {
    groups: Vec<(&'static str, Vec<u32>)>,
}

/// utime + stime of `pid` in clock ticks (0 once it is gone).
fn ticks(pid: u32) -> u64 {
    cpu_ticks(pid).unwrap_or(0)
}

/// The postmaster of the cluster `scripts/pg-cluster.sh` started (from
/// `$PG_CLUSTER_STATE`) and its server processes.
fn pg_pids() -> Vec<u32> {
    let Some(state) = std::env::var_os("PG_CLUSTER_STATE") else {
        return Vec::new();
    };
    let Ok(dir) = std::fs::read_to_string(state) else {
        return Vec::new();
    };
    let pidfile = std::path::Path::new(dir.trim()).join("data/postmaster.pid");
    let Some(pm) = std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
    else {
        return Vec::new();
    };
    let mut out = vec![pm];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        if rest.split_whitespace().nth(1) == Some(pm.to_string().as_str()) {
            out.push(pid);
        }
    }
    out
}

impl Cpu {
    fn sample(&self) -> Vec<u64> {
        self.groups
            .iter()
            .map(|(name, pids)| {
                let pids = if *name == "postgres" {
                    pg_pids()
                } else {
                    pids.clone()
                };
                pids.iter().map(|&p| ticks(p)).sum()
            })
            .collect()
    }
}

/// Loopback addresses handed to runs so far (see [`run`]).
static RUN_ADDRESSES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn run(agents: &[Arc<Mutex<Agent>>], op: Op, seconds: u64, cpu: &Cpu) -> Result {
    // Each run's agents call from addresses no earlier run used: a proof is
    // counted against its source's share of the replay cache for the 60 s
    // window, and a one-agent run alone sends a whole share (about 16,000
    // proofs) from its address, which the next run would then be refused.
    let base = 10_000 + RUN_ADDRESSES.fetch_add(agents.len(), std::sync::atomic::Ordering::Relaxed);
    for (i, a) in agents.iter().enumerate() {
        a.lock().await.http = agent_client(base + i);
    }
    let before = cpu.sample();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for a in agents {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            let mut a = a.lock().await;
            let mut lat = Vec::new();
            let mut failed = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                if request(&mut a, op).await {
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
    // Linux reports process times in ticks of 1/100 s.
    let cpu_us = cpu
        .groups
        .iter()
        .zip(cpu.sample().iter().zip(&before))
        .map(|((name, _), (after, before))| {
            let us = after.saturating_sub(*before) as f64 * 10_000.0;
            (*name, us / all.len().max(1) as f64)
        })
        .collect();
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
        cpu_us,
    }
}

fn report(name: &str, c: usize, r: &Result) {
    let cpu: Vec<String> = r
        .cpu_us
        .iter()
        .map(|(n, us)| format!("{n} {us:.0}"))
        .collect();
    println!(
        "{name:<34} c={c:<3} {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} ok, {} failed)  CPU µs/req: {}",
        r.rps,
        r.p50_ms,
        r.p99_ms,
        r.ok,
        r.failed,
        cpu.join(", ")
    );
}

/// Start `serve` on `data`; its token endpoint.
fn serve(bin: &str, data: &str) -> (Guard, String) {
    let (broker, issuer) = protonpass_e2e::bench::serve(bin, data);
    (broker, format!("{issuer}/oauth/token"))
}

/// `n` agents, each with its own grant created with the CLI on `data` and
/// redeemed at `token_url`.
async fn enroll(bin: &str, data: &str, token_url: &str, n: usize) -> Vec<Arc<Mutex<Agent>>> {
    let mut ours = Vec::new();
    for i in 0..n {
        let name = format!("bench-{i}");
        let mut args = grant_create_args(&name, "travel:search travel:book", API);
        args.extend(["--ttl", "30d"]);
        let (code, v) = cli_at(Path::new(bin), Path::new(data), &args, &[], "");
        assert_eq!(code, 0, "{v}");
        let http = agent_client(i);
        let key = AgentKey::generate(&OsRandom).unwrap();
        let (v, nonce) = redeem_at(
            &http,
            token_url,
            &key,
            v["enrollment_code"].as_str().unwrap(),
        )
        .await;
        let agent = Agent {
            http,
            url: token_url.to_owned(),
            key,
            refresh: v["refresh_token"].as_str().unwrap().to_owned(),
            nonce,
        };
        ours.push(Arc::new(Mutex::new(agent)));
    }
    ours
}

/// The broker on PostgreSQL at `url`: one replica, then two sharing the
/// database (agents split between them), refresh and exchange at `c` clients.
async fn postgres(a: &Args, url: &str, c: usize) -> Vec<(&'static str, Result)> {
    let dir = private_dir();
    let data = dir.path().to_str().unwrap().to_owned();
    // Replicas share the database and the vault key (DPoP nonces, sealed secrets).
    let mut key = [0u8; 32];
    protonpass_agent::Random::fill(&OsRandom, &mut key).unwrap();
    let key_file = dir.path().join("vault.key");
    std::fs::write(&key_file, protonpass_agent::b64::encode(key)).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("broker.toml"),
        format!(
            "store = {url:?}\nvault_key_file = {:?}\n",
            key_file.display().to_string()
        ),
    )
    .unwrap();
    let (first, first_url) = serve(&a.broker, &data);
    let agents = enroll(&a.broker, &data, &first_url, c).await;
    let mut cpu = Cpu {
        groups: vec![
            ("broker", vec![first.0.id()]),
            ("postgres", Vec::new()),
            ("bench", vec![std::process::id()]),
        ],
    };
    println!(
        "protonpass-broker (PostgreSQL, fsync on, DPoP nonces on), {} s per run",
        a.seconds
    );
    let r = run(&agents, Op::Refresh, a.seconds, &cpu).await;
    report("pg 1 replica refresh", c, &r);
    let x = run(&agents, Op::Exchange, a.seconds, &cpu).await;
    report("pg 1 replica token exchange", c, &x);
    let mut out = vec![("1 replica refresh", r), ("1 replica exchange", x)];
    let (second, second_url) = serve(&a.broker, &data);
    for (i, agent) in agents.iter().enumerate() {
        if i % 2 == 1 {
            let mut agent = agent.lock().await;
            agent.url = second_url.clone();
            agent.nonce = None;
        }
    }
    cpu.groups[0].1.push(second.0.id());
    let r = run(&agents, Op::Refresh, a.seconds, &cpu).await;
    report("pg 2 replicas refresh", c, &r);
    let x = run(&agents, Op::Exchange, a.seconds, &cpu).await;
    report("pg 2 replicas token exchange", c, &x);
    drop((first, second));
    out.extend([("2 replicas refresh", r), ("2 replicas exchange", x)]);
    out
}

#[tokio::main]
async fn main() {
    let a = args();
    let max = *a.levels.iter().max().unwrap();
    if a.only_pg {
        let url = a.pg.as_deref().expect("--only pg needs --pg URL");
        postgres(&a, url, max).await;
        return;
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let dir = private_dir();
    let data = dir.path().to_str().unwrap().to_owned();

    // Our broker, durable store, nonces on (the default).
    let (broker, token_url) = serve(&a.broker, &data);
    let ours = enroll(&a.broker, &data, &token_url, max).await;
    let cpu = Cpu {
        groups: vec![
            ("broker", vec![broker.0.id()]),
            ("bench", vec![std::process::id()]),
        ],
    };

    let mut rows = Vec::new();
    println!(
        "protonpass-broker (SQLite, synchronous=FULL, DPoP nonces on), {} s per run",
        a.seconds
    );
    for &c in &a.levels {
        let r = run(&ours[..c], Op::Refresh, a.seconds, &cpu).await;
        report("protonpass-broker refresh", c, &r);
        let x = run(&ours[..c], Op::Exchange, a.seconds, &cpu).await;
        report("protonpass-broker token exchange", c, &x);
        rows.push((c, r, x));
    }
    drop(broker);

    let pg = match &a.pg {
        Some(url) => postgres(&a, url, max).await,
        None => {
            println!("protonpass-broker on PostgreSQL: skipped (no --pg URL)");
            Vec::new()
        }
    };

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
        .enumerate()
        .map(|(i, (key, rt))| {
            Arc::new(Mutex::new(Agent {
                http: agent_client(i),
                url: token_endpoint.clone(),
                key,
                refresh: rt.as_str().unwrap().to_owned(),
                nonce: None,
            }))
        })
        .collect();
    println!("node-oidc-provider 9.13.3 (in-memory adapter, DPoP, refresh rotation), same client");
    for (c, ours_r, ours_x) in &rows {
        let cpu = Cpu {
            groups: vec![("node", vec![node.0.id()])],
        };
        let r = run(&theirs[..*c], Op::Refresh, a.seconds, &cpu).await;
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
        if *c == max && !pg.is_empty() {
            let each: Vec<String> = pg
                .iter()
                .map(|(name, x)| format!("{name} {:.1}x", ratio(x.rps)))
                .collect();
            println!("  ratio at c={c} on PostgreSQL: {}", each.join(", "));
        }
    }
    drop(node);
}
