//! The SQS-triggered Lambda: parse each record, hand it to the one
//! per-message function ([`crate::message::handle_message`]), report
//! per-message failures so one bad job never retries the others.
//!
//! [`run_function`] is the whole Lambda process (the `agent` bootstrap and
//! `keyfleet lambda agent` both call it): JSON logs, configuration and
//! clients built once at init, then one batch per invocation.

use crate::message::{handle_message, JobOutcome, Rejected};
use crate::run::Agent;
use crate::AgentClients;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{service_fn, LambdaEvent};

/// The account an ARN names (`arn:aws:<service>:<region>:<account>:...`):
/// the owner of the queue a record came from, the account a function runs in.
pub fn arn_account(arn: &str) -> Option<&str> {
    arn.split(':')
        .nth(4)
        .filter(|a| keyfleet_protocol::is_account_id(a))
}

/// Handles one SQS batch.
pub async fn handle_batch(agent: &Agent, event: SqsEvent) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let outcome = handle_record(agent, &record).await;
        if let JobOutcome::Dropped(why) = &outcome {
            tracing::error!(message_id = %id, error = %why, "job dropped");
        }
        if let Some(reason) = outcome.failure() {
            tracing::error!(message_id = %id, error = %reason, "job failed");
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            failures.push(f);
        }
    }
    let mut resp = SqsBatchResponse::default();
    resp.batch_item_failures = failures;
    resp
}

async fn handle_record(agent: &Agent, record: &SqsMessage) -> JobOutcome {
    if let Some(owner) = record.event_source_arn.as_deref().and_then(arn_account) {
        if owner != agent.account_id() {
            return JobOutcome::Rejected(Rejected::ForeignQueue {
                queue_owner: owner.to_string(),
                agent: agent.account_id().to_string(),
            });
        }
    }
    let receive_count = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    handle_message(
        agent,
        record.body.as_deref().unwrap_or("").as_bytes(),
        receive_count,
    )
    .await
}

/// `RUST_LOG` (default `info`), except that the runtime's own event
/// logging never goes below `info`: at `trace`, `lambda_runtime` logs each
/// raw event, and an SQS event carries the job message with its job token.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    match "lambda_runtime::layers::api_response=info".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    }
}

/// The agent's Lambda process: configuration and clients are built once,
/// then each SQS batch goes to [`handle_batch`].
///
/// The account is the one the function runs in, read from its own ARN
/// (`arn:aws:lambda:<region>:<account>:function:<name>`): a job for any
/// other account is refused.
pub async fn run_function() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(log_filter())
        .with_current_span(false)
        .without_time()
        .init();
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
