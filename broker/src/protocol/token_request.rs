//! The token endpoint's request, read before any state is: one pure function
//! from the request's content type and body to a typed grant, or to the error
//! the endpoint answers (the same RFC 6749 / RFC 8693 code whatever the store
//! holds).

use protonpass_agent::wire::{
    GRANT_CIBA, GRANT_DEVICE_CODE, GRANT_PRE_AUTHORIZED_CODE, GRANT_REFRESH_TOKEN,
    GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS, TOKEN_TYPE_REFRESH,
};
use protonpass_agent::{Error, Result, ScopeSet};
use subtle::ConstantTimeEq;

use crate::protocol::params::Params;

/// A code or token the client sent: `Debug` never shows it, and equality is
/// constant-time.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}

impl Eq for Secret {}

/// What an exchange's subject token is (RFC 8693 `subject_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    /// One of this broker's refresh tokens.
    Refresh,
    /// One of this broker's access tokens.
    Access,
}

impl SubjectKind {
    /// The token type URI (RFC 8693 section 3).
    pub fn uri(self) -> &'static str {
        match self {
            SubjectKind::Refresh => TOKEN_TYPE_REFRESH,
            SubjectKind::Access => TOKEN_TYPE_ACCESS,
        }
    }
}

/// A token request that passed every check that needs no state. `scope` is
/// the requested scope as sent (valid syntax; `None` when absent or only
/// `offline_access`); `audience` is the one `resource` or `audience` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRequest {
    /// Redeem an owner-made enrollment code (pre-authorized code grant).
    PreAuthorized {
        /// `pre-authorized_code`.
        code: Secret,
        /// Requested scope.
        scope: Option<String>,
        /// Requested audience.
        audience: Option<String>,
        /// `client_id`, if the agent named itself.
        client_id: Option<String>,
    },
    /// Redeem an authorization code (RFC 6749 section 4.1.3) with its PKCE
    /// verifier (RFC 7636).
    AuthorizationCode {
        /// `code`.
        code: Secret,
        /// `redirect_uri`, as in the authorization request.
        redirect_uri: String,
        /// `client_id`: a public client names itself.
        client_id: String,
        /// `code_verifier`.
        code_verifier: Secret,
        /// Requested audience (`resource`), if named.
        audience: Option<String>,
    },
    /// Poll for a device request's outcome (RFC 8628 section 3.4).
    DeviceCode {
        /// `device_code`.
        device_code: Secret,
        /// `client_id`, if the agent named itself.
        client_id: Option<String>,
    },
    /// Rotate a refresh token (RFC 6749 section 6).
    Refresh {
        /// `refresh_token`.
        refresh_token: Secret,
        /// Requested scope.
        scope: Option<String>,
        /// Requested audience.
        audience: Option<String>,
    },
    /// Exchange a token for an access token (RFC 8693).
    Exchange {
        /// `subject_token`.
        subject_token: Secret,
        /// `subject_token_type`.
        subject_kind: SubjectKind,
        /// Requested scope.
        scope: Option<String>,
        /// Requested audience.
        audience: Option<String>,
        /// A shorter access-token lifetime the agent asks for (`expires_in`,
        /// seconds). It can only shorten: the broker's access-token lifetime
        /// and the subject's expiry still bound it.
        lifetime: Option<i64>,
    },
    /// Poll for a step-up's outcome (OpenID CIBA section 10.1, poll mode).
    Ciba {
        /// `auth_req_id`.
        auth_req_id: Secret,
    },
}

/// Why a token request was refused, and when the endpoint says so: the
/// endpoint checks the request, then the DPoP proof, then the grant's own
/// parameters, so a bad proof is reported before a missing code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not a form the endpoint reads (content type, too many, repeated or
    /// oversized parameters): answered at once.
    Form(Error),
    /// `grant_type` or `scope` is wrong: answered before the proof is checked.
    Request {
        /// The answer.
        error: Error,
        /// `grant_type` as sent, if it was.
        grant_type: Option<String>,
    },
    /// The grant's own parameters are wrong: answered after the proof is checked.
    Grant {
        /// The answer.
        error: Error,
        /// The grant type.
        grant_type: &'static str,
    },
}

impl Refused {
    /// The error answered.
    pub fn error(&self) -> &Error {
        match self {
            Refused::Form(error)
            | Refused::Request { error, .. }
            | Refused::Grant { error, .. } => error,
        }
    }

    /// The error answered, by value.
    pub fn into_error(self) -> Error {
        match self {
            Refused::Form(error)
            | Refused::Request { error, .. }
            | Refused::Grant { error, .. } => error,
        }
    }

    /// `grant_type` as sent, when the form was readable and held one.
    pub fn grant_type(&self) -> Option<&str> {
        match self {
            Refused::Form(_) => None,
            Refused::Request { grant_type, .. } => grant_type.as_deref(),
            Refused::Grant { grant_type, .. } => Some(grant_type),
        }
    }
}

/// The authorization code grant (RFC 6749 section 4.1), for third-party clients.
pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";

/// The grant types the endpoint serves.
const GRANTS: [&str; 6] = [
    GRANT_AUTHORIZATION_CODE,
    GRANT_PRE_AUTHORIZED_CODE,
    GRANT_DEVICE_CODE,
    GRANT_REFRESH_TOKEN,
    GRANT_TOKEN_EXCHANGE,
    GRANT_CIBA,
];

impl TokenRequest {
    /// Read a token request: `content_type` is the header's value (if any),
    /// `body` the request body.
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> std::result::Result<Self, Refused> {
        let p = Params::from_form(content_type, body).map_err(Refused::Form)?;
        let sent = p.req("grant_type").map_err(|error| Refused::Request {
            error,
            grant_type: None,
        })?;
        let Some(grant_type) = GRANTS.into_iter().find(|g| *g == sent) else {
            return Err(Refused::Request {
                error: Error::UnsupportedGrantType(format!("{sent:?} is not supported")),
                grant_type: Some(sent.to_owned()),
            });
        };
        let scope = requested_scope(&p).map_err(|error| Refused::Request {
            error,
            grant_type: Some(grant_type.to_owned()),
        })?;
        Self::grant(&p, grant_type, scope).map_err(|error| Refused::Grant { error, grant_type })
    }

    /// The grant type (`grant_type`).
    pub fn grant_type(&self) -> &'static str {
        match self {
            TokenRequest::PreAuthorized { .. } => GRANT_PRE_AUTHORIZED_CODE,
            TokenRequest::DeviceCode { .. } => GRANT_DEVICE_CODE,
            TokenRequest::Refresh { .. } => GRANT_REFRESH_TOKEN,
            TokenRequest::Exchange { .. } => GRANT_TOKEN_EXCHANGE,
            TokenRequest::AuthorizationCode { .. } => GRANT_AUTHORIZATION_CODE,
            TokenRequest::Ciba { .. } => GRANT_CIBA,
        }
    }

    fn grant(p: &Params, grant_type: &str, scope: Option<String>) -> Result<Self> {
        let secret = |name: &str| p.req(name).map(|s| Secret(s.to_owned()));
        let client_id = || p.get("client_id").map(str::to_owned);
        Ok(match grant_type {
            GRANT_PRE_AUTHORIZED_CODE => {
                let code = secret("pre-authorized_code")?;
                TokenRequest::PreAuthorized {
                    code,
                    scope,
                    audience: requested_audience(p)?,
                    client_id: client_id(),
                }
            }
            GRANT_CIBA => TokenRequest::Ciba {
                auth_req_id: secret("auth_req_id")?,
            },
            GRANT_DEVICE_CODE => TokenRequest::DeviceCode {
                device_code: secret("device_code")?,
                client_id: client_id(),
            },
            GRANT_AUTHORIZATION_CODE => {
                let code = secret("code")?;
                let redirect_uri = p.req("redirect_uri")?.to_owned();
                let client_id = p.req("client_id")?.to_owned();
                let code_verifier = secret("code_verifier")?;
                // RFC 7636 section 4.1: 43 to 128 unreserved characters.
                let v = code_verifier.expose();
                if !(43..=128).contains(&v.len())
                    || !v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
                {
                    return Err(Error::InvalidRequest(
                        "code_verifier must be 43 to 128 unreserved characters (RFC 7636)".into(),
                    ));
                }
                TokenRequest::AuthorizationCode {
                    code,
                    redirect_uri,
                    client_id,
                    code_verifier,
                    audience: requested_audience(p)?,
                }
            }
            GRANT_REFRESH_TOKEN => {
                let refresh_token = secret("refresh_token")?;
                TokenRequest::Refresh {
                    refresh_token,
                    scope,
                    audience: requested_audience(p)?,
                }
            }
            _ => {
                let subject_token = secret("subject_token")?;
                let subject_type = p.req("subject_token_type")?;
                if let Some(t) = p.get("requested_token_type")
                    && t != TOKEN_TYPE_ACCESS
                {
                    return Err(Error::InvalidRequest(
                        "only access tokens can be requested".into(),
                    ));
                }
                if p.get("actor_token").is_some() {
                    return Err(Error::InvalidRequest(
                        "actor tokens are not supported; the proof's key is the actor".into(),
                    ));
                }
                let audience = requested_audience(p)?;
                let subject_kind = match subject_type {
                    TOKEN_TYPE_REFRESH => SubjectKind::Refresh,
                    TOKEN_TYPE_ACCESS => SubjectKind::Access,
                    other => {
                        return Err(Error::UnsupportedTokenType(format!(
                            "{other:?} cannot be exchanged"
                        )));
                    }
                };
                TokenRequest::Exchange {
                    subject_token,
                    subject_kind,
                    scope,
                    audience,
                    lifetime: requested_lifetime(p)?,
                }
            }
        })
    }
}

/// `expires_in` on a token exchange: whole seconds, at least 1; more than the
/// longest lifetime (30 days) is capped, not refused (RFC 6749 leaves the
/// lifetime to the server; the agent only ever gets less than it asked).
fn requested_lifetime(p: &Params) -> Result<Option<i64>> {
    let Some(v) = p.get("expires_in") else {
        return Ok(None);
    };
    if !v.bytes().all(|c| c.is_ascii_digit()) || v.bytes().all(|c| c == b'0') {
        return Err(Error::InvalidRequest(
            "expires_in is a whole number of seconds, at least 1".into(),
        ));
    }
    let max = crate::protocol::MAX_TTL;
    Ok(Some(v.parse::<i64>().map_or(max, |n| n.min(max))))
}

/// The requested scope: valid syntax, and a `scope` parameter sent empty is
/// `invalid_scope` (not "no scope requested").
fn requested_scope(p: &Params) -> Result<Option<String>> {
    match p.get("scope") {
        Some(s) => {
            ScopeSet::parse(s)?;
            Ok(Some(s.to_owned()))
        }
        None if p.has("scope") => Err(Error::InvalidScope(
            "the scope parameter holds no scope".into(),
        )),
        None => Ok(None),
    }
}

/// The audience named by `resource` (RFC 8707) or `audience` (RFC 8693), at
/// the token and device authorization endpoints. A `resource` is an absolute
/// URI without fragment (RFC 8707 section 2); both naming different
/// audiences is `invalid_target`.
pub fn requested_audience(p: &Params) -> Result<Option<String>> {
    if let Some(r) = p.get("resource") {
        let ok = r.len() <= 512 && url::Url::parse(r).is_ok_and(|u| u.fragment().is_none());
        if !ok {
            return Err(Error::InvalidTarget(
                "resource must be an absolute URI without a fragment (RFC 8707)".into(),
            ));
        }
    }
    if [p.get("resource"), p.get("audience")]
        .into_iter()
        .flatten()
        .any(|x| x.chars().any(char::is_control))
    {
        return Err(Error::InvalidTarget(
            "an audience holds no control characters".into(),
        ));
    }
    match (p.get("resource"), p.get("audience")) {
        (Some(r), Some(a)) if r != a => Err(Error::InvalidTarget(
            "resource and audience name different audiences".into(),
        )),
        (Some(x), _) | (None, Some(x)) => Ok(Some(x.to_owned())),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
#[path = "token_request_tests.rs"]
mod tests;
