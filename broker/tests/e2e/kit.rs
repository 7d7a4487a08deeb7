//! The test kit: start the real broker binary on 127.0.0.1:0 with a throw-away
//! data directory, talk HTTP to it, run its CLI, and make DPoP proofs with core.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use protonpass_agent::{AgentKey, Clock, OsRandom, ProofInput, SystemClock, create_proof};
use reqwest::header::HeaderMap;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_protonpass-broker");
pub const API: &str = "https://api.example";

pub struct Broker {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    pub url: String,
    /// The address it listens on (`url` is the issuer, which may be a proxy's).
    pub bound: String,
    pub data: PathBuf,
    _dir: Option<tempfile::TempDir>,
    pub env: Vec<(String, String)>,
    pub http: reqwest::Client,
    nonce: Mutex<Option<String>>,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Reply {
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
    pub fn s(&self, k: &str) -> String {
        self.body[k].as_str().unwrap_or_default().to_owned()
    }
}

impl Broker {
    /// A broker on a fresh data directory with `env` settings.
    pub fn start(env: &[(&str, &str)]) -> Broker {
        // Owner-only: the broker refuses a data directory others can read.
        let dir = tempfile::Builder::new()
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .unwrap();
        let data = dir.path().to_owned();
        let mut b = Self::start_in(&data, env);
        b._dir = Some(dir);
        b
    }

    /// `serve` with command-line `args` on a fresh data directory (removed with
    /// this broker), whose database is made on the PostgreSQL server `store`
    /// when given, else as `start` does.
    pub fn launch_fresh(store: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Broker {
        let dir = tempfile::Builder::new()
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .unwrap();
        if let Some(base) = store {
            prepare_store_on(dir.path(), base);
        }
        let mut b = Self::launch(dir.path(), "127.0.0.1:0", args, env);
        b._dir = Some(dir);
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
        prepare_store(data);
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
        let mut child = Command::new(BIN)
            .args(["--data", data.to_str().unwrap(), "serve", "--addr", addr])
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
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
            _stdout: stdout,
            url,
            bound: v["addr"].as_str().unwrap().to_owned(),
            data: data.to_owned(),
            _dir: None,
            env,
            http: reqwest::Client::new(),
            nonce: Mutex::new(None),
        }
    }

    /// The next line `serve` wrote to standard output after the first.
    pub fn stdout_line(&mut self) -> String {
        let mut line = String::new();
        self._stdout.read_line(&mut line).unwrap();
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
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        None
    }

    /// Keep the data directory alive past this broker (for restarts).
    pub fn take_dir(&mut self) -> tempfile::TempDir {
        self._dir.take().unwrap()
    }

    /// Run a CLI command against the same data directory; returns (exit code, JSON output).
    pub fn cli(&self, args: &[&str]) -> (i32, Value) {
        let out = Command::new(BIN)
            .args(["--data", self.data.to_str().unwrap(), "--json"])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let v = serde_json::from_str(text.trim()).unwrap_or(Value::String(text.to_string()));
        (out.status.code().unwrap_or(-1), v)
    }

    /// Add owners (tenants) besides `default`: commands refuse an owner that
    /// does not exist.
    pub fn add_owners(&self, names: &[&str]) {
        for n in names {
            self.cli_ok(&["owner", "add", n]);
        }
    }

    /// `cli`, expecting success.
    pub fn cli_ok(&self, args: &[&str]) -> Value {
        let (code, v) = self.cli(args);
        assert_eq!(code, 0, "{args:?} failed: {v}");
        v
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.url)
    }

    pub fn proof(&self, key: &AgentKey, url: &str, nonce: Option<&str>) -> String {
        create_proof(
            key,
            &ProofInput {
                method: "POST",
                url,
                nonce,
                ..Default::default()
            },
            SystemClock.now(),
            &OsRandom,
        )
        .unwrap()
    }

    pub async fn post_form(
        &self,
        path: &str,
        params: &[(&str, &str)],
        headers: &[(&str, String)],
    ) -> Reply {
        self.post_form_to(&self.url, path, params, headers).await
    }

    /// `post_form` to another base URL than the issuer (a replica's own address).
    pub async fn post_form_to(
        &self,
        base: &str,
        path: &str,
        params: &[(&str, &str)],
        headers: &[(&str, String)],
    ) -> Reply {
        let mut req = self
            .http
            .post(format!("{base}{path}"))
            .header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let r = req.body(body).send().await.unwrap();
        reply(r).await
    }

    /// A token request with a fresh proof by `key`, fetching a nonce when asked.
    pub async fn token(&self, key: &AgentKey, params: &[(&str, &str)]) -> Reply {
        for _ in 0..2 {
            let nonce = self.nonce.lock().unwrap().clone();
            let proof = self.proof(key, &self.token_url(), nonce.as_deref());
            let r = self
                .post_form("/oauth/token", params, &[("DPoP", proof)])
                .await;
            if let Some(n) = r.headers.get("dpop-nonce") {
                *self.nonce.lock().unwrap() = Some(n.to_str().unwrap().to_owned());
            }
            if r.error() != "use_dpop_nonce" {
                return r;
            }
        }
        panic!("the nonce round did not settle");
    }

    /// A token exchange (RFC 8693) of `subject`, of type `ty`, with `extra`
    /// parameters, proved by `key`.
    pub async fn exchange(
        &self,
        key: &AgentKey,
        subject: &str,
        ty: &str,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut p = vec![
            ("grant_type", protonpass_agent::wire::GRANT_TOKEN_EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", ty),
        ];
        p.extend_from_slice(extra);
        self.token(key, &p).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        reply(
            self.http
                .get(format!("{}{path}", self.url))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Create a pre-authorized grant with the CLI and redeem it with `key`.
    pub async fn enroll(&self, key: &AgentKey, agent: &str, scope: &str, extra: &[&str]) -> Reply {
        let mut args = vec![
            "grant",
            "create",
            "--agent",
            agent,
            "--scope",
            scope,
            "--audience",
            API,
        ];
        args.extend_from_slice(extra);
        let g = self.cli_ok(&args);
        let code = g["enrollment_code"].as_str().unwrap().to_owned();
        let r = self
            .token(
                key,
                &[
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:pre-authorized_code",
                    ),
                    ("pre-authorized_code", &code),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "enroll: {}", r.body);
        r
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

    pub async fn introspect(&self, rs: &(String, String), token: &str) -> Reply {
        self.post_form(
            "/oauth/introspect",
            &[
                ("token", token),
                ("client_id", &rs.0),
                ("client_secret", &rs.1),
            ],
            &[],
        )
        .await
    }

    pub async fn feed(&self, after: i64) -> Vec<Value> {
        let r = self.get(&format!("/revocations?after={after}")).await;
        assert_eq!(r.status, 200);
        r.body["revocations"].as_array().unwrap().clone()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        // The data directory goes with this broker: so does its database.
        if self._dir.is_some()
            && let Some(url) = std::fs::read_to_string(self.data.join(STORE_FILE))
                .ok()
                .and_then(|t| t.lines().next().map(str::to_owned))
            && let Some(base) = test_store()
            && let Some((_, name)) = url.rsplit_once('/')
        {
            let name = name.to_owned();
            pg_admin(
                &base,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// The PostgreSQL server the suite runs against (`PROTONPASS_TEST_STORE`, a
/// postgres:// URL of a database the tests may create databases from), or
/// `None`: SQLite in each broker's data directory.
pub fn test_store() -> Option<String> {
    std::env::var("PROTONPASS_TEST_STORE")
        .ok()
        .filter(|s| !s.trim().is_empty())
}

/// Whether the suite runs against PostgreSQL (tests that look into SQLite's
/// files are skipped then).
pub fn on_postgres() -> bool {
    test_store().is_some()
}

/// Run `sql` on the store of the broker of `data`: its PostgreSQL database
/// with `PROTONPASS_TEST_STORE`, else its SQLite file (no broker running).
pub fn store_sql(data: &Path, sql: &str) {
    if on_postgres() {
        let url = std::fs::read_to_string(data.join(STORE_FILE)).unwrap();
        pg_admin(url.trim(), sql);
    } else {
        let db = rusqlite::Connection::open(data.join("broker.db")).unwrap();
        db.execute_batch(sql).unwrap();
    }
}

/// Where the kit records a data directory's database.
const STORE_FILE: &str = "test-store";

/// Run one statement on the test server's admin database.
fn pg_admin(base: &str, sql: &str) {
    let (base, sql) = (base.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (c, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            c.batch_execute(&sql).await.unwrap();
        });
    })
    .join()
    .unwrap();
}

/// With PostgreSQL, give the broker on `data` a fresh database (made on the
/// first start on `data`, kept for restarts) and a vault key file, through
/// `broker.toml` in the data directory: every command run with `--data`
/// (the CLI, tests' own commands) then uses the same store, as replicas and
/// operators do with the configuration file.
fn prepare_store(data: &Path) {
    if let Some(base) = test_store() {
        prepare_store_on(data, &base);
    }
}

/// `prepare_store` on the PostgreSQL server `base` (a postgres:// URL of a
/// database from which others can be created).
pub fn prepare_store_on(data: &Path, base: &str) {
    let file = data.join(STORE_FILE);
    if file.exists() {
        return;
    }
    let mut raw = [0u8; 16];
    protonpass_agent::Random::fill(&OsRandom, &mut raw).unwrap();
    let name: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("t_{name}");
    pg_admin(base, &format!("CREATE DATABASE {name}"));
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let url = format!("{prefix}/{name}");
    let mut key = [0u8; 32];
    protonpass_agent::Random::fill(&OsRandom, &mut key).unwrap();
    let key_file = data.join("test-vault.key");
    std::fs::write(&key_file, protonpass_agent::b64::encode(key)).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(&file, format!("{url}\n")).unwrap();
    // Before the test's own settings, if it wrote a file already.
    let own = std::fs::read_to_string(data.join("broker.toml")).unwrap_or_default();
    std::fs::write(
        data.join("broker.toml"),
        format!(
            "store = {url:?}\nvault_key_file = {:?}\n{own}",
            key_file.display().to_string()
        ),
    )
    .unwrap();
}

pub async fn reply(r: reqwest::Response) -> Reply {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        body,
        headers,
    }
}

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
    let out = Command::new(BIN)
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
