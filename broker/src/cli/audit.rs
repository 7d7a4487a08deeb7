//! `audit tail | export | verify`.

use std::io::Write as _;
use std::process::ExitCode;

use protonpass_agent::Result;
use serde_json::json;

use super::human::when;
use super::{AuditCmd, out};
use crate::model::AuditRecord;
use crate::service::Broker;
use crate::service::upkeep;
use crate::store;

pub(super) fn audit(b: &Broker, cmd: &AuditCmd, j: bool) -> Result<ExitCode> {
    let page = |after: i64| store::read_blocking(&b.store, |tx| tx.audit_page(after, 1000));
    match cmd {
        AuditCmd::Tail { lines, follow } => {
            let head = store::read_blocking(&b.store, |tx| tx.audit_head())?;
            let recs =
                store::read_blocking(&b.store, |tx| tx.audit_page((head - lines).max(0), *lines))?;
            let mut after = recs.last().map_or(head, |r| r.seq);
            let open = print_records(&recs, j);
            if *follow && open {
                loop {
                    // Other processes (the server, other commands) append: poll.
                    std::thread::sleep(std::time::Duration::from_millis(500));
                    let recs = page(after)?;
                    if let Some(last) = recs.last() {
                        after = last.seq;
                    }
                    if !print_records(&recs, j) {
                        // The reader is gone (a closed pipe): stop following.
                        break;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Export => {
            let mut after = 0;
            let stdout = std::io::stdout();
            let mut w = stdout.lock();
            loop {
                let recs = page(after)?;
                let Some(last) = recs.last() else { break };
                after = last.seq;
                for r in &recs {
                    let _ = writeln!(w, "{}", serde_json::to_string(r).unwrap_or_default());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Verify { .. } => match store::read_blocking(&b.store, upkeep::verify_all)? {
            Err(br) => {
                out(
                    j,
                    json!({"ok": false, "seq": br.seq, "why": br.why}),
                    format!("audit log BROKEN at record {}: {}", br.seq, br.why),
                );
                Ok(ExitCode::from(2))
            }
            Ok(v) => {
                let from = match v.checkpoint {
                    Some(s) => format!(" after the signed checkpoint at {s}"),
                    None => String::new(),
                };
                out(
                    j,
                    json!({"ok": true, "records": v.count, "head": v.head_hash, "head_seq": v.head,
                           "checkpoint": v.checkpoint}),
                    format!(
                        "audit log intact: {} records{from}, head {}",
                        v.count, v.head_hash
                    ),
                );
                Ok(ExitCode::SUCCESS)
            }
        },
        // Handled by `audit_archive`.
        AuditCmd::Checkpoint | AuditCmd::Archive { .. } => Ok(ExitCode::SUCCESS),
    }
}

/// Records as people read them, or as JSON Lines whose `detail` is an object
/// (not JSON inside a string; `audit export` keeps the exact hashed text).
/// Returns whether standard output still takes them.
fn print_records(recs: &[AuditRecord], j: bool) -> bool {
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    for r in recs {
        let written = if j {
            let detail: serde_json::Value =
                serde_json::from_str(&r.detail).unwrap_or_else(|_| r.detail.clone().into());
            writeln!(
                w,
                "{}",
                json!({"seq": r.seq, "ts": r.ts, "owner": r.owner, "event": r.event,
                       "detail": detail, "prev": r.prev, "hash": r.hash})
            )
        } else {
            writeln!(
                w,
                "{:>6}  {}  {:<8}  {:<16}  {}",
                r.seq,
                when(r.ts),
                r.owner,
                r.event,
                r.detail
            )
        };
        if written.is_err() {
            return false;
        }
    }
    w.flush().is_ok()
}
