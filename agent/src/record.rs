//! The protected per-user record: Secrets Manager `keyfleet/<user>`.
//!
//! What keyfleet must remember about a user between runs, and cannot trust
//! tags with (anyone with `iam:TagUser` can write a tag), lives here:
//!
//! - `intent`: a rotation in flight (run, time, the keys that existed),
//!   written before `CreateAccessKey` and cleared once the result reached
//!   the coordinator's queue;
//! - `reactivated`: the keys the security team switched back on, and when,
//!   so that such a key gets a fresh notice period before it is
//!   deactivated again (`crate::rules::plan_reactivation`);
//! - `deactivated`: the keys keyfleet deactivated, and when, so that such a
//!   key is deleted no sooner than `delete_after - deactivate_after` later;
//! - `deleted`: the keys keyfleet deleted (recorded before the deletion);
//! - each of these with the run that did it and the owner's notice that
//!   went with it, so that a job delivered again after its result was lost
//!   reports what its first attempt did ([`UserRecord::earlier_attempt`]);
//! - `current`/`sealed`/`history`: the newest key (sealed to the
//!   coordinator, which is what makes a crash harmless: the next run sends
//!   the sealed copy again) and, with Secrets Manager delivery, the plain
//!   key for its owner.
//!
//! **Where.** One item of the account's table ([`crate::table`], item key
//! [`item_key`]), which only the agent role may write: the table's resource
//! policy, checked once per run before anything is read. An item whose
//! content is not a record of this account and user is not trusted
//! ([`Loaded::Untrusted`]): keyfleet neither acts on it nor writes over it,
//! and creates no key for that user (it could not record one); the report
//! says why. The record never holds a secret access key: with Secrets
//! Manager delivery the user's key goes to the delivery secret
//! ([`crate::delivery`]), which the user may read.
//!
//! **Earlier releases** kept the record in the secret `keyfleet/<user>`;
//! [`legacy`] reads those, and the first run of this release moves them
//! into the table ([`migrate`]).
//!
//! **When it is read.** Only for users it can matter to: an emergency
//! rotation, a user with an action due, two keys, an inactive key, or keys
//! the credential report did not show, and every user when the job is a
//! retry of a run (`crate::lease`, "Runs seen"). Otherwise a user with one
//! active key and nothing due costs no DynamoDB call.

use crate::table::{Table, TableError, Written};
use keyfleet_protocol::{Action, KeyState, KeyStatus, Notice, SealedCredential, Secret};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, PrimitiveDateTime};

/// The newest key keyfleet created for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentKey {
    pub access_key_id: String,
    pub created: String,
    /// Present only with Secrets Manager delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret>,
    /// The run that created it (absent in records written before runs were
    /// recorded): a retry of that run reports the key as its own even
    /// after the intent was cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// A rotation in flight: recorded before `CreateAccessKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub run_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The user's key ids when the intent was written.
    pub before: Vec<String>,
}

/// Clock skew allowed between the agent and IAM when deciding that a key
/// was created after an intent.
const SKEW: time::Duration = time::Duration::minutes(5);

impl Intent {
    /// The key may have been created by keyfleet under this intent: it is
    /// not among the keys that existed, was created after the intent (with
    /// [`SKEW`] of clock skew) and was never used. Only such a key, with no
    /// stored copy, may ever be deleted by reconciliation.
    pub fn created_under(&self, key: &KeyState) -> bool {
        // Saturating: the intent's time comes from a record, which a
        // member-account principal may have forged with any date.
        let since = self
            .at
            .checked_sub(SKEW)
            .unwrap_or_else(|| PrimitiveDateTime::MIN.assume_utc());
        !self.before.contains(&key.id) && key.last_used.is_none() && key.created >= since
    }
}

/// Something keyfleet did to a key and must remember: a deactivation (by
/// keyfleet) or a reactivation (by the security team).
///
/// `age_secs` is the key's age (by IAM's creation date) at that moment, so
/// the moment is `key.created + age_secs`: the same instant as `at` in AWS,
/// and still right under the emulator's clock, which ages keys but cannot
/// age a record's contents.
///
/// `run_id` and `notice` (absent in records written before they existed)
/// say which run did it and what the owner was told, so that a retry of
/// that run reports the same action and the same notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEvent {
    pub key_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub age_secs: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<Notice>,
}

/// A key keyfleet deactivated.
pub type Deactivation = KeyEvent;
/// A key the security team switched back on (`JobMode::Reactivate`).
pub type Reactivation = KeyEvent;

/// A key keyfleet deleted, recorded before `DeleteAccessKey`: the key as it
/// was (a retry of the run plans from the keys as its first attempt found
/// them), the run and the owner's notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    pub key: KeyState,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub run_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<Notice>,
}

/// Which run did something, and what the owner was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMark<'a> {
    pub run_id: &'a str,
    pub notice: Option<&'a Notice>,
}

/// Records `key` at `at` at the front of `events`, replacing its earlier
/// entry and keeping the newest [`MAX_DEACTIVATIONS`].
fn record_event(events: &mut Vec<KeyEvent>, key: &KeyState, at: OffsetDateTime, run: RunMark) {
    events.retain(|d| d.key_id != key.id);
    events.insert(
        0,
        KeyEvent {
            key_id: key.id.clone(),
            at,
            age_secs: (at - key.created).whole_seconds().max(0),
            run_id: Some(run.run_id.to_string()),
            notice: run.notice.cloned(),
        },
    );
    events.truncate(MAX_DEACTIVATIONS);
}

/// `(key id, when)` of the events of keys the user still has, for the
/// rules, leaving out those of run `except` (see
/// [`UserRecord::earlier_attempt`]).
///
/// A record may have been forged (a member-account principal can create
/// the secret with keyfleet's exact policy before the agent ever writes
/// one): its times are clamped to the past, a time later than `now`
/// counting as `now`, and an age beyond what a date can hold saturates
/// instead of overflowing. So a forged reactivation grants at most one
/// notice period of grace from now, and no record makes a run panic.
fn events_of(
    events: &[KeyEvent],
    keys: &[KeyState],
    now: OffsetDateTime,
    except: &str,
) -> Vec<(String, OffsetDateTime)> {
    events
        .iter()
        .filter(|d| d.run_id.as_deref() != Some(except))
        .filter_map(|d| {
            let key = keys.iter().find(|k| k.id == d.key_id)?;
            Some((d.key_id.clone(), anchored(key.created, d.age_secs, now)))
        })
        .collect()
}

/// `created + age_secs`, saturating at the dates `time` can hold, and no
/// later than `now`.
fn anchored(created: OffsetDateTime, age_secs: i64, now: OffsetDateTime) -> OffsetDateTime {
    let at = created
        .checked_add(time::Duration::seconds(age_secs))
        .unwrap_or_else(|| {
            if age_secs < 0 {
                PrimitiveDateTime::MIN.assume_utc()
            } else {
                now
            }
        });
    at.min(now)
}

/// What the earlier attempt of a run did to a user's keys, as its record
/// says and IAM confirms (see [`UserRecord::earlier_attempt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierAttempt {
    /// The actions it completed, oldest first, each with the notice that
    /// went with it.
    pub done: Vec<(Action, Option<Notice>)>,
    /// The user's keys as that attempt found them: the keys it deleted
    /// restored, the keys it switched in their former status. The key it
    /// created is still among them (the executor knows it and leaves it
    /// out).
    pub keys_before: Vec<KeyState>,
}

/// The JSON stored in `keyfleet/<user>`. Version 1 records written before
/// `intent` and `deactivated` existed read as records without them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub v: u32,
    pub account_id: String,
    pub user_name: String,
    #[serde(default)]
    pub current: Option<CurrentKey>,
    /// Previous access key ids, newest first.
    #[serde(default)]
    pub history: Vec<String>,
    /// The current key sealed to the coordinator.
    #[serde(default)]
    pub sealed: Option<SealedCredential>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Intent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deactivated: Vec<Deactivation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactivated: Vec<Reactivation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<Deletion>,
    /// New keys a job said had not reached their owners yet, since when
    /// (see [`UserRecord::observe_deliveries`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undelivered: Vec<KeyEvent>,
    /// Keys once undelivered, and the run that first found them delivered:
    /// their old keys' notice period counts from then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered: Vec<KeyEvent>,
}

/// Most entries remembered per list (a user has at most two keys; older
/// entries are of keys long deleted).
const MAX_DEACTIVATIONS: usize = 8;

impl UserRecord {
    pub fn new(account_id: &str, user_name: &str) -> Self {
        UserRecord {
            v: 1,
            account_id: account_id.to_string(),
            user_name: user_name.to_string(),
            current: None,
            history: Vec::new(),
            sealed: None,
            intent: None,
            deactivated: Vec::new(),
            reactivated: Vec::new(),
            deleted: Vec::new(),
            undelivered: Vec::new(),
            delivered: Vec::new(),
        }
    }

    /// Notes where the delivery of the user's keys stands, from the job's
    /// list of keys not delivered yet (`undelivered`, this user's ids): a
    /// key newly on it is noted as undelivered; a key noted undelivered
    /// that is no longer on it was delivered since the last run, and is
    /// noted delivered now (the first run that knows it: never earlier
    /// than the delivery, so the owner's notice period is never cut). A
    /// key delivered before any run saw it undelivered is not noted: its
    /// notice period counts from its creation, as always. True when the
    /// record changed.
    pub fn observe_deliveries(
        &mut self,
        keys: &[KeyState],
        undelivered: &[&str],
        now: OffsetDateTime,
        run_id: &str,
    ) -> bool {
        let mark = || RunMark {
            run_id,
            notice: None,
        };
        let mut changed = false;
        for key in keys {
            let waiting = undelivered.contains(&key.id.as_str());
            let noted = self.undelivered.iter().any(|e| e.key_id == key.id);
            if waiting && !noted {
                record_event(&mut self.undelivered, key, now, mark());
                changed = true;
            } else if !waiting && noted {
                self.undelivered.retain(|e| e.key_id != key.id);
                record_event(&mut self.delivered, key, now, mark());
                changed = true;
            }
        }
        changed
    }

    /// `(key id, when)` of the deliveries noted for keys the user still
    /// has (see [`UserRecord::observe_deliveries`]), clamped to `now`.
    pub fn deliveries(
        &self,
        keys: &[KeyState],
        now: OffsetDateTime,
    ) -> Vec<(String, OffsetDateTime)> {
        events_of(&self.delivered, keys, now, "")
    }

    /// Records the deactivation of `key` at `at` by `run`, keeping the
    /// newest entries.
    pub fn record_deactivation(&mut self, key: &KeyState, at: OffsetDateTime, run: RunMark) {
        record_event(&mut self.deactivated, key, at, run);
    }

    /// Records that the security team reactivated `key` at `at` (job
    /// `run`), keeping the newest entries.
    pub fn record_reactivation(&mut self, key: &KeyState, at: OffsetDateTime, run: RunMark) {
        record_event(&mut self.reactivated, key, at, run);
    }

    /// Records that `run` deletes `key` at `at`, keeping the newest
    /// entries.
    pub fn record_deletion(&mut self, key: &KeyState, at: OffsetDateTime, run: RunMark) {
        self.deleted.retain(|d| d.key.id != key.id);
        self.deleted.insert(
            0,
            Deletion {
                key: key.clone(),
                at,
                run_id: run.run_id.to_string(),
                notice: run.notice.cloned(),
            },
        );
        self.deleted.truncate(MAX_DEACTIVATIONS);
    }

    /// `(key id, when)` of the reactivations of keys the user still has,
    /// for the rules: clamped to `now`, without those of run `except`.
    pub fn reactivations(
        &self,
        keys: &[KeyState],
        now: OffsetDateTime,
        except: &str,
    ) -> Vec<(String, OffsetDateTime)> {
        events_of(&self.reactivated, keys, now, except)
    }

    /// `(key id, when)` of the deactivations of keys the user still has,
    /// for the rules: clamped to `now`, without those of run `except`.
    pub fn deactivations(
        &self,
        keys: &[KeyState],
        now: OffsetDateTime,
        except: &str,
    ) -> Vec<(String, OffsetDateTime)> {
        events_of(&self.deactivated, keys, now, except)
    }

    /// Rewrites every deactivation and reactivation of `keys` dated later
    /// than `now` (or beyond the dates `time` can hold) as happening at
    /// `now`; true when it changed anything. The rules already count such
    /// a time as `now` (`events_of`), but a time that stays in the
    /// future would be "now" again on every run: a forged reactivation
    /// would renew its grace for ever. Once written back, the grace is
    /// counted from the run that first saw it.
    pub fn clamp_to(&mut self, keys: &[KeyState], now: OffsetDateTime) -> bool {
        let mut changed = false;
        for e in self
            .deactivated
            .iter_mut()
            .chain(self.reactivated.iter_mut())
        {
            let Some(key) = keys.iter().find(|k| k.id == e.key_id) else {
                continue;
            };
            let future = key
                .created
                .checked_add(time::Duration::seconds(e.age_secs))
                .is_none_or(|at| at > now);
            if future && e.age_secs > 0 {
                e.at = now;
                e.age_secs = (now - key.created).whole_seconds().max(0);
                changed = true;
            }
        }
        changed
    }

    /// True when run `run_id` wrote anything about this user's keys.
    pub fn touched_by(&self, run_id: &str) -> bool {
        let ours = |e: &KeyEvent| e.run_id.as_deref() == Some(run_id);
        self.deactivated.iter().any(ours)
            || self.reactivated.iter().any(ours)
            || self.deleted.iter().any(|d| d.run_id == run_id)
            || self.intent.as_ref().is_some_and(|i| i.run_id == run_id)
            || self.created_by(run_id).is_some()
    }

    /// The key run `run_id` created and stored, if it did.
    pub fn created_by(&self, run_id: &str) -> Option<&str> {
        self.current
            .as_ref()
            .filter(|c| c.run_id.as_deref() == Some(run_id))
            .map(|c| c.access_key_id.as_str())
    }

    /// What an earlier attempt of run `run_id` did to the user's keys,
    /// judged against `keys` (the keys in IAM now): a deactivation it
    /// recorded counts as done when the key is no longer active, a
    /// reactivation when the key is active, a deletion when the key is
    /// gone. A recorded change IAM does not show (the attempt stopped
    /// between the record and the call, or the call failed) is not done:
    /// the retry does it. Nothing for a run that wrote nothing.
    pub fn earlier_attempt(&self, run_id: &str, keys: &[KeyState]) -> EarlierAttempt {
        let ours = |e: &&KeyEvent| e.run_id.as_deref() == Some(run_id);
        let mut keys_before = keys.to_vec();
        // (when, order within one instant, action, notice)
        let mut done: Vec<(OffsetDateTime, u8, Action, Option<Notice>)> = Vec::new();
        for d in self.deleted.iter().filter(|d| d.run_id == run_id) {
            if keys_before.iter().all(|k| k.id != d.key.id) {
                keys_before.push(d.key.clone());
                let action = Action::Delete {
                    key_id: d.key.id.clone(),
                };
                done.push((d.at, 1, action, d.notice.clone()));
            }
        }
        for e in self.deactivated.iter().filter(ours) {
            let Some(key) = keys_before.iter_mut().find(|k| k.id == e.key_id) else {
                continue;
            };
            let gone = keys.iter().all(|k| k.id != e.key_id);
            if gone || key.status == KeyStatus::Inactive {
                key.status = KeyStatus::Active;
                let action = Action::Deactivate {
                    key_id: e.key_id.clone(),
                };
                done.push((e.at, 0, action, e.notice.clone()));
            }
        }
        for e in self.reactivated.iter().filter(ours) {
            let Some(key) = keys_before.iter_mut().find(|k| k.id == e.key_id) else {
                continue;
            };
            if key.status == KeyStatus::Active {
                key.status = KeyStatus::Inactive;
                let action = Action::Reactivate {
                    key_id: e.key_id.clone(),
                };
                done.push((e.at, 0, action, e.notice.clone()));
            }
        }
        done.sort_by_key(|(at, order, ..)| (*at, *order));
        EarlierAttempt {
            done: done.into_iter().map(|(_, _, a, n)| (a, n)).collect(),
            keys_before,
        }
    }
}

pub mod legacy;
mod migrate;
pub(crate) use legacy::sm_message;
pub use legacy::{resource_policy, secret_name};
pub use migrate::migrate;

/// The table item of a user's record.
pub fn item_key(user: &str) -> String {
    format!("user/{user}")
}

/// What the table holds for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// No record yet.
    Absent,
    /// keyfleet's record, at the item version read.
    Trusted(Box<UserRecord>, u64),
    /// An item that is not a record of this account and user, and why.
    /// Never acted on, never written.
    Untrusted { reason: String },
}

impl Loaded {
    pub fn trusted(&self) -> Option<&UserRecord> {
        match self {
            Loaded::Trusted(r, _) => Some(r),
            _ => None,
        }
    }

    /// The record to update: the trusted one, or a new one when absent.
    /// `None` when the item is not keyfleet's.
    pub fn writable(&self, account_id: &str, user_name: &str) -> Option<UserRecord> {
        match self {
            Loaded::Absent => Some(UserRecord::new(account_id, user_name)),
            Loaded::Trusted(r, _) => Some(r.as_ref().clone()),
            Loaded::Untrusted { .. } => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("the record of {user} in table {table} is not keyfleet's ({reason}); keyfleet neither trusts nor overwrites it: delete the item", table = crate::table::TABLE_NAME)]
    Untrusted { user: String, reason: String },
    #[error("the record of {user} was changed by another run since it was read; not written")]
    Conflict { user: String },
}

/// Reads a user's record and decides whether it is keyfleet's.
pub async fn load(table: &Table, account_id: &str, user: &str) -> Result<Loaded, RecordError> {
    let Some((body, version)) = table.get(&item_key(user)).await? else {
        return Ok(Loaded::Absent);
    };
    let record: UserRecord = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(_) => {
            return Ok(Loaded::Untrusted {
                reason: "its content is not a keyfleet record".into(),
            })
        }
    };
    if record.account_id != account_id || record.user_name != user {
        return Ok(Loaded::Untrusted {
            reason: "it names another account or user".into(),
        });
    }
    if record
        .current
        .as_ref()
        .is_some_and(|c| c.secret_access_key.is_some())
    {
        return Ok(Loaded::Untrusted {
            reason: "it holds a secret access key, which keyfleet never puts in the table".into(),
        });
    }
    Ok(Loaded::Trusted(Box::new(record), version))
}

/// The record's item: its key and its body, never with a secret access
/// key.
pub(crate) fn item(record: &UserRecord) -> (String, String) {
    let mut stored = record.clone();
    if let Some(c) = &mut stored.current {
        c.secret_access_key = None;
    }
    let body = serde_json::to_string(&stored).expect("the record always serializes");
    (item_key(&record.user_name), body)
}

/// Writes the record over the version `found` read (a new item when it
/// found none); returns what is now stored. Never writes over an item that
/// is not keyfleet's, nor a secret access key.
pub async fn save(
    table: &Table,
    found: &Loaded,
    record: &UserRecord,
) -> Result<Loaded, RecordError> {
    let read = match found {
        Loaded::Untrusted { reason } => {
            return Err(RecordError::Untrusted {
                user: record.user_name.clone(),
                reason: reason.clone(),
            })
        }
        Loaded::Absent => None,
        Loaded::Trusted(_, v) => Some(*v),
    };
    let (pk, body) = item(record);
    let mut stored = record.clone();
    if let Some(c) = &mut stored.current {
        c.secret_access_key = None;
    }
    match table.put(&pk, &body, read).await? {
        Written::At(v) => Ok(Loaded::Trusted(Box::new(stored), v)),
        Written::Conflict => Err(RecordError::Conflict {
            user: record.user_name.clone(),
        }),
    }
}

#[cfg(test)]
mod tests;
