//! Resource servers: `resource add | list | show | rotate | remove`.

use std::process::ExitCode;

use protonpass_agent::Result;
use serde_json::{Value, json};

use super::human::when;
use super::{Ctx, ResourceCmd, out};
use crate::config::check_audience;
use crate::model::Resource;

/// A resource server without its secret's hash.
fn public(r: &Resource) -> Value {
    json!({"client_id": r.client_id, "audience": r.audience, "shared": r.shared,
           "created_at": r.created_at})
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
        ResourceCmd::Add { audience, shared } => {
            check_audience(audience)?;
            let r =
                c.rt.block_on(c.b.resource_add(&c.owner, audience, *shared))?;
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
            out(c.json, public(&r), line(&r));
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
