//! A rule's `spend`: the gateway spends from the owner's budget before it
//! forwards a matching request, taking the amount (and currency) from the
//! request itself (`spec/10-gateway-rules.md`, "Spending from a budget").
//!
//! ```toml
//! [[rule]]
//! methods = ["POST"]
//! path = "/v1/charges"
//! scope = "payment:execute"
//! spend = { amount = "form:amount", unit = "minor", currency = "form:currency" }
//! ```
//!
//! Sources: `header:NAME`, `query:NAME`, `form:NAME` (an
//! `application/x-www-form-urlencoded` body) and `json:/POINTER` (an RFC 6901
//! pointer into a JSON body); the currency may also be a fixed ISO 4217 code.

use std::collections::HashMap;

use protonpass_agent::budget::{currency_exponent, format_amount, parse_amount};
use protonpass_agent::{Error, Scope, ScopeSet};
use rust_decimal::Decimal;
use serde::Deserialize;

/// The largest request body read to find an amount (bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// Where a value is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A request header (lower-case name).
    Header(String),
    /// A query parameter.
    Query(String),
    /// A field of a form-encoded body.
    Form(String),
    /// An RFC 6901 pointer into a JSON body.
    Json(String),
}

impl Source {
    fn parse(text: &str) -> Result<Source, String> {
        let bad = || {
            format!("{text:?} is not a source: header:NAME, query:NAME, form:NAME or json:/POINTER")
        };
        let (kind, what) = text.split_once(':').ok_or_else(bad)?;
        if what.is_empty() || what.len() > 128 || what.chars().any(|c| c.is_control()) {
            return Err(bad());
        }
        match kind {
            "header" if what.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
                Ok(Source::Header(what.to_ascii_lowercase()))
            }
            "query" => Ok(Source::Query(what.to_owned())),
            "form" => Ok(Source::Form(what.to_owned())),
            "json" if what.starts_with('/') => Ok(Source::Json(what.to_owned())),
            _ => Err(bad()),
        }
    }

    /// Whether the value is in the body (which must then be read first).
    pub fn in_body(&self) -> bool {
        matches!(self, Source::Form(_) | Source::Json(_))
    }
}

/// The currency: fixed, or read from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Currency {
    /// An ISO 4217 code.
    Fixed(String),
    /// Read from the request.
    From(Source),
}

/// A parsed `spend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRule {
    /// Where the amount is.
    pub amount: Source,
    /// Whether the amount is in minor units (cents) rather than a decimal.
    pub minor_units: bool,
    /// The currency.
    pub currency: Currency,
}

/// `spend = { ... }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpend {
    amount: String,
    currency: String,
    #[serde(default)]
    unit: Option<String>,
}

/// Check a rule's `spend`; `scope` is the rule's scope template, which must
/// be a budget scope (`resource:action`, optionally with a qualifier).
pub fn parse(raw: RawSpend, scope: &str) -> Result<SpendRule, String> {
    if scope.contains('{') {
        return Err("a rule that spends has a fixed scope (no {variables})".into());
    }
    let amount = Source::parse(&raw.amount)?;
    let minor_units = match raw.unit.as_deref() {
        None | Some("major") => false,
        Some("minor") => true,
        Some(u) => {
            return Err(format!(
                "unit {u:?}: \"major\" (decimal, the default) or \"minor\""
            ));
        }
    };
    let currency = if raw.currency.contains(':') {
        Currency::From(Source::parse(&raw.currency)?)
    } else {
        currency_exponent(&raw.currency).map_err(|e| e.to_string())?;
        Currency::Fixed(raw.currency)
    };
    Ok(SpendRule {
        amount,
        minor_units,
        currency,
    })
}

/// The budget scope a spend is recorded under: the rule's scope without its
/// qualifier (`payment:execute:under-100` spends from `payment:execute`).
pub fn budget_scope(scope: &str) -> Option<String> {
    let s = Scope::parse(scope).ok()?;
    Some(format!("{}:{}", s.resource(), s.action()))
}

/// The first rule matching `method` and `path` that the grant admits: it
/// holds the rule's scope, or, for a rule that spends, the rule's
/// `resource:action` with a limit that some amount passes (`under-100`): the
/// spend then checks the amount against that limit.
pub fn admitted<'a>(
    rules: &'a [super::rules::Rule],
    method: &str,
    path: &str,
    granted: &ScopeSet,
) -> Option<&'a super::rules::Rule> {
    rules.iter().find(|r| {
        r.methods.iter().any(|m| m == method)
            && r.scope_for(path).is_some_and(|s| {
                granted.require(&s).is_ok()
                    || (r.spend.is_some()
                        && budget_scope(&s)
                            .is_some_and(|b| granted.allows_amount(&b, Decimal::ZERO)))
            })
    })
}

/// What a request offers to read values from.
pub struct RequestView<'a> {
    /// Header values by lower-case name.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    /// The query string.
    pub query: Option<&'a str>,
    /// The body (empty when not read).
    pub body: &'a [u8],
    /// The body's media type (lower-case, no parameters).
    pub content_type: &'a str,
}

impl std::fmt::Debug for RequestView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestView")
            .field("content_type", &self.content_type)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// The one value of `name` in a form-encoded text; `None` when absent or
/// present more than once (the upstream might read another one).
fn only(text: &[u8], name: &str) -> Option<String> {
    let mut found = url::form_urlencoded::parse(text).filter(|(k, _)| k == name);
    let first = found.next()?;
    found.next().is_none().then(|| first.1.into_owned())
}

/// The text of the JSON value at RFC 6901 pointer `p` in `body`, as written.
fn raw_at<'a>(body: &'a str, p: &str) -> Option<&'a str> {
    use serde_json::value::RawValue;
    let mut at: &'a RawValue = serde_json::from_str(body).ok()?;
    if p.is_empty() {
        return Some(at.get());
    }
    for token in p.strip_prefix('/')?.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        let text: &'a str = at.get();
        at = if text.starts_with('{') {
            let members: HashMap<String, &'a RawValue> = serde_json::from_str(text).ok()?;
            *members.get(&token)?
        } else if text.starts_with('[') {
            // An index as RFC 6901 writes it: digits, no leading zero.
            if token.is_empty()
                || !token.bytes().all(|b| b.is_ascii_digit())
                || (token.len() > 1 && token.starts_with('0'))
            {
                return None;
            }
            let items: Vec<&'a RawValue> = serde_json::from_str(text).ok()?;
            *items.get(token.parse::<usize>().ok()?)?
        } else {
            return None;
        };
    }
    Some(at.get())
}

fn read(src: &Source, req: &RequestView<'_>) -> Option<String> {
    match src {
        Source::Header(n) => (req.header)(n),
        Source::Query(n) => only(req.query?.as_bytes(), n),
        Source::Form(n) if req.content_type == "application/x-www-form-urlencoded" => {
            only(req.body, n)
        }
        Source::Json(p) if req.content_type == "application/json" => {
            // Strict: a member named twice is refused, whichever the
            // upstream would take.
            let v = serde_json::Value::Object(protonpass_agent::parse_json_object(req.body).ok()?);
            match v.pointer(p)? {
                serde_json::Value::String(s) => Some(s.clone()),
                // A JSON number is taken as written, from the body's text:
                // the parsed value may have gone through a float.
                serde_json::Value::Number(_) => {
                    raw_at(std::str::from_utf8(req.body).ok()?, p).map(str::to_owned)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// The amount (a decimal string) and currency of a request, or why not.
pub fn amount_of(rule: &SpendRule, req: &RequestView<'_>) -> Result<(String, String), Error> {
    let currency = match &rule.currency {
        Currency::Fixed(c) => c.clone(),
        Currency::From(src) => read(src, req)
            .map(|c| c.to_ascii_uppercase())
            .ok_or_else(|| Error::InvalidRequest("the request names no currency".into()))?,
    };
    let raw = read(&rule.amount, req)
        .ok_or_else(|| Error::InvalidRequest("the request names no amount".into()))?;
    let amount = if rule.minor_units {
        if raw.is_empty() || raw.len() > 18 || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidRequest(
                "the amount is not a whole number of minor units".into(),
            ));
        }
        let minor: i64 = raw
            .parse()
            .map_err(|_| Error::InvalidRequest("the amount is too large".into()))?;
        currency_exponent(&currency)?;
        format_amount(minor, &currency)
    } else {
        // Checked here so that a bad amount is refused before any spend.
        parse_amount(&raw, &currency)?;
        raw
    };
    Ok((amount, currency))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rule(amount: &str, currency: &str, unit: Option<&str>) -> Result<SpendRule, String> {
        parse(
            RawSpend {
                amount: amount.into(),
                currency: currency.into(),
                unit: unit.map(str::to_owned),
            },
            "payment:execute",
        )
    }

    fn view<'a>(
        h: &'a dyn Fn(&str) -> Option<String>,
        q: Option<&'a str>,
        body: &'a [u8],
        ct: &'a str,
    ) -> RequestView<'a> {
        RequestView {
            header: h,
            query: q,
            body,
            content_type: ct,
        }
    }

    #[test]
    fn sources_and_units() {
        let none = |_: &str| None;
        let r = rule("json:/amount", "EUR", None).unwrap();
        let body = br#"{"amount": "20.50", "x": 1}"#;
        let v = view(&none, None, body, "application/json");
        assert_eq!(amount_of(&r, &v).unwrap(), ("20.50".into(), "EUR".into()));
        // A JSON number as written.
        let v = view(&none, None, br#"{"amount": 7}"#, "application/json");
        assert_eq!(amount_of(&r, &v).unwrap().0, "7");
        // A member named twice: refused, whichever the upstream would read.
        let twice = br#"{"amount": "1", "amount": "900"}"#;
        let v = view(&none, None, twice, "application/json");
        assert!(amount_of(&r, &v).is_err());
        // The wrong media type: no amount.
        let v = view(&none, None, body, "text/plain");
        assert!(amount_of(&r, &v).is_err());

        let r = rule("form:amount", "form:currency", Some("minor")).unwrap();
        let v = view(
            &none,
            None,
            b"amount=2000&currency=eur",
            "application/x-www-form-urlencoded",
        );
        assert_eq!(amount_of(&r, &v).unwrap(), ("20.00".into(), "EUR".into()));
        for bad in [
            &b"amount=-5&currency=eur"[..],
            b"amount=1.5&currency=eur",
            b"currency=eur",
        ] {
            let v = view(&none, None, bad, "application/x-www-form-urlencoded");
            assert!(
                amount_of(&r, &v).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }

        let h = |n: &str| (n == "x-amount").then(|| "3".to_owned());
        let r = rule("header:X-Amount", "query:cur", None).unwrap();
        let v = view(&h, Some("cur=USD"), b"", "");
        assert_eq!(amount_of(&r, &v).unwrap(), ("3".into(), "USD".into()));
    }

    #[test]
    fn a_json_number_is_read_as_written_never_through_a_float() {
        let none = |_: &str| None;
        let json = |p: &str, body: &'static [u8]| {
            let r = rule(p, "EUR", None).unwrap();
            amount_of(&r, &view(&none, None, body, "application/json")).map(|a| a.0)
        };
        assert_eq!(
            json("json:/amount", br#"{"amount": 12.50}"#).unwrap(),
            "12.50"
        );
        assert_eq!(
            json(
                "json:/order/lines/1/total",
                br#"{"order": {"lines": [{"total": 1}, {"total": 0.10}]}}"#
            )
            .unwrap(),
            "0.10"
        );
        assert_eq!(json("json:/a~1b", br#"{"a/b": 3.00}"#).unwrap(), "3.00");
        // Through a float these would read 100.0 and 100.0: refused as written.
        assert!(json("json:/amount", br#"{"amount": 1e2}"#).is_err());
        assert!(json("json:/amount", br#"{"amount": 99.9999999999999999}"#).is_err());
        // RFC 6901 indexes have no leading zero.
        assert!(json("json:/l/01", br#"{"l": [1, 2]}"#).is_err());
    }

    #[test]
    fn bad_rules_are_refused() {
        for (a, c, u) in [
            ("amount", "EUR", None),
            ("json:amount", "EUR", None),
            ("header:bad name", "EUR", None),
            ("cookie:x", "EUR", None),
            ("json:/a", "EURO", None),
            ("json:/a", "EUR", Some("cents")),
        ] {
            assert!(rule(a, c, u).is_err(), "{a} {c} {u:?}");
        }
        assert!(
            parse(
                RawSpend {
                    amount: "json:/a".into(),
                    currency: "EUR".into(),
                    unit: None
                },
                "payment:execute:{merchant}"
            )
            .is_err()
        );
        assert_eq!(
            budget_scope("payment:execute:under-100").unwrap(),
            "payment:execute"
        );
    }
}
