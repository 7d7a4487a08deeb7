//! Scope parsing and negotiation on arbitrary input. The first line is the
//! grant, the rest the request (or the whole input for both). Parsing must
//! never panic, and negotiation must never widen either side.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protonpass_agent::{Scope, ScopeSet};
use rust_decimal::Decimal;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(s) = Scope::parse(text) {
        assert!(s.is_covered_by(&s));
        assert_eq!(Scope::parse(&s.to_string()).ok().as_ref(), Some(&s));
    }
    let (g, r) = text.split_once('\n').unwrap_or((text, text));
    let (Ok(grant), Ok(requested)) = (ScopeSet::parse(g), ScopeSet::parse(r)) else {
        return;
    };
    assert_eq!(
        ScopeSet::parse(&grant.to_string()).ok().as_ref(),
        Some(&grant)
    );
    let got = grant.negotiate(&requested);
    for s in &got {
        assert!(grant.covers(s), "{s} is not covered by the grant");
        assert!(requested.covers(s), "{s} is not covered by the request");
    }
    for s in &requested {
        if grant.covers(s) {
            assert!(got.iter().any(|x| x == s), "{s} was dropped");
        }
    }
    assert!(grant.covers_all(&got));
    for s in &requested {
        let base = format!("{}:{}", s.resource(), s.action());
        for amount in [Decimal::ZERO, Decimal::from(99), Decimal::from(100)] {
            if got.allows_amount(&base, amount) {
                assert!(grant.allows_amount(&base, amount));
            }
        }
        let _ = grant.require(&s.to_string());
    }
});
