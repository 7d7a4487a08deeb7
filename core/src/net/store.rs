//! Where an agent keeps its grants: its private key and refresh token per
//! (broker, profile, agent name).
//!
//! The file store keeps one JSON file per profile under `PROTONPASS_HOME`
//! (default: the user's config directory + `protonpass`), mode 0600, replaced
//! atomically (write, fsync, rename). Every use of a refresh token happens under
//! an exclusive lock on the profile (`File::lock`), re-reading the file first,
//! so concurrent processes sharing a profile never spend each other's rotated
//! refresh tokens or lose an update. The memory store is for ephemeral agents;
//! its profile lock is process-wide, so sessions of one process sharing a
//! memory profile are serialised the same way.
//!
//! With a passphrase (`PROTONPASS_PASSPHRASE`), the private key and the refresh
//! token are sealed with ChaCha20-Poly1305 under a key derived by Argon2id
//! (19 MiB, 2 passes: the OWASP minimum) from the passphrase and a per-file
//! salt; the derived key is cached for the process, so rotation costs no KDF.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::AgentKey;

mod files;
mod seal;

use files::{io, open_private, read_file, write_file};
use seal::{SEALED, SEALED_V1, seal, seal_all, sealed_ad, sealing_key, unseal};

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
    /// base64url salt of the passphrase KDF, when entries are sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kdf_salt: Option<String>,
    grants: HashMap<String, GrantRecord>,
}

#[derive(Serialize, Deserialize, Clone)]
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
#[derive(Clone)]
pub struct GrantStore {
    kind: StoreKind,
    passphrase: Option<Zeroizing<String>>,
}

impl fmt::Debug for GrantStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantStore")
            .field("kind", &self.kind)
            .field("sealed", &self.passphrase.is_some())
            .finish()
    }
}

/// Holds the profile lock; released on drop.
#[derive(Debug)]
pub struct ProfileLock(Held);

#[derive(Debug)]
enum Held {
    /// The file store: an exclusive lock on the profile's lock file.
    File(File),
    /// The memory store: the profile's entry in [`memory_locks`].
    Memory(String),
}

impl Drop for ProfileLock {
    fn drop(&mut self) {
        match &self.0 {
            Held::File(f) => {
                let _ = f.unlock();
            }
            Held::Memory(profile) => {
                let (held, released) = memory_locks();
                if let Ok(mut h) = held.lock() {
                    h.remove(profile);
                }
                released.notify_all();
            }
        }
    }
}

/// The memory store's profile locks: sessions of one process sharing a
/// memory profile must not spend each other's rotated refresh tokens either.
fn memory_locks() -> &'static (Mutex<HashSet<String>>, Condvar) {
    static LOCKS: OnceLock<(Mutex<HashSet<String>>, Condvar)> = OnceLock::new();
    LOCKS.get_or_init(|| (Mutex::new(HashSet::new()), Condvar::new()))
}

fn lock_memory(profile: &str) -> Result<ProfileLock> {
    let poisoned = |_| Error::Storage("memory store lock poisoned".into());
    let (held, released) = memory_locks();
    let mut h = held.lock().map_err(poisoned)?;
    while h.contains(profile) {
        h = released.wait(h).map_err(poisoned)?;
    }
    h.insert(profile.to_owned());
    Ok(ProfileLock(Held::Memory(profile.to_owned())))
}

/// The memory store's grants, locked.
fn memory() -> Result<MutexGuard<'static, HashMap<String, StoredGrant>>> {
    static MEM: OnceLock<Mutex<HashMap<String, StoredGrant>>> = OnceLock::new();
    MEM.get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .map_err(|_| Error::Storage("memory store poisoned".into()))
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
    /// A store of this kind; file entries are sealed when a passphrase is given.
    pub fn new(kind: StoreKind) -> Self {
        GrantStore {
            kind,
            passphrase: None,
        }
    }

    /// Seal the private key and refresh token with this passphrase.
    pub fn with_passphrase(mut self, passphrase: Option<Zeroizing<String>>) -> Self {
        self.passphrase = passphrase.filter(|p| !p.is_empty());
        self
    }

    fn file_key(
        &self,
        file: &mut ProfileFile,
        create: bool,
    ) -> Result<Option<Zeroizing<[u8; 32]>>> {
        let Some(p) = &self.passphrase else {
            return Ok(None);
        };
        let salt = match &file.kdf_salt {
            Some(s) => crate::b64::decode(s)
                .ok_or_else(|| Error::Storage("corrupt KDF salt in the grant file".into()))?,
            None if create => {
                let mut s = [0u8; 16];
                getrandom::fill(&mut s).map_err(|e| Error::Storage(format!("randomness: {e}")))?;
                file.kdf_salt = Some(crate::b64::encode(s));
                s.to_vec()
            }
            None => return Ok(None),
        };
        sealing_key(p, &salt).map(Some)
    }

    /// Open the value of `field` of `entry`. Once a file is sealed (it has a
    /// KDF salt), a value that is not sealed is refused: it was not written
    /// by this store.
    fn open(
        &self,
        file: &mut ProfileFile,
        entry: &str,
        field: &str,
        text: &str,
    ) -> Result<Zeroizing<String>> {
        let sealed = text.starts_with(SEALED) || text.starts_with(SEALED_V1);
        if !sealed {
            if file.kdf_salt.is_some() {
                return Err(Error::Storage(format!(
                    "the grant store is sealed but its {field} for this agent is not: refused (remove the entry and approve the agent again)"
                )));
            }
            return Ok(Zeroizing::new(text.to_owned()));
        }
        match self.file_key(file, false)? {
            Some(k) => unseal(&k, text, &sealed_ad(entry, field)),
            None => Err(Error::Storage(
                "the stored grant is sealed: set PROTONPASS_PASSPHRASE (or pass the passphrase)"
                    .into(),
            )),
        }
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

    /// Create the store's directory (mode 0700), or check an existing one:
    /// it must belong to this user and be writable by no one else, or another
    /// user could swap the grant file or plant links in it (as ssh refuses
    /// keys in such directories). An existing directory is never chmod-ed:
    /// `PROTONPASS_HOME=/tmp` must fail, not change /tmp.
    fn ensure_dir(dir: &Path) -> Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::{DirBuilderExt, MetadataExt};
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io("cannot create", dir, e))?;
            let m = fs::metadata(dir).map_err(|e| io("cannot inspect", dir, e))?;
            let me = rustix::process::geteuid().as_raw();
            if m.uid() != me {
                return Err(Error::Storage(format!(
                    "the grant store {} belongs to another user (uid {}); use a directory of your own",
                    dir.display(),
                    m.uid()
                )));
            }
            if m.mode() & 0o022 != 0 {
                return Err(Error::Storage(format!(
                    "the grant store {} is writable by other users (mode {:o}); use a private directory (chmod 700)",
                    dir.display(),
                    m.mode() & 0o7777
                )));
            }
        }
        #[cfg(not(unix))]
        fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
        Ok(())
    }

    /// Take the profile's exclusive lock (blocking; call from a blocking task).
    pub fn lock(&self, profile: &str) -> Result<ProfileLock> {
        check_profile(profile)?;
        match &self.kind {
            StoreKind::Memory => lock_memory(profile),
            StoreKind::File(dir) => {
                Self::ensure_dir(dir)?;
                let (_, lock_path) = Self::paths(dir, profile);
                let f = open_private(&lock_path, false)?;
                f.lock().map_err(|e| io("cannot lock", &lock_path, e))?;
                Ok(ProfileLock(Held::File(f)))
            }
        }
    }

    /// Load the grant for (broker, profile, agent).
    pub fn load(&self, broker: &str, profile: &str, agent: &str) -> Result<Option<StoredGrant>> {
        check_profile(profile)?;
        let key = entry_key(broker, agent);
        match &self.kind {
            StoreKind::Memory => Ok(memory()?.get(&format!("{profile}|{key}")).cloned()),
            StoreKind::File(dir) => {
                let mut file = read_file(&Self::paths(dir, profile).0)?;
                let Some((k, rt, scope, exp)) = file.grants.get(&key).map(|r| {
                    (
                        r.key.clone(),
                        r.refresh_token.clone(),
                        r.scope.clone(),
                        r.expires_at,
                    )
                }) else {
                    return Ok(None);
                };
                let (k, rt) = (Zeroizing::new(k), Zeroizing::new(rt));
                let jwk = self.open(&mut file, &key, "key", &k)?;
                let refresh_token = self.open(&mut file, &key, "refresh_token", &rt)?;
                Ok(Some(StoredGrant {
                    key: AgentKey::from_private_jwk(&jwk)?,
                    refresh_token,
                    scope,
                    expires_at: exp,
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
                memory()?.insert(format!("{profile}|{key}"), g.clone());
                Ok(())
            }
            StoreKind::File(dir) => {
                Self::ensure_dir(dir)?;
                let path = Self::paths(dir, profile).0;
                let mut file = read_file(&path)?;
                file.version = 1;
                if file.kdf_salt.is_some() && self.passphrase.is_none() {
                    // A sealed store is never written in plaintext.
                    return Err(Error::Storage(
                        "the grant store is sealed: set PROTONPASS_PASSPHRASE (or pass the passphrase) to save a grant in it"
                            .into(),
                    ));
                }
                let sealing_now = file.kdf_salt.is_none();
                let jwk = g.key.to_private_jwk();
                let (jwk, rt) = match self.file_key(&mut file, true)? {
                    Some(k) => {
                        if sealing_now {
                            // The first sealed save seals the whole file.
                            seal_all(&k, &mut file)?;
                        }
                        (
                            seal(&k, &jwk, &sealed_ad(&key, "key"))?,
                            seal(&k, &g.refresh_token, &sealed_ad(&key, "refresh_token"))?,
                        )
                    }
                    None => (jwk.to_string(), g.refresh_token.to_string()),
                };
                file.grants.insert(
                    key,
                    GrantRecord {
                        key: jwk,
                        refresh_token: rt,
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
                memory()?.remove(&format!("{profile}|{key}"));
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

#[cfg(test)]
mod tests;
