//! Spending from the owner's budget for a request that a `spend` rule
//! matches: the amount is read from the request, spent through the same
//! service call as `POST /budget/spend` (atomic, idempotent, audited), and
//! given back when the upstream refused the call or was never reached.

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::Response;
use protonpass_agent::Error;
use protonpass_agent::budget::{RefundRequest, SpendRequest, check_idempotency_key};

use super::spend_rule::{MAX_BODY, RequestView, SpendRule, amount_of};
use crate::model::Resource;
use crate::service::Broker;

/// Set on a response when the upstream answered it.
#[derive(Clone, Copy)]
pub(super) struct Answered;

/// Set on a response when the request never left the gateway.
#[derive(Clone, Copy)]
pub(super) struct NotSent;

/// Who spends: the upstream (as a resource of its owner) and the token.
pub(super) struct Spender<'a> {
    /// The upstream's name.
    pub upstream: &'a str,
    /// Its audience.
    pub audience: &'a str,
    /// Its owner.
    pub owner: &'a str,
    /// The grant.
    pub gid: &'a str,
    /// The token.
    pub jti: &'a str,
    /// The proof's `jti`: the idempotency key when the agent sends none.
    pub proof_jti: &'a str,
}

/// A spend made, to give back if the call fails.
pub(super) struct Charged {
    rs: Resource,
    gid: String,
    key: String,
    /// Whether this call made the spend (not a retry under the same key):
    /// only then may it be given back.
    pub(super) created: bool,
}

fn resource(s: &Spender<'_>) -> Resource {
    Resource {
        client_id: format!("gateway:{}", s.upstream),
        owner: s.owner.to_owned(),
        audience: s.audience.to_owned(),
        secret_hash: String::new(),
        created_at: 0,
        shared: false,
        scopes: Default::default(),
        accept_bearer: false,
    }
}

/// A refused charge: the error and, once the amount was read, the amount
/// and currency the call needed (named in the refusal's challenge).
pub(super) struct Refused {
    pub error: Error,
    pub needed: Option<(String, String)>,
}

impl From<Error> for Refused {
    fn from(error: Error) -> Self {
        Refused {
            error,
            needed: None,
        }
    }
}

/// Read what the rule needs (the body only when the amount or currency is
/// in it, at most [`MAX_BODY`] bytes), spend, and return the body to forward.
pub(super) async fn charge(
    b: &Broker,
    rule: &SpendRule,
    scope: &str,
    who: &Spender<'_>,
    parts: &Parts,
    body: Body,
) -> Result<(Body, Charged), Refused> {
    let needs_body = rule.amount.in_body()
        || matches!(&rule.currency, super::spend_rule::Currency::From(s) if s.in_body());
    let (bytes, kept) = if needs_body {
        let read = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
            Error::InvalidRequest(format!(
                "a request that spends has a body of at most {MAX_BODY} bytes"
            ))
        })?;
        (read, None)
    } else {
        (Bytes::new(), Some(body))
    };
    let content_type = one_header(parts, header::CONTENT_TYPE.as_str())?
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (amount, currency, key) = read_spend(rule, parts, &bytes, &content_type, who)?;
    let rs = resource(who);
    let (_, created) = b
        .spend_once(
            &rs,
            SpendRequest {
                grant_id: who.gid.to_owned(),
                token_id: who.jti.to_owned(),
                scope: scope.to_owned(),
                amount: amount.clone(),
                currency: currency.clone(),
                idempotency_key: key.clone(),
            },
        )
        .await
        .map_err(|error| Refused {
            error,
            needed: Some((amount, currency)),
        })?;
    let body = kept.unwrap_or_else(|| Body::from(bytes));
    Ok((
        body,
        Charged {
            rs,
            gid: who.gid.to_owned(),
            key,
            created,
        },
    ))
}

/// The amount, currency and idempotency key of a request (no await here: the
/// header reader is not `Send`).
fn read_spend(
    rule: &SpendRule,
    parts: &Parts,
    bytes: &[u8],
    content_type: &str,
    who: &Spender<'_>,
) -> Result<(String, String, String), Error> {
    // A header sent twice is refused by `amount_of` (through `one_header`):
    // the upstream might read the other one.
    let header = |n: &str| one_header(parts, n).ok().flatten();
    let view = RequestView {
        header: &header,
        query: parts.uri.query(),
        body: bytes,
        content_type,
    };
    let (amount, currency) = amount_of(rule, &view)?;
    // The agent's own key (a retry of the same payment) or, failing that,
    // the proof's: a fresh proof per request, so one spend per request.
    // Keys are the grant's own (another agent's key never collides) and of
    // a fixed length whatever the agent sent.
    let key = match one_header(parts, "idempotency-key")? {
        Some(k) => {
            check_idempotency_key(&k)?;
            format!("a:{}", digest(&[who.gid, &k]))
        }
        None => format!("p:{}", digest(&[who.gid, who.proof_jti])),
    };
    Ok((amount, currency, key))
}

/// The one value of header `name`, `None` when absent; sent more than once
/// (or not text) it is refused, since the upstream might read another one.
fn one_header(parts: &Parts, name: &str) -> Result<Option<String>, Error> {
    let mut values = parts.headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Error::InvalidRequest(format!(
            "the header {name} is sent more than once"
        )));
    }
    first
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| Error::InvalidRequest(format!("the header {name} is not text")))
        })
        .transpose()
}

fn digest(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    protonpass_agent::b64::encode(h.finalize())
}

/// Whether a spend must be given back because the call did not go through: the upstream
/// answered with an error (not 504, after which the payment may have been
/// made), or the request was never sent.
pub(super) fn failed(r: &Response) -> bool {
    let status = r.status();
    let refused = r.extensions().get::<Answered>().is_some()
        && !status.is_success()
        && !status.is_informational()
        && !status.is_redirection()
        && status.as_u16() != 504;
    refused || r.extensions().get::<NotSent>().is_some()
}

/// Give a spend back (see [`failed`]).
pub(super) async fn give_back(b: &Broker, c: Charged) {
    if c.created {
        let req = RefundRequest {
            grant_id: c.gid,
            idempotency_key: c.key,
        };
        if let Err(e) = b.refund_known(&c.rs, req).await {
            tracing::warn!(
                error = e.code(),
                "a failed call's spend could not be given back"
            );
        }
    }
}
