//! Backup and restore of an SQLite data directory. A backup is one SQLite
//! file: a consistent copy of the database taken with SQLite's online backup
//! (one read transaction: writers go on meanwhile), plus the data directory's
//! other files (signing keys, vault key, recorded issuer) in a
//! `backup_files` table. It holds every secret the broker has: owner-only.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use protonpass_agent::Error;
use rusqlite::{Connection, OpenFlags, params};

use crate::store::Result;

/// The database file in a data directory.
pub const DB_FILE: &str = "broker.db";
/// Files of the data directory that are not copied: the database (copied
/// through SQLite), the serve lock, logs, temporary files, the one-time setup
/// link.
const SKIP: &[&str] = &[
    "broker.db",
    "broker.db-wal",
    "broker.db-shm",
    "broker.db-journal",
    "serve.lock",
    "setup-link",
];

/// What a backup or restore copied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Copied {
    /// Database size, bytes.
    pub bytes: u64,
    /// The other files, by path relative to the data directory.
    pub files: Vec<String>,
}

fn io(what: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("{}: {e}", what.display()))
}

fn sql(e: rusqlite::Error) -> Error {
    Error::Storage(format!("backup: {e}"))
}

/// The data directory's files besides the database, one folder deep.
fn data_files(data: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut walk = vec![(data.to_owned(), String::new())];
    while let Some((dir, prefix)) = walk.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("{prefix}{name}");
            let kind = entry.file_type().map_err(|e| io(&entry.path(), e))?;
            if kind.is_dir() && prefix.is_empty() {
                walk.push((entry.path(), format!("{name}/")));
            } else if kind.is_file()
                && !SKIP.contains(&rel.as_str())
                && !name.ends_with(".tmp")
                && !name.ends_with(".log")
            {
                let body = std::fs::read(entry.path()).map_err(|e| io(&entry.path(), e))?;
                out.push((rel, body));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A new owner-only file at `path` (an existing one is replaced only with `force`).
fn fresh(path: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        return Err(Error::InvalidRequest(format!(
            "{} exists; pass --force to replace it",
            path.display()
        )));
    }
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| io(path, e))
}

fn tmp_beside(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{}.tmp", std::process::id()));
    PathBuf::from(s)
}

/// Copy the data directory `data` into the backup file `to` while a broker may
/// be serving it.
pub fn backup(data: &Path, to: &Path, force: bool) -> Result<Copied> {
    let db = data.join(DB_FILE);
    if !db.is_file() {
        return Err(Error::InvalidRequest(format!(
            "no broker data at {}; pass --data DIR",
            data.display()
        )));
    }
    if to.exists() && !force {
        return Err(Error::InvalidRequest(format!(
            "{} exists; pass --force to replace it",
            to.display()
        )));
    }
    // A backup inside the data directory would be copied into the next one.
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if let (Ok(dir), Ok(data)) = (parent.canonicalize(), data.canonicalize())
        && dir.starts_with(&data)
    {
        return Err(Error::InvalidRequest(format!(
            "write the backup outside the data directory {}",
            data.display()
        )));
    }
    let tmp = tmp_beside(to);
    fresh(&tmp, true)?;
    via_tmp(&tmp, to, || {
        let src =
            Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql)?;
        src.busy_timeout(Duration::from_secs(30)).map_err(sql)?;
        let mut dst = Connection::open(&tmp).map_err(sql)?;
        {
            // All pages in one step: one read transaction, one consistent state.
            use rusqlite::backup::StepResult;
            let b = rusqlite::backup::Backup::new(&src, &mut dst).map_err(sql)?;
            let mut waits = 0;
            loop {
                match b.step(-1).map_err(sql)? {
                    StepResult::Done => break,
                    StepResult::More => {}
                    StepResult::Busy | StepResult::Locked if waits < 600 => {
                        waits += 1;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => {
                        return Err(Error::TemporarilyUnavailable(
                            "the database stayed locked: try the backup again".into(),
                        ));
                    }
                }
            }
        }
        // The copy is one self-contained file (no write-ahead log beside it).
        dst.execute_batch(
            "PRAGMA journal_mode=DELETE;
             CREATE TABLE backup_files (name TEXT PRIMARY KEY, body BLOB NOT NULL);",
        )
        .map_err(sql)?;
        let files = data_files(data)?;
        for (name, body) in &files {
            dst.execute(
                "INSERT INTO backup_files(name, body) VALUES (?1, ?2)",
                params![name, body],
            )
            .map_err(sql)?;
        }
        drop(dst);
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(&tmp, e))?;
        Ok(files)
    })
}

/// Restore the backup file `from` into `data`. The caller holds the data
/// directory's serve lock (no broker runs on it). An existing database is
/// replaced only with `force`.
pub fn restore(from: &Path, data: &Path, force: bool) -> Result<Copied> {
    let db = data.join(DB_FILE);
    if db.exists() && !force {
        return Err(Error::InvalidRequest(format!(
            "{} already holds a broker database; pass --force to replace it",
            data.display()
        )));
    }
    let tmp = tmp_beside(&db);
    fresh(&tmp, true)?;
    via_tmp(&tmp, &db, || {
        std::fs::copy(from, &tmp).map_err(|e| io(from, e))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io(&tmp, e))?;
        let conn = Connection::open(&tmp).map_err(sql)?;
        let ok: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|_| not_a_backup(from))?;
        if ok != "ok" {
            return Err(not_a_backup(from));
        }
        let files: Vec<(String, Vec<u8>)> = conn
            .prepare("SELECT name, body FROM backup_files ORDER BY name")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()
            })
            .map_err(|_| not_a_backup(from))?;
        conn.execute_batch("DROP TABLE backup_files; PRAGMA journal_mode=WAL;")
            .map_err(sql)?;
        drop(conn);
        for (name, body) in &files {
            write_file(data, name, body)?;
        }
        // A stale write-ahead log beside the new database would be replayed into it.
        for side in ["broker.db-wal", "broker.db-shm"] {
            match std::fs::remove_file(data.join(side)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&data.join(side), e)),
            }
        }
        Ok(files)
    })
}

/// Runs `make`, which writes `tmp` and returns the data files it carries,
/// then moves `tmp` to `to`: what was copied. `tmp` is removed when anything
/// fails.
fn via_tmp(
    tmp: &Path,
    to: &Path,
    make: impl FnOnce() -> Result<Vec<(String, Vec<u8>)>>,
) -> Result<Copied> {
    let done = make().and_then(|files| {
        std::fs::rename(tmp, to).map_err(|e| io(to, e))?;
        let bytes = std::fs::metadata(to).map_err(|e| io(to, e))?.len();
        Ok(Copied {
            bytes,
            files: files.into_iter().map(|(n, _)| n).collect(),
        })
    });
    if done.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    done
}

fn not_a_backup(from: &Path) -> Error {
    Error::InvalidRequest(format!(
        "{} is not a backup made by `protonpass-broker backup`",
        from.display()
    ))
}

/// Write a restored file, owner-only, refusing names that leave the data directory.
fn write_file(data: &Path, name: &str, body: &[u8]) -> Result<()> {
    let parts: Vec<&str> = name.split('/').collect();
    let safe = !parts.is_empty()
        && parts.len() <= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\\'));
    if !safe {
        return Err(Error::InvalidRequest(format!(
            "the backup names a file outside the data directory: {name:?}"
        )));
    }
    let path = data.join(name);
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io(dir, e))?;
    }
    let tmp = tmp_beside(&path);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    f.write_all(body)
        .and_then(|()| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
}
