//! The agent's side of the bad-input corpus: every kind of broken, foreign
//! or stale job, in one batch with a good one. Each is refused with a named
//! reason and never stops the good job.
//!
//! How each ends (see `keyfleet_agent::message`): a malformed job or one
//! for another account is a batch item failure, so it reaches the jobs
//! queue's DLQ after `maxReceiveCount` (the DLQ's alarm is the alert); a
//! job past its deadline is dropped (deleted) and reported to the
//! coordinator as a failed result. Neither touches IAM.

use crate::fixture::*;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use keyfleet_agent::lambda::handle_batch;
use keyfleet_agent::{handle_message, JobOutcome};
use keyfleet_protocol::{AccountStatus, Policy, MAX_MESSAGE_BYTES};
use time::{Duration, OffsetDateTime};

fn record(id: &str, body: String, account: &str) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.into());
    m.body = Some(body);
    m.event_source_arn = Some(format!("arn:aws:sqs:us-east-1:{account}:keyfleet-jobs"));
    m.attributes
        .insert("ApproximateReceiveCount".into(), "1".into());
    m
}

/// `job` as JSON with `edit` applied.
fn edited(job: &keyfleet_protocol::Job, edit: impl Fn(&mut serde_json::Value)) -> String {
    let mut v = serde_json::to_value(job).expect("job is JSON");
    edit(&mut v);
    v.to_string()
}

#[tokio::test]
async fn every_bad_job_is_refused_by_name_and_the_good_one_still_runs() {
    let mut acct = new_account().await;
    acct.populate(&[user("corpus-user", vec![key(85, true, Some(1))])])
        .await;
    let before = acct.keys("corpus-user").await;
    let job = || acct.job(Policy::default());
    let good = job();
    let stale = {
        let mut j = job();
        j.issued_at = OffsetDateTime::now_utc() - Duration::days(3);
        j.deadline = j.issued_at + Duration::hours(2);
        j
    };
    let full = serde_json::to_string(&job()).unwrap();
    // A body of exactly SQS's limit: a job padded with a field nobody knows.
    let at_limit = {
        let pad = MAX_MESSAGE_BYTES - full.len() - r#","pad":"""#.len();
        let s = format!(
            "{},\"pad\":\"{}\"}}",
            &full[..full.len() - 1],
            "x".repeat(pad)
        );
        assert_eq!(s.len(), MAX_MESSAGE_BYTES);
        s
    };
    // (message id, body, what the refusal must name)
    let cases: Vec<(&str, String, &str)> = vec![
        ("truncated", full[..full.len() / 2].to_string(), "not JSON"),
        (
            "wrong type",
            edited(&job(), |v| v["deadline"] = 5.into()),
            "deadline",
        ),
        (
            "unknown version",
            edited(&job(), |v| v["v"] = 2.into()),
            "unsupported protocol version 2",
        ),
        (
            "no version",
            edited(&job(), |v| {
                v.as_object_mut().unwrap().remove("v");
            }),
            "no version",
        ),
        ("at the size limit", at_limit, "unknown field `pad`"),
        (
            "malformed token",
            edited(&job(), |v| v["token"] = "not-a-token".into()),
            "token",
        ),
        (
            "unknown mode",
            edited(&job(), |v| v["mode"] = serde_json::json!({"kind": "wipe"})),
            "mode",
        ),
        (
            "rotate a bad user name",
            edited(&job(), |v| {
                v["mode"] = serde_json::json!({"kind": "rotate", "user": "a b"})
            }),
            "mode.user",
        ),
        (
            "another account",
            edited(&job(), |v| v["account_id"] = "999999999999".into()),
            "this agent serves account",
        ),
        (
            "deadline before issue",
            edited(&job(), |v| v["deadline"] = "2020-01-01T00:00:00Z".into()),
            "deadline",
        ),
        ("an array", "[]".into(), "not a JSON object"),
        ("empty", String::new(), "not JSON"),
        ("the good job", serde_json::to_string(&good).unwrap(), ""),
        ("stale", serde_json::to_string(&stale).unwrap(), ""),
    ];
    // The reason each is refused for, from the per-message function.
    for (what, body, named) in &cases {
        if named.is_empty() {
            continue;
        }
        // Run one at a time first, to see the reason (receive count 2: not
        // reported to the coordinator, so the batch below reports once).
        let outcome = handle_message(&acct.agent, body.as_bytes(), 2).await;
        let reason = outcome
            .failure()
            .unwrap_or_else(|| panic!("{what} was accepted: {outcome:?}"));
        assert!(
            reason.contains(named),
            "{what}: `{reason}` does not name `{named}`"
        );
    }
    // Non-UTF-8 bytes cannot travel on SQS; the function refuses them too.
    let outcome = handle_message(&acct.agent, &b"{\"v\":1,\xff\xfe}"[..], 1).await;
    assert!(
        matches!(&outcome, JobOutcome::Rejected(_))
            && outcome.failure().unwrap().contains("not JSON"),
        "{outcome:?}"
    );
    // Longer than SQS carries.
    let outcome = handle_message(&acct.agent, vec![b' '; MAX_MESSAGE_BYTES + 1], 1).await;
    assert!(
        outcome.failure().unwrap().contains("more than SQS carries"),
        "{outcome:?}"
    );
    assert_eq!(
        acct.keys("corpus-user").await,
        before,
        "a refused job touched IAM"
    );

    // All in one batch: only the bad ones fail; the stale one is dropped,
    // not failed; the good one runs.
    let mut event = SqsEvent::default();
    event.records = cases
        .iter()
        .map(|(id, body, _)| record(id, body.clone(), &acct.account_id))
        .collect();
    let resp = handle_batch(&acct.agent, event).await;
    let failed: Vec<&str> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let expected: Vec<&str> = cases
        .iter()
        .filter(|(_, _, named)| !named.is_empty())
        .map(|(id, _, _)| *id)
        .collect();
    assert_eq!(failed, expected);

    let results = acct.drain_results().await;
    let good_result = results
        .iter()
        .find(|r| r.run_id == good.run_id)
        .expect("the good job ran");
    assert_eq!(good_result.status, AccountStatus::Ok);
    assert_eq!(
        good_result.sealed.len(),
        1,
        "one new key, from the good job"
    );
    assert_eq!(acct.keys("corpus-user").await.len(), 2);
    let stale_result = results
        .iter()
        .find(|r| r.run_id == stale.run_id)
        .expect("the stale job is reported");
    assert_eq!(stale_result.status, AccountStatus::Failed);
    assert!(stale_result.users.is_empty() && stale_result.sealed.is_empty());
    assert!(
        stale_result.error.as_deref().unwrap().contains("expired"),
        "{:?}",
        stale_result.error
    );
}

/// A job whose deadline is the last instant a date can hold: valid, and
/// run; the grace added to its deadline saturates instead of overflowing.
#[tokio::test]
async fn a_deadline_at_the_end_of_time_neither_panics_nor_drops_the_job() {
    let mut acct = new_account().await;
    acct.populate(&[user("end-of-time", vec![key(10, true, Some(1))])])
        .await;
    let mut job = acct.job(Policy::default());
    job.deadline = time::macros::datetime!(9999-12-31 23:59:59 UTC);
    let body = serde_json::to_string(&job).unwrap();
    match handle_message(&acct.agent, body, 1).await {
        JobOutcome::Done(result) => assert_eq!(result.status, AccountStatus::Ok),
        other => panic!("{other:?}"),
    }
}
