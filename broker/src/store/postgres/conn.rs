//! The connection a PostgreSQL [`Tx`](crate::store::Tx) runs on, and the helpers
//! its queries share: statements prepared once per connection and cached,
//! rows decoded with typed errors (a failure is `503`, never a panic).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use deadpool_postgres::ClientWrapper;
use futures_util::future::MaybeDone;
use protonpass_agent::Error;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};

use super::prefetch::Prefetch;
use super::rows::{Mark, Rows};
use super::{BEGIN, Unpark, pg_err, wait};
use crate::model::{AuditRecord, Grant, Resource, TokenRec};
use crate::store::Result;

/// Statement parameters.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(super) fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Server(format!("encoding failed: {e}")))
}

pub(super) fn from_json<T: DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Server(format!("stored record unreadable: {e}")))
}

/// Whether `key` can name a stored row: PostgreSQL text holds no NUL, so a
/// key with one names none, and sending it would fail the statement (in the
/// writer, before a job's savepoint, the whole batch). Readers of a key from
/// a request answer "not found" without asking.
pub(super) fn storable(key: &str) -> bool {
    !key.contains('\0')
}

/// Column `i` of a row.
pub(super) fn col<'r, T: FromSql<'r>>(r: &'r Row, i: usize) -> Result<T> {
    r.try_get(i).map_err(pg_err)
}

/// An audit row, as `SELECT seq, ts, owner, event, detail, prev, hash` reads it.
pub(super) fn audit_row(r: &Row) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: col(r, 0)?,
        ts: col(r, 1)?,
        owner: col(r, 2)?,
        event: col(r, 3)?,
        detail: col(r, 4)?,
        prev: col(r, 5)?,
        hash: col(r, 6)?,
    })
}

/// A statement parameter owned by a statement sent ahead ([`PgTx::send`]).
pub(super) type Owned = Box<dyn ToSql + Sync + Send>;

/// A statement sent and not yet answered.
type Sent<'c> = Pin<Box<dyn Future<Output = std::result::Result<u64, tokio_postgres::Error>> + 'c>>;

/// A statement sent ahead, then its answer once read.
type Pending<'c> = MaybeDone<Sent<'c>>;

/// What the writer's batch knows beyond one job. Every write to these
/// tables takes the writers' lock, held for the whole batch: what the batch
/// read stays true until the batch itself changes it.
#[derive(Default)]
pub(super) struct Batch {
    /// The audit chain's head `(seq, hash)` once the batch read or wrote it.
    head: RefCell<Option<(i64, String)>>,
    /// The resources of an audience, once the batch read them (forgotten
    /// when the batch writes a resource or rolls a job back).
    resources: RefCell<HashMap<String, Vec<Resource>>>,
    /// The grant read together with a token (`gid`, and the grant or none),
    /// for the next `grant_get` of it in the batch (the writers' lock keeps
    /// it true): one round trip for both. Forgotten when the batch writes a
    /// grant or rolls a job back.
    grant: RefCell<Option<(String, Option<Grant>)>>,
    /// The token and audit rows written and not sent yet (`rows.rs`).
    rows: RefCell<Rows>,
    /// The rows held when the current job started.
    mark: Cell<Mark>,
    /// The tokens the batch's jobs named, read before the first (`prefetch.rs`).
    pub(super) prefetch: RefCell<Option<Prefetch>>,
}

impl Batch {
    /// The audit head this batch knows.
    pub(super) fn head(&self) -> Option<(i64, String)> {
        self.head.borrow().clone()
    }

    /// Set (or forget, with `None`) the audit head this batch knows.
    pub(super) fn set_head(&self, h: Option<(i64, String)>) {
        *self.head.borrow_mut() = h;
    }

    /// The resources of `audience`, if this batch read them.
    pub(super) fn resources(&self, audience: &str) -> Option<Vec<Resource>> {
        self.resources.borrow().get(audience).cloned()
    }

    /// Keep the resources of `audience` the batch read.
    pub(super) fn keep_resources(&self, audience: &str, r: &[Resource]) {
        self.resources
            .borrow_mut()
            .insert(audience.to_owned(), r.to_vec());
    }

    /// Forget the resources read (a resource was written, or a job rolled
    /// back after reading them).
    pub(super) fn forget_resources(&self) {
        self.resources.borrow_mut().clear();
    }

    /// The grant `gid` if the batch read it with a token.
    pub(super) fn grant(&self, gid: &str) -> Option<Option<Grant>> {
        match &*self.grant.borrow() {
            Some((g, found)) if g == gid => Some(found.clone()),
            _ => None,
        }
    }

    /// Keep the grant `gid` read with a token (`None`: there is no such grant).
    pub(super) fn keep_grant(&self, gid: &str, g: Option<Grant>) {
        *self.grant.borrow_mut() = Some((gid.to_owned(), g));
    }

    /// Forget the grant read (a grant was written, or a job rolled back).
    pub(super) fn forget_grant(&self) {
        *self.grant.borrow_mut() = None;
        self.prefetch_grants_unknown();
    }

    /// A job failed before anything of it reached the server: forget the
    /// rows it wrote and what the batch learnt with it; `head` is the audit
    /// head from before it.
    pub(super) fn undo_job(&self, head: Option<(i64, String)>) {
        self.rows.borrow_mut().truncate(self.mark.get());
        self.set_head(head);
        self.forget_resources();
        // It wrote no grant (nothing of it was sent): the grants read
        // ahead stand.
        *self.grant.borrow_mut() = None;
    }

    /// Forget every row held (the transaction went back to a savepoint set
    /// when none was held).
    pub(super) fn forget_rows(&self) {
        let mut rows = self.rows.borrow_mut();
        rows.truncate((0, 0));
        self.mark.set(rows.mark());
    }

    /// The rows held back.
    pub(super) fn held(&self) -> std::cell::Ref<'_, Rows> {
        self.rows.borrow()
    }

    /// Hold back a token row (the record and its stored form).
    pub(super) fn hold_token(&self, t: TokenRec, data: String) {
        self.rows.borrow_mut().put_token(t, data);
    }

    /// Hold back an audit record until the batch sends its rows.
    pub(super) fn hold_audit(&self, a: AuditRecord) {
        self.rows.borrow_mut().put_audit(a);
    }

    /// The audit chain's head as the rows held say.
    pub(super) fn held_audit_head(&self) -> Option<(i64, String)> {
        self.rows.borrow().audit_head()
    }
}

/// Poll `f` once on this thread (see [`wait`]).
fn poll_once<T>(
    rt: &tokio::runtime::Handle,
    f: Pin<&mut (dyn Future<Output = T> + '_)>,
) -> Poll<T> {
    let _enter = rt.enter();
    let waker = Arc::new(Unpark(std::thread::current())).into();
    f.poll(&mut Context::from_waker(&waker))
}

/// One transaction's (or one reader's) connection.
///
/// In the writer's batch, statements are pipelined: one whose answer the
/// job does not need (a write returning nothing, [`PgTx::send`]) is sent at
/// once; its answer is read while a job of the batch waits for a later
/// statement, and its outcome is told by [`PgTx::settle`] (the writer asks
/// when a job fails and at the batch's end). One `PgTx` serves the whole
/// batch; a job costs one round trip per read, not one per statement (a
/// token read brings its grant along). The server runs them in
/// the order they were sent (one connection), so a read sees every write
/// sent before it.
pub(super) struct PgTx<'c> {
    c: &'c ClientWrapper,
    rt: &'c tokio::runtime::Handle,
    /// The writer's batch; `None` on a reader (autocommit) connection.
    batch: Option<&'c Batch>,
    /// Statements sent and not yet known to be answered, in order.
    sent: RefCell<VecDeque<Pending<'c>>>,
    /// Statements sent so far (the number of the next one).
    count: Cell<usize>,
    /// Statements answered so far (the number of the first in `sent`).
    answered: Cell<usize>,
    /// The statements answered with a failure, by number, until told
    /// ([`PgTx::flush`], [`PgTx::settle`]).
    failed: RefCell<Vec<(usize, tokio_postgres::Error)>>,
    /// The batch's transaction was begun (sent).
    begun: Cell<bool>,
    /// The number of the current job's `SAVEPOINT`, once sent: a job has one
    /// only once it sends a statement that writes or that the rows held
    /// back could change (see [`PgTx::job_statement`]).
    savepoint: Cell<Option<usize>>,
    /// A statement failed outside any job's savepoint: the batch's
    /// transaction is lost.
    lost: Cell<bool>,
}

impl<'c> PgTx<'c> {
    pub(super) fn new(c: &'c ClientWrapper, rt: &'c tokio::runtime::Handle) -> Self {
        PgTx {
            c,
            rt,
            batch: None,
            sent: RefCell::new(VecDeque::new()),
            count: Cell::new(0),
            answered: Cell::new(0),
            failed: RefCell::new(Vec::new()),
            begun: Cell::new(false),
            savepoint: Cell::new(None),
            lost: Cell::new(false),
        }
    }

    /// A job's transaction in the writer's batch.
    pub(super) fn in_batch(
        c: &'c ClientWrapper,
        rt: &'c tokio::runtime::Handle,
        batch: &'c Batch,
    ) -> Self {
        PgTx {
            batch: Some(batch),
            ..PgTx::new(c, rt)
        }
    }

    /// The writer's batch, if this is the writer.
    pub(super) fn batch(&self) -> Option<&'c Batch> {
        self.batch
    }

    /// A job of the batch starts: no savepoint yet, its rows held after
    /// what is held now.
    pub(super) fn start_job(&self) {
        self.savepoint.set(None);
        if let Some(b) = self.batch {
            b.mark.set(b.rows.borrow().mark());
        }
    }

    /// The number of the current job's `SAVEPOINT`, if it has one.
    pub(super) fn job_savepoint(&self) -> Option<usize> {
        self.savepoint.get()
    }

    /// Whether a statement failed outside any job's savepoint (the batch's
    /// transaction is lost).
    pub(super) fn lost(&self) -> bool {
        self.lost.get()
    }

    /// Whether a statement's failure was read and not told yet.
    pub(super) fn has_failures(&self) -> bool {
        !self.failed.borrow().is_empty()
    }

    /// Begin the batch's transaction (and take the writers' lock) before its
    /// first statement.
    fn begin(&self) {
        if !self.begun.replace(true) {
            // Read committed whatever the server's default: each statement
            // after the lock sees what the batches before this one
            // committed.
            self.send_batch(BEGIN);
        }
    }

    /// Send the rows held back (`rows.rs`), in the order written.
    fn send_rows(&self, b: &Batch) -> Result<()> {
        b.prefetch_sent(b.rows.borrow().tokens());
        let statements = b.rows.borrow_mut().take();
        for (sql, p) in statements {
            self.send_raw(sql, p)?;
        }
        Ok(())
    }

    /// Before a statement of the current job that writes, or that reads what
    /// the rows held back could change: the transaction is begun, the rows
    /// of the jobs before this one are sent, the job's savepoint is set (once),
    /// and then its own rows are sent, so that the server sees every write
    /// in the order it was made, and a failure of this job is undone alone.
    fn job_statement(&self) -> Result<()> {
        let Some(b) = self.batch else {
            return Ok(());
        };
        self.begin();
        if self.savepoint.get().is_none() {
            // The rows of the jobs before go out now (the batch's own
            // statements), the job's own after its savepoint.
            let mine = b.rows.borrow_mut().split_off(b.mark.get());
            self.send_rows(b)?;
            self.savepoint.set(Some(self.sent_count()));
            self.send_batch("SAVEPOINT job");
            *b.rows.borrow_mut() = mine;
            b.mark.set((0, 0));
        }
        self.send_rows(b)
    }

    /// Send the rows still held and `COMMIT`; whether every statement of the
    /// transaction succeeded (a `COMMIT` after a failed statement rolls back).
    pub(super) fn commit(&self) -> Result<()> {
        let Some(b) = self.batch else {
            return Ok(());
        };
        if !b.rows.borrow().is_empty() {
            self.begin();
            self.send_rows(b)?;
        }
        if !self.begun.get() {
            // Nothing reached the server: nothing to commit.
            return Ok(());
        }
        self.send_batch("COMMIT");
        self.flush()
    }

    /// Forget the resources the batch read (a resource is written).
    pub(super) fn forget_resources(&self) {
        if let Some(b) = self.batch {
            b.forget_resources();
        }
    }

    /// Forget the grant the batch read with a token (a grant is written).
    pub(super) fn forget_grant(&self) {
        if let Some(b) = self.batch {
            b.forget_grant();
        }
    }

    /// Send `sql` (simple protocol, several statements allowed) without
    /// waiting for its answer ([`PgTx::flush`] does).
    pub(super) fn send_batch(&self, sql: &'static str) {
        let c = self.c;
        self.push(Box::pin(
            async move { c.batch_execute(sql).await.map(|()| 0) },
        ));
    }

    /// Poll a statement once, which puts it on the wire (tokio-postgres sends
    /// a request when its future is first polled), and keep it.
    fn push(&self, f: Sent<'c>) {
        let mut f = MaybeDone::Future(f);
        let pinned: Pin<&mut Pending<'c>> = Pin::new(&mut f);
        let _ = poll_once(self.rt, pinned);
        let mut sent = self.sent.borrow_mut();
        sent.push_back(f);
        self.count.set(self.count.get() + 1);
        self.reap(&mut sent);
    }

    /// The number of statements sent so far.
    pub(super) fn sent_count(&self) -> usize {
        self.count.get()
    }

    /// Take the answered statements at the front of `sent` (answers come
    /// in order), keeping their failures.
    fn reap(&self, sent: &mut VecDeque<Pending<'c>>) {
        while let Some(front) = sent.front_mut() {
            if !matches!(front, MaybeDone::Done(_)) {
                break;
            }
            let out = Pin::new(front).take_output();
            sent.pop_front();
            let n = self.answered.get();
            self.answered.set(n + 1);
            if let Some(Err(e)) = out {
                self.failed.borrow_mut().push((n, e));
            }
        }
    }

    /// Run `f` to completion on this thread while reading the answers of the
    /// statements sent before it. tokio-postgres buffers only a little of an
    /// answer nobody polls and then stops reading the connection: waiting on
    /// `f` alone could wait forever behind an unread earlier answer.
    fn wait_driving<F: Future>(&self, f: F) -> F::Output {
        let mut sent = self.sent.borrow_mut();
        let mut f = std::pin::pin!(f);
        let out = wait(
            self.rt,
            std::future::poll_fn(|cx| {
                for s in sent.iter_mut() {
                    // A `MaybeDone` keeps its output and may be polled again.
                    let _ = Pin::new(s).poll(cx);
                }
                f.as_mut().poll(cx)
            }),
        );
        self.reap(&mut sent);
        out
    }

    /// Wait for the answers of every statement sent; the first failure
    /// not told before.
    pub(super) fn flush(&self) -> Result<()> {
        match self.settle().into_iter().next() {
            Some((_, e)) => Err(pg_err(e)),
            None => Ok(()),
        }
    }

    /// Wait for the answers of every statement sent; the failures not told
    /// before, with the statements' numbers ([`PgTx::sent_count`]).
    pub(super) fn settle(&self) -> Vec<(usize, tokio_postgres::Error)> {
        self.drain();
        std::mem::take(&mut *self.failed.borrow_mut())
    }

    /// Wait for the answers of every statement sent, keeping their failures.
    fn drain(&self) {
        let mut sent = self.sent.borrow_mut();
        wait(
            self.rt,
            std::future::poll_fn(|cx| {
                let mut done = true;
                for s in sent.iter_mut() {
                    done &= Pin::new(s).poll(cx).is_ready();
                }
                if done { Poll::Ready(()) } else { Poll::Pending }
            }),
        );
        self.reap(&mut sent);
    }

    /// Run a statement whose outcome the caller does not need: in the
    /// writer, sent now and checked at the batch's next read or its end (a
    /// failure then fails the job and the batch's later ones: storage
    /// failures are all `503`);
    /// elsewhere, run at once.
    pub(super) fn send(&self, sql: &'static str, p: Vec<Owned>) -> Result<()> {
        if self.batch.is_none() {
            let p: Vec<&(dyn ToSql + Sync)> = p.iter().map(|b| b.as_ref() as _).collect();
            return self.exec(sql, &p).map(|_| ());
        }
        self.job_statement()?;
        self.send_raw(sql, p)
    }

    /// Send a statement in the writer without waiting for its answer. A
    /// statement that cannot be prepared loses the batch.
    fn send_raw(&self, sql: &'static str, p: Vec<Owned>) -> Result<()> {
        // Prepared once per connection (then cached: no round trip), so that
        // the statement itself goes out now, in order.
        let st = match self.wait_driving(self.c.prepare_cached(sql)) {
            Ok(st) => st,
            Err(e) => {
                // Inside a job's savepoint the job is undone alone; before
                // one, the transaction is.
                if self.savepoint.get().is_none() {
                    self.lost.set(true);
                }
                return Err(pg_err(e));
            }
        };
        let c = self.c;
        self.push(Box::pin(async move { c.execute_raw(&st, p).await }));
        Ok(())
    }

    /// Run a statement; the number of rows it changed.
    pub(super) fn exec(&self, sql: &str, p: Params<'_>) -> Result<u64> {
        self.job_statement()?;
        self.wait_driving(async {
            let st = self.c.prepare_cached(sql).await?;
            self.c.execute(&st, p).await
        })
        .map_err(pg_err)
    }

    /// Every row of a query.
    pub(super) fn query(&self, sql: &str, p: Params<'_>) -> Result<Vec<Row>> {
        self.job_statement()?;
        self.wait_driving(async {
            let st = self.c.prepare_cached(sql).await?;
            self.c.query(&st, p).await
        })
        .map_err(pg_err)
    }

    /// Every row of a read that the rows held back cannot change (its
    /// caller merges them in): in the writer, no savepoint and no rows sent
    /// first. A failure there, outside a job's savepoint, loses the batch.
    pub(super) fn light(&self, sql: &str, p: Params<'_>) -> Result<Vec<Row>> {
        if self.batch.is_some() {
            self.begin();
        }
        let r = self.wait_driving(async {
            let st = self.c.prepare_cached(sql).await?;
            self.c.query(&st, p).await
        });
        if r.is_err() && self.batch.is_some() && self.savepoint.get().is_none() {
            // A statement sent before it that failed (an earlier job's
            // write) aborted the transaction and failed this read with it:
            // that job's failure, charged by the writer, not the batch's.
            self.drain();
            if !self.has_failures() {
                self.lost.set(true);
            }
        }
        r.map_err(pg_err)
    }

    /// Every row of a query, mapped by `f`.
    pub(super) fn rows<T>(
        &self,
        sql: &str,
        p: Params<'_>,
        f: impl Fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.query(sql, p)?.iter().map(f).collect()
    }

    /// The first row of a query, mapped by `f`.
    pub(super) fn row<T>(
        &self,
        sql: &str,
        p: Params<'_>,
        f: impl Fn(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        self.query(sql, p)?.first().map(f).transpose()
    }

    /// The first column of the first row, a number.
    pub(super) fn int(&self, sql: &str, p: Params<'_>) -> Result<i64> {
        Ok(self.row(sql, p, |r| col::<i64>(r, 0))?.unwrap_or(0))
    }

    /// The first row's JSON `data`, decoded.
    pub(super) fn one<T: DeserializeOwned>(&self, sql: &str, p: Params<'_>) -> Result<Option<T>> {
        self.row(sql, p, |r| from_json(col::<&str>(r, 0)?))
    }

    /// Every row's JSON `data` of a [`PgTx::light`] read, decoded.
    pub(super) fn light_many<T: DeserializeOwned>(
        &self,
        sql: &str,
        p: Params<'_>,
    ) -> Result<Vec<T>> {
        self.light(sql, p)?
            .iter()
            .map(|r| from_json(col::<&str>(r, 0)?))
            .collect()
    }

    /// Every row's JSON `data`, decoded.
    pub(super) fn many<T: DeserializeOwned>(&self, sql: &str, p: Params<'_>) -> Result<Vec<T>> {
        self.rows(sql, p, |r| from_json(col::<&str>(r, 0)?))
    }
}
