//! What the broker keeps: grants, tokens, device requests, resource servers,
//! signing keys. Stored through [`crate::store::Tx`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::scope_catalog::ScopeCatalog;

/// The state of a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    /// Created by the owner, waiting for the agent to redeem its enrollment code.
    Enrolling,
    /// Bound to the agent's key.
    Active,
    /// Revoked by the owner, the agent, or refresh-token reuse.
    Revoked,
}

/// A grant: what an owner allowed one agent key to do, until when.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Grant id (`gid` in tokens).
    pub gid: String,
    /// The owner (tenant); `sub` of its tokens.
    pub owner: String,
    /// The agent's self-asserted name (`client_id`, `act.sub`).
    pub agent: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// Audiences the grant's tokens may be issued for; the first is the default.
    pub audiences: Vec<String>,
    /// Thumbprint of the bound key; `None` while enrolling.
    pub jkt: Option<String>,
    /// State.
    pub status: GrantStatus,
    /// `device` or `pre-authorized`.
    pub origin: String,
    /// Created, Unix seconds.
    pub created_at: i64,
    /// Lifetime the owner chose, seconds.
    pub ttl: i64,
    /// While enrolling: when the enrollment code expires. Active: when the grant ends.
    pub expires_at: i64,
    /// SHA-256 of the enrollment code, while enrolling.
    pub enroll_hash: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("gid", &self.gid)
            .field("owner", &self.owner)
            .field("agent", &self.agent)
            .field("scope", &self.scope)
            .field("status", &self.status)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The kind of an issued token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A JWT access token.
    Access,
    /// An opaque refresh token.
    Refresh,
}

/// The state of an issued token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    /// Usable.
    Active,
    /// A refresh token that was rotated (presenting it again revokes the
    /// grant), or a step-up's one-time token that was spent.
    Used,
    /// A step-up's one-time token that a resource server's verification
    /// redeemed (introspection): no longer accepted anywhere, but the payment
    /// the owner approved may still be spent with it once, by that resource
    /// server only ([`StepUp::redeemed_by`]); that spend makes it `Used`.
    Redeemed,
    /// Revoked.
    Revoked,
}

/// The record of an issued token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRec {
    /// Token id.
    pub jti: String,
    /// Its grant.
    pub gid: String,
    /// The grant's owner.
    pub owner: String,
    /// Access or refresh.
    pub kind: TokenKind,
    /// The agent.
    pub client_id: String,
    /// Scopes, space-separated.
    pub scope: String,
    /// Audience (access tokens).
    pub aud: Option<String>,
    /// Issued at.
    pub iat: i64,
    /// Expiry.
    pub exp: i64,
    /// The bound key's thumbprint.
    pub jkt: String,
    /// SHA-256 of a refresh token (hex); `None` for access tokens.
    pub hash: Option<String>,
    /// State.
    pub status: TokenStatus,
}

/// The state of a device authorization request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Waiting for the owner.
    #[default]
    Pending,
    /// Approved; the next accepted poll gets the tokens.
    Approved,
    /// Denied by the owner.
    Denied,
    /// Tokens were issued; the code is spent.
    Used,
}

/// An RFC 8628 device authorization request. Its default is a pending
/// request no owner has answered and no agent has polled: what a new
/// request starts from (`..DeviceReq::default()`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceReq {
    /// Internal id.
    pub id: String,
    /// SHA-256 of the device code (hex).
    pub device_hash: String,
    /// SHA-256 of the normalized user code (hex).
    pub user_hash: String,
    /// The agent's self-asserted name.
    pub client_id: String,
    /// Thumbprint of the key that signed the device authorization request's
    /// DPoP proof, when it sent one: shown to the owner at approval, and every
    /// poll must then be signed by the same key.
    #[serde(default)]
    pub jkt: Option<String>,
    /// Requested scopes.
    pub scope: String,
    /// Requested audience, if any.
    pub resource: Option<String>,
    /// Created.
    pub created_at: i64,
    /// Expiry of both codes.
    pub expires_at: i64,
    /// Current polling interval, seconds.
    pub interval: i64,
    /// Time of the last accepted poll.
    pub last_poll: Option<i64>,
    /// State.
    pub status: DeviceStatus,
    /// The approving (or denying) owner.
    pub owner: Option<String>,
    /// Scopes the owner approved.
    pub approved_scope: Option<String>,
    /// Audience the owner approved.
    pub approved_audience: Option<String>,
    /// Grant lifetime the owner chose.
    pub approved_ttl: Option<i64>,
    /// The grant created at the final poll.
    pub gid: Option<String>,
    /// Who asked, for the per-requester limit on waiting requests:
    /// `jkt:<thumbprint>` when the request carried a DPoP proof, else
    /// `source:<client address>`.
    #[serde(default)]
    pub requester: Option<String>,
    /// The user code (`XXXX-XXXX`), kept so that the owner can list waiting
    /// requests (the database is owner-only; the hash stays the lookup key).
    #[serde(default)]
    pub user_code: Option<String>,
    /// The agent's own words: the `reason` claim of the request's DPoP proof.
    #[serde(default)]
    pub reason: Option<String>,
    /// Budgets the owner set at approval (`SCOPE=LIMIT/CURRENCY/PERIOD`),
    /// put on the grant when it is created.
    #[serde(default)]
    pub approved_budgets: Vec<String>,
}

/// A registered resource server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Its client id.
    pub client_id: String,
    /// The owner that registered it.
    pub owner: String,
    /// The audience it is.
    pub audience: String,
    /// SHA-256 of its 32-byte random secret (hex).
    pub secret_hash: String,
    /// Created.
    pub created_at: i64,
    /// An API that serves many users (and maps the token's subject to its own
    /// accounts): every owner may grant its audience, and it may introspect
    /// every owner's tokens for it. Otherwise only its owner may grant it.
    #[serde(default)]
    pub shared: bool,
    /// The scopes it defines, with plain words and risk levels (`resource add
    /// --scopes FILE`, `POST /resource/register`). Empty: no catalog, every
    /// well-formed scope may be asked for.
    #[serde(default, skip_serializing_if = "ScopeCatalog::is_empty")]
    pub scopes: ScopeCatalog,
    /// The owner's choice: third-party clients that cannot do DPoP may get
    /// bearer tokens for it (at most 10 minutes, this audience only). Off by
    /// default (`resource bearer AUDIENCE on`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_bearer: bool,
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resource")
            .field("client_id", &self.client_id)
            .field("owner", &self.owner)
            .field("audience", &self.audience)
            .field("shared", &self.shared)
            .field("accept_bearer", &self.accept_bearer)
            .field("scopes", &self.scopes.scopes.len())
            .finish()
    }
}

/// Metadata of a token signing key (the private key is a file in the data directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMeta {
    /// Key id.
    pub kid: String,
    /// Created.
    pub created_at: i64,
    /// When a newer key replaced it.
    pub retired_at: Option<i64>,
    /// When it leaves the JWKS (its last token has expired).
    pub drop_after: Option<i64>,
}

/// One record of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position; contiguous from 1.
    pub seq: i64,
    /// Unix seconds.
    pub ts: i64,
    /// The owner it concerns (or `-`).
    pub owner: String,
    /// Event name (`grant`, `issue`, `refresh`, ...).
    pub event: String,
    /// Details (JSON text, hashed as stored).
    pub detail: String,
    /// Hash of the previous record (hex; 64 zeros for the first).
    pub prev: String,
    /// SHA-256 over this record and `prev` (hex).
    pub hash: String,
}

/// An owner's spend limit on one scope of a grant (amounts in the currency's
/// minor units; see `protonpass_agent::budget`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// The grant.
    pub gid: String,
    /// `resource:action`.
    pub scope: String,
    /// The limit per period, minor units.
    pub limit: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// How often it starts again.
    pub period: protonpass_agent::budget::Period,
    /// Set (or last replaced).
    pub updated_at: i64,
}

/// One spend against a grant, kept under its resource server's idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendRec {
    /// The resource server (client id) that spent.
    pub resource: String,
    /// Its idempotency key.
    pub key: String,
    /// The grant.
    pub gid: String,
    /// `resource:action`.
    pub scope: String,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// When (Unix seconds, the broker's time).
    pub at: i64,
    /// When it was refunded.
    pub refunded_at: Option<i64>,
    /// The answer given to the spend, returned again for the same key.
    pub answer: String,
}

/// A third-party OAuth client (an MCP client), registered through RFC 7591
/// dynamic client registration. Public: it holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRec {
    /// The `client_id` the broker assigned.
    pub client_id: String,
    /// What the client declared.
    pub metadata: crate::protocol::client_metadata::ClientMetadata,
    /// Registered, Unix seconds.
    pub created_at: i64,
}

/// An authorization code (RFC 6749 section 4.1) waiting to be redeemed, or
/// spent: a spent code is kept until it expires so that a second redemption
/// can revoke what the first one got (RFC 6749 section 4.1.2).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthCode {
    /// SHA-256 of the code (hex).
    pub hash: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The redirect URI of the authorization request (compared exactly).
    pub redirect_uri: String,
    /// The PKCE S256 challenge (RFC 7636).
    pub code_challenge: String,
    /// The resource (RFC 8707): the token's audience.
    pub resource: String,
    /// The scopes the owner approved.
    pub scope: String,
    /// The owner who approved.
    pub owner: String,
    /// The grant lifetime the owner chose, seconds.
    pub ttl: i64,
    /// Issued, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// The grant made when it was redeemed; `None` while unspent.
    pub gid: Option<String>,
}

impl fmt::Debug for AuthCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthCode")
            .field("client_id", &self.client_id)
            .field("resource", &self.resource)
            .field("scope", &self.scope)
            .field("owner", &self.owner)
            .field("expires_at", &self.expires_at)
            .field("gid", &self.gid)
            .finish()
    }
}
/// The state of a step-up request (OpenID CIBA, `spec/14-step-up.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepUpStatus {
    /// Waiting for the owner.
    Pending,
    /// Approved (by the owner or the grant's policy); the next accepted poll
    /// gets the one-time token.
    Approved,
    /// Denied by the owner.
    Denied,
    /// The one-time token was issued; the request is spent.
    Issued,
}

impl StepUpStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            StepUpStatus::Pending => "pending",
            StepUpStatus::Approved => "approved",
            StepUpStatus::Denied => "denied",
            StepUpStatus::Issued => "issued",
        }
    }
}

/// A step-up request: an agent of a live grant asks its owner for a
/// one-time authorization carrying RFC 9396 `authorization_details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUp {
    /// Public id (shown on the dashboard, used by its forms).
    pub id: String,
    /// SHA-256 of the `auth_req_id` (hex).
    pub hash: String,
    /// The grant's owner.
    pub owner: String,
    /// The grant the agent asked under.
    pub gid: String,
    /// The agent (`client_id` of the grant).
    pub agent: String,
    /// Thumbprint of the agent's key: only its proofs poll, and the token is bound to it.
    pub jkt: String,
    /// The audience of the one-time token.
    pub aud: String,
    /// The authorization details, normalized (a JSON array, as text).
    pub details: String,
    /// The scope the one-time token carries.
    pub scope: String,
    /// The agent's reason (`binding_message`), as sent.
    pub binding_message: Option<String>,
    /// Where it stands.
    pub status: StepUpStatus,
    /// Who decided: `owner` or `policy`.
    pub decided_by: Option<String>,
    /// When it was asked.
    pub created_at: i64,
    /// When the `auth_req_id` expires.
    pub expires_at: i64,
    /// Minimum seconds between polls.
    pub interval: i64,
    /// The last accepted poll.
    pub last_poll: Option<i64>,
    /// The one-time token's `jti`, once issued.
    pub jti: Option<String>,
    /// The resource server (`client_id`) whose verification redeemed the
    /// one-time token ([`TokenStatus::Redeemed`]): the only one that may
    /// still spend its approved payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeemed_by: Option<String>,
}

/// A grant's auto-approval policy for step-ups: payments in `currency` of
/// at most `max` (minor units) are approved without asking the owner, while
/// the grant's budget for the payment's scope (if any) has room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUpPolicy {
    /// The grant.
    pub gid: String,
    /// ISO 4217 code.
    pub currency: String,
    /// The largest amount approved automatically, minor units.
    pub max: i64,
    /// When it was set.
    pub updated_at: i64,
}
