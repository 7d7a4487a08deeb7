//! The gateway's rules files and path normal form on arbitrary input. The
//! first line is a request (`METHOD PATH`), the rest a rules file. Parsing and
//! normalising must never panic; the normal form is a fixed point with no dot
//! or empty segment; every scope a rule yields is a valid scope whose values
//! came from the path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protonpass_agent::Scope;
use protonpass_broker::gateway::path::normalise;
use protonpass_broker::gateway::rules::{matching_scopes, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (request, file) = text.split_once('\n').unwrap_or((text, ""));
    let (method, raw) = request.split_once(' ').unwrap_or(("GET", request));
    let rules = parse(file).ok();
    let Ok(path) = normalise(raw) else {
        return;
    };
    assert_eq!(normalise(&path), Ok(path.clone()));
    assert!(path.starts_with('/'));
    assert!(!path.contains("//") && !path.contains("/./") && !path.contains("/../"));
    assert!(!path.ends_with("/.") && !path.ends_with("/.."));
    if let Some(u) = rules {
        for s in matching_scopes(&u.rules, method, &path) {
            assert!(Scope::parse(&s).is_ok(), "{s}");
        }
    }
});
