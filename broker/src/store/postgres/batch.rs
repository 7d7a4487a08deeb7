//! The writer thread of the PostgreSQL store: it takes the queued jobs in
//! batches and runs each batch as one transaction under the writers' lock
//! (see the module's documentation in `postgres/mod.rs`).

use std::sync::mpsc::Receiver;

use deadpool_postgres::{ClientWrapper, Pool};
use protonpass_agent::Error;

use super::conn::{Batch, PgTx};
use super::{BEGIN, MAX_BATCH, pg_err, pool_err, wait};
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
    /// The number of its first statement ([`PgTx::sent_count`]).
    start: usize,
    /// The audit head before it.
    head: Option<(i64, String)>,
    finish: Option<Finish>,
}

/// One batch: one transaction under the writers' lock, each job in its own
/// savepoint, the statements pipelined (see [`PgTx`]) across jobs too: a job
/// that succeeded does not wait for the answers of the writes it sent; the
/// next job's first read (or the batch's end) reads them. A failed statement
/// aborts the transaction there, so every statement after it fails too: the
/// job it belongs to and the jobs after it are rolled back together (to the
/// savepoint of the first, the only one a failed `RELEASE` left), those
/// before it stay done.
fn run_batch(client: &ClientWrapper, rt: &tokio::runtime::Handle, batch: Vec<Job>) {
    let state = Batch::default();
    let mut tx = PgTx::in_batch(client, rt, &state);
    let mut begun = false;
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
        let start = tx.sent_count();
        if !begun {
            // Read committed whatever the server's default: each statement
            // after the lock sees what the batches before this one
            // committed. Sent with the first job's statements: a failure
            // fails that job's savepoint, then the batch.
            tx.send_batch(BEGIN);
            begun = true;
        }
        tx.send_batch("SAVEPOINT job");
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut tx)));
        let (ok, finish) = match run {
            Ok((ok, finish)) => (ok, Some(finish)),
            Err(_) => {
                tracing::error!("a write job panicked; it was rolled back");
                (false, None)
            }
        };
        if ok {
            tx.send_batch("RELEASE job");
            window.push(Tentative {
                start,
                head,
                finish,
            });
            continue;
        }
        // The job failed, or a statement it or a job before it sent did:
        // undo its work (and theirs).
        let failed = settle(&tx, &mut window, &mut finishes, start);
        let restore = match &failed {
            Some((_, _, Some(h))) => h.clone(),
            _ => head,
        };
        match (finish, failed) {
            (Some(f), None) => finishes.push(f),
            (Some(f), Some((_, e, _))) => finish_now(f, Err(e)),
            (None, _) => {}
        }
        broken = roll_back(&tx, &state, restore);
    }
    if !broken && let Some((_, _, h)) = settle(&tx, &mut window, &mut finishes, usize::MAX) {
        broken = roll_back(&tx, &state, h.unwrap_or_default());
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
    tx.send_batch("COMMIT");
    let commit = tx.flush();
    if commit.is_err() {
        tx.send_batch("ROLLBACK");
        let _ = tx.flush();
    }
    for f in finishes {
        finish_now(f, commit.clone());
    }
}

/// Wait for the answers of every statement sent. The jobs of `window`
/// before the first failure are done (their finishes wait for the commit);
/// the one it belongs to and those after it fail with it. A failure at or
/// after statement `end` belongs to no job of the window. The first failure,
/// its statement's number, and the audit head before the first job that
/// failed (`None`: no job of the window failed).
#[allow(clippy::type_complexity)]
fn settle(
    tx: &PgTx<'_>,
    window: &mut Vec<Tentative>,
    finishes: &mut Vec<Finish>,
    end: usize,
) -> Option<(usize, Error, Option<Option<(i64, String)>>)> {
    let Some((at, e)) = tx.settle().into_iter().next() else {
        finishes.extend(window.drain(..).filter_map(|t| t.finish));
        return None;
    };
    let e = pg_err(e);
    let first = if at < end {
        window.iter().rposition(|t| t.start <= at)
    } else {
        None
    };
    let failing = first.map_or_else(Vec::new, |j| window.split_off(j));
    finishes.extend(window.drain(..).filter_map(|t| t.finish));
    let head = failing.first().map(|t| t.head.clone());
    for t in failing {
        if let Some(f) = t.finish {
            finish_now(f, Err(e.clone()));
        }
    }
    Some((at, e, head))
}

/// Undo the work of the failed job (the savepoint left is its own), put
/// back the batch's knowledge from before it; whether the transaction is
/// gone too.
fn roll_back(tx: &PgTx<'_>, state: &Batch, head: Option<(i64, String)>) -> bool {
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
    use crate::model::Grant;
    use crate::store::{Result, Store, Tx, make_job, read_blocking, write_blocking};

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
