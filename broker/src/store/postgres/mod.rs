//! The PostgreSQL backend (`--store postgres://...`): the same group commit
//! as SQLite, safe with several broker processes (replicas) on one database.
//!
//! - Writes: one writer thread per process takes a pooled connection per
//!   batch, opens a transaction, and first takes a transaction-scoped advisory
//!   lock ([`WRITE_LOCK`]) that every broker process writing to this database
//!   takes too. So batches of all replicas are serialized as SQLite's writer
//!   serializes them: a refresh token rotates once, a device code is used
//!   once, a budget is never overspent, and the audit chain has one head.
//!   The token and audit rows the jobs write are held back and sent at the
//!   batch's end, one multi-row statement per table (`rows.rs`); the
//!   batch's token reads see them, and a failed job drops its own. A job
//!   that sends any other write, or a read those rows could change, first
//!   sends the rows held, then runs in its own savepoint and is rolled back
//!   alone. The batch's statements are pipelined on its connection
//!   (`conn.rs`): `BEGIN` and the lock, a job's `SAVEPOINT`, its writes and
//!   its `RELEASE` go out without waiting; their answers are read while a
//!   job (this one or a later one of the batch) waits for a read, and
//!   checked when a job fails and at the batch's end, before `COMMIT`
//!   (`batch.rs`). A failed statement of a job aborts the transaction
//!   there: its job and the jobs after it are rolled back together and told
//!   they failed, those before it commit; a failure outside any job's
//!   savepoint (the rows sent together) fails the batch. What the batch read
//!   of the audit head, of the resources and of the grant read with a token
//!   is kept for the batch (the lock keeps it true). A token request names
//!   the token it reads first when it is queued; the writer reads the
//!   named tokens of a whole batch, with their grants, in one statement
//!   after `BEGIN` (`prefetch.rs`), so that a batch of refreshes or
//!   exchanges waits for a few round trips in all, not one per job.
//! - Reads: statements on pooled connections (autocommit, READ COMMITTED).
//! - Client: `tokio-postgres` with the `deadpool-postgres` pool. Their
//!   connections are driven by a small runtime private to the store, and the
//!   synchronous [`Tx`] methods wait on them with a thread-parking executor,
//!   so they may be called from any thread (the server's, the CLI's, the
//!   writer's) without being tied to the server's runtime.
//! - Replicas: a DPoP proof one replica accepted is recorded at once in
//!   `dpop_proofs` (unique key: the second replica's insert finds it; the
//!   proofs arriving together share one statement, `proofs.rs`), and a
//!   new revocation-feed entry is announced to every replica by `NOTIFY`
//!   (`notify.rs`).
//! - Faults: an unreachable or restarted server fails the affected
//!   transactions with [`Error::TemporarilyUnavailable`] (503); broken
//!   connections are dropped by the pool and new ones made on the next use.

mod batch;
mod budget;
mod conn;
mod ext;
mod migrate;
mod notify;
mod prefetch;
mod proofs;
mod rows;
mod schema;
mod tokens;
mod tx;
mod tx2;

use std::future::Future;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use protonpass_agent::Error;

use self::conn::PgTx;
use super::shares::QueueShares;
use super::{FeedNotice, Job, Result, Store, TokenLookup};

/// Most write jobs committed together.
const MAX_BATCH: usize = 256;
/// Queued write jobs before callers wait (and best-effort jobs are dropped).
const QUEUE: usize = 4096;
/// Async writers admitted at once (see the SQLite store).
const ADMITTED: usize = QUEUE / 2;
/// Best-effort jobs queued at once.
const DETACHED: usize = QUEUE / 4;
/// Pooled connections per process (the writer uses one at a time).
const POOL: usize = 16;
/// How long a request waits for a connection, or for a new one to be made.
const CONNECT: Duration = Duration::from_secs(5);
/// The advisory lock every broker's write transaction takes first. The value
/// is arbitrary but fixed: all versions of the broker must use the same one.
pub(super) const WRITE_LOCK: i64 = 0x7070_6272_6f6b_6572; // "ppbroker"
/// What a batch starts with: its transaction, then [`WRITE_LOCK`] (the same
/// number, written out: one simple-protocol message, one round trip).
const BEGIN: &str =
    "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(8102083973274625394)";

/// A PostgreSQL URL whose password never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl PgUrl {
    /// Accept `postgres://` and `postgresql://` URLs.
    pub fn parse(s: &str) -> Result<PgUrl> {
        let s = s.trim();
        if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
            return Err(Error::InvalidRequest(
                "--store must be a postgres://USER@HOST/DB URL (or absent: SQLite in --data)"
                    .into(),
            ));
        }
        s.parse::<tokio_postgres::Config>().map_err(|e| {
            Error::InvalidRequest(format!("--store is not a valid PostgreSQL URL: {e}"))
        })?;
        Ok(PgUrl(s.to_owned()))
    }

    /// The URL itself (it may hold a password: never log it).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Host, port and database, for logs and messages.
    pub fn describe(&self) -> String {
        let Ok(c) = self.0.parse::<tokio_postgres::Config>() else {
            return "postgres".into();
        };
        let host = match c.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = c.get_ports().first().copied().unwrap_or(5432);
        format!(
            "postgres://{host}:{port}/{}",
            c.get_dbname().unwrap_or_default()
        )
    }
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

pub(super) fn pg_err(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        // The server's DETAIL may quote a row's values (a unique
        // violation names the key it found twice): left out of the log.
        Some(db) => tracing::error!(
            code = db.code().code(),
            message = db.message(),
            constraint = db.constraint().unwrap_or_default(),
            table = db.table().unwrap_or_default(),
            "storage failure"
        ),
        None => tracing::error!(error = %e, "storage failure"),
    }
    Error::TemporarilyUnavailable("storage failure".into())
}

fn pool_err(e: deadpool_postgres::PoolError) -> Error {
    tracing::error!(error = %e, "the database is unreachable");
    Error::TemporarilyUnavailable("the database is unreachable".into())
}

/// Wakes the thread that waits in [`wait`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Run `f` to completion on this thread. The connections' I/O is driven by
/// the store's runtime (`rt`), entered so that the pool's timers work.
pub(super) fn wait<F: Future>(rt: &tokio::runtime::Handle, f: F) -> F::Output {
    let _enter = rt.enter();
    let mut f = std::pin::pin!(f);
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// A queued write job and the token it reads first, if named
/// ([`Store::submit_reading`]): the writer reads a batch's together.
type Queued = (Job, Option<TokenLookup>);

/// The PostgreSQL store.
pub struct PgStore {
    url: PgUrl,
    pool: Pool,
    rt: tokio::runtime::Handle,
    queue: SyncSender<Queued>,
    shares: QueueShares,
    /// Where the feed's notices are listened for (a connection of its own).
    listen: tokio_postgres::Config,
    /// The notices, once a caller asked for them (`serve` does, the CLI not).
    notices: OnceLock<tokio::sync::watch::Receiver<FeedNotice>>,
    /// Records the DPoP proofs this process accepts, in groups (`proofs.rs`).
    proofs: self::proofs::Proofs,
    /// Keeps the store's runtime alive as long as the store.
    _runtime: OwnedRuntime,
}

/// The store's runtime. A runtime must not be dropped inside another one (the
/// server's, where the store may be opened or dropped): it is shut down
/// without waiting instead, also when opening the store fails.
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            r.shutdown_background();
        }
    }
}

impl PgStore {
    /// Connect, bring the schema up to date, and start the writer.
    pub fn open(url: &PgUrl) -> Result<Arc<Self>> {
        let mut pg: tokio_postgres::Config = url
            .expose()
            .parse()
            .map_err(|e| Error::InvalidRequest(format!("--store: {e}")))?;
        pg.connect_timeout(CONNECT);
        // A connection whose peer vanished (a half-open link) is found dead
        // within about 25 s instead of the system's two hours: its waiting
        // statement fails and the pool replaces it.
        pg.keepalives(true)
            .keepalives_idle(std::time::Duration::from_secs(10))
            .keepalives_interval(std::time::Duration::from_secs(5))
            .keepalives_retries(3);
        if pg.get_application_name().is_none() {
            pg.application_name("protonpass-broker");
        }
        let runtime = OwnedRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("store-pg")
                .enable_all()
                .build()
                .map_err(|e| Error::Server(format!("cannot start the store's runtime: {e}")))?,
        ));
        let rt = match &runtime.0 {
            Some(r) => r.handle().clone(),
            None => return Err(Error::Server("no runtime".into())),
        };
        let listen = pg.clone();
        let mgr = Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _enter = rt.enter();
            Pool::builder(mgr)
                .max_size(POOL)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(CONNECT))
                .create_timeout(Some(CONNECT))
                .recycle_timeout(Some(CONNECT))
                .build()
                .map_err(|e| Error::Server(format!("cannot make the connection pool: {e}")))?
        };
        self::migrate::migrate(&pool, &rt, url)?;
        let (queue, rx) = std::sync::mpsc::sync_channel::<Queued>(QUEUE);
        let (wpool, wrt) = (pool.clone(), rt.clone());
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || self::batch::writer(&wpool, &wrt, rx))
            .map_err(|e| Error::Server(format!("cannot start the writer: {e}")))?;
        let proofs = self::proofs::Proofs::start(pool.clone(), rt.clone())?;
        Ok(Arc::new(PgStore {
            proofs,
            url: url.clone(),
            pool,
            rt,
            queue,
            shares: QueueShares::new(ADMITTED, DETACHED),
            listen,
            notices: OnceLock::new(),
            _runtime: runtime,
        }))
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL's Debug leaves the password out.
        f.debug_struct("PgStore").field("url", &self.url).finish()
    }
}

impl Store for PgStore {
    fn submit(&self, job: Job) -> Result<()> {
        self.queue
            .send((job, None))
            .map_err(|_| Error::TemporarilyUnavailable("the store is closed".into()))
    }

    fn submit_reading(&self, job: Job, first: TokenLookup) -> Result<()> {
        self.queue
            .send((job, Some(first)))
            .map_err(|_| Error::TemporarilyUnavailable("the store is closed".into()))
    }

    fn admission(&self) -> Arc<tokio::sync::Semaphore> {
        self.shares.admission()
    }

    fn try_submit(&self, job: Job) -> bool {
        let Some(job) = self.shares.best_effort(job) else {
            return false;
        };
        match self.queue.try_send((job, None)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    fn read(&self, f: &mut dyn FnMut(&mut dyn super::Tx) -> Result<()>) -> Result<()> {
        let client = wait(&self.rt, self.pool.get()).map_err(pool_err)?;
        let mut tx = PgTx::new(&client, &self.rt);
        f(&mut tx)
    }

    fn shares_proofs(&self) -> bool {
        true
    }

    fn proof_use(&self, key: &[u8; 32], now: i64, forget_at: i64) -> Result<bool> {
        // Autocommit, not a write job: durable when it returns, no writers'
        // lock, and the unique key decides between replicas inserting the
        // same proof at once. The proofs that arrive together are inserted
        // by one statement (`proofs.rs`). A row left by a proof whose time
        // has passed (not pruned yet) is taken over.
        self.proofs.use_once(key, now, forget_at)
    }

    fn feed_notices(&self) -> Option<tokio::sync::watch::Receiver<FeedNotice>> {
        Some(
            self.notices
                .get_or_init(|| self::notify::start(self.listen.clone(), &self.rt))
                .clone(),
        )
    }

    fn figures(&self) -> Vec<(&'static str, &'static str, f64)> {
        let pool = self.pool.status();
        let mut v = vec![
            (
                "protonpass_store_pool_max",
                "Connections the pool may hold.",
                pool.max_size as f64,
            ),
            (
                "protonpass_store_pool_connections",
                "Connections the pool holds now.",
                pool.size as f64,
            ),
            (
                "protonpass_store_pool_idle",
                "Connections of the pool not in use.",
                pool.available as f64,
            ),
            (
                "protonpass_store_pool_waiting",
                "Callers waiting for a connection of the pool.",
                pool.waiting as f64,
            ),
        ];
        v.extend(self.shares.figures());
        if let Some(n) = self.notices.get() {
            v.push((
                "protonpass_store_feed_listening",
                "1 while revocation notices arrive from the database (else the feed is polled).",
                f64::from(u8::from(n.borrow().listening)),
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_batch_takes_the_same_lock_as_every_writer() {
        let lock = format!("SELECT pg_advisory_xact_lock({})", super::WRITE_LOCK);
        assert!(super::BEGIN.ends_with(&lock), "{}", super::BEGIN);
    }
}
