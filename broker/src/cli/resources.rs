//! Resource servers: `resource add`.

use std::process::ExitCode;

use protonpass_agent::Result;
use serde_json::json;

use super::{Ctx, ResourceCmd, out};
use crate::config::check_audience;

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
    }
    Ok(ExitCode::SUCCESS)
}
