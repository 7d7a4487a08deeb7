//! Stateless DPoP nonces (RFC 9449 section 8): a time bucket and an
//! HMAC-SHA-256 of it (truncated to 128 bits). A nonce is accepted during its bucket and the next one (60 to 120
//! seconds), by every thread, without storage. With SQLite the key is random
//! per process, so a restart simply makes clients fetch a new nonce; with a
//! PostgreSQL store every replica derives it from the shared vault key, so a
//! nonce from one replica is accepted by the others.

use hmac::{Hmac, KeyInit, Mac};
use protonpass_agent::{Random, b64};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Length of one bucket, seconds.
const BUCKET: i64 = 60;

/// Issues and checks nonces.
pub struct NonceSource {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for NonceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceSource(<redacted>)")
    }
}

impl NonceSource {
    /// A source with a fresh random key.
    pub fn new(rng: &dyn Random) -> Result<Self, protonpass_agent::Error> {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill(key.as_mut())?;
        Ok(NonceSource { key })
    }

    /// A source with a given key: replicas sharing it accept each other's
    /// nonces (the key is derived from the vault key they share).
    pub fn with_key(key: &[u8; 32]) -> Self {
        NonceSource {
            key: Zeroizing::new(*key),
        }
    }

    fn mac(&self, bucket: i64) -> Hmac<Sha256> {
        // A 32-byte key is always a valid HMAC key; the fallback is never taken.
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.as_ref())
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        m.update(&bucket.to_be_bytes());
        m
    }

    /// The nonce for time `now`.
    pub fn issue(&self, now: i64) -> String {
        let bucket = now.div_euclid(BUCKET);
        let mut raw = [0u8; 24];
        raw[..8].copy_from_slice(&bucket.to_be_bytes());
        raw[8..].copy_from_slice(&self.mac(bucket).finalize().into_bytes()[..16]);
        b64::encode(raw)
    }

    /// Whether `nonce` was issued by this source within the last bucket or two.
    pub fn accepts(&self, nonce: &str, now: i64) -> bool {
        let Some(raw) = b64::decode_array::<24>(nonce) else {
            return false;
        };
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[..8]);
        let bucket = i64::from_be_bytes(b);
        let cur = now.div_euclid(BUCKET);
        if bucket != cur && bucket != cur - 1 {
            return false;
        }
        // Constant-time comparison of the truncated tag.
        self.mac(bucket).verify_truncated_left(&raw[8..]).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protonpass_agent::OsRandom;

    #[test]
    fn nonces_expire_and_do_not_forge() {
        let s = NonceSource::new(&OsRandom).unwrap();
        let n = s.issue(1000);
        assert!(s.accepts(&n, 1000));
        assert!(s.accepts(&n, 1000 + BUCKET));
        assert!(!s.accepts(&n, 1000 + 3 * BUCKET));
        let other = NonceSource::new(&OsRandom).unwrap();
        assert!(!other.accepts(&n, 1000));
        assert!(!s.accepts("garbage", 1000));
    }
}
