//! The security team's API in the emulator: what `terraform/modules/api`
//! grants its role, and the secret of API-key hashes it reads. The role's
//! policy is the module's template rendered with the emulator's ARNs, so
//! `keyfleet serve --role-arn <this role>` makes exactly the calls the API
//! Lambda makes in AWS, under exactly its permissions (the emulator
//! enforces them for `keyfleet-api*` sessions). Differences: no KMS keys
//! (the policy still names key ARNs), no API Gateway, no Lambda function.

use super::coordinator::{role, LAMBDA_TRUST};
use crate::config::Config;
use crate::policy_template::{self, Value};
use anyhow::{anyhow, Result};
use aws_config::SdkConfig;
use std::collections::BTreeMap;

/// The role's name, as the Terraform module names it.
pub const API_ROLE: &str = "keyfleet-api";
/// The secret holding the API keys' hashes, as the module names it.
pub const API_KEYS_SECRET: &str = "keyfleet-api/api-keys";

/// Creates (or updates) the API role and the API-key hashes secret;
/// returns the role's ARN.
pub async fn deploy(
    cfg: &Config,
    sdk: &SdkConfig,
    account: &str,
    coordinator_function_arn: &str,
) -> Result<String> {
    let region = cfg.aws.region.as_str();
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    let secret_arn = match sm.describe_secret().secret_id(API_KEYS_SECRET).send().await {
        Ok(d) => d.arn.unwrap_or_default(),
        Err(_) => sm
            .create_secret()
            .name(API_KEYS_SECRET)
            .description("keyfleet API keys: SHA-256 hashes and scopes only, never a key")
            .secret_string("[]")
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "CreateSecret {API_KEYS_SECRET}: {}",
                    keyfleet_protocol::aws_error::describe(&e)
                )
            })?
            .arn
            .unwrap_or_default(),
    };
    let key = |name: &str| format!("arn:aws:kms:{region}:{account}:key/{name}");
    let policy = policy_template::render(
        policy_template::API,
        &BTreeMap::from([
            (
                "report_bucket_arn",
                Value::Str(format!("arn:aws:s3:::{}", cfg.coordinator.report_bucket)),
            ),
            (
                "report_kms_key_arn",
                Value::Str(key("00000000-0000-0000-0000-000000000000")),
            ),
            (
                "coordinator_function_arn",
                Value::Str(coordinator_function_arn.to_string()),
            ),
            ("api_keys_secret_arn", Value::Str(secret_arn)),
            (
                "api_kms_key_arn",
                Value::Str(key("00000000-0000-0000-0000-000000000001")),
            ),
            (
                "log_group_arn",
                Value::Str(format!(
                    "arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{API_ROLE}"
                )),
            ),
        ]),
    )?;
    let iam = aws_sdk_iam::Client::new(sdk);
    role(&iam, API_ROLE, LAMBDA_TRUST, &policy).await
}
