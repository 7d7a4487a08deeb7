//! The tokens a writer's batch is going to read, read together: every token
//! job names the token it reads first ([`Store::submit_reading`]), and the
//! writer reads them all (with their grants) in one statement right after
//! `BEGIN` and the writers' lock, instead of one round trip per job.
//!
//! What was read stays true for the batch (no other writer runs while it
//! holds the lock) except for the batch's own writes, which this keeps up
//! with: token rows the batch sends to the server are laid over what was
//! read (rows still held back are looked at before, `rows.rs`); a grant
//! written makes the grants read unknown; a job rolled back to its
//! savepoint, or the expired tokens pruned, makes everything read unknown
//! (the next read asks the database).
//!
//! [`Store::submit_reading`]: crate::store::Store::submit_reading

use std::collections::{HashMap, HashSet};

use super::conn::{Batch, PgTx, col, from_json, storable};
use crate::model::{Grant, TokenRec};
use crate::store::{Result, TokenLookup};

/// The tokens named, with their grants, in one round trip.
const TOKENS_WITH_GRANTS: &str = "SELECT t.data, g.data FROM tokens t
     LEFT JOIN grants g ON g.gid = t.gid WHERE t.jti = ANY($1) OR t.hash = ANY($2)";

/// What the batch read before its first job, and its own token writes since.
#[derive(Default)]
pub(super) struct Prefetch {
    /// The keys asked for: a key asked and not found names no token.
    jtis: HashSet<String>,
    hashes: HashSet<String>,
    /// The tokens as the transaction has them, by `jti`.
    tokens: HashMap<String, TokenRec>,
    /// `jti` by refresh-token hash.
    by_hash: HashMap<String, String>,
    /// The grants of the tokens read, by `gid` (`None`: no such grant);
    /// unknown once the batch wrote a grant.
    grants: Option<HashMap<String, Option<Grant>>>,
}

/// What the batch's read says of a lookup.
pub(super) enum Known {
    /// The key was not asked for: the database's answer is needed.
    NotAsked,
    /// No token has this key.
    Absent,
    /// The token, and its grant when known (`Some(None)`: no such grant).
    Found(Box<(TokenRec, Option<Option<Grant>>)>),
}

impl Prefetch {
    /// Record a token as the transaction now has it.
    fn lay(&mut self, t: TokenRec) {
        if let Some(old) = self.tokens.get(&t.jti).and_then(|o| o.hash.clone()) {
            self.by_hash.remove(&old);
        }
        if let Some(h) = &t.hash {
            self.by_hash.insert(h.clone(), t.jti.clone());
        }
        self.tokens.insert(t.jti.clone(), t);
    }

    /// What the batch's read says of the token `key` names.
    pub(super) fn lookup(&self, key: &TokenLookup) -> Known {
        let jti = match key {
            TokenLookup::Jti(j) if self.jtis.contains(j) || self.tokens.contains_key(j) => j,
            TokenLookup::Hash(h) if self.hashes.contains(h) || self.by_hash.contains_key(h) => {
                match self.by_hash.get(h) {
                    Some(j) => j,
                    None => return Known::Absent,
                }
            }
            _ => return Known::NotAsked,
        };
        let Some(t) = self.tokens.get(jti) else {
            return Known::Absent;
        };
        let grant = self.grants.as_ref().and_then(|g| g.get(&t.gid).cloned());
        Known::Found(Box::new((t.clone(), grant)))
    }
}

impl Batch {
    /// What the batch's read says of `key` ([`Known::NotAsked`] without one).
    pub(super) fn prefetched(&self, key: &TokenLookup) -> Known {
        match &*self.prefetch.borrow() {
            Some(p) => p.lookup(key),
            None => Known::NotAsked,
        }
    }

    /// Token rows are sent to the server: lay them over what was read.
    pub(super) fn prefetch_sent<'a>(&self, rows: impl Iterator<Item = &'a TokenRec>) {
        if let Some(p) = self.prefetch.borrow_mut().as_mut() {
            for t in rows {
                p.lay(t.clone());
            }
        }
    }

    /// A grant was written (or a job undone): the grants read are unknown.
    pub(super) fn prefetch_grants_unknown(&self) {
        if let Some(p) = self.prefetch.borrow_mut().as_mut() {
            p.grants = None;
        }
    }

    /// The transaction went back to a savepoint, or tokens were deleted:
    /// forget what was read.
    pub(super) fn forget_prefetch(&self) {
        *self.prefetch.borrow_mut() = None;
    }
}

impl PgTx<'_> {
    /// Read the tokens `keys` name, with their grants, before the batch's
    /// first job (the transaction is begun first). A failure loses the
    /// batch, as any read outside a job's savepoint.
    pub(super) fn prefetch(&self, keys: Vec<TokenLookup>) -> Result<()> {
        let Some(b) = self.batch() else {
            return Ok(());
        };
        let mut p = Prefetch::default();
        for k in keys {
            match k {
                TokenLookup::Jti(j) if storable(&j) => {
                    p.jtis.insert(j);
                }
                TokenLookup::Hash(h) if storable(&h) => {
                    p.hashes.insert(h);
                }
                // A key with a NUL names no token: asked for nothing, the
                // job's own read answers it (without a query).
                _ => {}
            }
        }
        if p.jtis.is_empty() && p.hashes.is_empty() {
            return Ok(());
        }
        let jtis: Vec<&str> = p.jtis.iter().map(String::as_str).collect();
        let hashes: Vec<&str> = p.hashes.iter().map(String::as_str).collect();
        let rows = self.light(TOKENS_WITH_GRANTS, &[&jtis, &hashes])?;
        let decoded = rows.iter().try_for_each(|r| {
            let t: TokenRec = from_json(col::<&str>(r, 0)?)?;
            let g: Option<Grant> = col::<Option<&str>>(r, 1)?.map(from_json).transpose()?;
            p.grants.get_or_insert_default().insert(t.gid.clone(), g);
            p.lay(t);
            Ok::<_, protonpass_agent::Error>(())
        });
        if decoded.is_ok() {
            p.grants.get_or_insert_default();
            *b.prefetch.borrow_mut() = Some(p);
        }
        // Else a row that cannot be read (damaged, or written by a newer
        // broker) fails only the job that reads it, as without a read-ahead:
        // every job reads its own token.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::super::rows::tests::tok;
    use super::*;
    use crate::model::TokenStatus;

    fn hash(h: &str) -> TokenLookup {
        TokenLookup::Hash(h.into())
    }

    #[test]
    fn a_read_answers_what_was_asked_and_follows_the_batchs_writes() {
        let mut p = Prefetch::default();
        p.hashes.extend(["ha".to_owned(), "hx".to_owned()]);
        p.jtis.insert("b".into());
        p.lay(tok("a", Some("ha"), TokenStatus::Active));
        p.grants = Some(HashMap::from([("g".to_owned(), None)]));
        // Asked and found, with its grant (there is none); asked and absent;
        // not asked.
        assert!(matches!(p.lookup(&hash("ha")),
            Known::Found(f) if matches!(&*f, (t, Some(None)) if t.jti == "a" && t.status == TokenStatus::Active)));
        assert!(matches!(p.lookup(&hash("hx")), Known::Absent));
        assert!(matches!(
            p.lookup(&TokenLookup::Jti("b".into())),
            Known::Absent
        ));
        assert!(matches!(p.lookup(&hash("hy")), Known::NotAsked));
        assert!(matches!(
            p.lookup(&TokenLookup::Jti("c".into())),
            Known::NotAsked
        ));
        // The batch spent it: a second use reads it spent.
        p.lay(tok("a", Some("ha"), TokenStatus::Used));
        assert!(
            matches!(p.lookup(&hash("ha")), Known::Found(f) if f.0.status == TokenStatus::Used)
        );
        // Written again with another hash: the old hash names nothing, the
        // new one (never asked) names it.
        p.lay(tok("a", Some("hb"), TokenStatus::Active));
        assert!(matches!(p.lookup(&hash("ha")), Known::Absent));
        assert!(matches!(p.lookup(&hash("hb")), Known::Found(f) if f.0.jti == "a"));
        assert!(matches!(
            p.lookup(&TokenLookup::Jti("a".into())),
            Known::Found(_)
        ));
        // A grant written: the token stays known, its grant not.
        p.grants = None;
        assert!(matches!(p.lookup(&hash("hb")), Known::Found(f) if f.1.is_none()));
    }
}
