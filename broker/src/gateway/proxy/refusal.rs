//! The gateway's refusals and failures as JSON answers (RFC 6749 error
//! codes, `WWW-Authenticate` for the token's problems), each noted on the
//! call's audit record.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protonpass_agent::wire::ErrorBody;
use protonpass_agent::{Error, status_for, www_authenticate_needing};

use crate::gateway::spend_call::NotSent;

use super::Call;

pub(super) fn json_error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = ErrorBody {
        error: code.into(),
        error_description: Some(description.into()),
    };
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(super) fn refuse(
    call: &mut Call,
    e: &Error,
    scope: Option<&str>,
    nonce: Option<String>,
) -> Response {
    let mut r = refuse_needing(call, e, scope, None);
    if let Some(n) = nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
        r.headers_mut().insert("dpop-nonce", n);
    }
    r
}

/// [`refuse`] of a spend: a `budget_exceeded` or `insufficient_scope`
/// challenge names the amount and currency the call needed.
pub(super) fn refuse_needing(
    call: &mut Call,
    e: &Error,
    scope: Option<&str>,
    need: Option<(&str, &str)>,
) -> Response {
    let status = StatusCode::from_u16(status_for(e)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json_error(
        status,
        e.code(),
        &ErrorBody::from(e).error_description.unwrap_or_default(),
    );
    let (amount, currency) = need.unzip();
    if let Some(v) = www_authenticate_needing(e, scope, amount, currency)
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    call.status = status.as_u16();
    call.error = Some(e.code());
    call.error_reason = e.reason().map(|r| r.as_str());
    r
}

pub(super) fn header_values(h: &HeaderMap, name: &str) -> Vec<String> {
    // A value that is not text cannot be a token or a proof: keep it, empty, so
    // that the count checks still see it.
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect()
}

/// `502` when the upstream cannot be reached, `504` when it is too slow.
pub(super) fn upstream_failed(call: &mut Call, timeout: bool) -> Response {
    let (status, code, text) = if timeout {
        (
            StatusCode::GATEWAY_TIMEOUT,
            "gateway_timeout",
            "the upstream did not answer in time",
        )
    } else {
        (
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            "the upstream could not be reached",
        )
    };
    call.status = status.as_u16();
    call.error = Some(code);
    json_error(status, code, text)
}

/// `502` (`503` for storage) when an OAuth upstream has no usable access token.
pub(super) fn no_token(
    call: &mut Call,
    name: &str,
    why: crate::gateway::oauth::NoToken,
) -> Response {
    use crate::gateway::oauth::NoToken;
    let (status, code, text) = match why {
        NoToken::NotConnected => (
            StatusCode::BAD_GATEWAY,
            "upstream_not_connected",
            format!("the owner has not connected upstream {name} (upstream connect {name})"),
        ),
        NoToken::Broken(id) => {
            call.connection = Some(id);
            (
                StatusCode::BAD_GATEWAY,
                "upstream_connection_broken",
                format!(
                    "the provider refused to renew upstream {name}'s connection: the owner must reconnect it"
                ),
            )
        }
        NoToken::Unreachable => (
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            "the upstream's token endpoint could not be reached".to_owned(),
        ),
        NoToken::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "storage or vault unavailable".to_owned(),
        ),
    };
    call.status = status.as_u16();
    call.error = Some(code);
    json_error(status, code, &text)
}

/// Mark a response to a request that never left the gateway.
pub(super) fn not_sent(mut r: Response) -> Response {
    r.extensions_mut().insert(NotSent);
    r
}
