//! The hash-chained audit log: each record carries the hash of the previous
//! one, so a changed, removed or reordered record breaks the chain.

use std::fmt::Write as _;

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
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
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
