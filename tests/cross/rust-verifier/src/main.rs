//! `cross-verifier --issuer URL [--audience URL]`: serves `GET /whoami` (needs
//! `travel:search`) on 127.0.0.1, port 0, behind the core's `Verifier` (the
//! audience defaults to the server's own URL); prints
//! `{"event":"listening","url":...,"audience":...}` as its first stdout line. Answers 200 with
//! the caller's identity, or the verifier's 401/403 with `WWW-Authenticate`.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a test server prints its address

use std::io::Write as _;
use std::process::ExitCode;

use axum::Router;
use axum::routing::get;
use protonpass_agent::net::axum_layer::{Agent, Protected};
use protonpass_agent::*;

async fn whoami(agent: Agent) -> std::result::Result<String, Rejection> {
    agent.require("travel:search")?;
    Ok(serde_json::json!({
        "verifier": "rust",
        "owner": agent.owner,
        "agent": agent.agent,
        "scopes": agent.scopes.to_string(),
        "token_id": agent.token_id,
        "grant_id": agent.grant_id,
    })
    .to_string())
}

async fn run() -> std::result::Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .ok_or_else(|| {
                format!("usage: cross-verifier --issuer URL [--audience URL] (missing {name})")
            })
    };
    let issuer = arg("--issuer")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let audience = arg("--audience").unwrap_or_else(|_| url.clone());
    let verifier = Verifier::new(VerifierOptions::new(issuer, audience.clone()))
        .await
        .map_err(|e| e.to_string())?;
    let app = Router::new()
        .route("/whoami", get(whoami))
        .with_state(Protected::new(verifier, url.clone()));
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "{}",
        serde_json::json!({"event": "listening", "url": url, "audience": audience})
    );
    let _ = out.flush();
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cross-verifier: {e}");
            ExitCode::FAILURE
        }
    }
}
