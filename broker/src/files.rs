//! The data directory on disk: created owner-only, and checked at every start
//! the way ssh checks its keys. A directory or file that another user owns,
//! or that the group or others can read or write, is refused with the
//! command that fixes it: it holds the signing keys and every grant.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use protonpass_agent::Error;

fn refuse(path: &Path, why: &str, fix: &str) -> Error {
    Error::Storage(format!("{} {why}: run `{fix}`", path.display()))
}

/// Refuse `path` unless the current user owns it and nobody else can read or
/// write it. A path that does not exist is fine (it is created owner-only).
pub fn check_private(path: &Path) -> Result<(), Error> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::Storage(format!("{}: {e}", path.display()))),
    };
    if meta.file_type().is_symlink() {
        return Err(refuse(
            path,
            "is a symbolic link",
            &format!(
                "mv {} elsewhere and let the broker create it",
                path.display()
            ),
        ));
    }
    let uid = rustix::process::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(refuse(
            path,
            &format!("belongs to user {} (this is user {uid})", meta.uid()),
            &format!("chown -R {uid} {}", path.display()),
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        let want = if meta.is_dir() { "700" } else { "600" };
        return Err(refuse(
            path,
            &format!("is readable or writable by others (mode {mode:o})"),
            &format!("chmod {want} {}", path.display()),
        ));
    }
    Ok(())
}

/// Check the data directory, its `keys/` folder and files, the vault key and the database
/// files. `create` makes a missing directory (owner-only).
pub fn check_data_dir(data: &Path, create: bool) -> Result<(), Error> {
    if create {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data)
            .map_err(|e| Error::Storage(format!("cannot create {}: {e}", data.display())))?;
    }
    check_private(data)?;
    for name in [
        "broker.db",
        "broker.db-wal",
        "broker.db-shm",
        "keys",
        "vault.key",
        "device.key",
    ] {
        check_private(&data.join(name))?;
    }
    if let Ok(entries) = std::fs::read_dir(data.join("keys")) {
        for e in entries.flatten() {
            check_private(&e.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn open_modes_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d");
        check_data_dir(&data, true).unwrap();
        let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = check_data_dir(&data, false).unwrap_err().to_string();
        assert!(e.contains(&format!("chmod 700 {}", data.display())), "{e}");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        let db = data.join("broker.db");
        std::fs::write(&db, b"").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_data_dir(&data, false).unwrap_err().to_string();
        assert!(e.contains(&format!("chmod 600 {}", db.display())), "{e}");
    }
}

/// The lock one `serve` holds on its data directory for as long as it runs:
/// `serve.lock`, held with an OS lock (released by the kernel when the
/// process ends, however it ends) and holding the server's pid and address.
#[derive(Debug)]
pub struct ServeLock {
    file: std::fs::File,
}

/// Take the data directory's serve lock, or say which process holds it.
pub fn lock_serve(data: &Path) -> Result<ServeLock, Error> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = data.join("serve.lock");
    // Not truncated on open: the holder's pid and address must stay readable.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::Server(format!("cannot open {}: {e}", path.display())))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(ServeLock { file }),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
            let mut held = String::new();
            let _ = file.read_to_string(&mut held);
            let v: serde_json::Value = serde_json::from_str(&held).unwrap_or_default();
            let who = match (v["pid"].as_u64(), v["addr"].as_str()) {
                (Some(pid), Some(addr)) => format!("process {pid}, listening on {addr}"),
                (Some(pid), None) => format!("process {pid}, still starting"),
                _ => "another process".to_owned(),
            };
            Err(Error::InvalidRequest(format!(
                "another broker already serves {} ({who}); stop it first, or pass another --data",
                data.display()
            )))
        }
        Err(e) => Err(Error::Server(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

impl ServeLock {
    /// Record who holds the lock: this process and, once bound, its address.
    pub fn record(&mut self, addr: Option<&str>) -> Result<(), Error> {
        use std::io::{Seek as _, Write as _};
        let body = serde_json::json!({"pid": std::process::id(), "addr": addr}).to_string();
        let f = &mut self.file;
        f.set_len(0)
            .and_then(|()| f.rewind())
            .and_then(|()| f.write_all(body.as_bytes()))
            .and_then(|()| f.flush())
            .map_err(|e| Error::Server(format!("cannot write the serve lock: {e}")))
    }
}

/// Replace `data/name` with `body`, atomically (a temporary file renamed over
/// it) and owner-only (0600), synced before the rename.
fn write_private(data: &Path, name: &str, body: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = data.join(format!("{name}.tmp"));
    let dest = data.join(name);
    // A leftover temporary file (or a link planted in its place) is removed,
    // and the new one must be created here: its mode is then 0600 for sure.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &dest)?;
    Ok(dest)
}

/// Remember the issuer `serve` runs under (`issuer` in the data directory), so
/// that links the other commands print point where the broker answers.
pub fn write_issuer(data: &Path, issuer: &str) -> Result<(), Error> {
    write_private(data, "issuer", issuer.as_bytes())
        .map(drop)
        .map_err(|e| {
            Error::Server(format!(
                "cannot record the issuer in {}: {e}",
                data.display()
            ))
        })
}

/// The file that holds the first-run setup link when standard output is not
/// a terminal.
pub const SETUP_LINK_FILE: &str = "setup-link";

/// Write the first-run setup link to an owner-only file in the data directory
/// (never to the log stream); returns its path.
pub fn write_setup_link(data: &Path, link: &str) -> Result<PathBuf, Error> {
    write_private(data, SETUP_LINK_FILE, format!("{link}\n").as_bytes()).map_err(|e| {
        Error::Server(format!(
            "cannot write the setup link in {}: {e}",
            data.display()
        ))
    })
}

/// Forget the setup link file once it is spent (a password was set).
pub fn remove_setup_link(data: &Path) {
    let _ = std::fs::remove_file(data.join(SETUP_LINK_FILE));
}

/// The issuer the last `serve` on this data directory ran under, if any.
pub fn read_issuer(data: &Path) -> Option<String> {
    let s = std::fs::read_to_string(data.join("issuer")).ok()?;
    let s = s.trim();
    crate::config::check_http_url(s).ok()?;
    Some(s.to_owned())
}
