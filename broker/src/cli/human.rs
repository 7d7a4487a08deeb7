//! Times and durations as people read them, for output without `--json`.

/// A Unix time as `2026-12-05 14:03 UTC`.
pub(super) fn when(ts: i64) -> String {
    crate::dashboard::view::when(ts)
}

/// A duration, short, to the nearest minute from a minute on: `45 s`,
/// `10 min`, `1 h`, `1 h 30 min`, `30 d`.
pub(super) fn dur(secs: i64) -> String {
    let s = secs.max(0);
    if s < 60 {
        return format!("{s} s");
    }
    let m = (s + 30) / 60;
    if m < 60 {
        format!("{m} min")
    } else if m < 1440 {
        match (m / 60, m % 60) {
            (h, 0) => format!("{h} h"),
            (h, mm) => format!("{h} h {mm} min"),
        }
    } else {
        match (m / 1440, (m % 1440) / 60) {
            (d, 0) => format!("{d} d"),
            (d, h) => format!("{d} d {h} h"),
        }
    }
}

/// `ts` seen from `now`: `in 9 min`, `3 h ago`.
pub(super) fn from_now(ts: i64, now: i64) -> String {
    if ts >= now {
        format!("in {}", dur(ts - now))
    } else {
        format!("{} ago", dur(now - ts))
    }
}

/// A time with its distance from now: `2026-12-05 14:03 UTC (in 9 min)`.
pub(super) fn at(ts: i64, now: i64) -> String {
    format!("{} ({})", when(ts), from_now(ts, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(dur(45), "45 s");
        assert_eq!(dur(600), "10 min");
        assert_eq!(dur(899), "15 min");
        assert_eq!(dur(3599), "1 h");
        assert_eq!(dur(3600), "1 h");
        assert_eq!(dur(5400), "1 h 30 min");
        assert_eq!(dur(30 * 86400), "30 d");
        assert_eq!(from_now(100, 40), "in 1 min");
        assert_eq!(from_now(40, 3640), "1 h ago");
        assert_eq!(when(1_796_479_380), "2026-12-05 14:03 UTC");
    }
}
