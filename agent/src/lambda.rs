//! The SQS-triggered Lambda handler: parse each record, run the job, report
//! per-message failures so one bad job never retries the others.
//!
//! A job that fails validation is returned as a batch item failure: the
//! queue's redrive policy moves it to the dead-letter queue after its
//! `maxReceiveCount`, so it is never retried forever. On its first receive
//! the agent also tells the coordinator (a Failed result) when the body
//! carries enough to address one, so the run's report shows the account as
//! failed with the reason instead of waiting for the deadline.

use crate::run::Agent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use keyfleet_protocol::{
    decode, encode, AccountResult, AccountStatus, Job, ProtocolError, Token, VERSION,
};
use time::OffsetDateTime;

/// The account that owns the queue a record came from
/// (`arn:aws:sqs:<region>:<account>:<name>`).
pub fn queue_account(arn: &str) -> Option<&str> {
    arn.split(':')
        .nth(4)
        .filter(|a| keyfleet_protocol::is_account_id(a))
}

/// Handles one SQS batch.
pub async fn handle_batch(agent: &Agent, event: SqsEvent) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        if let Err(reason) = handle_record(agent, &record).await {
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

async fn handle_record(agent: &Agent, record: &SqsMessage) -> Result<(), String> {
    let body = record.body.as_deref().unwrap_or("");
    if let Some(owner) = record.event_source_arn.as_deref().and_then(queue_account) {
        if owner != agent.account_id() {
            return Err(format!(
                "record from a queue of account {owner}, agent serves {}",
                agent.account_id()
            ));
        }
    }
    let job: Job = match decode(body.as_bytes()) {
        Ok(j) => j,
        Err(e) => {
            let first = record
                .attributes
                .get("ApproximateReceiveCount")
                .map(|c| c == "1")
                .unwrap_or(true);
            if first {
                report_rejected(agent, body, &e).await;
            }
            return Err(format!("rejected job: {e}"));
        }
    };
    agent
        .handle(&job)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Best effort: a Failed result for a job that did not validate, when its
/// body names a run, this account, a token and a results queue.
async fn report_rejected(agent: &Agent, body: &str, error: &ProtocolError) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
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
    if account_id != agent.account_id() {
        return;
    }
    let now = OffsetDateTime::now_utc();
    let result = AccountResult {
        v: VERSION,
        run_id,
        account_id,
        token: Token(token),
        part: 1,
        parts: 1,
        account_alias: None,
        status: AccountStatus::Failed,
        error: Some(format!("job rejected by the agent: {error}")),
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
    if let Err(e) = agent
        .clients()
        .sqs
        .send_message()
        .queue_url(agent.results_queue(&queue))
        .message_body(body)
        .send()
        .await
    {
        tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "could not report a rejected job");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_account_is_read_from_the_arn() {
        assert_eq!(
            queue_account("arn:aws:sqs:us-east-1:111122223333:keyfleet-jobs"),
            Some("111122223333")
        );
        assert_eq!(queue_account("arn:aws:sqs:us-east-1:bad:q"), None);
        assert_eq!(queue_account(""), None);
    }
}
