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
//! **Protection.** The secret's resource policy ([`resource_policy`]) lets
//! only the user itself and the agent role read it, and denies
//! `PutSecretValue`, `UpdateSecret`, `DeleteSecret`, `PutResourcePolicy` and
//! `DeleteResourcePolicy` to everyone but the agent role. A secret at that
//! name that keyfleet did not create is not trusted ([`Loaded::Untrusted`]):
//! its resource policy is not exactly keyfleet's, or its content is not a
//! record of this account and user. keyfleet then neither acts on it nor
//! writes into it, and creates no key for that user (it could not store
//! one); the report says why. The one exception is keyfleet's own record
//! left half made (`CreateSecret` succeeded, `PutResourcePolicy` did not):
//! a secret with keyfleet's description and user tag, a record of this
//! account and user, and no resource policy at all ([`Loaded::HalfMade`]).
//! Its content is not used; the next write replaces it and puts the
//! policy on, so the user is not locked out of keyfleet for ever.
//!
//! **Names.** Secrets Manager allows `[A-Za-z0-9/_+=.@-]` in names; IAM user
//! names also allow the comma. [`secret_name`] maps each comma to a slash
//! (`a,b` -> `keyfleet/a/b`): IAM user names never contain a slash, so the
//! mapping is collision-free and leaves every other name as it was.
//!
//! **When it is read.** Only for users it can matter to: an emergency
//! rotation, a user with an action due, two keys, an inactive key, or keys
//! the credential report did not show, and every user when the job is a
//! retry of a run (`crate::lease`, "Runs seen"). Otherwise a user with one
//! active key and nothing due costs no Secrets Manager call.

use aws_sdk_secretsmanager::Client as Sm;
use keyfleet_protocol::{Action, KeyState, KeyStatus, Notice, SealedCredential, Secret};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, PrimitiveDateTime};

pub use keyfleet_protocol::secret_name;

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

/// What was found at the user's secret name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// No secret yet.
    Absent,
    /// keyfleet's own record whose creation stopped half-way:
    /// `CreateSecret` succeeded, `PutResourcePolicy` did not (see
    /// [`load`]). What it says is not used: the write that created it
    /// failed, so nothing was done after it (no key created, none
    /// switched or deleted). Its next write replaces the content and
    /// completes it with keyfleet's policy.
    HalfMade,
    /// keyfleet's own record.
    Trusted(Box<UserRecord>),
    /// A secret keyfleet did not create (or no longer recognises as its
    /// own), and why. Never acted on, never written.
    Untrusted { reason: String },
}

impl Loaded {
    pub fn trusted(&self) -> Option<&UserRecord> {
        match self {
            Loaded::Trusted(r) => Some(r),
            _ => None,
        }
    }
    /// The record to update: the trusted one, or a new one when absent.
    /// `None` when the secret is not keyfleet's.
    pub fn writable(&self, account_id: &str, user_name: &str) -> Option<UserRecord> {
        match self {
            Loaded::Absent | Loaded::HalfMade => Some(UserRecord::new(account_id, user_name)),
            Loaded::Trusted(r) => Some(r.as_ref().clone()),
            Loaded::Untrusted { .. } => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("Secrets Manager {op} on {name} failed: {message}")]
    Sm {
        op: &'static str,
        name: String,
        message: String,
    },
    #[error("secret {name} was not created by keyfleet ({reason}); keyfleet neither trusts nor overwrites it: delete it, or rename the user's secret out of the way")]
    Untrusted { name: String, reason: String },
}

pub(crate) fn sm_message<E, R>(e: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> String
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
    match e.code() {
        Some(code) => format!("{code}: {}", e.message().unwrap_or("")),
        None => aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
    }
}

/// The description keyfleet gives every record it creates.
const RECORD_DESCRIPTION: &str = "Access key record managed by keyfleet";
/// The tag keyfleet puts on every record it creates: the user's name.
const USER_TAG: &str = "keyfleet:user";

/// The agent role's ARN pattern: the only principal that may write.
fn agent_role_pattern(account_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:role/keyfleet-agent*")
}

/// The resource policy keyfleet puts on every record: the user may read
/// its own secret; nobody but the agent role may read it otherwise, and
/// nobody but the agent role may change, delete or re-police it.
pub fn resource_policy(account_id: &str, user_arn: &str) -> serde_json::Value {
    let agent = agent_role_pattern(account_id);
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OwnerReads",
                "Effect": "Allow",
                "Principal": {"AWS": user_arn},
                "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                "Resource": "*"
            },
            {
                "Sid": "OnlyOwnerAndAgentRead",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": "*",
                "Condition": {"StringNotLike": {"aws:PrincipalArn": [user_arn, agent]}}
            },
            {
                "Sid": "OnlyAgentWrites",
                "Effect": "Deny",
                "Principal": "*",
                "Action": [
                    "secretsmanager:PutSecretValue",
                    "secretsmanager:UpdateSecret",
                    "secretsmanager:DeleteSecret",
                    "secretsmanager:PutResourcePolicy",
                    "secretsmanager:DeleteResourcePolicy"
                ],
                "Resource": "*",
                "Condition": {"StringNotLike": {"aws:PrincipalArn": agent}}
            }
        ]
    })
}

/// Reads a user's record and decides whether it is keyfleet's own.
pub async fn load(
    sm: &Sm,
    account_id: &str,
    user: &str,
    user_arn: &str,
) -> Result<Loaded, RecordError> {
    let name = secret_name(user);
    let body = match sm.get_secret_value().secret_id(&name).send().await {
        Ok(out) => out.secret_string().unwrap_or_default().to_string(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            return Ok(Loaded::Absent)
        }
        Err(e) => {
            return Err(RecordError::Sm {
                op: "GetSecretValue",
                message: sm_message(&e),
                name,
            })
        }
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
    let policy = sm
        .get_resource_policy()
        .secret_id(&name)
        .send()
        .await
        .map_err(|e| RecordError::Sm {
            op: "GetResourcePolicy",
            message: sm_message(&e),
            name: name.clone(),
        })?;
    let text = policy.resource_policy().filter(|p| !p.trim().is_empty());
    if text.is_none() {
        return half_made(sm, &name, user).await;
    }
    let found: Option<serde_json::Value> = text.and_then(|p| serde_json::from_str(p).ok());
    if found.as_ref() != Some(&resource_policy(account_id, user_arn)) {
        return Ok(Loaded::Untrusted {
            reason: "its resource policy is not keyfleet's".into(),
        });
    }
    Ok(Loaded::Trusted(Box::new(record)))
}

/// A secret with a record of this account and user but no resource policy
/// at all: keyfleet's own when it is as [`save`] creates it, keyfleet's
/// description and user tag, Secrets Manager's default encryption key and
/// no rotation, so that only the policy is missing. That is what a
/// `CreateSecret` that succeeded followed by a `PutResourcePolicy` that
/// failed (or was never made: the agent stopped) leaves behind, and
/// without this the user could never have a record again.
///
/// Its content is not trusted even then ([`Loaded::HalfMade`]): without
/// the policy anyone allowed by IAM could have written it, and it holds
/// nothing keyfleet needs (the write that created it failed, so nothing
/// was done after it). A secret with any other policy, another
/// description or tag, its own KMS key or a rotation stays untrusted.
async fn half_made(sm: &Sm, name: &str, user: &str) -> Result<Loaded, RecordError> {
    let out = sm
        .describe_secret()
        .secret_id(name)
        .send()
        .await
        .map_err(|e| RecordError::Sm {
            op: "DescribeSecret",
            message: sm_message(&e),
            name: name.to_string(),
        })?;
    let ours = out.description() == Some(RECORD_DESCRIPTION)
        && out
            .tags()
            .iter()
            .any(|t| t.key() == Some(USER_TAG) && t.value() == Some(user))
        && out.kms_key_id().is_none()
        && out.rotation_enabled() != Some(true);
    Ok(if ours {
        Loaded::HalfMade
    } else {
        Loaded::Untrusted {
            reason: "it has no resource policy and was not created by keyfleet".into(),
        }
    })
}

/// Writes the record: `PutSecretValue` when it exists, else `CreateSecret`
/// followed by keyfleet's resource policy; a half-made record
/// ([`Loaded::HalfMade`]) gets the new content first, then the policy.
/// Never writes over a secret that is not keyfleet's.
pub async fn save(
    sm: &Sm,
    user_arn: &str,
    found: &Loaded,
    record: &UserRecord,
) -> Result<(), RecordError> {
    let name = secret_name(&record.user_name);
    let body = serde_json::to_string(record).expect("the record always serializes");
    let put = |body: String| {
        let name = name.clone();
        async move {
            sm.put_secret_value()
                .secret_id(&name)
                .secret_string(body)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| RecordError::Sm {
                    op: "PutSecretValue",
                    message: sm_message(&e),
                    name,
                })
        }
    };
    match found {
        Loaded::Untrusted { reason } => {
            return Err(RecordError::Untrusted {
                name,
                reason: reason.clone(),
            })
        }
        Loaded::Trusted(_) => return put(body).await,
        // The content first: once the policy is on, the record is trusted
        // as it stands.
        Loaded::HalfMade => put(body).await?,
        Loaded::Absent => match sm
            .create_secret()
            .name(&name)
            .description(RECORD_DESCRIPTION)
            .secret_string(body)
            .tags(
                aws_sdk_secretsmanager::types::Tag::builder()
                    .key(USER_TAG)
                    .value(&record.user_name)
                    .build(),
            )
            .send()
            .await
        {
            Ok(_) => {}
            // Someone created the secret since it was read: not ours to write.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_exists_exception()) =>
            {
                return Err(RecordError::Untrusted {
                    name,
                    reason: "it appeared while keyfleet was creating it".into(),
                });
            }
            Err(e) => {
                return Err(RecordError::Sm {
                    op: "CreateSecret",
                    message: sm_message(&e),
                    name,
                })
            }
        },
    }
    sm.put_resource_policy()
        .secret_id(&name)
        .resource_policy(resource_policy(&record.account_id, user_arn).to_string())
        .send()
        .await
        .map_err(|e| RecordError::Sm {
            op: "PutResourcePolicy",
            message: sm_message(&e),
            name,
        })?;
    Ok(())
}

#[cfg(test)]
mod tests;
