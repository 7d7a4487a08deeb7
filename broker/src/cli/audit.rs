//! `audit tail | export | verify`.

use std::io::Write as _;
use std::process::ExitCode;

use protonpass_agent::Result;
use serde_json::json;

use super::{AuditCmd, out};
use crate::audit::Verifier;
use crate::service::Broker;
use crate::store;

pub(super) fn audit(b: &Broker, cmd: &AuditCmd, j: bool) -> Result<ExitCode> {
    let page = |after: i64| store::read_blocking(&b.store, |tx| tx.audit_page(after, 1000));
    match cmd {
        AuditCmd::Tail { lines } => {
            let head = store::read_blocking(&b.store, |tx| tx.audit_head())?;
            let recs =
                store::read_blocking(&b.store, |tx| tx.audit_page((head - lines).max(0), *lines))?;
            for r in recs {
                if j {
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                } else {
                    println!(
                        "{:>6}  {}  {:<8}  {:<16}  {}",
                        r.seq, r.ts, r.owner, r.event, r.detail
                    );
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
        AuditCmd::Verify => {
            let mut v = Verifier::default();
            let mut after = 0;
            loop {
                let recs = page(after)?;
                let Some(last) = recs.last() else { break };
                after = last.seq;
                if let Err(br) = v.feed(&recs) {
                    out(
                        j,
                        json!({"ok": false, "seq": br.seq, "why": br.why}),
                        format!("audit log BROKEN at record {}: {}", br.seq, br.why),
                    );
                    return Ok(ExitCode::from(2));
                }
            }
            out(
                j,
                json!({"ok": true, "records": v.count, "head": v.head()}),
                format!("audit log intact: {} records, head {}", v.count, v.head()),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
