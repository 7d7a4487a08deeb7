//! `protonpass-broker`: the self-hosted authorization server for agent access
//! tokens, and the owner's command line. The binary is [`run`]; the library
//! also exposes the pure request parsers of [`protocol`] (the token
//! endpoint's request in [`token_request`], fuzzed and called by tests), and
//! the audit chain's
//! record hash ([`audit`]), for tools that check or build exported logs.

/// `println!` for the command line's output: when the reader stops reading
/// (`protonpass-broker ... | head`), the command ends quietly with status 141
/// (as a tool killed by SIGPIPE does) instead of panicking.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, $($t)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(141);
            }
        }
    }};
}

pub mod audit;
mod cli;
mod client_document;
mod config;
mod cookies;
mod dashboard;
mod files;
pub mod gateway;
mod http;
mod keys;
mod metrics;
mod model;
pub mod protocol;
mod public_net;
mod ratelimit;
pub mod scope_catalog;
mod service;
mod store;
mod webhook;

pub use protocol::{authz_details, client_metadata, token_request};

use std::process::ExitCode;

/// Parse the command line, set up logging (JSON lines on stderr, filtered by
/// `PROTONPASS_BROKER_LOG`), and run the command.
pub fn run() -> ExitCode {
    // Everything the broker creates (database, its journal files, keys,
    // setup-link files) is owner-only, whatever the caller's umask.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let args = cli::parse();
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("PROTONPASS_BROKER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The PostgreSQL client logs each statement with its parameters (hashes
    // of tokens and codes, sealed secrets) at debug level: never below info,
    // whatever the setting.
    for d in ["tokio_postgres=info", "deadpool_postgres=info"] {
        if let Ok(d) = d.parse() {
            filter = filter.add_directive(d);
        }
    }
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    cli::run(args)
}
