//! Budget amounts and spend requests on arbitrary input: the first line is a
//! currency code, the rest an amount (and, whole, a spend request's JSON).
//! Parsing must never panic; an accepted amount formats back to the same
//! number of minor units; periods contain the time they were asked about.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protonpass_agent::budget::{
    MAX_MINOR, Period, RefundRequest, SpendRequest, format_amount, parse_amount,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (currency, amount) = text.split_once('\n').unwrap_or(("EUR", text));
    if let Ok(minor) = parse_amount(amount, currency) {
        assert!((0..=MAX_MINOR).contains(&minor));
        let shown = format_amount(minor, currency);
        assert_eq!(parse_amount(&shown, currency).ok(), Some(minor), "{shown}");
    }
    let _ = serde_json::from_str::<SpendRequest>(text);
    let _ = serde_json::from_str::<RefundRequest>(text);
    if data.len() >= 8 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[..8]);
        // Times the broker can meet: 0 to the year 10000.
        let now = (i64::from_le_bytes(b)).rem_euclid(253_402_300_800);
        for p in [Period::Hour, Period::Day, Period::Week, Period::Month] {
            let (start, end) = p.bounds(now);
            let end = end.unwrap_or(i64::MAX);
            assert!(start <= now && now < end, "{p} {now}: {start}..{end}");
        }
    }
});
