//! The coordinator's side of the emulator deployment: what
//! `terraform/modules/coordinator` and `terraform/modules/org-reader`
//! create, with the same names, settings and permissions (the modules'
//! policy templates, rendered by [`crate::policy_template`]). Differences:
//! no KMS customer key (the emulator encrypts nothing; the policy still
//! names a key ARN) and no CloudWatch alarms.

use super::code::Code;
use crate::aws;
use crate::config::Config;
use crate::policy_template::{self, Value};
use anyhow::{anyhow, Context, Result};
use aws_config::SdkConfig;
use aws_sdk_lambda::types::{
    DeadLetterConfig, Environment, FunctionCode, FunctionResponseType, Runtime, ScalingConfig,
};
use aws_sdk_sqs::types::QueueAttributeName;
use keyfleet_protocol::aws_error::describe;
use keyfleet_protocol::{KeyRing, PrivateKey, PublicKey};
use std::collections::BTreeMap;

/// The Terraform module's defaults.
const TIMEOUT_S: i32 = 300;
const MEMORY_MB: i32 = 512;
const RESULTS_MAX_CONCURRENCY: i32 = 5;
/// The coordinator module's `reserved_concurrency` default.
const RESERVED_CONCURRENCY: i32 = 10;
const START_SCHEDULE: &str = "cron(0 13 * * ? *)";
const SWEEP_SCHEDULE: &str = "rate(1 hour)";
pub const START_RULE: &str = "keyfleet-start";
pub const SWEEP_RULE: &str = "keyfleet-sweep";
const ORG_READER_ROLE: &str = "keyfleet-org-reader";
/// The coordinator's role, named as the Terraform module names it (the
/// agents' jobs queues and the org reader's trust refer to it).
const COORDINATOR_ROLE: &str = "keyfleet-coordinator";

/// What the agents need to know about the coordinator.
pub struct Central {
    pub results_queue_url: String,
    pub results_queue_arn: String,
    pub role_arn: String,
    pub function_arn: String,
    pub public_key: PublicKey,
}

pub(super) const LAMBDA_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// The org reader's trust, as the org-reader module writes it: the
/// coordinator's account narrowed to its role by `aws:PrincipalArn`, and
/// `sts:ExternalId` when one is configured.
pub(super) fn org_reader_trust(
    account: &str,
    coordinator_role_arn: &str,
    external_id: Option<&str>,
) -> serde_json::Value {
    let mut condition =
        serde_json::json!({"ArnEquals": {"aws:PrincipalArn": coordinator_role_arn}});
    if let Some(id) = external_id {
        condition["StringEquals"] = serde_json::json!({ "sts:ExternalId": id });
    }
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "CoordinatorOnly", "Effect": "Allow",
                       "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
                       "Action": "sts:AssumeRole",
                       "Condition": condition}]
    })
}

/// A role with one inline policy, created or updated.
pub(super) async fn role(
    iam: &aws_sdk_iam::Client,
    name: &str,
    trust: &str,
    policy: &serde_json::Value,
) -> Result<String> {
    let arn = match iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust)
        .send()
        .await
    {
        Ok(out) => out.role.map(|r| r.arn).unwrap_or_default(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_entity_already_exists_exception()) =>
        {
            iam.update_assume_role_policy()
                .role_name(name)
                .policy_document(trust)
                .send()
                .await
                .map_err(|e| anyhow!("UpdateAssumeRolePolicy {name}: {}", describe(&e)))?;
            iam.get_role()
                .role_name(name)
                .send()
                .await
                .with_context(|| format!("GetRole {name}"))?
                .role
                .map(|r| r.arn)
                .unwrap_or_default()
        }
        Err(e) => return Err(anyhow!("CreateRole {name}: {}", describe(&e))),
    };
    iam.put_role_policy()
        .role_name(name)
        .policy_name(name)
        .policy_document(policy.to_string())
        .send()
        .await
        .map_err(|e| anyhow!("PutRolePolicy {name}: {}", describe(&e)))?;
    Ok(arn)
}

/// A queue (created if missing) and its ARN.
async fn queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
    region: &str,
    account: &str,
) -> Result<(String, String)> {
    let mut req = sqs.create_queue().queue_name(name);
    for (k, v) in attributes {
        req = req.attributes(k.clone(), v);
    }
    let url = req
        .send()
        .await
        .map_err(|e| anyhow!("creating queue {name}: {}", describe(&e)))?
        .queue_url
        .unwrap_or_default();
    Ok((url, format!("arn:aws:sqs:{region}:{account}:{name}")))
}

/// The public key agents seal to (the stored ring's newest, or a new key
/// in a new ring) and the ring's secret ARN.
async fn key_pair(cfg: &Config, sdk: &SdkConfig) -> Result<(PublicKey, String)> {
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    let name = &cfg.coordinator.private_key_secret;
    match sm.get_secret_value().secret_id(name).send().await {
        Ok(s) => Ok((
            KeyRing::parse(s.secret_string().unwrap_or_default())
                .context("the stored coordinator key ring")?
                .current()
                .public_key(),
            s.arn.unwrap_or_default(),
        )),
        Err(e)
            if !e
                .as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Err(anyhow!(
                "reading the coordinator key {name}: {}",
                describe(&e)
            ))
        }
        Err(_) => {
            let key = PrivateKey::generate();
            let out = sm
                .create_secret()
                .name(name)
                .secret_string(key.to_base64().expose())
                .send()
                .await
                .context("storing the coordinator key")?;
            Ok((key.public_key(), out.arn.unwrap_or_default()))
        }
    }
}

/// Deploys the coordinator (see the module doc).
pub async fn deploy(
    cfg: &Config,
    config_path: &std::path::Path,
    sdk: &SdkConfig,
    account: &str,
    organization: &aws_sdk_organizations::types::Organization,
    code: &Code,
) -> Result<Central> {
    let region = cfg.aws.region.as_str();
    let c = &cfg.coordinator;
    let function = c
        .function
        .rsplit(':')
        .next()
        .unwrap_or(&c.function)
        .to_string();

    // Report bucket.
    let s3 = aws::s3_client(cfg, sdk);
    if s3
        .head_bucket()
        .bucket(&c.report_bucket)
        .send()
        .await
        .is_err()
    {
        s3.create_bucket()
            .bucket(&c.report_bucket)
            .send()
            .await
            .with_context(|| format!("creating bucket {}", c.report_bucket))?;
    }
    // As the module sets it: encrypted at rest (SSE-S3 here; the module's
    // KMS key in AWS), reachable over TLS only, no public access.
    report_bucket_settings(&s3, &c.report_bucket).await?;

    // Queues: results (+DLQ, redrive after 3 receives, visibility 6 x the
    // function timeout) and the dead letters of asynchronous invocations.
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dlq_name = format!("{}-dlq", c.results_queue);
    let (_, dlq_arn) = queue(&sqs, &dlq_name, &[], region, account).await?;
    let (results_queue_url, results_queue_arn) = queue(
        &sqs,
        &c.results_queue,
        &[
            (
                QueueAttributeName::RedrivePolicy,
                format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"3"}}"#),
            ),
            (
                QueueAttributeName::VisibilityTimeout,
                (6 * TIMEOUT_S).to_string(),
            ),
        ],
        region,
        account,
    )
    .await?;
    let (_, invoke_dlq_arn) = queue(&sqs, &format!("{function}-dlq"), &[], region, account).await?;
    // The module's queue policy: only keyfleet-agent* roles of the
    // organization may send results (the emulator's policy engine enforces
    // it, across accounts as AWS does).
    let org_id = organization.id().unwrap_or_default();
    let results_policy = policy_template::render(
        policy_template::RESULTS_QUEUE,
        &BTreeMap::from([
            ("partition", Value::Str("aws".into())),
            ("queue_arn", Value::Str(results_queue_arn.clone())),
            ("organization_id", Value::Str(org_id.to_string())),
        ]),
    )?;
    sqs.set_queue_attributes()
        .queue_url(&results_queue_url)
        .attributes(QueueAttributeName::Policy, results_policy.to_string())
        .send()
        .await
        .context("setting the results queue's policy")?;

    // Alerts topic, SES identity and configuration set, key pair.
    let topic_arn = aws_sdk_sns::Client::new(sdk)
        .create_topic()
        .name(&c.alerts_topic)
        .send()
        .await
        .context("creating the alerts topic")?
        .topic_arn
        .unwrap_or_default();
    // The security team hears of failed runs (the module's
    // `alert_subscriptions`).
    let sns = aws_sdk_sns::Client::new(sdk);
    for address in &cfg.mail.security_team {
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("email")
            .endpoint(address)
            .send()
            .await
            .context("subscribing the security team to the alerts topic")?;
    }
    let ses = aws_sdk_sesv2::Client::new(sdk);
    let sender = &cfg.mail.sender;
    if ses
        .get_email_identity()
        .email_identity(sender)
        .send()
        .await
        .is_err()
    {
        ses.create_email_identity()
            .email_identity(sender)
            .send()
            .await
            .context("creating the SES identity")?;
    }
    let config_set = cfg
        .mail
        .configuration_set
        .clone()
        .unwrap_or_else(|| "keyfleet".into());
    if let Err(e) = ses
        .create_configuration_set()
        .configuration_set_name(&config_set)
        .send()
        .await
    {
        if !e
            .as_service_error()
            .is_some_and(|s| s.is_already_exists_exception())
        {
            return Err(anyhow!(
                "creating the SES configuration set {config_set}: {}",
                describe(&e)
            ));
        }
    }
    let (key, key_secret_arn) = key_pair(cfg, sdk).await?;

    // The org reader role (the org-reader module, in the management
    // account), which the coordinator assumes to list the organization.
    let iam = aws_sdk_iam::Client::new(sdk);
    let management = organization.master_account_id().unwrap_or(account);
    let prefix = format!("arn:aws:organizations::{management}");
    let reader_policy = policy_template::render(
        policy_template::ORG_READER,
        &BTreeMap::from([
            ("ou_arns", Value::Str(format!("{prefix}:ou/{org_id}/*"))),
            ("root_arns", Value::Str(format!("{prefix}:root/{org_id}/*"))),
        ]),
    )?;
    let role_arn = format!("arn:aws:iam::{account}:role/{COORDINATOR_ROLE}");
    let reader_trust = org_reader_trust(
        account,
        &role_arn,
        cfg.org.org_reader_external_id.as_deref(),
    );
    let reader_arn = role(
        &iam,
        ORG_READER_ROLE,
        &reader_trust.to_string(),
        &reader_policy,
    )
    .await?;

    // The coordinator's role: the module's policy template.
    let log_group_arn = format!("arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{function}");
    let ses_arn = |what: &str| format!("arn:aws:ses:{region}:{account}:{what}");
    let policy = policy_template::render(
        policy_template::COORDINATOR,
        &BTreeMap::from([
            ("org_reader_role_arn", Value::Str(reader_arn.clone())),
            (
                "jobs_queue_arns",
                Value::Str(format!("arn:aws:sqs:{region}:*:keyfleet-jobs")),
            ),
            ("organization_id", Value::Str(org_id.to_string())),
            ("results_queue_arn", Value::Str(results_queue_arn.clone())),
            ("invoke_dlq_arn", Value::Str(invoke_dlq_arn.clone())),
            (
                "report_bucket_arn",
                Value::Str(format!("arn:aws:s3:::{}", c.report_bucket)),
            ),
            (
                "kms_key_arn",
                Value::Str(format!(
                    "arn:aws:kms:{region}:{account}:key/00000000-0000-0000-0000-000000000000"
                )),
            ),
            ("alerts_topic_arn", Value::Str(topic_arn.clone())),
            (
                "ses_resource_arns",
                Value::List(vec![
                    ses_arn(&format!("identity/{sender}")),
                    ses_arn(&format!("configuration-set/{config_set}")),
                ]),
            ),
            ("sender", Value::Str(sender.clone())),
            ("private_key_secret_arn", Value::Str(key_secret_arn.clone())),
            ("log_group_arn", Value::Str(log_group_arn)),
        ]),
    )?;
    let role_arn = role(&iam, COORDINATOR_ROLE, LAMBDA_TRUST, &policy).await?;

    // The private key's policy (the module's template): nobody but the
    // coordinator's role reads it. The emulator's operator is not held to
    // it (its policy engine decides for keyfleet's roles only), so running
    // bootstrap again still reads the ring; in AWS only the readers the
    // module lists may.
    let key_policy = policy_template::render(
        policy_template::PRIVATE_KEY,
        &BTreeMap::from([("readers", Value::List(vec![role_arn.clone()]))]),
    )?;
    aws_sdk_secretsmanager::Client::new(sdk)
        .put_resource_policy()
        .secret_id(&key_secret_arn)
        .resource_policy(key_policy.to_string())
        .block_public_policy(true)
        .send()
        .await
        .map_err(|e| anyhow!("setting the coordinator key's policy: {}", describe(&e)))?;

    // Its log group (Terraform creates it too: the role may write to it but
    // not create it).
    let logs = aws_sdk_cloudwatchlogs::Client::new(sdk);
    if let Err(e) = logs
        .create_log_group()
        .log_group_name(format!("/aws/lambda/{function}"))
        .send()
        .await
    {
        if !e
            .as_service_error()
            .is_some_and(|s| s.is_resource_already_exists_exception())
        {
            return Err(anyhow!(
                "creating the coordinator's log group: {}",
                describe(&e)
            ));
        }
    }

    // The function, with the module's environment.
    let policy_json = serde_json::to_string(&cfg.policy(config_path)?)?;
    let env = Environment::builder()
        .variables("KEYFLEET_REPORT_BUCKET", &c.report_bucket)
        .variables("KEYFLEET_RESULTS_QUEUE_URL", &results_queue_url)
        .variables("KEYFLEET_ALERTS_TOPIC_ARN", &topic_arn)
        .variables("KEYFLEET_ORG_READER_ROLE_ARN", &reader_arn)
        .variables("KEYFLEET_SENDER", sender)
        .variables("KEYFLEET_SECURITY_TEAM", cfg.mail.security_team.join(","))
        .variables("KEYFLEET_PRIVATE_KEY_SECRET_ARN", &key_secret_arn)
        .variables("KEYFLEET_SES_CONFIGURATION_SET", &config_set)
        .variables(
            "KEYFLEET_EXCLUDE_ACCOUNTS",
            cfg.org.exclude_accounts.join(","),
        )
        .variables("KEYFLEET_EXCLUDE_OUS", cfg.org.exclude_ous.join(","))
        .variables("KEYFLEET_POLICY", policy_json)
        .variables("KEYFLEET_DEADLINE", c.deadline.to_string())
        .variables(
            "KEYFLEET_MAIL_SENDERS",
            (RESULTS_MAX_CONCURRENCY + 1).to_string(),
        )
        .variables("RUST_LOG", "info");
    // As the module does: the variable only when an ExternalId is set.
    let env = match &cfg.org.org_reader_external_id {
        Some(id) => env.variables("KEYFLEET_ORG_READER_EXTERNAL_ID", id),
        None => env,
    }
    .build();
    let lambda = aws_sdk_lambda::Client::new(sdk);
    let function_arn = match lambda.get_function().function_name(&function).send().await {
        Ok(found) => {
            lambda
                .update_function_code()
                .function_name(&function)
                .s3_bucket(&code.bucket)
                .s3_key(&code.coordinator_key)
                .send()
                .await
                .context("UpdateFunctionCode")?;
            lambda
                .update_function_configuration()
                .function_name(&function)
                .role(&role_arn)
                .environment(env)
                .send()
                .await
                .context("UpdateFunctionConfiguration")?;
            found
                .configuration
                .and_then(|c| c.function_arn)
                .unwrap_or_default()
        }
        Err(_) => lambda
            .create_function()
            .function_name(&function)
            .runtime(Runtime::Providedal2023)
            .handler("bootstrap")
            .role(&role_arn)
            .timeout(TIMEOUT_S)
            .memory_size(MEMORY_MB)
            .code(
                FunctionCode::builder()
                    .s3_bucket(&code.bucket)
                    .s3_key(&code.coordinator_key)
                    .build(),
            )
            .environment(env)
            .dead_letter_config(
                DeadLetterConfig::builder()
                    .target_arn(&invoke_dlq_arn)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| anyhow!("creating the coordinator function: {}", describe(&e)))?
            .function_arn
            .unwrap_or_default(),
    };

    // Results trigger: batches of 10, partial batch failures.
    let mappings = lambda
        .list_event_source_mappings()
        .function_name(&function)
        .event_source_arn(&results_queue_arn)
        .send()
        .await
        .context("ListEventSourceMappings")?;
    if mappings.event_source_mappings().is_empty() {
        lambda
            .create_event_source_mapping()
            .function_name(&function)
            .event_source_arn(&results_queue_arn)
            .batch_size(10)
            .function_response_types(FunctionResponseType::ReportBatchItemFailures)
            .scaling_config(
                ScalingConfig::builder()
                    .maximum_concurrency(RESULTS_MAX_CONCURRENCY)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| anyhow!("creating the results trigger: {}", describe(&e)))?;
    }

    // Reserved concurrency, the module's default: the results mapping's
    // maximum and room for the schedules.
    lambda
        .put_function_concurrency()
        .function_name(&function)
        .reserved_concurrent_executions(RESERVED_CONCURRENCY)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "setting the coordinator's reserved concurrency: {}",
                describe(&e)
            )
        })?;

    // Schedules: the daily run and the hourly sweep.
    schedules(sdk, &lambda, &function, &function_arn, &invoke_dlq_arn).await?;

    Ok(Central {
        results_queue_url,
        results_queue_arn,
        role_arn,
        function_arn,
        public_key: key,
    })
}

async fn schedules(
    sdk: &SdkConfig,
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    function_arn: &str,
    dlq_arn: &str,
) -> Result<()> {
    use aws_sdk_eventbridge::types::{DeadLetterConfig, RetryPolicy, Target};
    let events = aws_sdk_eventbridge::Client::new(sdk);
    for (rule, schedule, action) in [
        (START_RULE, START_SCHEDULE, "start"),
        (SWEEP_RULE, SWEEP_SCHEDULE, "sweep"),
    ] {
        let rule_arn = events
            .put_rule()
            .name(rule)
            .schedule_expression(schedule)
            .send()
            .await
            .map_err(|e| anyhow!("PutRule {rule}: {}", describe(&e)))?
            .rule_arn
            .unwrap_or_default();
        events
            .put_targets()
            .rule(rule)
            .targets(
                Target::builder()
                    .id("coordinator")
                    .arn(function_arn)
                    .input(serde_json::json!({ "action": action }).to_string())
                    .retry_policy(
                        RetryPolicy::builder()
                            .maximum_event_age_in_seconds(3600)
                            .maximum_retry_attempts(4)
                            .build(),
                    )
                    .dead_letter_config(DeadLetterConfig::builder().arn(dlq_arn).build())
                    .build()
                    .map_err(|e| anyhow!("target of {rule}: {e}"))?,
            )
            .send()
            .await
            .map_err(|e| anyhow!("PutTargets {rule}: {}", describe(&e)))?;
        if let Err(e) = lambda
            .add_permission()
            .function_name(function)
            .statement_id(format!("Allow-{rule}"))
            .action("lambda:InvokeFunction")
            .principal("events.amazonaws.com")
            .source_arn(rule_arn)
            .send()
            .await
        {
            // A second bootstrap finds the statement in place.
            if !e
                .as_service_error()
                .is_some_and(|s| s.is_resource_conflict_exception())
            {
                return Err(anyhow!(
                    "allowing {rule} to invoke the coordinator: {}",
                    describe(&e)
                ));
            }
        }
    }
    Ok(())
}

/// The report bucket's encryption, TLS-only policy and public access
/// block, as the coordinator module sets them.
async fn report_bucket_settings(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<()> {
    use aws_sdk_s3::types::{
        PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
        ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };
    let by_default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .context("the bucket's encryption")?;
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(by_default)
                        .build(),
                )
                .build()
                .context("the bucket's encryption")?,
        )
        .send()
        .await
        .map_err(|e| anyhow!("PutBucketEncryption {bucket}: {}", describe(&e)))?;
    s3.put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| anyhow!("PutPublicAccessBlock {bucket}: {}", describe(&e)))?;
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        }]
    });
    s3.put_bucket_policy()
        .bucket(bucket)
        .policy(policy.to_string())
        .send()
        .await
        .map_err(|e| anyhow!("PutBucketPolicy {bucket}: {}", describe(&e)))?;
    Ok(())
}
