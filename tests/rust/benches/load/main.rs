//! Issue 9 figures, printed (never asserted): the broker under load.
//!
//! 1. Load: many simulated agents (default 1,000) against one release-built
//!    broker for a while (default 60 s). Each agent has its own Ed25519 key and
//!    its own grant (created with the broker CLI, redeemed with the
//!    pre-authorized code), signs a fresh DPoP proof for every request, answers
//!    `use_dpop_nonce` challenges once per request as the SDK does (counted
//!    apart: a nonce retry is protocol, not an error) and rotates its refresh
//!    token. A real agent refreshes when its token nears expiry and exchanges
//!    once per task; here every agent loops back to back to make load, with the
//!    mix 1 refresh (refresh_token grant) then 4 token exchanges (RFC 8693, the
//!    refresh token as subject, scope narrowed from `travel:search travel:book`
//!    to `travel:search`, with the SDK's own exchange form). Any answer other than 200
//!    or a nonce challenge, and any transport error, is an error: the bench
//!    prints a breakdown and exits non-zero. An agent stops at its first error
//!    (its refresh token may have rotated without it knowing).
//! 2. Growth: token-exchange throughput with 1,000,000 stored tokens against an
//!    empty store, same client load (64 agents), after a warm-up, in short rounds
//!    alternated between the two brokers so that other work on the machine hits
//!    both alike.
//!
//! ```sh
//! cargo build --release -p protonpass-broker
//! PROTONPASS_BROKER_BIN=$PWD/target/release/protonpass-broker cargo bench -p protonpass-e2e --bench load
//! # short try: LOAD_AGENTS=200 LOAD_SECONDS=10 GROWTH_TOKENS=100000 GROWTH_SECONDS=4
//! # one part only: LOAD_PARTS=load or LOAD_PARTS=growth
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod growth;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protonpass_agent::wire::{GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS, TOKEN_TYPE_REFRESH};
use protonpass_agent::{AgentKey, Clock, OsRandom, SystemClock, random_id};
use protonpass_broker::audit::{record_hash, secret_hash};
use protonpass_e2e::bench::{agent_client, cpu_ticks, percentile};
use protonpass_e2e::{Broker, PRE_AUTHORIZED_CODE, broker_bin, dpop};
use serde_json::Value;

use growth::growth;

const AUD: &str = "https://api.example/travel";
const GRANT_SCOPE: &str = "travel:search travel:book";
const NARROW: &str = "travel:search";
/// One refresh, then this many exchanges, per agent cycle.
const EXCHANGES_PER_REFRESH: u64 = 4;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One simulated agent: its key, its current refresh token, its nonce.
struct Agent {
    name: String,
    /// Its HTTP client, from a loopback address of its own.
    http: reqwest::Client,
    key: AgentKey,
    refresh: String,
    nonce: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Refresh,
    Exchange,
}

/// What one agent saw.
#[derive(Default)]
struct Tally {
    requests: u64,
    nonce_retries: u64,
    refresh_ms: Vec<f64>,
    exchange_ms: Vec<f64>,
    errors: BTreeMap<String, u64>,
    /// CPU seconds the broker used meanwhile.
    broker_cpu: f64,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.requests += o.requests;
        self.nonce_retries += o.nonce_retries;
        self.broker_cpu += o.broker_cpu;
        self.refresh_ms.extend(o.refresh_ms);
        self.exchange_ms.extend(o.exchange_ms);
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// CPU seconds (user and system, all threads) process `pid` has used so far.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    match pid.and_then(cpu_ticks) {
        Some(ticks) => ticks as f64 / rustix::param::clock_ticks_per_second() as f64,
        None => f64::NAN,
    }
}

/// One token request as the SDK makes it: sign, send, and on a
/// `use_dpop_nonce` challenge sign again with the new nonce and retry once.
/// `Err` names the error for the breakdown.
async fn call(
    url: &str,
    a: &mut Agent,
    form: &[(&str, &str)],
    t: &mut Tally,
) -> Result<Value, String> {
    for attempt in 0..2 {
        let proof = dpop(&a.key, "POST", url, None, a.nonce.as_deref());
        t.requests += 1;
        let r = a
            .http
            .post(url)
            .header("DPoP", proof)
            .form(form)
            .send()
            .await
            .map_err(|e| {
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "request"
                };
                format!("transport ({kind}): {e}")
            })?;
        if let Some(n) = r.headers().get("dpop-nonce") {
            a.nonce = n.to_str().ok().map(str::to_owned);
        }
        let status = r.status().as_u16();
        let body = r
            .bytes()
            .await
            .map_err(|e| format!("transport (body): {e}"))?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status == 200 {
            return Ok(v);
        }
        let code = v["error"].as_str().unwrap_or("?").to_owned();
        if status == 400 && code == "use_dpop_nonce" && attempt == 0 {
            t.nonce_retries += 1;
            continue;
        }
        let desc = v["error_description"].as_str().unwrap_or("");
        return Err(format!("HTTP {status} {code}: {desc}"));
    }
    Err("HTTP 400 use_dpop_nonce twice in a row".into())
}

async fn op(url: &str, a: &mut Agent, op: Op, t: &mut Tally) -> Result<(), String> {
    let refresh = a.refresh.clone();
    let name = a.name.clone();
    match op {
        Op::Refresh => {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("client_id", name.as_str()),
            ];
            let v = call(url, a, &form, t).await?;
            let rt = v["refresh_token"]
                .as_str()
                .ok_or("refresh answered without a refresh token")?;
            a.refresh = rt.to_owned();
        }
        Op::Exchange => {
            let form = [
                ("grant_type", GRANT_TOKEN_EXCHANGE),
                ("subject_token", refresh.as_str()),
                ("subject_token_type", TOKEN_TYPE_REFRESH),
                ("requested_token_type", TOKEN_TYPE_ACCESS),
                ("scope", NARROW),
                ("audience", AUD),
                ("client_id", name.as_str()),
            ];
            let v = call(url, a, &form, t).await?;
            if v["scope"] != NARROW {
                return Err(format!("exchange answered scope {}", v["scope"]));
            }
            // The exchange spent the refresh token: keep its successor.
            let rt = v["refresh_token"]
                .as_str()
                .ok_or("exchange answered without a refresh token")?;
            a.refresh = rt.to_owned();
        }
    }
    Ok(())
}

/// Create `n` grants with the broker CLI (a few processes at a time) and
/// redeem their enrollment codes with each agent's own key.
async fn enroll(broker: &Arc<Broker>, n: usize, tag: &str) -> Vec<Agent> {
    let t0 = Instant::now();
    let names: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    let workers = 4;
    let mut handles = Vec::new();
    for w in 0..workers {
        let b = broker.clone();
        let mine: Vec<String> = names.iter().skip(w).step_by(workers).cloned().collect();
        handles.push(tokio::task::spawn_blocking(move || {
            mine.into_iter()
                .map(|name| {
                    let v = b.create_grant_on(&name, GRANT_SCOPE, AUD, &["--ttl", "1d"]);
                    (name, v["enrollment_code"].as_str().unwrap().to_owned())
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut codes = Vec::new();
    for h in handles {
        codes.extend(h.await.unwrap());
    }
    let created = t0.elapsed();
    let url = format!("{}/oauth/token", broker.url);
    // Redeem, 32 at a time (setup, not measured).
    let mut agents = Vec::with_capacity(n);
    let mut challenges = 0;
    for (c, chunk) in codes.chunks(32).enumerate() {
        let mut set = tokio::task::JoinSet::new();
        for (i, (name, code)) in chunk.iter().cloned().enumerate() {
            let url = url.clone();
            set.spawn(async move {
                let mut a = Agent {
                    name,
                    http: agent_client(c * 32 + i),
                    key: AgentKey::generate(&OsRandom).unwrap(),
                    refresh: String::new(),
                    nonce: None,
                };
                let mut t = Tally::default();
                let name = a.name.clone();
                let form = [
                    ("grant_type", PRE_AUTHORIZED_CODE),
                    ("pre-authorized_code", code.as_str()),
                    ("client_id", name.as_str()),
                ];
                let v = call(&url, &mut a, &form, &mut t)
                    .await
                    .unwrap_or_else(|e| panic!("enrollment of {name} failed: {e}"));
                a.refresh = v["refresh_token"].as_str().unwrap().to_owned();
                (a, t.nonce_retries)
            });
        }
        while let Some(r) = set.join_next().await {
            let (a, c) = r.unwrap();
            agents.push(a);
            challenges += c;
        }
    }
    println!(
        "  {n} grants created with `protonpass-broker grant create` in {:.1} s, redeemed in {:.1} s ({challenges} use_dpop_nonce challenges answered)",
        created.as_secs_f64(),
        (t0.elapsed() - created).as_secs_f64()
    );
    agents
}

/// Every agent loops back to back until `seconds` have passed; returns the
/// agents (with their rotated tokens), what they saw, and the elapsed time.
async fn drive(
    broker: &Broker,
    agents: Vec<Agent>,
    seconds: f64,
    exchange_only: bool,
) -> (Vec<Agent>, Tally, f64) {
    let url = format!("{}/oauth/token", broker.url);
    let cpu0 = cpu_seconds(Some(broker.pid()));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut set = tokio::task::JoinSet::new();
    for (i, mut a) in agents.into_iter().enumerate() {
        let url = url.clone();
        set.spawn(async move {
            let mut t = Tally::default();
            // Stagger the cycles so that refreshes spread over time.
            let mut n = i as u64;
            while Instant::now() < deadline {
                let kind = if !exchange_only && n.is_multiple_of(EXCHANGES_PER_REFRESH + 1) {
                    Op::Refresh
                } else {
                    Op::Exchange
                };
                n += 1;
                let t0 = Instant::now();
                match op(&url, &mut a, kind, &mut t).await {
                    Ok(()) => {
                        let ms = t0.elapsed().as_secs_f64() * 1e3;
                        match kind {
                            Op::Refresh => t.refresh_ms.push(ms),
                            Op::Exchange => t.exchange_ms.push(ms),
                        }
                    }
                    Err(e) => {
                        *t.errors.entry(e).or_default() += 1;
                        break;
                    }
                }
            }
            (a, t)
        });
    }
    let mut all = Tally::default();
    let mut back = Vec::new();
    while let Some(r) = set.join_next().await {
        let (a, t) = r.unwrap();
        back.push(a);
        all.merge(t);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.broker_cpu = cpu_seconds(Some(broker.pid())) - cpu0;
    (back, all, elapsed)
}

fn latency_line(name: &str, v: &mut [f64]) -> String {
    format!(
        "{name:<9} {:>8} ok   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>8.2} ms",
        v.len(),
        percentile(v, 0.50),
        percentile(v, 0.99),
        percentile(v, 1.0)
    )
}

fn print_errors(t: &Tally) {
    if t.errors.is_empty() {
        return;
    }
    println!("  error breakdown:");
    for (k, v) in &t.errors {
        let mut k = k.clone();
        k.truncate(200);
        println!("    {v:>7}  {k}");
    }
}

/// Part 1. Returns the number of errors.
async fn load() -> u64 {
    let agents_n: usize = env_or("LOAD_AGENTS", 1000);
    let seconds: f64 = env_or("LOAD_SECONDS", 60.0);
    println!(
        "load: {agents_n} agents, {seconds} s, each cycle 1 refresh + {EXCHANGES_PER_REFRESH} exchanges (scope narrowed), Ed25519 DPoP, nonces required"
    );
    let broker = Arc::new(Broker::with_args(&["--rate-limit", "off"]));
    let agents = enroll(&broker, agents_n, "load").await;
    let me0 = cpu_seconds(Some(std::process::id()));
    let (_agents, mut t, elapsed) = drive(&broker, agents, seconds, false).await;
    let me = cpu_seconds(Some(std::process::id())) - me0;
    let ok = (t.refresh_ms.len() + t.exchange_ms.len()) as u64;
    let errors = t.error_count();
    println!(
        "  requests {} in {elapsed:.1} s: {:.0} requests/s ({ok} answered 200, {:.0}/s; {} nonce retries; {errors} errors)",
        t.requests,
        t.requests as f64 / elapsed,
        ok as f64 / elapsed,
        t.nonce_retries,
    );
    println!(
        "  CPU: broker {:.1} s ({:.0} us per request, {:.0} % of the 2 cores), load generator {me:.1} s",
        t.broker_cpu,
        t.broker_cpu * 1e6 / t.requests as f64,
        100.0 * t.broker_cpu / elapsed / 2.0
    );
    println!("  {}", latency_line("refresh", &mut t.refresh_ms));
    println!("  {}", latency_line("exchange", &mut t.exchange_ms));
    print_errors(&t);
    errors
}

/// A thousand agents hold a thousand connections, and the broker (a child of
/// this process) inherits the limit: raise the soft limit to the hard one.
fn raise_nofile() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: l.maximum,
                maximum: l.maximum,
            },
        );
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

fn main() {
    let nofile = raise_nofile();
    let parts = std::env::var("LOAD_PARTS").unwrap_or_else(|_| "load,growth".into());
    println!(
        "broker {} (2-core machine shared with other work; client and broker share the cores; open files limit {nofile})",
        broker_bin().display()
    );
    let rt = protonpass_e2e::bench_runtime();
    let mut errors = 0;
    if parts.contains("load") {
        errors += rt.block_on(load());
    }
    if parts.contains("growth") {
        errors += rt.block_on(growth());
    }
    if errors > 0 {
        eprintln!("{errors} errors");
        std::process::exit(1);
    }
}
