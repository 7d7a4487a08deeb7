//! `prune`, `backup`, `restore`: keeping the data directory bounded and recoverable.

use std::path::Path;
use std::process::ExitCode;

use protonpass_agent::{Clock as _, Error, Result, SystemClock};
use serde_json::json;

use super::{Ctx, out};
use crate::config::Config;
use crate::service::upkeep;
use crate::store::{self, sqlite::backup};

pub(super) fn prune(c: &Ctx, now: Option<i64>) -> Result<ExitCode> {
    let now = now.unwrap_or_else(|| SystemClock.now());
    let removed = c.rt.block_on(upkeep::prune(&c.b, now))?;
    let rows = store::read_blocking(&c.b.store, |tx| tx.storage_rows())?;
    out(
        c.json,
        json!({"removed": removed, "rows": rows}),
        format!(
            "removed {} expired rows ({} tokens, {} device requests, {} feed entries); kept {} tokens, {} grants, {} audit records",
            removed.total(),
            removed.tokens,
            removed.devices,
            removed.revocations,
            rows.tokens,
            rows.grants,
            rows.audit
        ),
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn backup(cfg: &Config, to: &Path, force: bool, j: bool) -> Result<ExitCode> {
    crate::files::check_data_dir(&cfg.data, false)?;
    let done = backup::backup(&cfg.data, to, force)?;
    out(
        j,
        json!({"ok": true, "to": to.display().to_string(), "bytes": done.bytes, "files": done.files}),
        format!(
            "backup written to {} ({} bytes, with {} files of the data directory: it holds the signing and vault keys, keep it private)",
            to.display(),
            done.bytes,
            done.files.len()
        ),
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn restore(cfg: &Config, from: &Path, force: bool, j: bool) -> Result<ExitCode> {
    if !from.is_file() {
        return Err(Error::InvalidRequest(format!(
            "no backup file at {}",
            from.display()
        )));
    }
    crate::files::check_data_dir(&cfg.data, true)?;
    // Held for the whole restore: no broker starts on the directory meanwhile,
    // and a running one makes the restore fail here.
    let _lock = crate::files::lock_serve(&cfg.data).map_err(|e| {
        Error::InvalidRequest(format!(
            "cannot restore into a data directory in use: {}",
            e.description()
        ))
    })?;
    let done = backup::restore(from, &cfg.data, force)?;
    out(
        j,
        json!({"ok": true, "data": cfg.data.display().to_string(), "bytes": done.bytes, "files": done.files}),
        format!(
            "restored {} into {}; start it with `protonpass-broker --data {} serve`",
            from.display(),
            cfg.data.display(),
            cfg.data.display()
        ),
    );
    Ok(ExitCode::SUCCESS)
}
