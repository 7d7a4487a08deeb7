//! The one error type of the project.
//!
//! Every variant has a stable machine code ([`Error::code`]) that the broker puts
//! in RFC 6749 / RFC 9449 error bodies, Python exposes as `.code` and Node as
//! `err.code`. Where several failures share one wire code (every bad DPoP proof
//! is `invalid_dpop_proof`), [`Error::reason`] adds a stable, finer code that
//! tests and logs can rely on; it is never needed to act on the error.

use std::fmt;

/// Why a DPoP proof or an access token was refused, finer than the wire code.
///
/// The string forms ([`Reason::as_str`]) are stable and appear in logs, in the
/// audit log and in `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Zero or several `DPoP` headers, or several `Authorization` headers.
    HeaderCount,
    /// Not three base64url segments, a JWS JSON serialization, or too large.
    Malformed,
    /// base64url with padding, `+`/`/`, whitespace or non-zero trailing bits.
    Base64,
    /// JSON that is not an object, not UTF-8, or has duplicate member names.
    Json,
    /// A header or claim is missing or has the wrong type.
    MissingClaim,
    /// The `typ` header is not the one this kind of JWT must carry.
    Typ,
    /// The `alg` header is not on the allow-list (`none`, MACs, RSA, ...).
    Alg,
    /// A `crit` header names extensions (none are understood).
    Crit,
    /// The header carries a field that must not be there (`jwk` in an access token,
    /// a private key in a proof's `jwk`, `jku`, `x5u`, `x5c`).
    ForbiddenHeader,
    /// The key in the header or key set is malformed or weak (small order).
    Key,
    /// The signature does not verify.
    Signature,
    /// `htm` differs from the request method.
    Htm,
    /// `htu` differs from the request URL after normalization.
    Htu,
    /// `iat` is outside the accepted window.
    Iat,
    /// `exp` has passed (tokens; proofs that carry `exp`).
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// A nonce was required and is missing or wrong.
    Nonce,
    /// `ath` is missing or does not hash the presented access token.
    Ath,
    /// The proof's key is not the one the token is bound to (`cnf.jkt`).
    KeyBinding,
    /// This proof (`jti`) was already used.
    Replay,
    /// The `jti` is too short, too long or not printable.
    Jti,
    /// `iss` differs from the expected issuer.
    Issuer,
    /// `aud` does not contain the expected audience.
    Audience,
    /// The `kid` names no key of the key set.
    UnknownKid,
    /// A token was presented under the wrong scheme (`Bearer` for a DPoP-bound token).
    Scheme,
    /// The token or grant was revoked.
    Revoked,
    /// A step-up's one-time token that was already used, or that this API
    /// cannot redeem (it has no resource credentials).
    OneTime,
    /// The token acts for another owner than the one this API serves (`sub`).
    Owner,
    /// A `reason` claim that is not a string of at most 300 characters.
    ReasonClaim,
    /// Anything else; the message says what.
    Other,
}

impl Reason {
    /// The stable string form.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HeaderCount => "header_count",
            Reason::Malformed => "malformed",
            Reason::Base64 => "base64",
            Reason::Json => "json",
            Reason::MissingClaim => "missing_claim",
            Reason::Typ => "typ",
            Reason::Alg => "alg",
            Reason::Crit => "crit",
            Reason::ForbiddenHeader => "forbidden_header",
            Reason::Key => "key",
            Reason::Signature => "signature",
            Reason::Htm => "htm",
            Reason::Htu => "htu",
            Reason::Iat => "iat",
            Reason::Expired => "expired",
            Reason::NotYetValid => "nbf",
            Reason::Nonce => "nonce",
            Reason::Ath => "ath",
            Reason::KeyBinding => "key_binding",
            Reason::Replay => "replay",
            Reason::Jti => "jti",
            Reason::Issuer => "iss",
            Reason::Audience => "aud",
            Reason::UnknownKid => "kid",
            Reason::Scheme => "scheme",
            Reason::Revoked => "revoked",
            Reason::OneTime => "one_time",
            Reason::Owner => "owner",
            Reason::ReasonClaim => "reason",
            Reason::Other => "other",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every failure the core, the broker and the SDKs report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A DPoP proof was refused (RFC 9449 section 4.3).
    #[error("invalid DPoP proof ({reason}): {message}")]
    InvalidDpopProof {
        /// The finer reason.
        reason: Reason,
        /// What was wrong, for people.
        message: String,
    },
    /// The server requires a nonce: retry with the one it sent in `DPoP-Nonce`.
    #[error("the server requires a DPoP nonce: retry with the nonce it sent")]
    UseDpopNonce,
    /// An access token was refused (RFC 6750 `invalid_token`).
    #[error("invalid access token ({reason}): {message}")]
    InvalidToken {
        /// The finer reason.
        reason: Reason,
        /// What was wrong, for people.
        message: String,
    },
    /// A scope string is malformed, or nothing requested could be granted.
    #[error("invalid scope: {0}")]
    InvalidScope(String),
    /// The token is valid but does not carry the scope the request needs.
    #[error("insufficient scope: {0}")]
    InsufficientScope(String),
    /// The request is malformed (RFC 6749 `invalid_request`).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The grant, code or refresh token is invalid, expired, spent or revoked.
    #[error("invalid grant: {0}")]
    InvalidGrant(String),
    /// Client authentication failed.
    #[error("invalid client: {0}")]
    InvalidClient(String),
    /// The audience is not one the grant allows (RFC 8707).
    #[error("invalid target: {0}")]
    InvalidTarget(String),
    /// The grant type is not supported.
    #[error("unsupported grant type: {0}")]
    UnsupportedGrantType(String),
    /// The token type is not supported (RFC 7009 / RFC 8693).
    #[error("unsupported token type: {0}")]
    UnsupportedTokenType(String),
    /// The owner has not yet approved the device request: poll again.
    #[error("the owner has not approved the request yet")]
    AuthorizationPending,
    /// Polling too fast: add 5 seconds to the interval.
    #[error("polling too fast: slow down")]
    SlowDown,
    /// The owner denied the request.
    #[error("the owner denied the request")]
    AccessDenied,
    /// The device code or enrollment code expired: start again.
    #[error("the code expired: start a new request")]
    ExpiredToken,
    /// A key could not be parsed, generated or used.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The service cannot answer now (storage unavailable, audit not durable); retry later.
    #[error("temporarily unavailable: {0}")]
    TemporarilyUnavailable(String),
    /// An unexpected server-side failure; details are in the server's log only.
    #[error("server error: {0}")]
    Server(String),
    /// Required scopes were not granted (client side). Ask the owner for a grant
    /// that includes them, or pass `extend` to start a new approval.
    #[error("scope not granted: missing [{missing}], granted [{granted}]")]
    ScopeNotGranted {
        /// The required scopes that are not covered, space-separated.
        missing: String,
        /// What the broker granted, space-separated.
        granted: String,
    },
    /// The broker (or API) could not be reached or kept failing; retry later or
    /// check `PROTONPASS_BROKER_URL`.
    #[error("broker unavailable: {0}")]
    BrokerUnavailable(String),
    /// The broker answered something that is not a valid protocol response.
    #[error("invalid response from the broker: {0}")]
    InvalidResponse(String),
    /// The local grant store could not be read or written.
    #[error("grant storage error: {0}")]
    Storage(String),
    /// The agent's side stopped waiting (its prompt failed, it was
    /// interrupted or its task was cancelled); the pending request was
    /// withdrawn at the broker. Never sent on the wire.
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// A spend would go over the owner's budget for the grant (403).
    #[error("budget exceeded: {0}")]
    BudgetExceeded(String),
    /// An RFC 9396 `authorization_details` value is malformed, of an unknown
    /// type, or asks for more than the owner may give (400).
    #[error("invalid authorization details: {0}")]
    InvalidAuthorizationDetails(String),
}

impl Error {
    /// The stable machine code, as used on the wire (RFC 6749, 6750, 8628, 9449).
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidDpopProof { .. } => "invalid_dpop_proof",
            Error::UseDpopNonce => "use_dpop_nonce",
            Error::InvalidToken { .. } => "invalid_token",
            Error::InvalidScope(_) => "invalid_scope",
            Error::InsufficientScope(_) => "insufficient_scope",
            Error::InvalidRequest(_) => "invalid_request",
            Error::InvalidGrant(_) => "invalid_grant",
            Error::InvalidClient(_) => "invalid_client",
            Error::InvalidTarget(_) => "invalid_target",
            Error::UnsupportedGrantType(_) => "unsupported_grant_type",
            Error::UnsupportedTokenType(_) => "unsupported_token_type",
            Error::AuthorizationPending => "authorization_pending",
            Error::SlowDown => "slow_down",
            Error::AccessDenied => "access_denied",
            Error::ExpiredToken => "expired_token",
            Error::InvalidKey(_) => "invalid_key",
            Error::TemporarilyUnavailable(_) => "temporarily_unavailable",
            Error::Server(_) => "server_error",
            Error::ScopeNotGranted { .. } => "scope_not_granted",
            Error::BrokerUnavailable(_) => "broker_unavailable",
            Error::InvalidResponse(_) => "invalid_response",
            Error::Storage(_) => "storage_error",
            Error::Cancelled(_) => "cancelled",
            Error::BudgetExceeded(_) => "budget_exceeded",
            Error::InvalidAuthorizationDetails(_) => "invalid_authorization_details",
        }
    }

    /// The finer reason for proof and token failures.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Error::InvalidDpopProof { reason, .. } | Error::InvalidToken { reason, .. } => {
                Some(*reason)
            }
            _ => None,
        }
    }

    /// The human-readable detail without the code's own prefix: what goes in an
    /// RFC 6749 `error_description` (the `error` member already names the code).
    pub fn description(&self) -> String {
        match self {
            // The finer reason stays visible: clients and logs can act on it.
            Error::InvalidDpopProof { reason, message }
            | Error::InvalidToken { reason, message } => format!("{message} ({reason})"),
            Error::InvalidScope(m)
            | Error::InsufficientScope(m)
            | Error::InvalidRequest(m)
            | Error::InvalidGrant(m)
            | Error::InvalidClient(m)
            | Error::InvalidTarget(m)
            | Error::UnsupportedGrantType(m)
            | Error::UnsupportedTokenType(m)
            | Error::InvalidKey(m)
            | Error::TemporarilyUnavailable(m)
            | Error::Server(m)
            | Error::BrokerUnavailable(m)
            | Error::InvalidResponse(m)
            | Error::Storage(m)
            | Error::Cancelled(m) => m.clone(),
            Error::BudgetExceeded(m) | Error::InvalidAuthorizationDetails(m) => m.clone(),
            other => other.to_string(),
        }
    }

    /// Rebuild an error from an RFC 6749 error body (`error`, `error_description`)
    /// received over the wire. Unknown codes become [`Error::InvalidResponse`].
    pub fn from_wire(code: &str, description: Option<&str>) -> Self {
        let d = description.unwrap_or_default().to_owned();
        match code {
            "invalid_dpop_proof" => Error::InvalidDpopProof {
                reason: Reason::Other,
                message: d,
            },
            "use_dpop_nonce" => Error::UseDpopNonce,
            "invalid_token" => Error::InvalidToken {
                reason: Reason::Other,
                message: d,
            },
            "invalid_scope" => Error::InvalidScope(d),
            "insufficient_scope" => Error::InsufficientScope(d),
            "invalid_request" => Error::InvalidRequest(d),
            "invalid_grant" => Error::InvalidGrant(d),
            "invalid_client" | "unauthorized_client" => Error::InvalidClient(d),
            "invalid_target" => Error::InvalidTarget(d),
            "unsupported_grant_type" => Error::UnsupportedGrantType(d),
            "unsupported_token_type" => Error::UnsupportedTokenType(d),
            "authorization_pending" => Error::AuthorizationPending,
            "slow_down" => Error::SlowDown,
            "access_denied" => Error::AccessDenied,
            "expired_token" => Error::ExpiredToken,
            "temporarily_unavailable" => Error::TemporarilyUnavailable(d),
            "server_error" => Error::Server(d),
            "budget_exceeded" => Error::BudgetExceeded(d),
            "invalid_authorization_details" => Error::InvalidAuthorizationDetails(d),
            other => Error::InvalidResponse(format!("unknown error code {other:?}: {d}")),
        }
    }

    pub(crate) fn proof(reason: Reason, message: impl Into<String>) -> Self {
        Error::InvalidDpopProof {
            reason,
            message: message.into(),
        }
    }

    pub(crate) fn token(reason: Reason, message: impl Into<String>) -> Self {
        Error::InvalidToken {
            reason,
            message: message.into(),
        }
    }

    /// Turn a JWS-level failure found while reading a proof into a token failure
    /// (or the other way round): the finer reason stays, the wire code changes.
    pub(crate) fn into_token_error(self) -> Self {
        match self {
            Error::InvalidDpopProof { reason, message } => Error::InvalidToken { reason, message },
            other => other,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
