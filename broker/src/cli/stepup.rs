//! Step-ups on the command line: `stepup list | approve ID | deny ID`, and
//! `grant stepup-policy GRANT_ID --max AMOUNT --currency CODE | --off`.

use std::process::ExitCode;

use clap::Subcommand;
use protonpass_agent::{Clock, Error, Result, SystemClock};
use serde_json::json;

use super::human::at;
use super::{Ctx, out};

/// `protonpass-broker stepup ...`.
#[derive(Debug, Subcommand)]
pub(super) enum StepupCmd {
    /// List the step-up requests waiting for your decision.
    List,
    /// Approve a waiting step-up request by its id.
    Approve {
        /// The request id (as `stepup list` shows it).
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Deny a waiting step-up request by its id.
    Deny {
        /// The request id.
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

pub(super) fn run(c: &Ctx, cmd: &StepupCmd) -> Result<ExitCode> {
    match cmd {
        StepupCmd::List => {
            let list = c.rt.block_on(c.b.stepups_pending(&c.owner))?;
            if c.json {
                say!("{}", json!(list));
                return Ok(ExitCode::SUCCESS);
            }
            if list.is_empty() {
                say!("No step-up request is waiting.");
            }
            let now = SystemClock.now();
            for s in list {
                say!(
                    "{}  agent {:?}  on {}  expires {}\n  details: {}\n  reason (the agent's words): {}",
                    s.id,
                    s.agent,
                    s.audience,
                    at(s.expires_at, now),
                    s.authorization_details,
                    s.binding_message.as_deref().unwrap_or("(none)")
                );
            }
        }
        StepupCmd::Approve { id } | StepupCmd::Deny { id } => {
            let approve = matches!(cmd, StepupCmd::Approve { .. });
            let v = c.rt.block_on(c.b.stepup_decide(&c.owner, id, approve))?;
            out(
                c.json,
                json!(v),
                format!(
                    "{} step-up {} of agent {:?}.",
                    if approve { "Approved" } else { "Denied" },
                    v.id,
                    v.agent
                ),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn policy(
    c: &Ctx,
    id: &str,
    max: Option<&String>,
    currency: Option<&String>,
    off: bool,
) -> Result<ExitCode> {
    let limit = match (max, currency, off) {
        (Some(m), Some(cur), false) => Some((m.clone(), cur.clone())),
        (None, None, true) => None,
        _ => {
            return Err(Error::InvalidRequest(
                "give --max AMOUNT --currency CODE, or --off".into(),
            ));
        }
    };
    let set = c.rt.block_on(c.b.stepup_policy_set(&c.owner, id, limit))?;
    let text = match &set {
        Some((m, cur)) => format!(
            "Grant {id}: step-up payments up to {m} {cur} are approved automatically (while the budget lasts); anything else waits for you."
        ),
        None => format!("Grant {id}: every step-up waits for you."),
    };
    let v = match set {
        Some((m, cur)) => json!({"grant_id": id, "auto_approve": {"max": m, "currency": cur}}),
        None => json!({"grant_id": id, "auto_approve": null}),
    };
    out(c.json, v, text);
    Ok(ExitCode::SUCCESS)
}
