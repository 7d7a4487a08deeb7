//! Storage: one transaction interface ([`Tx`]) that everything the broker keeps
//! goes through, and the [`Store`] that runs transactions. The SQLite backend is
//! [`sqlite::SqliteStore`] (embedded, one data directory); the PostgreSQL
//! backend is [`postgres::PgStore`] (shared by several broker processes).
//! Both implement the same two traits, and both keep a `schema_version`
//! record: their numbered migrations run at start, and a database that a
//! newer broker migrated is refused ([`newer_schema`]).
//!
//! Writes run on the store's writer, which groups concurrent transactions into
//! one database commit (group commit) and acknowledges each only after that
//! commit is durable. A transaction that fails is rolled back alone (it runs in
//! its own savepoint); the others of the batch still commit.

#[cfg(test)]
mod conformance;
pub mod postgres;
mod records;
mod shares;
pub mod sqlite;

use std::fmt;
use std::sync::Arc;

pub use postgres::PgUrl;
pub use records::{
    AuditQuery, ConnectionRec, Invite, OwnerInfo, PendingAuth, Pruned, StorageRows, UpstreamRec,
    UsageCount, UsageSlot, WebSession,
};

use protonpass_agent::Error;
use protonpass_agent::wire::RevocationEvent;

use crate::audit::Checkpoint;
use crate::model::{AuditRecord, DeviceReq, Grant, KeyMeta, Resource, TokenRec};
use crate::model::{AuthCode, ClientRec};
use crate::model::{Budget, SpendRec, StepUp, StepUpPolicy};

/// Storage result: failures are [`Error::TemporarilyUnavailable`] (503).
pub type Result<T> = std::result::Result<T, Error>;

/// The operations of one transaction.
pub trait Tx {
    /// Create the owner if it does not exist.
    fn owner_ensure(&mut self, name: &str, now: i64) -> Result<()>;
    /// Every owner, by name.
    fn owners(&mut self) -> Result<Vec<OwnerInfo>>;
    /// Forget an owner: its row, dashboard password, setup links and
    /// sessions (its grants and audit records stay). Whether it existed.
    fn owner_delete(&mut self, name: &str) -> Result<bool>;
    /// Insert or replace a grant.
    fn grant_put(&mut self, g: &Grant) -> Result<()>;
    /// A grant by id.
    fn grant_get(&mut self, gid: &str) -> Result<Option<Grant>>;
    /// The enrolling grant whose enrollment code hashes to `hash`.
    fn grant_by_enroll_hash(&mut self, hash: &str) -> Result<Option<Grant>>;
    /// An owner's grants, optionally of one agent, newest first.
    fn grants_of(&mut self, owner: &str, agent: Option<&str>) -> Result<Vec<Grant>>;
    /// Insert or replace a token record.
    fn token_put(&mut self, t: &TokenRec) -> Result<()>;
    /// A token record by id.
    fn token_get(&mut self, jti: &str) -> Result<Option<TokenRec>>;
    /// The refresh token record whose token hashes to `hash`.
    fn token_by_hash(&mut self, hash: &str) -> Result<Option<TokenRec>>;
    /// Insert or replace a device request.
    fn device_put(&mut self, d: &DeviceReq) -> Result<()>;
    /// A device request by device-code hash.
    fn device_by_device_hash(&mut self, hash: &str) -> Result<Option<DeviceReq>>;
    /// The pending, unexpired device request whose user code hashes to `hash`.
    fn device_by_user_hash(&mut self, hash: &str, now: i64) -> Result<Option<DeviceReq>>;
    /// How many device requests are pending and unexpired.
    fn device_live_count(&mut self, now: i64) -> Result<i64>;
    /// How many device requests of one requester (see `DeviceReq::requester`)
    /// are pending and unexpired.
    fn device_live_count_of(&mut self, requester: &str, now: i64) -> Result<i64>;
    /// The pending, unexpired device requests, oldest first.
    fn devices_pending(&mut self, now: i64) -> Result<Vec<DeviceReq>>;
    /// Approved, unexpired device requests whose tokens were not collected yet.
    fn devices_approved(&mut self, now: i64) -> Result<Vec<DeviceReq>>;
    /// Insert a resource server.
    fn resource_put(&mut self, r: &Resource) -> Result<()>;
    /// A resource server by client id.
    fn resource_get(&mut self, client_id: &str) -> Result<Option<Resource>>;
    /// The resource servers registered for an audience (any owner).
    fn resources_for_audience(&mut self, audience: &str) -> Result<Vec<Resource>>;
    /// The resource servers one owner registered, oldest first.
    fn resources_of(&mut self, owner: &str) -> Result<Vec<Resource>>;
    /// Remove a resource server; whether it existed.
    fn resource_delete(&mut self, client_id: &str) -> Result<bool>;
    /// Insert or replace signing key metadata.
    fn key_put(&mut self, k: &KeyMeta) -> Result<()>;
    /// All signing keys, oldest first.
    fn keys_all(&mut self) -> Result<Vec<KeyMeta>>;
    /// Store a signing key's private key, sealed by the vault key. Only
    /// stores shared by several processes keep private keys (SQLite's are
    /// files of the data directory).
    fn key_secret_put(&mut self, _kid: &str, _sealed: &[u8]) -> Result<()> {
        Err(Error::Server(
            "this store keeps signing keys in files".into(),
        ))
    }
    /// A signing key's sealed private key, if the store keeps it.
    fn key_secret_get(&mut self, _kid: &str) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    /// Forget a signing key's private key (its tokens have all expired).
    fn key_secret_delete(&mut self, _kid: &str) -> Result<()> {
        Ok(())
    }
    /// Append to the revocation feed; returns the entry's position.
    fn revocation_add(
        &mut self,
        jti: Option<&str>,
        gid: Option<&str>,
        exp: i64,
        owner: &str,
    ) -> Result<i64>;
    /// Feed entries after `after` that have not expired at `now`, oldest first.
    fn revocations_after(
        &mut self,
        after: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<RevocationEvent>>;
    /// The position of the last feed entry (0 when empty).
    fn revocation_head(&mut self) -> Result<i64>;
    /// Append an audit record chained to the previous one; returns its position.
    fn audit_append(&mut self, ts: i64, owner: &str, event: &str, detail: &str) -> Result<i64>;
    /// Audit records with `seq > after`, oldest first.
    fn audit_page(&mut self, after: i64, limit: i64) -> Result<Vec<AuditRecord>>;
    /// The position of the last audit record.
    fn audit_head(&mut self) -> Result<i64>;
    /// Record a wrong user-code entry costing `cost` under `key`.
    fn attempt_add(&mut self, key: &str, at: i64, cost: i64) -> Result<()>;
    /// Total cost of entries under `key` since `since`.
    fn attempt_sum(&mut self, key: &str, since: i64) -> Result<i64>;

    // Dashboard: owner passwords, one-time setup links, web sessions, listings.

    /// The owner's password hash (PHC string), if one is set.
    fn owner_password(&mut self, owner: &str) -> Result<Option<String>>;
    /// Set the owner's password hash, creating the owner if needed.
    fn owner_password_set(&mut self, owner: &str, phc: &str, now: i64) -> Result<()>;
    /// Store a one-time setup link (by the hash of its secret) for `owner`,
    /// replacing the owner's older links.
    fn setup_put(&mut self, hash: &str, owner: &str, expires_at: i64) -> Result<()>;
    /// The owner of a live setup link.
    fn setup_get(&mut self, hash: &str, now: i64) -> Result<Option<String>>;
    /// Spend a setup link.
    fn setup_delete(&mut self, hash: &str) -> Result<()>;
    /// Insert a web session.
    fn session_put(&mut self, s: &WebSession) -> Result<()>;
    /// A live web session by the hash of its cookie.
    fn session_get(&mut self, id_hash: &str, now: i64) -> Result<Option<WebSession>>;
    /// End a web session.
    fn session_delete(&mut self, id_hash: &str) -> Result<()>;
    /// End every web session of `owner` but the one whose id hashes to `keep`.
    fn sessions_end_others(&mut self, owner: &str, keep: &str) -> Result<()>;
    /// The owner's second-factor settings (a JSON document the dashboard
    /// owns: the sealed TOTP secret, the last step used, recovery code hashes).
    fn mfa_get(&mut self, owner: &str) -> Result<Option<String>>;
    /// Replace the owner's second-factor settings.
    fn mfa_put(&mut self, owner: &str, data: &str, now: i64) -> Result<()>;
    /// Forget the owner's second factor; whether there was one.
    fn mfa_delete(&mut self, owner: &str) -> Result<bool>;
    /// The token records of a grant, newest first.
    fn tokens_of_grant(&mut self, gid: &str) -> Result<Vec<TokenRec>>;
    /// An owner's audit records matching `q`, newest first.
    fn audit_search(&mut self, q: &AuditQuery) -> Result<Vec<AuditRecord>>;
    /// An owner's reported uses (`usage` records), counted per agent.
    fn usage_counts(&mut self, owner: &str) -> Result<Vec<UsageCount>>;
    /// An owner's latest refused uses, at most `per_agent` for each agent
    /// (and for the unattributed ones), newest first.
    fn usage_refusals(&mut self, owner: &str, per_agent: i64) -> Result<Vec<AuditRecord>>;
    /// An owner's reported uses since `since`, counted per agent in time
    /// slots of `width` seconds (slot 0 starts at `since`).
    fn usage_series(&mut self, owner: &str, since: i64, width: i64) -> Result<Vec<UsageSlot>>;

    // Gateway: the owners' upstreams (rules and sealed secrets).

    /// Insert or replace an upstream.
    fn upstream_put(&mut self, u: &UpstreamRec) -> Result<()>;
    /// An upstream by name (names are unique across owners).
    fn upstream_get(&mut self, name: &str) -> Result<Option<UpstreamRec>>;
    /// An owner's upstreams, by name.
    fn upstream_list(&mut self, owner: &str) -> Result<Vec<UpstreamRec>>;
    /// Delete an upstream; returns whether it existed.
    fn upstream_delete(&mut self, name: &str) -> Result<bool>;
    /// Every owner's upstreams, by name (for the metadata's list of gateways).
    fn upstream_all(&mut self) -> Result<Vec<UpstreamRec>>;

    // Gateway: OAuth connections of upstreams and pending authorizations.

    /// Insert or replace an upstream's connection.
    fn connection_put(&mut self, c: &ConnectionRec) -> Result<()>;
    /// An upstream's connection.
    fn connection_get(&mut self, upstream: &str) -> Result<Option<ConnectionRec>>;
    /// Forget an upstream's connection; returns whether it existed.
    fn connection_delete(&mut self, upstream: &str) -> Result<bool>;
    /// Record a pending authorization (and drop the expired ones).
    fn oauth_pending_put(&mut self, p: &PendingAuth) -> Result<()>;
    /// Take (read and delete: single use) a pending authorization.
    fn oauth_pending_take(&mut self, state_hash: &str) -> Result<Option<PendingAuth>>;

    // Budgets: the owners' spend limits per grant and scope, and the spends.

    /// Insert or replace the budget of a grant's scope.
    fn budget_put(&mut self, b: &Budget) -> Result<()>;
    /// A grant's budgets, by scope.
    fn budgets_of(&mut self, gid: &str) -> Result<Vec<Budget>>;
    /// The total of a grant's unrefunded spends on `scope` in `currency` at
    /// or after `since`, minor units. Read from the running total when it
    /// counts from `since` (see `spend_add`), else summed from the spends.
    fn spent_since(&mut self, gid: &str, scope: &str, currency: &str, since: i64) -> Result<i64>;
    /// Record a new spend (its resource and key are unique). `since`: the
    /// start of the current period of the budget the spend is counted
    /// against, if any; the store keeps a running total from there, so that
    /// `spent_since` from that start does not sum the spends. Refunds and
    /// later spends keep it up to date; a new period's start counts it again.
    fn spend_add(&mut self, s: &SpendRec, since: Option<i64>) -> Result<()>;
    /// A spend by its resource server and idempotency key.
    fn spend_get(&mut self, resource: &str, key: &str) -> Result<Option<SpendRec>>;
    /// Mark a spend refunded at `at`.
    fn spend_refund(&mut self, resource: &str, key: &str, at: i64) -> Result<()>;

    // Resource self-registration (`resource invite`, `POST /resource/register`).

    /// Replace a stored resource server (same client id): a new scope catalog.
    fn resource_replace(&mut self, r: &Resource) -> Result<()>;
    /// Store a registration invitation (by the hash of its token).
    fn invite_put(&mut self, inv: &Invite) -> Result<()>;
    /// Take (delete and return) the unexpired invitation with this token hash:
    /// an invitation works once.
    fn invite_take(&mut self, hash: &str, now: i64) -> Result<Option<Invite>>;

    // Step-up requests (OpenID CIBA) and their auto-approval policies.

    /// Insert or update a step-up request (by its id).
    fn stepup_put(&mut self, s: &StepUp) -> Result<()>;
    /// A step-up request by the hash of its `auth_req_id`.
    fn stepup_by_hash(&mut self, hash: &str) -> Result<Option<StepUp>>;
    /// A step-up request by its public id.
    fn stepup_get(&mut self, id: &str) -> Result<Option<StepUp>>;
    /// The step-up request whose one-time token has this `jti`.
    fn stepup_by_jti(&mut self, jti: &str) -> Result<Option<StepUp>>;
    /// An owner's pending, unexpired step-up requests, soonest to expire first.
    fn stepups_pending(&mut self, owner: &str, now: i64) -> Result<Vec<StepUp>>;
    /// How many step-up requests of a grant are pending, approved or issued
    /// (a one-time token out) and unexpired.
    fn stepup_live_count(&mut self, gid: &str, now: i64) -> Result<i64>;
    /// Set (insert or replace) a grant's auto-approval policy.
    fn stepup_policy_put(&mut self, p: &StepUpPolicy) -> Result<()>;
    /// A grant's auto-approval policy.
    fn stepup_policy_get(&mut self, gid: &str) -> Result<Option<StepUpPolicy>>;
    /// Remove a grant's auto-approval policy; whether there was one.
    fn stepup_policy_delete(&mut self, gid: &str) -> Result<bool>;
    /// An owner's step-up webhook (a JSON document, its secret sealed).
    fn owner_webhook(&mut self, owner: &str) -> Result<Option<String>>;
    /// Set or (with `None`) remove an owner's step-up webhook; whether the
    /// owner exists.
    fn owner_webhook_set(&mut self, owner: &str, data: Option<&str>) -> Result<bool>;

    // Third-party OAuth clients and authorization codes (`service::authcode`).

    /// Store a newly registered client (its id is new).
    fn client_put(&mut self, c: &ClientRec) -> Result<()>;
    /// A registered client by id.
    fn client_get(&mut self, client_id: &str) -> Result<Option<ClientRec>>;
    /// How many clients were registered at or after `since`.
    fn client_count_since(&mut self, since: i64) -> Result<i64>;
    /// Store a new authorization code (and delete those expired a day ago).
    fn auth_code_put(&mut self, c: &AuthCode) -> Result<()>;
    /// An authorization code by the hash of the code, spent or not.
    fn auth_code_get(&mut self, hash: &str) -> Result<Option<AuthCode>>;
    /// Mark an unspent code spent by the grant `gid`; `false` if it was spent.
    fn auth_code_spend(&mut self, hash: &str, gid: &str) -> Result<bool>;

    // Bounded storage and the audit log's checkpoints and archive.

    /// Remove at most `limit` rows of each kind that expired before `now`
    /// (tokens, device requests and revocation-feed entries an hour after
    /// their expiry; attempts after a day; sessions, setup links, pending
    /// authorizations and invitations at once). Never a refresh token of a
    /// live grant (its expiry is the grant's), nor the newest feed entry.
    fn prune_expired(&mut self, now: i64, limit: i64) -> Result<Pruned>;
    /// Row counts of the tables that grow with traffic.
    fn storage_rows(&mut self) -> Result<StorageRows>;
    /// Store (or replace) a signed audit checkpoint.
    fn audit_checkpoint_put(&mut self, c: &Checkpoint) -> Result<()>;
    /// The newest checkpoint at or before record `at_most`.
    fn audit_checkpoint_latest(&mut self, at_most: i64) -> Result<Option<Checkpoint>>;
    /// The position of the oldest audit record kept (0 when empty).
    fn audit_first(&mut self) -> Result<i64>;
    /// Remove the audit records before `before` (archived), and the
    /// checkpoints before the one at `before - 1`; returns how many records.
    fn audit_delete_before(&mut self, before: i64) -> Result<i64>;
}

/// A write job: runs inside the batch transaction and returns whether it
/// succeeded (else its savepoint is rolled back) and what to do once the
/// batch's commit has finished.
pub type Job = Box<dyn FnOnce(&mut dyn Tx) -> (bool, Finish) + Send>;
/// Called with the outcome of the commit.
pub type Finish = Box<dyn FnOnce(Result<()>) + Send>;

/// The token a write job reads first, named when it is queued
/// ([`Store::submit_reading`]), so that a store whose reads each cost a
/// round trip can read those of a whole batch together.
#[derive(Clone)]
pub enum TokenLookup {
    /// By `jti` ([`Tx::token_get`]).
    Jti(String),
    /// By refresh-token hash ([`Tx::token_by_hash`]).
    Hash(String),
}

impl fmt::Debug for TokenLookup {
    /// The key itself is left out (a refresh token's hash stays in the store).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenLookup::Jti(_) => "TokenLookup::Jti(..)",
            TokenLookup::Hash(_) => "TokenLookup::Hash(..)",
        })
    }
}

/// A store: runs write jobs through its writer and reads on reader connections.
pub trait Store: Send + Sync + fmt::Debug {
    /// Queue a write job. Dropping the job without running it tells its caller
    /// the store is unavailable.
    fn submit(&self, job: Job) -> Result<()>;
    /// [`Store::submit`] for a job whose first read is the token `first`
    /// (only a hint: the job reads it through its [`Tx`] as any other).
    fn submit_reading(&self, job: Job, first: TokenLookup) -> Result<()> {
        let _ = first;
        self.submit(job)
    }
    /// Queue a write job only if the queue has room (best-effort audit of
    /// rejected requests); returns false when it was dropped.
    fn try_submit(&self, job: Job) -> bool;
    /// Permits for async writers: one is held from submission until the job
    /// has finished, so that a full queue makes requests wait asynchronously
    /// instead of blocking the runtime's threads in [`Store::submit`].
    fn admission(&self) -> Arc<tokio::sync::Semaphore>;
    /// Run `f` on a reader connection (blocking).
    fn read(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()>;
    /// Gauges for `/metrics` (writer queue, connection pool): name, help, value.
    fn figures(&self) -> Vec<(&'static str, &'static str, f64)> {
        Vec::new()
    }
    /// Whether several processes share this store, so that a DPoP proof one
    /// of them accepted must be recorded in it ([`Store::proof_use`]); each
    /// process's replay cache is enough otherwise.
    fn shares_proofs(&self) -> bool {
        false
    }
    /// Record a DPoP proof (the digest of its `jti`, `htm` and `htu`) as used
    /// until `forget_at`, durably and at once: `false` when some process had
    /// recorded it already (a replay). Blocking.
    fn proof_use(&self, _key: &[u8; 32], _now: i64, _forget_at: i64) -> Result<bool> {
        Ok(true)
    }
    /// Prompt news of feed entries added by any process (PostgreSQL's
    /// `LISTEN`), for stores that have it; `None`: poll
    /// [`Tx::revocation_head`].
    fn feed_notices(&self) -> Option<tokio::sync::watch::Receiver<FeedNotice>> {
        None
    }
}

/// What [`Store::feed_notices`] says: whether notices arrive (while they do
/// not, the process polls), and the newest feed position they named.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedNotice {
    /// Notices arrive.
    pub listening: bool,
    /// The newest position a notice named (0: none yet).
    pub head: i64,
}

/// Record a DPoP proof the process's replay cache has just accepted in a
/// store shared by several processes ([`Store::proof_use`]), so that no other
/// process accepts it too: `invalid_dpop_proof` when one did. Nothing to do
/// (and no cost) for a store of one process. Recorded before the request is
/// served, as the replay cache records it: a proof is spent even when its
/// request then fails.
pub async fn proof_once(
    store: &Arc<dyn Store>,
    key: [u8; 32],
    now: i64,
    forget_at: i64,
) -> Result<()> {
    if !store.shares_proofs() {
        return Ok(());
    }
    let store = store.clone();
    let fresh = tokio::task::spawn_blocking(move || store.proof_use(&key, now, forget_at))
        .await
        .map_err(|_| unavailable())??;
    if fresh {
        Ok(())
    } else {
        Err(Error::InvalidDpopProof {
            reason: protonpass_agent::Reason::Replay,
            message: "this proof was already used".into(),
        })
    }
}

/// The refusal to run on a database whose schema is newer than this broker's.
pub fn newer_schema(what: &str, found: i64, known: i64) -> Error {
    Error::InvalidRequest(format!(
        "the database {what} has schema version {found}, newer than this protonpass-broker \
         knows ({known}): a newer broker has used it; run that version (or newer), \
         or restore a backup made with this one"
    ))
}

fn unavailable() -> Error {
    Error::TemporarilyUnavailable("the store did not commit".into())
}

fn make_job<T: Send + 'static>(
    f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static,
    done: impl FnOnce(Result<T>) + Send + 'static,
) -> Job {
    Box::new(move |tx: &mut dyn Tx| {
        let r = f(tx);
        let ok = r.is_ok();
        let finish: Finish = Box::new(move |commit: Result<()>| done(commit.and(r)));
        (ok, finish)
    })
}

/// Run `f` in a write transaction and wait until it is durable.
pub async fn write<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static,
) -> Result<T> {
    write_with(store, None, f).await
}

/// [`write`] for a job whose first read is the token `first`
/// ([`Store::submit_reading`]).
pub async fn write_reading<T: Send + 'static>(
    store: &Arc<dyn Store>,
    first: TokenLookup,
    f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static,
) -> Result<T> {
    write_with(store, Some(first), f).await
}

async fn write_with<T: Send + 'static>(
    store: &Arc<dyn Store>,
    first: Option<TokenLookup>,
    f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static,
) -> Result<T> {
    let permit = store
        .admission()
        .acquire_owned()
        .await
        .map_err(|_| unavailable())?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = make_job(f, move |r| {
        drop(permit);
        let _ = tx.send(r);
    });
    match first {
        Some(first) => store.submit_reading(job, first)?,
        None => store.submit(job)?,
    }
    rx.await.map_err(|_| unavailable())?
}

/// [`write`] for callers outside the async runtime (the CLI).
pub fn write_blocking<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    store.submit(make_job(f, move |r| {
        let _ = tx.send(r);
    }))?;
    rx.recv().map_err(|_| unavailable())?
}

/// Queue `f` without waiting (audit of rejected requests). Dropped if the queue is full.
pub fn write_detached(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&mut dyn Tx) -> Result<()> + Send + 'static,
) -> bool {
    store.try_submit(make_job(f, |_| {}))
}

/// Run `f` on a reader connection, from async code.
pub async fn read<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static,
) -> Result<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || read_blocking(&store, f))
        .await
        .map_err(|_| unavailable())?
}

/// Run `f` on a reader connection, blocking.
pub fn read_blocking<T>(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&mut dyn Tx) -> Result<T>,
) -> Result<T> {
    let mut f = Some(f);
    let mut out = None;
    store.read(&mut |tx| {
        if let Some(f) = f.take() {
            out = Some(f(tx)?);
        }
        Ok(())
    })?;
    out.ok_or_else(unavailable)
}
