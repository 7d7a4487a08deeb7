//! The whole check of one DPoP-bound request, as a resource server does it:
//! `Authorization: DPoP <token>` plus one `DPoP` proof bound to that token.

use crate::dpop::{PROOF_ALGS, ProofCheck, ProofVerifier, VerifiedProof};
use crate::error::{Error, Reason, Result};
use crate::token::{AccessTokenClaims, KeySet, TokenValidation, verify_access_token};

/// A request that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedRequest {
    /// The access token's claims.
    pub claims: AccessTokenClaims,
    /// The proof.
    pub proof: VerifiedProof,
}

/// Take the token out of the `Authorization` header values. The scheme must be
/// `DPoP` (case-insensitive, RFC 9110); a DPoP-bound token sent as `Bearer` is
/// refused, since a bearer request would skip the proof.
pub fn dpop_token<S: AsRef<str>>(authorization: &[S]) -> Result<&str> {
    let [value] = authorization else {
        return Err(if authorization.is_empty() {
            Error::token(Reason::MissingClaim, "no Authorization header")
        } else {
            Error::token(Reason::HeaderCount, "several Authorization headers")
        });
    };
    let value = value.as_ref();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        return Err(Error::token(
            Reason::Scheme,
            "this API takes DPoP-bound tokens: use the DPoP scheme with a proof",
        ));
    }
    if !scheme.eq_ignore_ascii_case("dpop") {
        return Err(Error::token(
            Reason::Scheme,
            "the Authorization scheme must be DPoP",
        ));
    }
    let token = token.trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(Error::token(
            Reason::Malformed,
            "the Authorization header holds no token",
        ));
    }
    Ok(token)
}

/// Verify one DPoP-bound request: the access token, then the proof bound to it
/// (`ath`, `cnf.jkt`), then the replay cache.
#[allow(clippy::too_many_arguments)]
pub fn verify_request<S: AsRef<str>, T: AsRef<str>>(
    method: &str,
    url: &str,
    authorization: &[S],
    dpop: &[T],
    keys: &KeySet,
    validation: &TokenValidation,
    proofs: &ProofVerifier,
    nonce: Option<&dyn Fn(&str) -> bool>,
    now: i64,
) -> Result<VerifiedRequest> {
    let token = dpop_token(authorization)?;
    let claims = verify_access_token(token, keys, validation, now)?;
    let check = ProofCheck {
        method,
        url,
        access_token: Some(token),
        expected_jkt: Some(&claims.jkt),
        nonce,
    };
    let proof = proofs.verify(dpop, &check, now)?;
    Ok(VerifiedRequest { claims, proof })
}

/// The `WWW-Authenticate` value to send with an error (RFC 6750 section 3,
/// RFC 9449 section 7.1), or `None` when the error is not an authentication
/// failure. `scope` names what an `insufficient_scope` request needed.
pub fn www_authenticate(err: &Error, scope: Option<&str>) -> Option<String> {
    www_authenticate_needing(err, scope, None, None)
}

/// [`www_authenticate`] for a refusal of an amount: an `insufficient_scope`
/// (the token's per-call limit) or `budget_exceeded` challenge also names the
/// `amount` the call needs and, where known, its `currency`, as RFC 6750
/// section 3 / RFC 9470 style parameters (`spec/14-step-up.md` section 14.2),
/// so that a client can ask for exactly that.
pub fn www_authenticate_needing(
    err: &Error,
    scope: Option<&str>,
    amount: Option<&str>,
    currency: Option<&str>,
) -> Option<String> {
    let algs = PROOF_ALGS.join(" ");
    // A header value must be visible ASCII: attacker-chosen text (an `alg`, a
    // member name) in a message could otherwise make the header unsendable.
    let quote = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .filter(|c| !matches!(c, '"' | '\\'))
            .collect()
    };
    let (code, desc) = match err {
        Error::InvalidToken { reason, message }
            if *reason == Reason::MissingClaim && message.starts_with("no Authorization") =>
        {
            return Some(format!("DPoP algs=\"{algs}\""));
        }
        Error::InvalidToken { message, .. } => ("invalid_token", message.as_str()),
        Error::InvalidDpopProof { message, .. } => ("invalid_dpop_proof", message.as_str()),
        Error::UseDpopNonce => (
            "use_dpop_nonce",
            "Authorization server requires nonce in DPoP proof",
        ),
        Error::InsufficientScope(m) => ("insufficient_scope", m.as_str()),
        Error::BudgetExceeded(m) => ("budget_exceeded", m.as_str()),
        _ => return None,
    };
    let mut out = format!(
        "DPoP error=\"{code}\", error_description=\"{}\", algs=\"{algs}\"",
        quote(desc)
    );
    if let Error::InsufficientScope(_) | Error::BudgetExceeded(_) = err {
        for (name, value) in [("scope", scope), ("amount", amount), ("currency", currency)] {
            if let Some(v) = value {
                out.push_str(&format!(", {name}=\"{}\"", quote(v)));
            }
        }
    }
    Some(out)
}

/// The HTTP status a resource server answers an error with.
pub fn status_for(err: &Error) -> u16 {
    match err {
        Error::InvalidToken { .. } | Error::InvalidDpopProof { .. } | Error::UseDpopNonce => 401,
        Error::InsufficientScope(_) | Error::BudgetExceeded(_) => 403,
        Error::InvalidRequest(_) | Error::InvalidScope(_) => 400,
        Error::TemporarilyUnavailable(_) => 503,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_stay_sendable_whatever_the_message() {
        let e = Error::proof(
            Reason::Alg,
            "algorithm \"Ed25519\u{301}\u{0}\\\" is not accepted",
        );
        let v = www_authenticate(&e, None).unwrap();
        assert!(v.bytes().all(|b| b.is_ascii_graphic() || b == b' '), "{v}");
        assert!(v.starts_with("DPoP error=\"invalid_dpop_proof\""), "{v}");
        assert_eq!(v.matches('"').count() % 2, 0, "{v}");
    }

    #[test]
    fn an_amount_refusal_names_the_amount_and_currency() {
        let e = Error::InsufficientScope("over the limit".into());
        let v = www_authenticate_needing(&e, Some("payment:execute"), Some("150.00"), Some("EUR"))
            .unwrap();
        assert!(
            v.ends_with(", scope=\"payment:execute\", amount=\"150.00\", currency=\"EUR\""),
            "{v}"
        );
        let v = www_authenticate_needing(&e, Some("payment:execute"), Some("150"), None).unwrap();
        assert!(
            v.ends_with(", scope=\"payment:execute\", amount=\"150\""),
            "{v}"
        );
        // Only a refusal for want of scope or budget names an amount.
        let e = Error::proof(Reason::Alg, "bad");
        let v = www_authenticate_needing(&e, None, Some("1"), Some("EUR")).unwrap();
        assert!(!v.contains("amount"), "{v}");
    }
}
