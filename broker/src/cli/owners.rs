//! Owners and signing keys: `owner add | list | remove`, `keys rotate`.

use std::process::ExitCode;

use protonpass_agent::{Clock, Error, OsRandom, Result, SystemClock};
use serde_json::json;

use super::human::{at, when};
use super::{Ctx, KeysCmd, OwnerCmd, WebhookCmd, out};
use crate::store;

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
        OwnerCmd::List => {
            let list = store::read_blocking(&c.b.store, |tx| tx.owners())?;
            let text = list
                .iter()
                .map(|o| {
                    format!(
                        "{}  created {}  dashboard password {}",
                        o.name,
                        when(o.created_at),
                        if o.has_password { "set" } else { "not set" }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            out(c.json, json!(list), text);
        }
        OwnerCmd::MfaReset { name } => {
            let known = store::read_blocking(&c.b.store, |tx| tx.owners())?
                .iter()
                .any(|o| &o.name == name);
            if !known {
                return Err(Error::InvalidRequest(format!(
                    "no owner named {name:?} (`owner list` shows them)"
                )));
            }
            let had = c.rt.block_on(crate::dashboard::mfa_reset(&c.b, name))?;
            out(
                c.json,
                json!({"owner": name, "removed": had}),
                if had {
                    format!(
                        "Owner {name}: two-step sign-in removed; the password alone signs in until it is set up again."
                    )
                } else {
                    format!("Owner {name} had no two-step sign-in; nothing changed.")
                },
            );
        }
        OwnerCmd::Webhook { cmd } => webhook(c, cmd)?,
        OwnerCmd::Remove { name, force } => {
            let r = c.rt.block_on(c.b.owner_remove(name, *force))?;
            let mut text = format!("Removed owner {name}.");
            if !r.revoked_grants.is_empty() {
                text.push_str(&format!(
                    " Revoked its {} live grant(s): {}.",
                    r.revoked_grants.len(),
                    r.revoked_grants.join(", ")
                ));
            }
            if !r.removed_resources.is_empty() {
                text.push_str(&format!(
                    " Removed its resource server(s) {}: their credentials no longer work.",
                    r.removed_resources.join(", ")
                ));
            }
            out(c.json, json!(r), text);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn webhook(c: &Ctx, cmd: &WebhookCmd) -> Result<()> {
    match cmd {
        WebhookCmd::Set {
            name,
            url,
            allow_private_network,
        } => {
            let secret =
                c.rt.block_on(crate::webhook::set(&c.b, name, url, *allow_private_network))?;
            out(
                c.json,
                json!({"owner": name, "url": url, "secret": secret}),
                format!(
                    "Owner {name}: step-up requests that wait for you are POSTed to {url}.\n\
                     Signing secret (shown once; verify the webhook-signature header with it):\n{secret}"
                ),
            );
        }
        WebhookCmd::Show { name } => match c.rt.block_on(crate::webhook::show(&c.b, name))? {
            Some(w) => out(
                c.json,
                json!(w),
                format!(
                    "Owner {name}: webhook {}  set {}{}",
                    w.url,
                    when(w.created_at),
                    if w.allow_private_network {
                        "  private network allowed"
                    } else {
                        ""
                    }
                ),
            ),
            None => out(c.json, json!(null), format!("Owner {name} has no webhook.")),
        },
        WebhookCmd::Remove { name } => {
            let had = c.rt.block_on(crate::webhook::remove(&c.b, name))?;
            out(
                c.json,
                json!({"owner": name, "removed": had}),
                if had {
                    format!("Owner {name}: webhook removed.")
                } else {
                    format!("Owner {name} had no webhook; nothing changed.")
                },
            );
        }
    }
    Ok(())
}

pub(super) fn keys(c: &Ctx, cmd: &KeysCmd) -> Result<ExitCode> {
    match cmd {
        KeysCmd::Rotate => {
            let m = super::key_place(&c.cfg, &c.b.store)?.rotate(
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
        KeysCmd::List => {
            let now = SystemClock.now();
            let list = store::read_blocking(&c.b.store, |tx| tx.keys_all())?;
            let v: Vec<_> = list
                .iter()
                .map(|k| {
                    json!({"kid": k.kid, "created_at": k.created_at, "retired_at": k.retired_at,
                    "drop_after": k.drop_after,
                    "status": match (k.retired_at, k.drop_after) {
                        (None, _) => "current",
                        (Some(_), Some(d)) if d <= now => "dropped",
                        (Some(_), _) => "retired",
                    }})
                })
                .collect();
            let text = list
                .iter()
                .map(|k| match (k.retired_at, k.drop_after) {
                    (None, _) => format!(
                        "{}  current: signs new tokens; created {}",
                        k.kid,
                        when(k.created_at)
                    ),
                    (Some(r), Some(d)) if d <= now => format!(
                        "{}  retired {}; left the JWKS {}",
                        k.kid,
                        when(r),
                        at(d, now)
                    ),
                    (Some(r), Some(d)) => format!(
                        "{}  retired {}; still published until its last token expires, {}",
                        k.kid,
                        when(r),
                        at(d, now)
                    ),
                    (Some(r), None) => format!("{}  retired {}", k.kid, when(r)),
                })
                .collect::<Vec<_>>()
                .join("\n");
            out(c.json, json!(v), text);
        }
    }
    Ok(ExitCode::SUCCESS)
}
