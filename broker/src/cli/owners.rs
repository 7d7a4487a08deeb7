//! Owners and signing keys: `owner add`, `keys rotate`.

use std::process::ExitCode;

use protonpass_agent::{Clock, Error, OsRandom, Result, SystemClock};
use serde_json::json;

use super::{Ctx, KeysCmd, OwnerCmd, out};
use crate::keys::KeyRing;

pub(super) fn owner(c: &Ctx, cmd: &OwnerCmd) -> Result<ExitCode> {
    match cmd {
        OwnerCmd::Add {
            name,
            password_stdin,
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
            match c.rt.block_on(crate::dashboard::owner_add(&c.b, name, pw))? {
                Some(link) if c.issuer_known => out(
                    c.json,
                    json!({"owner": name, "setup_url": link}),
                    format!(
                        "Owner {name}: open this one-time link to set the password (valid 24 h):\n{link}"
                    ),
                ),
                Some(link) => {
                    // No server has run on this data directory: its address
                    // is unknown, and a guessed one would lead nowhere.
                    let path = link.strip_prefix(c.b.issuer.as_str()).unwrap_or(&link);
                    out(
                        c.json,
                        json!({"owner": name, "setup_url": null, "setup_path": path}),
                        format!(
                            "Owner {name}: no broker has been started on {} yet, so its address is unknown.\n\
                             Start `protonpass-broker serve`, then open this one-time path on its address (valid 24 h):\n{path}",
                            c.cfg.data.display()
                        ),
                    );
                }
                None => out(
                    c.json,
                    json!({"owner": name}),
                    format!("Owner {name}: password set."),
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn keys(c: &Ctx, cmd: &KeysCmd) -> Result<ExitCode> {
    match cmd {
        KeysCmd::Rotate => {
            let m = KeyRing::rotate(
                &c.b.store,
                &c.cfg.data,
                SystemClock.now(),
                c.cfg.access_ttl,
                &OsRandom,
            )?;
            out(
                c.json,
                json!({"kid": m.kid}),
                format!(
                    "New signing key {}; older keys stay in the JWKS until their tokens expire.",
                    m.kid
                ),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
