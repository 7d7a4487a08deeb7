//! The writer thread of the PostgreSQL store: it takes the queued jobs in
//! batches and runs each batch as one transaction under the writers' lock
//! (see the module's documentation in `postgres/mod.rs`).

use std::sync::mpsc::Receiver;

use deadpool_postgres::{ClientWrapper, Pool};
use protonpass_agent::Error;

use super::conn::{Batch, PgTx};
use super::{MAX_BATCH, pg_err, pool_err, wait};
use crate::store::{Finish, Job, Result};

/// Fail every job of a batch: dropping a job tells its caller the store is
/// unavailable; finishes report the failure.
fn fail_all(finishes: Vec<Finish>) {
    for f in finishes {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f(Err(Error::TemporarilyUnavailable("storage failure".into())))
        }))
        .is_err()
        {
            tracing::error!("a write job's completion panicked");
        }
    }
}

pub(super) fn writer(pool: &Pool, rt: &tokio::runtime::Handle, rx: Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let client = match wait(rt, pool.get()) {
            Ok(c) => c,
            Err(e) => {
                // Dropping the jobs tells every caller the store is unavailable.
                let _ = pool_err(e);
                continue;
            }
        };
        run_batch(&client, rt, batch);
    }
}

/// A job run whose statements may not all be answered yet: done once they
/// are, failed with them if one of them (or one before) failed.
struct Tentative {
    /// The numbers of its statements ([`PgTx::sent_count`]), from its
    /// `SAVEPOINT` to its `RELEASE` (excluded); `None`: it sent none, its
    /// rows are held back or went out with the batch's own statements.
    range: Option<(usize, usize)>,
    /// The audit head before it.
    head: Option<(i64, String)>,
    finish: Option<Finish>,
}

/// One batch: one transaction under the writers' lock. A job's token and
/// audit rows are held back (`rows.rs`) and sent with the batch's other rows
/// in one statement per table before `COMMIT`; its reads of tokens, grants,
/// resources and the audit head need no savepoint (what it holds back is
/// merged in). A job that sends anything else (another write, another read)
/// first sends the rows held so far, then gets its own savepoint. The
/// statements are pipelined (see [`PgTx`]) across jobs too: a job that
/// succeeded does not wait for the answers of the writes it sent; the next
/// job's first read (or the batch's end) reads them. A failed statement of a
/// job aborts the transaction there, so every statement after it fails too:
/// the job and the jobs after it are rolled back together (to the savepoint
/// of the first, the only one a failed `RELEASE` left), those before it stay
/// done. A failure outside any job's savepoint (a read of a job without one,
/// the rows sent together, `COMMIT`) fails the whole batch: no job of it is
/// told it succeeded.
fn run_batch(client: &ClientWrapper, rt: &tokio::runtime::Handle, batch: Vec<Job>) {
    let state = Batch::default();
    let mut tx = PgTx::in_batch(client, rt, &state);
    let mut finishes: Vec<Finish> = Vec::with_capacity(batch.len());
    let mut window: Vec<Tentative> = Vec::new();
    let mut broken = false;
    for job in batch {
        if broken {
            // The connection or the transaction is gone: so is the work of
            // the jobs before, and the rest cannot run (dropped: unavailable).
            continue;
        }
        let head = state.head();
        tx.start_job();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut tx)));
        let (ok, finish) = match run {
            Ok((ok, finish)) => (ok, Some(finish)),
            Err(_) => {
                tracing::error!("a write job panicked; it was rolled back");
                (false, None)
            }
        };
        let savepoint = tx.job_savepoint();
        if tx.lost() {
            finishes.extend(finish);
            broken = true;
            continue;
        }
        if ok {
            let range = savepoint.map(|s| {
                tx.send_batch("RELEASE job");
                (s, tx.sent_count())
            });
            window.push(Tentative {
                range,
                head,
                finish,
            });
            continue;
        }
        if savepoint.is_none() && !tx.has_failures() {
            // Nothing of it reached the server (its reads aside): forget it.
            state.undo_job(head);
            finishes.extend(finish);
            continue;
        }
        // The job failed, or a statement it or a job before it sent did:
        // undo its work (and theirs).
        match settle(&tx, &mut window, &mut finishes, savepoint) {
            Found::Nothing => {
                finishes.extend(finish);
                if savepoint.is_some() {
                    broken = roll_back(&tx, &state, head);
                } else {
                    state.undo_job(head);
                }
            }
            Found::Window(e, h) => {
                if let Some(f) = finish {
                    finish_now(f, Err(e));
                }
                broken = roll_back(&tx, &state, h);
            }
            Found::Current(e) => {
                if let Some(f) = finish {
                    finish_now(f, Err(e));
                }
                broken = roll_back(&tx, &state, head);
            }
            Found::Batch => {
                finishes.extend(finish);
                broken = true;
            }
        }
    }
    if !broken {
        match settle(&tx, &mut window, &mut finishes, None) {
            Found::Nothing => {}
            Found::Window(_, h) => broken = roll_back(&tx, &state, h),
            Found::Current(_) | Found::Batch => broken = true,
        }
    }
    // A job's work is done or undone: what is left is the batch's own.
    for t in window {
        finishes.extend(t.finish);
    }
    if broken {
        tx.send_batch("ROLLBACK");
        let _ = tx.flush();
        fail_all(finishes);
        return;
    }
    let commit = tx.commit();
    if commit.is_err() {
        tx.send_batch("ROLLBACK");
        let _ = tx.flush();
    }
    for f in finishes {
        finish_now(f, commit.clone());
    }
}

/// What [`settle`] found.
enum Found {
    /// Every statement sent succeeded; the jobs of the window are done.
    Nothing,
    /// A job of the window failed: it and those after it were told; the
    /// audit head from before it.
    Window(Error, Option<(i64, String)>),
    /// A statement of the current job (after its savepoint) failed; the
    /// jobs of the window are done.
    Current(Error),
    /// A statement outside every job's savepoint failed: the batch is lost.
    Batch,
}

/// Wait for the answers of every statement sent, and charge the first
/// failure to the job whose savepoint holds it: the jobs of `window` before
/// it are done (their finishes wait for the commit); the one it belongs to
/// and those after it fail with it. `current`: the savepoint of the job that
/// is running, if any.
fn settle(
    tx: &PgTx<'_>,
    window: &mut Vec<Tentative>,
    finishes: &mut Vec<Finish>,
    current: Option<usize>,
) -> Found {
    let Some((at, e)) = tx.settle().into_iter().next() else {
        finishes.extend(window.drain(..).filter_map(|t| t.finish));
        return Found::Nothing;
    };
    let e = pg_err(e);
    let first = window
        .iter()
        .position(|t| t.range.is_some_and(|(s, end)| s <= at && at < end));
    if let Some(j) = first {
        let failing = window.split_off(j);
        finishes.extend(window.drain(..).filter_map(|t| t.finish));
        let head = failing.first().and_then(|t| t.head.clone());
        for t in failing {
            if let Some(f) = t.finish {
                finish_now(f, Err(e.clone()));
            }
        }
        return Found::Window(e, head);
    }
    if current.is_some_and(|s| s <= at) {
        finishes.extend(window.drain(..).filter_map(|t| t.finish));
        return Found::Current(e);
    }
    Found::Batch
}

/// Undo the work of the failed job (the savepoint left is its own), put
/// back the batch's knowledge from before it; whether the transaction is
/// gone too. No row was held when that savepoint was set: none is now.
fn roll_back(tx: &PgTx<'_>, state: &Batch, head: Option<(i64, String)>) -> bool {
    state.forget_rows();
    state.set_head(head);
    state.forget_resources();
    state.forget_grant();
    tx.send_batch("ROLLBACK TO job; RELEASE job");
    tx.flush().is_err()
}

/// Tell a job's caller its outcome.
fn finish_now(f: Finish, r: Result<()>) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(r))).is_err() {
        tracing::error!("a write job's completion panicked");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Arc;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    use super::super::{PgStore, PgUrl};
    use crate::model::{Grant, TokenKind, TokenRec, TokenStatus};
    use crate::store::{Result, Store, Tx, make_job, read_blocking, write_blocking};

    /// A write job's work, for [`one_batch`].
    type Work = Box<dyn FnOnce(&mut dyn Tx) -> Result<()> + Send>;

    /// A fresh store, or `None` without a test database.
    fn store(prefix: &str) -> Option<Arc<dyn Store>> {
        let base = protonpass_e2e::test_store()?;
        let url = protonpass_e2e::fresh_database(base.trim(), prefix);
        let s: Arc<dyn Store> = PgStore::open(&PgUrl::parse(&url).unwrap()).unwrap();
        Some(s)
    }

    /// Run `works` as one batch of the writer (held by a first job while
    /// they queue); their outcomes, in order.
    fn one_batch(s: &Arc<dyn Store>, works: Vec<Work>) -> Vec<Result<()>> {
        let (started, wait_started) = channel();
        s.submit(make_job(
            move |_tx: &mut dyn Tx| {
                let _ = started.send(());
                std::thread::sleep(Duration::from_millis(300));
                Ok(())
            },
            |_| {},
        ))
        .unwrap();
        wait_started.recv().unwrap();
        let answers: Vec<_> = works
            .into_iter()
            .map(|w| {
                let (done, answer) = channel::<Result<()>>();
                s.submit(make_job(w, move |r| {
                    let _ = done.send(r);
                }))
                .unwrap();
                answer
            })
            .collect();
        answers.into_iter().map(|a| a.recv().unwrap()).collect()
    }

    fn token(jti: &str, gid: &str, hash: Option<&str>) -> TokenRec {
        TokenRec {
            jti: jti.into(),
            gid: gid.into(),
            owner: "alice".into(),
            kind: if hash.is_some() {
                TokenKind::Refresh
            } else {
                TokenKind::Access
            },
            client_id: "agent-a".into(),
            scope: "files:read".into(),
            aud: None,
            iat: 1,
            exp: 3601,
            jkt: "jkt".into(),
            hash: hash.map(Into::into),
            status: TokenStatus::Active,
        }
    }

    /// The audit chain is whole: positions 1.., each linked to the one before.
    fn chain_whole(s: &Arc<dyn Store>) -> Vec<crate::model::AuditRecord> {
        let chain = read_blocking(s, |tx| tx.audit_page(0, 1000)).unwrap();
        let mut prev = crate::audit::GENESIS.to_owned();
        for (i, r) in chain.iter().enumerate() {
            assert_eq!(r.seq, i as i64 + 1);
            assert_eq!(r.prev, prev);
            let hash =
                crate::audit::record_hash(r.seq, r.ts, &r.owner, &r.event, &r.detail, &r.prev);
            assert_eq!(r.hash, hash);
            prev = r.hash.clone();
        }
        chain
    }

    /// A refresh token spent by a job is seen spent by the next job of the
    /// same batch (its rows are held back, not yet sent): the second use is
    /// a reuse, which revokes the grant; everything commits, in order.
    #[test]
    fn a_second_use_of_a_refresh_token_in_one_batch_is_a_reuse() {
        let Some(s) = store("reuse") else {
            return;
        };
        write_blocking(&s, |tx| {
            tx.owner_ensure("alice", 1)?;
            tx.grant_put(&grant("g1", "e1"))?;
            tx.token_put(&token("r1", "g1", Some("h1")))
        })
        .unwrap();
        // What the token endpoint does with a refresh token (spend it, mint
        // the next one) or, once spent, with its reuse (revoke the grant).
        let use_once = |next: &'static str| -> Work {
            Box::new(move |tx: &mut dyn Tx| {
                let mut t = tx.token_by_hash("h1")?.unwrap();
                let mut g = tx.grant_get(&t.gid)?.unwrap();
                if t.status == TokenStatus::Used {
                    crate::service::revoke_grant(tx, &mut g, 5, "refresh_token_reuse")?;
                    return Ok(());
                }
                assert_eq!(t.status, TokenStatus::Active);
                t.status = TokenStatus::Used;
                tx.token_put(&t)?;
                tx.token_put(&token(next, "g1", Some(&format!("h-{next}"))))?;
                tx.token_put(&token(&format!("a-{next}"), "g1", None))?;
                tx.audit_append(4, "alice", "refresh", next)?;
                Ok(())
            })
        };
        let out = one_batch(&s, vec![use_once("r2"), use_once("r3")]);
        assert!(out.iter().all(Result::is_ok), "{out:?}");
        let (r1, r2, r3, a2, g) = read_blocking(&s, |tx| {
            Ok((
                tx.token_get("r1")?,
                tx.token_by_hash("h-r2")?,
                tx.token_get("r3")?,
                tx.token_get("a-r2")?,
                tx.grant_get("g1")?,
            ))
        })
        .unwrap();
        assert_eq!(r1.unwrap().status, TokenStatus::Used);
        assert_eq!(r2.unwrap().jti, "r2");
        assert!(a2.is_some());
        assert!(r3.is_none(), "the reuse minted nothing");
        assert_eq!(g.unwrap().status, crate::model::GrantStatus::Revoked);
        let chain = chain_whole(&s);
        let events: Vec<&str> = chain.iter().map(|r| r.event.as_str()).collect();
        assert_eq!(events, ["refresh", "revoke"]);
        // The rows of one batch keep the order they were written in.
        let order = read_blocking(&s, |tx| tx.tokens_of_grant("g1")).unwrap();
        let jtis: Vec<&str> = order.iter().map(|t| t.jti.as_str()).collect();
        assert_eq!(jtis, ["a-r2", "r2", "r1"]);
    }

    /// A job that fails after writing leaves nothing: its held rows are
    /// dropped, the jobs around it commit, and the audit chain has no gap.
    /// A job whose statement must see the held rows (a listing of tokens)
    /// sees them.
    #[test]
    fn a_failed_job_leaves_no_row_and_a_listing_sees_the_rows_held() {
        let Some(s) = store("held") else {
            return;
        };
        write_blocking(&s, |tx| {
            tx.owner_ensure("alice", 1)?;
            tx.grant_put(&grant("g1", "e1"))
        })
        .unwrap();
        let put = |jti: &'static str, fail: bool| -> Work {
            Box::new(move |tx: &mut dyn Tx| {
                tx.token_put(&token(jti, "g1", None))?;
                tx.audit_append(3, "alice", "test", jti)?;
                if fail {
                    return Err(protonpass_agent::Error::InvalidGrant("no".into()));
                }
                Ok(())
            })
        };
        let list: Work = Box::new(|tx: &mut dyn Tx| {
            let seen: Vec<String> = tx
                .tokens_of_grant("g1")?
                .into_iter()
                .map(|t| t.jti)
                .collect();
            assert_eq!(seen, ["c", "a"]);
            tx.token_put(&token("d", "g1", None))?;
            tx.audit_append(3, "alice", "test", "d")?;
            Err(protonpass_agent::Error::InvalidGrant("listed".into()))
        });
        let out = one_batch(
            &s,
            vec![
                put("a", false),
                put("b", true),
                put("c", false),
                list,
                put("e", false),
            ],
        );
        let ok: Vec<bool> = out.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, false, true, false, true], "{out:?}");
        let stored = read_blocking(&s, |tx| tx.tokens_of_grant("g1")).unwrap();
        let jtis: Vec<&str> = stored.iter().map(|t| t.jti.as_str()).collect();
        assert_eq!(jtis, ["e", "c", "a"]);
        let chain = chain_whole(&s);
        let details: Vec<&str> = chain.iter().map(|r| r.detail.as_str()).collect();
        assert_eq!(details, ["a", "c", "e"]);
    }

    /// The rows held back go out together at the batch's end: when that
    /// statement fails (here two refresh tokens with one hash), the whole
    /// batch is rolled back and every job of it is told it failed; nothing
    /// acknowledged is lost, the audit chain has no gap, and the next batch
    /// goes on from the chain's head.
    #[test]
    fn a_failure_found_at_the_batch_end_fails_the_batch_and_acknowledges_nothing() {
        let Some(s) = store("end") else {
            return;
        };
        write_blocking(&s, |tx| {
            tx.owner_ensure("alice", 1)?;
            tx.grant_put(&grant("g1", "e1"))?;
            tx.audit_append(2, "alice", "test", "before")?;
            Ok(())
        })
        .unwrap();
        let put = |jti: &'static str, hash: &'static str| -> Work {
            Box::new(move |tx: &mut dyn Tx| {
                tx.token_put(&token(jti, "g1", Some(hash)))?;
                tx.audit_append(3, "alice", "test", jti)?;
                Ok(())
            })
        };
        let out = one_batch(&s, vec![put("a", "ha"), put("b", "hb"), put("c", "ha")]);
        assert!(out.iter().all(Result::is_err), "{out:?}");
        let stored = read_blocking(&s, |tx| tx.tokens_of_grant("g1")).unwrap();
        assert!(stored.is_empty(), "{stored:?}");
        let out = one_batch(&s, vec![put("d", "hd")]);
        assert!(out[0].is_ok(), "{out:?}");
        let chain = chain_whole(&s);
        let details: Vec<&str> = chain.iter().map(|r| r.detail.as_str()).collect();
        assert_eq!(details, ["before", "d"]);
    }

    fn grant(gid: &str, enroll: &str) -> Grant {
        Grant {
            gid: gid.into(),
            owner: "alice".into(),
            agent: "agent-a".into(),
            scope: "files:read".into(),
            audiences: vec!["https://api.example".into()],
            jkt: Some(format!("jkt-{gid}")),
            status: crate::model::GrantStatus::Active,
            origin: "pre-authorized".into(),
            created_at: 1,
            ttl: 3600,
            expires_at: 3601,
            enroll_hash: Some(enroll.into()),
            revoked_at: None,
        }
    }

    /// Jobs of one batch do not wait for their writes' answers: a write
    /// that fails later (here a second grant with the same enrollment hash)
    /// undoes its own job, and any job after it in the batch is told it
    /// failed and left nothing; the jobs before it are committed, and the
    /// audit chain has no gap.
    #[test]
    fn a_pipelined_write_that_fails_is_undone_with_nothing_acknowledged_lost() {
        let Some(base) = protonpass_e2e::test_store() else {
            return;
        };
        let url = protonpass_e2e::fresh_database(base.trim(), "pipe");
        let s: Arc<dyn Store> = PgStore::open(&PgUrl::parse(&url).unwrap()).unwrap();
        write_blocking(&s, |tx| {
            tx.owner_ensure("alice", 1)?;
            tx.grant_put(&grant("g0", "e0"))
        })
        .unwrap();
        // The writer is held by a first job while the next ones queue, so
        // that they run as one batch.
        let (started, wait_started) = channel();
        s.submit(make_job(
            move |_tx: &mut dyn Tx| {
                let _ = started.send(());
                std::thread::sleep(Duration::from_millis(300));
                Ok(())
            },
            |_| {},
        ))
        .unwrap();
        wait_started.recv().unwrap();
        let mut answers = Vec::new();
        for (gid, enroll) in [("ga", "ea"), ("gb", "e0"), ("gc", "ec")] {
            let (done, answer) = channel::<Result<()>>();
            let g = grant(gid, enroll);
            s.submit(make_job(
                move |tx: &mut dyn Tx| {
                    tx.grant_put(&g)?;
                    tx.audit_append(2, "alice", "test", gid)?;
                    Ok(())
                },
                move |r| {
                    let _ = done.send(r);
                },
            ))
            .unwrap();
            answers.push((gid, answer));
        }
        for (gid, answer) in answers {
            let r = answer.recv().unwrap();
            let stored = read_blocking(&s, |tx| tx.grant_get(gid)).unwrap().is_some();
            match gid {
                "ga" => assert!(r.is_ok() && stored, "{r:?}"),
                "gb" => assert!(r.is_err() && !stored, "{r:?}"),
                _ => assert_eq!(r.is_ok(), stored, "{r:?}"),
            }
        }
        let chain = read_blocking(&s, |tx| tx.audit_page(0, 100)).unwrap();
        let mut prev = crate::audit::GENESIS.to_owned();
        for (i, r) in chain.iter().enumerate() {
            assert_eq!(r.seq, i as i64 + 1);
            assert_eq!(r.prev, prev);
            let hash =
                crate::audit::record_hash(r.seq, r.ts, &r.owner, &r.event, &r.detail, &r.prev);
            assert_eq!(r.hash, hash);
            prev = r.hash.clone();
        }
        assert!(chain.iter().any(|r| r.detail == "ga"));
        assert!(!chain.iter().any(|r| r.detail == "gb"));
    }
}
