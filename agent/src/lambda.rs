//! The SQS-triggered Lambda: each record goes to the one per-message
//! function ([`crate::message::handle_message`]); the batch plumbing (the
//! runner, partial batch failures, the JSON logs) is the shared
//! `keyfleet_lambda` crate's, written once for the three functions.
//!
//! [`run_function`] is the whole Lambda process (the `agent` bootstrap and
//! `keyfleet lambda agent` both call it): JSON logs, configuration and
//! clients built once at init, then one batch per invocation.

use crate::message::{handle_message, JobOutcome, Rejected};
use crate::run::Agent;
use crate::AgentClients;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use keyfleet_lambda::sqs::{receive_count, run_batch};
use lambda_runtime::{service_fn, LambdaEvent};

/// The account an ARN names (`arn:aws:<service>:<region>:<account>:...`):
/// the owner of the queue a record came from, the account a function runs in.
pub fn arn_account(arn: &str) -> Option<&str> {
    arn.split(':')
        .nth(4)
        .filter(|a| keyfleet_protocol::is_account_id(a))
}

/// How many jobs of one batch run at once: one. The jobs queue's mapping
/// hands the agent one record per invocation (`BatchSize: 1` in the
/// StackSet template), so a batch of several is a test's or a redrive's;
/// and every job of a batch is for this account, whose lease
/// ([`crate::lease`]) lets one run at a time: a second job run alongside
/// would only find the lease held and fail, coming back later with its
/// receive count up, one delivery nearer the dead-letter queue. One at a
/// time also answers a batch's failures in the order of its records.
pub const JOB_CONCURRENCY: usize = 1;

/// Handles one SQS batch: each record through `handle_record`, the
/// failed ones answered as batch item failures so that SQS retries them
/// alone.
pub async fn handle_batch(agent: &Agent, event: SqsEvent) -> SqsBatchResponse {
    run_batch(event, JOB_CONCURRENCY, |record| {
        handle_record(agent, record)
    })
    .await
}

/// One record: refused when it comes from another account's queue, else
/// handed to [`handle_message`] with its body and receive count. A dropped
/// job is logged and consumed; a job that failed (or was rejected) is
/// logged and comes back (`Err`, its reason).
async fn handle_record(agent: &Agent, record: SqsMessage) -> Result<(), String> {
    let id = record.message_id.as_deref().unwrap_or_default();
    let outcome = match foreign_queue(agent, &record) {
        Some(refused) => JobOutcome::Rejected(refused),
        None => {
            let body = record.body.as_deref().unwrap_or("").as_bytes();
            handle_message(agent, body, receive_count(&record)).await
        }
    };
    if let JobOutcome::Dropped(why) = &outcome {
        tracing::error!(message_id = %id, error = %why, "job dropped");
    }
    match outcome.failure() {
        Some(reason) => {
            tracing::error!(message_id = %id, error = %reason, "job failed");
            Err(reason)
        }
        None => Ok(()),
    }
}

/// A record from a queue of another account than the agent's is refused
/// before its body is read.
fn foreign_queue(agent: &Agent, record: &SqsMessage) -> Option<Rejected> {
    let owner = record.event_source_arn.as_deref().and_then(arn_account)?;
    (owner != agent.account_id()).then(|| Rejected::ForeignQueue {
        queue_owner: owner.to_string(),
        agent: agent.account_id().to_string(),
    })
}

/// The agent's Lambda process: configuration and clients are built once,
/// then each SQS batch goes to [`handle_batch`].
///
/// The account is the one the function runs in, read from its own ARN
/// (`arn:aws:lambda:<region>:<account>:function:<name>`): a job for any
/// other account is refused.
pub async fn run_function() -> Result<(), lambda_runtime::Error> {
    keyfleet_lambda::logs::init_json_logs();
    let config = crate::config::from_env()?;
    let margin = crate::config::time_margin()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let clients = AgentClients::new(&sdk);
    let agent_for = |account: &str| Agent::new(clients.clone(), config.clone(), account);
    // Boxed: the runtime's future is deep enough to overflow the compiler's
    // layout query limit when embedded in a caller's future.
    Box::pin(lambda_runtime::run(service_fn(
        |event: LambdaEvent<SqsEvent>| {
            let account = event
                .context
                .invoked_function_arn
                .split(':')
                .nth(4)
                .unwrap_or_default()
                .to_string();
            let budget = crate::budget::Budget::lambda(event.context.deadline, margin);
            let agent = agent_for(&account).with_budget(budget);
            async move { Ok::<_, lambda_runtime::Error>(handle_batch(&agent, event.payload).await) }
        },
    )))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_is_read_from_the_arn() {
        assert_eq!(
            arn_account("arn:aws:sqs:us-east-1:111122223333:keyfleet-jobs"),
            Some("111122223333")
        );
        assert_eq!(
            arn_account("arn:aws:lambda:us-east-1:111122223333:function:keyfleet-agent"),
            Some("111122223333")
        );
        assert_eq!(arn_account("arn:aws:sqs:us-east-1:bad:q"), None);
        assert_eq!(arn_account(""), None);
    }
}
