//! The agents' side of the emulator deployment: the agent template
//! (`terraform/templates/agent.yaml`, embedded at build time, the very file
//! Terraform deploys) rolled out to the whole organization by a
//! service-managed StackSet with auto-deployment, so accounts added later
//! get an agent too.

use super::code::Code;
use super::coordinator::Central;
use crate::config::Config;
use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_cloudformation::types::{
    AutoDeployment, Capability, DeploymentTargets, Parameter, PermissionModels,
};

pub const AGENT_TEMPLATE: &str = include_str!("../../../terraform/templates/agent.yaml");
pub const STACK_SET: &str = "keyfleet-agent";

fn p(k: &str, v: &str) -> Parameter {
    Parameter::builder()
        .parameter_key(k)
        .parameter_value(v)
        .build()
}

/// Creates the StackSet and deploys it to the organization's root, once:
/// a StackSet that exists is left as it is (its parameters, the
/// coordinator's public key among them, are not updated).
pub async fn deploy(cfg: &Config, sdk: &SdkConfig, code: &Code, central: &Central) -> Result<()> {
    let org = aws_sdk_organizations::Client::new(sdk);
    let root = org
        .list_roots()
        .send()
        .await
        .context("ListRoots (is there an organization?)")?
        .roots()
        .first()
        .and_then(|r| r.id().map(str::to_string))
        .context("the organization has no root")?;
    let cfn = aws_sdk_cloudformation::Client::new(sdk);
    let exists = cfn
        .describe_stack_set()
        .stack_set_name(STACK_SET)
        .send()
        .await
        .is_ok();
    if exists {
        return Ok(());
    }
    cfn.create_stack_set()
        .stack_set_name(STACK_SET)
        .template_body(AGENT_TEMPLATE)
        .permission_model(PermissionModels::ServiceManaged)
        .auto_deployment(
            AutoDeployment::builder()
                .enabled(true)
                .retain_stacks_on_account_removal(false)
                .build(),
        )
        .capabilities(Capability::CapabilityNamedIam)
        .parameters(p("CodeS3Bucket", &code.bucket))
        .parameters(p("CodeS3Key", &code.agent_key))
        .parameters(p("CoordinatorRoleArn", &central.role_arn))
        .parameters(p("ResultsQueueUrl", &central.results_queue_url))
        .parameters(p("ResultsQueueArn", &central.results_queue_arn))
        .parameters(p("CoordinatorPublicKey", &central.public_key.to_base64()))
        .parameters(p("CoordinatorKeyId", &central.public_key.key_id))
        .send()
        .await
        .context("creating the agent StackSet")?;
    cfn.create_stack_instances()
        .stack_set_name(STACK_SET)
        .deployment_targets(
            DeploymentTargets::builder()
                .organizational_unit_ids(&root)
                .build(),
        )
        .regions(&cfg.aws.region)
        .send()
        .await
        .context("deploying the agent StackSet to the organization")?;
    Ok(())
}
