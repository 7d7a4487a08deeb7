//! Sealing with a passphrase: ChaCha20-Poly1305 under a key derived by
//! Argon2id from the passphrase and the file's salt, each value bound to its
//! entry and field.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use zeroize::Zeroizing;

use super::ProfileFile;
use crate::error::{Error, Result};

/// Sealed values bound to their entry and field (associated data).
pub(super) const SEALED: &str = "sealed:v2:";
/// Sealed values of the first format (no associated data): read, never written.
pub(super) const SEALED_V1: &str = "sealed:v1:";

/// The sealing key for (passphrase, salt), derived once per process.
pub(super) fn sealing_key(passphrase: &str, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
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
pub(super) fn sealed_ad(entry: &str, field: &str) -> Vec<u8> {
    format!("protonpass-grant-store:v2\0{entry}\0{field}").into_bytes()
}

pub(super) fn seal(key: &[u8; 32], plain: &str, ad: &[u8]) -> Result<String> {
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

pub(super) fn unseal(key: &[u8; 32], text: &str, ad: &[u8]) -> Result<Zeroizing<String>> {
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

/// Seal every plaintext value of `file` (a store that becomes sealed).
pub(super) fn seal_all(k: &[u8; 32], file: &mut ProfileFile) -> Result<()> {
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
