//! Time and randomness as parameters.
//!
//! Logic never reads the real clock: it takes a [`Clock`]. Only the edges (the
//! broker's `main`, the binding entry points) construct a [`SystemClock`]; tests
//! use a [`ManualClock`] they move by hand. Randomness likewise comes from a
//! [`Random`] source, the OS by default.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::error::{Error, Result};

/// A source of the current time, in whole seconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Seconds since 1970-01-01T00:00:00Z.
    fn now(&self) -> i64;
}

/// The real clock. Construct it only at the edges.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place the real clock is read
    fn now(&self) -> i64 {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(_) => 0,
        }
    }
}

/// A clock that tests set and advance.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock reading `now`.
    pub fn new(now: i64) -> Self {
        ManualClock(Arc::new(AtomicI64::new(now)))
    }
    /// Set the time.
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }
    /// Move the time forward by `secs` (or back, if negative).
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A source of cryptographically secure random bytes.
pub trait Random: Send + Sync + fmt::Debug {
    /// Fill `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<()>;
}

/// The operating system's CSPRNG (`getrandom`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<()> {
        getrandom::fill(buf).map_err(|e| Error::Server(format!("OS randomness unavailable: {e}")))
    }
}

/// `n` random bytes, base64url-encoded: identifiers, codes and `jti` values.
pub fn random_id(rng: &dyn Random, n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    rng.fill(&mut buf)?;
    Ok(crate::b64::encode(&buf))
}
