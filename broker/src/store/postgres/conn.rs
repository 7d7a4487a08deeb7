//! The connection a PostgreSQL [`Tx`](crate::store::Tx) runs on, and the helpers
//! its queries share: statements prepared once per connection and cached,
//! rows decoded with typed errors (a failure is `503`, never a panic).

use std::cell::RefCell;
use std::collections::HashMap;
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

use super::{Unpark, pg_err, wait};
use crate::model::{AuditRecord, Resource};
use crate::store::Result;

/// Statement parameters.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(super) fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Server(format!("encoding failed: {e}")))
}

pub(super) fn from_json<T: DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Server(format!("stored record unreadable: {e}")))
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
/// once; its answer is read while the job waits for a later statement, and
/// its outcome is checked at the end of the job ([`PgTx::flush`]). A job costs one round
/// trip per read plus one, not one per statement. The server runs them in
/// the order they were sent (one connection), so a read sees every write
/// sent before it.
pub(super) struct PgTx<'c> {
    c: &'c ClientWrapper,
    rt: &'c tokio::runtime::Handle,
    /// The writer's batch; `None` on a reader (autocommit) connection.
    batch: Option<&'c Batch>,
    /// Statements sent, answered or not; their outcomes are told at
    /// [`PgTx::flush`].
    sent: RefCell<Vec<Pending<'c>>>,
}

impl<'c> PgTx<'c> {
    pub(super) fn new(c: &'c ClientWrapper, rt: &'c tokio::runtime::Handle) -> Self {
        PgTx {
            c,
            rt,
            batch: None,
            sent: RefCell::new(Vec::new()),
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

    /// Forget the resources the batch read (a resource is written).
    pub(super) fn forget_resources(&self) {
        if let Some(b) = self.batch {
            b.forget_resources();
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
        self.sent.borrow_mut().push(f);
    }

    /// Run `f` to completion on this thread while reading the answers of the
    /// statements sent before it. tokio-postgres buffers only a little of an
    /// answer nobody polls and then stops reading the connection: waiting on
    /// `f` alone could wait forever behind an unread earlier answer.
    fn wait_driving<F: Future>(&self, f: F) -> F::Output {
        let mut sent = self.sent.borrow_mut();
        let mut f = std::pin::pin!(f);
        wait(
            self.rt,
            std::future::poll_fn(|cx| {
                for s in sent.iter_mut() {
                    // A `MaybeDone` keeps its output and may be polled again.
                    let _ = Pin::new(s).poll(cx);
                }
                f.as_mut().poll(cx)
            }),
        )
    }

    /// Wait for the answers of every statement sent; the first failure.
    pub(super) fn flush(&self) -> Result<()> {
        let mut sent = std::mem::take(&mut *self.sent.borrow_mut());
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
        let mut first = Ok(());
        for s in &mut sent {
            // Each is answered: the wait above ends only when all are.
            if let Some(Err(e)) = Pin::new(s).take_output()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first.map_err(pg_err)
    }

    /// Run a statement whose outcome the caller does not need: in the
    /// writer, sent now and checked when the job ends (a failure then fails
    /// the job, as a failure here would: storage failures are all `503`);
    /// elsewhere, run at once.
    pub(super) fn send(&self, sql: &'static str, p: Vec<Owned>) -> Result<()> {
        if self.batch.is_none() {
            let p: Vec<&(dyn ToSql + Sync)> = p.iter().map(|b| b.as_ref() as _).collect();
            return self.exec(sql, &p).map(|_| ());
        }
        // Prepared once per connection (then cached: no round trip), so that
        // the statement itself goes out now, in order.
        let st = self
            .wait_driving(self.c.prepare_cached(sql))
            .map_err(pg_err)?;
        let c = self.c;
        self.push(Box::pin(async move { c.execute_raw(&st, p).await }));
        Ok(())
    }

    /// Run a statement; the number of rows it changed.
    pub(super) fn exec(&self, sql: &str, p: Params<'_>) -> Result<u64> {
        self.wait_driving(async {
            let st = self.c.prepare_cached(sql).await?;
            self.c.execute(&st, p).await
        })
        .map_err(pg_err)
    }

    /// Every row of a query.
    pub(super) fn query(&self, sql: &str, p: Params<'_>) -> Result<Vec<Row>> {
        self.wait_driving(async {
            let st = self.c.prepare_cached(sql).await?;
            self.c.query(&st, p).await
        })
        .map_err(pg_err)
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

    /// Every row's JSON `data`, decoded.
    pub(super) fn many<T: DeserializeOwned>(&self, sql: &str, p: Params<'_>) -> Result<Vec<T>> {
        self.rows(sql, p, |r| from_json(col::<&str>(r, 0)?))
    }
}
