//! `--local`: the coordinator and the agents in this process, for an
//! organization without the deployment (the c7n-org way). The agent of each
//! account acts through a role assumed there (`[org] agent_role`, default
//! `OrganizationAccountAccessRole`).
//!
//! Nothing here touches the deployed queues: jobs go from the in-process
//! coordinator to the in-process agents over a channel, and each result
//! part goes straight into the coordinator's intake. Both sides go through
//! the same per-message functions as the Lambdas
//! ([`keyfleet_agent::handle_message`], [`Coordinator::intake`]), so a job
//! is decoded and a result validated exactly as in the deployed system.
//! A part counts as delivered once intake stored it (three attempts, as
//! the results queue's `maxReceiveCount`); only then does the agent clear
//! its rotation intents.
//!
//! The run waits for every agent, however long that takes; accounts whose
//! agent failed are reported missing when the run is finalized after.

use crate::aws;
use crate::config::Config;
use anyhow::{anyhow, Context, Result};
use aws_config::SdkConfig;
use futures::FutureExt;
use keyfleet_agent::{handle_message, Agent, AgentClients, AgentConfig, JobOutcome, ResultSink};
use keyfleet_coordinator::{
    Coordinator, CoordinatorClients, CoordinatorConfig, JobSink, KeySource, LocalJob,
};
use keyfleet_protocol::aws_error::describe;
use keyfleet_protocol::command::Command;
use keyfleet_protocol::report::RunReport;
use keyfleet_protocol::{KeyRing, PublicKey};
use std::path::Path;
use std::sync::Arc;
use tokio::task::JoinSet;

/// Attempts at taking one result part in (the results queue's
/// `maxReceiveCount` in the deployed system).
const INTAKE_ATTEMPTS: u32 = 3;

/// Where jobs say results go. Never used: local agents hand their results
/// to the in-process coordinator (the protocol wants a URL here).
const LOCAL_RESULTS: &str = "https://in-process.keyfleet.invalid/keyfleet-results";

/// The in-process coordinator and what its agents need.
pub struct Local {
    pub coordinator: Coordinator,
    sdk: SdkConfig,
    public_key: PublicKey,
    agent_role: String,
    /// Agents running at once (`[coordinator] local_agents`).
    agents: usize,
}

impl Local {
    /// Builds the coordinator from the configuration: its report bucket,
    /// mail settings and private key (Secrets Manager) must exist.
    pub async fn connect(cfg: &Config, config_path: &Path, sdk: SdkConfig) -> Result<Local> {
        let policy = cfg.policy(config_path)?;
        let sm = aws_sdk_secretsmanager::Client::new(&sdk);
        let secret = sm
            .get_secret_value()
            .secret_id(&cfg.coordinator.private_key_secret)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "reading the coordinator key `{}`: {}",
                    cfg.coordinator.private_key_secret,
                    describe(&e)
                )
            })?;
        let keys = KeyRing::parse(secret.secret_string().unwrap_or_default()).with_context(|| {
            format!(
                "the coordinator key secret `{}` does not hold a key ring: run `keyfleet keygen --secret-id ...`",
                cfg.coordinator.private_key_secret
            )
        })?;
        let account = aws::account_id(&sdk).await?;
        let org_sdk = match &cfg.org.org_reader_role {
            Some(role) => {
                aws::assume_with(&sdk, "", role, cfg.org.org_reader_external_id.as_deref()).await?
            }
            None => sdk.clone(),
        };
        let clients = CoordinatorClients {
            s3: aws::s3_client(cfg, &sdk),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            ses: aws_sdk_sesv2::Client::new(&sdk),
            sns: aws_sdk_sns::Client::new(&sdk),
            org: aws_sdk_organizations::Client::new(&org_sdk),
        };
        let config = CoordinatorConfig {
            region: cfg.aws.region.clone(),
            report_bucket: cfg.coordinator.report_bucket.clone(),
            results_queue_url: LOCAL_RESULTS.into(),
            alerts_topic_arn: Some(format!(
                "arn:aws:sns:{}:{account}:{}",
                cfg.aws.region, cfg.coordinator.alerts_topic
            )),
            sender: cfg.mail.sender.clone(),
            security_team: cfg.mail.security_team.clone(),
            ses_configuration_set: cfg.mail.configuration_set.clone(),
            exclude_accounts: cfg.org.exclude_accounts.clone(),
            exclude_ous: cfg.org.exclude_ous.clone(),
            policy,
            jobs_queue_name: "keyfleet-jobs".into(),
            deadline: cfg.coordinator.deadline.to_time(),
            mail_attempts: keyfleet_coordinator::config::DEFAULT_MAIL_ATTEMPTS,
            summary_attach_max_bytes:
                keyfleet_coordinator::config::DEFAULT_SUMMARY_ATTACH_MAX_BYTES,
            // One process: its one pacer sees every send.
            mail_senders: 1,
        };
        Ok(Local {
            public_key: keys.current().public_key(),
            coordinator: Coordinator::new(config, clients, keys).with_key_source(KeySource {
                client: sm,
                secret_id: cfg.coordinator.private_key_secret.clone(),
            }),
            sdk,
            agent_role: cfg
                .org
                .agent_role
                .clone()
                .unwrap_or_else(|| "OrganizationAccountAccessRole".into()),
            agents: cfg.coordinator.local_agents.max(1) as usize,
        })
    }

    /// Runs `cmd` (a command that starts a run) to its report.
    pub async fn run(&self, cmd: &Command) -> Result<RunReport> {
        let run_id = self.run_agents(cmd).await?;
        // Every agent is done: accounts that did not report are missing.
        self.coordinator.finalize(&run_id).await?;
        self.coordinator
            .report(&run_id)
            .await?
            .ok_or_else(|| anyhow!("run {run_id} did not finalize"))
    }

    /// Starts the run `cmd` asks for and runs its agents to the end,
    /// without finalizing it (`keyfleet bench` finalizes in a process of
    /// its own, to measure the coordinator alone); returns the run id.
    pub async fn run_agents(&self, cmd: &Command) -> Result<String> {
        let req = keyfleet_coordinator::lambda::run_request(cmd)
            .ok_or_else(|| anyhow!("{cmd:?} starts no run"))?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<LocalJob>();
        let dispatcher = self.coordinator.clone().with_job_sink(JobSink::Local(tx));
        // The dispatcher (and with it the channel's sender) is dropped when
        // the start is over, which ends the loop below once every job is in.
        let start = async move { dispatcher.start_run(req).await };
        let agents = async {
            // A job is handed out only when an agent is free, and stamped
            // then (`LocalJob::hand_out`): a run longer than its deadline
            // never expires the jobs still waiting.
            let sem = Arc::new(tokio::sync::Semaphore::new(self.agents));
            let mut set = JoinSet::new();
            // Jobs handed out so far: the bar grows with them.
            let bar = crate::progress::bar(0, "agents");
            let mut open = true;
            while open || !set.is_empty() {
                let next = async {
                    let permit = sem.clone().acquire_owned().await.ok()?;
                    rx.recv().await.map(|job| (permit, job))
                };
                tokio::select! {
                    next = next, if open => {
                        let Some((permit, job)) = next else {
                            open = false;
                            continue;
                        };
                        let (sdk, role) = (self.sdk.clone(), self.agent_role.clone());
                        let (coordinator, key) = (self.coordinator.clone(), self.public_key.clone());
                        let body = job.hand_out(time::OffsetDateTime::now_utc());
                        if let Some(b) = &bar {
                            b.inc_length(1);
                        }
                        set.spawn(async move {
                            let outcome = run_agent(&sdk, &role, key, coordinator, &job, body).await;
                            drop(permit);
                            (job.account_id, outcome)
                        });
                    }
                    Some(done) = set.join_next() => {
                        log_agent(done);
                        if let Some(b) = &bar {
                            b.inc(1);
                        }
                    }
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        };
        let (manifest, ()) = tokio::join!(start, agents);
        Ok(manifest?.run_id)
    }
}

/// Logs how one agent task ended.
fn log_agent(done: Result<(String, Result<JobOutcome>), tokio::task::JoinError>) {
    match done {
        Ok((account, Err(e))) => {
            tracing::error!(account = %account, error = %format!("{e:#}"), "agent failed")
        }
        Ok((account, Ok(JobOutcome::Done(_)))) => {
            tracing::info!(account = %account, "agent done")
        }
        Ok((account, Ok(other))) => tracing::error!(
            account = %account,
            error = other.failure().unwrap_or_default(),
            "agent did not complete the job"
        ),
        Err(e) => tracing::error!(error = %e, "agent task panicked"),
    }
}

/// One account's agent: the job through the agent's per-message function,
/// its result parts through the coordinator's.
async fn run_agent(
    sdk: &SdkConfig,
    role: &str,
    key: PublicKey,
    coordinator: Coordinator,
    job: &LocalJob,
    body: String,
) -> Result<JobOutcome> {
    let cfg = aws::assume(sdk, &job.account_id, role).await?;
    let sink: keyfleet_agent::LocalSink = Arc::new(move |body: String| {
        let c = coordinator.clone();
        async move { take_in(&c, &body).await }.boxed()
    });
    let agent = Agent::new(
        AgentClients::new(&cfg),
        AgentConfig {
            coordinator_key: key,
            max_part_bytes: keyfleet_protocol::parts::DEFAULT_MAX_PART_BYTES,
            results_queue_url: None,
        },
        job.account_id.clone(),
    )
    .with_result_sink(ResultSink::Local(sink));
    Ok(handle_message(&agent, &body, 1).await)
}

/// One result part into the coordinator, retried as SQS would redeliver it.
async fn take_in(c: &Coordinator, body: &str) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 1..=INTAKE_ATTEMPTS {
        match c.intake(body, attempt).await {
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::warn!(attempt, error = %e, "intake failed");
                last = e.to_string();
            }
        }
    }
    Err(last)
}
