//! Per-source rate limits on the endpoints a flood would target: the token,
//! device, revocation and introspection endpoints, dashboard sign-in and code
//! entry, and the gateway. A token bucket per source address (GCRA, the
//! `governor` crate), decided before any signature check or database work, so
//! that a flood from one address costs the broker almost nothing and never
//! slows an agent on another address. IPv6 sources are grouped by /64 (one
//! host usually holds a whole /64).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimit;

/// Checks between two sweeps of sources whose buckets are full again: keeps
/// the table bounded by the sources active in the last few seconds.
const SWEEP_EVERY: u64 = 4096;

/// The per-source limiter.
pub struct SourceLimiter {
    inner: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl std::fmt::Debug for SourceLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceLimiter")
            .field("sources", &self.inner.len())
            .finish()
    }
}

/// The source a budget is kept for: the address, IPv6 grouped by /64.
pub(crate) fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// A tag of the source (the address, IPv6 grouped by /64) for the DPoP
/// replay cache's fair sharing: a keyed hash, so that no one can pick an
/// address whose tag collides with another client's. `None` when `source` is
/// not an address.
pub(crate) fn source_tag(source: &str) -> Option<u64> {
    use std::hash::BuildHasher as _;
    static KEYS: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    let ip: IpAddr = source.parse().ok()?;
    Some(
        KEYS.get_or_init(std::hash::RandomState::new)
            .hash_one(key(ip)),
    )
}

impl SourceLimiter {
    /// A limiter for `limit`, or `None` when it cannot be expressed.
    pub fn new(limit: RateLimit) -> Option<Self> {
        let period = Duration::from_secs_f64(1.0 / limit.per_second);
        let quota = Quota::with_period(period)?.allow_burst(NonZeroU32::new(limit.burst)?);
        Some(SourceLimiter {
            inner: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        })
    }

    /// Admit one request from `ip`, or say how many seconds to wait.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.inner.retain_recent();
            self.inner.shrink_to_fit();
        }
        self.inner.check_key(&key(ip)).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// Whether a request to `path` with `method` is rate-limited.
pub fn limited(method: &str, path: &str) -> bool {
    let post = method.eq_ignore_ascii_case("POST");
    (post && (path.starts_with("/oauth/") || path == "/login" || path == "/device"))
        || path.starts_with("/gateway/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_from_one_source_leaves_another_alone() {
        let l = SourceLimiter::new(RateLimit {
            per_second: 1.0,
            burst: 3,
        })
        .unwrap();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(a).is_ok());
        }
        assert!(matches!(l.check(a), Err(w) if (1..=2).contains(&w)));
        assert!(l.check(b).is_ok());
        // The same IPv6 /64 is one source.
        let x: IpAddr = "2001:db8::1".parse().unwrap();
        let y: IpAddr = "2001:db8::2".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(x).is_ok());
        }
        assert!(l.check(y).is_err());
    }

    #[test]
    fn which_requests_count() {
        assert!(limited("POST", "/oauth/token"));
        assert!(limited("POST", "/login"));
        assert!(limited("GET", "/gateway/x/y"));
        assert!(!limited("GET", "/jwks.json"));
        assert!(!limited("GET", "/revocations/stream"));
    }
}
