//! `keyfleet bootstrap`: deploys keyfleet into an emulator the way
//! Terraform deploys it into AWS, so the demo and the end-to-end tests run
//! the deployed system:
//!
//! - [`coordinator`]: in the provisioning account, the report bucket, the
//!   results queue (and its DLQ), the alerts topic, the SES identity and
//!   configuration set, the coordinator's key pair, the `keyfleet-org-reader`
//!   role, and the coordinator Lambda with its role (the Terraform module's
//!   policy template, rendered), its results event source mapping and its
//!   two schedules (`keyfleet-start`, `keyfleet-sweep`);
//! - [`agents`]: the agent template (the very file Terraform deploys,
//!   `terraform/templates/agent.yaml`), rolled out to every member account
//!   by a service-managed StackSet with auto-deployment;
//! - [`api`]: the security team's API role (`keyfleet-api`, the
//!   `terraform/modules/api` policy template, rendered) and its API-key
//!   hashes secret, so `keyfleet serve --role-arn` runs under exactly the
//!   production permissions (the API Lambda and API Gateway themselves are
//!   not deployed: `serve` is the same router);
//! - [`code`]: the functions' code. On the emulator the `keyfleet` binary
//!   itself is the bootstrap of both functions (`keyfleet lambda agent|
//!   coordinator`, through a one-line `bootstrap` script in each zip), so
//!   nothing else needs building; AWS gets the separate small binaries of
//!   `scripts/package-lambdas.sh`.
//!
//! Running it again is harmless: the coordinator's resources are created
//! when missing and its function, role and policies updated; an existing
//! StackSet is left as it is.

mod agents;
mod api;
mod code;
mod coordinator;

pub use coordinator::START_RULE;

use crate::aws;
use crate::config::Config;
use anyhow::{bail, Context, Result};
use aws_config::SdkConfig;

/// What bootstrap deployed.
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    pub account_id: String,
    pub results_queue_url: String,
    pub key_id: String,
    pub function: String,
    /// The security team's API role (`keyfleet serve --role-arn`).
    pub api_role_arn: String,
}

/// `keyfleet bootstrap`.
pub async fn run(cfg: &Config, config_path: &std::path::Path) -> Result<()> {
    if cfg.aws.endpoint_url.is_none() {
        bail!("bootstrap targets an emulator (--endpoint-url); deploy to AWS with Terraform (see terraform/README.md)");
    }
    let sdk = aws::sdk_config(cfg).await;
    let b = bootstrap(cfg, config_path, &sdk).await?;
    println!("coordinator account {}", b.account_id);
    println!("coordinator         {}", b.function);
    println!("results queue       {}", b.results_queue_url);
    println!("coordinator key id  {}", b.key_id);
    println!("API role            {}", b.api_role_arn);
    Ok(())
}

/// Deploys (or updates) the coordinator and the agent StackSet.
pub async fn bootstrap(
    cfg: &Config,
    config_path: &std::path::Path,
    sdk: &SdkConfig,
) -> Result<Bootstrapped> {
    let account_id = aws::account_id(sdk).await?;
    let org = aws_sdk_organizations::Client::new(sdk);
    let organization = org
        .describe_organization()
        .send()
        .await
        .context("DescribeOrganization (is there an organization?)")?
        .organization
        .context("DescribeOrganization returned no organization")?;
    let code = code::upload(cfg, sdk, &account_id).await?;
    let central =
        coordinator::deploy(cfg, config_path, sdk, &account_id, &organization, &code).await?;
    agents::deploy(cfg, sdk, &code, &central).await?;
    let api_role_arn = api::deploy(cfg, sdk, &account_id, &central.function_arn).await?;
    Ok(Bootstrapped {
        api_role_arn,
        account_id,
        results_queue_url: central.results_queue_url,
        key_id: central.public_key.key_id,
        function: central.function_arn,
    })
}
