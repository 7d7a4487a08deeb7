//! Spend budgets (specification: `spec/12-budgets.md`): exact amounts in a
//! currency's minor units, the calendar periods a budget renews over, and the
//! wire types of the broker's spend and refund endpoints.
//!
//! Amounts are decimal strings (`"12.50"`), never floats: they are parsed into
//! whole minor units (cents) with the currency's ISO 4217 exponent, and an
//! amount finer than the currency allows (`"0.001"` EUR) is refused rather
//! than rounded. Periods are calendar periods in UTC; weeks start on Monday
//! (ISO 8601).

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest amount, in minor units (10^15: a quadrillion cents).
pub const MAX_MINOR: i64 = 1_000_000_000_000_000;
/// Longest idempotency key, bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// The ISO 4217 exponent of a currency: 2 unless listed. Codes are three
/// upper-case ASCII letters.
pub fn currency_exponent(code: &str) -> Result<u32> {
    if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_uppercase()) {
        return Err(Error::InvalidRequest(
            "a currency is three upper-case letters (ISO 4217, e.g. EUR)".into(),
        ));
    }
    Ok(match code {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    })
}

/// Parse a non-negative decimal amount (`"12.5"`, `"100"`) into minor units of
/// `currency`. No sign, exponent, spaces or grouping; at most as many
/// significant decimals as the currency has (trailing zeros are fine).
pub fn parse_amount(text: &str, currency: &str) -> Result<i64> {
    let exp = currency_exponent(currency)?;
    let bad = || {
        Error::InvalidRequest(format!(
            "an amount is a decimal string like \"12.50\" with at most {exp} decimal(s) in {currency}, at most 10^15 minor units"
        ))
    };
    if text.is_empty() || text.len() > 40 {
        return Err(bad());
    }
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (text.contains('.') && frac.is_empty()) {
        return Err(bad());
    }
    let sig = frac.trim_end_matches('0');
    if sig.len() > exp as usize {
        return Err(bad());
    }
    let int = int.trim_start_matches('0');
    if int.len() > 16 {
        return Err(bad());
    }
    let mut minor: i64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    for i in 0..exp as usize {
        let d = sig.as_bytes().get(i).map_or(0, |c| i64::from(c - b'0'));
        minor = minor
            .checked_mul(10)
            .and_then(|m| m.checked_add(d))
            .ok_or_else(bad)?;
    }
    if minor > MAX_MINOR {
        return Err(bad());
    }
    Ok(minor)
}

/// Format minor units of `currency` as a decimal string with exactly the
/// currency's decimals (`1250` EUR is `"12.50"`).
pub fn format_amount(minor: i64, currency: &str) -> String {
    let exp = currency_exponent(currency).unwrap_or(2);
    let d = Decimal::new(minor, exp);
    format!("{d:.prec$}", prec = exp as usize)
}

/// How often a budget starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// Each UTC clock hour.
    Hour,
    /// Each UTC day.
    Day,
    /// Each ISO week (Monday 00:00 UTC).
    Week,
    /// Each calendar month (UTC).
    Month,
    /// The grant's whole life: never renews.
    Total,
}

impl Period {
    /// Parse `hour`, `day`, `week`, `month` or `total`.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "hour" => Period::Hour,
            "day" => Period::Day,
            "week" => Period::Week,
            "month" => Period::Month,
            "total" => Period::Total,
            _ => {
                return Err(Error::InvalidRequest(
                    "a period is hour, day, week, month or total".into(),
                ));
            }
        })
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Total => "total",
        }
    }

    /// The current period at `now` (Unix seconds): its start (inclusive) and
    /// end (exclusive); `Total` spans all time and has no end.
    pub fn bounds(self, now: i64) -> (i64, Option<i64>) {
        let day = now.div_euclid(86_400);
        match self {
            Period::Hour => {
                let s = now - now.rem_euclid(3600);
                (s, Some(s + 3600))
            }
            Period::Day => (day * 86_400, Some((day + 1) * 86_400)),
            Period::Week => {
                // 1970-01-01 was a Thursday: Monday is 3 days earlier.
                let start = day - (day + 3).rem_euclid(7);
                (start * 86_400, Some((start + 7) * 86_400))
            }
            Period::Month => {
                let (y, m, _) = civil_from_days(day);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (
                    days_from_civil(y, m, 1) * 86_400,
                    Some(days_from_civil(ny, nm, 1) * 86_400),
                )
            }
            Period::Total => (i64::MIN, None),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Howard Hinnant's civil calendar algorithms (proleptic Gregorian).

/// The civil date (year, month 1-12, day 1-31) of a day counted from
/// 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The day, counted from 1970-01-01, of a civil date (month 1-12, day 1-31).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * if m > 2 { m - 3 } else { m + 9 } + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Check an idempotency key: 1 to 128 visible ASCII characters.
pub fn check_idempotency_key(k: &str) -> Result<()> {
    if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY || !k.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(Error::InvalidRequest(
            "an idempotency key is 1 to 128 visible ASCII characters".into(),
        ));
    }
    Ok(())
}

/// `POST /budget/spend`, sent by a resource server (client authentication as
/// for introspection) for a request it verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendRequest {
    /// The verified token's grant (`gid`).
    pub grant_id: String,
    /// The verified token's id (`jti`).
    pub token_id: String,
    /// `resource:action` (no qualifier), as the budget names it.
    pub scope: String,
    /// A decimal string, more than zero.
    pub amount: String,
    /// ISO 4217 code.
    pub currency: String,
    /// The caller's key: the same key never spends twice.
    pub idempotency_key: String,
}

/// `POST /budget/refund`: give back what a spend took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// The grant the spend was against.
    pub grant_id: String,
    /// The spend's idempotency key.
    pub idempotency_key: String,
}

/// The answer to a spend or a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendResponse {
    /// The grant.
    pub grant_id: String,
    /// The scope spent against.
    pub scope: String,
    /// The amount spent (or given back), decimal string.
    pub amount: String,
    /// Its currency.
    pub currency: String,
    /// The spend's idempotency key.
    pub idempotency_key: String,
    /// Whether the spend has been refunded.
    #[serde(default)]
    pub refunded: bool,
    /// The budget's limit; `None` when the scope has no budget.
    #[serde(default)]
    pub limit: Option<String>,
    /// What was left right after this spend or refund; `None` without a budget.
    #[serde(default)]
    pub remaining: Option<String>,
    /// The budget's period.
    #[serde(default)]
    pub period: Option<Period>,
    /// When the current period ends (Unix seconds); `None` for `total`.
    #[serde(default)]
    pub period_ends_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_minor_units() {
        assert_eq!(parse_amount("12.5", "EUR").unwrap(), 1250);
        assert_eq!(parse_amount("12.500", "EUR").unwrap(), 1250);
        assert_eq!(parse_amount("0012", "EUR").unwrap(), 1200);
        assert_eq!(parse_amount("100", "JPY").unwrap(), 100);
        assert_eq!(parse_amount("1.234", "KWD").unwrap(), 1234);
        assert_eq!(parse_amount("0.1", "EUR").unwrap() * 3, 30);
        for bad in [
            "", "-1", "+1", "1e3", "1.", ".5", "1.001", "1,00", " 1", "1 ", "0x10", "１", "NaN",
        ] {
            assert!(parse_amount(bad, "EUR").is_err(), "{bad:?}");
        }
        assert!(parse_amount("1.5", "JPY").is_err());
        assert!(parse_amount("10000000000000.01", "EUR").is_err());
        assert!(parse_amount("99999999999999999999", "EUR").is_err());
        assert!(parse_amount("1", "eur").is_err());
        assert!(parse_amount("1", "EURO").is_err());
        assert_eq!(format_amount(1250, "EUR"), "12.50");
        assert_eq!(format_amount(7, "EUR"), "0.07");
        assert_eq!(format_amount(100, "JPY"), "100");
        assert_eq!(format_amount(1234, "KWD"), "1.234");
    }

    #[test]
    fn periods_are_utc_calendar_periods() {
        // 2026-12-05 18:46:16 UTC, a Saturday.
        let now = 1_796_496_376;
        assert_eq!(
            Period::Hour.bounds(now),
            (1_796_493_600, Some(1_796_497_200))
        );
        assert_eq!(
            Period::Day.bounds(now),
            (1_796_428_800, Some(1_796_515_200))
        );
        // Monday 2026-11-30 to Monday 2026-12-07.
        assert_eq!(
            Period::Week.bounds(now),
            (1_795_996_800, Some(1_796_601_600))
        );
        // 2026-12-01 to 2027-01-01.
        assert_eq!(
            Period::Month.bounds(now),
            (1_796_083_200, Some(1_798_761_600))
        );
        // February of a leap year.
        assert_eq!(
            Period::Month.bounds(951_782_400), // 2000-02-29
            (949_363_200, Some(951_868_800))
        );
        assert_eq!(Period::Total.bounds(now), (i64::MIN, None));
        for p in ["hour", "day", "week", "month", "total"] {
            assert_eq!(Period::parse(p).unwrap().as_str(), p);
        }
        assert!(Period::parse("year").is_err());
    }

    #[test]
    fn idempotency_keys_are_bounded() {
        assert!(check_idempotency_key("order-1").is_ok());
        assert!(check_idempotency_key("").is_err());
        assert!(check_idempotency_key("a b").is_err());
        assert!(check_idempotency_key(&"k".repeat(129)).is_err());
    }
}
