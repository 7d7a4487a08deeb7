//! What the benchmarks share (the broker's `examples/*bench*` and this
//! crate's benches): their `--name value` command line, a guard that stops a
//! child process, `serve` started for a measurement, enrollment with the
//! nonce round, latency percentiles and the CPU time of a process.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use protonpass_agent::AgentKey;
use serde_json::Value;

use crate::{PRE_AUTHORIZED_CODE, dpop};

/// A benchmark's command line: `--name value` pairs, in order (a later one
/// wins), each name one the benchmark knows.
#[derive(Debug)]
pub struct Flags(Vec<(String, String)>);

impl Flags {
    /// The process's arguments, paired; a name not in `known` panics as
    /// `unknown argument NAME`, a name with no value after it reads as "".
    pub fn from_env(known: &[&str]) -> Flags {
        let v: Vec<String> = std::env::args().skip(1).collect();
        let pairs = v
            .chunks(2)
            .map(|pair| {
                let name = pair[0].clone();
                if !known.contains(&name.as_str()) {
                    panic!("unknown argument {name}");
                }
                (name, pair.get(1).cloned().unwrap_or_default())
            })
            .collect();
        Flags(pairs)
    }

    /// The value of `name`, when given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name` parsed, else `default`; a value that does not
    /// parse panics.
    pub fn parsed<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.get(name) {
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| panic!("{name}: cannot read {v:?}")),
            None => default,
        }
    }

    /// `--broker`: the broker binary, by default the release build's.
    pub fn broker(&self) -> String {
        self.get("--broker")
            .unwrap_or("target/release/protonpass-broker")
            .to_owned()
    }
}

/// Stops the child process when dropped, even when the benchmark fails:
/// SIGTERM first, so that a master process (nginx's) stops its workers too
/// (SIGKILL would leave them holding their ports), then SIGKILL after 5 s.
#[derive(Debug)]
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if terminate(&mut self.0, Duration::from_secs(5)).is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Send SIGTERM to `child` and wait up to `within` for it to exit: its exit
/// status, or `None` while it still runs.
pub fn terminate(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let until = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Agent `i`'s HTTP client, from a loopback address of its own
/// (127.1.x.y): agents are distinct hosts, as in a deployment, so that the
/// broker's per-source share of the DPoP replay cache (1/64 of it: about
/// 270 proofs a second sustained from one address with the default 60 s
/// window) is not what a benchmark measures.
pub fn agent_client(i: usize) -> reqwest::Client {
    let addr = std::net::Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8);
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(addr))
        .pool_max_idle_per_host(4)
        .tcp_nodelay(true)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The first line `child` wrote to its standard output, as JSON.
pub fn first_line(child: &mut Child) -> Value {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

/// `serve` of the broker binary `bin` on `data` for a measurement: on
/// 127.0.0.1:0, rate limit off (every client shares one address: the
/// per-source limit would measure itself), access tokens valid for an hour;
/// its standard error shown with `BENCH_BROKER_STDERR` set, else dropped.
/// The process and its issuer.
pub fn serve(bin: &str, data: &str) -> (Guard, String) {
    let broker = Command::new(bin)
        .args([
            "--data",
            data,
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
    (broker, issuer)
}

/// Run the CLI of the broker binary `bin` on the data directory `data` with
/// `env` settings and `stdin` as its standard input: (exit code, its JSON
/// output, else the output as a string).
pub fn cli_at(
    bin: &Path,
    data: &Path,
    args: &[&str],
    env: &[(String, String)],
    stdin: &str,
) -> (i32, Value) {
    let mut c = Command::new(bin)
        .args(["--data", data.to_str().unwrap(), "--json"])
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = c.stdin.take().unwrap();
    // A command that stops before reading its input closes the pipe: its
    // answer says why.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(text.trim()).unwrap_or(Value::String(text.to_string()));
    (out.status.code().unwrap_or(-1), v)
}

/// Redeem the enrollment code `code` at `token_url` with `key`, answering
/// the broker's `use_dpop_nonce` challenges (three tries): the token answer
/// and the nonce the broker sent last.
pub async fn redeem_at(
    http: &reqwest::Client,
    token_url: &str,
    key: &AgentKey,
    code: &str,
) -> (Value, Option<String>) {
    let mut nonce = None;
    for _ in 0..3 {
        let r = http
            .post(token_url)
            .header("DPoP", dpop(key, "POST", token_url, None, nonce.as_deref()))
            .form(&[
                ("grant_type", PRE_AUTHORIZED_CODE),
                ("pre-authorized_code", code),
            ])
            .send()
            .await
            .unwrap();
        if let Some(n) = r.headers().get("dpop-nonce") {
            nonce = n.to_str().ok().map(str::to_owned);
        }
        let v: Value = r.json().await.unwrap();
        if v["access_token"].is_string() {
            return (v, nonce);
        }
        assert_eq!(v["error"], "use_dpop_nonce", "enrollment failed: {v}");
    }
    panic!("enrollment failed: the nonce round did not settle");
}

/// Where the `p` percentile (0 to 1) of `n` sorted samples stands: the
/// rank nearest `p * (n - 1)`.
fn rank(n: usize, p: f64) -> usize {
    ((n.saturating_sub(1) as f64) * p).round() as usize
}

/// The `p` percentile of `v`, sorted here; NaN when `v` is empty.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[rank(v.len(), p)]
}

/// The `p` percentile of the latencies `v` (at least one).
pub fn latency_percentile(v: &[Duration], p: f64) -> Duration {
    assert!(!v.is_empty(), "no latencies measured");
    let mut v = v.to_vec();
    v.sort_unstable();
    v[rank(v.len(), p)]
}

/// The CPU time process `pid` has used so far (user and system, all
/// threads), in clock ticks; `None` once it is gone.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces and parens):
    // utime and stime are fields 14 and 15 of the line, 12th and 13th after ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(n(11)? + n(12)?)
}
