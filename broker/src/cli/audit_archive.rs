//! `audit checkpoint | archive | verify --file`: signed checkpoints of the
//! chain head, and archives of old records that verify on their own.
//!
//! An archive is JSON Lines: a header (`format`, `first`, `last`, and the
//! signed checkpoint `start` of the record before `first`, when there is
//! one), the records in order, then `{"checkpoint": ...}`: the broker's
//! signature over the last record's position and hash.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::process::ExitCode;

use protonpass_agent::{Error, Result};
use serde_json::{Value, json};

use super::{Ctx, out};
use crate::audit::{Checkpoint, Verifier};
use crate::model::AuditRecord;
use crate::service::upkeep;
use crate::store;

const FORMAT: &str = "protonpass-audit-archive/1";

pub(super) fn checkpoint(c: &Ctx) -> Result<ExitCode> {
    match c.rt.block_on(upkeep::checkpoint(&c.b))? {
        Some(cp) => out(
            c.json,
            json!({"ok": true, "checkpoint": cp}),
            format!("signed checkpoint at record {} (key {})", cp.seq, cp.kid),
        ),
        None => out(
            c.json,
            json!({"ok": true, "checkpoint": null}),
            "nothing new to sign".into(),
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("{}: {e}", path.display()))
}

pub(super) fn archive(c: &Ctx, before: i64, to: &Path) -> Result<ExitCode> {
    let b = &c.b;
    let (first, head) =
        store::read_blocking(&b.store, |tx| Ok((tx.audit_first()?, tx.audit_head()?)))?;
    if before <= first || before > head {
        return Err(Error::InvalidRequest(format!(
            "--before must be after the oldest kept record ({first}) and at most the newest ({head}): \
             the newest record always stays"
        )));
    }
    if to.exists() {
        return Err(Error::InvalidRequest(format!(
            "{} exists; archives are never overwritten",
            to.display()
        )));
    }
    // The whole kept chain must verify before any of it leaves the database.
    if let Err(br) = store::read_blocking(&b.store, upkeep::verify_all)? {
        return Err(Error::Storage(format!(
            "the audit chain is broken at record {}: {}; nothing archived",
            br.seq, br.why
        )));
    }
    let last = before - 1;
    let (start, last_rec) = store::read_blocking(&b.store, |tx| {
        let start = if first > 1 {
            tx.audit_checkpoint_latest(first - 1)?
                .filter(|cp| cp.seq == first - 1)
        } else {
            None
        };
        Ok((start, tx.audit_page(last - 1, 1)?.pop()))
    })?;
    let last_rec =
        last_rec.ok_or_else(|| Error::Storage("the record to archive up to is gone".into()))?;
    let end = Checkpoint::sign(&b.keyring().current, last, &last_rec.hash, b.clock.now());
    let tmp = to.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    let mut w = std::io::BufWriter::new(file);
    let written = (|| -> Result<i64> {
        let header = json!({"format": FORMAT, "first": first, "last": last, "start": start});
        writeln!(w, "{header}").map_err(|e| io(&tmp, e))?;
        let mut after = first - 1;
        let mut n = 0;
        while after < last {
            let recs = store::read_blocking(&b.store, |tx| tx.audit_page(after, 2000))?;
            let Some(tail) = recs.last() else { break };
            after = tail.seq;
            for r in recs.iter().filter(|r| r.seq <= last) {
                let line = serde_json::to_string(r).map_err(|e| Error::Server(e.to_string()))?;
                writeln!(w, "{line}").map_err(|e| io(&tmp, e))?;
                n += 1;
            }
        }
        writeln!(w, "{}", json!({"checkpoint": end})).map_err(|e| io(&tmp, e))?;
        let f = w.into_inner().map_err(|e| io(&tmp, e.into_error()))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
        Ok(n)
    })();
    let n = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, to).map_err(|e| io(to, e))?;
    // One transaction: the boundary checkpoint is stored as the records go.
    let removed = store::write_blocking(&b.store, move |tx| {
        tx.audit_checkpoint_put(&end)?;
        tx.audit_delete_before(before)
    })?;
    out(
        c.json,
        json!({"ok": true, "archived": removed, "written": n, "first": first, "last": last, "to": to.display().to_string()}),
        format!(
            "archived records {first}..{last} ({removed}) to {}; the kept chain verifies from the signed checkpoint at {last}",
            to.display()
        ),
    );
    Ok(ExitCode::SUCCESS)
}

fn fail(j: bool, seq: i64, why: &str) -> Result<ExitCode> {
    out(
        j,
        json!({"ok": false, "seq": seq, "why": why}),
        format!("archive BROKEN at record {seq}: {why}"),
    );
    Ok(ExitCode::from(2))
}

/// Check an archive file on its own: its header, the chain of its records
/// from the signed checkpoint before them (or from the start), and the signed
/// checkpoint at its end.
pub(super) fn verify_file(path: &Path, j: bool) -> Result<ExitCode> {
    let f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut lines = BufReader::new(f).lines();
    let mut next = || -> Result<Option<Value>> {
        match lines.next() {
            None => Ok(None),
            Some(l) => {
                let l = l.map_err(|e| io(path, e))?;
                serde_json::from_str(&l).map(Some).map_err(|_| {
                    Error::InvalidRequest(format!("{} is not an audit archive", path.display()))
                })
            }
        }
    };
    let header = next()?.unwrap_or_default();
    if header["format"] != FORMAT {
        return Err(Error::InvalidRequest(format!(
            "{} is not an audit archive ({FORMAT})",
            path.display()
        )));
    }
    let first = header["first"].as_i64().unwrap_or(0);
    let last = header["last"].as_i64().unwrap_or(0);
    let mut v = if first == 1 {
        Verifier::default()
    } else {
        let Ok(start) = serde_json::from_value::<Checkpoint>(header["start"].clone()) else {
            return fail(
                j,
                first,
                "the archive lacks the signed checkpoint of the record before it",
            );
        };
        if start.seq != first - 1 {
            return fail(
                j,
                first,
                "the starting checkpoint is not the record before the first",
            );
        }
        if let Err(why) = start.check() {
            return fail(j, start.seq, &why);
        }
        Verifier::after(start.seq, &start.hash)
    };
    let mut end: Option<Checkpoint> = None;
    let mut batch: Vec<AuditRecord> = Vec::with_capacity(1000);
    while let Some(line) = next()? {
        if end.is_some() {
            return fail(j, v.position() + 1, "records after the closing checkpoint");
        }
        if let Some(cp) = line.get("checkpoint") {
            end = serde_json::from_value(cp.clone()).ok();
            if end.is_none() {
                return fail(j, v.position(), "the closing checkpoint is malformed");
            }
            continue;
        }
        let Ok(r) = serde_json::from_value::<AuditRecord>(line) else {
            return fail(j, v.position() + 1, "a line is not an audit record");
        };
        batch.push(r);
        if batch.len() == 1000 {
            if let Err(br) = v.feed(&batch) {
                return fail(j, br.seq, &br.why);
            }
            batch.clear();
        }
    }
    if let Err(br) = v.feed(&batch) {
        return fail(j, br.seq, &br.why);
    }
    let Some(end) = end else {
        return fail(
            j,
            v.position(),
            "the archive has no closing checkpoint: it was cut short",
        );
    };
    if v.position() != last || end.seq != last || end.hash != v.head() {
        return fail(
            j,
            v.position(),
            "the closing checkpoint does not sign the last record",
        );
    }
    if let Err(why) = end.check() {
        return fail(j, end.seq, &why);
    }
    out(
        j,
        json!({"ok": true, "records": v.count, "first": first, "last": last,
               "kid": end.kid, "public_key": end.public_key, "signed_at": end.ts}),
        format!(
            "archive intact: records {first}..{last} ({}), signed by key {} (public key {}); compare the key with the broker's JWKS",
            v.count, end.kid, end.public_key
        ),
    );
    Ok(ExitCode::SUCCESS)
}
