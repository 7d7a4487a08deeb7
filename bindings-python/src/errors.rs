//! The exception hierarchy: one class per kind of failure a caller acts on
//! differently, each carrying `.code` (the core's stable wire code).

use protonpass_agent::{Error, Rejection};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyType;

create_exception!(
    protonpass_agent,
    ProtonPassError,
    PyException,
    "Base class of every error raised by protonpass_agent; `.code` is the stable machine code."
);
create_exception!(
    protonpass_agent,
    ScopeNotGranted,
    ProtonPassError,
    "Required scopes were not granted; `.missing` and `.granted` list them."
);
create_exception!(
    protonpass_agent,
    InsufficientScope,
    ProtonPassError,
    "A verified token lacks the scope a request needs (HTTP 403)."
);
create_exception!(
    protonpass_agent,
    BudgetExceeded,
    ProtonPassError,
    "A spend would go over the owner's budget for the grant (HTTP 403)."
);
create_exception!(
    protonpass_agent,
    InvalidScope,
    ProtonPassError,
    "A scope is malformed, or nothing requested could be granted."
);
create_exception!(
    protonpass_agent,
    AccessDenied,
    ProtonPassError,
    "The owner denied the request."
);
create_exception!(
    protonpass_agent,
    Expired,
    ProtonPassError,
    "The device request or enrollment code expired before it was used."
);
create_exception!(
    protonpass_agent,
    InvalidGrant,
    ProtonPassError,
    "The grant, code or refresh token is invalid, expired, spent or revoked."
);
create_exception!(
    protonpass_agent,
    InvalidToken,
    ProtonPassError,
    "An access token was refused (expired, revoked, wrong audience, bad signature, ...)."
);
create_exception!(
    protonpass_agent,
    InvalidProof,
    ProtonPassError,
    "A DPoP proof was refused, or the server asks for a DPoP nonce (`use_dpop_nonce`)."
);
create_exception!(
    protonpass_agent,
    InvalidRequest,
    ProtonPassError,
    "The request or an argument is malformed."
);
create_exception!(
    protonpass_agent,
    BrokerUnavailable,
    ProtonPassError,
    "The broker could not be reached, or is temporarily unable to answer."
);
create_exception!(
    protonpass_agent,
    InvalidResponse,
    ProtonPassError,
    "The broker answered something that is not a valid protocol response."
);
create_exception!(
    protonpass_agent,
    StorageError,
    ProtonPassError,
    "The local grant store could not be read or written."
);

/// What to do, appended to the core's message.
fn hint(e: &Error) -> &'static str {
    match e {
        Error::ScopeNotGranted { .. } => {
            " Ask the owner for a grant that includes them, pass extend=True to request them, or make them optional with required=[...]."
        }
        Error::AccessDenied => " Ask the owner to approve the agent, then call again.",
        Error::ExpiredToken => " Call again to start a new request, and approve it in time.",
        Error::InvalidGrant(_) => {
            " Call authenticate_with_proton again to ask the owner for a new grant."
        }
        Error::BrokerUnavailable(_) | Error::TemporarilyUnavailable(_) | Error::Server(_) => {
            " Retry later; check that the broker runs and that PROTONPASS_BROKER_URL points at it."
        }
        Error::Storage(_) => " Check PROTONPASS_HOME and its permissions.",
        _ => "",
    }
}

/// The exception class for an error.
fn class_of<'py>(py: Python<'py>, e: &Error) -> Bound<'py, PyType> {
    match e {
        Error::ScopeNotGranted { .. } => py.get_type::<ScopeNotGranted>(),
        Error::InsufficientScope(_) => py.get_type::<InsufficientScope>(),
        Error::BudgetExceeded(_) => py.get_type::<BudgetExceeded>(),
        Error::InvalidScope(_) => py.get_type::<InvalidScope>(),
        Error::AccessDenied => py.get_type::<AccessDenied>(),
        Error::ExpiredToken => py.get_type::<Expired>(),
        Error::InvalidGrant(_) => py.get_type::<InvalidGrant>(),
        Error::InvalidToken { .. } => py.get_type::<InvalidToken>(),
        Error::InvalidDpopProof { .. } | Error::UseDpopNonce => py.get_type::<InvalidProof>(),
        Error::InvalidRequest(_)
        | Error::InvalidTarget(_)
        | Error::InvalidClient(_)
        | Error::UnsupportedGrantType(_)
        | Error::UnsupportedTokenType(_) => py.get_type::<InvalidRequest>(),
        Error::BrokerUnavailable(_) | Error::TemporarilyUnavailable(_) | Error::Server(_) => {
            py.get_type::<BrokerUnavailable>()
        }
        Error::InvalidResponse(_) => py.get_type::<InvalidResponse>(),
        Error::Storage(_) => py.get_type::<StorageError>(),
        _ => py.get_type::<ProtonPassError>(),
    }
}

fn build(py: Python<'_>, e: &Error) -> PyResult<PyErr> {
    let cls = class_of(py, e);
    let msg = format!("{e}.{}", hint(e));
    let exc = cls.call1((msg.trim_end_matches('.'),))?;
    exc.setattr("code", e.code())?;
    exc.setattr("reason", e.reason().map(|r| r.as_str()))?;
    if let Error::ScopeNotGranted { missing, granted } = e {
        let split = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        exc.setattr("missing", split(missing))?;
        exc.setattr("granted", split(granted))?;
    }
    Ok(PyErr::from_value(exc))
}

/// Turn a core error into the matching Python exception.
pub fn to_py(e: Error) -> PyErr {
    Python::attach(|py| build(py, &e).unwrap_or_else(|err| err))
}

/// Turn a verifier rejection into an exception that also carries the HTTP
/// status, the `WWW-Authenticate` value, the `DPoP-Nonce` to send and the
/// JSON body.
pub fn rejection_to_py(r: Rejection) -> PyErr {
    Python::attach(|py| {
        let attempt = || -> PyResult<PyErr> {
            let err = build(py, &r.error)?;
            let exc = err.value(py);
            exc.setattr("status", r.status)?;
            exc.setattr("www_authenticate", r.www_authenticate.clone())?;
            exc.setattr("dpop_nonce", r.dpop_nonce.clone())?;
            exc.setattr("body", r.body())?;
            Ok(err)
        };
        attempt().unwrap_or_else(|err| err)
    })
}

/// Register the classes, each with its class-level `code`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let classes: [(&str, Bound<'_, PyType>, Option<&str>); 14] = [
        ("ProtonPassError", py.get_type::<ProtonPassError>(), None),
        (
            "ScopeNotGranted",
            py.get_type::<ScopeNotGranted>(),
            Some("scope_not_granted"),
        ),
        (
            "InsufficientScope",
            py.get_type::<InsufficientScope>(),
            Some("insufficient_scope"),
        ),
        (
            "InvalidScope",
            py.get_type::<InvalidScope>(),
            Some("invalid_scope"),
        ),
        (
            "AccessDenied",
            py.get_type::<AccessDenied>(),
            Some("access_denied"),
        ),
        ("Expired", py.get_type::<Expired>(), Some("expired_token")),
        (
            "InvalidGrant",
            py.get_type::<InvalidGrant>(),
            Some("invalid_grant"),
        ),
        (
            "InvalidToken",
            py.get_type::<InvalidToken>(),
            Some("invalid_token"),
        ),
        (
            "InvalidProof",
            py.get_type::<InvalidProof>(),
            Some("invalid_dpop_proof"),
        ),
        (
            "InvalidRequest",
            py.get_type::<InvalidRequest>(),
            Some("invalid_request"),
        ),
        (
            "BrokerUnavailable",
            py.get_type::<BrokerUnavailable>(),
            Some("broker_unavailable"),
        ),
        (
            "InvalidResponse",
            py.get_type::<InvalidResponse>(),
            Some("invalid_response"),
        ),
        (
            "StorageError",
            py.get_type::<StorageError>(),
            Some("storage_error"),
        ),
        (
            "BudgetExceeded",
            py.get_type::<BudgetExceeded>(),
            Some("budget_exceeded"),
        ),
    ];
    for (name, cls, code) in classes {
        cls.setattr("code", code)?;
        cls.setattr("reason", None::<&str>)?;
        cls.setattr("__module__", "protonpass_agent")?;
        m.add(name, cls)?;
    }
    Ok(())
}
