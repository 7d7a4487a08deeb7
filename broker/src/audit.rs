//! The hash-chained audit log: each record carries the hash of the previous
//! one, so a changed, removed or reordered record breaks the chain.

use protonpass_agent::{SigningKey, verify_ed25519_raw};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::AuditRecord;

/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of one record: SHA-256 over its position, time, owner, event, the
/// detail exactly as stored, and the previous record's hash.
pub fn record_hash(
    seq: i64,
    ts: i64,
    owner: &str,
    event: &str,
    detail: &str,
    prev: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        seq.to_string().as_str(),
        ts.to_string().as_str(),
        owner,
        event,
        detail,
        prev,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex(&h.finalize())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        // Several per request (token hashes, the audit chain): no formatter.
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// SHA-256 of a secret, hex: how tokens and codes are stored.
pub fn secret_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Where the chain breaks, if it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The first record that does not fit.
    pub seq: i64,
    /// Why.
    pub why: String,
}

/// Checks records one page at a time, in order.
#[derive(Debug)]
pub struct Verifier {
    expected_seq: i64,
    prev: String,
    /// Records checked.
    pub count: i64,
}

/// A signed checkpoint: the broker's signing key signed the chain head
/// `(seq, hash)` at `ts`. The live chain verifies from its newest checkpoint
/// once older records are archived; an archive file ends with one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The record it covers (every record up to it).
    pub seq: i64,
    /// That record's hash.
    pub hash: String,
    /// When it was signed (Unix seconds).
    pub ts: i64,
    /// The signing key's id.
    pub kid: String,
    /// The signing key's Ed25519 public key (hex).
    pub public_key: String,
    /// Ed25519 signature over [`Checkpoint::message`] (hex).
    pub sig: String,
}

impl Checkpoint {
    /// The signed bytes: a fixed label, then the position, hash and time.
    pub fn message(seq: i64, hash: &str, ts: i64) -> Vec<u8> {
        format!("protonpass-audit-checkpoint/1\n{seq}\n{hash}\n{ts}").into_bytes()
    }

    /// Sign the chain head `(seq, hash)` with the broker's key.
    pub fn sign(key: &SigningKey, seq: i64, hash: &str, ts: i64) -> Checkpoint {
        let sig = key.key().sign(&Self::message(seq, hash, ts));
        Checkpoint {
            seq,
            hash: hash.to_owned(),
            ts,
            kid: key.kid.clone(),
            public_key: hex(&key.key().public_bytes()),
            sig: hex(&sig),
        }
    }

    /// Whether the signature holds for the key it names.
    pub fn check(&self) -> Result<(), String> {
        let public: [u8; 32] = unhex(&self.public_key)
            .and_then(|b| b.try_into().ok())
            .ok_or("the checkpoint's public key is malformed")?;
        let sig = unhex(&self.sig).ok_or("the checkpoint's signature is malformed")?;
        verify_ed25519_raw(&public, &Self::message(self.seq, &self.hash, self.ts), &sig)
            .map_err(|_| format!("the signature of checkpoint {} does not verify", self.seq))
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            expected_seq: 1,
            prev: GENESIS.to_owned(),
            count: 0,
        }
    }
}

impl Verifier {
    /// A verifier that continues after record `seq` whose hash is `hash`
    /// (a checked checkpoint, or a position verified before).
    pub fn after(seq: i64, hash: &str) -> Self {
        Verifier {
            expected_seq: seq + 1,
            prev: hash.to_owned(),
            count: 0,
        }
    }

    /// The position of the last record checked (0 before any).
    pub fn position(&self) -> i64 {
        self.expected_seq - 1
    }

    /// Check the next records.
    pub fn feed(&mut self, records: &[AuditRecord]) -> Result<(), Break> {
        for r in records {
            let fail = |why: &str| {
                Err(Break {
                    seq: r.seq,
                    why: why.to_owned(),
                })
            };
            if r.seq != self.expected_seq {
                return fail(&format!(
                    "expected record {} here: records were removed or reordered",
                    self.expected_seq
                ));
            }
            if r.prev != self.prev {
                return fail("its previous-hash does not match the record before it");
            }
            if record_hash(r.seq, r.ts, &r.owner, &r.event, &r.detail, &r.prev) != r.hash {
                return fail("its content does not match its hash: it was changed");
            }
            self.prev = r.hash.clone();
            self.expected_seq += 1;
            self.count += 1;
        }
        Ok(())
    }

    /// The hash of the last record checked (the chain head).
    pub fn head(&self) -> &str {
        &self.prev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: i64, prev: &str, detail: &str) -> AuditRecord {
        let hash = record_hash(seq, 10, "o", "e", detail, prev);
        AuditRecord {
            seq,
            ts: 10,
            owner: "o".into(),
            event: "e".into(),
            detail: detail.into(),
            prev: prev.into(),
            hash,
        }
    }

    #[test]
    fn a_checkpoint_verifies_only_as_signed() {
        let key = SigningKey::new("k", protonpass_agent::AgentKey::from_seed(&[7; 32]));
        let c = Checkpoint::sign(&key, 5, "ab", 100);
        assert!(c.check().is_ok());
        for bad in [
            Checkpoint {
                seq: 6,
                ..c.clone()
            },
            Checkpoint {
                hash: "ac".into(),
                ..c.clone()
            },
            Checkpoint {
                ts: 101,
                ..c.clone()
            },
            Checkpoint {
                sig: "00".into(),
                ..c.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        // A verifier resumes after the checkpoint's record.
        let next = rec(6, "ab", "{}");
        let mut v = Verifier::after(5, "ab");
        v.feed(&[next]).unwrap();
        assert_eq!(v.position(), 6);
    }

    #[test]
    fn chain_detects_edits_removals_and_reordering() {
        let a = rec(1, GENESIS, "{}");
        let b = rec(2, &a.hash, "{\"x\":1}");
        let c = rec(3, &b.hash, "{}");
        assert!(
            Verifier::default()
                .feed(&[a.clone(), b.clone(), c.clone()])
                .is_ok()
        );
        let mut edited = b.clone();
        edited.detail = "{\"x\":2}".into();
        assert_eq!(
            Verifier::default()
                .feed(&[a.clone(), edited, c.clone()])
                .unwrap_err()
                .seq,
            2
        );
        assert_eq!(
            Verifier::default()
                .feed(&[a.clone(), c.clone()])
                .unwrap_err()
                .seq,
            3
        );
        assert!(Verifier::default().feed(&[b, a, c]).is_err());
    }
}
