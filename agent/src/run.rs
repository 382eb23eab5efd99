//! One job, end to end: scan, plan and execute every user, send the
//! result, then clear the intents of the rotations it delivered.
//!
//! Per-user work is in [`crate::executor`] (crash-safe order of writes,
//! reconciliation), the protected per-user record in [`crate::record`],
//! and the test-only fault hooks in [`crate::fault`].
//!
//! `impl Agent` lives here, with `struct Agent`, and nowhere else. The
//! agent owns its clients, configuration and transport, and hands the
//! parts of a job to the types that own them: each user to an
//! `Executor` borrowed from it (`Agent::executor`), each encoded result
//! part to its [`ResultSink`] (after choosing the queue,
//! [`Agent::results_queue`]). Neither calls back into the agent; their
//! errors ([`Crashed`], [`SendError`]) become the agent's
//! [`AgentError`]. The one way in from outside is
//! [`crate::message::handle_message`], which decodes and validates a job
//! before `Agent::handle` runs it.

use crate::budget::Budget;
use crate::clients::AgentClients;
use crate::executor::{AfterSend, Executor, UserOutcome};
use crate::fault::{Crashed, FaultPoint, Faults};
use crate::results::{ResultSink, SendError};
use crate::scan;
use crate::table::{Table, TableError};
use futures::stream::{self, StreamExt};
use keyfleet_protocol::parts::{self, PartsError};
use keyfleet_protocol::{AccountResult, AccountStatus, Job, PublicKey, Verdict, VERSION};
use time::OffsetDateTime;

/// Users processed at once within an account (IAM rate limits are per
/// account; the SDK's adaptive retry absorbs bursts).
const USER_CONCURRENCY: usize = 4;

/// Errors that stop a whole job. Per-user failures are reported on the user.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("job is for account {job}, this agent serves account {agent}")]
    WrongAccount { job: String, agent: String },
    #[error("injected crash at {point:?} (user `{user}`)")]
    Crashed { point: FaultPoint, user: String },
    #[error("sending the result to {queue} failed: {message}")]
    Send { queue: String, message: String },
    #[error("result could not be split for SQS: {0}")]
    Parts(#[from] PartsError),
    /// The result would be refused by the coordinator even after its
    /// informational values were left out: a defect of the agent, never
    /// sent. The job fails, so the queue retries it and then keeps it in
    /// its dead-letter queue; the user records keep what was done.
    #[error("result part {part} would be refused by the coordinator: {error}")]
    Unsendable {
        part: u32,
        error: keyfleet_protocol::ValidationError,
    },
    #[error(transparent)]
    Lease(#[from] crate::lease::LeaseError),
    #[error(transparent)]
    Table(#[from] crate::table::TableError),
}

impl From<Crashed> for AgentError {
    fn from(Crashed { point, user }: Crashed) -> Self {
        AgentError::Crashed { point, user }
    }
}

impl From<SendError> for AgentError {
    fn from(SendError { queue, message }: SendError) -> Self {
        AgentError::Send { queue, message }
    }
}

/// What the agent needs besides its clients.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The coordinator's public key (from the agent's own configuration,
    /// never from the job).
    pub coordinator_key: PublicKey,
    /// Largest SQS message to send.
    pub max_part_bytes: usize,
    /// The coordinator's results queue, from the agent's own configuration
    /// (`KEYFLEET_RESULTS_QUEUE_URL`, set by the StackSet). When set, results
    /// go there whatever the job says, so a forged job cannot redirect them;
    /// `--local` runs (which deliver in-process) and the tests leave it
    /// unset; a job's queue is then used.
    pub results_queue_url: Option<String>,
}

/// An agent for one account: clients built once, reused for every job.
#[derive(Clone)]
pub struct Agent {
    clients: AgentClients,
    config: AgentConfig,
    account_id: String,
    faults: Faults,
    sink: ResultSink,
    budget: Budget,
    report_polling: scan::ReportPolling,
}

impl Agent {
    pub fn new(clients: AgentClients, config: AgentConfig, account_id: impl Into<String>) -> Self {
        Agent {
            clients,
            config,
            account_id: account_id.into(),
            faults: Faults::default(),
            sink: ResultSink::Queue,
            budget: Budget::Unlimited,
            report_polling: scan::ReportPolling::default(),
        }
    }

    /// Stops starting users when `budget` runs out (see [`Budget`]).
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// Polls for the credential report as `polling` says instead of the
    /// default (see [`scan::ReportPolling`]).
    pub fn with_report_polling(mut self, polling: scan::ReportPolling) -> Self {
        self.report_polling = polling;
        self
    }

    /// Sends results to `sink` instead of SQS (`keyfleet run --local`).
    pub fn with_result_sink(mut self, sink: ResultSink) -> Self {
        self.sink = sink;
        self
    }

    /// Installs a fault hook (tests of crash safety; `fault-injection`
    /// feature only).
    #[cfg(feature = "fault-injection")]
    pub fn with_fault_hook(mut self, hook: crate::fault::FaultHook) -> Self {
        self.faults = Faults::with_hook(hook);
        self
    }

    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    pub fn clients(&self) -> &AgentClients {
        &self.clients
    }

    /// Where results go on SQS: the configured queue, else the job's.
    pub fn results_queue<'a>(&'a self, job_queue: &'a str) -> &'a str {
        self.config
            .results_queue_url
            .as_deref()
            .unwrap_or(job_queue)
    }

    /// Delivers one encoded result part (see [`crate::results`]).
    pub(crate) async fn deliver(&self, job_queue: &str, body: String) -> Result<(), AgentError> {
        let queue = self.results_queue(job_queue);
        Ok(self.sink.deliver(&self.clients.sqs, queue, body).await?)
    }

    /// The executor of one job's users, borrowing this agent's clients,
    /// account, key, faults and budget, and the account's table.
    fn executor<'a>(&'a self, table: &'a Table) -> Executor<'a> {
        Executor {
            table,
            clients: &self.clients,
            account_id: &self.account_id,
            coordinator_key: &self.config.coordinator_key,
            faults: &self.faults,
            budget: &self.budget,
        }
    }

    /// Runs a job (decoded and validated by
    /// [`crate::message::handle_message`], the only caller) and sends its
    /// result (in parts if needed) to the results queue. Returns the whole
    /// result.
    pub(crate) async fn handle(&self, job: &Job) -> Result<AccountResult, AgentError> {
        use tracing::Instrument;
        let span = tracing::info_span!("job", run_id = %job.run_id, account = %job.account_id, dry_run = job.dry_run);
        self.handle_inner(job).instrument(span).await
    }

    async fn handle_inner(&self, job: &Job) -> Result<AccountResult, AgentError> {
        if job.account_id != self.account_id {
            return Err(AgentError::WrongAccount {
                job: job.account_id.clone(),
                agent: self.account_id.clone(),
            });
        }
        // The table first: nothing is read from it or written to it before
        // its policy is found to be keyfleet's (see `crate::table`). A
        // table that is missing or not keyfleet's fails the account, with
        // the reason, in a result: retrying would not fix it.
        let region = self
            .clients
            .dynamodb
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_default();
        let table =
            match crate::table::open(&self.clients.dynamodb, &region, &self.account_id).await {
                Ok(t) => t,
                Err(e @ (TableError::Missing | TableError::Foreign { .. })) => {
                    tracing::error!(error = %e, "the account's table cannot be used");
                    return self.run_job(job, Err(e.to_string()), false, None).await;
                }
                Err(e) => return Err(e.into()),
            };
        if job.dry_run {
            return self.run_job(job, Ok(&table), false, None).await;
        }
        // One run at a time in an account (see `crate::lease`).
        let mut lease = crate::lease::acquire(
            &table,
            &self.clients.secrets,
            &job.run_id,
            self.budget.lease_until(),
        )
        .await?;
        let retry = lease.again;
        let migrated = lease.migrated;
        let mut now_migrated = migrated;
        let result = self
            .run_job(
                job,
                Ok(&table),
                retry,
                (!migrated).then_some(&mut now_migrated),
            )
            .await;
        lease.migrated = now_migrated;
        lease.release(&table).await;
        result
    }

    /// `table`: the account's table, or why it cannot be used (the account
    /// then fails). `retry`: this run took the account's lease before (see
    /// `crate::lease`), so an earlier attempt may have done part of the job
    /// and every user's record is read to report it. `migrate`: the
    /// account may still hold an earlier release's records (see
    /// `crate::record::migrate`); set to true once it holds none.
    async fn run_job(
        &self,
        job: &Job,
        table: Result<&Table, String>,
        retry: bool,
        migrate: Option<&mut bool>,
    ) -> Result<AccountResult, AgentError> {
        let started_at = OffsetDateTime::now_utc();
        let as_of = job.as_of.unwrap_or(started_at);
        let calls_before = self.clients.calls.snapshot();

        let mut result = AccountResult {
            v: VERSION,
            run_id: job.run_id.clone(),
            account_id: job.account_id.clone(),
            token: job.token.clone(),
            part: 1,
            parts: 1,
            account_alias: None,
            status: AccountStatus::Ok,
            error: None,
            dry_run: job.dry_run,
            as_of,
            started_at,
            finished_at: started_at,
            scan_mode: Default::default(),
            api_calls: Default::default(),
            users: Vec::new(),
            sealed: Vec::new(),
        };

        let table = match table {
            Ok(t) => t,
            Err(reason) => {
                result.status = AccountStatus::Failed;
                result.error = Some(reason);
                result.finished_at = OffsetDateTime::now_utc();
                result.api_calls = self.clients.calls.since(&calls_before);
                self.send(job, result.clone()).await?;
                return Ok(result);
            }
        };
        let executor = self.executor(table);
        let mut clear = Vec::new();
        match scan::scan_account(&self.clients.iam, &self.report_polling).await {
            Err(e) => {
                tracing::error!(error = %e, "account scan failed");
                result.status = AccountStatus::Failed;
                result.error = Some(e.to_string());
            }
            Ok(scan) => {
                result.scan_mode = scan.mode;
                let mut users = scan.users;
                if let Some(user) = job.mode.user() {
                    users.retain(|u| u.snapshot.user_name == user);
                    if users.is_empty() {
                        result.status = AccountStatus::Failed;
                        result.error = Some(format!("user `{user}` not found"));
                    }
                }
                users.sort_by(|a, b| a.snapshot.user_name.cmp(&b.snapshot.user_name));
                if let Some(migrated) = migrate {
                    let scanned: Vec<(String, String)> = users
                        .iter()
                        .map(|u| (u.snapshot.user_name.clone(), u.arn.clone()))
                        .collect();
                    match crate::record::migrate(
                        table,
                        &self.clients.secrets,
                        &self.account_id,
                        &scanned,
                        job.policy.delivery.by_secrets_manager(),
                    )
                    .await
                    {
                        Ok(m) => {
                            if m.moved + m.retired > 0 {
                                tracing::info!(
                                    moved = m.moved,
                                    retired = m.retired,
                                    left = m.left,
                                    "earlier records moved into the table"
                                );
                            }
                            *migrated = m.done();
                        }
                        // The records stay where they are; the next run
                        // tries again. Users read their records from the
                        // table meanwhile: one not moved yet reads as new.
                        Err(e) => {
                            tracing::error!(error = %e, "earlier records not moved into the table");
                            result.status = AccountStatus::Failed;
                            result.error = Some(format!(
                                "the records of an earlier keyfleet release could not be moved into the table: {e}"
                            ));
                            users.clear();
                        }
                    }
                }
                let outcomes: Vec<Result<UserOutcome, Crashed>> = stream::iter(users)
                    .map(|u| executor.process_user(job, as_of, u, retry))
                    .buffered(USER_CONCURRENCY)
                    .collect()
                    .await;
                for o in outcomes {
                    let o = o?;
                    if matches!(o.report.verdict, Verdict::Failed | Verdict::Deferred) {
                        result.status = AccountStatus::Partial;
                    }
                    if let AfterSend::ClearIntent { record, version } = o.after_send {
                        clear.push((record, version));
                    }
                    result.sealed.extend(o.sealed);
                    result.users.push(o.report);
                }
            }
        }
        if result.users.iter().any(|u| !u.actions.is_empty()) {
            match scan::account_alias(&self.clients.iam).await {
                Ok(a) => result.account_alias = a,
                Err(e) => tracing::warn!(error = %e, "could not read the account alias"),
            }
        }
        result.finished_at = OffsetDateTime::now_utc();
        result.api_calls = self.clients.calls.since(&calls_before);
        // What is returned is what is sent (see `send`).
        let left_out = result.degrade();
        if left_out > 0 {
            tracing::warn!(
                values = left_out,
                "informational values left out of the result (noted on their users)"
            );
        }

        self.faults.crash_at(FaultPoint::BeforeSend, "")?;
        self.send(job, result.clone()).await?;
        self.faults.crash_at(FaultPoint::AfterSend, "")?;
        if !job.dry_run {
            executor.clear_intents(clear).await;
        }
        tracing::info!(
            users = result.users.len(),
            new_keys = result.sealed.len(),
            status = ?result.status,
            iam_calls = result.iam_calls(),
            "job done"
        );
        Ok(result)
    }

    async fn send(&self, job: &Job, result: AccountResult) -> Result<(), AgentError> {
        // An agent never sends what the coordinator would refuse: `run_job`
        // left out the informational values that break the protocol's rules
        // (keyfleet_protocol::degrade), and every part is checked here with
        // the coordinator's own validator before anything leaves.
        let parts = parts::split(result, self.config.max_part_bytes)?;
        for part in &parts {
            keyfleet_protocol::Validate::validate(part).map_err(|error| {
                AgentError::Unsendable {
                    part: part.part,
                    error,
                }
            })?;
        }
        for part in parts {
            let body = String::from_utf8(keyfleet_protocol::encode(&part))
                .expect("serde_json writes UTF-8");
            self.deliver(&job.results_queue_url, body).await?;
        }
        Ok(())
    }
}
