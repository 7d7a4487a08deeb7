//! The broker's token signing keys: Ed25519 private keys in files of the data
//! directory (mode 0600) with SQLite, or in the database sealed by the vault
//! key (ChaCha20-Poly1305, the key id as associated data) with PostgreSQL, so
//! that every replica signs with the same keys; their metadata is in the
//! store. The newest key signs; retired keys stay in the JWKS until every
//! token they signed has expired.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protonpass_agent::{AgentKey, Error, KeySet, Random, SigningKey};
use serde_json::{Value, json};

use crate::model::KeyMeta;
use crate::store::{self, Store};

/// Seals private keys for a store shared by replicas (the vault does it,
/// under the vault key, with the key id as associated data).
pub trait KeySealer: Send + Sync + std::fmt::Debug {
    /// Seal key `kid`'s PKCS#8 PEM.
    fn seal_key(&self, kid: &str, pem: &[u8], rng: &dyn Random) -> Result<Vec<u8>, Error>;
    /// Open what [`KeySealer::seal_key`] sealed for `kid`.
    fn open_key(&self, kid: &str, sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, Error>;
}

/// Where the private keys are kept.
#[derive(Debug, Clone)]
pub enum KeyHome {
    /// PEM files in `DIR/keys` (SQLite).
    Files(PathBuf),
    /// The store, sealed (PostgreSQL: shared by replicas).
    Sealed(Arc<dyn KeySealer>),
}

/// Where the signing keys are kept: their records in the store, their
/// private keys as `home` says.
#[derive(Debug, Clone)]
pub struct KeyPlace {
    /// The store of the key records (and of the sealed private keys).
    pub store: Arc<dyn Store>,
    /// Where the private keys are.
    pub home: KeyHome,
}

/// Make a new signing key, live from `now`, and store its record (with its
/// secret sealed by the vault, when the vault keeps the keys) in one write,
/// after `first` has run in that write with the new record. `first` may
/// answer instead: then the new key is not stored, and the answer comes back
/// beside the record.
fn add_key<T: Send + 'static>(
    at: &KeyPlace,
    rng: &dyn Random,
    now: i64,
    first: impl FnOnce(&mut dyn store::Tx, &KeyMeta) -> Result<Option<T>, Error> + Send + 'static,
) -> Result<(KeyMeta, Option<T>), Error> {
    let (kid, sealed) = create_key(&at.home, rng)?;
    let meta = KeyMeta {
        kid,
        created_at: now,
        retired_at: None,
        drop_after: None,
    };
    let m = meta.clone();
    let answer = store::write_blocking(&at.store, move |tx| {
        if let Some(answer) = first(tx, &m)? {
            return Ok(Some(answer));
        }
        if let Some(sealed) = sealed {
            tx.key_secret_put(&m.kid, &sealed)?;
        }
        tx.key_put(&m)?;
        Ok(None)
    })?;
    Ok((meta, answer))
}

/// A new key: its id, and its PEM sealed for the store (`Sealed` homes) or
/// `None` (written to a file).
fn create_key(home: &KeyHome, rng: &dyn Random) -> Result<(String, Option<Vec<u8>>), Error> {
    match home {
        KeyHome::Files(data) => Ok((create_key_file(data, rng)?.0, None)),
        KeyHome::Sealed(vault) => {
            let key = AgentKey::generate(rng)?;
            let kid: String = key.thumbprint().chars().take(16).collect();
            let pem = key.to_pkcs8_pem()?;
            let sealed = vault.seal_key(&kid, pem.as_bytes(), rng)?;
            Ok((kid, Some(sealed)))
        }
    }
}

/// The loaded keys.
#[derive(Debug, Clone)]
pub struct KeyRing {
    /// The key that signs new tokens.
    pub current: Arc<SigningKey>,
    /// Every key still published, with its metadata.
    pub keys: Vec<(KeyMeta, Arc<SigningKey>)>,
    /// The same keys, for verifying tokens the broker issued.
    pub keyset: KeySet,
}

fn key_dir(data: &Path) -> PathBuf {
    data.join("keys")
}

fn key_path(data: &Path, kid: &str) -> PathBuf {
    key_dir(data).join(format!("{kid}.pem"))
}

fn io(e: std::io::Error) -> Error {
    Error::Server(format!("key file: {e}"))
}

fn create_key_file(data: &Path, rng: &dyn Random) -> Result<(String, AgentKey), Error> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(key_dir(data))
        .map_err(io)?;
    let key = AgentKey::generate(rng)?;
    let kid: String = key.thumbprint().chars().take(16).collect();
    let pem = key.to_pkcs8_pem()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(key_path(data, &kid))
        .map_err(io)?;
    f.write_all(pem.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok((kid, key))
}

impl KeyPlace {
    /// Load the keys, creating the first one on a fresh data directory.
    pub fn load(&self, now: i64, access_ttl: i64, rng: &dyn Random) -> Result<KeyRing, Error> {
        let mut metas = store::read_blocking(&self.store, |tx| tx.keys_all())?;
        if metas.is_empty() {
            let (first, existing) = add_key(self, rng, now, |tx, _| {
                // Another replica starting at the same time may have made
                // the first key already: use it.
                let existing = tx.keys_all()?;
                Ok((!existing.is_empty()).then_some(existing))
            })?;
            metas = existing.unwrap_or_else(|| vec![first]);
        }
        KeyRing::from_metas(metas, self, now, access_ttl)
    }

    /// Re-read the key list (after `keys rotate` from another process).
    pub fn reload(&self, now: i64, access_ttl: i64) -> Result<KeyRing, Error> {
        let metas = store::read_blocking(&self.store, |tx| tx.keys_all())?;
        KeyRing::from_metas(metas, self, now, access_ttl)
    }

    /// Make a new signing key; the old ones retire and stay published for
    /// `max_token_life` seconds.
    pub fn rotate(
        &self,
        now: i64,
        max_token_life: i64,
        rng: &dyn Random,
    ) -> Result<KeyMeta, Error> {
        let (meta, _) = add_key(self, rng, now, move |tx, new| {
            for mut old in tx.keys_all()? {
                if old.retired_at.is_none() {
                    old.retired_at = Some(now);
                    old.drop_after = Some(now + max_token_life + 60);
                    tx.key_put(&old)?;
                }
            }
            tx.audit_append(
                now,
                "-",
                "keys_rotate",
                &json!({"kid": new.kid}).to_string(),
            )?;
            Ok(None::<()>)
        })?;
        Ok(meta)
    }
}

impl KeyRing {
    /// The keys still published at `now`. A retired key stays at least
    /// `access_ttl` (this process's) and a minute past its retirement, even
    /// if `keys rotate` ran with a shorter lifetime than the server's and so
    /// set an earlier `drop_after`: tokens it signed are still live.
    fn from_metas(
        metas: Vec<KeyMeta>,
        at: &KeyPlace,
        now: i64,
        access_ttl: i64,
    ) -> Result<Self, Error> {
        let (store, home) = (&at.store, &at.home);
        let mut keys = Vec::new();
        let mut keyset = KeySet::default();
        for m in metas {
            let tokens_live = m
                .retired_at
                .is_some_and(|r| now < r.saturating_add(access_ttl).saturating_add(60));
            if m.drop_after.is_some_and(|d| d <= now) && !tokens_live {
                // Every token it signed has expired: the private key is of no
                // more use, and a copy of the directory (or a backup of the
                // database) should not hold it.
                match home {
                    KeyHome::Files(data) => match std::fs::remove_file(key_path(data, &m.kid)) {
                        Ok(()) => tracing::info!(kid = %m.kid, "retired signing key removed"),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            tracing::warn!(kid = %m.kid, error = %e, "cannot remove a retired signing key")
                        }
                    },
                    KeyHome::Sealed(_) => {
                        let kid = m.kid.clone();
                        store::write_detached(store, move |tx| tx.key_secret_delete(&kid));
                    }
                }
                continue;
            }
            let pem = match home {
                KeyHome::Files(data) => zeroize::Zeroizing::new(
                    std::fs::read_to_string(key_path(data, &m.kid)).map_err(io)?,
                ),
                KeyHome::Sealed(vault) => {
                    let kid = m.kid.clone();
                    let sealed = store::read_blocking(store, move |tx| tx.key_secret_get(&kid))?
                        .ok_or_else(|| {
                            Error::Server(format!(
                                "the private key of signing key {} is missing",
                                m.kid
                            ))
                        })?;
                    let raw = vault.open_key(&m.kid, &sealed)?;
                    zeroize::Zeroizing::new(
                        String::from_utf8(raw.to_vec()).map_err(|_| {
                            Error::Server(format!("signing key {} is not PEM", m.kid))
                        })?,
                    )
                }
            };
            let key = AgentKey::from_pkcs8_pem(&pem)?;
            keyset.insert(&m.kid, &key.public_jwk())?;
            keys.push((m.clone(), Arc::new(SigningKey::new(m.kid.clone(), key))));
        }
        let current = keys
            .iter()
            .rev()
            .find(|(m, _)| m.retired_at.is_none())
            .or(keys.last())
            .map(|(_, k)| k.clone())
            .ok_or_else(|| Error::Server("no signing key".into()))?;
        Ok(KeyRing {
            current,
            keys,
            keyset,
        })
    }

    /// The JWKS document.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|(_, k)| Value::Object(k.public_jwk_json()))
            .collect();
        json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protonpass_agent::OsRandom;

    #[test]
    fn a_retired_key_file_is_removed_once_its_tokens_have_expired() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = crate::store::sqlite::SqliteStore::open_with(
            &dir.path().join("db"),
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        let at = KeyPlace {
            store,
            home: KeyHome::Files(dir.path().to_owned()),
        };
        let (old, _) = create_key_file(dir.path(), &OsRandom).unwrap();
        let (new, _) = create_key_file(dir.path(), &OsRandom).unwrap();
        let meta = |kid: &str, drop_after: Option<i64>| KeyMeta {
            kid: kid.to_owned(),
            created_at: 0,
            retired_at: drop_after.map(|d| d - 100),
            drop_after,
        };
        // During the overlap the retired key still verifies and stays on disk.
        let ring =
            KeyRing::from_metas(vec![meta(&old, Some(1000)), meta(&new, None)], &at, 999, 30)
                .unwrap();
        assert!(ring.keyset.contains(&old));
        assert!(key_path(dir.path(), &old).exists());
        // Past it, the key leaves the key set and its private key the disk.
        let ring = KeyRing::from_metas(
            vec![meta(&old, Some(1000)), meta(&new, None)],
            &at,
            1000,
            30,
        )
        .unwrap();
        assert!(!ring.keyset.contains(&old));
        assert!(!key_path(dir.path(), &old).exists());
        assert!(key_path(dir.path(), &new).exists());
    }
}
