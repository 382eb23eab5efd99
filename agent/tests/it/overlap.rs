//! Two runs never overlap in one account (the lease, `keyfleet_agent::lease`).

use crate::fixture::*;
use keyfleet_agent::{handle_message, AgentError, FaultPoint, JobOutcome};
use keyfleet_protocol::{AccountResult, Policy};
use std::collections::BTreeSet;
use std::sync::{mpsc, Arc, Mutex};

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

/// A run that finds the lease held gives up at once and touches nothing;
/// the holder (parked mid-rotation until then) finishes normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_while_one_holds_the_account_gives_up_without_touching_iam() {
    let mut acct = new_account().await;
    acct.populate(&due_users()).await;
    // The first agent stops after writing its first intent and waits there
    // until the second one has been turned away.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (parked_tx, parked_rx) = mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    let parked_tx = Mutex::new(Some(parked_tx));
    let holder = acct
        .agent
        .clone()
        .with_fault_hook(Arc::new(move |point, _user| {
            if point == FaultPoint::AfterIntent {
                if let Some(tx) = parked_tx.lock().unwrap().take() {
                    tx.send(()).unwrap();
                    go_rx.lock().unwrap().recv().unwrap();
                }
            }
            false
        }));
    let first = acct.job(Policy::default());
    let body = serde_json::to_vec(&first).unwrap();
    let running = tokio::spawn(async move { handle_message(&holder, body, 1).await });
    tokio::task::spawn_blocking(move || parked_rx.recv().unwrap())
        .await
        .unwrap();

    // An emergency-free second run (say, the schedule meeting a retry).
    let second = acct.job(Policy::default());
    let outcome = handle_message(&acct.agent, serde_json::to_vec(&second).unwrap(), 1).await;
    match &outcome {
        JobOutcome::Failed(AgentError::Lease(e)) => {
            assert!(e.to_string().contains(&first.run_id), "{e}")
        }
        other => panic!("the second run must give up: {other:?}"),
    }
    assert!(outcome.failure().is_some(), "a busy job comes back later");
    for i in 0..3 {
        assert_eq!(acct.keys(&format!("overlap-{i}")).await.len(), 1);
    }

    go_tx.send(()).unwrap();
    let outcome = running.await.unwrap();
    assert!(matches!(outcome, JobOutcome::Done(_)), "{outcome:?}");
    let results = acct.drain_results().await;
    assert_eq!(results.len(), 1, "only the holder reported");
    each_key_created_once_and_sent(&acct, &results).await;

    // Released: the next run goes ahead (and has nothing to create).
    let third = acct.job(Policy::default());
    let outcome = handle_message(&acct.agent, serde_json::to_vec(&third).unwrap(), 1).await;
    assert!(matches!(outcome, JobOutcome::Done(_)), "{outcome:?}");
    let results = acct.drain_results().await;
    assert!(results[0].sealed.is_empty());
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
