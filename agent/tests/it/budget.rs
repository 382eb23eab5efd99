//! An agent whose time runs short stops starting users, sends what it has
//! and reports the rest as deferred: no key is created without travelling
//! in the result, and the next run picks up the deferred users.
//!
//! The budget here runs out after a number of users (`Budget::users`), not
//! at a time, so the test is deterministic; `Budget::lambda` (the
//! invocation's deadline less `KEYFLEET_TIME_MARGIN`) has its own unit
//! tests.

use crate::fixture::*;
use keyfleet_agent::{handle_message, Budget, JobOutcome};
use keyfleet_protocol::{AccountStatus, Policy, Verdict};

#[tokio::test]
async fn an_agent_out_of_time_defers_users_and_creates_no_key_it_does_not_send() {
    let mut acct = new_account().await;
    let names: Vec<String> = (0..6).map(|i| format!("budget-{i}")).collect();
    let mut specs: Vec<_> = names
        .iter()
        .map(|n| user(n.as_str(), vec![key(85, true, Some(1))]))
        .collect();
    // Nothing due: evaluated whatever the budget (no IAM call needed).
    specs.push(user("budget-fresh", vec![key(5, true, Some(1))]));
    acct.populate(&specs).await;

    let short = acct.agent.clone().with_budget(Budget::users(2));
    let job = acct.job(Policy::default());
    let outcome = handle_message(&short, serde_json::to_vec(&job).unwrap(), 1).await;
    assert!(matches!(outcome, JobOutcome::Done(_)), "{outcome:?}");
    let results = acct.drain_results().await;
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!(
        r.status,
        AccountStatus::Partial,
        "deferred users make it partial"
    );
    assert_eq!(r.users.len(), 7, "every user is in the report");
    let verdict = |n: &str| r.users.iter().find(|u| u.user_name == n).unwrap().verdict;
    assert_eq!(verdict("budget-fresh"), Verdict::Compliant);
    let rotated: Vec<&String> = names
        .iter()
        .filter(|n| verdict(n) == Verdict::Rotated)
        .collect();
    let deferred: Vec<&String> = names
        .iter()
        .filter(|n| verdict(n) == Verdict::Deferred)
        .collect();
    assert_eq!((rotated.len(), deferred.len()), (2, 4), "{:?}", r.users);
    for n in &deferred {
        let u = r.users.iter().find(|u| &u.user_name == *n).unwrap();
        assert!(u.actions.is_empty(), "{u:?}");
        assert!(
            u.note.as_deref().unwrap().contains("`rotated` was due"),
            "{u:?}"
        );
        assert_eq!(acct.keys(n).await.len(), 1, "{n}: nothing done");
    }
    // Every key created is in the result, sealed to the coordinator.
    for n in &rotated {
        let keys = acct.keys(n).await;
        assert_eq!(keys.len(), 2, "{n}");
        let sealed = r
            .sealed
            .iter()
            .find(|s| &s.user_name == *n)
            .expect("sealed");
        assert!(keys.iter().any(|(id, _)| id == &sealed.access_key_id));
    }
    assert_eq!(r.sealed.len(), 2);

    // The next run, with time enough, rotates the deferred users only.
    let job = acct.job(Policy::default());
    let outcome = handle_message(&acct.agent, serde_json::to_vec(&job).unwrap(), 1).await;
    assert!(matches!(outcome, JobOutcome::Done(_)), "{outcome:?}");
    let r = acct.drain_results().await.pop().unwrap();
    assert_eq!(r.status, AccountStatus::Ok);
    let sealed: Vec<&str> = r.sealed.iter().map(|s| s.user_name.as_str()).collect();
    let mut expected: Vec<&str> = deferred.iter().map(|s| s.as_str()).collect();
    let mut got = sealed.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    for n in &names {
        assert_eq!(acct.keys(n).await.len(), 2, "{n}");
    }
}
