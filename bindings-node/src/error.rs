//! Core errors to JavaScript errors.
//!
//! N-API promises reject with a generic status, so the core's error travels as
//! a small JSON document in the message behind a marker; `lib/errors.js` turns it
//! into an `Error` whose `code` is the core's [`Error::code`] (and a subclass
//! where one helps). The marker never reaches user code through the package.

use protonpass_agent::Error;

/// Prefix of an encoded core error in a native error message.
pub(crate) const MARKER: &str = "\u{1}protonpass:";

/// The JSON form of a core error: `code`, `message`, and `reason`, `missing`,
/// `granted` where they apply.
pub(crate) fn error_json(e: &Error) -> String {
    let mut v = serde_json::json!({ "code": e.code(), "message": e.to_string() });
    if let Some(r) = e.reason() {
        v["reason"] = r.as_str().into();
    }
    if let Error::ScopeNotGranted { missing, granted } = e {
        v["missing"] = missing.as_str().into();
        v["granted"] = granted.as_str().into();
    }
    v.to_string()
}

/// A core error as a native error `lib/errors.js` recognizes.
pub(crate) fn to_napi(e: &Error) -> napi::Error {
    napi::Error::from_reason(format!("{MARKER}{}", error_json(e)))
}

/// `Result` of the core mapped into N-API's.
pub(crate) fn map<T>(r: protonpass_agent::Result<T>) -> napi::Result<T> {
    r.map_err(|e| to_napi(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_code_reason_and_scopes() {
        let e = Error::ScopeNotGranted {
            missing: "a:b".into(),
            granted: "c:d".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&error_json(&e)).unwrap();
        assert_eq!(v["code"], "scope_not_granted");
        assert_eq!(v["missing"], "a:b");
        assert_eq!(v["granted"], "c:d");
        let e = Error::InvalidToken {
            reason: protonpass_agent::Reason::Revoked,
            message: "gone".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&error_json(&e)).unwrap();
        assert_eq!(v["code"], "invalid_token");
        assert_eq!(v["reason"], "revoked");
    }
}
