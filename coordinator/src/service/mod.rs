//! The coordinator's operations: start a run, take results in, notify
//! owners, finalize, sweep. Built once per process with its clients.
//!
//! This module holds the types every operation shares (configuration,
//! clients, errors, the [`Coordinator`] itself) and reading a manifest; each
//! job of the service has its own module with its own `impl Coordinator`:
//!
//! - [`dispatch`]: start a run, send the jobs;
//! - [`intake`]: validate and store results, detect completion;
//! - [`notify`]: owner emails and alerts, each sent once ("claim, send,
//!   release on failure");
//! - [`finalize`]: the report, the summary, the alerts, the sweep and
//!   reading reports back;
//! - [`mail_retry`]: owner mail that failed at intake, sent again by the
//!   sweep from the stored result.
//!
//! Jobs go out with one SendMessage per account (SQS batches must target a
//! single queue, and every account has its own), sixteen at a time. An
//! account whose `keyfleet-jobs` queue does not exist has no agent: it is
//! recorded as such in the manifest, not treated as a crash.
//!
//! Intake separates the two kinds of failure: a result that is forged or
//! malformed is rejected (logged, alerted, and the message consumed: retrying
//! it cannot help), while an infrastructure failure (S3, SES) is returned as
//! an error so the SQS message is retried, except owner mail: once the
//! result is stored, mail that fails is left to the sweep ([`mail_retry`]);
//! a key ring that cannot be read again (Secrets Manager failing) is left
//! to the sweep too but also fails the message, since a box sealed to a key
//! the held ring lacks must never be refused over an outage. An owner
//! address that the deliverability rule refuses under the run's policy (the
//! manifest's, with its `owner_domains`) is neither: nothing is sent to it,
//! it is recorded and alerted once, the report's row of the user says why,
//! and the rest of the result is taken in as usual.

mod deliveries;
mod digests;
mod dispatch;
mod finalize;
mod intake;
mod mail_retry;
mod notify;
pub mod pacing;

pub use mail_retry::{MailRetry, PendingMail, PENDING_MAIL_PREFIX};

use crate::org::OrgError;
use keyfleet_protocol::{encode, JobMode, KeyRing, Policy, RunManifest};
use keyfleet_reports::store::{self, RunStore, StoreError};
use std::sync::Arc;
use time::OffsetDateTime;

/// Settings of a coordinator deployment.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub region: String,
    pub report_bucket: String,
    pub results_queue_url: String,
    pub alerts_topic_arn: Option<String>,
    pub sender: String,
    pub security_team: Vec<String>,
    pub ses_configuration_set: Option<String>,
    pub exclude_accounts: Vec<String>,
    pub exclude_ous: Vec<String>,
    pub policy: Policy,
    /// Name of the member accounts' jobs queue.
    pub jobs_queue_name: String,
    /// How long agents have before a run is finalized without them.
    pub deadline: time::Duration,
    /// Attempts at an account's owner mail before giving up and alerting
    /// (see [`mail_retry`]).
    pub mail_attempts: u32,
    /// The largest CSV report the summary email attaches; a larger one is
    /// linked (see `config::DEFAULT_SUMMARY_ATTACH_MAX_BYTES`).
    pub summary_attach_max_bytes: usize,
    /// Coordinator invocations that may send email at once, which share
    /// SES's send rate (see [`pacing`]).
    pub mail_senders: u32,
}

impl CoordinatorConfig {
    /// The production queue URL of an account's agent.
    pub fn jobs_queue_url(&self, account: &str) -> String {
        format!(
            "https://sqs.{}.amazonaws.com/{account}/{}",
            self.region, self.jobs_queue_name
        )
    }
}

/// The clients the coordinator needs, built once.
#[derive(Debug, Clone)]
pub struct CoordinatorClients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub ses: aws_sdk_sesv2::Client,
    pub sns: aws_sdk_sns::Client,
    /// Organizations, with the org-reader role's credentials.
    pub org: aws_sdk_organizations::Client,
}

/// Everything that can stop an operation.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Org(#[from] OrgError),
    #[error(transparent)]
    Reports(#[from] keyfleet_reports::read::ReportsError),
    #[error("run {0} has no manifest")]
    UnknownRun(String),
    #[error("SES SendEmail to {to} failed: {message}")]
    Ses { to: String, message: String },
    /// SES's quota has no room for the email now (see [`pacing`]): it
    /// waits for the pending-mail sweep. Not a failed attempt.
    #[error("email to {to} waits: {reason}")]
    MailDeferred { to: String, reason: String },
    #[error("building the email for {user} failed: {message}")]
    Mail { user: String, message: String },
    /// The key ring could not be read again from its secret (Secrets
    /// Manager failed, or the stored ring does not parse). A box naming a
    /// key the held ring lacks may open with the stored ring, so this is a
    /// reason to retry, never to refuse the box: refusing would lose the
    /// key for good over an outage.
    #[error("reading the key ring from secret {secret} failed: {message}")]
    KeyRing { secret: String, message: String },
    #[error("invalid policy: {0}")]
    Policy(String),
    #[error("invalid request: {0}")]
    Request(String),
    /// A digest's failure, told again for another account whose notices
    /// it holds (see `digests`): its text.
    #[error("{0}")]
    DigestFailed(String),
    /// The run was recorded, reported and alerted, but had no account to
    /// run on.
    #[error("run {run_id} failed: {description}; report: {report_url}")]
    NoAccountSelected {
        run_id: String,
        description: String,
        report_url: String,
    },
}

/// Why a result was refused. Never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed result: {0}")]
    Malformed(String),
    #[error("result for unknown run {0}")]
    UnknownRun(String),
    #[error("result from account {account}, which run {run} did not send a job to")]
    UnknownAccount { run: String, account: String },
    #[error(
        "result for account {account} in run {run} carries a token that does not match the job's"
    )]
    BadToken { run: String, account: String },
    #[error("result parts of account {account} in run {run} do not fit together: {reason}")]
    PartsDoNotFit {
        run: String,
        account: String,
        reason: String,
    },
}

/// What intake did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    /// Stored; the account is complete when `account_complete`.
    Accepted {
        run_id: String,
        account_id: String,
        account_complete: bool,
        /// The run was finalized by this message.
        finalized: bool,
    },
    /// A copy of a part already stored: dropped.
    Duplicate { run_id: String, account_id: String },
    /// Refused (logged and alerted).
    Rejected(Rejection),
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub dry_run: bool,
    /// Only these accounts (`None` = the whole organization).
    pub accounts: Option<Vec<String>>,
    pub mode: JobMode,
    /// Evaluate as of this instant (dry runs only).
    pub as_of: Option<OffsetDateTime>,
    /// Overrides the configured policy for this run.
    pub policy: Option<Policy>,
}

/// How jobs reach the agents.
#[derive(Debug, Clone, Default)]
pub enum JobSink {
    /// Each account's `keyfleet-jobs` queue (the deployed system).
    #[default]
    Queues,
    /// Agents in this process (`keyfleet run --local`): each job goes to
    /// this channel instead, and no queue is touched.
    Local(tokio::sync::mpsc::UnboundedSender<LocalJob>),
}

/// A job for an in-process agent. `--local` hands it to an agent only when
/// one is free, and [`LocalJob::hand_out`] stamps it then: its expiry counts
/// from that moment, not from the dispatch of the whole run.
#[derive(Clone)]
pub struct LocalJob {
    pub account_id: String,
    /// The job; it holds the job's token, so `Debug` leaves it out.
    job: keyfleet_protocol::Job,
}

impl LocalJob {
    /// The message an agent gets now: the job issued at `now`, expiring as
    /// [`dispatch::job_deadline`] says from there.
    pub fn hand_out(&self, now: time::OffsetDateTime) -> String {
        let run_deadline = self.job.deadline;
        let job = keyfleet_protocol::Job {
            issued_at: now,
            deadline: dispatch::job_deadline(now, run_deadline),
            ..self.job.clone()
        };
        String::from_utf8(keyfleet_protocol::encode(&job)).expect("serde_json writes UTF-8")
    }
}

impl std::fmt::Debug for LocalJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalJob")
            .field("account_id", &self.account_id)
            .field("body", &"<redacted>")
            .finish()
    }
}

/// A coordinator: configuration, clients and the private key, built once.
#[derive(Clone)]
pub struct Coordinator {
    pub config: CoordinatorConfig,
    clients: CoordinatorClients,
    store: RunStore,
    /// Every private key whose boxes this coordinator opens (see
    /// [`keyfleet_protocol::keyring`]).
    keys: Arc<std::sync::RwLock<Arc<KeyRing>>>,
    /// Where the ring is stored, to read it again (see [`Coordinator::ring_for`]).
    key_source: Option<KeySource>,
    jobs: JobSink,
    /// Paces the emails to SES's quota.
    pacer: Arc<pacing::Pacer>,
}

/// The Secrets Manager secret holding the key ring.
#[derive(Debug, Clone)]
pub struct KeySource {
    pub client: aws_sdk_secretsmanager::Client,
    pub secret_id: String,
}

impl Coordinator {
    pub fn new(config: CoordinatorConfig, clients: CoordinatorClients, keys: KeyRing) -> Self {
        let store = RunStore::new(clients.s3.clone(), config.report_bucket.clone());
        let pacer = Arc::new(pacing::Pacer::new(config.mail_senders));
        Coordinator {
            config,
            clients,
            store,
            keys: Arc::new(std::sync::RwLock::new(Arc::new(keys))),
            key_source: None,
            jobs: JobSink::Queues,
            pacer,
        }
    }

    /// Reads the ring again from `source` when a box names a key it does
    /// not hold: a coordinator Lambda stays warm for hours, and `keygen`
    /// adds a key to the stored ring while it runs; without a reload, the
    /// first results sealed to the new key would be refused.
    pub fn with_key_source(mut self, source: KeySource) -> Self {
        self.key_source = Some(source);
        self
    }

    /// The key ring, read again from its secret first when it does not hold
    /// `key_id` (and a source is set). A ring that still lacks `key_id` after
    /// a successful read is the answer (the box is refused); a read that
    /// fails, or a stored ring that does not parse, is an error: the box may
    /// well open once the ring is read, so the caller retries rather than
    /// refuses.
    pub(super) async fn ring_for(&self, key_id: &str) -> Result<Arc<KeyRing>, CoordinatorError> {
        let held = self.keys.read().expect("key ring lock").clone();
        let Some(source) = &self.key_source else {
            return Ok(held);
        };
        if held.get(key_id).is_some() {
            return Ok(held);
        }
        let failed = |message: String| {
            tracing::error!(secret = %source.secret_id, error = %message, "reading the key ring again failed");
            CoordinatorError::KeyRing {
                secret: source.secret_id.clone(),
                message,
            }
        };
        let read = source
            .client
            .get_secret_value()
            .secret_id(&source.secret_id)
            .send()
            .await
            .map_err(|e| {
                failed(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())
            })?;
        // The parse error names a line, never the key material.
        let ring = KeyRing::parse(read.secret_string().unwrap_or_default())
            .map_err(|e| failed(format!("the stored key ring is unreadable: {e}")))?;
        tracing::info!(keys = ?ring.ids(), "key ring read again");
        let ring = Arc::new(ring);
        *self.keys.write().expect("key ring lock") = ring.clone();
        Ok(ring)
    }

    /// Sends jobs to `sink` instead of the accounts' queues.
    pub fn with_job_sink(mut self, sink: JobSink) -> Self {
        self.jobs = sink;
        self
    }

    pub fn store(&self) -> &RunStore {
        &self.store
    }

    /// Writes (or rewrites) a run's manifest.
    async fn put_manifest(&self, manifest: &RunManifest) -> Result<(), CoordinatorError> {
        self.store
            .put(
                &store::manifest_key(&manifest.run_id),
                encode(manifest),
                "application/json",
            )
            .await?;
        Ok(())
    }

    async fn manifest(&self, run_id: &str) -> Result<Option<RunManifest>, CoordinatorError> {
        Ok(self.reports().manifest(run_id).await?)
    }
}
