//! The rules of an active key: its replacement is created (`replacement`,
//! `hard_limit`), then, once the replacement has had its notice period, the
//! older key of the pair is switched off (`older_of_two_active`). Each has
//! its own table test in `tests.rs` named after the seed case it covers.

use super::thresholds::Rules;
use keyfleet_protocol::KeyState;
use time::OffsetDateTime;

/// What happens to the older of two active keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pair {
    /// Not due yet: the owner is reminded of the date.
    Scheduled { on: OffsetDateTime },
    /// Due, but used after its replacement was created and below the hard
    /// limit: left active, the owner is told where it is used.
    StillInUse,
    /// Due: deactivated.
    Deactivate,
    /// The replacement has not reached its owner yet: the older key stays
    /// active, whatever its age (the hard limit waits too).
    AwaitingDelivery,
}

/// Seed case "two active, one nearing expiry -> notice, then deactivate the
/// oldest at deactivate_after". Never before the replacement has had the
/// whole notice period (unless immediate enforcement at the hard limit);
/// never while in use after the replacement was created, until the hard
/// limit.
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
        Pair::Scheduled {
            on: r.deactivation_date(old, new.created),
        }
    } else if r.used_after(old, new) && !r.hard_limit(old) {
        Pair::StillInUse
    } else {
        Pair::Deactivate
    }
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
