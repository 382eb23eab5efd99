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
//! one); the report says why.
//!
//! **Names.** Secrets Manager allows `[A-Za-z0-9/_+=.@-]` in names; IAM user
//! names also allow the comma. [`secret_name`] maps each comma to a slash
//! (`a,b` -> `keyfleet/a/b`): IAM user names never contain a slash, so the
//! mapping is collision-free and leaves every other name as it was.
//!
//! **When it is read.** Only for users it can matter to: an emergency
//! rotation, a user with an action due, two keys, an inactive key, or keys
//! the credential report did not show. A user with one active key and
//! nothing due costs no Secrets Manager call.

use aws_sdk_secretsmanager::Client as Sm;
use keyfleet_protocol::{KeyState, SealedCredential, Secret};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use keyfleet_protocol::secret_name;

/// The newest key keyfleet created for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentKey {
    pub access_key_id: String,
    pub created: String,
    /// Present only with Secrets Manager delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret>,
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
        !self.before.contains(&key.id) && key.last_used.is_none() && key.created >= self.at - SKEW
    }
}

/// Something keyfleet did to a key and must remember: a deactivation (by
/// keyfleet) or a reactivation (by the security team).
///
/// `age_secs` is the key's age (by IAM's creation date) at that moment, so
/// the moment is `key.created + age_secs`: the same instant as `at` in AWS,
/// and still right under the emulator's clock, which ages keys but cannot
/// age a record's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEvent {
    pub key_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub age_secs: i64,
}

/// A key keyfleet deactivated.
pub type Deactivation = KeyEvent;
/// A key the security team switched back on (`JobMode::Reactivate`).
pub type Reactivation = KeyEvent;

/// Records `key` at `at` at the front of `events`, replacing its earlier
/// entry and keeping the newest [`MAX_DEACTIVATIONS`].
fn record_event(events: &mut Vec<KeyEvent>, key: &KeyState, at: OffsetDateTime) {
    events.retain(|d| d.key_id != key.id);
    events.insert(
        0,
        KeyEvent {
            key_id: key.id.clone(),
            at,
            age_secs: (at - key.created).whole_seconds().max(0),
        },
    );
    events.truncate(MAX_DEACTIVATIONS);
}

/// `(key id, when)` of the events of keys the user still has, for the rules.
fn events_of(events: &[KeyEvent], keys: &[KeyState]) -> Vec<(String, OffsetDateTime)> {
    events
        .iter()
        .filter_map(|d| {
            let key = keys.iter().find(|k| k.id == d.key_id)?;
            Some((
                d.key_id.clone(),
                key.created + time::Duration::seconds(d.age_secs),
            ))
        })
        .collect()
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
        }
    }

    /// Records the deactivation of `key` at `at`, keeping the newest
    /// entries.
    pub fn record_deactivation(&mut self, key: &KeyState, at: OffsetDateTime) {
        record_event(&mut self.deactivated, key, at);
    }

    /// Records that the security team reactivated `key` at `at`, keeping
    /// the newest entries.
    pub fn record_reactivation(&mut self, key: &KeyState, at: OffsetDateTime) {
        record_event(&mut self.reactivated, key, at);
    }

    /// `(key id, when)` of the reactivations of keys the user still has,
    /// for the rules.
    pub fn reactivations(&self, keys: &[KeyState]) -> Vec<(String, OffsetDateTime)> {
        events_of(&self.reactivated, keys)
    }

    /// `(key id, when)` of the deactivations of keys the user still has,
    /// for the rules.
    pub fn deactivations(&self, keys: &[KeyState]) -> Vec<(String, OffsetDateTime)> {
        events_of(&self.deactivated, keys)
    }
}

/// What was found at the user's secret name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// No secret yet.
    Absent,
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
            Loaded::Absent => Some(UserRecord::new(account_id, user_name)),
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
    let found: Option<serde_json::Value> = policy
        .resource_policy()
        .and_then(|p| serde_json::from_str(p).ok());
    if found.as_ref() != Some(&resource_policy(account_id, user_arn)) {
        return Ok(Loaded::Untrusted {
            reason: "its resource policy is not keyfleet's".into(),
        });
    }
    Ok(Loaded::Trusted(Box::new(record)))
}

/// Writes the record: `PutSecretValue` when it exists, else `CreateSecret`
/// followed by keyfleet's resource policy. Never writes over a secret that
/// is not keyfleet's.
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
        Loaded::Absent => {}
    }
    match sm
        .create_secret()
        .name(&name)
        .description("Access key record managed by keyfleet")
        .secret_string(body)
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("keyfleet:user")
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
mod tests {
    use super::*;

    #[test]
    fn every_iam_user_name_maps_to_a_valid_distinct_secret_name() {
        let sm_ok = |n: &str| {
            n.len() <= 512
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
        };
        let names = [
            "alice",
            "a,b",
            "a,,b",
            "a.b@c",
            "x+y=z",
            "_-",
            ",",
            &"w".repeat(64),
            &",".repeat(64),
        ];
        let mut seen = std::collections::HashSet::new();
        for n in names {
            assert!(keyfleet_protocol::is_user_name(n), "{n}");
            let s = secret_name(n);
            assert!(sm_ok(&s), "{n} -> {s}");
            assert!(seen.insert(s.clone()), "collision at {s}");
        }
        assert_eq!(secret_name("a,b"), "keyfleet/a/b");
        assert_eq!(secret_name("alice"), "keyfleet/alice");
    }

    #[test]
    fn resource_policy_lets_only_the_agent_write_and_only_owner_and_agent_read() {
        let p = resource_policy("111122223333", "arn:aws:iam::111122223333:user/bob");
        let st = p["Statement"].as_array().unwrap();
        let writes = st.iter().find(|s| s["Sid"] == "OnlyAgentWrites").unwrap();
        assert_eq!(writes["Effect"], "Deny");
        assert_eq!(writes["Principal"], "*");
        let actions: Vec<&str> = writes["Action"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        for a in [
            "secretsmanager:PutSecretValue",
            "secretsmanager:UpdateSecret",
            "secretsmanager:DeleteSecret",
            "secretsmanager:PutResourcePolicy",
            "secretsmanager:DeleteResourcePolicy",
        ] {
            assert!(actions.contains(&a), "{a} not denied to others");
        }
        assert_eq!(
            writes["Condition"]["StringNotLike"]["aws:PrincipalArn"],
            "arn:aws:iam::111122223333:role/keyfleet-agent*"
        );
        let reads = st
            .iter()
            .find(|s| s["Sid"] == "OnlyOwnerAndAgentRead")
            .unwrap();
        assert_eq!(reads["Effect"], "Deny");
        assert_eq!(reads["Action"], "secretsmanager:GetSecretValue");
        assert_eq!(
            reads["Condition"]["StringNotLike"]["aws:PrincipalArn"],
            serde_json::json!([
                "arn:aws:iam::111122223333:user/bob",
                "arn:aws:iam::111122223333:role/keyfleet-agent*"
            ])
        );
        // No statement allows anyone but the owner anything.
        for s in st.iter().filter(|s| s["Effect"] == "Allow") {
            assert_eq!(s["Principal"]["AWS"], "arn:aws:iam::111122223333:user/bob");
        }
    }

    #[test]
    fn version_one_records_without_intent_read_and_deactivations_stay_bounded() {
        let old = r#"{"v":1,"account_id":"111122223333","user_name":"bob","current":{"access_key_id":"AKIAOLD","created":"2026-01-01T00:00:00Z"},"history":[],"sealed":null}"#;
        let mut r: UserRecord = serde_json::from_str(old).unwrap();
        assert_eq!(r.intent, None);
        let key = |i: usize| KeyState {
            id: format!("AKIA{i}"),
            status: keyfleet_protocol::KeyStatus::Inactive,
            created: OffsetDateTime::UNIX_EPOCH,
            last_used: None,
            last_used_service: None,
            last_used_region: None,
        };
        for i in 0..20 {
            r.record_deactivation(
                &key(i),
                OffsetDateTime::UNIX_EPOCH + time::Duration::days(3),
            );
        }
        // The time is anchored to the key's creation (emulator clock).
        let mut aged = key(19);
        aged.created -= time::Duration::days(10);
        assert_eq!(
            r.deactivations(&[aged.clone()]),
            vec![("AKIA19".to_string(), aged.created + time::Duration::days(3))]
        );
        assert_eq!(r.deactivated.len(), MAX_DEACTIVATIONS);
        assert_eq!(r.deactivated[0].key_id, "AKIA19");
    }
}
