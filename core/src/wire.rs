//! OAuth wire types shared by the broker and the SDKs: token responses,
//! RFC 6749 error bodies, RFC 8414 metadata, RFC 8628 device authorization
//! responses, RFC 7662 introspection responses, and the revocation feed.
//!
//! Types that carry a token or a code have a hand-written `Debug` that
//! redacts it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// `grant_type` of the device authorization grant (RFC 8628).
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// `grant_type` of refresh (RFC 6749 section 6).
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
/// `grant_type` of token exchange (RFC 8693).
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// `grant_type` of enrollment with an owner-made code (OpenID4VCI).
pub const GRANT_PRE_AUTHORIZED_CODE: &str = "urn:ietf:params:oauth:grant-type:pre-authorized_code";
/// `grant_type` of OpenID CIBA (poll mode): a step-up's one-time token.
pub const GRANT_CIBA: &str = "urn:openid:params:grant-type:ciba";
/// Every grant type the broker supports, as advertised in its metadata.
pub const GRANT_TYPES: &[&str] = &[
    GRANT_DEVICE_CODE,
    GRANT_REFRESH_TOKEN,
    GRANT_TOKEN_EXCHANGE,
    GRANT_PRE_AUTHORIZED_CODE,
    GRANT_CIBA,
];
/// Path of the backchannel authentication endpoint (OpenID CIBA), relative
/// to the issuer.
pub const BACKCHANNEL_PATH: &str = "/oauth/bc-authorize";
/// RFC 8693 token type of access tokens.
pub const TOKEN_TYPE_ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
/// RFC 8693 token type of refresh tokens.
pub const TOKEN_TYPE_REFRESH: &str = "urn:ietf:params:oauth:token-type:refresh_token";
/// Path of the metadata document (RFC 8414), relative to the issuer.
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// A successful token endpoint response (RFC 6749 section 5.1, RFC 8693 2.2.1).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The access token (a JWT, RFC 9068).
    pub access_token: String,
    /// Always `DPoP` for this broker.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The scopes granted, space-separated.
    pub scope: String,
    /// The rotated refresh token, DPoP-bound: on every grant that spends one,
    /// including a token exchange whose subject is a refresh token; absent
    /// when the subject was an access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// RFC 8693: the type of the issued token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<String>,
    /// Extension: the grant id (`gid`) the tokens belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// Extension: the audience the access token is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Extension: when the grant (and so the refresh token) ends, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_expires_at: Option<i64>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("grant_id", &self.grant_id)
            .field("audience", &self.audience)
            .finish()
    }
}

/// An RFC 6749 section 5.2 error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The machine code (`invalid_grant`, `use_dpop_nonce`, ...).
    pub error: String,
    /// Text for people; never a token or a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

impl From<&Error> for ErrorBody {
    fn from(e: &Error) -> Self {
        let description = match e {
            // Server-side details stay in the server's log.
            Error::Server(_) => "internal error".to_owned(),
            other => other.description(),
        };
        ErrorBody {
            error: e.code().to_owned(),
            error_description: Some(description),
        }
    }
}

impl From<Error> for ErrorBody {
    fn from(e: Error) -> Self {
        ErrorBody::from(&e)
    }
}

impl ErrorBody {
    /// Turn a received error body back into the core error (SDK side).
    pub fn into_error(self) -> Error {
        Error::from_wire(&self.error, self.error_description.as_deref())
    }
}

/// The HTTP status an authorization server endpoint answers `e` with
/// (RFC 6749 section 5.2, RFC 8628 3.5, RFC 9449 sections 5 and 8).
pub fn oauth_status(e: &Error) -> u16 {
    match e {
        Error::InvalidClient(_) | Error::InvalidToken { .. } => 401,
        Error::InsufficientScope(_) | Error::BudgetExceeded(_) => 403,
        Error::TemporarilyUnavailable(_) => 503,
        Error::Server(_) => 500,
        _ => 400,
    }
}

/// RFC 8414 authorization server metadata, with this project's extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerMetadata {
    /// The issuer URL, exactly as in tokens' `iss`.
    pub issuer: String,
    /// `POST` token requests here.
    pub token_endpoint: String,
    /// RFC 8628 device authorization endpoint.
    pub device_authorization_endpoint: String,
    /// RFC 7009 revocation endpoint.
    pub revocation_endpoint: String,
    /// RFC 7662 introspection endpoint.
    pub introspection_endpoint: String,
    /// The JWKS of the token signing keys.
    pub jwks_uri: String,
    /// Grant types (all four).
    pub grant_types_supported: Vec<String>,
    /// No authorization endpoint: no response types.
    #[serde(default)]
    pub response_types_supported: Vec<String>,
    /// Agents are public clients.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Agents revoke with `client_id` alone.
    #[serde(default)]
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    /// Resource servers authenticate with a secret.
    #[serde(default)]
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    /// RFC 9449 proof algorithms.
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// Extension: `GET` the revocation feed here (`?after=SEQ`).
    pub revocation_feed_endpoint: String,
    /// Extension: the same feed as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_stream_endpoint: Option<String>,
    /// Extension: resource servers `POST` usage reports here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_endpoint: Option<String>,
    /// Where owners approve device requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_uri: Option<String>,
    /// Extension: resource servers register themselves here with a one-time
    /// token (`spec/13-resources.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_registration_endpoint: Option<String>,
    /// Extension: the upstream APIs served through the broker's
    /// credential-injecting gateway, and where (`spec/10-gateway-rules.md`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protonpass_gateways: Vec<GatewayEntry>,
    /// OpenID CIBA: where agents ask for a step-up (`spec/14-step-up.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_authentication_endpoint: Option<String>,
    /// OpenID CIBA delivery modes: `poll` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backchannel_token_delivery_modes_supported: Vec<String>,
    /// RFC 9396 authorization detail types a step-up may carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_details_types_supported: Vec<String>,
}

/// One upstream served through the broker's gateway, as the metadata lists it:
/// a URL under `audience` is served at the same path under `gateway_url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayEntry {
    /// The upstream's token audience (its API URL by default).
    pub audience: String,
    /// Where agents send its requests: `{issuer}/gateway/{name}`.
    pub gateway_url: String,
}

/// An RFC 8628 section 3.2 device authorization response.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAuthorizationResponse {
    /// The secret the agent polls with.
    pub device_code: String,
    /// The short code the owner enters (`XXXX-XXXX`).
    pub user_code: String,
    /// Where the owner enters it.
    pub verification_uri: String,
    /// The same, with the code filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_uri_complete: Option<String>,
    /// Seconds until the codes expire.
    pub expires_in: i64,
    /// Seconds to wait between polls.
    pub interval: i64,
}

impl fmt::Debug for DeviceAuthorizationResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuthorizationResponse")
            .field("device_code", &"<redacted>")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish()
    }
}

/// The `cnf` member of an introspection response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// RFC 7638 thumbprint of the key the token is bound to.
    pub jkt: String,
}

/// An RFC 7662 section 2.2 introspection response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntrospectionResponse {
    /// Whether the token is currently valid. When false nothing else is sent.
    pub active: bool,
    /// Scopes, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// `DPoP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// The key binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// The grant id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
}

/// One entry of the revocation feed: a revoked token id (`jti`) or grant id
/// (`gid`), kept in the feed until `exp`, after which nothing it names is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEvent {
    /// Position in the feed; strictly increasing.
    pub seq: i64,
    /// A revoked token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// A revoked grant id: every token carrying this `gid` is revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// When the revoked tokens expire anyway, Unix seconds.
    pub exp: i64,
}

/// A page of the revocation feed (`GET /revocations?after=SEQ`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationFeed {
    /// Entries after the requested position, oldest first.
    pub revocations: Vec<RevocationEvent>,
    /// Ask for `after=next` to continue.
    pub next: i64,
}

/// One use of a token (or a refused request), as a resource server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// The token id; absent for a refusal where no token could be verified
    /// (no token, a forged one, another audience's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Request path (no query).
    pub path: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// For `allow`, the agent's stated reason (signed in its proof). For
    /// `deny`, the finer reason of the error (`replay`, `revoked`, `owner`...,
    /// see `Error::reason`), when it has one. (Reporters older than `code`
    /// sent the error code here for `deny`; the broker reads such an entry as
    /// a `code` without a finer reason.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `deny`: the error code (`invalid_token`, `invalid_dpop_proof`,
    /// `insufficient_scope`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// For `insufficient_scope`: the scope the request needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// When, Unix seconds (the broker's time if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
}

/// A batch of uses (`POST /audit/usage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// The uses.
    pub uses: Vec<UsageEvent>,
}
