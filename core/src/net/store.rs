//! Where an agent keeps its grants: its private key and refresh token per
//! (broker, profile, agent name).
//!
//! The file store keeps one JSON file per profile under `PROTONPASS_HOME`
//! (default: the user's config directory + `protonpass`), mode 0600, replaced
//! atomically (write, fsync, rename). Every use of a refresh token happens under
//! an exclusive lock on the profile (`File::lock`), re-reading the file first,
//! so concurrent processes sharing a profile never spend each other's rotated
//! refresh tokens or lose an update. The memory store is for ephemeral agents.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::AgentKey;

/// One stored grant.
#[derive(Clone)]
pub struct StoredGrant {
    /// The agent's key the grant is bound to.
    pub key: AgentKey,
    /// The current (rotating) refresh token.
    pub refresh_token: Zeroizing<String>,
    /// The scopes of the grant, space-separated.
    pub scope: String,
    /// When the grant ends (seconds since the epoch), if the broker said.
    pub expires_at: Option<i64>,
}

impl fmt::Debug for StoredGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredGrant")
            .field("key", &self.key)
            .field("refresh_token", &"<redacted>")
            .field("scope", &self.scope)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Serialize, Deserialize, Default)]
struct ProfileFile {
    version: u32,
    grants: HashMap<String, GrantRecord>,
}

#[derive(Serialize, Deserialize)]
struct GrantRecord {
    key: String,
    refresh_token: String,
    scope: String,
    #[serde(default)]
    expires_at: Option<i64>,
}

impl Drop for GrantRecord {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.key.zeroize();
        self.refresh_token.zeroize();
    }
}

/// Which store to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// Files under this directory.
    File(PathBuf),
    /// Process memory only.
    Memory,
}

impl StoreKind {
    /// The file store at `PROTONPASS_HOME`, or the user's config directory.
    pub fn default_file() -> Result<Self> {
        if let Some(h) = std::env::var_os("PROTONPASS_HOME") {
            return Ok(StoreKind::File(PathBuf::from(h)));
        }
        dirs::config_dir()
            .map(|d| StoreKind::File(d.join("protonpass")))
            .ok_or_else(|| Error::Storage("no config directory: set PROTONPASS_HOME".into()))
    }
}

/// A grant store.
#[derive(Debug, Clone)]
pub struct GrantStore {
    kind: StoreKind,
}

/// Holds the profile lock; released on drop.
#[derive(Debug)]
pub struct ProfileLock(Option<File>);

impl Drop for ProfileLock {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            let _ = f.unlock();
        }
    }
}

fn memory() -> &'static Mutex<HashMap<String, StoredGrant>> {
    static MEM: OnceLock<Mutex<HashMap<String, StoredGrant>>> = OnceLock::new();
    MEM.get_or_init(|| Mutex::new(HashMap::new()))
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("{what} {}: {e}", path.display()))
}

fn check_profile(profile: &str) -> Result<()> {
    let ok = !profile.is_empty()
        && profile.len() <= 64
        && profile
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !profile.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "profile {profile:?}: use letters, digits, '.', '_' or '-' (at most 64)"
        )))
    }
}

fn entry_key(broker: &str, agent: &str) -> String {
    format!("{}|{agent}", broker.trim_end_matches('/'))
}

impl GrantStore {
    /// A store of this kind.
    pub fn new(kind: StoreKind) -> Self {
        GrantStore { kind }
    }

    /// The kind.
    pub fn kind(&self) -> &StoreKind {
        &self.kind
    }

    fn paths(dir: &Path, profile: &str) -> (PathBuf, PathBuf) {
        (
            dir.join(format!("{profile}.json")),
            dir.join(format!("{profile}.lock")),
        )
    }

    fn ensure_dir(dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        }
        Ok(())
    }

    /// Take the profile's exclusive lock (blocking; call from a blocking task).
    pub fn lock(&self, profile: &str) -> Result<ProfileLock> {
        check_profile(profile)?;
        match &self.kind {
            StoreKind::Memory => Ok(ProfileLock(None)),
            StoreKind::File(dir) => {
                Self::ensure_dir(dir)?;
                let (_, lock_path) = Self::paths(dir, profile);
                let f = open_private(&lock_path, false)?;
                f.lock().map_err(|e| io("cannot lock", &lock_path, e))?;
                Ok(ProfileLock(Some(f)))
            }
        }
    }

    /// Load the grant for (broker, profile, agent).
    pub fn load(&self, broker: &str, profile: &str, agent: &str) -> Result<Option<StoredGrant>> {
        check_profile(profile)?;
        let key = entry_key(broker, agent);
        match &self.kind {
            StoreKind::Memory => Ok(memory()
                .lock()
                .map_err(|_| Error::Storage("memory store poisoned".into()))?
                .get(&format!("{profile}|{key}"))
                .cloned()),
            StoreKind::File(dir) => {
                let file = read_file(&Self::paths(dir, profile).0)?;
                let Some(rec) = file.grants.get(&key) else {
                    return Ok(None);
                };
                Ok(Some(StoredGrant {
                    key: AgentKey::from_private_jwk(&rec.key)?,
                    refresh_token: Zeroizing::new(rec.refresh_token.clone()),
                    scope: rec.scope.clone(),
                    expires_at: rec.expires_at,
                }))
            }
        }
    }

    /// Save (or replace) the grant for (broker, profile, agent).
    pub fn save(&self, broker: &str, profile: &str, agent: &str, g: &StoredGrant) -> Result<()> {
        check_profile(profile)?;
        let key = entry_key(broker, agent);
        match &self.kind {
            StoreKind::Memory => {
                memory()
                    .lock()
                    .map_err(|_| Error::Storage("memory store poisoned".into()))?
                    .insert(format!("{profile}|{key}"), g.clone());
                Ok(())
            }
            StoreKind::File(dir) => {
                Self::ensure_dir(dir)?;
                let path = Self::paths(dir, profile).0;
                let mut file = read_file(&path)?;
                file.version = 1;
                file.grants.insert(
                    key,
                    GrantRecord {
                        key: g.key.to_private_jwk().to_string(),
                        refresh_token: g.refresh_token.to_string(),
                        scope: g.scope.clone(),
                        expires_at: g.expires_at,
                    },
                );
                write_file(&path, &file)
            }
        }
    }

    /// Forget the grant for (broker, profile, agent).
    pub fn remove(&self, broker: &str, profile: &str, agent: &str) -> Result<()> {
        check_profile(profile)?;
        let key = entry_key(broker, agent);
        match &self.kind {
            StoreKind::Memory => {
                memory()
                    .lock()
                    .map_err(|_| Error::Storage("memory store poisoned".into()))?
                    .remove(&format!("{profile}|{key}"));
                Ok(())
            }
            StoreKind::File(dir) => {
                let path = Self::paths(dir, profile).0;
                let mut file = read_file(&path)?;
                if file.grants.remove(&key).is_some() {
                    write_file(&path, &file)?;
                }
                Ok(())
            }
        }
    }
}

fn open_private(path: &Path, truncate: bool) -> Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).write(true).truncate(truncate);
    if !truncate {
        o.read(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map_err(|e| io("cannot open", path, e))
}

fn read_file(path: &Path) -> Result<ProfileFile> {
    match fs::read(path) {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            serde_json::from_slice(&bytes)
                .map_err(|e| Error::Storage(format!("{} is corrupt: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ProfileFile::default()),
        Err(e) => Err(io("cannot read", path, e)),
    }
}

fn write_file(path: &Path, file: &ProfileFile) -> Result<()> {
    let bytes =
        Zeroizing::new(serde_json::to_vec_pretty(file).map_err(|e| Error::Storage(e.to_string()))?);
    let tmp = path.with_extension("json.tmp");
    let mut f = open_private(&tmp, true)?;
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
