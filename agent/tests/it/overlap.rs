//! Two runs never overlap in one account (the lease, `keyfleet_agent::lease`).

use crate::fixture::*;
use keyfleet_agent::{handle_message, lease, AgentError, JobOutcome};
use keyfleet_protocol::{AccountResult, Policy};
use std::collections::BTreeSet;
use std::sync::Arc;

fn due_users() -> Vec<keyfleet_testkit::seed::UserSpec> {
    (0..3)
        .map(|i| user(format!("overlap-{i}"), vec![key(85, true, Some(1))]))
        .collect()
}

/// Every user has exactly two keys (one created, none twice) and every new
/// key travels, sealed, in exactly one result.
async fn each_key_created_once_and_sent(acct: &TestAccount, results: &[AccountResult]) {
    let sealed: Vec<&str> = results
        .iter()
        .flat_map(|r| r.sealed.iter().map(|s| s.access_key_id.as_str()))
        .collect();
    let unique: BTreeSet<&str> = sealed.iter().copied().collect();
    assert_eq!(unique.len(), sealed.len(), "a key sealed twice: {sealed:?}");
    for i in 0..3 {
        let name = format!("overlap-{i}");
        let keys = acct.keys(&name).await;
        assert_eq!(keys.len(), 2, "{name}: one new key, not two: {keys:?}");
        let new = &keys[1].0;
        assert!(
            unique.contains(new.as_str()),
            "{name}: {new} was never sent"
        );
    }
}

/// A run that finds the lease held (by a run still going: taken here
/// through the agent's own lease module, so nothing has to be parked
/// mid-run) gives up at once and touches nothing; once the holder releases
/// it, the next run goes ahead.
#[tokio::test]
async fn a_second_run_while_one_holds_the_account_gives_up_without_touching_iam() {
    let mut acct = new_account().await;
    acct.populate(&due_users()).await;
    let sm = &acct.agent.clients().secrets;
    let table = &acct.table().await;
    let until = time::OffsetDateTime::now_utc() + time::Duration::minutes(15);
    let held = lease::acquire(table, sm, "run-holding", until)
        .await
        .expect("a free lease is taken");
    // A second taker is refused while it is held.
    match lease::acquire(table, sm, "run-other", until).await {
        Err(lease::LeaseError::Busy { run_id, .. }) => assert_eq!(run_id, "run-holding"),
        other => panic!("{other:?}"),
    }

    let job = acct.job(Policy::default());
    let outcome = handle_message(&acct.agent, serde_json::to_vec(&job).unwrap(), 1).await;
    match &outcome {
        JobOutcome::Failed(AgentError::Lease(e)) => {
            assert!(e.to_string().contains("run-holding"), "{e}")
        }
        other => panic!("the run must give up: {other:?}"),
    }
    assert!(outcome.failure().is_some(), "a busy job comes back later");
    for i in 0..3 {
        assert_eq!(acct.keys(&format!("overlap-{i}")).await.len(), 1);
    }
    assert!(acct.drain_results().await.is_empty(), "nothing sent");

    held.release(table).await;
    let outcome = handle_message(&acct.agent, serde_json::to_vec(&job).unwrap(), 2).await;
    assert!(matches!(outcome, JobOutcome::Done(_)), "{outcome:?}");
    let results = acct.drain_results().await;
    assert_eq!(results.len(), 1);
    each_key_created_once_and_sent(&acct, &results).await;
    // And the run released it in turn.
    let again = lease::acquire(table, sm, "run-after", until)
        .await
        .expect("released");
    again.release(table).await;
}

/// A lease whose holder died (it expired) is taken over.
#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let acct = new_account().await;
    let sm = &acct.agent.clients().secrets;
    let table = &acct.table().await;
    let past = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let _dead = lease::acquire(table, sm, "run-dead", past)
        .await
        .expect("taken");
    let until = time::OffsetDateTime::now_utc() + time::Duration::minutes(15);
    let live = lease::acquire(table, sm, "run-live", until)
        .await
        .expect("an expired lease is taken over");
    match lease::acquire(table, sm, "run-third", until).await {
        Err(lease::LeaseError::Busy { run_id, .. }) => assert_eq!(run_id, "run-live"),
        other => panic!("{other:?}"),
    }
    live.release(table).await;
}

/// The same job delivered to two agents at the same moment: whichever way
/// they interleave, each key is created once and the results sent describe
/// what IAM holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_job_delivered_twice_at_once_creates_each_key_once() {
    let mut acct = new_account().await;
    acct.populate(&due_users()).await;
    let body = serde_json::to_vec(&acct.job(Policy::default())).unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let (agent, body, barrier) = (acct.agent.clone(), body.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                handle_message(&agent, body, 1).await
            })
        })
        .collect();
    let mut done = 0;
    for r in runs {
        match r.await.unwrap() {
            JobOutcome::Done(_) => done += 1,
            JobOutcome::Failed(AgentError::Lease(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(done >= 1, "at least one of the two ran");
    let results = acct.drain_results().await;
    each_key_created_once_and_sent(&acct, &results).await;
    // What reached the coordinator describes IAM: a result that created
    // nothing saw the keys the other had created.
    for r in &results {
        for u in &r.users {
            let in_iam = acct.keys(&u.user_name).await;
            if r.sealed.iter().any(|s| s.user_name == u.user_name) {
                assert_eq!(u.keys.len(), 1, "{u:?}");
            } else {
                assert_eq!(u.keys.len(), in_iam.len(), "{u:?}");
            }
        }
    }
}
