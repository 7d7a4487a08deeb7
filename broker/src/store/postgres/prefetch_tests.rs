//! The writer's read-ahead of a batch's tokens (`prefetch.rs`) and the
//! answers of jobs that read what other jobs of the batch wrote, against a
//! real PostgreSQL database (skipped without one: `make test-postgres` runs
//! them).

use super::*;

/// A store with owner `alice`, her grant `g1` and its refresh token `r1`
/// (hash `h1`), for the tests of tokens named ahead.
fn store_with_refresh_token(prefix: &str) -> Option<Arc<dyn Store>> {
    let s = store_with_grant(prefix)?;
    write_blocking(&s, |tx| tx.token_put(&token("r1", "g1", Some("h1")))).unwrap();
    Some(s)
}

/// What the token endpoint does with refresh token `h1`, named ahead:
/// spend it and mint `next` while the grant is active; once spent, a reuse
/// that revokes the grant. `then` runs after (another write, or a failure).
fn refresh_h1(
    next: &'static str,
    then: fn(&mut dyn Tx) -> Result<()>,
) -> (Work, Option<TokenLookup>) {
    let work: Work = Box::new(move |tx: &mut dyn Tx| {
        let mut t = tx.token_by_hash("h1")?.unwrap();
        let mut g = tx.grant_get(&t.gid)?.unwrap();
        if t.status == TokenStatus::Used {
            crate::service::revoke_grant(tx, &mut g, 5, "refresh_token_reuse")?;
            return Ok(());
        }
        if g.status != crate::model::GrantStatus::Active {
            return Err(Error::InvalidGrant("revoked".into()));
        }
        t.status = TokenStatus::Used;
        tx.token_put(&t)?;
        tx.token_put(&token(next, "g1", Some(&format!("h-{next}"))))?;
        tx.audit_append(4, "alice", "refresh", next)?;
        then(tx)
    });
    (work, Some(TokenLookup::Hash("h1".into())))
}

/// What the refresh tests look at afterwards: tokens `r1`, `r2`, `r3` and
/// grant `g1`.
fn tokens_and_grant(
    s: &Arc<dyn Store>,
) -> (Option<TokenRec>, Option<TokenRec>, Option<TokenRec>, Grant) {
    read_blocking(s, |tx| {
        Ok((
            tx.token_get("r1")?,
            tx.token_get("r2")?,
            tx.token_get("r3")?,
            tx.grant_get("g1")?.unwrap(),
        ))
    })
    .unwrap()
}

/// A write that is not held back: the rows held so far go to the server.
fn another_write(tx: &mut dyn Tx) -> Result<()> {
    tx.owner_ensure("bob", 2)
}

fn nothing(_: &mut dyn Tx) -> Result<()> {
    Ok(())
}

/// The tokens of a batch are read together before its first job; a token
/// the batch spent is seen spent by a later job of it, also once the
/// spending job's rows went to the server (a job between wrote something
/// else): the second use is a reuse, which revokes the grant.
#[test]
fn a_token_read_ahead_and_spent_in_the_batch_is_seen_spent() {
    let Some(s) = store_with_refresh_token("ahead") else {
        return;
    };
    let out = one_batch_reading(
        &s,
        vec![
            refresh_h1("r2", nothing),
            (Box::new(another_write), None),
            refresh_h1("r3", nothing),
        ],
    );
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    let (r1, r2, r3, g) = tokens_and_grant(&s);
    assert_eq!(r1.unwrap().status, TokenStatus::Used);
    assert!(r2.is_some());
    assert!(r3.is_none(), "the reuse minted nothing");
    assert_eq!(g.status, crate::model::GrantStatus::Revoked);
    chain_whole(&s);
}

/// A job that spent a token read ahead and then failed is undone: the next
/// job of the batch finds the token unspent (no false reuse) and spends it.
#[test]
fn a_token_spent_by_a_job_that_failed_is_unspent_for_the_next_job() {
    let Some(s) = store_with_refresh_token("undone") else {
        return;
    };
    let fail = |tx: &mut dyn Tx| -> Result<()> {
        another_write(tx)?;
        Err(Error::InvalidRequest("fails after its writes".into()))
    };
    let out = one_batch_reading(&s, vec![refresh_h1("r2", fail), refresh_h1("r3", nothing)]);
    assert!(out[0].is_err() && out[1].is_ok(), "{out:?}");
    let (r1, r2, r3, g) = tokens_and_grant(&s);
    assert_eq!(r1.unwrap().status, TokenStatus::Used);
    assert!(r2.is_none(), "the failed job left nothing");
    assert!(r3.is_some());
    assert_eq!(g.status, crate::model::GrantStatus::Active);
    chain_whole(&s);
}

/// A grant written in the batch (here revoked) is read as written by a
/// later job, not as it was read before the first.
#[test]
fn a_grant_written_in_the_batch_is_read_as_written() {
    let Some(s) = store_with_refresh_token("grant") else {
        return;
    };
    let revoke: Work = Box::new(|tx: &mut dyn Tx| {
        let mut g = tx.grant_get("g1")?.unwrap();
        g.status = crate::model::GrantStatus::Revoked;
        tx.grant_put(&g)
    });
    let out = one_batch_reading(
        &s,
        vec![
            (revoke, Some(TokenLookup::Hash("h1".into()))),
            refresh_h1("r2", nothing),
        ],
    );
    assert!(out[0].is_ok(), "{out:?}");
    assert!(matches!(out[1], Err(Error::InvalidGrant(_))), "{out:?}");
    let (r1, r2) = read_blocking(&s, |tx| Ok((tx.token_get("r1")?, tx.token_get("r2")?))).unwrap();
    assert_eq!(r1.unwrap().status, TokenStatus::Active);
    assert!(r2.is_none());
}

/// A job whose first statement is a read (no savepoint yet) after an
/// earlier job's pipelined write failed: the read fails with the aborted
/// transaction, and is charged to the job that failed; the jobs before that
/// one commit.
#[test]
fn a_read_after_a_failed_pipelined_write_fails_only_from_that_write_on() {
    let Some(s) = store_with_refresh_token("readafter") else {
        return;
    };
    let put = |gid: &'static str, enroll: &'static str| -> Work {
        Box::new(move |tx: &mut dyn Tx| {
            tx.grant_put(&grant(gid, enroll))?;
            tx.audit_append(2, "alice", "test", gid).map(drop)
        })
    };
    let read: Work = Box::new(|tx: &mut dyn Tx| {
        assert!(tx.token_by_hash("not-named")?.is_none());
        tx.audit_append(3, "alice", "test", "read").map(drop)
    });
    // `gb` takes `g1`'s enrollment hash: its write fails when answered.
    let out = one_batch(&s, vec![put("ga", "ea"), put("gb", "e1"), read]);
    assert!(out[0].is_ok(), "{out:?}");
    assert!(out[1].is_err() && out[2].is_err(), "{out:?}");
    let (ga, gb) = read_blocking(&s, |tx| Ok((tx.grant_get("ga")?, tx.grant_get("gb")?))).unwrap();
    assert!(ga.is_some() && gb.is_none());
    let chain = chain_whole(&s);
    assert!(chain.iter().any(|r| r.detail == "ga"));
    assert!(!chain.iter().any(|r| r.detail == "gb" || r.detail == "read"));
}

/// A token row no broker can read (damaged, or written by a newer one)
/// fails only the job that reads it: the batch's read-ahead is given up
/// and every other job reads its own token and commits.
#[test]
fn an_unreadable_token_row_fails_only_the_job_that_reads_it() {
    let Some(pg) = pg_store("damaged") else {
        return;
    };
    let s: Arc<dyn Store> = pg.clone();
    write_blocking(&s, |tx| {
        tx.owner_ensure("alice", 1)?;
        tx.grant_put(&grant("g1", "e1"))?;
        tx.token_put(&token("r0", "g1", Some("h0")))?;
        tx.token_put(&token("r1", "g1", Some("h1")))
    })
    .unwrap();
    let c = super::super::wait(&pg.rt, pg.pool.get()).unwrap();
    super::super::wait(
        &pg.rt,
        c.batch_execute("UPDATE tokens SET data = '{' WHERE jti = 'r0'"),
    )
    .unwrap();
    drop(c);
    let damaged: Work = Box::new(|tx: &mut dyn Tx| tx.token_by_hash("h0").map(drop));
    let out = one_batch_reading(
        &s,
        vec![
            (damaged, Some(TokenLookup::Hash("h0".into()))),
            refresh_h1("r2", nothing),
            (Box::new(another_write), None),
        ],
    );
    assert!(
        matches!(&out[0], Err(Error::Server(m)) if m.contains("unreadable")),
        "{out:?}"
    );
    assert!(out[1].is_ok() && out[2].is_ok(), "{out:?}");
    let (r1, r2, _, _) = tokens_and_grant(&s);
    assert_eq!(r1.unwrap().status, TokenStatus::Used);
    assert!(r2.is_some());
}

/// A job that reads a token another job of the batch wrote, and fails
/// without sending anything, is told its own error only once that other
/// job's writes are known to have succeeded: here they fail at the server
/// (a second token with `r9`'s hash), so the token it read spent is not
/// spent, and it is told the store failed, not that the token was spent.
#[test]
fn a_job_that_read_a_failed_jobs_write_is_told_the_store_failed() {
    let Some(s) = store_with_refresh_token("readfailed") else {
        return;
    };
    write_blocking(&s, |tx| tx.token_put(&token("r9", "g1", Some("h9")))).unwrap();
    // The writer's connection prepares the statements first, so that the
    // failing job's writes go out without waiting for any answer.
    let warm: Work = Box::new(|tx: &mut dyn Tx| {
        tx.token_put(&token("w1", "g1", Some("hw")))?;
        tx.attempt_add("warm", 1, 1)
    });
    assert!(one_batch(&s, vec![warm])[0].is_ok());
    let clash: Work = Box::new(|tx: &mut dyn Tx| {
        let mut t = tx.token_by_hash("h1")?.unwrap();
        t.status = TokenStatus::Used;
        tx.token_put(&t)?;
        tx.token_put(&token("rx", "g1", Some("h9")))?;
        tx.attempt_add("clash", 2, 1)
    });
    let second: Work = Box::new(|tx: &mut dyn Tx| {
        let t = tx.token_by_hash("h1")?.unwrap();
        if t.status != TokenStatus::Active {
            return Err(Error::InvalidGrant("spent".into()));
        }
        Ok(())
    });
    let h1 = || Some(TokenLookup::Hash("h1".into()));
    let out = one_batch_reading(&s, vec![(clash, h1()), (second, h1())]);
    assert!(out[0].is_err(), "{out:?}");
    let (r1, _, _, _) = tokens_and_grant(&s);
    assert_eq!(r1.unwrap().status, TokenStatus::Active);
    assert!(!matches!(out[1], Err(Error::InvalidGrant(_))), "{out:?}");
}
