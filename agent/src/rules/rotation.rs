//! The rules of an active key: its replacement is created (`replacement`,
//! `hard_limit`), then, once the replacement has had its notice period, the
//! older key of the pair is switched off (`older_of_two_active`), or
//! earlier, once the owner has demonstrably switched (`cutover`). Each has
//! its own table test in `tests.rs` named after the seed case it covers.

use super::thresholds::Rules;
use keyfleet_protocol::KeyState;
use time::OffsetDateTime;

/// What happens to the older of two active keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pair {
    /// Not due yet: the owner is reminded of the date.
    Scheduled { on: OffsetDateTime },
    /// Not due yet, but the owner has switched ([`cutover`]): deactivated
    /// now, with the same notice as on its date.
    Cutover,
    /// Due, but used after its replacement was created and below the hard
    /// limit: left active, the owner is told where it is used.
    StillInUse,
    /// Due: deactivated.
    Deactivate,
    /// The replacement has not reached its owner yet: the older key stays
    /// active, whatever its age (the hard limit waits too).
    AwaitingDelivery,
}

impl Pair {
    /// The older key is deactivated in this run.
    pub(super) fn deactivates(self) -> bool {
        matches!(self, Pair::Deactivate | Pair::Cutover)
    }
}

/// Seed case "two active, one nearing expiry -> notice, then deactivate the
/// oldest at deactivate_after". Never before the replacement has had the
/// whole notice period (unless immediate enforcement at the hard limit, or
/// [`cutover`] by evidence); never while in use after the replacement was
/// created, until the hard limit.
///
/// Precedence: a reactivation's grace first (nothing deactivates the key
/// before it ends, not even evidence), then, before the date, the cutover;
/// on or after the date, the key in use is spared below the hard limit.
/// (A replacement awaiting delivery is decided before this rule is asked:
/// the planner answers [`Pair::AwaitingDelivery`] and asks nothing else.)
/// `new` is the replacement as the planner sees it: created when it was
/// delivered, when the coordinator tracks its delivery.
pub(super) fn older_of_two_active(
    r: &Rules,
    old: &KeyState,
    new: &KeyState,
    grace: Option<OffsetDateTime>,
) -> Pair {
    if let Some(until) = grace {
        Pair::Scheduled {
            on: r.deactivation_date(old, new.created).max(until),
        }
    } else if !r.deactivation_due(old, new) {
        if cutover(r, old, new) {
            Pair::Cutover
        } else {
            Pair::Scheduled {
                on: r.deactivation_date(old, new.created),
            }
        }
    } else if r.used_after(old, new) && !r.hard_limit(old) {
        Pair::StillInUse
    } else {
        Pair::Deactivate
    }
}

/// Cutover by evidence (policy `cutover_on_use`, on by default): the older
/// key of a rotation in progress goes at the next run, before its date, once
/// the owner has demonstrably switched: the replacement was used after it
/// was created (delivered) and the older key was not used since. The notice
/// period exists so that the owner can switch; once IAM shows the switch
/// done, waiting only keeps an unused credential alive. It does not apply:
///
/// - to a key used after its replacement was created (the design's "never
///   deactivate a key that was used after its replacement was created"):
///   that pair keeps the schedule and, at the date, `StillInUse`;
/// - without a use of the replacement strictly after its creation: a use
///   at the creation instant, or one IAM dates in the future of a key
///   created now, is no evidence (both count as `now`, "Clock skew");
/// - to a pair that is not a rotation: the older key must be at
///   `rotate_after`, the age at which keyfleet would replace it, so two
///   young keys an owner made by hand keep their date;
/// - in a reactivation's grace, or while the replacement awaits delivery
///   (see [`older_of_two_active`] and the planner).
///
/// The comparisons are those of the pair rule ([`Rules::used_after`]:
/// strictly later, future times counted as `now`), so "not used since" is
/// exactly the complement of "used after" that spares a key in use.
pub(super) fn cutover(r: &Rules, old: &KeyState, new: &KeyState) -> bool {
    r.policy.cutover_on_use
        && r.age(old) >= r.policy.rotate_after
        && r.used_after(new, new)
        && !r.used_after(old, new)
}

/// What happens to a user's only active key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Single {
    /// Create its replacement (the old key is deactivated later, by
    /// `older_of_two_active`).
    Replace,
    /// Deactivate it without a replacement (hard limit; `unreachable` when
    /// a replacement was wanted but cannot be delivered).
    DeactivateAlone { unreachable: bool },
    /// A replacement is due but cannot be delivered: nothing happens.
    Unreachable,
}

/// The hard limit: a key at `max_key_age` is replaced when it is in use and
/// its owner reachable (and deactivated a notice period later); otherwise
/// (never used, or nobody to deliver a new key to) it is deactivated alone,
/// and deleted no sooner than the recovery window later.
pub(super) fn hard_limit(r: &Rules, key: &KeyState, deliverable: bool) -> Option<Single> {
    if !r.hard_limit(key) {
        return None;
    }
    let used = key.last_used.is_some();
    Some(if deliverable && used {
        Single::Replace
    } else {
        Single::DeactivateAlone { unreachable: used }
    })
}

/// Seed case "one key nearing expiry -> new key": a used key at
/// `rotate_after` gets a replacement when it can be delivered.
pub(super) fn replacement(r: &Rules, key: &KeyState, deliverable: bool) -> Option<Single> {
    if !r.rotation_due(key) {
        None
    } else if deliverable {
        Some(Single::Replace)
    } else {
        Some(Single::Unreachable)
    }
}
