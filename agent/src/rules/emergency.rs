//! Emergency rotation: the security team's "rotate this user now", an
//! explicit order for one named user (see "Emergency rotation" in the
//! module doc of [`crate::rules`]).

use super::thresholds::Rules;
use super::{
    is_deliverable, is_exempt, owner_email, unreachable_note, UserPlan, UserSnapshot, MAX_KEYS,
};
use keyfleet_protocol::{Action, KeyStatus, Notice, Policy, Verdict};
use time::OffsetDateTime;

/// Why an emergency rotation was refused. Each names the user's keys, so
/// the operator can name the one to replace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmergencyError {
    #[error(
        "user `{user}` has two active access keys ({}); name the one to replace \
         (--key KEY_ID, or \"key_id\" in the event): keyfleet never deactivates \
         or deletes an active key nobody named",
        .active.join(", ")
    )]
    NeedsKeyId { user: String, active: Vec<String> },
    #[error("user `{user}` has no access key `{key_id}` (its keys: {})", .keys.join(", "))]
    UnknownKey {
        user: String,
        key_id: String,
        keys: Vec<String>,
    },
    #[error("access key `{key_id}` of user `{user}` is already inactive; nothing to replace")]
    NotActive { user: String, key_id: String },
}

/// Emergency rotation of one user: a new key now, replacing `key_id` (or
/// the only active key).
///
/// - An inactive key is deleted first when IAM's limit of two keys needs
///   room. With two active keys the named key is deactivated and deleted to
///   make room: the one exception to "never deactivate and delete one key
///   in one run", since the security team named that key. Without a name a
///   user with two active keys is refused ([`EmergencyError::NeedsKeyId`]).
/// - The replaced key stays active (with a `DeactivationScheduled` notice)
///   unless `deactivate_old`, which deactivates it at once.
/// - An unreachable user gets no key; with `deactivate_old` the named (or
///   only) active key is still deactivated: containing a leaked key comes
///   before keeping a service running.
pub fn plan_emergency(
    user: &UserSnapshot,
    policy: &Policy,
    now: OffsetDateTime,
    deactivate_old: bool,
    key_id: Option<&str>,
) -> Result<UserPlan, EmergencyError> {
    let email = owner_email(&user.tags, policy);
    let exempt = is_exempt(&user.tags, policy);
    let rules = Rules {
        policy,
        now,
        handed_over: &[],
    };
    let mut keys = user.keys.clone();
    keys.sort_by(|a, b| rules.order(a, b));
    let active: Vec<String> = keys
        .iter()
        .filter(|k| k.status == KeyStatus::Active)
        .map(|k| k.id.clone())
        .collect();
    let target: Option<String> = match key_id {
        Some(id) => match keys.iter().find(|k| k.id == id) {
            None => {
                return Err(EmergencyError::UnknownKey {
                    user: user.user_name.clone(),
                    key_id: id.to_string(),
                    keys: keys.iter().map(|k| k.id.clone()).collect(),
                })
            }
            Some(k) if k.status == KeyStatus::Inactive => {
                return Err(EmergencyError::NotActive {
                    user: user.user_name.clone(),
                    key_id: id.to_string(),
                })
            }
            Some(k) => Some(k.id.clone()),
        },
        None if active.len() >= 2 => {
            return Err(EmergencyError::NeedsKeyId {
                user: user.user_name.clone(),
                active,
            })
        }
        None => active.first().cloned(),
    };
    let mut actions = Vec::new();
    let deactivate = |actions: &mut Vec<Action>, id: &str| {
        actions.push(Action::Deactivate {
            key_id: id.to_string(),
        });
        actions.push(Action::Notify {
            notice: Notice::Deactivated {
                key_id: id.to_string(),
                replacement: None,
            },
        });
    };
    let deliverable = is_deliverable(policy, email.as_deref());
    let verdict = if keys.is_empty() {
        Verdict::NoKeys
    } else if !deliverable {
        if let Some(t) = target.as_deref().filter(|_| deactivate_old) {
            deactivate(&mut actions, t);
            Verdict::Deactivated
        } else {
            Verdict::Unreachable
        }
    } else {
        while keys.len() >= MAX_KEYS {
            // An inactive key if there is one, else the named active key.
            let victim = keys
                .iter()
                .position(|k| k.status == KeyStatus::Inactive)
                .or_else(|| keys.iter().position(|k| Some(&k.id) == target.as_ref()))
                .unwrap_or(0);
            let key = keys.remove(victim);
            if key.status == KeyStatus::Active {
                deactivate(&mut actions, &key.id);
            }
            actions.push(Action::Delete {
                key_id: key.id.clone(),
            });
            actions.push(Action::Notify {
                notice: Notice::Deleted { key_id: key.id },
            });
        }
        actions.push(Action::CreateKey);
        if let Some(key) = keys.iter().find(|k| Some(&k.id) == target.as_ref()) {
            if deactivate_old {
                deactivate(&mut actions, &key.id);
            } else {
                actions.push(Action::Notify {
                    notice: Notice::DeactivationScheduled {
                        key_id: key.id.clone(),
                        on: rules.deactivation_date(key, now),
                        replacement: None,
                    },
                });
            }
        }
        Verdict::Rotated
    };
    Ok(UserPlan {
        note: (verdict == Verdict::Unreachable).then(|| unreachable_note(&user.tags, policy)),
        verdict,
        email,
        actions,
        exempt,
    })
}
