//! Reactivation: the security team's way back when a deactivation broke an
//! application, and the grace a reactivated key has (see "Reactivation" in
//! the module doc of [`crate::rules`]).

use super::thresholds::plus;
use super::{is_exempt, owner_email, UserPlan, UserSnapshot};
use keyfleet_protocol::{Action, KeyState, KeyStatus, Notice, Policy, Verdict};
use time::OffsetDateTime;

/// Why a reactivation was refused. Each names the key and says why, so the
/// security team knows what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReactivateError {
    #[error(
        "user `{user}` has no access key `{key_id}` (its keys: {}): a deleted key cannot be reactivated",
        .keys.join(", ")
    )]
    NoSuchKey {
        user: String,
        key_id: String,
        keys: Vec<String>,
    },
    #[error("access key `{key_id}` of user `{user}` is active; nothing to reactivate")]
    Active { user: String, key_id: String },
    #[error(
        "access key `{key_id}` of user `{user}` was not deactivated by keyfleet (no record of it); \
         keyfleet only switches back on what it switched off"
    )]
    NotDeactivatedByKeyfleet { user: String, key_id: String },
    #[error(
        "access key `{key_id}` of user `{user}` was switched back on by the security team on {reactivated} \
         and deactivated since outside keyfleet (keyfleet recorded no deactivation after that); \
         keyfleet only switches back on a key whose latest deactivation was its own"
    )]
    DeactivatedOutsideKeyfleet {
        user: String,
        key_id: String,
        reactivated: OffsetDateTime,
    },
}

/// The security team's "switch this key back on" (an application broke
/// when keyfleet deactivated it).
///
/// Only a key keyfleet deactivated (its protected record says so), last
/// (`switched_off_by_keyfleet`), and has not deleted. The plan is the
/// reactivation and a notice to the owner
/// naming the date the key will be deactivated again: a fresh notice
/// period (`deactivate_after - rotate_after`) from now. Until then no rule
/// deactivates or deletes it ([`Planner`](super::planner::Planner)'s grace, see the module doc);
/// once deactivated again, it gets the usual recovery window before it is
/// deleted, since that deactivation is recorded like any other. Like an
/// emergency rotation it is an explicit order for one named user, so the
/// exempt tag does not apply.
pub fn plan_reactivation(
    user: &UserSnapshot,
    policy: &Policy,
    now: OffsetDateTime,
    key_id: &str,
) -> Result<UserPlan, ReactivateError> {
    let err_user = || user.user_name.clone();
    let Some(key) = user.keys.iter().find(|k| k.id == key_id) else {
        return Err(ReactivateError::NoSuchKey {
            user: err_user(),
            key_id: key_id.to_string(),
            keys: user.keys.iter().map(|k| k.id.clone()).collect(),
        });
    };
    if key.status == KeyStatus::Active {
        return Err(ReactivateError::Active {
            user: err_user(),
            key_id: key_id.to_string(),
        });
    }
    switched_off_by_keyfleet(user, key_id)?;
    let until = plus(now, policy.notice_period());
    Ok(UserPlan {
        verdict: Verdict::Reactivated,
        email: owner_email(&user.tags, policy),
        actions: vec![
            Action::Reactivate {
                key_id: key_id.to_string(),
            },
            Action::Notify {
                notice: Notice::Reactivated {
                    key_id: key_id.to_string(),
                    until,
                },
            },
        ],
        exempt: is_exempt(&user.tags, policy),
        note: None,
    })
}

/// The rule of reactivation: keyfleet switches back on only a key whose
/// latest deactivation was its own. The record says when keyfleet
/// deactivated the (inactive) key and when the security team last
/// reactivated it; a reactivation at or after keyfleet's latest
/// deactivation means the key was switched off again since by someone
/// else (by hand, outside keyfleet), and that person's decision is not
/// keyfleet's to undo. (A tie cannot be ordered: refused.)
fn switched_off_by_keyfleet(user: &UserSnapshot, key_id: &str) -> Result<(), ReactivateError> {
    let latest = |events: &[(String, OffsetDateTime)]| {
        events
            .iter()
            .filter(|(id, _)| id == key_id)
            .map(|(_, at)| *at)
            .max()
    };
    let Some(deactivated) = latest(&user.deactivated) else {
        return Err(ReactivateError::NotDeactivatedByKeyfleet {
            user: user.user_name.clone(),
            key_id: key_id.to_string(),
        });
    };
    match latest(&user.reactivated) {
        Some(reactivated) if reactivated >= deactivated => {
            Err(ReactivateError::DeactivatedOutsideKeyfleet {
                user: user.user_name.clone(),
                key_id: key_id.to_string(),
                reactivated,
            })
        }
        _ => Ok(()),
    }
}

/// The report row's note for a key in its reactivation grace: which key
/// the security team switched back on, when, and until when it stays
/// active, so the reports after the reactivation show it (the owner's
/// reminders say the same date). The agent adds it to the row of a user
/// whose protected record it reads: a pair of keys, or a key whose grace
/// holds back what the rules would do; a lone key with nothing due costs no
/// record read and gets no note.
pub fn reactivation_note(
    user: &UserSnapshot,
    policy: &Policy,
    now: OffsetDateTime,
) -> Option<String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let notes: Vec<String> = user
        .keys
        .iter()
        .filter_map(|k| {
            let (at, until) = grace(&user.reactivated, k, policy, now)?;
            Some(format!(
                "key {} reactivated by the security team on {}; kept active until {}",
                k.id,
                at.format(&fmt).unwrap_or_default(),
                until.format(&fmt).unwrap_or_default()
            ))
        })
        .collect();
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// `key`'s reactivation grace while it lasts: when the security team
/// switched the active key back on, and the end, one notice period later
/// (see [`plan_reactivation`]); `None` for a key not reactivated, inactive,
/// or past it.
pub(super) fn grace(
    reactivated: &[(String, OffsetDateTime)],
    key: &KeyState,
    policy: &Policy,
    now: OffsetDateTime,
) -> Option<(OffsetDateTime, OffsetDateTime)> {
    if key.status != KeyStatus::Active {
        return None;
    }
    reactivated
        .iter()
        .filter(|(id, _)| *id == key.id)
        .map(|(_, at)| {
            // A record time later than now counts as now ("Clock skew").
            let at = (*at).min(now);
            (at, plus(at, policy.notice_period()))
        })
        .max_by_key(|(_, until)| *until)
        .filter(|(_, until)| *until > now)
}
