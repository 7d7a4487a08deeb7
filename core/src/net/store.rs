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
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock};

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
    /// base64url salt of the passphrase KDF, when entries are sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kdf_salt: Option<String>,
    grants: HashMap<String, GrantRecord>,
}

/// Sealed values bound to their entry and field (associated data).
const SEALED: &str = "sealed:v2:";
/// Sealed values of the first format (no associated data): read, never written.
const SEALED_V1: &str = "sealed:v1:";

/// The sealing key for (passphrase, salt), derived once per process.
fn sealing_key(passphrase: &str, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    type Cache = Mutex<HashMap<[u8; 32], Zeroizing<[u8; 32]>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let id: [u8; 32] = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(salt);
        h.update(passphrase.as_bytes());
        h.finalize().into()
    };
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(k) = cache.lock().ok().and_then(|c| c.get(&id).cloned()) {
        return Ok(k);
    }
    let params = argon2::Params::new(19 * 1024, 2, 1, Some(32))
        .map_err(|e| Error::Storage(format!("KDF parameters: {e}")))?;
    let kdf = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    kdf.hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
        .map_err(|e| Error::Storage(format!("KDF failed: {e}")))?;
    if let Ok(mut c) = cache.lock() {
        c.insert(id, key.clone());
    }
    Ok(key)
}

/// The associated data of a sealed value: its entry and its field, so that a
/// sealed value moved to another entry or field does not open.
fn sealed_ad(entry: &str, field: &str) -> Vec<u8> {
    format!("protonpass-grant-store:v2\0{entry}\0{field}").into_bytes()
}

fn seal(key: &[u8; 32], plain: &str, ad: &[u8]) -> Result<String> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let cipher = chacha20poly1305::ChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|e| Error::Storage(format!("randomness: {e}")))?;
    let ct = cipher
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: plain.as_bytes(),
                aad: ad,
            },
        )
        .map_err(|_| Error::Storage("sealing failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(format!("{SEALED}{}", crate::b64::encode(out)))
}

fn unseal(key: &[u8; 32], text: &str, ad: &[u8]) -> Result<Zeroizing<String>> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let bad = || {
        Error::Storage("the stored grant cannot be opened: wrong passphrase or corrupt file".into())
    };
    let (raw, ad) = match (text.strip_prefix(SEALED), text.strip_prefix(SEALED_V1)) {
        (Some(r), _) => (r, ad),
        // The first format had no associated data; the next save rewrites it.
        (None, Some(r)) => (r, &[][..]),
        (None, None) => return Err(bad()),
    };
    let raw = crate::b64::decode(raw).ok_or_else(bad)?;
    if raw.len() < 12 {
        return Err(bad());
    }
    let (nonce, ct) = raw.split_at(12);
    let cipher = chacha20poly1305::ChaCha20Poly1305::new(key.into());
    let plain = cipher
        .decrypt(nonce.into(), Payload { msg: ct, aad: ad })
        .map_err(|_| bad())?;
    String::from_utf8(plain)
        .map(Zeroizing::new)
        .map_err(|_| bad())
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

fn memory() -> &'static Mutex<HashMap<String, StoredGrant>> {
    static MEM: OnceLock<Mutex<HashMap<String, StoredGrant>>> = OnceLock::new();
    MEM.get_or_init(|| Mutex::new(HashMap::new()))
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        return Error::Storage(format!(
            "{what} {}: permission denied; the grant store must belong to the user running the agent \
             (fix its owner and mode, or set PROTONPASS_HOME to a directory of your own)",
            path.display()
        ));
    }
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
            StoreKind::Memory => Ok(memory()
                .lock()
                .map_err(|_| Error::Storage("memory store poisoned".into()))?
                .get(&format!("{profile}|{key}"))
                .cloned()),
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

/// Seal every plaintext value of `file` (a store that becomes sealed).
fn seal_all(k: &[u8; 32], file: &mut ProfileFile) -> Result<()> {
    for (entry, r) in file.grants.iter_mut() {
        if !r.key.starts_with(SEALED) && !r.key.starts_with(SEALED_V1) {
            r.key = seal(k, &r.key, &sealed_ad(entry, "key"))?;
        }
        if !r.refresh_token.starts_with(SEALED) && !r.refresh_token.starts_with(SEALED_V1) {
            r.refresh_token = seal(k, &r.refresh_token, &sealed_ad(entry, "refresh_token"))?;
        }
    }
    Ok(())
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

fn read_file(path: &Path) -> Result<ProfileFile> {
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

fn write_file(path: &Path, file: &ProfileFile) -> Result<()> {
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

#[cfg(test)]
mod tests {

    #[test]
    fn a_permission_problem_says_so_and_how_to_fix_it() {
        let e = io(
            "cannot write",
            Path::new("/srv/agent/grants"),
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        let Error::Storage(m) = &e else {
            panic!("{e:?}")
        };
        assert!(m.contains("/srv/agent/grants: permission denied"), "{m}");
        assert!(m.contains("PROTONPASS_HOME"), "{m}");
    }

    use super::*;
    use crate::clock::OsRandom;

    fn grant() -> StoredGrant {
        StoredGrant {
            key: AgentKey::generate(&OsRandom).unwrap(),
            refresh_token: Zeroizing::new("rt-secret-value".into()),
            scope: "travel:search".into(),
            expires_at: Some(10),
        }
    }

    #[test]
    fn file_store_round_trip_is_private() {
        let dir = tempfile_dir();
        let s = GrantStore::new(StoreKind::File(dir.clone()));
        let g = grant();
        s.save("http://b/", "default", "bot", &g).unwrap();
        let back = s.load("http://b", "default", "bot").unwrap().unwrap();
        assert_eq!(back.key.thumbprint(), g.key.thumbprint());
        assert_eq!(back.refresh_token.as_str(), "rt-secret-value");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join("default.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(s.load("http://b", "default", "other").unwrap().is_none());
        s.remove("http://b", "default", "bot").unwrap();
        assert!(s.load("http://b", "default", "bot").unwrap().is_none());
        assert!(!format!("{back:?}").contains("rt-secret"));
    }

    #[test]
    fn sealed_entries_need_the_passphrase() {
        let dir = tempfile_dir();
        let pass = |p: &str| Some(Zeroizing::new(p.to_owned()));
        let s =
            GrantStore::new(StoreKind::File(dir.clone())).with_passphrase(pass("correct horse"));
        let g = grant();
        s.save("http://b", "p1", "bot", &g).unwrap();
        let text = fs::read_to_string(dir.join("p1.json")).unwrap();
        assert!(!text.contains("rt-secret-value") && text.contains(SEALED));
        let back = s.load("http://b", "p1", "bot").unwrap().unwrap();
        assert_eq!(back.refresh_token.as_str(), "rt-secret-value");
        let wrong = GrantStore::new(StoreKind::File(dir.clone())).with_passphrase(pass("wrong"));
        assert_eq!(
            wrong.load("http://b", "p1", "bot").unwrap_err().code(),
            "storage_error"
        );
        let none = GrantStore::new(StoreKind::File(dir));
        assert_eq!(
            none.load("http://b", "p1", "bot").unwrap_err().code(),
            "storage_error"
        );
    }

    #[test]
    fn a_sealed_store_is_never_written_in_plaintext_and_its_values_stay_in_place() {
        let dir = tempfile_dir();
        let pass = |p: &str| Some(Zeroizing::new(p.to_owned()));
        let sealed =
            GrantStore::new(StoreKind::File(dir.clone())).with_passphrase(pass("correct horse"));
        let plain = GrantStore::new(StoreKind::File(dir.clone()));
        // A plaintext entry written first is sealed along with the first sealed one.
        plain.save("http://b", "p", "old", &grant()).unwrap();
        sealed.save("http://b", "p", "bot", &grant()).unwrap();
        let text = fs::read_to_string(dir.join("p.json")).unwrap();
        assert!(!text.contains("rt-secret-value"), "{text}");
        assert!(sealed.load("http://b", "p", "old").unwrap().is_some());
        // Without the passphrase, nothing is written into a sealed store.
        let e = plain.save("http://b", "p", "new", &grant()).unwrap_err();
        assert_eq!(e.code(), "storage_error");
        assert_eq!(fs::read_to_string(dir.join("p.json")).unwrap(), text);
        // A plaintext value planted in a sealed store is refused.
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let rt = v["grants"][entry_key("http://b", "bot")]["refresh_token"].clone();
        v["grants"][entry_key("http://b", "bot")]["refresh_token"] = "rt-planted".into();
        fs::write(dir.join("p.json"), v.to_string()).unwrap();
        let e = sealed.load("http://b", "p", "bot").unwrap_err();
        assert!(e.to_string().contains("not"), "{e}");
        // A sealed value moved to another field or entry does not open.
        let key = v["grants"][entry_key("http://b", "bot")]["key"].clone();
        v["grants"][entry_key("http://b", "bot")]["refresh_token"] = key;
        fs::write(dir.join("p.json"), v.to_string()).unwrap();
        assert!(sealed.load("http://b", "p", "bot").is_err());
        v["grants"][entry_key("http://b", "bot")]["refresh_token"] = rt.clone();
        v["grants"][entry_key("http://b", "old")]["refresh_token"] = rt;
        fs::write(dir.join("p.json"), v.to_string()).unwrap();
        assert!(sealed.load("http://b", "p", "bot").is_ok());
        assert!(sealed.load("http://b", "p", "old").is_err());
    }

    #[test]
    fn a_linked_or_readable_grant_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile_dir();
        let s = GrantStore::new(StoreKind::File(dir.clone()));
        s.save("http://b", "p", "bot", &grant()).unwrap();
        // A symbolic link in place of the file (say, to a file the attacker reads).
        let elsewhere = tempfile_dir().join("planted.json");
        fs::rename(dir.join("p.json"), &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join("p.json")).unwrap();
        assert_eq!(
            s.load("http://b", "p", "bot").unwrap_err().code(),
            "storage_error"
        );
        assert_eq!(
            s.save("http://b", "p", "bot", &grant()).unwrap_err().code(),
            "storage_error"
        );
        fs::remove_file(dir.join("p.json")).unwrap();
        // A file others can read.
        s.save("http://b", "p", "bot", &grant()).unwrap();
        fs::set_permissions(dir.join("p.json"), fs::Permissions::from_mode(0o644)).unwrap();
        let e = s.load("http://b", "p", "bot").unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[test]
    fn profile_names_cannot_escape_the_directory() {
        let s = GrantStore::new(StoreKind::File(tempfile_dir()));
        for bad in ["../x", "a/b", "", ".hidden", &"x".repeat(65)] {
            assert_eq!(
                s.load("b", bad, "a").unwrap_err().code(),
                "invalid_request",
                "{bad}"
            );
        }
    }

    #[test]
    #[cfg(unix)]
    fn a_directory_others_can_write_is_refused_and_left_alone() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile_dir();
        for mode in [0o777, 0o1777, 0o770, 0o720] {
            fs::set_permissions(&d, fs::Permissions::from_mode(mode)).unwrap();
            let s = GrantStore::new(StoreKind::File(d.clone()));
            let e = s.save("b", "default", "a", &grant()).unwrap_err();
            assert_eq!(e.code(), "storage_error", "{mode:o}");
            assert!(e.to_string().contains("writable by other users"), "{e}");
            assert!(s.lock("default").is_err());
            // Nothing was written, and the directory's mode is untouched.
            assert_eq!(fs::read_dir(&d).unwrap().count(), 0);
            let now = fs::metadata(&d).unwrap().permissions().mode() & 0o7777;
            assert_eq!(now, mode);
        }
        // A private one (and one only its owner can write) works.
        for mode in [0o700, 0o755] {
            fs::set_permissions(&d, fs::Permissions::from_mode(mode)).unwrap();
            let s = GrantStore::new(StoreKind::File(d.clone()));
            s.save("b", "default", "a", &grant()).unwrap();
            assert!(s.load("b", "default", "a").unwrap().is_some());
        }
        // A new directory is created private.
        let nested = d.join("x").join("y");
        let s = GrantStore::new(StoreKind::File(nested.clone()));
        s.save("b", "default", "a", &grant()).unwrap();
        let mode = fs::metadata(&nested).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_memory_store_lock_excludes_other_holders_of_the_profile() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let s = GrantStore::new(StoreKind::Memory);
        let first = s.lock("mem-lock-test").unwrap();
        // Another profile is not held up.
        drop(s.lock("mem-lock-other").unwrap());
        let got = Arc::new(AtomicBool::new(false));
        let (s2, got2) = (s.clone(), got.clone());
        let t = std::thread::spawn(move || {
            let _second = s2.lock("mem-lock-test").unwrap();
            got2.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            !got.load(Ordering::SeqCst),
            "a second holder took the profile lock while the first held it"
        );
        drop(first);
        t.join().unwrap();
        assert!(got.load(Ordering::SeqCst));
    }

    fn tempfile_dir() -> PathBuf {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).unwrap();
        let d = std::env::temp_dir().join(format!("pp-store-{}", crate::b64::encode(b)));
        fs::create_dir_all(&d).unwrap();
        d
    }
}
