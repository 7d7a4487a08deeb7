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

/// Read what the rule needs (the body only when the amount or currency is
/// in it, at most [`MAX_BODY`] bytes), spend, and return the body to forward.
pub(super) async fn charge(
    b: &Broker,
    rule: &SpendRule,
    scope: &str,
    who: &Spender<'_>,
    parts: &Parts,
    body: Body,
) -> Result<(Body, Charged), Error> {
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
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (amount, currency, key) = read_spend(rule, parts, &bytes, &content_type, who)?;
    let rs = resource(who);
    b.spend(
        &rs,
        SpendRequest {
            grant_id: who.gid.to_owned(),
            token_id: who.jti.to_owned(),
            scope: scope.to_owned(),
            amount,
            currency,
            idempotency_key: key.clone(),
        },
    )
    .await?;
    let body = kept.unwrap_or_else(|| Body::from(bytes));
    Ok((
        body,
        Charged {
            rs,
            gid: who.gid.to_owned(),
            key,
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
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let view = RequestView {
        header: &header,
        query: parts.uri.query(),
        body: bytes,
        content_type,
    };
    let (amount, currency) = amount_of(rule, &view)?;
    // The agent's own key (a retry of the same payment) or, failing that,
    // the proof's: a fresh proof per request, so one spend per request.
    let key = match header("idempotency-key") {
        Some(k) => {
            check_idempotency_key(&k)?;
            format!("agent:{k}")
        }
        None => format!("proof:{}", who.proof_jti),
    };
    Ok((amount, currency, key))
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
    {
        let req = RefundRequest {
            grant_id: c.gid,
            idempotency_key: c.key,
        };
        if let Err(e) = b.refund(&c.rs, req).await {
            tracing::warn!(
                error = e.code(),
                "a failed call's spend could not be given back"
            );
        }
    }
}
