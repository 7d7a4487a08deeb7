//! RFC 7591 client registration bodies (`POST /oauth/register`) on arbitrary
//! input. Parsing must never panic; what it accepts holds only redirect URIs
//! that pass the redirect URI rule, for a public client of the authorization
//! code grant, and reads back the same when registered again; a refusal is
//! one of the two RFC 7591 codes with a description. The same input is read
//! as a Client ID Metadata Document (named by its own `client_id` and by a
//! fixed URL), and as a document URL: an accepted document names exactly
//! the URL it was fetched from and holds the same rules; an accepted URL is
//! an https URL with a path in normal form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protonpass_broker::client_metadata::{
    MAX_DOCUMENT, check_document_url, check_redirect_uri, parse_document, parse_registration,
};

const DOC: &str = "https://app.example/client.json";

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
    // As a metadata document, under its own client_id and a fixed one.
    let own = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("client_id").and_then(|c| c.as_str()).map(str::to_owned));
    for id in own.iter().map(String::as_str).chain([DOC]) {
        match parse_document(id, data) {
            Ok(m) => {
                assert!(data.len() <= MAX_DOCUMENT);
                assert_eq!(own.as_deref(), Some(id));
                assert!(m.redirect_uris.iter().all(|u| check_redirect_uri(u).is_ok()));
                assert_eq!(m.token_endpoint_auth_method, "none");
            }
            Err(e) => {
                assert!(matches!(e.code(), "invalid_redirect_uri" | "invalid_client_metadata"));
            }
        }
    }
    // The document URL rule, on the raw text.
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(u) = check_document_url(s, false)
    {
        assert_eq!(u.scheme(), "https");
        assert_eq!(u.as_str(), s);
        assert!(u.path() != "/" && u.query().is_none() && u.fragment().is_none());
        assert!(u.username().is_empty() && u.password().is_none());
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
