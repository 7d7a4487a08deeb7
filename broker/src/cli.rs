//! The command line: `serve` and the owner's commands. Every command opens the
//! data directory itself, so it works whether or not a server is running.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use protonpass_agent::wire::ErrorBody;
use protonpass_agent::{Clock, Error, OsRandom, Result, SystemClock};
use serde_json::json;

use crate::audit::Verifier;
use crate::config::{Config, Settings, parse_duration};
use crate::keys::KeyRing;
use crate::service::Broker;
use crate::service::device::Decision;
use crate::store::sqlite::SqliteStore;
use crate::store::{self, Store};

/// Self-hosted authorization server for agent access tokens.
#[derive(Debug, Parser)]
#[command(name = "protonpass-broker", version)]
pub struct Cli {
    #[command(flatten)]
    settings: Settings,
    /// Print JSON (one object, or JSON Lines for audit export/tail).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the broker.
    Serve,
    /// Approve a device request by its user code.
    Approve {
        /// The code the agent showed (XXXX-XXXX, any case, punctuation ignored).
        user_code: String,
        /// Narrow the scopes (space-separated or repeated).
        #[arg(long, num_args = 1..)]
        scope: Vec<String>,
        /// The audience, when the agent named none.
        #[arg(long)]
        audience: Option<String>,
        /// Grant lifetime, 1h to 30d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Deny a device request by its user code.
    Deny {
        /// The code the agent showed.
        user_code: String,
    },
    /// Pre-authorized grants.
    Grant {
        #[command(subcommand)]
        cmd: GrantCmd,
    },
    /// Revoke a grant or token by id, or everything of one agent.
    Revoke {
        /// A grant id (gid) or token id (jti). Ids are base64url and may start
        /// with '-': they are taken as values, never as flags.
        #[arg(allow_hyphen_values = true)]
        id: Option<String>,
        /// Revoke every grant of this agent instead.
        #[arg(long)]
        agent: Option<String>,
    },
    /// Resource servers.
    Resource {
        #[command(subcommand)]
        cmd: ResourceCmd,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Owner accounts of the dashboard.
    Owner {
        #[command(subcommand)]
        cmd: OwnerCmd,
    },
    /// Upstream APIs of the credential-injecting gateway.
    Upstream {
        #[command(subcommand)]
        cmd: crate::cli_upstream::UpstreamCmd,
    },
}

#[derive(Debug, Subcommand)]
enum OwnerCmd {
    /// Add an owner (or reset its password): prints a one-time setup link, or
    /// reads the password from standard input with --password-stdin.
    Add {
        /// The owner's name (lower-case letters, digits, '.', '_', '-').
        name: String,
        /// Read the password from standard input instead of printing a link.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum GrantCmd {
    /// Create a grant and print its one-time enrollment code.
    Create {
        /// The agent's name.
        #[arg(long)]
        agent: String,
        /// Scopes (space-separated or repeated).
        #[arg(long, required = true, num_args = 1..)]
        scope: Vec<String>,
        /// Audiences (repeated); the first is the default.
        #[arg(long, required = true, num_args = 1..)]
        audience: Vec<String>,
        /// Grant lifetime from redemption, 1h to 30d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// List the owner's grants.
    List,
}

#[derive(Debug, Subcommand)]
enum ResourceCmd {
    /// Register a resource server and print its client id and secret.
    Add {
        /// The audience it is (as in tokens' aud).
        audience: String,
        /// An API that serves many users: every owner may grant this audience
        /// (the API maps each token's owner to its own accounts). Without it,
        /// only the registering owner can grant it.
        #[arg(long)]
        shared: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// The last records.
    Tail {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: i64,
    },
    /// Every record as JSON Lines.
    Export,
    /// Check the hash chain.
    Verify,
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
    /// Make a new signing key; old ones stay published until their tokens expire.
    Rotate,
}

fn fail(json_out: bool, e: &Error) -> ExitCode {
    if json_out {
        println!(
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
    crate::files::check_data_dir(&cfg.data, true)?;
    let s: Arc<dyn Store> = SqliteStore::open_with(
        &cfg.data.join("broker.db"),
        Duration::from_millis(cfg.busy_timeout_ms),
    )?;
    let now = SystemClock.now();
    store::write_blocking(&s, move |tx| tx.owner_ensure("default", now))?;
    Ok(s)
}

fn make_broker(cfg: &Config, issuer: String) -> Result<Arc<Broker>> {
    let s = open_store(cfg)?;
    let keys = KeyRing::load(&s, &cfg.data, SystemClock.now(), cfg.access_ttl, &OsRandom)?;
    Ok(Arc::new(Broker::new(
        cfg.clone(),
        issuer,
        s,
        Arc::new(SystemClock),
        Arc::new(OsRandom),
        keys,
    )?))
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
        println!("{value}");
    } else {
        println!("{text}");
    }
}

fn dispatch(cli: &Cli, cfg: Config) -> Result<ExitCode> {
    let j = cli.json;
    if let Cmd::Serve = cli.cmd {
        return serve(cfg);
    }
    let read_only = matches!(
        cli.cmd,
        Cmd::Grant {
            cmd: GrantCmd::List
        } | Cmd::Audit { .. }
    );
    if read_only && !cfg.data.join("broker.db").is_file() {
        // A command that only reads must not create a broker as a side effect
        // (a mistyped --data would otherwise show an empty, valid-looking one).
        return Err(Error::InvalidRequest(format!(
            "no broker data at {}; pass --data DIR, or start `protonpass-broker serve` to create it",
            cfg.data.display()
        )));
    }
    let issuer = cfg
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.addr));
    let b = make_broker(&cfg, issuer)?;
    let rt = runtime()?;
    let owner = cfg.owner.clone();
    match &cli.cmd {
        Cmd::Serve => Ok(ExitCode::SUCCESS),
        Cmd::Approve {
            user_code,
            scope,
            audience,
            ttl,
        } => {
            let dec = Decision {
                approve: true,
                scope: (!scope.is_empty()).then(|| scopes(scope)),
                audience: audience.clone(),
                ttl: parse_duration(ttl)?,
            };
            let d = rt.block_on(b.decide(&owner, "cli", user_code, dec))?;
            out(
                j,
                json!(d),
                format!(
                    "Approved: agent {:?} may use {} on {} for {} s.",
                    d.agent,
                    d.scope,
                    d.audience.clone().unwrap_or_default(),
                    d.ttl
                ),
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Deny { user_code } => {
            let dec = Decision {
                approve: false,
                scope: None,
                audience: None,
                ttl: 0,
            };
            let d = rt.block_on(b.decide(&owner, "cli", user_code, dec))?;
            out(
                j,
                json!(d),
                format!("Denied: agent {:?} ({}).", d.agent, d.scope),
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Grant {
            cmd:
                GrantCmd::Create {
                    agent,
                    scope,
                    audience,
                    ttl,
                },
        } => {
            let e = rt.block_on(b.grant_create(
                &owner,
                agent,
                &scopes(scope),
                audience,
                parse_duration(ttl)?,
            ))?;
            out(
                j,
                json!(e),
                format!(
                    "Grant {} for agent {:?}: {} on {}.\nEnrollment code (one use, expires at {}):\n{}",
                    e.grant_id,
                    e.agent,
                    e.scope,
                    e.audiences.join(", "),
                    e.code_expires_at,
                    e.enrollment_code
                ),
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Grant {
            cmd: GrantCmd::List,
        } => {
            let list = rt.block_on(b.grant_list(&owner))?;
            if j {
                let v: Vec<_> = list.iter().map(|g| json!({
                    "grant_id": g.gid, "agent": g.agent, "scope": g.scope, "audiences": g.audiences,
                    "status": g.status, "origin": g.origin, "created_at": g.created_at,
                    "expires_at": g.expires_at, "jkt": g.jkt,
                })).collect();
                println!("{}", json!(v));
            } else {
                for g in list {
                    println!(
                        "{}  {:?}  {:<9}  {}  [{}]  until {}",
                        g.gid,
                        g.agent,
                        format!("{:?}", g.status).to_lowercase(),
                        g.scope,
                        g.audiences.join(","),
                        g.expires_at
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Revoke { id, agent } => {
            let r = match (id, agent) {
                (Some(id), None) => rt.block_on(b.revoke_id(&owner, id))?,
                (None, Some(a)) => rt.block_on(b.revoke_agent(&owner, a))?,
                _ => return Err(Error::InvalidRequest("give an id or --agent NAME".into())),
            };
            out(
                j,
                json!(r),
                format!(
                    "Revoked {} grant(s) and {} token(s).",
                    r.grants.len(),
                    r.tokens.len()
                ),
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Resource {
            cmd: ResourceCmd::Add { audience, shared },
        } => {
            let r = rt.block_on(b.resource_add(&owner, audience, *shared))?;
            out(
                j,
                json!(r),
                format!(
                    "Resource server for {}:\n  client_id:     {}\n  client_secret: {}\n(the secret is shown once)",
                    r.audience, r.client_id, r.client_secret
                ),
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Audit { cmd } => audit(&b, cmd, j),
        Cmd::Upstream { cmd } => crate::cli_upstream::run(&b, &owner, cmd, j),
        Cmd::Owner {
            cmd: OwnerCmd::Add {
                name,
                password_stdin,
            },
        } => {
            let pw = if *password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|e| Error::InvalidRequest(format!("cannot read the password: {e}")))?;
                Some(line)
            } else {
                None
            };
            match rt.block_on(crate::dashboard::owner_add(&b, name, pw))? {
                Some(link) => out(
                    j,
                    json!({"owner": name, "setup_url": link}),
                    format!(
                        "Owner {name}: open this one-time link to set the password (valid 24 h):\n{link}"
                    ),
                ),
                None => out(
                    j,
                    json!({"owner": name}),
                    format!("Owner {name}: password set."),
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Keys {
            cmd: KeysCmd::Rotate,
        } => {
            let m = KeyRing::rotate(
                &b.store,
                &cfg.data,
                SystemClock.now(),
                cfg.access_ttl,
                &OsRandom,
            )?;
            out(
                j,
                json!({"kid": m.kid}),
                format!(
                    "New signing key {}; older keys stay in the JWKS until their tokens expire.",
                    m.kid
                ),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn audit(b: &Broker, cmd: &AuditCmd, j: bool) -> Result<ExitCode> {
    let page = |after: i64| store::read_blocking(&b.store, |tx| tx.audit_page(after, 1000));
    match cmd {
        AuditCmd::Tail { lines } => {
            let head = store::read_blocking(&b.store, |tx| tx.audit_head())?;
            let recs =
                store::read_blocking(&b.store, |tx| tx.audit_page((head - lines).max(0), *lines))?;
            for r in recs {
                if j {
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                } else {
                    println!(
                        "{:>6}  {}  {:<8}  {:<16}  {}",
                        r.seq, r.ts, r.owner, r.event, r.detail
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Export => {
            let mut after = 0;
            let stdout = std::io::stdout();
            let mut w = stdout.lock();
            loop {
                let recs = page(after)?;
                let Some(last) = recs.last() else { break };
                after = last.seq;
                for r in &recs {
                    let _ = writeln!(w, "{}", serde_json::to_string(r).unwrap_or_default());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Verify => {
            let mut v = Verifier::default();
            let mut after = 0;
            loop {
                let recs = page(after)?;
                let Some(last) = recs.last() else { break };
                after = last.seq;
                if let Err(br) = v.feed(&recs) {
                    out(
                        j,
                        json!({"ok": false, "seq": br.seq, "why": br.why}),
                        format!("audit log BROKEN at record {}: {}", br.seq, br.why),
                    );
                    return Ok(ExitCode::from(2));
                }
            }
            out(
                j,
                json!({"ok": true, "records": v.count, "head": v.head()}),
                format!("audit log intact: {} records, head {}", v.count, v.head()),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Raise the open-file soft limit to the hard one: every client connection
/// and SQLite's files take a descriptor, and the common default soft limit
/// (1,024) is below what a busy broker holds. Returns the limit in force.
fn raise_open_files() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let l = getrlimit(Resource::Nofile);
    // An unlimited hard limit is not a value the kernel takes for the soft one.
    if let (Some(cur), Some(max)) = (l.current, l.maximum)
        && cur < max
    {
        let raised = Rlimit {
            current: Some(max),
            maximum: Some(max),
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

fn serve(cfg: Config) -> Result<ExitCode> {
    let open_files = raise_open_files();
    tracing::info!(
        open_files = open_files.unwrap_or(u64::MAX),
        "open-file limit"
    );
    let rt = runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&cfg.addr)
            .await
            .map_err(|e| Error::Server(format!("cannot listen on {}: {e}", cfg.addr)))?;
        let local = listener.local_addr().map_err(|e| Error::Server(e.to_string()))?;
        let issuer = cfg.issuer.clone().unwrap_or_else(|| format!("http://{local}"));
        let b = make_broker(&cfg, issuer.clone())?;
        {
            let stdout = std::io::stdout();
            let mut w = stdout.lock();
            let _ = writeln!(w, "{}", json!({"event": "listening", "addr": local.to_string(), "issuer": issuer}));
            let _ = writeln!(
                w,
                "protonpass-broker is listening on {local}; issuer {issuer}\n  metadata: {issuer}/.well-known/oauth-authorization-server\n  approve agents: protonpass-broker --data {} approve XXXX-XXXX",
                cfg.data.display()
            );
            let _ = w.flush();
        }
        tracing::info!(addr = %local, issuer = %issuer, data = %cfg.data.display(), "listening");
        if let Ok(Some(link)) = crate::dashboard::first_run_link(&b).await {
            // After the first line (which scripts parse), on stdout only: stderr
            // is the JSON log, and the link is a secret. Never println!: a
            // launcher that read the first line and closed the pipe must not
            // bring the broker down (EPIPE would panic).
            let _ = writeln!(
                std::io::stdout(),
                "  set the owner's dashboard password (one-time link, valid 24 h): {link}"
            );
            tracing::warn!(
                "the owner has no dashboard password: the one-time setup link is on standard output (`owner add default` makes a new one)"
            );
        }
        tokio::spawn(watch_store(b.clone()));
        let app = crate::http::router(b.clone(), crate::dashboard::router().merge(crate::gateway::router(b)?));
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                shutdown().await;
                let _ = stop_tx.send(true);
            })
            .into_future();
        // Requests in flight finish; long-lived streams (the revocation feed)
        // never do, so they get a short grace period.
        let grace = async move {
            let _ = stop_rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        tokio::select! {
            r = server => r.map_err(|e| Error::Server(format!("server failed: {e}")))?,
            () = grace => tracing::info!("closed the remaining streams"),
        }
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Pick up what other processes (the CLI) wrote: new feed entries every 10 ms,
/// rotated keys every second.
async fn watch_store(b: Arc<Broker>) {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        if let Ok(head) = store::read(&b.store, |tx| tx.revocation_head()).await {
            b.feed_advanced(head);
        }
        if n.is_multiple_of(100) {
            let b2 = b.clone();
            let now = b.clock.now();
            if let Ok(Ok(k)) = tokio::task::spawn_blocking(move || {
                KeyRing::reload(&b2.store, &b2.cfg.data, now, b2.cfg.access_ttl)
            })
            .await
            {
                b.set_keyring(k);
            }
        }
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn ids_starting_with_a_hyphen_are_values() {
        // base64url ids start with '-' one time in 64.
        let cli = Cli::try_parse_from(["protonpass-broker", "revoke", "-iZxUtBEr3joFPF1ayLP5w"])
            .expect("parses");
        match cli.cmd {
            Cmd::Revoke { id, agent } => {
                assert_eq!(id.as_deref(), Some("-iZxUtBEr3joFPF1ayLP5w"));
                assert!(agent.is_none());
            }
            _ => panic!("not revoke"),
        }
    }
}
