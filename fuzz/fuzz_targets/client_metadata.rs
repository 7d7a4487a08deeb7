//! RFC 7591 client registration bodies (`POST /oauth/register`) on arbitrary
//! input. Parsing must never panic; what it accepts holds only redirect URIs
//! that pass the redirect URI rule, for a public client of the authorization
//! code grant, and reads back the same when registered again; a refusal is
//! one of the two RFC 7591 codes with a description.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protonpass_broker::client_metadata::{check_redirect_uri, parse_registration};

fuzz_target!(|data: &[u8]| {
    match parse_registration(data) {
        Ok(m) => {
            assert!(!m.redirect_uris.is_empty());
            for u in &m.redirect_uris {
                assert!(check_redirect_uri(u).is_ok(), "{u:?}");
                assert!(!u.contains('#'), "{u:?}");
            }
            assert_eq!(m.token_endpoint_auth_method, "none");
            assert_eq!(m.response_types, ["code"]);
            assert_eq!(m.grant_types.first().map(String::as_str), Some("authorization_code"));
            let again = serde_json::to_vec(&m).unwrap_or_default();
            assert_eq!(parse_registration(&again).as_ref(), Ok(&m));
        }
        Err(e) => {
            assert!(matches!(e.code(), "invalid_redirect_uri" | "invalid_client_metadata"));
            assert!(!e.description().is_empty());
        }
    }
    // The redirect URI rule alone, on the raw text.
    if let Ok(s) = std::str::from_utf8(data)
        && check_redirect_uri(s).is_ok()
    {
        let u = url::Url::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert!(matches!(u.scheme(), "https" | "http"));
        assert!(u.fragment().is_none() && u.username().is_empty() && u.password().is_none());
    }
});
