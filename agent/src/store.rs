//! Secrets Manager `keyfleet/<user>`: the owner's copy of the key and the
//! agent's durable outbox.
//!
//! The secret always exists after a rotation, whatever the delivery: it
//! holds the current key id, the history of previous key ids and the copy
//! sealed to the coordinator (only the coordinator can open it). That sealed
//! copy is what makes a crash harmless: the new key is stored before
//! anything is revoked, and if the run dies before its result reaches the
//! coordinator, the next run finds the copy here and sends it again. The
//! plain secret access key is written only when the policy delivers by
//! Secrets Manager. A resource policy lets only the user itself (and the
//! keyfleet agent role, which wrote it) read the secret.

use aws_sdk_secretsmanager::Client as Sm;
use keyfleet_protocol::{SealedCredential, Secret};
use serde::{Deserialize, Serialize};

/// Name of a user's secret.
pub fn secret_name(user: &str) -> String {
    format!("keyfleet/{user}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentKey {
    pub access_key_id: String,
    pub created: String,
    /// Present only with Secrets Manager delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret>,
}

/// The JSON stored in `keyfleet/<user>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecret {
    pub v: u32,
    pub account_id: String,
    pub user_name: String,
    pub current: CurrentKey,
    /// Previous access key ids, newest first.
    #[serde(default)]
    pub history: Vec<String>,
    /// The current key sealed to the coordinator.
    #[serde(default)]
    pub sealed: Option<SealedCredential>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Secrets Manager {op} on {name} failed: {message}")]
    Sm {
        op: &'static str,
        name: String,
        message: String,
    },
    #[error("secret {0} does not hold keyfleet JSON")]
    Format(String),
}

fn sm_message<E, R>(e: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> String
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

/// Reads a user's secret; `None` when it does not exist.
pub async fn read(sm: &Sm, user: &str) -> Result<Option<StoredSecret>, StoreError> {
    let name = secret_name(user);
    match sm.get_secret_value().secret_id(&name).send().await {
        Ok(out) => {
            let s = out.secret_string().unwrap_or_default();
            serde_json::from_str(s)
                .map(Some)
                .map_err(|_| StoreError::Format(name))
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(StoreError::Sm {
            op: "GetSecretValue",
            message: sm_message(&e),
            name,
        }),
    }
}

/// The resource policy: the user may read its own secret; nobody else but
/// the keyfleet agent role may touch it.
pub fn resource_policy(account_id: &str, user_arn: &str) -> String {
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
                "Sid": "OnlyOwnerAndAgent",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": "*",
                "Condition": {"StringNotLike": {"aws:PrincipalArn": [
                    user_arn,
                    format!("arn:aws:iam::{account_id}:role/keyfleet-agent*"),
                ]}}
            }
        ]
    })
    .to_string()
}

/// Writes (creates or updates) the user's secret. `previous` is the secret
/// as read before, so its current key moves to the history.
pub async fn write(
    sm: &Sm,
    user_arn: &str,
    previous: Option<&StoredSecret>,
    secret: &StoredSecret,
) -> Result<(), StoreError> {
    let name = secret_name(&secret.user_name);
    let body = serde_json::to_string(secret).map_err(|_| StoreError::Format(name.clone()))?;
    if previous.is_some() {
        sm.put_secret_value()
            .secret_id(&name)
            .secret_string(body)
            .send()
            .await
            .map_err(|e| StoreError::Sm {
                op: "PutSecretValue",
                message: sm_message(&e),
                name: name.clone(),
            })?;
        return Ok(());
    }
    match sm
        .create_secret()
        .name(&name)
        .description("Access key managed by keyfleet")
        .secret_string(body.clone())
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("keyfleet:user")
                .value(&secret.user_name)
                .build(),
        )
        .send()
        .await
    {
        Ok(_) => {}
        // Created by an earlier, interrupted run whose read raced us: update.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_exists_exception()) =>
        {
            sm.put_secret_value()
                .secret_id(&name)
                .secret_string(body)
                .send()
                .await
                .map_err(|e| StoreError::Sm {
                    op: "PutSecretValue",
                    message: sm_message(&e),
                    name: name.clone(),
                })?;
        }
        Err(e) => {
            return Err(StoreError::Sm {
                op: "CreateSecret",
                message: sm_message(&e),
                name,
            })
        }
    }
    sm.put_resource_policy()
        .secret_id(&name)
        .resource_policy(resource_policy(&secret.account_id, user_arn))
        .send()
        .await
        .map_err(|e| StoreError::Sm {
            op: "PutResourcePolicy",
            message: sm_message(&e),
            name,
        })?;
    Ok(())
}
