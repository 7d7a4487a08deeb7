//! What the Rust demos share: finding, starting and commanding the broker
//! binary, narrating the steps and the agent's calls, the scripted approval,
//! the agent's authentication and the closing audit step. Included by `examples/mail-rust` and
//! `examples/travel-rust` as their `demo_kit` module, so that each demo's
//! `main.rs` is only its story.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;

use protonpass_agent::{
    AuthOptions, DevicePrompt, PromptFn, Session, StoreKind, authenticate_with_proton,
};

pub type Fallible<T> = std::result::Result<T, String>;

pub fn step(n: u32, text: &str) {
    println!("\n{n}. {text}");
}

/// The broker binary next to this one (cargo builds both into one directory).
pub fn broker_bin() -> Fallible<PathBuf> {
    if let Some(p) = std::env::var_os("PROTONPASS_BROKER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let p = exe
        .parent()
        .map(|d| d.join("protonpass-broker"))
        .ok_or("no directory")?;
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found: build it with `cargo build -p protonpass-broker`",
            p.display()
        ))
    }
}

/// A child process, killed when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `protonpass-broker serve` on a free port of 127.0.0.1 with its data
/// in `data`; returns the process and the issuer URL it printed.
pub fn start_broker(bin: &Path, data: &Path) -> Fallible<(Running, String)> {
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--device-interval",
            "1",
            "--data",
        ])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the broker: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let running = Running(child);
    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next()
        .ok_or("the broker printed nothing")?
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&first).map_err(|e| e.to_string())?;
    let issuer = v["issuer"].as_str().ok_or("no issuer")?.to_owned();
    std::thread::spawn(move || for _ in lines {});
    Ok((running, issuer))
}

/// Run one `protonpass-broker` command on `data` (with `stdin` fed to it), and
/// return what it printed.
pub fn cli(bin: &Path, data: &Path, args: &[&str], stdin: Option<&str>) -> Fallible<String> {
    let mut child = Command::new(bin)
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "protonpass-broker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An owner-only temporary directory: where the broker keeps its keys and grants.
pub fn private_dir() -> Fallible<tempfile::TempDir> {
    tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .map_err(|e| e.to_string())
}

/// What every demo starts from: the broker binary, the broker's owner-only
/// data directory (its keys and grants) and the agent's home (its stored grant).
pub fn setup() -> Fallible<(PathBuf, tempfile::TempDir, tempfile::TempDir)> {
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    Ok((broker_bin()?, private_dir()?, home))
}

/// The device prompt of a demo, where the person's answer is scripted: after
/// `narrate` has told the story, print the `approve` command and run it in the
/// background while the agent polls.
pub fn approving_prompt(
    bin: &Path,
    data: &Path,
    ttl: &'static str,
    narrate: impl Fn(&DevicePrompt) + Send + Sync + 'static,
) -> PromptFn {
    let (bin, data) = (bin.to_path_buf(), data.to_path_buf());
    Arc::new(move |p: &DevicePrompt| {
        narrate(p);
        println!("   $ protonpass-broker approve {} --ttl {ttl}", p.user_code);
        let (code, bin, data) = (p.user_code.clone(), bin.clone(), data.clone());
        std::thread::spawn(move || {
            if let Err(e) = cli(&bin, &data, &["approve", &code, "--ttl", ttl], None) {
                eprintln!("   approval failed: {e}");
            }
        });
    })
}

/// The agent `agent_name` asks the broker at `issuer` for `scopes` on
/// `audience`, saying why (`reason`); it keeps its grant in `home`, and the
/// person's answer comes through `prompt` the first time.
pub async fn authenticate_agent(
    scopes: &[&str],
    audience: &str,
    agent_name: &str,
    reason: &str,
    issuer: &str,
    home: &Path,
    prompt: PromptFn,
) -> Fallible<Session> {
    // readme:begin rust-agent
    let session = authenticate_with_proton(
        scopes,
        audience,
        AuthOptions {
            broker: Some(issuer.to_owned()),
            agent_name: Some(agent_name.to_owned()),
            store: Some(StoreKind::File(home.to_path_buf())),
            prompt: Some(prompt),
            reason: Some(reason.to_owned()),
            ..AuthOptions::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    // readme:end rust-agent
    Ok(session)
}

/// The agent calls `{base}{path}` for the reason `why`: the status, and the
/// answer (the body, or the `WWW-Authenticate` challenge of a refusal that
/// has one).
pub async fn call(
    session: &Session,
    method: &str,
    base: &str,
    path: &str,
    why: &str,
) -> Fallible<(u16, String)> {
    let url = format!("{base}{path}");
    let r = session
        .send(method, &url, &[], None, Some(why))
        .await
        .map_err(|e| format!("{} ({})", e, e.code()))?;
    let status = r.status().as_u16();
    let www = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = r.text().await.unwrap_or_default();
    Ok((status, www.filter(|_| status != 200).unwrap_or(body)))
}

/// [`call`], narrated as `METHOD path -> status answer`; an error unless the
/// status is `want`.
pub async fn expect(
    session: &Session,
    method: &str,
    base: &str,
    path: &str,
    why: &str,
    want: u16,
) -> Fallible<()> {
    let (status, answer) = call(session, method, base, path, why).await?;
    println!("   {method} {path} -> {status} {answer}");
    if status != want {
        return Err(format!("{method} {path} answered {status}, not {want}"));
    }
    Ok(())
}

/// The end of every demo: the agent closes its session (its tokens are
/// revoked), the audit log and the check of its hash chain (step `n`), and
/// the broker stops.
pub async fn close_and_audit(
    n: u32,
    session: &Session,
    bin: &Path,
    data: &Path,
    broker: Running,
) -> Fallible<()> {
    let _ = session.close(false).await;
    step(n, "The audit log, and the verification of its hash chain.");
    print!("{}", cli(bin, data, &["audit", "tail"], None)?);
    print!("{}", cli(bin, data, &["audit", "verify"], None)?);
    drop(broker);
    Ok(())
}

/// The demo's exit: `done` on success, the error and a failure status otherwise.
pub fn finish(result: Fallible<()>, done: &str) -> ExitCode {
    match result {
        Ok(()) => {
            println!("\n{done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\ndemo failed: {e}");
            ExitCode::FAILURE
        }
    }
}
