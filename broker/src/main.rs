//! `protonpass-broker`: the self-hosted authorization server for agent access
//! tokens, and the owner's command line.

mod audit;
mod cli;
mod config;
mod dashboard;
mod http;
mod keys;
mod metrics;
mod model;
mod nonce;
mod service;
mod store;

use std::process::ExitCode;

use clap::Parser;

// Many small allocations cross threads (request tasks, the store writer):
// mimalloc spends less time on them than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PROTONPASS_BROKER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    cli::run(args)
}
