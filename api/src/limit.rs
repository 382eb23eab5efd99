//! Rate limiting per caller: an in-process token bucket.
//!
//! Each API key id, and each IAM principal entry of the keys secret (all
//! sessions of a listed role share the role's bucket), has a bucket of
//! `burst` tokens, refilled at `per_minute / 60` tokens a second; a request
//! takes one token, and a request that finds none is answered 429 with
//! `Retry-After` (whole seconds until the next token). Buckets live in the
//! process, so on Lambda each warm instance limits on its own; in front of
//! it API Gateway's stage throttling (for all callers together), the
//! function's reserved concurrency and an optional WAF bound the load. No
//! API Gateway usage plan: it would need API Gateway API keys, whose values
//! any `apigateway:GET` reader sees (see [`crate::auth`]).
//!
//! Time comes from a [`Clock`], so tests advance a [`ManualClock`] instead
//! of sleeping. The clock also gives the wall time the session cookies'
//! expiry is checked against.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where the API reads the time.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time, for the buckets.
    fn now(&self) -> Instant;
    /// Seconds since the Unix epoch, for expiries.
    fn unix_seconds(&self) -> u64;
}

/// The system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn unix_seconds(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Clone)]
pub struct ManualClock {
    start: Instant,
    start_unix: u64,
    offset: Arc<Mutex<Duration>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl ManualClock {
    /// Starts at the system's time now.
    pub fn new() -> ManualClock {
        ManualClock {
            start: Instant::now(),
            start_unix: SystemClock.unix_seconds(),
            offset: Arc::new(Mutex::new(Duration::ZERO)),
        }
    }

    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }

    fn offset(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.offset()
    }
    fn unix_seconds(&self) -> u64 {
        self.start_unix + self.offset().as_secs()
    }
}

/// Requests per key id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained rate (at least 1).
    pub per_minute: u32,
    /// Requests allowed at once on a full bucket (at least 1).
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_minute: 60,
            burst: 30,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every key id.
pub struct Limiter {
    limit: RateLimit,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    pub fn new(limit: RateLimit, clock: Arc<dyn Clock>) -> Limiter {
        Limiter {
            limit: RateLimit {
                per_minute: limit.per_minute.max(1),
                burst: limit.burst.max(1),
            },
            clock,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key_id`, or says how long until one is there.
    pub fn check(&self, key_id: &str) -> Result<(), Duration> {
        let now = self.clock.now();
        let rate = f64::from(self.limit.per_minute) / 60.0;
        let burst = f64::from(self.limit.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(key_id.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }

    /// `Retry-After` for a wait: whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(wait: Duration) -> u64 {
        let s = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        s.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_minute: u32, burst: u32) -> (Limiter, ManualClock) {
        let clock = ManualClock::new();
        (
            Limiter::new(RateLimit { per_minute, burst }, Arc::new(clock.clone())),
            clock,
        )
    }

    #[test]
    fn a_burst_passes_then_the_next_request_waits_for_a_token() {
        let (l, clock) = limiter(60, 3);
        for _ in 0..3 {
            l.check("a").unwrap();
        }
        let wait = l.check("a").unwrap_err();
        assert_eq!(Limiter::retry_after_secs(wait), 1);
        clock.advance(Duration::from_millis(500));
        assert!(l.check("a").is_err());
        clock.advance(Duration::from_millis(600));
        l.check("a").unwrap();
        assert!(l.check("a").is_err());
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let (l, _) = limiter(60, 1);
        l.check("a").unwrap();
        assert!(l.check("a").is_err());
        l.check("b").unwrap();
    }

    #[test]
    fn the_bucket_refills_to_the_burst_and_no_further() {
        let (l, clock) = limiter(6, 2);
        l.check("a").unwrap();
        l.check("a").unwrap();
        // One token every 10 s.
        let wait = l.check("a").unwrap_err();
        assert_eq!(Limiter::retry_after_secs(wait), 10);
        clock.advance(Duration::from_secs(3600));
        l.check("a").unwrap();
        l.check("a").unwrap();
        assert!(l.check("a").is_err());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(Limiter::retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(Limiter::retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(Limiter::retry_after_secs(Duration::from_secs(5)), 5);
        assert_eq!(Limiter::retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn the_manual_clock_moves_both_clocks() {
        let c = ManualClock::new();
        let (t, u) = (c.now(), c.unix_seconds());
        c.advance(Duration::from_secs(90));
        assert_eq!(c.now() - t, Duration::from_secs(90));
        assert_eq!(c.unix_seconds() - u, 90);
    }
}
