//! Upkeep: pruning what has expired, signed checkpoints of the audit chain,
//! and verifying the chain incrementally (from a checkpoint or from the last
//! position this process verified, not from the first record every time).

use std::sync::Mutex;

use protonpass_agent::{Error, SigningKey};

use super::Broker;
use crate::audit::{Break, Checkpoint, Verifier};
use crate::store::{self, Pruned, Result, Tx};

/// Rows of each kind removed per write transaction: the writer is never held
/// long, other requests commit between batches.
pub const PRUNE_BATCH: i64 = 5_000;
/// How often `serve` prunes and signs a checkpoint (seconds).
pub const UPKEEP_INTERVAL: u64 = 600;
/// Records read per page while verifying.
const PAGE: i64 = 2_000;

/// The newest chain position this process verified: `(seq, hash)`.
#[derive(Debug, Default)]
pub struct ChainMemo(Mutex<Option<(i64, String)>>);

impl ChainMemo {
    fn get(&self) -> Option<(i64, String)> {
        self.0.lock().ok().and_then(|g| g.clone())
    }

    fn set(&self, seq: i64, hash: &str) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some((seq, hash.to_owned()));
        }
    }
}

/// The chain verified: records `from + 1 ..= head`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Verification started after this record (0: from the first record).
    pub from: i64,
    /// The checkpoint it started from, if any.
    pub checkpoint: Option<i64>,
    /// The last record.
    pub head: i64,
    /// Its hash.
    pub head_hash: String,
    /// Records checked.
    pub count: i64,
}

/// Where verification starts.
enum Start {
    Memo(i64, String),
    Newest,
    Oldest,
}

fn broken(seq: i64, why: impl Into<String>) -> Break {
    Break {
        seq,
        why: why.into(),
    }
}

/// Check a checkpoint: its signature, its key (one of this broker's), and,
/// when `record_kept`, that the record it names has the hash it signed.
fn check_checkpoint(tx: &mut dyn Tx, c: &Checkpoint, record_kept: bool) -> Result<Option<Break>> {
    if let Err(why) = c.check() {
        return Ok(Some(broken(c.seq, why)));
    }
    if !tx.keys_all()?.iter().any(|k| k.kid == c.kid) {
        return Ok(Some(broken(
            c.seq,
            format!(
                "checkpoint {} is signed by a key this broker never had",
                c.seq
            ),
        )));
    }
    if record_kept {
        let rec = tx.audit_page(c.seq - 1, 1)?;
        if rec.first().map(|r| (r.seq, r.hash.as_str())) != Some((c.seq, c.hash.as_str())) {
            return Ok(Some(broken(
                c.seq,
                "the record does not match its signed checkpoint: it was changed",
            )));
        }
    }
    Ok(None)
}

fn verify(tx: &mut dyn Tx, start: Start) -> Result<std::result::Result<Verified, Break>> {
    let first = tx.audit_first()?;
    let head = tx.audit_head()?;
    if first == 0 {
        return Ok(Ok(Verified {
            from: 0,
            checkpoint: None,
            head: 0,
            head_hash: crate::audit::GENESIS.to_owned(),
            count: 0,
        }));
    }
    // The newest signed checkpoint names a record the log must still reach:
    // the newest records removed after it are found.
    if let Some(c) = tx.audit_checkpoint_latest(i64::MAX)?
        && c.seq > head
        && check_checkpoint(tx, &c, false)?.is_none()
    {
        return Ok(Err(broken(
            head + 1,
            format!(
                "records up to {} were signed in a checkpoint but the log ends at {head}: \
                 the newest records were removed",
                c.seq
            ),
        )));
    }
    let (mut v, from, checkpoint) = match start {
        Start::Memo(seq, hash) if seq >= first - 1 && seq <= head => {
            (Verifier::after(seq, &hash), seq, None)
        }
        Start::Memo(..) | Start::Newest | Start::Oldest => {
            let newest = matches!(start, Start::Memo(..) | Start::Newest);
            let at_most = if newest { i64::MAX } else { first - 1 };
            match tx.audit_checkpoint_latest(at_most)? {
                Some(c) if c.seq >= first - 1 && c.seq <= head => {
                    if let Some(b) = check_checkpoint(tx, &c, c.seq >= first)? {
                        return Ok(Err(b));
                    }
                    (Verifier::after(c.seq, &c.hash), c.seq, Some(c.seq))
                }
                _ if first == 1 => (Verifier::default(), 0, None),
                _ => {
                    return Ok(Err(broken(
                        first,
                        format!(
                            "records before {first} were removed without a signed checkpoint \
                             (`audit archive` keeps one)"
                        ),
                    )));
                }
            }
        }
    };
    loop {
        let recs = tx.audit_page(v.position(), PAGE)?;
        if recs.is_empty() {
            break;
        }
        if let Err(b) = v.feed(&recs) {
            return Ok(Err(b));
        }
    }
    Ok(Ok(Verified {
        from,
        checkpoint,
        head: v.position(),
        head_hash: v.head().to_owned(),
        count: v.count,
    }))
}

/// Verify every kept record: from the first one (or the signed checkpoint
/// of the archived part before it) to the head (`audit verify`).
pub fn verify_all(tx: &mut dyn Tx) -> Result<std::result::Result<Verified, Break>> {
    verify(tx, Start::Oldest)
}

/// Verify what is new: from the last position this process verified, else
/// from the newest signed checkpoint (the dashboard's activity page).
pub fn verify_recent(b: &Broker, tx: &mut dyn Tx) -> Result<std::result::Result<Verified, Break>> {
    let start = match b.chain_memo.get() {
        Some((s, h)) => Start::Memo(s, h),
        None => Start::Newest,
    };
    let r = verify(tx, start)?;
    if let Ok(v) = &r {
        b.chain_memo.set(v.head, &v.head_hash);
    }
    Ok(r)
}

/// Sign the chain head after verifying the records since the newest
/// checkpoint; `None` when there is nothing new to sign.
pub async fn checkpoint(b: &Broker) -> Result<Option<Checkpoint>> {
    let verified = store::read(&b.store, |tx| verify(tx, Start::Newest)).await?;
    let v = verified.map_err(|br| {
        Error::Storage(format!(
            "the audit chain is broken at record {}: {}; no checkpoint signed",
            br.seq, br.why
        ))
    })?;
    if v.head == 0 || v.checkpoint == Some(v.head) {
        return Ok(None);
    }
    let key: std::sync::Arc<SigningKey> = b.keyring().current.clone();
    let c = Checkpoint::sign(&key, v.head, &v.head_hash, b.clock.now());
    let c2 = c.clone();
    store::write(&b.store, move |tx| tx.audit_checkpoint_put(&c2)).await?;
    Ok(Some(c))
}

/// Remove what expired before `now`, a batch at a time.
pub async fn prune(b: &Broker, now: i64) -> Result<Pruned> {
    let mut all = Pruned::default();
    loop {
        let p = store::write(&b.store, move |tx| tx.prune_expired(now, PRUNE_BATCH)).await?;
        all.add(&p);
        if p.total() == 0 {
            return Ok(all);
        }
    }
}
