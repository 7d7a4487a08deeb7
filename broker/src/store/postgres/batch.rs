//! The writer thread of the PostgreSQL store: it takes the queued jobs in
//! batches and runs each batch as one transaction under the writers' lock
//! (see the module's documentation in `postgres/mod.rs`).

use std::sync::mpsc::Receiver;

use deadpool_postgres::{ClientWrapper, Pool};
use protonpass_agent::Error;

use super::conn::{Batch, PgTx};
use super::{MAX_BATCH, Queued, pg_err, pool_err, wait};
use crate::store::{Finish, Job, Result, TokenLookup};

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

pub(super) fn writer(pool: &Pool, rt: &tokio::runtime::Handle, rx: Receiver<Queued>) {
    while let Ok(first) = rx.recv() {
        let mut batch = Vec::new();
        let mut reads = Vec::new();
        let mut queued = Some(first);
        while let Some((job, read)) = queued {
            batch.push(job);
            reads.extend(read);
            queued = match batch.len() < MAX_BATCH {
                true => rx.try_recv().ok(),
                false => None,
            };
        }
        let client = match wait(rt, pool.get()) {
            Ok(c) => c,
            Err(e) => {
                // Dropping the jobs tells every caller the store is unavailable.
                let _ = pool_err(e);
                continue;
            }
        };
        run_batch(&client, rt, batch, reads);
    }
}

/// A job run whose statements may not all be answered yet: done once they
/// are, failed with them if one of them (or one before) failed.
struct Tentative {
    /// The numbers of its statements ([`PgTx::sent_count`]), from its
    /// `SAVEPOINT` to its `RELEASE` (included); `None`: it sent none, its
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
/// told it succeeded. The tokens the jobs named (`reads`) are read together
/// first (`prefetch.rs`).
fn run_batch(
    client: &ClientWrapper,
    rt: &tokio::runtime::Handle,
    batch: Vec<Job>,
    reads: Vec<TokenLookup>,
) {
    let state = Batch::default();
    let mut tx = PgTx::in_batch(client, rt, &state);
    let mut finishes: Vec<Finish> = Vec::with_capacity(batch.len());
    let mut window: Vec<Tentative> = Vec::new();
    // A failed read loses the transaction: every job is dropped (unavailable).
    let mut broken = tx.prefetch(reads).is_err();
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
            // Its answer waits with the jobs before it: what it read may
            // be their writes, sent and not yet answered; if one of them
            // fails, it is told so instead ([`settle`]).
            state.undo_job(head.clone());
            window.push(Tentative {
                range: None,
                head,
                finish,
            });
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
    state.forget_prefetch();
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
#[path = "batch_tests.rs"]
mod tests;
