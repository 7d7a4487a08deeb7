//! The token reads and writes of the PostgreSQL [`Tx`](crate::store::Tx)
//! (`tx.rs` calls them): in the writer's batch a token written is held back
//! (`rows.rs`) and a token read looks there first, then in the database,
//! bringing the token's grant along in the same statement.

use super::conn::{PgTx, col, from_json, storable, to_json};
use super::prefetch::Known;
use super::rows::Held;
use crate::model::{Grant, TokenRec};
use crate::store::{Result, TokenLookup};

/// A token and its grant in one round trip (the writer's batch keeps the
/// grant for the next `grant_get` of it, which follows every token read there).
const TOKEN_BY_JTI_WITH_GRANT: &str = "SELECT t.data, g.data FROM tokens t
     LEFT JOIN grants g ON g.gid = t.gid WHERE t.jti = $1";
const TOKEN_BY_HASH_WITH_GRANT: &str = "SELECT t.data, g.data FROM tokens t
     LEFT JOIN grants g ON g.gid = t.gid WHERE t.hash = $1";

impl PgTx<'_> {
    pub(super) fn token_put_impl(&self, t: &TokenRec) -> Result<()> {
        if let Some(b) = self.batch() {
            // Held back, sent with the batch's other token rows.
            b.hold_token(t.clone(), to_json(t)?);
            return Ok(());
        }
        self.send(
            "INSERT INTO tokens(jti, gid, hash, data) VALUES ($1,$2,$3,$4)
             ON CONFLICT (jti) DO UPDATE SET gid = EXCLUDED.gid, hash = EXCLUDED.hash,
               data = EXCLUDED.data, n = EXCLUDED.n",
            vec![
                Box::new(t.jti.clone()),
                Box::new(t.gid.clone()),
                Box::new(t.hash.clone()),
                Box::new(to_json(t)?),
            ],
        )
    }

    pub(super) fn token_get_impl(&self, jti: &str) -> Result<Option<TokenRec>> {
        self.token_read(&TokenLookup::Jti(jti.to_owned()))
    }

    pub(super) fn token_by_hash_impl(&self, hash: &str) -> Result<Option<TokenRec>> {
        self.token_read(&TokenLookup::Hash(hash.to_owned()))
    }

    /// The token `key` names: in the writer with what the batch knows
    /// ([`PgTx::token_and_grant`]), elsewhere from the database alone.
    fn token_read(&self, key: &TokenLookup) -> Result<Option<TokenRec>> {
        let (k, alone) = match key {
            TokenLookup::Jti(k) => (k, "SELECT data FROM tokens WHERE jti = $1"),
            TokenLookup::Hash(k) => (k, "SELECT data FROM tokens WHERE hash = $1"),
        };
        if !storable(k) {
            return Ok(None);
        }
        if self.batch().is_some() {
            return self.token_and_grant(key);
        }
        self.one(alone, &[k])
    }

    /// In the writer: the token `key` names, as the rows held back, the
    /// batch's read of its jobs' tokens (`prefetch.rs`) or the database say
    /// (a token the batch wrote is read back from its rows); its grant,
    /// when read with it, is kept in the batch.
    fn token_and_grant(&self, key: &TokenLookup) -> Result<Option<TokenRec>> {
        let Some(b) = self.batch() else {
            return Ok(None);
        };
        let held = match key {
            TokenLookup::Jti(k) => b.held().by_jti(k),
            TokenLookup::Hash(k) => b.held().by_hash(k),
        };
        match held {
            Held::Found(t) => return Ok(Some(*t)),
            Held::Gone => return Ok(None),
            Held::Unknown => {}
        }
        match b.prefetched(key) {
            Known::Absent => return Ok(None),
            Known::Found(found) => {
                let (t, grant) = *found;
                if b.held().holds(&t.jti) {
                    // The batch wrote this token since, with another hash.
                    return Ok(None);
                }
                if let Some(g) = grant {
                    b.keep_grant(&t.gid, g);
                }
                return Ok(Some(t));
            }
            Known::NotAsked => {}
        }
        let (sql, key) = match key {
            TokenLookup::Jti(k) => (TOKEN_BY_JTI_WITH_GRANT, k),
            TokenLookup::Hash(k) => (TOKEN_BY_HASH_WITH_GRANT, k),
        };
        let rows = self.light(sql, &[key])?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let t: TokenRec = from_json(col::<&str>(r, 0)?)?;
        if b.held().holds(&t.jti) {
            // The batch wrote this token since, with another hash.
            return Ok(None);
        }
        let g: Option<Grant> = col::<Option<&str>>(r, 1)?.map(from_json).transpose()?;
        b.keep_grant(&t.gid, g);
        Ok(Some(t))
    }
}
