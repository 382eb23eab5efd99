//! Local fleet mode: the coordinator and one agent per account in this
//! process, talking over the target's real SQS queues (the emulator or a
//! real organization). The same library code as the Lambdas runs; only the
//! transport of invocations differs (tasks instead of event source
//! mappings).
//!
//! Agents act in each member account through an assumed role
//! (`[org] agent_role`, default `keyfleet-agent`). In the emulator any role
//! can be assumed; against a real organization, use a role the operator may
//! assume there, such as `OrganizationAccountAccessRole`.

use crate::config::Config;
use anyhow::{anyhow, Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use futures::stream::{self, StreamExt};
use keyfleet_agent::{Agent, AgentClients, AgentConfig};
use keyfleet_coordinator::{
    Coordinator, CoordinatorClients, CoordinatorConfig, Intake, RunRequest,
};
use keyfleet_protocol::report::RunReport;
use keyfleet_protocol::{decode, Dispatch, Job, PrivateKey};
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Agents running at once.
const AGENT_CONCURRENCY: usize = 32;

/// The SDK configuration for the provisioning account.
pub async fn sdk_config(cfg: &Config) -> SdkConfig {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(cfg.aws.region.clone()));
    if let Some(url) = &cfg.aws.endpoint_url {
        loader = loader.endpoint_url(url);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            // Emulators accept any credentials; moto maps these to its
            // default (management/provisioning) account.
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

/// S3 needs path-style addressing against an emulator endpoint.
pub fn s3_client(cfg: &Config, sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(cfg.aws.endpoint_url.is_some())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Credentials for `account` through `role` (an AssumeRole).
pub async fn assume(sdk: &SdkConfig, account: &str, role: &str) -> Result<SdkConfig> {
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
        .send()
        .await
        .with_context(|| format!("assuming {arn}"))?;
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

/// Everything a local run needs, built once.
pub struct Fleet {
    pub cfg: Config,
    pub sdk: SdkConfig,
    pub coordinator: Coordinator,
    /// The coordinator's public key, which local agents seal to.
    pub public_key: keyfleet_protocol::PublicKey,
    pub results_queue_url: String,
}

impl Fleet {
    /// Builds the coordinator from the configuration and the resources that
    /// `keyfleet bootstrap` (or Terraform) created.
    pub async fn connect(cfg: Config, config_path: &Path) -> Result<Fleet> {
        let sdk = sdk_config(&cfg).await;
        let policy = cfg.policy(config_path)?;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let results_queue_url = sqs
            .get_queue_url()
            .queue_name(&cfg.coordinator.results_queue)
            .send()
            .await
            .with_context(|| {
                format!(
                    "results queue `{}` not found: run `keyfleet bootstrap` or apply the Terraform first",
                    cfg.coordinator.results_queue
                )
            })?
            .queue_url()
            .unwrap_or_default()
            .to_string();
        let sm = aws_sdk_secretsmanager::Client::new(&sdk);
        let secret = sm
            .get_secret_value()
            .secret_id(&cfg.coordinator.private_key_secret)
            .send()
            .await
            .with_context(|| {
                format!(
                    "reading the coordinator key `{}`",
                    cfg.coordinator.private_key_secret
                )
            })?;
        let key = PrivateKey::from_base64(secret.secret_string().unwrap_or_default()).context(
            "the coordinator key secret does not hold a key: run `keyfleet keygen --secret-id ...`",
        )?;
        let sts = aws_sdk_sts::Client::new(&sdk);
        let me = sts
            .get_caller_identity()
            .send()
            .await
            .context("GetCallerIdentity")?;
        let topic = format!(
            "arn:aws:sns:{}:{}:{}",
            cfg.aws.region,
            me.account().unwrap_or_default(),
            cfg.coordinator.alerts_topic
        );
        let org_sdk = match &cfg.org.org_reader_role {
            Some(role) => assume(&sdk, "", role).await?,
            None => sdk.clone(),
        };
        let clients = CoordinatorClients {
            s3: s3_client(&cfg, &sdk),
            sqs,
            ses: aws_sdk_sesv2::Client::new(&sdk),
            sns: aws_sdk_sns::Client::new(&sdk),
            org: aws_sdk_organizations::Client::new(&org_sdk),
        };
        let config = CoordinatorConfig {
            region: cfg.aws.region.clone(),
            report_bucket: cfg.coordinator.report_bucket.clone(),
            results_queue_url: results_queue_url.clone(),
            alerts_topic_arn: Some(topic),
            sender: cfg.mail.sender.clone(),
            security_team: cfg.mail.security_team.clone(),
            ses_configuration_set: cfg.mail.configuration_set.clone(),
            exclude_accounts: cfg.org.exclude_accounts.clone(),
            exclude_ous: cfg.org.exclude_ous.clone(),
            policy,
            jobs_queue_name: "keyfleet-jobs".into(),
            deadline: cfg.coordinator.deadline.to_time(),
        };
        Ok(Fleet {
            public_key: key.public_key(),
            coordinator: Coordinator::new(config, clients, key),
            cfg,
            sdk,
            results_queue_url,
        })
    }

    /// One full cycle: start, run every agent, take every result in,
    /// finalize. Returns the consolidated report.
    pub async fn cycle(&self, req: RunRequest) -> Result<RunReport> {
        let manifest = self.coordinator.start_run(req).await?;
        let run_id = manifest.run_id.clone();
        let sent: Vec<String> = manifest
            .accounts
            .iter()
            .filter(|a| a.dispatch == Dispatch::Sent)
            .map(|a| a.account_id.clone())
            .collect();
        tracing::info!(run_id = %run_id, accounts = sent.len(), "local fleet: running agents");
        let bar = progress(sent.len() as u64);

        let mut agents = JoinSet::new();
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(AGENT_CONCURRENCY));
        for account in sent {
            let sdk = self.sdk.clone();
            let role = self
                .cfg
                .org
                .agent_role
                .clone()
                .unwrap_or_else(|| "keyfleet-agent".into());
            let region = self.cfg.aws.region.clone();
            let public = self.public_key.clone();
            let run_id = run_id.clone();
            let sem = sem.clone();
            agents.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let r = run_agent(&sdk, &account, &role, &region, public, &run_id).await;
                (account, r)
            });
        }

        let mut finalized = false;
        let mut agents_done = false;
        let mut quiet_polls = 0;
        let deadline = Instant::now() + Duration::from_secs(30 * 60);
        while !finalized && Instant::now() < deadline {
            // Drain finished agents without blocking.
            while let Some(done) = agents.try_join_next() {
                match done {
                    Ok((account, Err(e))) => {
                        tracing::error!(account = %account, error = %format!("{e:#}"), "agent failed")
                    }
                    Ok((_, Ok(()))) => {}
                    Err(e) => tracing::error!(error = %e, "agent task panicked"),
                }
                if let Some(b) = &bar {
                    b.inc(1);
                }
            }
            agents_done = agents_done || agents.is_empty();
            let got = self.pump_results().await?;
            if got.iter().any(|i| {
                matches!(
                    i,
                    Intake::Accepted {
                        finalized: true,
                        ..
                    }
                )
            }) {
                finalized = true;
            } else if got.is_empty() && agents_done {
                quiet_polls += 1;
                if quiet_polls >= 2 {
                    // Every agent is done and nothing more is coming: the
                    // missing accounts are reported as missing.
                    self.coordinator.finalize(&run_id).await?;
                    finalized = true;
                }
            } else {
                quiet_polls = 0;
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        self.coordinator
            .report(&run_id)
            .await?
            .ok_or_else(|| anyhow!("run {run_id} did not finalize"))
    }

    /// Receives and takes in one batch of results.
    async fn pump_results(&self) -> Result<Vec<Intake>> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let out = sqs
            .receive_message()
            .queue_url(&self.results_queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .context("receiving results")?;
        // Results of different accounts are independent: take a batch in
        // concurrently (the finalize marker's conditional write keeps the
        // run's finalization single even when two intakes complete it).
        let outcomes: Vec<Option<Intake>> = stream::iter(out.messages())
            .map(|m| {
                let sqs = &sqs;
                async move {
                    match self.coordinator.intake(m.body().unwrap_or_default()).await {
                        Ok(intake) => {
                            if let Err(e) = sqs
                                .delete_message()
                                .queue_url(&self.results_queue_url)
                                .receipt_handle(m.receipt_handle().unwrap_or_default())
                                .send()
                                .await
                            {
                                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "result taken in but not deleted; it will be seen again");
                            }
                            Some(intake)
                        }
                        Err(e) => {
                            // Left on the queue: it comes back after its
                            // visibility timeout, as with the Lambda trigger.
                            tracing::error!(error = %e, "intake failed; the result will be retried");
                            None
                        }
                    }
                }
            })
            .buffer_unordered(10)
            .collect()
            .await;
        let outcomes: Vec<Intake> = outcomes.into_iter().flatten().collect();
        Ok(outcomes)
    }
}

/// One account's agent: take this run's job from the account's queue, run
/// it, delete the message.
async fn run_agent(
    sdk: &SdkConfig,
    account: &str,
    role: &str,
    region: &str,
    public: keyfleet_protocol::PublicKey,
    run_id: &str,
) -> Result<()> {
    let cfg = assume(sdk, account, role).await?;
    let clients = AgentClients::new(&cfg);
    let sqs = clients.sqs.clone();
    let agent = Agent::new(
        clients,
        AgentConfig {
            coordinator_key: public,
            max_part_bytes: keyfleet_protocol::parts::DEFAULT_MAX_PART_BYTES,
            results_queue_url: None,
        },
        account,
    );
    let url = format!("https://sqs.{region}.amazonaws.com/{account}/keyfleet-jobs");
    for _ in 0..30 {
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .with_context(|| format!("receiving from {url}"))?;
        for m in out.messages() {
            let body = m.body().unwrap_or_default();
            let job: Job = match decode(body.as_bytes()) {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(account = %account, error = %e, "rejected job left for the DLQ");
                    continue;
                }
            };
            if job.run_id != run_id {
                // A job of another run (an older one): leave it to its run.
                continue;
            }
            agent.handle(&job).await?;
            sqs.delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await?;
            return Ok(());
        }
    }
    Err(anyhow!("no job for run {run_id} arrived in {url}"))
}

/// A progress bar on stderr when it is a terminal; plain logs otherwise.
fn progress(n: u64) -> Option<indicatif::ProgressBar> {
    if n < 2 || !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(n);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} agents {pos}/{len} [{bar:30}] {elapsed}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(b)
}
