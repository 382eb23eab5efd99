//! A plan applied to a list of keys the way IAM would, without I/O: the
//! dry-run predictor shows the keys after a run with it, and the tests
//! check the invariants with it.

use super::MAX_KEYS;
use keyfleet_protocol::{Action, KeyState, KeyStatus};
use std::fmt;
use time::OffsetDateTime;

/// Why [`simulate`] rejected a plan: the rule it would break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    /// More than [`MAX_KEYS`] keys: in the input (`action` is `None`) or
    /// after the `CreateKey` at index `action`.
    TooManyKeys { action: Option<usize>, count: usize },
    /// The action at index `action` names a key the user does not have.
    UnknownKey { action: usize, key_id: String },
    /// The action at index `action` names an id that several keys share.
    AmbiguousKey { action: usize, key_id: String },
    /// The action at index `action` deactivates a key that is not active.
    AlreadyInactive { action: usize, key_id: String },
    /// The action at index `action` reactivates a key that is active.
    AlreadyActive { action: usize, key_id: String },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::TooManyKeys {
                action: None,
                count,
            } => write!(
                f,
                "the user has {count} access keys; IAM allows at most {MAX_KEYS}"
            ),
            SimError::TooManyKeys {
                action: Some(i),
                count,
            } => write!(
                f,
                "action {i}: creating a key would give the user {count} access keys; \
                 IAM allows at most {MAX_KEYS} (delete before create)"
            ),
            SimError::UnknownKey { action, key_id } => {
                write!(f, "action {action}: unknown access key `{key_id}`")
            }
            SimError::AmbiguousKey { action, key_id } => write!(
                f,
                "action {action}: access key id `{key_id}` is held by more than one key"
            ),
            SimError::AlreadyInactive { action, key_id } => write!(
                f,
                "action {action}: access key `{key_id}` is already inactive"
            ),
            SimError::AlreadyActive { action, key_id } => write!(
                f,
                "action {action}: access key `{key_id}` is already active"
            ),
        }
    }
}

impl std::error::Error for SimError {}

/// Applies `actions` to `keys` as IAM would, without I/O.
///
/// `CreateKey` adds an active key created at `now` with a synthetic id
/// (`NEW0`, `NEW1`, ... skipping ids already in use); `Deactivate` and
/// `Delete` act on ids; `Notify` changes nothing. Keys keep their input order,
/// new keys are appended. Fails, naming the rule, on more than two keys, an
/// unknown or ambiguous id, or the deactivation of an inactive key.
pub fn simulate(
    keys: &[KeyState],
    actions: &[Action],
    now: OffsetDateTime,
) -> Result<Vec<KeyState>, SimError> {
    if keys.len() > MAX_KEYS {
        return Err(SimError::TooManyKeys {
            action: None,
            count: keys.len(),
        });
    }
    let mut out = keys.to_vec();
    let find = |out: &[KeyState], action: usize, key_id: &str| {
        let mut hits = out.iter().enumerate().filter(|(_, k)| k.id == key_id);
        match (hits.next(), hits.next()) {
            (Some((i, _)), None) => Ok(i),
            (None, _) => Err(SimError::UnknownKey {
                action,
                key_id: key_id.to_string(),
            }),
            (Some(_), Some(_)) => Err(SimError::AmbiguousKey {
                action,
                key_id: key_id.to_string(),
            }),
        }
    };
    for (i, action) in actions.iter().enumerate() {
        match action {
            Action::CreateKey => {
                if out.len() >= MAX_KEYS {
                    return Err(SimError::TooManyKeys {
                        action: Some(i),
                        count: out.len() + 1,
                    });
                }
                let id = (0..)
                    .map(|n| format!("NEW{n}"))
                    .find(|id| out.iter().all(|k| k.id != *id))
                    .unwrap_or_default();
                out.push(KeyState {
                    id,
                    status: KeyStatus::Active,
                    created: now,
                    last_used: None,
                    last_used_service: None,
                    last_used_region: None,
                });
            }
            Action::Deactivate { key_id } => {
                let at = find(&out, i, key_id)?;
                if out[at].status == KeyStatus::Inactive {
                    return Err(SimError::AlreadyInactive {
                        action: i,
                        key_id: key_id.clone(),
                    });
                }
                out[at].status = KeyStatus::Inactive;
            }
            Action::Delete { key_id } => {
                let at = find(&out, i, key_id)?;
                out.remove(at);
            }
            Action::Reactivate { key_id } => {
                let at = find(&out, i, key_id)?;
                if out[at].status == KeyStatus::Active {
                    return Err(SimError::AlreadyActive {
                        action: i,
                        key_id: key_id.clone(),
                    });
                }
                out[at].status = KeyStatus::Active;
            }
            Action::Notify { .. } => {}
        }
    }
    Ok(out)
}
