//! Strict JSON for JOSE headers and claim sets (RFC 8725 section 3.x, RFC 7515
//! section 5.2): UTF-8 only, objects only at the top, and no duplicate member
//! names at any depth. serde_json alone keeps the last duplicate silently, which
//! lets two parsers read one token differently; this reader refuses instead.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.insert(key.clone(), v).is_some() {
                return Err(de::Error::custom(format!("duplicate member name {key:?}")));
            }
        }
        Ok(Value::Object(out))
    }
}

/// Parse bytes as one strict JSON object.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let Strict(v) = serde_json::from_str(text).map_err(|e| e.to_string())?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err("not a JSON object".to_owned()),
    }
}

/// An optional string member; `Err` when present with another type.
pub fn opt_str<'a>(m: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match m.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{name}` must be a string")),
    }
}

/// A required string member.
pub fn req_str<'a>(m: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    opt_str(m, name)?.ok_or_else(|| format!("`{name}` is missing"))
}

/// Largest NumericDate accepted: the year 10000, far beyond any real expiry and
/// small enough that adding windows to it never overflows.
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_800;

/// An optional NumericDate: a non-negative integer no larger than
/// [`MAX_NUMERIC_DATE`]. Fractions, strings, negatives and huge values are
/// refused rather than rounded, so that no two readers disagree on a time.
pub fn opt_time(m: &Map<String, Value>, name: &str) -> Result<Option<i64>, String> {
    match m.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(t) if (0..=MAX_NUMERIC_DATE).contains(&t) => Ok(Some(t)),
            _ => Err(format!(
                "`{name}` must be a whole number of seconds in range"
            )),
        },
        Some(_) => Err(format!("`{name}` must be a number")),
    }
}

/// A required NumericDate.
pub fn req_time(m: &Map<String, Value>, name: &str) -> Result<i64, String> {
    opt_time(m, name)?.ok_or_else(|| format!("`{name}` is missing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicates_at_any_depth() {
        assert!(parse_object(br#"{"a":1,"a":2}"#).is_err());
        assert!(parse_object(br#"{"a":{"b":1,"b":1}}"#).is_err());
        assert!(parse_object(br#"{"a":[{"b":1,"b":1}]}"#).is_err());
        assert!(parse_object(br#"{"a":{"b":1},"c":2}"#).is_ok());
    }

    #[test]
    fn rejects_non_objects_and_non_utf8() {
        assert!(parse_object(b"[1]").is_err());
        assert!(parse_object(b"\"x\"").is_err());
        assert!(parse_object(b"{\"a\":\"\xff\"}").is_err());
        assert!(parse_object(b"{} x").is_err());
    }

    #[test]
    fn times_are_strict() {
        let m = parse_object(br#"{"a":1.5,"b":-1,"c":"1","d":1e300,"e":99999999999999,"f":5}"#)
            .unwrap();
        for k in ["a", "b", "c", "d", "e"] {
            assert!(opt_time(&m, k).is_err(), "{k}");
        }
        assert_eq!(opt_time(&m, "f").unwrap(), Some(5));
        assert_eq!(opt_time(&m, "g").unwrap(), None);
    }
}
