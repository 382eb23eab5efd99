//! The agent's one doorway: one job message in (its body and how many
//! times it has been delivered), one outcome out.
//!
//! The Lambda handler ([`crate::lambda`]), `keyfleet run --local` and the
//! tests all call [`handle_message`]; nothing else decodes a job. What the
//! caller does with the outcome is the transport's business: the Lambda
//! turns anything but [`JobOutcome::Done`] into a batch item failure (so a
//! rejected job reaches the jobs queue's DLQ after its `maxReceiveCount`
//! instead of being retried forever), the local runner reports it.
//!
//! A job that does not validate is reported to the coordinator once, on
//! its first delivery, when its body names enough to address a result (a
//! run, this account, a token, a results queue): the run's report then
//! shows the account as failed with the reason instead of waiting for the
//! deadline. It then ends in the jobs queue's DLQ (whose alarm tells the
//! security team), after the queue's `maxReceiveCount`.
//!
//! A job past its deadline (one redriven from the DLQ days later, or
//! delivered after the run gave up on the account) is never run: the rules
//! it carries were decided for another moment, and its run has already
//! reported the account missing. It is dropped (the message is deleted:
//! retrying cannot make it younger), logged at error level and reported to
//! the coordinator as a failed result, which the run's report shows and, for
//! a run already finalized, the coordinator alerts on.

use crate::run::{Agent, AgentError};
use keyfleet_protocol::{
    decode, encode, AccountResult, AccountStatus, Job, ProtocolError, Token, VERSION,
};
use time::OffsetDateTime;

/// How long past its deadline a job still runs: the coordinator's and the
/// agent's clocks may differ by this much (both are synchronized, on AWS and
/// in one `--local` process alike, so 30 seconds is ample), and a result
/// that arrives after the report is still taken (and alerted). A job
/// redriven from the DLQ is hours or days late.
pub const DEADLINE_GRACE: time::Duration = time::Duration::seconds(30);

/// What became of one job message.
#[derive(Debug)]
pub enum JobOutcome {
    /// The job ran and its result reached the coordinator.
    Done(Box<AccountResult>),
    /// The message can never succeed.
    Rejected(Rejected),
    /// The job was valid but came too late to run: consumed without
    /// running, and reported.
    Dropped(Dropped),
    /// The job stopped on an error a later delivery may not meet (the
    /// results queue refused the result, an injected crash).
    Failed(AgentError),
}

/// Why a job message can never succeed here.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error("rejected job: {0}")]
    Malformed(ProtocolError),
    #[error("record from a queue of account {queue_owner}, agent serves {agent}")]
    ForeignQueue { queue_owner: String, agent: String },
    #[error(transparent)]
    NotForThisAgent(AgentError),
}

/// Why a valid job was consumed without running.
#[derive(Debug, thiserror::Error)]
pub enum Dropped {
    #[error("job of run {run_id} expired at {deadline} (now {now}); not run")]
    Expired {
        run_id: String,
        deadline: OffsetDateTime,
        now: OffsetDateTime,
    },
}

impl JobOutcome {
    /// The reason, when the message should come back (or go to the DLQ):
    /// the job did not complete and was not dropped.
    pub fn failure(&self) -> Option<String> {
        match self {
            JobOutcome::Done(_) | JobOutcome::Dropped(_) => None,
            JobOutcome::Rejected(why) => Some(why.to_string()),
            JobOutcome::Failed(why) => Some(why.to_string()),
        }
    }
}

/// Handles one job message: decode, validate, check the deadline, run,
/// send the result. The body is bytes: SQS only carries UTF-8, but nothing
/// here depends on it.
pub async fn handle_message(
    agent: &Agent,
    body: impl AsRef<[u8]>,
    receive_count: u32,
) -> JobOutcome {
    let body = body.as_ref();
    let job: Job = match decode(body) {
        Ok(j) => j,
        Err(e) => {
            if receive_count <= 1 {
                report_rejected(agent, body, &e).await;
            }
            return JobOutcome::Rejected(Rejected::Malformed(e));
        }
    };
    let now = OffsetDateTime::now_utc();
    // Saturating: a deadline at the end of time is valid, and never past.
    let latest = job
        .deadline
        .checked_add(DEADLINE_GRACE)
        .unwrap_or(job.deadline);
    if now > latest {
        let why = Dropped::Expired {
            run_id: job.run_id.clone(),
            deadline: job.deadline,
            now,
        };
        tracing::error!(run_id = %job.run_id, error = %why, "job dropped");
        if receive_count <= 1 && job.account_id == agent.account_id() {
            report_failed(
                agent,
                &job.run_id,
                &job.account_id,
                &job.token,
                &job.results_queue_url,
                format!("job dropped by the agent: {why}"),
            )
            .await;
        }
        return JobOutcome::Dropped(why);
    }
    match agent.handle(&job).await {
        Ok(result) => JobOutcome::Done(Box::new(result)),
        Err(e @ AgentError::WrongAccount { .. }) => {
            JobOutcome::Rejected(Rejected::NotForThisAgent(e))
        }
        Err(e) => JobOutcome::Failed(e),
    }
}

/// Best effort: a Failed result for a job that did not validate, when its
/// body names a run, this account, a token and a results queue.
async fn report_rejected(agent: &Agent, body: &[u8], error: &ProtocolError) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let (Some(run_id), Some(account_id), Some(token), Some(queue)) = (
        field("run_id"),
        field("account_id"),
        field("token"),
        field("results_queue_url"),
    ) else {
        return;
    };
    // A report the coordinator would refuse as malformed is not sent.
    let token = Token(token);
    if account_id != agent.account_id()
        || !keyfleet_protocol::is_run_id(&run_id)
        || !token.is_well_formed()
    {
        return;
    }
    report_failed(
        agent,
        &run_id,
        &account_id,
        &token,
        &queue,
        format!("job rejected by the agent: {error}"),
    )
    .await;
}

/// Best effort: a Failed result naming `error`, for a job that was not run.
async fn report_failed(
    agent: &Agent,
    run_id: &str,
    account_id: &str,
    token: &Token,
    queue: &str,
    error: String,
) {
    let now = OffsetDateTime::now_utc();
    let result = AccountResult {
        v: VERSION,
        run_id: run_id.to_string(),
        account_id: account_id.to_string(),
        token: token.clone(),
        part: 1,
        parts: 1,
        account_alias: None,
        status: AccountStatus::Failed,
        error: Some(keyfleet_protocol::bound_text(&error)),
        dry_run: false,
        as_of: now,
        started_at: now,
        finished_at: now,
        scan_mode: Default::default(),
        api_calls: Default::default(),
        users: vec![],
        sealed: vec![],
    };
    let body = String::from_utf8(encode(&result)).expect("serde_json writes UTF-8");
    if let Err(e) = agent.deliver(queue, body).await {
        tracing::warn!(error = %e, "could not report a rejected job");
    }
}
