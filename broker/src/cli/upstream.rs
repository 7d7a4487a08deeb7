//! `protonpass-broker upstream ...`: the owner's upstream APIs of the gateway.
//! Secrets are read from standard input, never from the command line (which
//! other users can see in the process list).
#![allow(clippy::print_stdout)]

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use protonpass_agent::{Error, Result};
use serde_json::json;
use zeroize::Zeroizing;

use crate::gateway::upstreams::{self, Ctx, UpstreamView};
use crate::gateway::vault::{MAX_SECRET, Vault, check_secret};
use crate::gateway::{oauth, templates};
use crate::service::Broker;

/// Upstream commands.
#[derive(Debug, Subcommand)]
pub enum UpstreamCmd {
    /// Add an upstream from a rules file or a built-in template; the secret
    /// (an OAuth upstream's client secret, if it has one) comes from standard input.
    Add {
        /// The rules file (TOML, see spec/10-gateway-rules.md).
        #[arg(required_unless_present = "template", conflicts_with = "template")]
        file: Option<PathBuf>,
        /// A built-in template instead of a file (`upstream templates` lists them).
        #[arg(long)]
        template: Option<String>,
        /// With --template: another upstream name.
        #[arg(long, requires = "template")]
        name: Option<String>,
        /// With --template: another base URL (your site or instance).
        #[arg(long, requires = "template")]
        base_url: Option<String>,
        /// With --template: your OAuth client id at the provider.
        #[arg(long, requires = "template")]
        client_id: Option<String>,
        /// Read the secret from standard input (never on the command line);
        /// required unless the upstream uses OAuth with a public client.
        #[arg(long)]
        secret_stdin: bool,
    },
    /// List the built-in templates (`--json`: name, description, credential kind, scopes).
    Templates {
        /// Only templates whose name or descriptions contain this.
        #[arg(long)]
        search: Option<String>,
    },
    /// List the owner's upstreams.
    List,
    /// Show one upstream and its rules (never the secret).
    Show {
        /// Its name.
        name: String,
    },
    /// Print an upstream's rules file as a template, to keep or share (no
    /// secret; `[[scope]]` tables are added when it has none, to review).
    Export {
        /// Its name.
        name: String,
    },
    /// Replace an upstream's secret, read from standard input.
    Rotate {
        /// Its name.
        name: String,
        /// Read the secret from standard input.
        #[arg(long, required = true)]
        secret_stdin: bool,
    },
    /// Remove an upstream and its secret.
    Remove {
        /// Its name.
        name: String,
    },
    /// Connect an OAuth upstream to your account at the provider: prints
    /// `authorize_url` to open in a browser, then waits until the running
    /// broker has received the provider's answer on `{issuer}/upstreams/callback`.
    Connect {
        /// Its name.
        name: String,
        /// Print the URL and return at once.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show an OAuth upstream's connection: connected, broken or not connected.
    Connection {
        /// Its name.
        name: String,
    },
    /// Revoke an OAuth upstream's tokens at the provider (RFC 7009, where it
    /// has a revocation endpoint) and forget them.
    Disconnect {
        /// Its name.
        name: String,
    },
}

fn read_secret() -> Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_SECRET + 2));
    std::io::stdin()
        .take(MAX_SECRET as u64 + 3)
        .read_to_end(&mut buf)
        .map_err(|e| Error::InvalidRequest(format!("cannot read the secret: {e}")))?;
    check_secret(&buf)
}

fn read_rules(file: &PathBuf) -> Result<String> {
    let meta = std::fs::metadata(file)
        .map_err(|e| Error::InvalidRequest(format!("{}: {e}", file.display())))?;
    if meta.len() > crate::gateway::rules::MAX_FILE as u64 {
        return Err(Error::InvalidRequest(format!(
            "{}: larger than {} bytes",
            file.display(),
            crate::gateway::rules::MAX_FILE
        )));
    }
    std::fs::read_to_string(file)
        .map_err(|e| Error::InvalidRequest(format!("{}: {e}", file.display())))
}

fn print(j: bool, v: &UpstreamView, what: &str) {
    if j {
        say!("{}", json!(v));
    } else {
        say!(
            "{what} upstream {}: agents call {} (audience {}), forwarded to {} with the credential in {}.",
            v.name,
            v.gateway_url,
            v.audience,
            v.base_url,
            v.credential
        );
        for r in &v.rules {
            say!(
                "  {} {} needs {}{}",
                r.methods.join(","),
                r.path,
                r.scope,
                r.description
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            );
        }
    }
}

/// How often `connect` looks for the connection, milliseconds.
const POLL_MS: u64 = 300;

/// `upstream connect`: start, print the URL, and wait for the running
/// broker's callback by watching the store (the CLI and the broker share it).
fn connect(b: &Broker, ctx: &Ctx<'_>, name: &str, no_wait: bool, j: bool) -> Result<()> {
    use std::io::Write as _;
    let vault = Vault::load(&b.cfg.data, b.rng.as_ref())?;
    let n = name.to_owned();
    let before = crate::store::read_blocking(&b.store, |tx| tx.connection_get(&n))?.map(|c| c.id);
    let started = oauth::start(ctx, &vault, b.rng.as_ref(), name, "cli", None)?;
    if j {
        say!("{}", json!(started));
    } else {
        say!(
            "Open this address in a browser to connect upstream {name} (valid 10 minutes):\n{}",
            started.authorize_url
        );
    }
    let _ = std::io::stdout().flush();
    if no_wait {
        return Ok(());
    }
    loop {
        let n = name.to_owned();
        let now = crate::store::read_blocking(&b.store, |tx| tx.connection_get(&n))?;
        if let Some(c) = now.filter(|c| Some(&c.id) != before.as_ref() && c.status == "connected") {
            if j {
                say!(
                    "{}",
                    json!({"name": name, "connected": true, "connection": c.id})
                );
            } else {
                say!("Connected upstream {name}.");
            }
            return Ok(());
        }
        if b.clock.now() >= started.expires_at {
            return Err(Error::InvalidRequest(format!(
                "upstream {name} was not connected in time: run `upstream connect {name}` again"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(POLL_MS));
    }
}

/// `upstream templates`: the built-in catalog.
pub fn templates(search: Option<&str>, j: bool) -> ExitCode {
    let list = templates::list(search);
    if j {
        say!("{}", json!(list));
    } else {
        for t in &list {
            say!("{:<22} {:<7} {}", t.name, t.credential, t.description);
        }
    }
    ExitCode::SUCCESS
}

/// Run an upstream command for `owner`.
pub fn run(b: &Broker, owner: &str, cmd: &UpstreamCmd, j: bool) -> Result<ExitCode> {
    let now = b.clock.now();
    let ctx = Ctx {
        store: &b.store,
        issuer: &b.issuer,
        owner,
        now,
    };
    match cmd {
        UpstreamCmd::Add {
            file,
            template,
            name,
            base_url,
            client_id,
            secret_stdin,
        } => {
            let text = match (file, template) {
                (Some(f), _) => read_rules(f)?,
                (None, Some(t)) => templates::instantiate(
                    t,
                    &templates::Overrides {
                        name: name.clone(),
                        base_url: base_url.clone(),
                        client_id: client_id.clone(),
                    },
                )?,
                (None, None) => {
                    return Err(Error::InvalidRequest("a rules file or --template".into()));
                }
            };
            // The rules first: a bad file is refused before the secret is read.
            let parsed = upstreams::parse_rules(&text)?;
            let secret = match (secret_stdin, parsed.oauth2.is_some()) {
                (true, _) => read_secret()?,
                // A public OAuth client has no secret.
                (false, true) => Zeroizing::new(Vec::new()),
                (false, false) => {
                    return Err(Error::InvalidRequest(
                        "--secret-stdin: the secret comes from standard input".into(),
                    ));
                }
            };
            let vault = Vault::load(&b.cfg.data, b.rng.as_ref())?;
            let v = upstreams::add(&ctx, &vault, b.rng.as_ref(), &text, &secret)?;
            print(j, &v, "Added");
        }
        UpstreamCmd::Rotate { name, .. } => {
            let secret = read_secret()?;
            let vault = Vault::load(&b.cfg.data, b.rng.as_ref())?;
            let v = upstreams::rotate(&ctx, &vault, b.rng.as_ref(), name, &secret)?;
            print(j, &v, "Rotated the secret of");
        }
        UpstreamCmd::Remove { name } => {
            upstreams::remove(&ctx, name)?;
            if j {
                say!("{}", json!({"name": name, "removed": true}));
            } else {
                say!("Removed upstream {name} and its secret.");
            }
        }
        UpstreamCmd::List => {
            let list = upstreams::list(&b.store, &b.issuer, owner)?;
            if j {
                say!("{}", json!(list));
            } else {
                for v in &list {
                    say!("{}  {}  -> {}", v.name, v.gateway_url, v.base_url);
                }
            }
        }
        UpstreamCmd::Export { name } => {
            let text = templates::as_template(&upstreams::export(&b.store, owner, name)?);
            if j {
                say!("{}", json!({"name": name, "rules": text}));
            } else {
                print!("{text}");
            }
        }
        UpstreamCmd::Connect { name, no_wait } => connect(b, &ctx, name, *no_wait, j)?,
        UpstreamCmd::Connection { name } => {
            let v = oauth::status(&b.store, owner, name)?;
            if j {
                say!("{}", json!(v));
            } else {
                say!("Upstream {name}: {}", v.status.replace('_', " "));
            }
        }
        UpstreamCmd::Disconnect { name } => {
            let vault = Vault::load(&b.cfg.data, b.rng.as_ref())?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Server(format!("runtime: {e}")))?;
            let revoked = rt.block_on(oauth::disconnect(b, &vault, owner, name, "cli"))?;
            if j {
                say!(
                    "{}",
                    json!({"name": name, "disconnected": true, "revoked": revoked})
                );
            } else if revoked {
                say!("Disconnected upstream {name}: the provider revoked its tokens.");
            } else {
                say!(
                    "Disconnected upstream {name}: its tokens are forgotten (the provider did not confirm a revocation)."
                );
            }
        }
        UpstreamCmd::Templates { search } => {
            templates(search.as_deref(), j);
        }
        UpstreamCmd::Show { name } => {
            let v = upstreams::show(&b.store, &b.issuer, owner, name)?;
            print(j, &v, "The");
        }
    }
    Ok(ExitCode::SUCCESS)
}
