//! `keyfleet bootstrap`: in an emulator, create what Terraform creates in
//! production: the coordinator's resources in the provisioning account and
//! the agent template, rolled out to every member account by a
//! service-managed StackSet with auto-deployment (so accounts added later get
//! an agent too).
//!
//! The agent template is the very file Terraform deploys
//! (`terraform/templates/agent.yaml`), embedded at build time, so the demo
//! and the tests exercise the production template. The emulator does not
//! execute Lambda code (agents run in-process in local fleet mode), so the
//! code object the template points at is an empty zip.

use crate::config::Config;
use crate::fleet::s3_client;
use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_cloudformation::types::{
    AutoDeployment, Capability, DeploymentTargets, Parameter, PermissionModels,
};
use keyfleet_protocol::PrivateKey;

pub const AGENT_TEMPLATE: &str = include_str!("../../terraform/templates/agent.yaml");
pub const STACK_SET: &str = "keyfleet-agent";
/// An empty zip archive (end-of-central-directory record only).
const EMPTY_ZIP: [u8; 22] = [
    0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// What bootstrap created.
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    pub account_id: String,
    pub results_queue_url: String,
    pub key_id: String,
}

fn p(k: &str, v: &str) -> Parameter {
    Parameter::builder()
        .parameter_key(k)
        .parameter_value(v)
        .build()
}

/// Creates (idempotently) the coordinator's resources and the StackSet.
pub async fn bootstrap(cfg: &Config, sdk: &SdkConfig) -> Result<Bootstrapped> {
    let region = cfg.aws.region.as_str();
    let sts = aws_sdk_sts::Client::new(sdk);
    let account_id = sts
        .get_caller_identity()
        .send()
        .await
        .context("GetCallerIdentity")?
        .account()
        .unwrap_or_default()
        .to_string();

    // Report bucket and code bucket.
    let s3 = s3_client(cfg, sdk);
    let code_bucket = format!("keyfleet-code-{account_id}");
    for bucket in [&cfg.coordinator.report_bucket, &code_bucket] {
        if s3.head_bucket().bucket(bucket).send().await.is_err() {
            s3.create_bucket()
                .bucket(bucket)
                .send()
                .await
                .with_context(|| format!("creating bucket {bucket}"))?;
        }
    }
    s3.put_object()
        .bucket(&code_bucket)
        .key("keyfleet/agent.zip")
        .body(EMPTY_ZIP.to_vec().into())
        .send()
        .await
        .context("uploading the agent code object")?;

    // Results queue with its DLQ.
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{}-dlq", cfg.coordinator.results_queue))
        .send()
        .await
        .context("creating the results DLQ")?;
    let dlq_arn = format!(
        "arn:aws:sqs:{region}:{account_id}:{}-dlq",
        cfg.coordinator.results_queue
    );
    let _ = dlq;
    let results = sqs
        .create_queue()
        .queue_name(&cfg.coordinator.results_queue)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"5"}}"#),
        )
        .send()
        .await
        .context("creating the results queue")?;
    let results_queue_url = results.queue_url().unwrap_or_default().to_string();
    let results_arn = format!(
        "arn:aws:sqs:{region}:{account_id}:{}",
        cfg.coordinator.results_queue
    );

    // Alerts topic and SES identity.
    aws_sdk_sns::Client::new(sdk)
        .create_topic()
        .name(&cfg.coordinator.alerts_topic)
        .send()
        .await
        .context("creating the alerts topic")?;
    let ses = aws_sdk_sesv2::Client::new(sdk);
    if ses
        .get_email_identity()
        .email_identity(&cfg.mail.sender)
        .send()
        .await
        .is_err()
    {
        ses.create_email_identity()
            .email_identity(&cfg.mail.sender)
            .send()
            .await
            .context("creating the SES identity")?;
    }

    // Coordinator key pair: reuse the stored one, or create it.
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    let key = match sm
        .get_secret_value()
        .secret_id(&cfg.coordinator.private_key_secret)
        .send()
        .await
    {
        Ok(s) => PrivateKey::from_base64(s.secret_string().unwrap_or_default())
            .context("the stored coordinator key is not a key")?,
        Err(_) => {
            let key = PrivateKey::generate();
            sm.create_secret()
                .name(&cfg.coordinator.private_key_secret)
                .secret_string(key.to_base64().expose())
                .send()
                .await
                .context("storing the coordinator key")?;
            key
        }
    };
    let public = key.public_key();

    // The agent StackSet, targeting the organization root.
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
    if !exists {
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
            .parameters(p("CodeS3Bucket", &code_bucket))
            .parameters(p("CodeS3Key", "keyfleet/agent.zip"))
            .parameters(p(
                "CoordinatorRoleArn",
                &format!("arn:aws:iam::{account_id}:role/keyfleet-coordinator"),
            ))
            .parameters(p("ResultsQueueUrl", &results_queue_url))
            .parameters(p("ResultsQueueArn", &results_arn))
            .parameters(p("CoordinatorPublicKey", &public.to_base64()))
            .parameters(p("CoordinatorKeyId", &public.key_id))
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
            .regions(region)
            .send()
            .await
            .context("deploying the agent StackSet to the organization")?;
    }
    Ok(Bootstrapped {
        account_id,
        results_queue_url,
        key_id: public.key_id,
    })
}
