//! Resource servers: `resource add | invite | list | show | rotate | remove`.

use std::process::ExitCode;

use protonpass_agent::{Error, Result};
use serde_json::{Value, json};

use super::human::when;
use super::{Ctx, ResourceCmd, out};
use crate::config::{check_audience, parse_duration};
use crate::model::Resource;
use crate::scope_catalog::{self, ScopeCatalog};

/// A resource server without its secret's hash.
fn public(r: &Resource) -> Value {
    json!({"client_id": r.client_id, "audience": r.audience, "shared": r.shared,
           "created_at": r.created_at, "scopes": r.scopes.scopes})
}

/// Read a scope catalog file (`--scopes FILE`), refusing oversized files
/// before reading them whole.
fn read_catalog(path: &std::path::Path) -> Result<ScopeCatalog> {
    let bad = |why: String| Error::InvalidRequest(format!("{}: {why}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.len() > scope_catalog::MAX_FILE as u64 {
        return Err(bad(format!(
            "larger than {} bytes",
            scope_catalog::MAX_FILE
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    scope_catalog::parse(&text).map_err(|e| bad(e.to_string()))
}

fn line(r: &Resource) -> String {
    format!(
        "{}  {}{}  registered {}",
        r.client_id,
        r.audience,
        if r.shared {
            "  (shared by every owner)"
        } else {
            ""
        },
        when(r.created_at)
    )
}

pub(super) fn resource(c: &Ctx, cmd: &ResourceCmd) -> Result<ExitCode> {
    match cmd {
        ResourceCmd::Add {
            audience,
            shared,
            scopes,
        } => {
            check_audience(audience)?;
            let catalog = match scopes {
                Some(path) => read_catalog(path)?,
                None => ScopeCatalog::default(),
            };
            let r =
                c.rt.block_on(c.b.resource_add(&c.owner, audience, *shared, catalog))?;
            out(
                c.json,
                json!(r),
                format!(
                    "Resource server for {}:\n  client_id:     {}\n  client_secret: {}\n(the secret is shown once)",
                    r.audience, r.client_id, r.client_secret
                ),
            );
        }
        ResourceCmd::List => {
            let list = c.rt.block_on(c.b.resource_list(&c.owner))?;
            let text = if list.is_empty() {
                "No resource server is registered; add one with `protonpass-broker resource add URL`."
                    .to_owned()
            } else {
                list.iter().map(line).collect::<Vec<_>>().join("\n")
            };
            out(
                c.json,
                Value::Array(list.iter().map(public).collect()),
                text,
            );
        }
        ResourceCmd::Show { id } => {
            let r = c.rt.block_on(c.b.resource_find(&c.owner, id))?;
            let mut text = line(&r);
            for s in &r.scopes.scopes {
                text.push_str(&format!(
                    "\n  {:<28} {:<6} {}",
                    s.name,
                    s.risk.as_str(),
                    s.description
                ));
            }
            out(c.json, public(&r), text);
        }
        ResourceCmd::Invite {
            audience,
            shared,
            ttl,
        } => {
            let inv = c.rt.block_on(c.b.resource_invite(
                &c.owner,
                audience,
                *shared,
                parse_duration(ttl)?,
            ))?;
            out(
                c.json,
                json!(inv),
                format!(
                    "Registration token for owner {}, for {} only (works once, until {}):\n  {}\nThe resource server sends it as `Authorization: Bearer` to {}",
                    inv.owner,
                    inv.audience,
                    when(inv.expires_at),
                    inv.registration_token,
                    inv.registration_endpoint
                ),
            );
        }
        ResourceCmd::Rotate { id } => {
            let r = c.rt.block_on(c.b.resource_rotate(&c.owner, id))?;
            out(
                c.json,
                json!(r),
                format!(
                    "New secret for resource server {} ({}); the old one no longer works.\n  client_id:     {}\n  client_secret: {}\n(the secret is shown once: update the service's configuration)",
                    r.client_id, r.audience, r.client_id, r.client_secret
                ),
            );
        }
        ResourceCmd::Bearer { id, state } => {
            let on = state == "on";
            let r =
                c.rt.block_on(c.b.resource_accept_bearer(&c.owner, id, on))?;
            out(
                c.json,
                json!({"client_id": r.client_id, "audience": r.audience, "accept_bearer": on}),
                if on {
                    format!(
                        "{}: clients that cannot do DPoP may now get bearer tokens for it (10 minutes at most).",
                        r.audience
                    )
                } else {
                    format!("{}: only DPoP-bound tokens are issued for it.", r.audience)
                },
            );
        }
        ResourceCmd::Remove { id } => {
            let r = c.rt.block_on(c.b.resource_remove(&c.owner, id))?;
            out(
                c.json,
                json!({"removed": public(&r)}),
                format!(
                    "Removed resource server {} for {}: its credential no longer works.",
                    r.client_id, r.audience
                ),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
