//! Access tokens the gateway has verified, so that an agent's second and
//! later requests with the same token cost one signature check (the proof's)
//! instead of two. As the core verifier's cache: keyed by a hash of the
//! audience and the token, kept until the token expires, and only while the
//! key that signed it is still in the broker's key ring (a key withdrawn
//! after a compromise takes its tokens with it at once). Revocation is not
//! this cache's business: `live.rs` checks the token's and grant's state
//! against the store on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use protonpass_agent::token::peek_kid;
use protonpass_agent::{AccessTokenClaims, KeySet, Result, TokenValidation, verify_access_token};
use sha2::{Digest, Sha256};

/// At most this many tokens are kept; when full, the expired ones are dropped
/// (and everything, if that is not enough).
const MAX: usize = 16_384;

struct Entry {
    claims: Arc<AccessTokenClaims>,
    kid: String,
}

/// Verified tokens.
#[derive(Default)]
pub struct TokenCache {
    map: Mutex<HashMap<[u8; 32], Entry>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCache(..)")
    }
}

fn key(audience: &str, token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(audience.as_bytes());
    h.update([0]);
    h.update(token.as_bytes());
    h.finalize().into()
}

impl TokenCache {
    /// The token's claims, verified now or earlier under the same audience.
    /// Errors are never cached.
    pub fn verify(
        &self,
        token: &str,
        keys: &KeySet,
        validation: &TokenValidation,
        now: i64,
    ) -> Result<Arc<AccessTokenClaims>> {
        let k = key(&validation.audience, token);
        if let Ok(m) = self.map.lock()
            && let Some(e) = m.get(&k)
            && now < e.claims.exp
            && keys.contains(&e.kid)
        {
            return Ok(e.claims.clone());
        }
        let claims = Arc::new(verify_access_token(token, keys, validation, now)?);
        if let (Some(kid), Ok(mut m)) = (peek_kid(token), self.map.lock()) {
            if m.len() >= MAX {
                m.retain(|_, e| now < e.claims.exp);
                if m.len() >= MAX {
                    m.clear();
                }
            }
            m.insert(
                k,
                Entry {
                    claims: claims.clone(),
                    kid,
                },
            );
        }
        Ok(claims)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use protonpass_agent::{AgentKey, OsRandom, SigningKey};

    use super::*;

    #[test]
    fn cached_until_expiry_and_only_while_the_key_is_published() {
        let sk = SigningKey::new("k1", AgentKey::generate(&OsRandom).unwrap());
        let claims = AccessTokenClaims {
            iss: "https://broker.test".into(),
            sub: "owner".into(),
            aud: "https://api.test".into(),
            client_id: "bot".into(),
            iat: 1000,
            exp: 2000,
            jti: "t1".into(),
            scope: "a:read".into(),
            jkt: "jkt".into(),
            gid: "g1".into(),
            act_sub: "bot".into(),
        };
        let token = sk.sign(&claims);
        let mut keys = KeySet::default();
        keys.insert("k1", &sk.key().public_jwk()).unwrap();
        let mut v = TokenValidation::new("https://broker.test", "https://api.test");
        v.leeway = 0;
        let cache = TokenCache::default();
        assert_eq!(cache.verify(&token, &keys, &v, 1100).unwrap().jti, "t1");
        // From the cache now: the same claims, without a signature check (a
        // ring whose `k1` is another key would refuse a fresh verification).
        let other_key = SigningKey::new("k1", AgentKey::generate(&OsRandom).unwrap());
        let mut swapped = KeySet::default();
        swapped.insert("k1", &other_key.key().public_jwk()).unwrap();
        assert!(
            TokenCache::default()
                .verify(&token, &swapped, &v, 1200)
                .is_err()
        );
        assert_eq!(cache.verify(&token, &swapped, &v, 1200).unwrap().jti, "t1");
        // Another audience: verified (and refused) on its own.
        let other = TokenValidation::new("https://broker.test", "https://other.test");
        assert!(cache.verify(&token, &keys, &other, 1200).is_err());
        // Expired: refused although cached.
        assert!(cache.verify(&token, &keys, &v, 2000).is_err());
        // The key withdrawn from the ring: refused at once.
        assert!(cache.verify(&token, &KeySet::default(), &v, 1300).is_err());
    }
}
