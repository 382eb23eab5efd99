//! The policy's thresholds applied at one instant: ages, idle times and
//! dates as every rule reads them, with the clock-skew rule applied (a time
//! later than `now` counts as `now`).

use keyfleet_protocol::{Duration, KeyState, Limit, Policy};
use std::cmp::Ordering;
use time::{OffsetDateTime, PrimitiveDateTime};

/// The policy's thresholds applied at one instant.
#[derive(Clone, Copy)]
pub(super) struct Rules<'a> {
    pub(super) policy: &'a Policy,
    pub(super) now: OffsetDateTime,
    /// Keys whose uses after their replacement was created were only the
    /// handover read ([`super::UserSnapshot::handed_over`]).
    pub(super) handed_over: &'a [String],
}

impl Rules<'_> {
    /// Creation time, with a future one counted as `now`.
    pub(super) fn created(&self, key: &KeyState) -> OffsetDateTime {
        key.created.min(self.now)
    }

    /// Oldest first: creation time, then id.
    pub(super) fn order(&self, a: &KeyState, b: &KeyState) -> Ordering {
        (self.created(a), &a.id).cmp(&(self.created(b), &b.id))
    }

    /// Time from `t` to now, zero if `t` is in the future.
    pub(super) fn since(&self, t: OffsetDateTime) -> Duration {
        u64::try_from((self.now - t).whole_seconds()).map_or(Duration::ZERO, Duration::from_secs)
    }

    pub(super) fn age(&self, key: &KeyState) -> Duration {
        self.since(self.created(key))
    }

    /// Last use, with a future one counted as `now`.
    pub(super) fn last_use(&self, key: &KeyState) -> Option<OffsetDateTime> {
        key.last_used.map(|t| t.min(self.now))
    }

    /// Time since the last use, or since creation for a key never used.
    pub(super) fn idle(&self, key: &KeyState) -> Duration {
        let created = self.created(key);
        self.since(self.last_use(key).map_or(created, |u| u.max(created)))
    }

    pub(super) fn hard_limit(&self, key: &KeyState) -> bool {
        self.policy.max_key_age.reached(self.age(key))
    }

    /// A key used at least once and old enough to be replaced.
    pub(super) fn rotation_due(&self, key: &KeyState) -> bool {
        key.last_used.is_some() && self.age(key) >= self.policy.rotate_after
    }

    /// `old` was used after `replacement` was created, other than to fetch
    /// the replacement (the handover read, see
    /// [`super::UserSnapshot::handed_over`]).
    pub(super) fn used_after(&self, old: &KeyState, replacement: &KeyState) -> bool {
        self.last_use(old)
            .is_some_and(|u| u > self.created(replacement))
            && !self.handed_over.contains(&old.id)
    }

    /// `now` has reached [`Rules::deactivation_date`]: the old key is
    /// `deactivate_after` old (or at the hard limit) and its replacement has
    /// had the whole notice period, unless the policy asks for immediate
    /// enforcement at the hard limit.
    pub(super) fn deactivation_due(&self, old: &KeyState, replacement: &KeyState) -> bool {
        let immediate = self.policy.deactivate_at_max_age_without_notice && self.hard_limit(old);
        (self.age(old) >= self.policy.deactivate_after || self.hard_limit(old))
            && (self.age(replacement) >= self.policy.notice_period() || immediate)
    }

    /// `max(old + deactivate_after, replacement + notice)`; with immediate
    /// enforcement capped by `old + max_key_age`.
    pub(super) fn deactivation_date(
        &self,
        old: &KeyState,
        replacement_created: OffsetDateTime,
    ) -> OffsetDateTime {
        let created = self.created(old);
        let date = plus(created, self.policy.deactivate_after).max(plus(
            replacement_created.min(self.now),
            self.policy.notice_period(),
        ));
        match self.policy.max_key_age {
            Limit::After(max) if self.policy.deactivate_at_max_age_without_notice => {
                date.min(plus(created, max))
            }
            _ => date,
        }
    }

    /// The recovery window of a deactivated key: `delete_after -
    /// deactivate_after`.
    pub(super) fn recovery_window(&self) -> Duration {
        self.policy
            .delete_after
            .saturating_sub(self.policy.deactivate_after)
    }

    /// keyfleet recorded deactivating the key less than the recovery window
    /// ago: it may not be deleted yet, not even to make room.
    ///
    /// Even with no recovery window, not at the instant of the deactivation:
    /// a job delivered twice must not delete what the first delivery
    /// deactivated.
    pub(super) fn recently_deactivated(&self, recorded: Option<OffsetDateTime>) -> bool {
        let window = self.recovery_window().max(Duration::from_secs(1));
        recorded.is_some_and(|at| self.since(at) < window)
    }
}

/// `t + d`, saturating at the largest date `time` can represent.
pub(super) fn plus(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    t.checked_add(d.to_time())
        .unwrap_or_else(|| PrimitiveDateTime::MAX.assume_utc())
}
