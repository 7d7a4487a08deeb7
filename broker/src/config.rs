//! Settings: command line, then `PROTONPASS_BROKER_*` environment variables,
//! then a TOML file (`--config`, or `broker.toml` in the data directory), then
//! defaults. Every command reads the same settings, so a script on the broker's
//! machine needs only `--data` (or nothing, in the default place), or
//! `--store postgres://...` when the state is in PostgreSQL.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;
use protonpass_agent::Error;
use serde::Deserialize;

pub use crate::protocol::MAX_TTL;
/// Shortest grant, in seconds (1 hour).
pub const MIN_GRANT_TTL: i64 = 3600;

/// Declares [`Settings`]: every field a global option named after it (unless
/// its own `#[arg]` names it otherwise) and read from its environment
/// variable; `global` ones under the heading "Global options", `serve` ones
/// under "Server options (serve)" and hidden (`serve --help` lists them).
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            global { $( $(#[$ga:meta])* $g:ident: $gt:ty = $genv:literal, )* }
            serve { $( $(#[$sa:meta])* $s:ident: $st:ty = $senv:literal, )* }
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $(
                #[arg(long, global = true, env = $genv, help_heading = "Global options")]
                $(#[$ga])*
                pub $g: $gt,
            )*
            $(
                #[arg(long, global = true, env = $senv, help_heading = "Server options (serve)", hide = true)]
                $(#[$sa])*
                pub $s: $st,
            )*
        }
    };
}

settings! {
    /// Settings shared by every command.
    #[derive(Debug, Clone, Default, Args)]
    pub struct Settings {
        global {
            /// Data directory (database, signing keys) [default: ./protonpass-data].
            data: Option<PathBuf> = "PROTONPASS_BROKER_DATA",
            /// Where the broker's state is kept: a postgres://USER@HOST[:PORT]/DB URL
            /// (several brokers may share it), or absent: SQLite in the data directory.
            #[arg(value_name = "URL")]
            store: Option<String> = "PROTONPASS_STORE",
            /// File holding the vault key (base64url of 32 bytes) when
            /// PROTONPASS_VAULT_KEY is not set; one of the two is required with a
            /// PostgreSQL store [default: vault.key in the data directory].
            #[arg(value_name = "FILE")]
            vault_key_file: Option<PathBuf> = "PROTONPASS_BROKER_VAULT_KEY_FILE",
            /// TOML configuration file (default: broker.toml in the data directory, if present).
            config: Option<PathBuf> = "PROTONPASS_BROKER_CONFIG",
            /// The owner (tenant) a command acts for [default: default].
            owner: Option<String> = "PROTONPASS_BROKER_OWNER",
        }
        serve {
            /// Listen address; port 0 picks a free port [default: 127.0.0.1:8080].
            addr: Option<String> = "PROTONPASS_BROKER_ADDR",
            /// The issuer URL, an absolute http(s) URL; DPoP `htu` is checked against
            /// it [default: http://ADDR].
            issuer: Option<String> = "PROTONPASS_BROKER_ISSUER",
            /// Access token lifetime (e.g. 1h, 15m, 3600) [default: 1h].
            access_ttl: Option<String> = "PROTONPASS_BROKER_ACCESS_TTL",
            /// Require server nonces in DPoP proofs at the token endpoint (true/false)
            /// [default: true].
            dpop_nonce: Option<bool> = "PROTONPASS_BROKER_DPOP_NONCE",
            /// Addresses of reverse proxies whose X-Forwarded-For is trusted (comma-separated).
            #[arg(long = "trusted-proxy", value_delimiter = ',')]
            trusted_proxies: Vec<IpAddr> = "PROTONPASS_BROKER_TRUSTED_PROXIES",
            /// Lifetime of device codes (e.g. 10m) [default: 10m].
            device_ttl: Option<String> = "PROTONPASS_BROKER_DEVICE_TTL",
            /// Device polling interval in seconds (0 disables slow_down; for tests)
            /// [default: 5].
            device_interval: Option<i64> = "PROTONPASS_BROKER_DEVICE_INTERVAL",
            /// Most device requests waiting at once per agent key (or client address
            /// when the request carries no DPoP proof), 1 to 5 [default: 5].
            device_max_pending: Option<i64> = "PROTONPASS_BROKER_DEVICE_MAX_PENDING",
            /// Lifetime of a step-up request when the agent names none
            /// (`requested_expiry`), e.g. 5m; at most 10m [default: 5m].
            stepup_ttl: Option<String> = "PROTONPASS_BROKER_STEPUP_TTL",
            /// Lifetime of enrollment codes (e.g. 15m) [default: 15m].
            enrollment_ttl: Option<String> = "PROTONPASS_BROKER_ENROLLMENT_TTL",
            /// Seconds a DPoP proof's iat may lie in the past or future [default: 60].
            proof_window: Option<i64> = "PROTONPASS_BROKER_PROOF_WINDOW",
            /// Milliseconds to wait for another process's database write lock before
            /// answering 503 [default: 10000].
            busy_timeout_ms: Option<u64> = "PROTONPASS_BROKER_BUSY_TIMEOUT_MS",
            /// Requests per source address to the token, device, revocation,
            /// introspection, sign-in and gateway endpoints: `100/s` (the default;
            /// bursts of twice the rate), `6000/m`, or `off`.
            rate_limit: Option<String> = "PROTONPASS_BROKER_RATE_LIMIT",
            /// Serve `/metrics` on this address instead (e.g. 127.0.0.1:9090 or a
            /// private interface); without it, `/metrics` on the main address answers
            /// loopback clients only.
            metrics_addr: Option<String> = "PROTONPASS_BROKER_METRICS_ADDR",
            /// Tests only: fetch Client ID Metadata Documents over plain http and
            /// from loopback or private addresses (never set this in production).
            insecure_client_documents: bool = "PROTONPASS_BROKER_INSECURE_CLIENT_DOCUMENTS",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    store: Option<String>,
    vault_key_file: Option<PathBuf>,
    owner: Option<String>,
    addr: Option<String>,
    issuer: Option<String>,
    access_ttl: Option<String>,
    dpop_nonce: Option<bool>,
    #[serde(default)]
    trusted_proxies: Vec<IpAddr>,
    device_ttl: Option<String>,
    device_interval: Option<i64>,
    device_max_pending: Option<i64>,
    stepup_ttl: Option<String>,
    enrollment_ttl: Option<String>,
    proof_window: Option<i64>,
    busy_timeout_ms: Option<u64>,
    rate_limit: Option<String>,
    metrics_addr: Option<String>,
}

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub data: PathBuf,
    /// The PostgreSQL store, if one is configured (else SQLite in `data`).
    pub store: Option<crate::store::PgUrl>,
    /// The vault key file, if one is configured.
    pub vault_key_file: Option<PathBuf>,
    /// Owner the CLI acts for.
    pub owner: String,
    /// Listen address.
    pub addr: String,
    /// Configured issuer, if any (else derived from the bound address).
    pub issuer: Option<String>,
    /// Access token lifetime, seconds.
    pub access_ttl: i64,
    /// Nonces required at the token endpoint.
    pub dpop_nonce: bool,
    /// Trusted reverse proxies.
    pub trusted_proxies: Vec<IpAddr>,
    /// Device code lifetime, seconds.
    pub device_ttl: i64,
    /// Device polling interval, seconds.
    pub device_interval: i64,
    /// Most waiting device requests per agent key or client address.
    pub device_max_pending: i64,
    /// Default lifetime of a step-up request, seconds (1 to 600).
    pub stepup_ttl: i64,
    /// Enrollment code lifetime, seconds.
    pub enrollment_ttl: i64,
    /// DPoP proof iat window, seconds.
    pub proof_window: i64,
    /// Wait for another process's write lock, milliseconds.
    pub busy_timeout_ms: u64,
    /// Per-source rate limit, if any.
    pub rate_limit: Option<RateLimit>,
    /// A separate listen address for `/metrics`, if any.
    pub metrics_addr: Option<String>,
    /// Tests only: Client ID Metadata Documents may be fetched over http and
    /// from loopback or private addresses.
    pub insecure_client_documents: bool,
}

/// A per-source request rate: `per_second` sustained, bursts of `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: f64,
    /// Requests admitted at once after a quiet period.
    pub burst: u32,
}

/// The default limit: far above what a well-behaved agent host sends.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    per_second: 100.0,
    burst: 200,
};

/// Parse `N/s`, `N/m`, `N/h` or `off`; bursts are twice the per-second rate
/// (at least 1).
pub fn parse_rate_limit(s: &str) -> Result<Option<RateLimit>, Error> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || {
        Error::InvalidRequest(format!(
            "not a rate limit: {s:?} (use e.g. 100/s, 6000/m, or off)"
        ))
    };
    let (n, unit) = s.split_once('/').ok_or_else(bad)?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(bad());
    }
    let per_second = f64::from(n) / secs;
    let burst = ((per_second * 2.0).ceil() as u32).max(1);
    Ok(Some(RateLimit { per_second, burst }))
}

/// Parse a duration: `90`, `90s`, `15m`, `1h`, `30d`.
pub fn parse_duration(s: &str) -> Result<i64, Error> {
    let s = s.trim();
    let bad = || {
        Error::InvalidRequest(format!(
            "not a duration: {s:?} (use e.g. 90s, 15m, 1h, 30d)"
        ))
    };
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: i64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).filter(|v| *v >= 0).ok_or_else(bad)
}

/// Check that `s` is an absolute `http` or `https` URL with a host and without
/// query, fragment or credentials, as issuers and audiences must be. The error
/// says what is wrong.
pub fn check_http_url(s: &str) -> std::result::Result<(), String> {
    let u = url::Url::parse(s).map_err(|e| format!("not an absolute URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("the scheme is {:?}, not http or https", u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("it names no host".into());
    }
    if s.contains('?') {
        return Err("it has a query ('?')".into());
    }
    if s.contains('#') {
        return Err("it has a fragment ('#')".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("it carries a user name or password".into());
    }
    Ok(())
}

/// An audience as entered by the owner: an absolute http(s) URL without query
/// or fragment (`invalid_target` otherwise).
pub fn check_audience(s: &str) -> Result<(), Error> {
    check_http_url(s).map_err(|why| {
        Error::InvalidTarget(format!(
            "the audience {s:?} must be an absolute http(s) URL without query or fragment, \
             e.g. https://api.example.com: {why}"
        ))
    })
}

/// Owner names: lower-case letters, digits, `.`, `_`, `-`; 1 to 64 characters.
pub fn valid_owner(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

impl Config {
    /// Resolve settings from the command line/environment and the config file.
    pub fn resolve(s: &Settings) -> Result<Config, Error> {
        let read_file = |p: &PathBuf| -> Result<FileConfig, Error> {
            let text = std::fs::read_to_string(p)
                .map_err(|e| Error::InvalidRequest(format!("cannot read {}: {e}", p.display())))?;
            toml::from_str(&text)
                .map_err(|e| Error::InvalidRequest(format!("bad config {}: {e}", p.display())))
        };
        let mut file = match &s.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let data = s
            .data
            .clone()
            .or_else(|| file.data.clone())
            .unwrap_or_else(|| PathBuf::from("protonpass-data"));
        if s.config.is_none() {
            let p = data.join("broker.toml");
            if p.exists() {
                file = read_file(&p)?;
            }
        }
        let dur = |cli: &Option<String>, f: &Option<String>, default: i64| -> Result<i64, Error> {
            match cli.as_ref().or(f.as_ref()) {
                Some(v) => parse_duration(v),
                None => Ok(default),
            }
        };
        let owner = s
            .owner
            .clone()
            .or(file.owner.clone())
            .unwrap_or_else(|| "default".into());
        if !valid_owner(&owner) {
            return Err(Error::InvalidRequest(
                "owner names are 1-64 lower-case letters, digits, '.', '_' or '-'".into(),
            ));
        }
        let access_ttl = dur(&s.access_ttl, &file.access_ttl, 3600)?;
        if !(1..=MAX_TTL).contains(&access_ttl) {
            return Err(Error::InvalidRequest(
                "access_ttl must be 1 s to 30 days".into(),
            ));
        }
        let issuer = s
            .issuer
            .clone()
            .or(file.issuer.clone())
            .map(|i| i.trim_end_matches('/').to_owned());
        if let Some(i) = &issuer {
            check_http_url(i).map_err(|why| {
                Error::InvalidRequest(format!(
                    "--issuer {i:?} must be an absolute http(s) URL without query or fragment, \
                     e.g. https://auth.example.com: {why}"
                ))
            })?;
        }
        let device_max_pending = s
            .device_max_pending
            .or(file.device_max_pending)
            .unwrap_or(5);
        if !(1..=5).contains(&device_max_pending) {
            return Err(Error::InvalidRequest(
                "device_max_pending must be 1 to 5 (waiting requests per agent key or address)"
                    .into(),
            ));
        }
        let stepup_ttl = dur(&s.stepup_ttl, &file.stepup_ttl, 300)?.max(1);
        if stepup_ttl > 600 {
            return Err(Error::InvalidRequest(
                "stepup_ttl is at most 10m (the longest a step-up request may wait)".into(),
            ));
        }
        // A list set on the command line or in the environment replaces the
        // file's, as every other setting does.
        let trusted_proxies = if s.trusted_proxies.is_empty() {
            file.trusted_proxies.clone()
        } else {
            s.trusted_proxies.clone()
        };
        let store = s
            .store
            .as_deref()
            .or(file.store.as_deref())
            .filter(|u| !u.trim().is_empty())
            .map(crate::store::PgUrl::parse)
            .transpose()?;
        Ok(Config {
            data,
            store,
            vault_key_file: s.vault_key_file.clone().or(file.vault_key_file.clone()),
            owner,
            addr: s
                .addr
                .clone()
                .or(file.addr.clone())
                .unwrap_or_else(|| "127.0.0.1:8080".into()),
            issuer,
            access_ttl,
            dpop_nonce: s.dpop_nonce.or(file.dpop_nonce).unwrap_or(true),
            trusted_proxies,
            device_ttl: dur(&s.device_ttl, &file.device_ttl, 600)?.max(1),
            device_interval: s
                .device_interval
                .or(file.device_interval)
                .unwrap_or(5)
                .clamp(0, 60),
            device_max_pending,
            stepup_ttl,
            enrollment_ttl: dur(&s.enrollment_ttl, &file.enrollment_ttl, 900)?.max(1),
            proof_window: s
                .proof_window
                .or(file.proof_window)
                .unwrap_or(60)
                .clamp(1, 300),
            busy_timeout_ms: s
                .busy_timeout_ms
                .or(file.busy_timeout_ms)
                .unwrap_or(10_000)
                .clamp(10, 600_000),
            rate_limit: match s.rate_limit.as_ref().or(file.rate_limit.as_ref()) {
                Some(r) => parse_rate_limit(r)?,
                None => Some(DEFAULT_RATE_LIMIT),
            },
            metrics_addr: s.metrics_addr.clone().or(file.metrics_addr.clone()),
            insecure_client_documents: s.insecure_client_documents,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert_eq!(parse_duration("15m").unwrap(), 900);
        assert_eq!(parse_duration("1h").unwrap(), 3600);
        assert_eq!(parse_duration("30d").unwrap(), MAX_TTL);
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("-5").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn rate_limits() {
        assert_eq!(parse_rate_limit("off").unwrap(), None);
        let r = parse_rate_limit("50/s").unwrap().unwrap();
        assert_eq!((r.per_second, r.burst), (50.0, 100));
        let r = parse_rate_limit("60/m").unwrap().unwrap();
        assert_eq!((r.per_second, r.burst), (1.0, 2));
        for bad in ["", "50", "0/s", "-1/s", "50/d", "x/s", "50/s/s"] {
            assert!(parse_rate_limit(bad).is_err(), "{bad}");
        }
    }
}
