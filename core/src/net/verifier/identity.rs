//! What a verified request tells the API ([`Identity`]), and a refused
//! request's answer ([`Rejection`]).

use std::fmt;

use super::usage::UseTicket;
use crate::error::Error;
use crate::request::{status_for, www_authenticate_needing};
use crate::scope::ScopeSet;

/// Who is calling: what a verified request tells the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The owner the agent acts for (`sub`).
    pub owner: String,
    /// The agent (`client_id`).
    pub agent: String,
    /// The token's scopes.
    pub scopes: ScopeSet,
    /// The token id (`jti`).
    pub token_id: String,
    /// The grant id (`gid`).
    pub grant_id: String,
    /// The agent's stated reason for this request, signed in its proof.
    pub reason: Option<String>,
    /// The agent key's thumbprint.
    pub jkt: String,
    /// When the token expires.
    pub expires_at: i64,
    /// This request's entry in the usage report, if reports are on.
    pub(super) use_ticket: UseTicket,
}

impl Identity {
    /// Does the token allow `scope`? `Err` is a 403 rejection (reported to
    /// the broker as this request's refusal when usage reports are on).
    pub fn require(&self, scope: &str) -> std::result::Result<(), Rejection> {
        self.scopes.require(scope).map_err(|e| {
            self.use_ticket.refused(&e, scope);
            Rejection::new(e, Some(scope), None)
        })
    }

    /// Does the token allow `resource_action` for `amount`?
    pub fn require_amount(
        &self,
        resource_action: &str,
        amount: rust_decimal::Decimal,
    ) -> std::result::Result<(), Rejection> {
        self.scopes
            .require_amount(resource_action, amount)
            .map_err(|e| {
                self.use_ticket.refused(&e, resource_action);
                // The challenge names the amount, so that the client can ask
                // for exactly it (`spec/14-step-up.md` section 14.2).
                Rejection::needing(e, resource_action, &amount.to_string(), None)
            })
    }
}

/// A refused request: the error, the status, and the headers to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The typed error (`.code()` is the wire code).
    pub error: Error,
    /// 401, 403, 400 or 503.
    pub status: u16,
    /// The exact `WWW-Authenticate` value (RFC 6750 / RFC 9449 section 7.1).
    pub www_authenticate: Option<String>,
    /// A fresh `DPoP-Nonce` to send, when the error asks for one.
    pub dpop_nonce: Option<String>,
}

impl Rejection {
    /// The rejection for `error`, with its status and challenge.
    pub fn from_error(error: Error) -> Self {
        Rejection::new(error, None, None)
    }

    pub(super) fn new(error: Error, scope: Option<&str>, dpop_nonce: Option<String>) -> Self {
        Rejection {
            status: status_for(&error),
            www_authenticate: www_authenticate_needing(&error, scope, None, None),
            error,
            dpop_nonce,
        }
    }

    /// The rejection of a call for `amount` (of `currency`, where known) of
    /// `scope`: an `insufficient_scope` or `budget_exceeded` challenge names
    /// the scope, the amount and the currency it needs
    /// (`scope="payment:execute", amount="150.00", currency="EUR"`), the
    /// parameters a client's step-up reads.
    pub fn needing(error: Error, scope: &str, amount: &str, currency: Option<&str>) -> Self {
        Rejection {
            status: status_for(&error),
            www_authenticate: www_authenticate_needing(&error, Some(scope), Some(amount), currency),
            error,
            dpop_nonce: None,
        }
    }

    /// The RFC 6749-style JSON body to send.
    pub fn body(&self) -> String {
        serde_json::json!({
            "error": self.error.code(),
            "error_description": self.error.to_string(),
        })
        .to_string()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.error, self.status)
    }
}
