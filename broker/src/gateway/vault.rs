//! The vault: upstream secrets encrypted at rest with ChaCha20-Poly1305 under a
//! key that is not in the database (`DATA/vault.key`, mode 0600, or the
//! environment variable `PROTONPASS_VAULT_KEY`, or `--vault-key-file`; with
//! a PostgreSQL store one of the last two is required, and it also seals the
//! signing keys kept in the database). The associated data binds
//! each ciphertext to its upstream and owner, so a ciphertext copied to
//! another row does not open. Plaintext lives in `Zeroizing` buffers and is
//! never printed.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use protonpass_agent::{Error, Random, b64};
use zeroize::Zeroizing;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "vault.key";
/// The environment variable that may hold the key (base64url, 32 bytes).
pub const KEY_ENV: &str = "PROTONPASS_VAULT_KEY";
/// Longest secret, bytes.
pub const MAX_SECRET: usize = 4096;
const VERSION: u8 = 1;

/// The vault key.
pub struct Vault {
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vault(..)")
    }
}

fn key_error(what: &str) -> Error {
    Error::Storage(format!("vault key: {what}"))
}

fn decode_key(text: &str) -> Result<Vault, Error> {
    let bytes = Zeroizing::new(b64::decode(text.trim()).ok_or_else(|| key_error("not base64url"))?);
    let key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| key_error("not 32 bytes"))?;
    Ok(Vault {
        key: Zeroizing::new(key),
    })
}

fn associated(owner: &str, name: &str) -> Vec<u8> {
    let mut ad = b"protonpass-vault-v1\0".to_vec();
    ad.extend_from_slice(owner.as_bytes());
    ad.push(0);
    ad.extend_from_slice(name.as_bytes());
    ad
}

/// The key configured for the process (`--vault-key-file`), or the
/// requirement of one (a store shared by replicas has no data directory to
/// keep it in); set once at start by [`configure`].
static CONFIGURED: std::sync::OnceLock<Configured> = std::sync::OnceLock::new();

enum Configured {
    /// The key read from `--vault-key-file`.
    Key(Zeroizing<[u8; 32]>),
    /// No key file, and the data directory must not be used: the key must
    /// come from `PROTONPASS_VAULT_KEY`.
    Required,
}

/// Set where the vault key comes from, once, before any [`Vault::load`]:
/// `PROTONPASS_VAULT_KEY`, else `key_file`, else (`shared` false) the data
/// directory's `vault.key`. With `shared` (several replicas on one
/// database), a key from the environment or a file is required, since
/// replicas have no data directory in common; this is checked here, at start.
pub fn configure(key_file: Option<&Path>, shared: bool) -> Result<(), Error> {
    let chosen = if std::env::var_os(KEY_ENV).is_some() {
        decode_key(&Zeroizing::new(
            std::env::var(KEY_ENV).map_err(|_| key_error("not UTF-8"))?,
        ))?;
        return Ok(());
    } else if let Some(path) = key_file {
        crate::files::check_private(path)?;
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| key_error(&format!("{}: {e}", path.display())))?,
        );
        Configured::Key(decode_key(&text)?.key)
    } else if shared {
        Configured::Required
    } else {
        return Ok(());
    };
    let _ = CONFIGURED.set(chosen);
    if matches!(CONFIGURED.get(), Some(Configured::Required)) {
        return Err(Error::InvalidRequest(format!(
            "a PostgreSQL store is shared by every replica, and so must be the vault key that seals \
             the signing keys: set {KEY_ENV} (base64url of 32 random bytes) or --vault-key-file FILE, \
             the same on every replica"
        )));
    }
    Ok(())
}

impl Vault {
    /// The key from `PROTONPASS_VAULT_KEY` if set, else from the configured
    /// key file (see [`configure`]), else from `DATA/vault.key`, which is
    /// created (mode 0600) when missing.
    pub fn load(data: &Path, rng: &dyn Random) -> Result<Vault, Error> {
        if let Ok(text) = std::env::var(KEY_ENV) {
            let text = Zeroizing::new(text);
            return decode_key(&text);
        }
        match CONFIGURED.get() {
            Some(Configured::Key(k)) => {
                return Ok(Vault {
                    key: Zeroizing::new(**k),
                });
            }
            Some(Configured::Required) => {
                return Err(key_error(&format!("set {KEY_ENV} or --vault-key-file")));
            }
            None => {}
        }
        let path = data.join(KEY_FILE);
        crate::files::check_private(&path)?;
        let io = |e: std::io::Error| key_error(&format!("{}: {e}", path.display()));
        match std::fs::File::open(&path) {
            Ok(mut f) => {
                let mut text = Zeroizing::new(String::new());
                f.read_to_string(&mut text).map_err(io)?;
                decode_key(&text)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new([0u8; 32]);
                rng.fill(key.as_mut())?;
                let text = Zeroizing::new(format!("{}\n", b64::encode(key.as_ref())));
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                {
                    Ok(mut f) => {
                        f.write_all(text.as_bytes()).map_err(io)?;
                        f.sync_all().map_err(io)?;
                        Ok(Vault { key })
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Vault::load(data, rng)
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A vault with this key (tests).
    #[cfg(test)]
    pub fn from_key(key: [u8; 32]) -> Vault {
        Vault {
            key: Zeroizing::new(key),
        }
    }

    /// A 32-byte key for another purpose, derived from the vault key by
    /// `label` (HMAC-SHA-256): what replicas sharing the vault key must share.
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        use hmac::{Hmac, Mac as _};
        let mut out = Zeroizing::new([0u8; 32]);
        if let Ok(mut m) = <Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(self.key.as_ref())
        {
            m.update(b"protonpass-vault-derive-v1\0");
            m.update(label.as_bytes());
            out.copy_from_slice(&m.finalize().into_bytes());
        }
        out
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(self.key.as_ref()))
    }

    /// Encrypt `secret` for upstream `name` of `owner`: version, nonce, ciphertext.
    pub fn seal(
        &self,
        owner: &str,
        name: &str,
        secret: &[u8],
        rng: &dyn Random,
    ) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; 12];
        rng.fill(&mut nonce)?;
        let ad = associated(owner, name);
        let ct = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: &ad,
                },
            )
            .map_err(|_| Error::Server("vault: encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + 12 + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypt a sealed secret; fails when the key, the owner or the name differ.
    pub fn open(
        &self,
        owner: &str,
        name: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let bad = || {
            Error::Storage(format!(
                "the secret of upstream {name} does not open with this vault key"
            ))
        };
        let (&v, rest) = sealed.split_first().ok_or_else(bad)?;
        if v != VERSION || rest.len() < 12 + 16 {
            return Err(bad());
        }
        let (nonce, ct) = rest.split_at(12);
        let ad = associated(owner, name);
        self.cipher()
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &ad })
            .map(Zeroizing::new)
            .map_err(|_| bad())
    }
}

/// Check a secret read from standard input: one line (a final newline is
/// dropped), visible ASCII and spaces only, so that it can go in a header or a
/// query without changing the request's structure.
pub fn check_secret(raw: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut s = raw;
    if let Some(x) = s.strip_suffix(b"\n") {
        s = x;
    }
    if let Some(x) = s.strip_suffix(b"\r") {
        s = x;
    }
    if s.is_empty() || s.len() > MAX_SECRET {
        return Err(Error::InvalidRequest(format!(
            "the secret must be 1 to {MAX_SECRET} bytes on standard input"
        )));
    }
    if !s.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        return Err(Error::InvalidRequest(
            "the secret must be one line of visible ASCII (no control characters)".into(),
        ));
    }
    Ok(Zeroizing::new(s.to_vec()))
}

/// Signing keys kept in a shared store are sealed like upstream secrets; the
/// associated data names the key (`kid`) under an owner no owner can have
/// (empty), so a sealed key opens as nothing else and no upstream secret
/// opens as a key.
impl crate::keys::KeySealer for Vault {
    fn seal_key(&self, kid: &str, pem: &[u8], rng: &dyn Random) -> Result<Vec<u8>, Error> {
        self.seal("", &format!("signing-key:{kid}"), pem, rng)
    }

    fn open_key(&self, kid: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.open("", &format!("signing-key:{kid}"), sealed)
            .map_err(|_| {
                Error::Storage(format!(
                    "signing key {kid} does not open with this vault key: every broker on this \
                     database needs the vault key it was first started with"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use protonpass_agent::OsRandom;

    use super::*;

    #[test]
    fn sealed_secrets_open_only_for_their_owner_and_name() {
        let v = Vault::from_key([7; 32]);
        let sealed = v
            .seal("alice", "code-host", b"ghp_secret", &OsRandom)
            .unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"ghp_secret"));
        assert_eq!(
            v.open("alice", "code-host", &sealed).unwrap().as_slice(),
            b"ghp_secret"
        );
        assert!(v.open("bob", "code-host", &sealed).is_err());
        assert!(v.open("alice", "other", &sealed).is_err());
        assert!(
            Vault::from_key([8; 32])
                .open("alice", "code-host", &sealed)
                .is_err()
        );
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(v.open("alice", "code-host", &tampered).is_err());
        assert!(v.open("alice", "code-host", &sealed[..10]).is_err());
        // Two seals of one secret differ (fresh nonce).
        assert_ne!(
            sealed,
            v.seal("alice", "code-host", b"ghp_secret", &OsRandom)
                .unwrap()
        );
        assert_eq!(format!("{v:?}"), "Vault(..)");
    }

    #[test]
    fn the_key_file_is_created_owner_only_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = Vault::load(dir.path(), &OsRandom).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = Vault::load(dir.path(), &OsRandom).unwrap();
        let sealed = a.seal("o", "n", b"s", &OsRandom).unwrap();
        assert_eq!(b.open("o", "n", &sealed).unwrap().as_slice(), b"s");
        std::fs::set_permissions(
            dir.path().join(KEY_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(Vault::load(dir.path(), &OsRandom).is_err());
    }

    #[test]
    fn sealed_signing_keys_open_only_as_their_key_with_the_same_vault_key() {
        use crate::keys::KeySealer as _;
        let v = Vault::from_key([7; 32]);
        let sealed = v.seal_key("kid1", b"PEM", &OsRandom).unwrap();
        assert_eq!(v.open_key("kid1", &sealed).unwrap().as_slice(), b"PEM");
        assert!(v.open_key("kid2", &sealed).is_err());
        // Not an upstream secret of any owner, and the other way round.
        assert!(v.open("", "kid1", &sealed).is_err());
        let upstream = v
            .seal("alice", "signing-key:kid1", b"x", &OsRandom)
            .unwrap();
        assert!(v.open_key("kid1", &upstream).is_err());
        let e = Vault::from_key([8; 32])
            .open_key("kid1", &sealed)
            .unwrap_err();
        assert!(e.to_string().contains("signing key kid1"), "{e}");
        // Keys derived for different purposes differ, and are stable.
        assert_ne!(*v.derive("dpop-nonce"), *v.derive("device-cookie"));
        assert_eq!(
            *v.derive("dpop-nonce"),
            *Vault::from_key([7; 32]).derive("dpop-nonce")
        );
        assert_ne!(
            *v.derive("dpop-nonce"),
            *Vault::from_key([8; 32]).derive("dpop-nonce")
        );
    }

    #[test]
    fn secrets_are_one_line_of_visible_ascii() {
        assert_eq!(check_secret(b"abc\n").unwrap().as_slice(), b"abc");
        assert_eq!(check_secret(b"a b\r\n").unwrap().as_slice(), b"a b");
        for bad in [&b""[..], b"\n", b"a\r\nb", b"a\nb", b"a\0", b"\xc3\xa9"] {
            assert!(check_secret(bad).is_err(), "{bad:?}");
        }
    }
}
