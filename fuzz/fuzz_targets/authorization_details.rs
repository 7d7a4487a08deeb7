//! Step-up requests' RFC 9396 `authorization_details` and CIBA
//! `binding_message` on arbitrary input (the whole input is the details;
//! its first line is also tried as a binding message). Parsing must never
//! panic; a refusal is `invalid_authorization_details` (`invalid_request`
//! for the message); accepted details normalize to a fixed point (their
//! normal form reads back the same), name at most one location, and their
//! token scope parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protonpass_agent::ScopeSet;
use protonpass_broker::authz_details::{Details, MAX_ENTRIES, binding_message};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let line = text.split('\n').next().unwrap_or_default();
    if let Err(e) = binding_message(Some(line)) {
        assert_eq!(e.code(), "invalid_request");
    }
    match Details::parse(text) {
        Ok(d) => {
            assert!(!d.0.is_empty() && d.0.len() <= MAX_ENTRIES);
            let normal = d.to_json().to_string();
            let again = Details::parse(&normal).expect("the normal form reads back");
            assert_eq!(again, d, "{normal}");
            assert_eq!(again.to_json().to_string(), normal);
            let scope = d.token_scope().expect("a token scope");
            assert!(ScopeSet::parse(&scope).is_ok(), "{scope}");
            for (_, amount, _, payee) in d.payments() {
                assert!(amount > 0);
                assert!(!payee.chars().any(char::is_control));
            }
        }
        Err(e) => {
            assert_eq!(e.code(), "invalid_authorization_details", "{e}");
            assert!(!e.description().is_empty());
        }
    }
});
