//! RFC 9396 `authorization_details` of a step-up request, and its
//! `binding_message` (OpenID CIBA section 7.1), read strictly: one pure
//! function from the text the agent sent to typed details or to
//! `invalid_authorization_details` (`invalid_request` for the message).
//! Fuzzing and tests call it directly (`spec/14-step-up.md`).
//!
//! Two types: `payment` (`amount`, `currency`, `payee`, optional `scope`
//! and `locations`) and `scope` (`scope`, optional `locations`). Unknown
//! types and unknown fields are refused, so that nothing the owner is not
//! shown can ride along into a token.

use protonpass_agent::budget::{currency_exponent, format_amount, parse_amount};
use protonpass_agent::{Error, Qualifier, Result, Scope, ScopeSet};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

/// The detail types a step-up may carry (advertised in the metadata).
pub const TYPES: &[&str] = &["payment", "scope"];
/// Longest `authorization_details` text, bytes.
pub const MAX_LEN: usize = 4096;
/// Most entries in one request.
pub const MAX_ENTRIES: usize = 4;
/// Longest `payee`, characters.
pub const MAX_PAYEE: usize = 200;
/// Longest `binding_message`, characters.
pub const MAX_BINDING_MESSAGE: usize = 200;
/// Longest `locations` entry, bytes.
const MAX_LOCATION: usize = 512;
/// The scope a payment is made under when its entry names none.
pub const DEFAULT_PAYMENT_SCOPE: &str = "payment:execute";

/// One authorization detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// One payment of exactly this amount to this payee.
    Payment {
        /// `resource:action`, no qualifier.
        scope: String,
        /// Minor units of `currency`, more than zero.
        amount: i64,
        /// ISO 4217 code.
        currency: String,
        /// Who is paid, as the agent named it.
        payee: String,
        /// The audience, if named.
        location: Option<String>,
    },
    /// Scopes beyond the grant's.
    Scope {
        /// Space-separated scopes, normalized.
        scope: String,
        /// The audience, if named.
        location: Option<String>,
    },
}

/// The details of one request, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details(pub Vec<Detail>);

fn bad(m: impl Into<String>) -> Error {
    Error::InvalidAuthorizationDetails(m.into())
}

/// Plain text of at most `max` characters with no control characters.
/// Bidirectional controls are refused too: they would make the owner read
/// the text in another order than it was written.
fn plain(text: &str, max: usize) -> bool {
    let bidi = |c: char| matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    !text.trim().is_empty()
        && text.chars().count() <= max
        && !text.chars().any(|c| c.is_control() || bidi(c))
}

fn string<'a>(o: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>> {
    match o.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("{name} must be a string"))),
    }
}

fn required<'a>(o: &'a Map<String, Value>, name: &str, ty: &str) -> Result<&'a str> {
    string(o, name)?.ok_or_else(|| bad(format!("a {ty} detail needs {name}")))
}

/// `locations`: an array of exactly one absolute URI without fragment.
fn location(o: &Map<String, Value>) -> Result<Option<String>> {
    match o.get("locations") {
        None => Ok(None),
        Some(Value::Array(list)) => match list.as_slice() {
            [Value::String(l)]
                if l.len() <= MAX_LOCATION
                    && url::Url::parse(l).is_ok_and(|u| u.fragment().is_none()) =>
            {
                Ok(Some(l.clone()))
            }
            _ => Err(bad(
                "locations is an array of one absolute URI without a fragment (the audience)",
            )),
        },
        Some(_) => Err(bad("locations must be an array")),
    }
}

fn only(o: &Map<String, Value>, allowed: &[&str], ty: &str) -> Result<()> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(format!(
            "a {ty} detail has no field {:?} (it takes {})",
            k.chars().take(40).collect::<String>(),
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn payment(o: &Map<String, Value>) -> Result<Detail> {
    only(
        o,
        &["type", "amount", "currency", "payee", "scope", "locations"],
        "payment",
    )?;
    let currency = required(o, "currency", "payment")?;
    currency_exponent(currency).map_err(|e| bad(e.description()))?;
    let amount = match o.get("amount") {
        Some(Value::String(a)) => parse_amount(a, currency).map_err(|e| bad(e.description()))?,
        Some(_) => {
            return Err(bad(
                "amount is a decimal string like \"12.50\", never a number",
            ));
        }
        None => return Err(bad("a payment detail needs amount")),
    };
    if amount == 0 {
        return Err(bad("a payment's amount is more than zero"));
    }
    let payee = required(o, "payee", "payment")?;
    if !plain(payee, MAX_PAYEE) {
        return Err(bad(format!(
            "payee is plain text of 1 to {MAX_PAYEE} characters without control characters"
        )));
    }
    let scope = string(o, "scope")?.unwrap_or(DEFAULT_PAYMENT_SCOPE);
    let parsed = Scope::parse(scope).map_err(|e| bad(e.description()))?;
    if !matches!(parsed.qualifier(), Qualifier::None) {
        return Err(bad(
            "a payment's scope is resource:action without a qualifier: the amount is the limit",
        ));
    }
    Ok(Detail::Payment {
        scope: parsed.to_string(),
        amount,
        currency: currency.to_owned(),
        payee: payee.to_owned(),
        location: location(o)?,
    })
}

fn scope(o: &Map<String, Value>) -> Result<Detail> {
    only(o, &["type", "scope", "locations"], "scope")?;
    let s = required(o, "scope", "scope")?;
    if s.len() > 512 {
        return Err(bad("scope is at most 512 bytes"));
    }
    let set = ScopeSet::parse(s).map_err(|e| bad(e.description()))?;
    Ok(Detail::Scope {
        scope: set.to_string(),
        location: location(o)?,
    })
}

impl Details {
    /// Read `authorization_details` as sent.
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() > MAX_LEN {
            return Err(bad(format!(
                "authorization_details is at most {MAX_LEN} bytes"
            )));
        }
        let v: Value = serde_json::from_str(text)
            .map_err(|_| bad("authorization_details is a JSON array of objects (RFC 9396)"))?;
        let Value::Array(list) = v else {
            return Err(bad(
                "authorization_details is a JSON array of objects (RFC 9396)",
            ));
        };
        if list.is_empty() || list.len() > MAX_ENTRIES {
            return Err(bad(format!(
                "authorization_details holds 1 to {MAX_ENTRIES} entries"
            )));
        }
        let mut out = Vec::with_capacity(list.len());
        for item in &list {
            let Value::Object(o) = item else {
                return Err(bad("each authorization detail is a JSON object"));
            };
            let d = match o.get("type") {
                Some(Value::String(t)) if t == "payment" => payment(o)?,
                Some(Value::String(t)) if t == "scope" => scope(o)?,
                Some(Value::String(_)) => {
                    return Err(bad(format!(
                        "unknown authorization detail type (supported: {})",
                        TYPES.join(", ")
                    )));
                }
                _ => return Err(bad("each authorization detail has a string type")),
            };
            out.push(d);
        }
        let d = Details(out);
        let mut named = d.0.iter().filter_map(Detail::location);
        if let Some(first) = named.next()
            && named.any(|l| l != first)
        {
            return Err(bad("all authorization details name the same location"));
        }
        // The one-time token's scope must be a valid scope too (a long payment
        // scope with its `under-N` limit can exceed what a scope may be).
        d.token_scope()?;
        Ok(d)
    }

    /// The audience the details name, if any.
    pub fn location(&self) -> Option<&str> {
        self.0.iter().find_map(Detail::location)
    }

    /// The scope the one-time token carries: each `scope` entry's scopes, and
    /// for each payment its scope limited to its amount (`under-N` with N one
    /// minor unit above the amount), so that a resource server that reads only
    /// the scope still refuses a larger payment.
    pub fn token_scope(&self) -> Result<String> {
        let mut parts: Vec<String> = Vec::new();
        for d in &self.0 {
            match d {
                Detail::Payment {
                    scope,
                    amount,
                    currency,
                    ..
                } => {
                    let exp = currency_exponent(currency)?;
                    let bound = Decimal::new(amount.saturating_add(1), exp).normalize();
                    parts.push(format!("{scope}:under-{bound}"));
                }
                Detail::Scope { scope, .. } => parts.push(scope.clone()),
            }
        }
        let set = ScopeSet::parse(&parts.join(" ")).map_err(|e| bad(e.description()))?;
        Ok(set.to_string())
    }

    /// The normalized JSON array: what the owner approves and the token carries.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|d| {
                    let mut m = match d {
                        Detail::Payment {
                            scope,
                            amount,
                            currency,
                            payee,
                            ..
                        } => json!({"type": "payment", "amount": format_amount(*amount, currency),
                                    "currency": currency, "payee": payee, "scope": scope}),
                        Detail::Scope { scope, .. } => json!({"type": "scope", "scope": scope}),
                    };
                    if let (Some(l), Value::Object(o)) = (d.location(), &mut m) {
                        o.insert("locations".into(), json!([l]));
                    }
                    m
                })
                .collect(),
        )
    }

    /// The payments, as (scope, minor units, currency, payee).
    pub fn payments(&self) -> impl Iterator<Item = (&str, i64, &str, &str)> {
        self.0.iter().filter_map(|d| match d {
            Detail::Payment {
                scope,
                amount,
                currency,
                payee,
                ..
            } => Some((scope.as_str(), *amount, currency.as_str(), payee.as_str())),
            Detail::Scope { .. } => None,
        })
    }
}

impl Detail {
    /// The audience this entry names.
    pub fn location(&self) -> Option<&str> {
        match self {
            Detail::Payment { location, .. } | Detail::Scope { location, .. } => {
                location.as_deref()
            }
        }
    }
}

/// Read a `binding_message`: plain text of at most [`MAX_BINDING_MESSAGE`]
/// characters without control characters (`invalid_request` otherwise; CIBA
/// names `invalid_binding_message`, answered here under that code's RFC 6749
/// parent so every SDK reads it).
pub fn binding_message(text: Option<&str>) -> Result<Option<String>> {
    match text {
        None => Ok(None),
        Some(t) if plain(t, MAX_BINDING_MESSAGE) => Ok(Some(t.to_owned())),
        Some(_) => Err(Error::InvalidRequest(format!(
            "binding_message is plain text of 1 to {MAX_BINDING_MESSAGE} characters without control characters"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn code(text: &str) -> &'static str {
        match Details::parse(text) {
            Ok(d) => panic!("accepted {text:?}: {d:?}"),
            Err(e) => e.code(),
        }
    }

    #[test]
    fn a_payment_reads_and_normalizes() {
        let d = Details::parse(
            r#"[{"type":"payment","amount":"250.5","currency":"EUR","payee":"Air Example","locations":["https://pay.example"]}]"#,
        )
        .unwrap();
        assert_eq!(d.location(), Some("https://pay.example"));
        assert_eq!(d.token_scope().unwrap(), "payment:execute:under-250.51");
        assert_eq!(
            d.to_json(),
            json!([{"type":"payment","amount":"250.50","currency":"EUR","payee":"Air Example",
                    "scope":"payment:execute","locations":["https://pay.example"]}])
        );
        let d = Details::parse(r#"[{"type":"payment","amount":"1000","currency":"JPY","payee":"x","scope":"shop:buy"}]"#).unwrap();
        assert_eq!(d.token_scope().unwrap(), "shop:buy:under-1001");
        let d =
            Details::parse(r#"[{"type":"scope","scope":"calendar:write  mail:send"}]"#).unwrap();
        assert_eq!(d.token_scope().unwrap(), "calendar:write mail:send");
    }

    #[test]
    fn hostile_details_are_refused_with_the_rfc_code() {
        let long = format!(
            r#"[{{"type":"scope","scope":"a:b","x":"{}"}}]"#,
            "y".repeat(5000)
        );
        let five = format!("[{}]", [r#"{"type":"scope","scope":"a:b"}"#; 5].join(","));
        for text in [
            "",
            "null",
            "{}",
            "[]",
            "[1]",
            "[[]]",
            long.as_str(),
            five.as_str(),
            r#"[{"scope":"a:b"}]"#,
            r#"[{"type":1,"scope":"a:b"}]"#,
            r#"[{"type":"account_information"}]"#,
            r#"[{"type":"scope","scope":"a:b","actions":["x"]}]"#,
            r#"[{"type":"scope","scope":""}]"#,
            r#"[{"type":"scope","scope":"nocolon"}]"#,
            r#"[{"type":"scope","scope":["a:b"]}]"#,
            r#"[{"type":"payment","amount":250,"currency":"EUR","payee":"x"}]"#,
            r#"[{"type":"payment","amount":"2.5e2","currency":"EUR","payee":"x"}]"#,
            r#"[{"type":"payment","amount":"-1","currency":"EUR","payee":"x"}]"#,
            r#"[{"type":"payment","amount":"0","currency":"EUR","payee":"x"}]"#,
            r#"[{"type":"payment","amount":"1.001","currency":"EUR","payee":"x"}]"#,
            r#"[{"type":"payment","amount":"99999999999999999999","currency":"EUR","payee":"x"}]"#,
            r#"[{"type":"payment","amount":"1","currency":"eur","payee":"x"}]"#,
            r#"[{"type":"payment","amount":"1","currency":"EUR"}]"#,
            r#"[{"type":"payment","amount":"1","currency":"EUR","payee":" "}]"#,
            r#"[{"type":"payment","amount":"1","currency":"EUR","payee":"a\u0000b"}]"#,
            r#"[{"type":"payment","amount":"1","currency":"EUR","payee":"a\u202eb"}]"#,
            r#"[{"type":"payment","amount":"1","currency":"EUR","payee":"x","scope":"payment:execute:under-5"}]"#,
            r#"[{"type":"payment","amount":"1","currency":"EUR","payee":"x","locations":"https://a"}]"#,
            r#"[{"type":"payment","amount":"1","currency":"EUR","payee":"x","locations":["https://a","https://b"]}]"#,
            r#"[{"type":"payment","amount":"1","currency":"EUR","payee":"x","locations":["https://a#f"]}]"#,
            r#"[{"type":"payment","amount":"1","currency":"EUR","payee":"x","locations":["https://a"]},{"type":"scope","scope":"a:b","locations":["https://b"]}]"#,
        ] {
            assert_eq!(code(text), "invalid_authorization_details", "{text}");
        }
        let payee = "p".repeat(MAX_PAYEE + 1);
        assert_eq!(
            code(&format!(
                r#"[{{"type":"payment","amount":"1","currency":"EUR","payee":"{payee}"}}]"#
            )),
            "invalid_authorization_details"
        );
    }

    #[test]
    fn binding_messages_are_bounded_plain_text() {
        assert_eq!(binding_message(None).unwrap(), None);
        assert_eq!(
            binding_message(Some("<b>Book</b> flight & hotel"))
                .unwrap()
                .as_deref(),
            Some("<b>Book</b> flight & hotel")
        );
        for bad in [
            "",
            "  ",
            "a\nb",
            "a\u{7}b",
            &"m".repeat(MAX_BINDING_MESSAGE + 1),
        ] {
            assert_eq!(
                binding_message(Some(bad)).unwrap_err().code(),
                "invalid_request"
            );
        }
    }

    #[test]
    fn details_whose_token_scope_is_invalid_are_refused() {
        let long = format!("sho{}p:buy", "d".repeat(119));
        let text = format!(
            r#"[{{"type":"scope","scope":"calendar:write mail:send"}},{{"type":"payment","amount":"0500","currency":"JPY","payee":"x","scope":"{long}"}}]"#
        );
        let e = Details::parse(&text).unwrap_err();
        assert_eq!(e.code(), "invalid_authorization_details", "{e}");
    }
}
