//! AWS plumbing of the command line: the SDK configuration for the
//! operator's account, role assumption, and errors that name their first
//! cause a person can act on (no credentials, a missing deployment) rather
//! than the last one in the chain.

use crate::config::Config;
use anyhow::{anyhow, Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use keyfleet_protocol::aws_error::describe;

/// The SDK configuration for the provisioning account.
pub async fn sdk_config(cfg: &Config) -> SdkConfig {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(cfg.aws.region.clone()));
    if let Some(url) = &cfg.aws.endpoint_url {
        loader = loader.endpoint_url(url);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            // Emulators accept any credentials; the emulator maps these to
            // its default (management/provisioning) account.
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "keyfleet-emulator",
            ));
        }
    }
    loader.load().await
}

/// Fails, naming the cause, when no credentials can be found: every later
/// error would otherwise bury it ("queue not found", "dispatch failure").
pub async fn require_credentials(sdk: &SdkConfig) -> Result<()> {
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| anyhow!("no AWS credentials provider is configured"))?;
    provider.provide_credentials().await.map_err(|e| {
        // What to do is the command line's to say (see `errors`).
        anyhow!(
            "no AWS credentials found ({})",
            keyfleet_protocol::aws_error::causes(&e)
        )
    })?;
    Ok(())
}

/// S3 needs path-style addressing against an emulator endpoint.
pub fn s3_client(cfg: &Config, sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(cfg.aws.endpoint_url.is_some())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Credentials for `account` through `role` (a role name, or an ARN).
pub async fn assume(sdk: &SdkConfig, account: &str, role: &str) -> Result<SdkConfig> {
    assume_with(sdk, account, role, None).await
}

/// [`assume`], presenting `external_id` when the role's trust requires one.
pub async fn assume_with(
    sdk: &SdkConfig,
    account: &str,
    role: &str,
    external_id: Option<&str>,
) -> Result<SdkConfig> {
    let arn = if role.starts_with("arn:") {
        role.to_string()
    } else {
        format!("arn:aws:iam::{account}:role/{role}")
    };
    let sts = aws_sdk_sts::Client::new(sdk);
    let out = sts
        .assume_role()
        .role_arn(&arn)
        .role_session_name("keyfleet-local")
        .set_external_id(external_id.map(str::to_string))
        .send()
        .await
        .map_err(|e| anyhow!("assuming {arn}: {}", describe(&e)))?;
    let c = out
        .credentials
        .ok_or_else(|| anyhow!("AssumeRole {arn} returned no credentials"))?;
    Ok(sdk
        .to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    c.access_key_id,
                    c.secret_access_key,
                    Some(c.session_token),
                    None,
                    "keyfleet-assumed",
                ),
            ),
        )
        .build())
}

/// The account the operator's credentials belong to.
pub async fn account_id(sdk: &SdkConfig) -> Result<String> {
    let me = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| anyhow!("GetCallerIdentity: {}", describe(&e)))?;
    me.account()
        .map(str::to_string)
        .context("GetCallerIdentity returned no account")
}
