//! The delivery secret: Secrets Manager `keyfleet/<user>`, with Secrets
//! Manager delivery (or both), holding the user's current key for the
//! user to read.
//!
//! **Shape.** AWS's conventional flat object, as the AWS sample writes it,
//! so that the tools that read such secrets (External Secrets Operator, CI
//! secret stores) read it as it is: `{"AccessKeyId", "SecretAccessKey",
//! "UserName", "CreateDate"}`. Each rotation puts a new version; Secrets
//! Manager keeps the previous one under `AWSPREVIOUS`.
//!
//! **Protection.** The secret's resource policy
//! ([`crate::record::legacy::resource_policy`], unchanged from the
//! releases that kept the record there) lets only the user and the agent
//! role read it, and nobody but the agent role change, delete or re-police
//! it. A secret at that name with another policy is not keyfleet's: the
//! key is not put there (and so not created: see the executor), and the
//! report says why. A secret keyfleet created whose policy never went on
//! (the agent stopped between the two calls) is completed by the next
//! write, as the record's secret was.
//!
//! Only keys are here: what keyfleet remembers about the user is in the
//! table ([`crate::record`]). Cost: $0.40 a month per user who asks for
//! it (Secrets Manager's price per secret), plus two to four calls per
//! rotated key.

use crate::record::legacy::{
    made_by_keyfleet, resource_policy, secret_name, sm_message, RECORD_DESCRIPTION, USER_TAG,
};
use aws_sdk_secretsmanager::Client as Sm;
use keyfleet_protocol::Credential;
use time::format_description::well_known::Rfc3339;

/// The secret's value for `cred`.
pub fn value(cred: &Credential) -> String {
    serde_json::json!({
        "AccessKeyId": cred.access_key_id,
        "SecretAccessKey": cred.secret_access_key.expose(),
        "UserName": cred.user_name,
        "CreateDate": cred.created.format(&Rfc3339).unwrap_or_default(),
    })
    .to_string()
}

/// What is at the user's delivery secret name.
enum State {
    Absent,
    /// keyfleet's, its policy on.
    Ours,
    /// keyfleet's, created without its policy yet (the agent stopped
    /// between the two calls).
    HalfMade,
    /// Not keyfleet's, and why.
    Foreign(String),
}

async fn state(sm: &Sm, account_id: &str, user_arn: &str, user: &str) -> Result<State, String> {
    let name = secret_name(user);
    let policy = match sm.get_resource_policy().secret_id(&name).send().await {
        Ok(out) => out.resource_policy().unwrap_or_default().to_string(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            return Ok(State::Absent)
        }
        Err(e) => return Err(format!("GetResourcePolicy {name}: {}", sm_message(&e))),
    };
    if !policy.trim().is_empty() {
        let found: Option<serde_json::Value> = serde_json::from_str(&policy).ok();
        return Ok(if found == Some(resource_policy(account_id, user_arn)) {
            State::Ours
        } else {
            State::Foreign("its resource policy is not keyfleet's".into())
        });
    }
    let out = sm
        .describe_secret()
        .secret_id(&name)
        .send()
        .await
        .map_err(|e| format!("DescribeSecret {name}: {}", sm_message(&e)))?;
    Ok(if made_by_keyfleet(&out, user) {
        State::HalfMade
    } else {
        State::Foreign("it has no resource policy and was not created by keyfleet".into())
    })
}

/// Whether a new key of `user` could be put in its delivery secret: the
/// reason it could not (a secret at that name that is not keyfleet's),
/// checked before any key is created.
pub async fn check(sm: &Sm, account_id: &str, user_arn: &str, user: &str) -> Result<(), String> {
    match state(sm, account_id, user_arn, user).await? {
        State::Foreign(reason) => Err(format!(
            "secret {} was not created by keyfleet ({reason})",
            secret_name(user)
        )),
        _ => Ok(()),
    }
}

/// Puts `cred` in the user's delivery secret (see the module
/// documentation). The error names the step and never holds the key.
pub async fn store(sm: &Sm, user_arn: &str, cred: &Credential) -> Result<(), String> {
    let name = secret_name(&cred.user_name);
    let put = || async {
        sm.put_secret_value()
            .secret_id(&name)
            .secret_string(value(cred))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("PutSecretValue {name}: {}", sm_message(&e)))
    };
    match state(sm, &cred.account_id, user_arn, &cred.user_name).await? {
        State::Foreign(reason) => {
            return Err(format!(
                "secret {name} was not created by keyfleet ({reason}): delete it, or rename it out of the way"
            ))
        }
        State::Ours => return put().await,
        State::HalfMade => put().await?,
        State::Absent => {
            sm.create_secret()
                .name(&name)
                .description(RECORD_DESCRIPTION)
                .secret_string(value(cred))
                .tags(
                    aws_sdk_secretsmanager::types::Tag::builder()
                        .key(USER_TAG)
                        .value(&cred.user_name)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| format!("CreateSecret {name}: {}", sm_message(&e)))?;
        }
    }
    sm.put_resource_policy()
        .secret_id(&name)
        .resource_policy(resource_policy(&cred.account_id, user_arn).to_string())
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("PutResourcePolicy {name}: {}", sm_message(&e)))
}
