//! Known-device cookies (the defence OWASP describes against account lockout):
//! a browser that signed in to an owner's account successfully gets a signed,
//! long-lived cookie naming that owner. Wrong passwords from such a browser are
//! counted against that browser alone, so an attacker who knows the owner's
//! name and floods the sign-in form from elsewhere locks out only unknown
//! browsers, never the owner's own.
//!
//! The cookie is `owner.expiry.tag`, the tag an HMAC-SHA-256 under a key kept
//! in the data directory (`device.key`, 0600), or with a PostgreSQL store a
//! key derived from the vault key (see [`share_key`]), compared in constant
//! time.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::OnceLock;

use hmac::{Hmac, KeyInit, Mac};
use protonpass_agent::{Random, b64};
use sha2::Sha256;
use zeroize::Zeroizing;

/// How long a browser stays known, seconds (90 days).
pub const DEVICE_TTL: i64 = 90 * 86_400;

fn load_or_create(data: &Path, rng: &dyn Random) -> Option<Zeroizing<Vec<u8>>> {
    let path = data.join("device.key");
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => return Some(Zeroizing::new(bytes)),
        // Cut short (a crash between creating and writing it): replace it,
        // or known-device protection would silently stay off.
        Ok(_) => {
            let _ = std::fs::remove_file(&path);
        }
        Err(_) => {}
    }
    let mut key = Zeroizing::new(vec![0u8; 32]);
    rng.fill(&mut key).ok()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .ok()?;
    f.write_all(&key).ok()?;
    f.sync_all().ok()?;
    Some(key)
}

/// The key shared by the replicas of a PostgreSQL store (derived from the
/// vault key), set at start by [`share_key`].
static SHARED: OnceLock<Zeroizing<Vec<u8>>> = OnceLock::new();

/// Use `key` instead of `device.key`: replicas on one database must accept
/// each other's cookies, and have no data directory in common.
pub fn share_key(key: &[u8]) {
    let _ = SHARED.set(Zeroizing::new(key.to_vec()));
}

/// The process's key (read or created once).
fn key(data: &Path, rng: &dyn Random) -> Option<&'static Zeroizing<Vec<u8>>> {
    static KEY: OnceLock<Option<Zeroizing<Vec<u8>>>> = OnceLock::new();
    if let Some(k) = SHARED.get() {
        return Some(k);
    }
    KEY.get_or_init(|| load_or_create(data, rng)).as_ref()
}

/// A key for another purpose, derived from the device key by `label` (so that
/// what one signs can never pass for the other).
pub fn derived_key(data: &Path, rng: &dyn Random, label: &str) -> Option<Zeroizing<Vec<u8>>> {
    let mut m = mac(key(data, rng)?, label)?;
    m.update(b"\0derived");
    Some(Zeroizing::new(m.finalize().into_bytes().to_vec()))
}

fn mac(key: &[u8], body: &str) -> Option<Hmac<Sha256>> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    m.update(body.as_bytes());
    Some(m)
}

/// A cookie value marking this browser as known for `owner` until `now + DEVICE_TTL`.
pub fn issue(data: &Path, rng: &dyn Random, owner: &str, now: i64) -> Option<String> {
    let body = format!("{owner}.{}", now.saturating_add(DEVICE_TTL));
    let tag = mac(key(data, rng)?, &body)?.finalize().into_bytes();
    Some(format!("{body}.{}", b64::encode(&tag[..16])))
}

/// The opaque id of a valid cookie for `owner` at `now` (its tag), if it is one.
pub fn check(data: &Path, rng: &dyn Random, value: &str, owner: &str, now: i64) -> Option<String> {
    let (body, tag) = value.rsplit_once('.')?;
    let (who, exp) = body.rsplit_once('.')?;
    let exp: i64 = exp.parse().ok()?;
    if who != owner || exp <= now {
        return None;
    }
    let raw = b64::decode(tag)?;
    mac(key(data, rng)?, body)?
        .verify_truncated_left(&raw)
        .ok()?;
    (raw.len() == 16).then(|| tag.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protonpass_agent::OsRandom;

    #[test]
    fn only_the_signed_owner_until_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let c = issue(dir.path(), &OsRandom, "alice", 1000).unwrap();
        assert!(check(dir.path(), &OsRandom, &c, "alice", 1000).is_some());
        assert!(check(dir.path(), &OsRandom, &c, "bob", 1000).is_none());
        assert!(check(dir.path(), &OsRandom, &c, "alice", 1000 + DEVICE_TTL).is_none());
        let forged = c.replace("alice", "bob");
        assert!(check(dir.path(), &OsRandom, &forged, "bob", 1000).is_none());
        let (body, _) = c.rsplit_once('.').unwrap();
        let longer = format!(
            "alice.{}.{}",
            1000 + 10 * DEVICE_TTL,
            c.rsplit_once('.').unwrap().1
        );
        assert!(
            check(dir.path(), &OsRandom, &longer, "alice", 1000).is_none(),
            "{body}"
        );
        assert!(check(dir.path(), &OsRandom, "garbage", "alice", 1000).is_none());
    }
}
