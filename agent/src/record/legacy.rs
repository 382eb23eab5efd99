//! The records of earlier releases: Secrets Manager `keyfleet/<user>`.
//!
//! Releases before the table ([`crate::table`]) kept each user's record
//! in a secret with a resource policy. An account upgraded in place still
//! holds them: the first run of this release moves every trusted one into
//! the table ([`crate::record::migrate`]) and deletes the secret (with
//! email delivery; with Secrets Manager delivery the secret stays, it is
//! the user's delivery secret). What this module decides about a secret
//! (trusted, half made, not keyfleet's) is what those releases decided.

use super::UserRecord;
use aws_sdk_secretsmanager::Client as Sm;

pub use keyfleet_protocol::secret_name;

/// What was found at the user's secret name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
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

#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
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
pub(crate) const RECORD_DESCRIPTION: &str = "Access key record managed by keyfleet";
/// The tag keyfleet puts on every record it creates: the user's name.
pub(crate) const USER_TAG: &str = "keyfleet:user";

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
) -> Result<Found, LegacyError> {
    let name = secret_name(user);
    let body = match sm.get_secret_value().secret_id(&name).send().await {
        Ok(out) => out.secret_string().unwrap_or_default().to_string(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            return Ok(Found::Absent)
        }
        Err(e) => {
            return Err(LegacyError::Sm {
                op: "GetSecretValue",
                message: sm_message(&e),
                name,
            })
        }
    };
    let record: UserRecord = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(_) => {
            return Ok(Found::Untrusted {
                reason: "its content is not a keyfleet record".into(),
            })
        }
    };
    if record.account_id != account_id || record.user_name != user {
        return Ok(Found::Untrusted {
            reason: "it names another account or user".into(),
        });
    }
    let policy = sm
        .get_resource_policy()
        .secret_id(&name)
        .send()
        .await
        .map_err(|e| LegacyError::Sm {
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
        return Ok(Found::Untrusted {
            reason: "its resource policy is not keyfleet's".into(),
        });
    }
    Ok(Found::Trusted(Box::new(record)))
}

/// A secret with a record of this account and user but no resource policy
/// at all: keyfleet's own when it is as [`save`] creates it, keyfleet's
/// description and user tag, Secrets Manager's default encryption key and
/// no rotation, so that only the policy is missing. That is what a
/// `CreateSecret` that succeeded followed by a `PutResourcePolicy` that
/// failed (or was never made: the agent stopped) leaves behind, and
/// without this the user could never have a record again.
///
/// Its content is not trusted even then ([`Found::HalfMade`]): without
/// the policy anyone allowed by IAM could have written it, and it holds
/// nothing keyfleet needs (the write that created it failed, so nothing
/// was done after it). A secret with any other policy, another
/// description or tag, its own KMS key or a rotation stays untrusted.
async fn half_made(sm: &Sm, name: &str, user: &str) -> Result<Found, LegacyError> {
    let out = sm
        .describe_secret()
        .secret_id(name)
        .send()
        .await
        .map_err(|e| LegacyError::Sm {
            op: "DescribeSecret",
            message: sm_message(&e),
            name: name.to_string(),
        })?;
    Ok(if made_by_keyfleet(&out, user) {
        Found::HalfMade
    } else {
        Found::Untrusted {
            reason: "it has no resource policy and was not created by keyfleet".into(),
        }
    })
}

/// Whether a secret without a policy is one keyfleet created for `user`
/// and whose policy never went on: keyfleet's description and user tag,
/// Secrets Manager's default key, no rotation.
pub(crate) fn made_by_keyfleet(
    out: &aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput,
    user: &str,
) -> bool {
    out.description() == Some(RECORD_DESCRIPTION)
        && out
            .tags()
            .iter()
            .any(|t| t.key() == Some(USER_TAG) && t.value() == Some(user))
        && out.kms_key_id().is_none()
        && out.rotation_enabled() != Some(true)
}

/// Deletes a secret at once (no recovery window); one already gone is
/// fine. The error is Secrets Manager's message.
pub(crate) async fn delete(sm: &Sm, name: &str) -> Result<(), String> {
    match sm
        .delete_secret()
        .secret_id(name)
        .force_delete_without_recovery(true)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(sm_message(&e)),
    }
}

/// Writes the record: `PutSecretValue` when it exists, else `CreateSecret`
/// followed by keyfleet's resource policy; a half-made record
/// ([`Found::HalfMade`]) gets the new content first, then the policy.
/// Never writes over a secret that is not keyfleet's.
pub async fn save(
    sm: &Sm,
    user_arn: &str,
    found: &Found,
    record: &UserRecord,
) -> Result<(), LegacyError> {
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
                .map_err(|e| LegacyError::Sm {
                    op: "PutSecretValue",
                    message: sm_message(&e),
                    name,
                })
        }
    };
    match found {
        Found::Untrusted { reason } => {
            return Err(LegacyError::Untrusted {
                name,
                reason: reason.clone(),
            })
        }
        Found::Trusted(_) => return put(body).await,
        // The content first: once the policy is on, the record is trusted
        // as it stands.
        Found::HalfMade => put(body).await?,
        Found::Absent => match sm
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
                return Err(LegacyError::Untrusted {
                    name,
                    reason: "it appeared while keyfleet was creating it".into(),
                });
            }
            Err(e) => {
                return Err(LegacyError::Sm {
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
        .map_err(|e| LegacyError::Sm {
            op: "PutResourcePolicy",
            message: sm_message(&e),
            name,
        })?;
    Ok(())
}
