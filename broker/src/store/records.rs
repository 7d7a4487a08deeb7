//! The records the store traits take and return beyond the broker's model
//! (`crate::model`): pruning and storage figures, invitations, usage counts,
//! upstreams, owners, web sessions, audit queries, OAuth connections and
//! pending authorizations.

use std::fmt;

/// What one [`Tx::prune_expired`](super::Tx::prune_expired) pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    /// Access and refresh token records.
    pub tokens: i64,
    /// Device authorization requests.
    pub devices: i64,
    /// Revocation-feed entries.
    pub revocations: i64,
    /// Wrong-code and sign-in attempts.
    pub attempts: i64,
    /// Dashboard sessions.
    pub sessions: i64,
    /// Dashboard setup links.
    pub setup_links: i64,
    /// Pending gateway OAuth authorizations.
    pub oauth_pending: i64,
    /// Resource registration invitations.
    pub invites: i64,
    /// DPoP proofs recorded by a store shared by several processes
    /// ([`Store::proof_use`](super::Store::proof_use)).
    pub proofs: i64,
}

impl Pruned {
    /// Rows removed in all.
    pub fn total(&self) -> i64 {
        self.tokens
            + self.devices
            + self.revocations
            + self.attempts
            + self.sessions
            + self.setup_links
            + self.oauth_pending
            + self.invites
            + self.proofs
    }

    /// Add another pass's counts.
    pub fn add(&mut self, o: &Pruned) {
        self.tokens += o.tokens;
        self.devices += o.devices;
        self.revocations += o.revocations;
        self.attempts += o.attempts;
        self.sessions += o.sessions;
        self.setup_links += o.setup_links;
        self.oauth_pending += o.oauth_pending;
        self.invites += o.invites;
        self.proofs += o.proofs;
    }
}

/// Row counts of the tables that grow with traffic ([`Tx::storage_rows`](super::Tx::storage_rows)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StorageRows {
    /// Grants.
    pub grants: i64,
    /// Token records.
    pub tokens: i64,
    /// Device requests.
    pub devices: i64,
    /// Revocation-feed entries.
    pub revocations: i64,
    /// Attempts.
    pub attempts: i64,
    /// Dashboard sessions.
    pub sessions: i64,
    /// Audit records kept (not archived).
    pub audit: i64,
}

/// A one-time invitation to register a resource server over HTTP; only the
/// hash of its token is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// SHA-256 of the token (hex).
    pub hash: String,
    /// The owner the registered resource will belong to.
    pub owner: String,
    /// The one audience it registers (or updates, when the owner has it).
    pub audience: String,
    /// Whether the resource is registered as shared.
    pub shared: bool,
    /// Unix seconds after which it no longer works.
    pub expires_at: i64,
}

/// One agent's reported uses, as [`Tx::usage_counts`](super::Tx::usage_counts) counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCount {
    /// The agent; `None` for uses no token of the owner could be tied to.
    pub agent: Option<String>,
    /// Allowed requests.
    pub allowed: i64,
    /// Refused requests.
    pub refused: i64,
    /// The latest use (Unix seconds, the broker's time).
    pub last: i64,
}

/// One agent's reported uses in one time slot ([`Tx::usage_series`](super::Tx::usage_series)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSlot {
    /// The agent; `None` for unattributed uses.
    pub agent: Option<String>,
    /// The slot's number from the start.
    pub slot: i64,
    /// Allowed requests.
    pub allowed: i64,
    /// Refused requests.
    pub refused: i64,
}

/// An upstream of the gateway: its rules file and its secret, sealed by the
/// vault (never the secret itself).
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamRec {
    /// The name (the gateway URL's segment).
    pub name: String,
    /// The owner who added it; only this owner's grants can use it.
    pub owner: String,
    /// The rules file, as given.
    pub rules: String,
    /// The secret, sealed by the vault.
    pub sealed: Vec<u8>,
    /// Added.
    pub created_at: i64,
    /// Last secret or rules change.
    pub rotated_at: i64,
}

impl fmt::Debug for UpstreamRec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamRec")
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("rotated_at", &self.rotated_at)
            .finish()
    }
}

/// An owner (tenant) as `owner list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OwnerInfo {
    /// The name.
    pub name: String,
    /// Created, Unix seconds.
    pub created_at: i64,
    /// Whether a dashboard password is set.
    pub has_password: bool,
}

/// A signed-in owner's web session. Only the hash of the cookie is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct WebSession {
    /// SHA-256 of the session cookie (hex).
    pub id_hash: String,
    /// The owner.
    pub owner: String,
    /// The form token (synchronizer token) of this session.
    pub csrf: String,
    /// Created.
    pub created_at: i64,
    /// Expiry.
    pub expires_at: i64,
}

impl fmt::Debug for WebSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSession")
            .field("owner", &self.owner)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A filter over one owner's audit records.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// The owner.
    pub owner: String,
    /// Only records with `seq < before` (paging; `None` = from the newest).
    pub before: Option<i64>,
    /// Only this event.
    pub event: Option<String>,
    /// Only records whose detail names this agent.
    pub agent: Option<String>,
    /// Only records whose detail names this grant (`gid`).
    pub gid: Option<String>,
    /// Only records at or after this time.
    pub since: Option<i64>,
    /// Only records before this time.
    pub until: Option<i64>,
    /// Most records.
    pub limit: i64,
}

/// An upstream's OAuth connection: the provider's tokens, sealed by the vault.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionRec {
    /// The upstream.
    pub upstream: String,
    /// Its owner.
    pub owner: String,
    /// This connection's id (a new one at each connect), shown in the audit.
    pub id: String,
    /// `connected` or `broken` (the provider refused a refresh).
    pub status: String,
    /// The access and refresh tokens, sealed.
    pub sealed: Vec<u8>,
    /// When the access token expires (Unix seconds).
    pub access_expires_at: i64,
    /// Connected.
    pub connected_at: i64,
    /// Last refresh or status change.
    pub updated_at: i64,
}

impl fmt::Debug for ConnectionRec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionRec")
            .field("upstream", &self.upstream)
            .field("id", &self.id)
            .field("status", &self.status)
            .finish()
    }
}

/// An authorization request the owner has not completed yet.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingAuth {
    /// SHA-256 of the `state` (hex); the state itself is not stored.
    pub state_hash: String,
    /// The owner who started it.
    pub owner: String,
    /// The upstream.
    pub upstream: String,
    /// The PKCE verifier, sealed.
    pub sealed: Vec<u8>,
    /// Started.
    pub created_at: i64,
    /// Expires.
    pub expires_at: i64,
    /// When started from a browser: `COOKIE_NAME=SHA256(value)` of the
    /// cookie that browser must send with the provider's answer.
    pub browser: Option<String>,
}

impl fmt::Debug for PendingAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAuth")
            .field("upstream", &self.upstream)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}
