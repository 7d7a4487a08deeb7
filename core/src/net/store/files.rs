//! The file store's files: opened private (mode 0600, never through a link,
//! owner and mode checked on the descriptor) and replaced atomically.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use zeroize::Zeroizing;

use super::ProfileFile;
use crate::error::{Error, Result};

pub(super) fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        return Error::Storage(format!(
            "{what} {}: permission denied; the grant store must belong to the user running the agent \
             (fix its owner and mode, or set PROTONPASS_HOME to a directory of your own)",
            path.display()
        ));
    }
    Error::Storage(format!("{what} {}: {e}", path.display()))
}

/// Refuse an opened grant file (checked on the descriptor, so nothing can be
/// swapped in between) that another user owns or others can read or write.
#[cfg(unix)]
fn check_opened(f: &File, path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = f.metadata().map_err(|e| io("cannot inspect", path, e))?;
    let uid = rustix::process::geteuid().as_raw();
    if m.uid() != uid {
        return Err(Error::Storage(format!(
            "{} belongs to another user (uid {}): refused",
            path.display(),
            m.uid()
        )));
    }
    if m.mode() & 0o077 != 0 {
        return Err(Error::Storage(format!(
            "{} is readable or writable by others (mode {:o}): refused; run `chmod 600 {}`",
            path.display(),
            m.mode() & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_opened(_: &File, _: &Path) -> Result<()> {
    Ok(())
}

pub(super) fn open_private(path: &Path, truncate: bool) -> Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).write(true).truncate(truncate);
    if !truncate {
        o.read(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
        // Never through a link planted in the store's directory.
        o.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    let f = o.open(path).map_err(|e| io("cannot open", path, e))?;
    check_opened(&f, path)?;
    Ok(f)
}

fn open_new_private(path: &Path) -> Result<File> {
    let mut o = OpenOptions::new();
    o.create_new(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map_err(|e| io("cannot create", path, e))
}

pub(super) fn read_file(path: &Path) -> Result<ProfileFile> {
    let mut o = OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Never through a link planted in the store's directory: opening one
        // fails (ELOOP), and the owner and mode are checked on the descriptor.
        o.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    let mut f = match o.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ProfileFile::default()),
        Err(e) => return Err(io("cannot open (a symbolic link is refused)", path, e)),
    };
    check_opened(&f, path)?;
    let mut bytes = Zeroizing::new(Vec::new());
    std::io::Read::read_to_end(&mut f, &mut bytes).map_err(|e| io("cannot read", path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Storage(format!("{} is corrupt: {e}", path.display())))
}

pub(super) fn write_file(path: &Path, file: &ProfileFile) -> Result<()> {
    let bytes =
        Zeroizing::new(serde_json::to_vec_pretty(file).map_err(|e| Error::Storage(e.to_string()))?);
    // A fresh, unpredictable name created exclusively (O_CREAT|O_EXCL, which
    // never follows a symlink): nothing planted in the directory is written
    // through, and the file is ours with mode 0600 from the start.
    let mut suffix = [0u8; 9];
    getrandom::fill(&mut suffix).map_err(|e| Error::Storage(format!("randomness: {e}")))?;
    let tmp = path.with_extension(format!("json.{}.tmp", crate::b64::encode(suffix)));
    let mut f = open_new_private(&tmp)?;
    f.write_all(&bytes)
        .map_err(|e| io("cannot write", &tmp, e))?;
    f.sync_all().map_err(|e| io("cannot sync", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| io("cannot replace", path, e))?;
    if let Some(Ok(d)) = path.parent().map(File::open) {
        let _ = d.sync_all();
    }
    Ok(())
}
