//! The gateway's cost: latency of a call through the broker's gateway (token,
//! DPoP proof, nonce, replay, revocation and rule checks, credential
//! injection, forwarding) against a direct call to the same local upstream
//! and against nginx proxying that upstream (injecting the same header), p50
//! and p99 over sequential calls (one agent, one request in flight: the
//! added latency, not queueing); then proxied requests per second with 64
//! concurrent agents, each with its own token and a fresh proof per request,
//! and nginx under the same number of concurrent clients.
//! The client, the upstream, the broker and nginx share the machine's cores.
//!
//! ```sh
//! cargo build --release -p protonpass-broker --examples
//! target/release/examples/gateway_bench --broker target/release/protonpass-broker \
//!     [--nginx /usr/sbin/nginx] --samples 3000 --seconds 5 --agents 64
//! ```
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use protonpass_agent::{AgentKey, OsRandom};
use protonpass_e2e::bench::{Flags, Guard, cli_at, latency_percentile, redeem_at, serve};
use protonpass_e2e::{dpop, grant_create_args};
use serde_json::Value;

const SECRET: &str = "bench-upstream-secret";
const AUD: &str = "https://api.code-host.example";
const PATH: &str = "/repos/me/proj/commits";

/// The upstream: a small JSON answer, only with the right key.
async fn start_upstream() -> u16 {
    let app = axum::Router::new().fallback(|req: axum::extract::Request| async move {
        let ok = req
            .headers()
            .get("x-api-key")
            .is_some_and(|v| v.as_bytes() == format!("Key {SECRET}").as_bytes());
        if ok {
            (
                axum::http::StatusCode::OK,
                [("content-type", "application/json")],
                r#"{"sha":"0123456789abcdef","message":"a commit"}"#,
            )
        } else {
            (
                axum::http::StatusCode::UNAUTHORIZED,
                [("content-type", "text/plain")],
                "bad key",
            )
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    port
}

/// nginx proxying the upstream with the same header injected, keep-alive to
/// the upstream, no logging; `None` when it cannot start.
fn start_nginx(bin: &str, dir: &std::path::Path, upstream: u16) -> Option<(Guard, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let user = if running_as_root() {
        "user root;\n"
    } else {
        ""
    };
    let conf = format!(
        "{user}worker_processes auto;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log error;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         upstream up {{ server 127.0.0.1:{upstream}; keepalive 128; }}\n\
         server {{ listen 127.0.0.1:{port}; keepalive_requests 100000;\n\
          location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\";\n\
           proxy_set_header Authorization \"\"; proxy_set_header X-Api-Key \"Key {SECRET}\"; }} }}\n}}\n",
        d = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).ok()?;
    let child = Command::new(bin)
        .args([
            "-p",
            &dir.display().to_string(),
            "-c",
            &path.display().to_string(),
            "-e",
            &dir.join("error.log").display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    let g = Guard(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((g, port));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn running_as_root() -> bool {
    std::env::var("USER").is_ok_and(|u| u == "root")
        || Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// The broker's CLI on `data`, expecting success: its JSON output.
fn cli(broker: &str, data: &str, args: &[&str], stdin: &str) -> Value {
    let (code, v) = cli_at(Path::new(broker), Path::new(data), args, &[], stdin);
    assert_eq!(code, 0, "{args:?}: {v}");
    v
}

/// One agent: its key, its access token, the nonce it last saw.
struct Agent {
    key: AgentKey,
    token: String,
    nonce: Option<String>,
}

fn proof(a: &Agent, method: &str, url: &str, token: Option<&str>) -> String {
    dpop(&a.key, method, url, token, a.nonce.as_deref())
}

async fn enroll(http: &reqwest::Client, issuer: &str, code: &str) -> Agent {
    let key = AgentKey::generate(&OsRandom).unwrap();
    let (v, nonce) = redeem_at(http, &format!("{issuer}/oauth/token"), &key, code).await;
    Agent {
        key,
        token: v["access_token"].as_str().unwrap().to_owned(),
        nonce,
    }
}

/// One call through the gateway with a fresh proof; `Some(elapsed)` for a
/// 200 (the proof is made before the clock starts), `None` after a nonce
/// round, which the next call retries with the new nonce.
async fn gateway_call(http: &reqwest::Client, url: &str, a: &mut Agent) -> Option<Duration> {
    let p = proof(a, "GET", url, Some(&a.token));
    let t0 = Instant::now();
    let r = http
        .get(url)
        .header("authorization", format!("DPoP {}", a.token))
        .header("dpop", p)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if let Some(n) = r.headers().get("dpop-nonce") {
        a.nonce = n.to_str().ok().map(str::to_owned);
    }
    let _ = r.bytes().await.unwrap();
    let dt = t0.elapsed();
    match status {
        200 => Some(dt),
        401 => None,
        s => panic!("the gateway answered {s}"),
    }
}

async fn plain_call(http: &reqwest::Client, url: &str, key: bool) -> Duration {
    let t0 = Instant::now();
    let mut req = http.get(url);
    if key {
        req = req.header("x-api-key", format!("Key {SECRET}"));
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    t0.elapsed()
}

fn line(name: &str, v: &[Duration]) -> (f64, f64) {
    let us = |p| latency_percentile(v, p).as_secs_f64() * 1e6;
    let (p50, p99) = (us(0.50), us(0.99));
    println!("  {name:<34} p50 {p50:>8.0} us   p99 {p99:>8.0} us");
    (p50, p99)
}

#[tokio::main]
async fn main() {
    let flags = Flags::from_env(&["--broker", "--nginx", "--samples", "--seconds", "--agents"]);
    let broker_bin = flags.broker();
    let nginx_bin = flags.get("--nginx").filter(|s| !s.is_empty());
    let samples: usize = flags.parsed("--samples", 3000);
    let seconds: u64 = flags.parsed("--seconds", 5);
    let agents_n: usize = flags.parsed("--agents", 64);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let dir = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .tempdir()
        .unwrap();
    let data_dir = dir.path().join("broker");
    std::fs::create_dir(&data_dir).unwrap();
    std::fs::set_permissions(
        &data_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let data = data_dir.to_str().unwrap().to_owned();
    let up = start_upstream().await;
    let direct = format!("http://127.0.0.1:{up}{PATH}");

    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        format!(
            "name = \"code-host\"\nbase_url = \"http://127.0.0.1:{up}\"\naudience = \"{AUD}\"\n\
             allow_private_network = true\ncredential = {{ header = \"X-Api-Key\", value = \"Key {{secret}}\" }}\n\
             [[rule]]\nmethods = [\"GET\"]\npath = \"/repos/{{owner}}/{{repo}}/**\"\nscope = \"repo:read:{{repo}}\"\n"
        ),
    )
    .unwrap();
    cli(
        &broker_bin,
        &data,
        &["upstream", "add", rules.to_str().unwrap(), "--secret-stdin"],
        &format!("{SECRET}\n"),
    );
    let (broker, issuer) = serve(&broker_bin, &data);
    let gw = format!("{issuer}/gateway/code-host{PATH}");
    let mut agents = Vec::new();
    for i in 0..agents_n.max(1) {
        let name = format!("bench-{i}");
        let mut args = grant_create_args(&name, "repo:read:proj", AUD);
        args.extend(["--ttl", "1d"]);
        let g = cli(&broker_bin, &data, &args, "");
        agents.push(enroll(&http, &issuer, g["enrollment_code"].as_str().unwrap()).await);
    }
    let nginx_dir = dir.path().join("nginx");
    std::fs::create_dir(&nginx_dir).unwrap();
    let nginx = nginx_bin.and_then(|bin| start_nginx(bin, &nginx_dir, up));
    let via_nginx = nginx
        .as_ref()
        .map(|(_, port)| format!("http://127.0.0.1:{port}{PATH}"));

    println!(
        "latency at concurrency 1 (one agent, one request in flight): {} sequential GETs each, \
         interleaved (after 300 warm-up calls), keep-alive connections",
        samples
    );
    let (mut d, mut n, mut g) = (Vec::new(), Vec::new(), Vec::new());
    let first_agent = &mut agents[0];
    for i in 0..samples + 300 {
        // Interleaved, so that all three see the same machine.
        let x = plain_call(&http, &direct, true).await;
        let y = match &via_nginx {
            Some(u) => Some(plain_call(&http, u, false).await),
            None => None,
        };
        let z = loop {
            if let Some(z) = gateway_call(&http, &gw, first_agent).await {
                break z;
            }
        };
        if i >= 300 {
            d.push(x);
            n.extend(y);
            g.push(z);
        }
    }
    let (d50, d99) = line("direct to the upstream", &d);
    let nginx_p = if n.is_empty() {
        println!("  nginx: not run (install it: apt-get install nginx-light, or pass --nginx)");
        None
    } else {
        Some(line("through nginx (header injected)", &n))
    };
    let (g50, g99) = line("through the broker's gateway", &g);
    println!(
        "  added by the gateway:   p50 {:>6.0} us   p99 {:>6.0} us",
        g50 - d50,
        g99 - d99
    );
    if let Some((n50, n99)) = nginx_p {
        println!(
            "  added by nginx:         p50 {:>6.0} us   p99 {:>6.0} us   (gateway / nginx added p50: {:.2}x)",
            n50 - d50,
            n99 - d99,
            (g50 - d50) / (n50 - d50).max(1.0)
        );
    }

    println!(
        "\nthroughput: {} concurrent agents for {} s (each its own token, a fresh DPoP proof per request; \
         nginx: as many concurrent clients)",
        agents.len(),
        seconds
    );
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for mut agent in agents {
        let (http, gw, done) = (http.clone(), gw.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                if gateway_call(&http, &gw, &mut agent).await.is_some() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rps = done.load(Ordering::Relaxed) as f64 / seconds as f64;
    println!("  through the broker's gateway        {rps:>8.0} requests/s");
    if let Some(u) = &via_nginx {
        let done = Arc::new(AtomicU64::new(0));
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for _ in 0..agents_n.max(1) {
            let (http, u, done) = (http.clone(), u.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < until {
                    plain_call(&http, &u, false).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let rps = done.load(Ordering::Relaxed) as f64 / seconds as f64;
        println!("  through nginx (same clients)        {rps:>8.0} requests/s");
    }
    println!(
        "  (cores: {}; the client, the upstream, the broker and nginx share them)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    drop(nginx);
    drop(broker);
}
