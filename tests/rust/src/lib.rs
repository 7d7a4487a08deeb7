//! The Rust test kit, the one that every Rust test tree uses (this crate's own
//! tests and benches, and the broker's `tests/e2e`): start the real broker
//! binary on 127.0.0.1:0 with a throw-away data directory, run its CLI, talk
//! HTTP to it and make DPoP proofs with core. The Python and Node suites follow
//! the same protocol: run `protonpass-broker serve --addr 127.0.0.1:0 --data DIR`
//! and read the first stdout line, `{"event":"listening","addr":..,"issuer":..}`.

// Test infrastructure: failing loudly is the point.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

pub mod bench;
mod http;
mod store;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use protonpass_agent::{AgentKey, OsRandom};
use serde_json::Value;

pub use http::{PRE_AUTHORIZED_CODE, Reply, dpop, dpop_why, reply};
pub use store::{fresh_database, on_postgres, prepare_store_on, store_sql, test_store};

/// The runtime of the benches: two worker threads, the client's share of the
/// machine whose figures the READMEs give.
pub fn bench_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The audience the tests' grants name.
pub const API: &str = "https://api.example";

/// Where the broker binary is: `PROTONPASS_BROKER_BIN` (the Makefile exports
/// the debug one; a release test run names the release one), else next to the
/// test executable's target directory (`target/<profile>/deps/<test>` ->
/// `target/<profile>/protonpass-broker`, where cargo puts the binary it builds
/// for the broker's own integration tests).
pub fn broker_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PROTONPASS_BROKER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    dir.join("protonpass-broker")
}

/// A running broker, its data directory and its settings.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    stdout: BufReader<ChildStdout>,
    /// The issuer URL.
    pub url: String,
    /// The address it listens on (`url` is the issuer, which may be a proxy's).
    pub bound: String,
    pub data: PathBuf,
    dir: Option<tempfile::TempDir>,
    /// The command-line arguments after `serve` (kept for `restart`).
    args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub http: reqwest::Client,
    nonce: Mutex<Option<String>>,
}

/// An owner-only temporary directory: the broker refuses a data directory
/// others can read.
pub fn private_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .unwrap()
}

impl Broker {
    /// A broker on a fresh data directory with `env` settings.
    pub fn start(env: &[(&str, &str)]) -> Broker {
        Self::launch_fresh(None, &[], env)
    }

    /// A broker on a fresh data directory with command-line `args` after
    /// `serve` (e.g. `--access-ttl 3s`).
    pub fn with_args(args: &[&str]) -> Broker {
        Self::launch_fresh(None, args, &[])
    }

    /// `serve` with command-line `args` on a fresh data directory (removed with
    /// this broker), whose database is made on the PostgreSQL server `store`
    /// when given, else as `start` does.
    pub fn launch_fresh(store: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Broker {
        let dir = private_dir();
        if let Some(base) = store {
            prepare_store_on(dir.path(), base);
        }
        let mut b = Self::launch(dir.path(), "127.0.0.1:0", args, env);
        b.dir = Some(dir);
        b
    }

    /// A broker on an existing data directory (restarts).
    pub fn start_in(data: &Path, env: &[(&str, &str)]) -> Broker {
        Self::start_at(data, "127.0.0.1:0", env)
    }

    /// A broker on an existing data directory listening on `addr`: a restart
    /// on the same address keeps the issuer, so tokens issued before it stay
    /// verifiable (their `iss` is the old address).
    pub fn start_at(data: &Path, addr: &str, env: &[(&str, &str)]) -> Broker {
        Self::launch(data, addr, &[], env)
    }

    /// `serve` on `data` and `addr` with extra command-line `args` and `env`.
    pub fn launch(data: &Path, addr: &str, args: &[&str], env: &[(&str, &str)]) -> Broker {
        let _ = std::fs::create_dir_all(data);
        store::prepare_store(data);
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("broker.log"))
            .ok();
        let _ = std::fs::create_dir_all(data);
        // The broker refuses a data directory others can read.
        let _ = std::fs::set_permissions(data, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        let log = log
            .or_else(|| std::fs::File::create(data.join("broker.log")).ok())
            .unwrap();
        let bin = broker_bin();
        assert!(
            bin.exists(),
            "broker binary not found at {} (run `cargo build -p protonpass-broker` or set PROTONPASS_BROKER_BIN)",
            bin.display()
        );
        let mut child = Command::new(bin)
            .args(["--data", data.to_str().unwrap(), "serve", "--addr", addr])
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            let log = std::fs::read_to_string(data.join("broker.log")).unwrap_or_default();
            panic!("first line {line:?}: {e}; the broker said: {log}")
        });
        assert_eq!(v["event"], "listening");
        let url = v["issuer"].as_str().unwrap().to_owned();
        if !args.contains(&"--issuer") {
            assert_eq!(url, format!("http://{}", v["addr"].as_str().unwrap()));
        }
        Broker {
            child,
            stdout,
            url,
            bound: v["addr"].as_str().unwrap().to_owned(),
            data: data.to_owned(),
            dir: None,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env,
            http: reqwest::Client::new(),
            nonce: Mutex::new(None),
        }
    }

    /// Stop it at once and start it again on the same address, data,
    /// arguments and settings (so with the same issuer).
    pub fn restart(&mut self) {
        self.kill();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut next = Self::launch(&self.data, &self.bound, &args, &env);
        next.dir = self.dir.take();
        // The old one, without its directory, only drops its dead process.
        *self = next;
    }

    /// The next line `serve` wrote to standard output after the first.
    pub fn stdout_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address it listens on (host:port).
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// Stop the process at once (as kill -9 would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send SIGTERM and wait up to 10 s for the process to exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        bench::terminate(&mut self.child, std::time::Duration::from_secs(10))
    }

    /// Keep the data directory alive past this broker (for restarts).
    pub fn take_dir(&mut self) -> tempfile::TempDir {
        self.dir.take().unwrap()
    }

    /// Run a CLI command against the same data directory; returns (exit code, JSON output).
    pub fn cli(&self, args: &[&str]) -> (i32, Value) {
        self.cli_with_stdin(args, "")
    }

    /// [`Broker::cli`], with `stdin` as the command's standard input (a
    /// secret for `--secret-stdin`, say).
    pub fn cli_with_stdin(&self, args: &[&str], stdin: &str) -> (i32, Value) {
        bench::cli_at(&broker_bin(), &self.data, args, &self.env, stdin)
    }

    /// `cli`, expecting success.
    pub fn cli_ok(&self, args: &[&str]) -> Value {
        let (code, v) = self.cli(args);
        assert_eq!(code, 0, "{args:?} failed: {v}");
        v
    }

    /// Add owners (tenants) besides `default`: commands refuse an owner that
    /// does not exist.
    pub fn add_owners(&self, names: &[&str]) {
        for n in names {
            self.cli_ok(&["owner", "add", n]);
        }
    }

    /// `grant create` for `agent` with `scope` on `API` and `extra` options;
    /// answers what the CLI printed (`grant_id`, `enrollment_code`, ...).
    pub fn create_grant(&self, agent: &str, scope: &str, extra: &[&str]) -> Value {
        self.create_grant_on(agent, scope, API, extra)
    }

    /// `create_grant` on `audience`.
    pub fn create_grant_on(
        &self,
        agent: &str,
        scope: &str,
        audience: &str,
        extra: &[&str],
    ) -> Value {
        let mut args = grant_create_args(agent, scope, audience);
        args.extend_from_slice(extra);
        self.cli_ok(&args)
    }

    /// Register a resource server for `audience`: (client_id, client_secret).
    pub fn resource(&self, audience: &str, owner: Option<&str>) -> (String, String) {
        let mut args = vec!["resource", "add", audience];
        if let Some(o) = owner {
            args.extend_from_slice(&["--owner", o]);
        }
        let v = self.cli_ok(&args);
        (
            v["client_id"].as_str().unwrap().to_owned(),
            v["client_secret"].as_str().unwrap().to_owned(),
        )
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        // The data directory goes with this broker: so does its database.
        if self.dir.is_some() {
            store::drop_database(&self.data);
        }
    }
}

/// The CLI's `grant create` for `agent` with `scope` on `audience` (more
/// options may follow).
pub fn grant_create_args<'a>(agent: &'a str, scope: &'a str, audience: &'a str) -> Vec<&'a str> {
    vec![
        "grant",
        "create",
        "--agent",
        agent,
        "--scope",
        scope,
        "--audience",
        audience,
    ]
}

/// The CLI's `grant budget` of `payment:execute` on grant `gid`: `limit` in
/// `currency` each `period` (`day`, `total`, ...).
pub fn payment_budget_args<'a>(
    gid: &'a str,
    limit: &'a str,
    currency: &'a str,
    period: &'a str,
) -> Vec<&'a str> {
    vec![
        "grant",
        "budget",
        gid,
        "--scope",
        "payment:execute",
        "--limit",
        limit,
        "--currency",
        currency,
        "--period",
        period,
    ]
}

/// Run the broker's CLI on the data directory `data` where no [`Broker`] is
/// at hand (a prompt callback's thread, acting as the owner elsewhere): its
/// JSON output, or null when it printed none.
pub fn cli_on(data: &Path, args: &[&str]) -> Value {
    let out = Command::new(broker_bin())
        .args(["--data", data.to_str().unwrap(), "--json"])
        .args(args)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A port of 127.0.0.1 free a moment ago, for a process that must be told
/// its address before it starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh agent key.
pub fn key() -> AgentKey {
    AgentKey::generate(&OsRandom).unwrap()
}

/// The claims of a JWT, unverified (tests check them against the JWKS separately).
pub fn claims(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&protonpass_agent::b64::decode(part).unwrap()).unwrap()
}

/// Every audit record, with its detail parsed.
pub fn audit_records(b: &Broker) -> Vec<Value> {
    let (code, v) = b.cli(&["audit", "export"]);
    assert_eq!(code, 0, "audit export: {v}");
    let lines: Vec<Value> = match v {
        Value::String(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        Value::Object(_) => vec![v],
        other => panic!("audit export printed {other}"),
    };
    lines
        .into_iter()
        .map(|mut r| {
            let detail: Value =
                serde_json::from_str(r["detail"].as_str().unwrap()).unwrap_or(Value::Null);
            r["detail"] = detail;
            r
        })
        .collect()
}

/// `serve` with settings it must refuse: the process exits with a failure and
/// prints the typed error (`--json`) instead of listening.
pub fn serve_refused(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Value {
    let out = Command::new(broker_bin())
        .args(["--json", "--data", data.to_str().unwrap(), "serve"])
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve {args:?} {env:?} started");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "serve {args:?} printed no JSON error ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
