//! The command line: `serve` and the owner's commands. Every command opens the
//! data directory (or the PostgreSQL store) itself, so it works whether or
//! not a server is running.
//!
//! The grammar (clap definitions) is in `args.rs`; this file is the
//! composition root: it opens the store, builds the broker and dispatches.
//! Each area's commands are in their own file.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod audit;
mod audit_archive;
mod grants;
mod human;
mod ops;
mod owners;
mod resources;
mod serve;
mod stepup;
mod upstream;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use protonpass_agent::wire::ErrorBody;
use protonpass_agent::{Clock, Error, OsRandom, Result, SystemClock};

use crate::config::Config;
use crate::keys::{KeyHome, KeyPlace};
use crate::service::Broker;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{self, Store};

use args::{AuditCmd, Cmd, GrantCmd, KeysCmd, OwnerCmd, ResourceCmd, WebhookCmd};
pub use args::{Cli, parse};

fn fail(json_out: bool, e: &Error) -> ExitCode {
    if json_out {
        say!(
            "{}",
            serde_json::to_string(&ErrorBody::from(e)).unwrap_or_default()
        );
    } else {
        // People read the cause and the fix; the wire code is in --json.
        eprintln!("error: {}", e.description());
    }
    ExitCode::FAILURE
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let cfg = match Config::resolve(&cli.settings) {
        Ok(c) => c,
        Err(e) => return fail(cli.json, &e),
    };
    match dispatch(&cli, cfg) {
        Ok(code) => code,
        Err(e) => fail(cli.json, &e),
    }
}

fn open_store(cfg: &Config) -> Result<Arc<dyn Store>> {
    // Where the vault key comes from; a shared store needs one every
    // replica has, so this fails at start rather than at the first use.
    crate::gateway::vault::configure(cfg.vault_key_file.as_deref(), cfg.store.is_some())?;
    let s: Arc<dyn Store> = match &cfg.store {
        Some(url) => {
            let s = PgStore::open(url)?;
            // Replicas must accept each other's known-device cookies.
            let vault = crate::gateway::vault::Vault::load(&cfg.data, &OsRandom)?;
            crate::dashboard::device_cookie::share_key(vault.derive("device-cookie").as_ref());
            s
        }
        None => {
            crate::files::check_data_dir(&cfg.data, true)?;
            SqliteStore::open_with(
                &cfg.data.join("broker.db"),
                Duration::from_millis(cfg.busy_timeout_ms),
            )?
        }
    };
    let now = SystemClock.now();
    store::write_blocking(&s, move |tx| tx.owner_ensure("default", now))?;
    Ok(s)
}

/// Where `cfg`'s signing keys are kept: their records in `store`, their
/// private keys in files of the data directory, or in the shared store
/// sealed by the vault key.
fn key_place(cfg: &Config, store: &Arc<dyn Store>) -> Result<KeyPlace> {
    let home = if cfg.store.is_some() {
        let vault = crate::gateway::vault::Vault::load(&cfg.data, &OsRandom)?;
        KeyHome::Sealed(Arc::new(vault))
    } else {
        KeyHome::Files(cfg.data.clone())
    };
    Ok(KeyPlace {
        store: store.clone(),
        home,
    })
}

fn make_broker(cfg: &Config, issuer: String) -> Result<Arc<Broker>> {
    let s = open_store(cfg)?;
    let keys = key_place(cfg, &s)?.load(SystemClock.now(), cfg.access_ttl, &OsRandom)?;
    let mut b = Broker::new(
        cfg.clone(),
        issuer,
        s,
        Arc::new(SystemClock),
        Arc::new(OsRandom),
        keys,
    )?;
    if cfg.store.is_some() {
        // Replicas accept each other's nonces: one key, derived from the
        // vault key they share.
        let vault = crate::gateway::vault::Vault::load(&cfg.data, &OsRandom)?;
        b.nonces = crate::protocol::nonce::NonceSource::with_key(&vault.derive("dpop-nonce"));
    }
    Ok(Arc::new(b))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Server(format!("cannot start the runtime: {e}")))
}

fn scopes(list: &[String]) -> String {
    list.join(" ")
}

fn out(json_out: bool, value: serde_json::Value, text: String) {
    if json_out {
        say!("{value}");
    } else {
        say!("{text}");
    }
}

/// What every owner's command works with.
struct Ctx {
    b: Arc<Broker>,
    /// Whether `b.issuer` is where the broker answers (configured, or recorded
    /// by `serve`), so that links printed with it work.
    issuer_known: bool,
    rt: tokio::runtime::Runtime,
    owner: String,
    json: bool,
    cfg: Config,
}

fn dispatch(cli: &Cli, cfg: Config) -> Result<ExitCode> {
    match &cli.cmd {
        Cmd::Serve => return serve::serve(cfg),
        // Backups work on the files, not through a broker of this process.
        Cmd::Backup { to, force } => return ops::backup(&cfg, to, *force, cli.json),
        Cmd::Restore { from, force } => return ops::restore(&cfg, from, *force, cli.json),
        Cmd::Audit {
            cmd: AuditCmd::Verify { file: Some(f) },
        } => return audit_archive::verify_file(f, cli.json),
        _ => {}
    }
    // The built-in template catalog needs no broker data.
    if let Cmd::Upstream {
        cmd: upstream::UpstreamCmd::Templates { search },
    } = &cli.cmd
    {
        return Ok(upstream::templates(search.as_deref(), cli.json));
    }
    let read_only = matches!(
        cli.cmd,
        Cmd::Grant {
            cmd: GrantCmd::List | GrantCmd::Show { .. }
        } | Cmd::Audit { .. }
            | Cmd::Pending
            | Cmd::Stepup {
                cmd: stepup::StepupCmd::List
            }
            | Cmd::Owner {
                cmd: OwnerCmd::List
            }
            | Cmd::Keys { cmd: KeysCmd::List }
            | Cmd::Resource {
                cmd: ResourceCmd::List | ResourceCmd::Show { .. }
            }
    );
    if read_only && cfg.store.is_none() && !cfg.data.join("broker.db").is_file() {
        // A command that only reads must not create a broker as a side effect
        // (a mistyped --data would otherwise show an empty, valid-looking one).
        return Err(Error::InvalidRequest(format!(
            "no broker data at {}; pass --data DIR, or start `protonpass-broker serve` to create it",
            cfg.data.display()
        )));
    }
    // Links use the issuer the broker serves under: as configured, else as
    // the last `serve` recorded it. Before any `serve`, no address is known.
    let known_issuer = cfg
        .issuer
        .clone()
        .or_else(|| crate::files::read_issuer(&cfg.data));
    let issuer = known_issuer
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.addr));
    let c = Ctx {
        b: make_broker(&cfg, issuer)?,
        issuer_known: known_issuer.is_some(),
        rt: runtime()?,
        owner: cfg.owner.clone(),
        json: cli.json,
        cfg,
    };
    // `owner ...` names the owner it acts on itself (and may remove the
    // default one); every other command acts as --owner.
    let about_owners = matches!(cli.cmd, Cmd::Owner { .. });
    if !about_owners {
        // A mistyped --owner must not quietly become a new, empty tenant.
        let owners = store::read_blocking(&c.b.store, |tx| tx.owners())?;
        if !owners.iter().any(|o| o.name == c.owner) {
            return Err(Error::InvalidRequest(format!(
                "no owner {0}; add it with `protonpass-broker owner add {0}`",
                c.owner
            )));
        }
    }
    match &cli.cmd {
        Cmd::Serve => Ok(ExitCode::SUCCESS),
        Cmd::Approve {
            user_code,
            scope,
            audience,
            ttl,
            budget,
        } => grants::approve(&c, user_code, scope, audience.as_ref(), ttl, budget),
        Cmd::Pending => grants::pending(&c),
        Cmd::Deny { user_code } => grants::deny(&c, user_code),
        Cmd::Stepup { cmd } => stepup::run(&c, cmd),
        Cmd::Grant { cmd } => grants::grant(&c, cmd),
        Cmd::Revoke { id, agent } => grants::revoke(&c, id.as_ref(), agent.as_ref()),
        Cmd::Resource { cmd } => resources::resource(&c, cmd),
        Cmd::Audit {
            cmd: AuditCmd::Checkpoint,
        } => audit_archive::checkpoint(&c),
        Cmd::Audit {
            cmd: AuditCmd::Archive { before, to },
        } => audit_archive::archive(&c, *before, to),
        Cmd::Audit { cmd } => audit::audit(&c.b, cmd, c.json),
        Cmd::Owner { cmd } => owners::owner(&c, cmd),
        Cmd::Upstream { cmd } => upstream::run(&c.b, &c.owner, cmd, c.json),
        Cmd::Keys { cmd } => owners::keys(&c, cmd),
        Cmd::Prune { now } => ops::prune(&c, *now),
        Cmd::Backup { .. } | Cmd::Restore { .. } => Ok(ExitCode::SUCCESS),
    }
}
