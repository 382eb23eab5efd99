//! The Lambda handler: per-message batch failures, rejected jobs reported
//! once, jobs for another account refused.

use crate::fixture::*;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use keyfleet_agent::lambda::handle_batch;
use keyfleet_protocol::{AccountStatus, Policy};

fn record(id: &str, body: String, receive_count: &str, account: &str) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.into());
    m.body = Some(body);
    m.event_source_arn = Some(format!("arn:aws:sqs:us-east-1:{account}:keyfleet-jobs"));
    m.attributes
        .insert("ApproximateReceiveCount".into(), receive_count.into());
    m
}

#[tokio::test]
async fn bad_job_fails_alone_and_is_reported_once() {
    let mut acct = new_account().await;
    acct.populate(&[user("lambda-user", vec![key(85, true, Some(1))])])
        .await;
    let good = acct.job(Policy::default());
    let mut bad = serde_json::to_value(acct.job(Policy::default())).unwrap();
    bad["policy"]["delete_after"] = "1d".into(); // contradicts deactivate_after
    let bad_run = bad["run_id"].as_str().unwrap().to_string();

    let mut event = SqsEvent::default();
    event.records = vec![
        record("m-bad", bad.to_string(), "1", &acct.account_id),
        record(
            "m-good",
            serde_json::to_string(&good).unwrap(),
            "1",
            &acct.account_id,
        ),
        record("m-garbage", "{not json".into(), "1", &acct.account_id),
    ];
    let resp = handle_batch(&acct.agent, event).await;
    let failed: Vec<&str> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m-bad", "m-garbage"], "only the bad messages fail");

    let results = acct.drain_results().await;
    let good_result = results
        .iter()
        .find(|r| r.run_id == good.run_id)
        .expect("good job ran");
    assert_eq!(good_result.status, AccountStatus::Ok);
    assert_eq!(good_result.sealed.len(), 1);
    let rejected = results
        .iter()
        .find(|r| r.run_id == bad_run)
        .expect("rejection reported");
    assert_eq!(rejected.status, AccountStatus::Failed);
    assert!(
        rejected.error.as_deref().unwrap().contains("policy"),
        "{:?}",
        rejected.error
    );

    // A redelivery of the bad job fails again but is not reported again.
    let mut event = SqsEvent::default();
    event.records = vec![record("m-bad", bad.to_string(), "2", &acct.account_id)];
    let resp = handle_batch(&acct.agent, event).await;
    assert_eq!(resp.batch_item_failures.len(), 1);
    assert!(acct.drain_results().await.is_empty(), "reported once only");
}

#[tokio::test]
async fn job_for_another_account_is_refused() {
    let acct = new_account().await;
    let mut job = acct.job(Policy::default());
    job.account_id = "999999999999".into();
    let mut event = SqsEvent::default();
    event.records = vec![record(
        "m1",
        serde_json::to_string(&job).unwrap(),
        "1",
        &acct.account_id,
    )];
    let resp = handle_batch(&acct.agent, event).await;
    assert_eq!(resp.batch_item_failures.len(), 1);
    assert!(acct.drain_results().await.is_empty());
    // A record from another account's queue is refused before parsing.
    let mut event = SqsEvent::default();
    event.records = vec![record(
        "m2",
        serde_json::to_string(&acct.job(Policy::default())).unwrap(),
        "1",
        "999999999999",
    )];
    assert_eq!(
        handle_batch(&acct.agent, event)
            .await
            .batch_item_failures
            .len(),
        1
    );
    assert!(acct.drain_results().await.is_empty());
}
