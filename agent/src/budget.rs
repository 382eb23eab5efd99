//! How long the agent may keep starting users.
//!
//! A Lambda invocation that reaches its timeout is killed where it stands:
//! keys it created are in IAM (and in their intent records, so the next run
//! repairs them), but the result that carries them never leaves, and the
//! job comes back for the whole account. So the agent stops *starting*
//! users that need IAM work once the invocation's remaining time falls
//! below a margin (`KEYFLEET_TIME_MARGIN`, default 20 s: the users already
//! in flight, at most a few IAM calls each, finish, and the result is
//! sent). The users not started are reported as `deferred`, with what was
//! due; the next scheduled run picks them up. Users with nothing due cost
//! no IAM call and are always evaluated, so the report stays complete.
//!
//! [`Budget::users`] (the `fault-injection` feature, tests only) runs out
//! after a given number of users instead of at a time, so the deferral is
//! tested deterministically, without timing anything.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The default [`Budget`] margin.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(20);

/// When to stop starting users.
#[derive(Debug, Clone, Default)]
pub enum Budget {
    /// No limit (`keyfleet run --local`, tests).
    #[default]
    Unlimited,
    /// Stop once less than `margin` is left before `deadline`.
    Until { deadline: Instant, margin: Duration },
    /// Tests: allow this many users that need IAM work, then stop.
    #[cfg(feature = "fault-injection")]
    Users(std::sync::Arc<std::sync::atomic::AtomicUsize>),
}

impl Budget {
    /// The budget of a Lambda invocation whose deadline is
    /// `deadline_ms` (milliseconds since the Unix epoch, as the runtime
    /// API's `Lambda-Runtime-Deadline-Ms` gives it).
    pub fn lambda(deadline_ms: u64, margin: Duration) -> Budget {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
        let now = Instant::now();
        // A deadline beyond what the clock holds: as late as it can be
        // told (the lease says how late, see `lease_until`).
        let deadline = now
            .checked_add(left)
            .or_else(|| now.checked_add(Duration::from_secs(u32::MAX.into())))
            .unwrap_or(now);
        Budget::Until { deadline, margin }
    }

    /// Tests: `n` users, then stop.
    #[cfg(feature = "fault-injection")]
    pub fn users(n: usize) -> Budget {
        Budget::Users(std::sync::Arc::new(n.into()))
    }

    /// When the account's lease taken under this budget expires: when the
    /// invocation must be over; 15 minutes (Lambda's longest invocation)
    /// without a deadline.
    pub fn lease_until(&self) -> time::OffsetDateTime {
        let left = match self {
            Budget::Until { deadline, .. } => deadline.saturating_duration_since(Instant::now()),
            _ => Duration::from_secs(15 * 60),
        };
        // Saturating: the deadline comes from outside.
        let now = time::OffsetDateTime::now_utc();
        time::Duration::try_from(left)
            .ok()
            .and_then(|left| now.checked_add(left))
            .unwrap_or_else(|| time::PrimitiveDateTime::MAX.assume_utc())
    }

    /// Whether a user that needs IAM work may still be started; counts the
    /// start against a [`Budget::users`] budget.
    pub fn may_start(&self) -> bool {
        match self {
            Budget::Unlimited => true,
            Budget::Until { deadline, margin } => {
                deadline.saturating_duration_since(Instant::now()) > *margin
            }
            #[cfg(feature = "fault-injection")]
            Budget::Users(left) => {
                use std::sync::atomic::Ordering;
                left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    #[test]
    fn an_invocation_with_more_than_the_margin_left_may_start_users() {
        let b = Budget::lambda(now_ms() + 600_000, Duration::from_secs(20));
        assert!(b.may_start());
    }

    #[test]
    fn an_invocation_with_less_than_the_margin_left_starts_no_user() {
        let b = Budget::lambda(now_ms() + 10_000, Duration::from_secs(20));
        assert!(!b.may_start());
        // A deadline already past (or a clock behind) is no time at all.
        let b = Budget::lambda(0, Duration::from_secs(20));
        assert!(!b.may_start());
    }

    /// The deadline comes from outside (the runtime's header): one beyond
    /// what a clock can hold is a long time, not a panic.
    #[test]
    fn a_deadline_beyond_any_clock_neither_panics_nor_ends_the_budget() {
        let b = Budget::lambda(u64::MAX, Duration::from_secs(20));
        assert!(b.may_start());
        assert!(b.lease_until() > time::OffsetDateTime::now_utc());
    }

    #[test]
    fn unlimited_always_starts() {
        assert!(Budget::Unlimited.may_start());
    }
}
