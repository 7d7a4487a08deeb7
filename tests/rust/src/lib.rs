//! (Test infrastructure: failing loudly is the point, so expect/panic are allowed here.)
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

//! The test kit: start the real broker binary on loopback with a throw-away
//! data directory, and drive its CLI. The Python and Node suites follow the
//! same protocol: run `protonpass-broker serve --addr 127.0.0.1:0 --data DIR`
//! and read the first stdout line, `{"event":"listening","addr":..,"issuer":..}`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Where the broker binary is: `PROTONPASS_BROKER_BIN`, else next to the test
/// executable's target directory (`target/<profile>/protonpass-broker`).
pub fn broker_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PROTONPASS_BROKER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> -> target/<profile>/protonpass-broker
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    dir.join("protonpass-broker")
}

/// A running broker and its data directory.
#[derive(Debug)]
pub struct Broker {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The issuer URL.
    pub issuer: String,
    data: tempfile::TempDir,
    extra: Vec<String>,
}

impl Broker {
    /// Start a broker with extra global flags (e.g. `--access-ttl 3s`).
    pub fn start(extra: &[&str]) -> Broker {
        // Owner-only: the broker refuses a data directory others can read.
        let data = tempfile::Builder::new()
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .expect("tempdir");
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let mut b = Broker {
            child: None,
            addr: "127.0.0.1:0".into(),
            issuer: String::new(),
            data,
            extra,
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let bin = broker_bin();
        assert!(
            bin.exists(),
            "broker binary not found at {} (run `cargo build -p protonpass-broker` or set PROTONPASS_BROKER_BIN)",
            bin.display()
        );
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .arg("--addr")
            .arg(&self.addr)
            .arg("--data")
            .arg(self.data.path())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if !self.issuer.is_empty() {
            cmd.arg("--issuer").arg(&self.issuer);
        }
        let mut child = cmd.spawn().expect("start broker");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).expect("read listening line");
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("first broker line is not JSON ({e}): {line:?}"));
        assert_eq!(v["event"], "listening", "{line}");
        self.addr = v["addr"].as_str().expect("addr").to_owned();
        self.issuer = v["issuer"].as_str().expect("issuer").to_owned();
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        self.child = Some(child);
    }

    /// The broker process's id, while it runs (benches read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The data directory.
    pub fn data(&self) -> &Path {
        self.data.path()
    }

    /// Kill the broker (SIGKILL) without removing its data.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same address, issuer and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Run a CLI command against the same data directory; returns stdout.
    /// Panics with stderr when the command fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_raw(args);
        assert!(
            out.status.success(),
            "protonpass-broker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run a CLI command and return the whole output, success or not.
    pub fn cli_raw(&self, args: &[&str]) -> std::process::Output {
        Command::new(broker_bin())
            .args(args)
            .arg("--data")
            .arg(self.data.path())
            .args(&self.extra)
            .output()
            .expect("run broker CLI")
    }

    /// Run a CLI command with `--json` and parse its output.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a: Vec<&str> = args.to_vec();
        a.push("--json");
        let out = self.cli(&a);
        serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("CLI output is not JSON ({e}): {out}"))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
