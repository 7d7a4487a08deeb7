//! The rows a writer's batch holds back (tokens and audit records, the
//! writes every token request makes): kept in memory while the batch's jobs
//! run, read back by the batch's token reads, and sent as one multi-row
//! statement per table when the batch ends or before a statement that could
//! see them (`conn.rs`). A batch of token exchanges thus costs the server
//! two inserts, not one per row.

use std::collections::HashMap;

use super::conn::Owned;
use crate::model::{AuditRecord, TokenRec};

/// Insert or replace every held token row (at most one per `jti`: one
/// statement cannot change a row twice). Each row takes a new `n`, in the
/// order of the arrays, as one insert per row would.
pub(super) const PUT_TOKENS: &str = "INSERT INTO tokens(jti, gid, hash, data)
     SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[])
     ON CONFLICT (jti) DO UPDATE SET gid = EXCLUDED.gid, hash = EXCLUDED.hash,
       data = EXCLUDED.data, n = EXCLUDED.n";

/// Insert every held audit record, in the chain's order.
pub(super) const PUT_AUDIT: &str = "INSERT INTO audit(seq, ts, owner, event, detail, prev, hash)
     SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[],
       $6::TEXT[], $7::TEXT[])";

/// A token row held back: the record and its stored form.
struct TokenRow {
    rec: TokenRec,
    data: String,
}

/// The rows held back, in the order they were written.
#[derive(Default)]
pub(super) struct Rows {
    /// Every token write; a token written again has a later entry, which wins.
    tokens: Vec<TokenRow>,
    /// The latest write of each token, by `jti`.
    by_jti: HashMap<String, usize>,
    /// A token write by refresh-token hash (the latest with that hash).
    by_hash: HashMap<String, usize>,
    audit: Vec<AuditRecord>,
}

/// How many rows were held at some point (to go back to it).
pub(super) type Mark = (usize, usize);

/// What a held-back token says of a lookup.
pub(super) enum Held {
    /// The token as the batch last wrote it.
    Found(Box<TokenRec>),
    /// The batch wrote this token with another hash: the lookup finds nothing.
    Gone,
    /// The batch did not write it: the database's answer stands.
    Unknown,
}

impl Rows {
    pub(super) fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.audit.is_empty()
    }

    pub(super) fn mark(&self) -> Mark {
        (self.tokens.len(), self.audit.len())
    }

    /// Forget the rows written after `m` (a job that failed).
    pub(super) fn truncate(&mut self, m: Mark) {
        self.tokens.truncate(m.0);
        self.audit.truncate(m.1);
        self.index();
    }

    /// Take the rows written after `m` (the current job's), leaving those before.
    pub(super) fn split_off(&mut self, m: Mark) -> Rows {
        let mut later = Rows {
            tokens: self.tokens.split_off(m.0),
            audit: self.audit.split_off(m.1),
            ..Rows::default()
        };
        later.index();
        self.index();
        later
    }

    /// Rebuild the lookups from the token writes.
    fn index(&mut self) {
        self.by_jti.clear();
        self.by_hash.clear();
        for (i, t) in self.tokens.iter().enumerate() {
            self.by_jti.insert(t.rec.jti.clone(), i);
            if let Some(h) = &t.rec.hash {
                self.by_hash.insert(h.clone(), i);
            }
        }
    }

    pub(super) fn put_token(&mut self, rec: TokenRec, data: String) {
        let i = self.tokens.len();
        self.by_jti.insert(rec.jti.clone(), i);
        if let Some(h) = &rec.hash {
            self.by_hash.insert(h.clone(), i);
        }
        self.tokens.push(TokenRow { rec, data });
    }

    pub(super) fn put_audit(&mut self, a: AuditRecord) {
        self.audit.push(a);
    }

    /// The latest audit record held: the chain's head.
    pub(super) fn audit_head(&self) -> Option<(i64, String)> {
        self.audit.last().map(|a| (a.seq, a.hash.clone()))
    }

    /// The token `jti` as held.
    pub(super) fn by_jti(&self, jti: &str) -> Held {
        match self.by_jti.get(jti) {
            Some(&i) => Held::Found(Box::new(self.tokens[i].rec.clone())),
            None => Held::Unknown,
        }
    }

    /// The token with refresh-token hash `hash` as held.
    pub(super) fn by_hash(&self, hash: &str) -> Held {
        let Some(&i) = self.by_hash.get(hash) else {
            return Held::Unknown;
        };
        let t = &self.tokens[i].rec;
        if self.by_jti.get(&t.jti) == Some(&i) {
            Held::Found(Box::new(t.clone()))
        } else {
            // Written again since, with another hash.
            Held::Gone
        }
    }

    /// The token writes, in order (a later write of a token after the earlier).
    pub(super) fn tokens(&self) -> impl Iterator<Item = &TokenRec> {
        self.tokens.iter().map(|t| &t.rec)
    }

    /// Whether the batch wrote the token `jti` (so that the database's copy is old).
    pub(super) fn holds(&self, jti: &str) -> bool {
        self.by_jti.contains_key(jti)
    }

    /// Take every row held: the statements that write them and their
    /// parameters (none when nothing is held).
    pub(super) fn take(&mut self) -> Vec<(&'static str, Vec<Owned>)> {
        let mut out = Vec::new();
        let tokens = std::mem::take(&mut self.tokens);
        let by_jti = std::mem::take(&mut self.by_jti);
        self.by_hash.clear();
        if !tokens.is_empty() {
            let n = by_jti.len();
            let (mut jti, mut gid, mut hash, mut data) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for (i, t) in tokens.into_iter().enumerate() {
                // Only a token's latest write, at its place in the order.
                if by_jti.get(&t.rec.jti) != Some(&i) {
                    continue;
                }
                jti.push(t.rec.jti);
                gid.push(t.rec.gid);
                hash.push(t.rec.hash);
                data.push(t.data);
            }
            out.push((
                PUT_TOKENS,
                vec![
                    Box::new(jti) as Owned,
                    Box::new(gid),
                    Box::new(hash),
                    Box::new(data),
                ],
            ));
        }
        let audit = std::mem::take(&mut self.audit);
        if !audit.is_empty() {
            let n = audit.len();
            let mut seq = Vec::with_capacity(n);
            let mut ts = Vec::with_capacity(n);
            let (mut owner, mut event, mut detail) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let (mut prev, mut hash) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for a in audit {
                seq.push(a.seq);
                ts.push(a.ts);
                owner.push(a.owner);
                event.push(a.event);
                detail.push(a.detail);
                prev.push(a.prev);
                hash.push(a.hash);
            }
            out.push((
                PUT_AUDIT,
                vec![
                    Box::new(seq) as Owned,
                    Box::new(ts),
                    Box::new(owner),
                    Box::new(event),
                    Box::new(detail),
                    Box::new(prev),
                    Box::new(hash),
                ],
            ));
        }
        out
    }
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::model::{TokenKind, TokenStatus};

    /// A token row of grant `g`, as the held-row and read-ahead tests use it.
    pub(in crate::store::postgres) fn tok(
        jti: &str,
        hash: Option<&str>,
        status: TokenStatus,
    ) -> TokenRec {
        TokenRec {
            jti: jti.into(),
            gid: "g".into(),
            owner: "alice".into(),
            kind: TokenKind::Refresh,
            client_id: "agent".into(),
            scope: "s".into(),
            aud: None,
            iat: 1,
            exp: 2,
            jkt: "k".into(),
            hash: hash.map(Into::into),
            status,
        }
    }

    #[test]
    fn a_token_written_twice_is_read_and_sent_as_its_latest_write() {
        let mut r = Rows::default();
        r.put_token(tok("a", Some("ha"), TokenStatus::Active), "a1".into());
        r.put_token(tok("b", None, TokenStatus::Active), "b1".into());
        let m = r.mark();
        r.put_token(tok("a", Some("ha"), TokenStatus::Used), "a2".into());
        assert!(matches!(r.by_hash("ha"), Held::Found(t) if t.status == TokenStatus::Used));
        // A job that failed: its write is forgotten, the earlier one is back.
        r.truncate(m);
        assert!(matches!(r.by_hash("ha"), Held::Found(t) if t.status == TokenStatus::Active));
        r.put_token(tok("a", Some("ha2"), TokenStatus::Used), "a3".into());
        assert!(matches!(r.by_hash("ha"), Held::Gone));
        assert!(matches!(r.by_jti("a"), Held::Found(t) if t.hash.as_deref() == Some("ha2")));
        assert!(matches!(r.by_jti("c"), Held::Unknown));
        let sent = r.take();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, PUT_TOKENS);
        // `a` once, after `b`: where its latest write was.
        assert_eq!(format!("{:?}", sent[0].1[0]), r#"["b", "a"]"#);
        assert_eq!(format!("{:?}", sent[0].1[3]), r#"["b1", "a3"]"#);
        assert!(r.is_empty());
        assert!(matches!(r.by_jti("a"), Held::Unknown));
    }
}
