//! The broker's token endpoint request parsing on arbitrary input. The first
//! line is the Content-Type header value (no header when the input has no
//! newline or the line is not UTF-8), the rest is the body. Parsing must never
//! panic; an accepted request must read back the same when sent again, with
//! its secret out of `Debug`; a refusal must carry a code the endpoint may
//! answer at that stage (RFC 6749 section 5.2, RFC 8693 section 2.2.2).
#![no_main]

use libfuzzer_sys::fuzz_target;
use protonpass_broker::token_request::{Refused, TokenRequest};

const FORM: &str = "application/x-www-form-urlencoded";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The form a client would send for `r`, with its secret replaced if asked.
fn to_form(r: &TokenRequest, secret: Option<&str>) -> String {
    let mut f = url::form_urlencoded::Serializer::new(String::new());
    f.append_pair("grant_type", r.grant_type());
    let (name, value, scope, audience, client_id) = match r {
        TokenRequest::PreAuthorized {
            code,
            scope,
            audience,
            client_id,
        } => ("pre-authorized_code", code, scope, audience, client_id.clone()),
        TokenRequest::DeviceCode {
            device_code,
            client_id,
        } => ("device_code", device_code, &None, &None, client_id.clone()),
        TokenRequest::Refresh {
            refresh_token,
            scope,
            audience,
        } => ("refresh_token", refresh_token, scope, audience, None),
        TokenRequest::Exchange {
            subject_token,
            subject_kind,
            scope,
            audience,
            lifetime,
        } => {
            f.append_pair("subject_token_type", subject_kind.uri());
            if let Some(l) = lifetime {
                f.append_pair("expires_in", &l.to_string());
            }
            ("subject_token", subject_token, scope, audience, None)
        }
        TokenRequest::AuthorizationCode {
            code,
            redirect_uri,
            client_id,
            code_verifier,
            audience,
        } => {
            f.append_pair("redirect_uri", redirect_uri);
            f.append_pair("code_verifier", code_verifier.expose());
            ("code", code, &None, audience, Some(client_id.clone()))
        }
        TokenRequest::Ciba { auth_req_id } => ("auth_req_id", auth_req_id, &None, &None, None),
    };
    f.append_pair(name, secret.unwrap_or(value.expose()));
    for (k, v) in [
        ("scope", scope),
        ("audience", audience),
        ("client_id", &client_id),
    ] {
        if let Some(v) = v {
            f.append_pair(k, v);
        }
    }
    f.finish()
}

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    };
    match TokenRequest::parse(content_type, body) {
        Ok(r) => {
            let again = to_form(&r, None);
            assert_eq!(
                TokenRequest::parse(Some(FORM), again.as_bytes()).as_ref(),
                Ok(&r),
                "{again}"
            );
            let other = TokenRequest::parse(Some(FORM), to_form(&r, Some("0")).as_bytes());
            assert_eq!(
                other.map(|o| format!("{o:?}")),
                Ok(format!("{r:?}")),
                "the secret shows in Debug"
            );
            assert!(matches!(
                TokenRequest::parse(None, again.as_bytes()),
                Err(Refused::Form(_))
            ));
        }
        Err(refused) => {
            let code = refused.error().code();
            let allowed: &[&str] = match &refused {
                Refused::Form(_) => &["invalid_request"],
                Refused::Request {
                    grant_type: None, ..
                } => &["invalid_request"],
                Refused::Request { .. } => &["unsupported_grant_type", "invalid_scope"],
                Refused::Grant { grant_type, .. } if *grant_type == TOKEN_EXCHANGE => &[
                    "invalid_request",
                    "invalid_target",
                    "unsupported_token_type",
                ],
                Refused::Grant { .. } => &["invalid_request", "invalid_target"],
            };
            assert!(allowed.contains(&code), "{code} for {refused:?}");
            assert!(!refused.error().description().is_empty());
        }
    }
});
