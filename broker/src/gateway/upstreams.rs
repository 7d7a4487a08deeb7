//! The owner's operations on upstreams: add, rotate, remove, list, show. Each
//! change runs with its audit record (which never holds the secret) in one
//! store transaction. An upstream belongs to the owner who added it.

use std::sync::Arc;

use protonpass_agent::{Error, Random, Result};
use serde::Serialize;
use serde_json::json;

use super::rules::{self, Credential, Upstream};
use super::vault::Vault;
use crate::service::{AudienceStatus, audience_status};
use crate::store::{self, Store, UpstreamRec};

/// What the owner sees of an upstream (never the secret).
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamView {
    /// The name.
    pub name: String,
    /// The token audience agents ask for.
    pub audience: String,
    /// Where agents send requests: `{issuer}/gateway/{name}`.
    pub gateway_url: String,
    /// Where the gateway forwards them.
    pub base_url: String,
    /// Plain-language description.
    pub description: Option<String>,
    /// How the secret is injected, in words (`header x-api-key`, `query api_key`, `basic`).
    pub credential: String,
    /// Whether private network addresses are allowed.
    pub allow_private_network: bool,
    /// The rules.
    pub rules: Vec<RuleView>,
    /// Suggested scopes.
    pub suggested_scopes: Vec<String>,
    /// Suggested grant lifetime.
    pub suggested_ttl: Option<String>,
    /// Added.
    pub created_at: i64,
    /// Last change of the secret or the rules.
    pub rotated_at: i64,
}

/// One rule, as the owner reads it.
#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    /// Methods.
    pub methods: Vec<String>,
    /// Path pattern.
    pub path: String,
    /// Scope template.
    pub scope: String,
    /// Description.
    pub description: Option<String>,
}

/// Parse a stored or given rules file, as an `invalid_request` naming the line.
pub fn parse_rules(text: &str) -> Result<Upstream> {
    rules::parse(text).map_err(|e| Error::InvalidRequest(e.to_string()))
}

/// The gateway URL of upstream `name`.
pub fn gateway_url(issuer: &str, name: &str) -> String {
    format!("{issuer}/gateway/{name}")
}

fn view(issuer: &str, rec: &UpstreamRec) -> Result<UpstreamView> {
    let u = parse_rules(&rec.rules)?;
    Ok(UpstreamView {
        gateway_url: gateway_url(issuer, &u.name),
        base_url: u.base_url.as_str().trim_end_matches('/').to_owned(),
        credential: match &u.credential {
            Credential::Header { name, .. } if u.oauth2.is_some() => {
                format!("oauth2 header {name}")
            }
            Credential::Header { name, .. } => format!("header {name}"),
            Credential::Query { param } => format!("query {param}"),
            Credential::Basic { .. } => "basic".to_owned(),
        },
        rules: u
            .rules
            .iter()
            .map(|r| RuleView {
                methods: r.methods.clone(),
                path: r.path.clone(),
                scope: r.scope.clone(),
                description: r.description.clone(),
            })
            .collect(),
        name: u.name,
        audience: u.audience,
        description: u.description,
        allow_private_network: u.allow_private_network,
        suggested_scopes: u.suggested_scopes,
        suggested_ttl: u.suggested_ttl,
        created_at: rec.created_at,
        rotated_at: rec.rotated_at,
    })
}

/// What `add`, `rotate` and `remove` need.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// Storage.
    pub store: &'a Arc<dyn Store>,
    /// The issuer, for gateway URLs.
    pub issuer: &'a str,
    /// The owner acting.
    pub owner: &'a str,
    /// The current time.
    pub now: i64,
}

fn not_found(name: &str) -> Error {
    Error::InvalidRequest(format!("you have no upstream named {name:?}"))
}

/// Add an upstream from its rules file and secret.
pub fn add(
    c: &Ctx<'_>,
    vault: &Vault,
    rng: &dyn Random,
    text: &str,
    secret: &[u8],
) -> Result<UpstreamView> {
    let u = parse_rules(text)?;
    let sealed = vault.seal(c.owner, &u.name, secret, rng)?;
    let rec = UpstreamRec {
        name: u.name.clone(),
        owner: c.owner.to_owned(),
        rules: text.to_owned(),
        sealed,
        created_at: c.now,
        rotated_at: c.now,
    };
    let out = view(c.issuer, &rec)?;
    let detail = json!({"upstream": u.name, "audience": u.audience, "base_url": out.base_url,
                        "rules": u.rules.len(), "by": "cli"})
    .to_string();
    let (owner, now, aud) = (c.owner.to_owned(), c.now, u.audience.clone());
    store::write_blocking(c.store, move |tx| {
        if let Some(old) = tx.upstream_get(&rec.name)? {
            return Err(Error::InvalidRequest(if old.owner == owner {
                format!(
                    "upstream {:?} exists: use `upstream rotate` or remove it first",
                    rec.name
                )
            } else {
                format!(
                    "the upstream name {:?} is taken: choose another name",
                    rec.name
                )
            }));
        }
        // An audience another owner registered (not shared) is that owner's.
        if audience_status(tx, &owner, &aud)? == AudienceStatus::Shared {
            return Err(Error::InvalidTarget(format!(
                "the audience {aud} is a shared API registered by another owner: give the upstream its own audience"
            )));
        }
        tx.owner_ensure(&owner, now)?;
        tx.upstream_put(&rec)?;
        tx.audit_append(now, &owner, "upstream_add", &detail)?;
        Ok(())
    })?;
    Ok(out)
}

/// Replace an upstream's secret.
pub fn rotate(
    c: &Ctx<'_>,
    vault: &Vault,
    rng: &dyn Random,
    name: &str,
    secret: &[u8],
) -> Result<UpstreamView> {
    let mut rec = store::read_blocking(c.store, |tx| tx.upstream_get(name))?
        .filter(|r| r.owner == c.owner)
        .ok_or_else(|| not_found(name))?;
    rec.sealed = vault.seal(c.owner, name, secret, rng)?;
    rec.rotated_at = c.now;
    let out = view(c.issuer, &rec)?;
    let (owner, now) = (c.owner.to_owned(), c.now);
    let detail = json!({"upstream": name, "by": "cli"}).to_string();
    store::write_blocking(c.store, move |tx| {
        // Still ours (not removed and re-added by someone else meanwhile).
        match tx.upstream_get(&rec.name)? {
            Some(cur) if cur.owner == owner && cur.created_at == rec.created_at => {}
            _ => return Err(not_found(&rec.name)),
        }
        tx.upstream_put(&rec)?;
        tx.audit_append(now, &owner, "upstream_rotate", &detail)?;
        Ok(())
    })?;
    Ok(out)
}

/// Remove an upstream and its secret.
pub fn remove(c: &Ctx<'_>, name: &str) -> Result<()> {
    let (owner, now, name) = (c.owner.to_owned(), c.now, name.to_owned());
    store::write_blocking(c.store, move |tx| {
        match tx.upstream_get(&name)? {
            Some(cur) if cur.owner == owner => {}
            _ => return Err(not_found(&name)),
        }
        tx.upstream_delete(&name)?;
        tx.connection_delete(&name)?;
        let detail = json!({"upstream": name, "by": "cli"}).to_string();
        tx.audit_append(now, &owner, "upstream_remove", &detail)?;
        Ok(())
    })
}

/// The owner's upstreams.
pub fn list(store: &Arc<dyn Store>, issuer: &str, owner: &str) -> Result<Vec<UpstreamView>> {
    let recs = store::read_blocking(store, |tx| tx.upstream_list(owner))?;
    recs.iter().map(|r| view(issuer, r)).collect()
}

/// The rules file of one of the owner's upstreams, as given (it holds no secret).
pub fn export(store: &Arc<dyn Store>, owner: &str, name: &str) -> Result<String> {
    store::read_blocking(store, |tx| tx.upstream_get(name))?
        .filter(|r| r.owner == owner)
        .map(|r| r.rules)
        .ok_or_else(|| not_found(name))
}

/// One of the owner's upstreams.
pub fn show(store: &Arc<dyn Store>, issuer: &str, owner: &str, name: &str) -> Result<UpstreamView> {
    let rec = store::read_blocking(store, |tx| tx.upstream_get(name))?
        .filter(|r| r.owner == owner)
        .ok_or_else(|| not_found(name))?;
    view(issuer, &rec)
}

/// What the broker's metadata says of every owner's upstreams: the audience
/// and the gateway URL, nothing else (`spec/09-security-considerations.md`
/// says why that much is public). A rules file that no longer parses is left
/// out rather than failing the metadata.
pub async fn published(
    store: &Arc<dyn Store>,
    issuer: &str,
) -> Result<Vec<protonpass_agent::wire::GatewayEntry>> {
    let recs = store::read(store, |tx| tx.upstream_all()).await?;
    Ok(recs
        .iter()
        .filter_map(|r| rules::parse(&r.rules).ok())
        .map(|u| protonpass_agent::wire::GatewayEntry {
            gateway_url: gateway_url(issuer, &u.name),
            audience: u.audience,
        })
        .collect())
}
