//! The command line's grammar: the clap definitions of every command, and
//! how `--help` shows the server's settings. What each command does is in
//! the file of its area; `mod.rs` dispatches.

use clap::{Parser, Subcommand};

use crate::config::Settings;

use super::{stepup, upstream};

/// Self-hosted authorization server for agent access tokens.
#[derive(Debug, Parser)]
#[command(name = "protonpass-broker", version)]
pub struct Cli {
    #[command(flatten)]
    pub(super) settings: Settings,
    /// Print JSON (one object, or JSON Lines for audit export/tail).
    #[arg(long, global = true, help_heading = "Global options")]
    pub(super) json: bool,
    #[command(subcommand)]
    pub(super) cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub(super) enum Cmd {
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
        /// A spend budget on an approved scope, SCOPE=LIMIT/CURRENCY/PERIOD
        /// (repeated), e.g. payment:execute=500/EUR/day (UTC calendar periods).
        #[arg(long)]
        budget: Vec<String>,
    },
    /// List the device requests waiting for approval.
    Pending,
    /// Deny a device request by its user code.
    Deny {
        /// The code the agent showed.
        user_code: String,
    },
    /// Step-up requests (one-time authorizations agents ask for).
    Stepup {
        #[command(subcommand)]
        cmd: stepup::StepupCmd,
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
        cmd: upstream::UpstreamCmd,
    },
    /// Remove what has expired (tokens, device requests, feed entries,
    /// attempts, sessions); `serve` does it every 10 minutes by itself.
    Prune {
        /// Prune as if it were this Unix time (tests of long periods).
        #[arg(long, hide = true)]
        now: Option<i64>,
    },
    /// Copy the data directory (database, signing keys, vault key) to one
    /// owner-only file, consistently, while the broker serves.
    Backup {
        /// The backup file to write.
        #[arg(long, value_name = "FILE")]
        to: std::path::PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Restore a backup into --data DIR. Refused while a broker serves DIR,
    /// and over an existing database unless --force.
    Restore {
        /// The backup file, as `backup` wrote it.
        #[arg(long, value_name = "FILE")]
        from: std::path::PathBuf,
        /// Replace the database DIR holds.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum OwnerCmd {
    /// Add an owner (or reset its password): prints a one-time setup link, or
    /// reads the password from standard input with --password-stdin.
    Add {
        /// The owner's name (lower-case letters, digits, '.', '_', '-').
        name: String,
        /// Read the password from standard input instead of printing a link.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the owners (tenants).
    List,
    /// Remove an owner's dashboard second factor (a lost phone): the next
    /// sign-in needs the password alone, and the owner can set it up again.
    MfaReset {
        /// The owner's name.
        name: String,
    },
    /// Remove an owner with its resource servers and dashboard password.
    /// Refused while it has live grants, unless --force.
    Remove {
        /// The owner's name.
        name: String,
        /// Revoke the owner's live grants and remove it anyway.
        #[arg(long)]
        force: bool,
    },
    /// The owner's step-up webhook: where the broker POSTs a signed event
    /// when a step-up request waits for the owner.
    Webhook {
        #[command(subcommand)]
        cmd: WebhookCmd,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum WebhookCmd {
    /// Set (or replace) the webhook; prints its signing secret, once.
    Set {
        /// The owner's name.
        name: String,
        /// The receiver's URL (https).
        url: String,
        /// Allow http and private or loopback addresses (a home server, tests).
        #[arg(long)]
        allow_private_network: bool,
    },
    /// Show the webhook (never its secret).
    Show {
        /// The owner's name.
        name: String,
    },
    /// Remove the webhook.
    Remove {
        /// The owner's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum GrantCmd {
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
        /// A spend budget, SCOPE=LIMIT/CURRENCY/PERIOD (repeated), e.g.
        /// payment:execute=500/EUR/day. Periods are UTC calendar periods.
        #[arg(long)]
        budget: Vec<String>,
    },
    /// List the owner's grants.
    List,
    /// Show one grant with its budgets (spent and remaining this period).
    Show {
        /// The grant id.
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Set or replace the spend budget of one scope of a grant.
    Budget {
        /// The grant id.
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// The scope it limits, resource:action (e.g. payment:execute).
        #[arg(long)]
        scope: String,
        /// The limit per period, a decimal amount (e.g. 500 or 12.50).
        #[arg(long)]
        limit: String,
        /// ISO 4217 currency code (e.g. EUR).
        #[arg(long)]
        currency: String,
        /// hour, day, week, month (UTC calendar periods; weeks start on
        /// Monday) or total (the grant's whole life).
        #[arg(long)]
        period: String,
    },
    /// Set or clear the grant's step-up auto-approval: payments up to
    /// --max in --currency are approved without asking (while the budget of
    /// the payment's scope, if any, has room); anything else waits for you.
    StepupPolicy {
        /// The grant id.
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// The largest payment approved automatically, a decimal amount.
        #[arg(long, requires = "currency", conflicts_with = "off")]
        max: Option<String>,
        /// ISO 4217 currency code (e.g. EUR).
        #[arg(long, requires = "max")]
        currency: Option<String>,
        /// Remove the policy: every step-up waits for you.
        #[arg(long)]
        off: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum ResourceCmd {
    /// Register a resource server and print its client id and secret.
    Add {
        /// The audience it is (as in tokens' aud).
        audience: String,
        /// An API that serves many users: every owner may grant this audience
        /// (the API maps each token's owner to its own accounts). Without it,
        /// only the registering owner can grant it.
        #[arg(long)]
        shared: bool,
        /// The scopes it defines (TOML, one `[[scope]]` table per scope with
        /// `name`, `description`, `risk`): any other scope asked for it is
        /// refused, and owners approve the descriptions.
        #[arg(long, value_name = "FILE")]
        scopes: Option<std::path::PathBuf>,
    },
    /// Print a one-time token with which a resource server registers itself
    /// (`POST /resource/register`) for this owner.
    Invite {
        /// The one audience (the resource's URL) the token registers.
        audience: String,
        /// Register it as shared (an API serving many owners).
        #[arg(long)]
        shared: bool,
        /// How long the token works, 1m to 1d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// List the owner's resource servers.
    List,
    /// Show one resource server (by client id or audience).
    Show {
        /// Its client id or audience.
        id: String,
    },
    /// Remove a resource server: its credential stops working at once.
    Remove {
        /// Its client id or audience.
        id: String,
    },
    /// Give a resource server a new secret (same client id): the old secret
    /// stops working at once.
    Rotate {
        /// Its client id or audience.
        id: String,
    },
    /// Whether third-party clients that cannot do DPoP may get bearer tokens
    /// for this resource (at most 10 minutes, this audience only; off by
    /// default). The resource must accept them too (`accept_bearer`).
    Bearer {
        /// Its client id or audience.
        id: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum AuditCmd {
    /// The last records.
    Tail {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: i64,
        /// Keep printing new records as they are written (until Ctrl-C).
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Every record as JSON Lines.
    Export,
    /// Check the hash chain (from the signed checkpoint of the archived part),
    /// or an archive file with --file.
    Verify {
        /// An archive file written by `audit archive`: checks it alone.
        #[arg(long, value_name = "FILE")]
        file: Option<std::path::PathBuf>,
    },
    /// Sign the chain head now (`serve` does it every 10 minutes).
    Checkpoint,
    /// Move the records before SEQ to FILE (which verifies on its own); the
    /// kept chain verifies from the signed checkpoint at SEQ - 1.
    Archive {
        /// The first record to keep.
        #[arg(long)]
        before: i64,
        /// The archive file to write (JSON Lines, owner-only).
        #[arg(long, value_name = "FILE")]
        to: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum KeysCmd {
    /// Make a new signing key; old ones stay published until their tokens expire.
    Rotate,
    /// List the signing keys: the current one, and retired ones still published.
    List,
}

/// The server's settings: hidden from every command's help but `serve`'s
/// (they are still read everywhere: the commands share the configuration).
pub(super) const SERVER_OPTIONS: &[&str] = &[
    "addr",
    "issuer",
    "access_ttl",
    "dpop_nonce",
    "trusted_proxies",
    "device_ttl",
    "device_interval",
    "device_max_pending",
    "stepup_ttl",
    "enrollment_ttl",
    "proof_window",
    "busy_timeout_ms",
    "rate_limit",
];

/// Parse the process's arguments: `serve --help` lists the server options,
/// every other command's help its own options, then the global ones.
pub fn parse() -> Cli {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let cmd = Cli::command();
    let mut text = String::from("Server options (also read from the configuration file):\n");
    for a in cmd.get_arguments() {
        if !SERVER_OPTIONS.contains(&a.get_id().as_str()) {
            continue;
        }
        let name = a.get_long().unwrap_or_default();
        let value = a
            .get_value_names()
            .and_then(|v| v.first())
            .map(|v| format!(" <{v}>"))
            .unwrap_or_default();
        let help = a.get_help().map(ToString::to_string).unwrap_or_default();
        let env = a
            .get_env()
            .map(|e| format!(" [env: {}]", e.to_string_lossy()))
            .unwrap_or_default();
        text.push_str(&format!("  --{name}{value}\n          {help}{env}\n"));
    }
    let cmd = cmd.mut_subcommand("serve", |s| s.after_help(text));
    let m = cmd.get_matches();
    Cli::from_arg_matches(&m).unwrap_or_else(|e| e.exit())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn every_server_option_is_a_setting() {
        use clap::CommandFactory as _;
        let cmd = Cli::command();
        for id in SERVER_OPTIONS {
            let a = cmd.get_arguments().find(|a| a.get_id() == *id);
            assert!(a.is_some_and(|a| a.is_hide_set()), "{id}");
        }
    }

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
