//! "A token for my assistant to read my mail", end to end.
//!
//! A person's mail is behind an OAuth provider (here a local stand-in, see
//! `examples/demo-kit/oauth_provider.rs`). They add it to their broker as a gateway upstream with an
//! OAuth connection and connect their account (PKCE, state, iss); an agent
//! gets a DPoP-bound token scoped to `mail:read` and reads the mail through
//! the gateway without ever seeing the provider's tokens; it is refused when
//! it tries to send; the person disconnects and the agent is cut off; the
//! audit log shows it all.
//!
//! Run with `make demo-mail` (or `cargo run -p protonpass-mail-demo`).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a demo narrates

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use protonpass_agent::*;

#[path = "../../demo-kit/broker.rs"]
mod demo_kit;
#[path = "../../demo-kit/oauth_provider.rs"]
mod provider;

use demo_kit::{
    Fallible, Running, approving_prompt, authenticate_agent, cli, close_and_audit, expect, finish,
    setup, start_broker, step,
};

const DONE: &str =
    "The mail demo completed: connected, read, refused to send, disconnected, audited.";

/// `upstream connect mail`, with the person's browser played here: open the
/// authorization URL, consent, follow the redirect back to the broker.
async fn connect(bin: &Path, data: &Path) -> Fallible<String> {
    let mut child = Command::new(bin)
        .arg("--data")
        .arg(data)
        .args(["--json", "upstream", "connect", "mail"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let child = Running(child);
    let mut line = String::new();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    let started: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
    let url = started["authorize_url"]
        .as_str()
        .ok_or("no authorize_url")?;
    println!("   $ protonpass-broker upstream connect mail --json");
    println!("   open: {}...", &url[..url.len().min(72)]);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(|e| e.to_string())?;
    let page = browser.get(url).send().await.map_err(|e| e.to_string())?;
    println!(
        "   the person consents at the provider, and is sent back: {}",
        page.status()
    );
    line.clear();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    drop(child);
    let done: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
    let id = done["connection"]
        .as_str()
        .ok_or("not connected")?
        .to_owned();
    Ok(id)
}

async fn run() -> Fallible<()> {
    let (bin, data, home) = setup()?;

    step(
        1,
        "The mail provider (a local stand-in) and the person's broker start.",
    );
    let provider = provider::Provider::bind().await?;
    let (broker, issuer) = start_broker(&bin, data.path())?;
    println!("   provider at {}, broker at {issuer}", provider.url());

    step(
        2,
        "The person adds their mailbox as an upstream with an OAuth connection.",
    );
    println!(
        "   $ protonpass-broker upstream add mail.toml --secret-stdin   (the OAuth client's secret)"
    );
    let rules_file = data.path().join("mail.toml");
    std::fs::write(&rules_file, provider.rules("mail", &provider.url()))
        .map_err(|e| e.to_string())?;
    let path = rules_file.to_str().ok_or("path")?;
    let added = cli(
        &bin,
        data.path(),
        &["--json", "upstream", "add", path, "--secret-stdin"],
        Some(&format!("{}\n", provider::CLIENT_SECRET)),
    )?;
    let added: serde_json::Value = serde_json::from_str(added.trim()).map_err(|e| e.to_string())?;
    let gateway = added["gateway_url"]
        .as_str()
        .ok_or("no gateway_url")?
        .to_owned();
    println!("   agents will call {gateway}");

    step(
        3,
        "The person connects their account (authorization code, PKCE, state, iss).",
    );
    let conn = connect(&bin, data.path()).await?;
    println!("   connected: {conn}");

    step(
        4,
        "The assistant asks to read mail; the person approves mail:read only.",
    );
    let prompt = approving_prompt(&bin, data.path(), "8h", |_: &DevicePrompt| {});
    let session = authenticate_agent(
        &["mail:read"],
        "https://mail.example/mail",
        "mail-assistant",
        "summarise my mail",
        &issuer,
        home.path(),
        prompt,
    )
    .await?;
    println!("   granted: {}", session.scopes());

    step(
        5,
        "It reads the mail through the gateway (it never sees the provider's tokens).",
    );
    expect(
        &session,
        "GET",
        &gateway,
        "/messages",
        "summarise my mail",
        200,
    )
    .await?;

    step(
        6,
        "It tries to send mail: the gateway refuses, the provider is never asked.",
    );
    expect(
        &session,
        "POST",
        &gateway,
        "/send",
        "reply to my friend",
        403,
    )
    .await?;

    step(
        7,
        "The person disconnects the mailbox: revoked at the provider, agents cut off.",
    );
    println!("   $ protonpass-broker upstream disconnect mail");
    print!(
        "   {}",
        cli(&bin, data.path(), &["upstream", "disconnect", "mail"], None)?
    );
    expect(&session, "GET", &gateway, "/messages", "read again", 502).await?;
    close_and_audit(8, &session, &bin, data.path(), broker).await
}

#[tokio::main]
async fn main() -> ExitCode {
    finish(run().await, DONE)
}
