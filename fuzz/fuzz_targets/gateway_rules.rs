//! The gateway's rules files and path normal form on arbitrary input. The
//! first line is a request (`METHOD PATH`), the rest a rules file. Parsing and
//! normalising must never panic; the normal form is a fixed point with no dot
//! or empty segment; every scope a rule yields is a valid scope whose values
//! came from the path. The whole input is also a JSON body whose amount a
//! spending rule reads as written: never a panic, and an amount read is one
//! the budget's parser accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protonpass_agent::Scope;
use protonpass_broker::gateway::path::normalise;
use protonpass_broker::gateway::rules::{matching_scopes, parse};
use protonpass_broker::gateway::spend_rule::{RequestView, amount_of};

/// A rule that spends the amount at `/a/0/b` of a JSON body.
const SPENDS: &str = include_str!("../fixtures/gateway_spends.toml");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(spend) = parse(SPENDS)
        .ok()
        .and_then(|u| u.rules.into_iter().find_map(|r| r.spend))
    {
        let none = |_: &str| None;
        let view = RequestView {
            header: &none,
            query: None,
            body: data,
            content_type: "application/json",
        };
        if let Ok((amount, currency)) = amount_of(&spend, &view) {
            assert!(
                protonpass_agent::budget::parse_amount(&amount, &currency).is_ok(),
                "{amount}"
            );
        }
    }
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
