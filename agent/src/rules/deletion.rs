//! The rules that delete a key: an active key nobody uses (`unused`) and an
//! inactive key past its deletion date (`inactive_expired`). Each has its
//! own table test in `tests.rs` named after the seed case it covers.

use super::thresholds::Rules;
use keyfleet_protocol::{KeyState, KeyStatus};
use time::OffsetDateTime;

/// Seed case "unused -> delete and notify": an active key idle for
/// `unused_delete_after` is deleted outright (no deactivation first; the
/// seed behaviour, kept: nobody uses it).
pub(super) fn unused(r: &Rules, key: &KeyState) -> bool {
    key.status == KeyStatus::Active && r.idle(key) >= r.policy.unused_delete_after
}

/// Seed cases "two keys, older/younger inactive -> delete": an inactive key
/// past its deletion date (module doc), and, when keyfleet deactivated it,
/// at least the recovery window after that deactivation.
pub(super) fn inactive_expired(
    r: &Rules,
    key: &KeyState,
    replacement: Option<&KeyState>,
    recorded: Option<OffsetDateTime>,
) -> bool {
    let p = r.policy;
    key.status == KeyStatus::Inactive
        && r.age(key) >= p.delete_after
        && r.idle(key) >= r.recovery_window()
        && replacement.is_none_or(|k| r.age(k) >= p.delete_after.saturating_sub(p.rotate_after))
        && !r.recently_deactivated(recorded)
}
