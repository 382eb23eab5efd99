//! Emergency rotation (`keyfleet rotate`, `{"action":"rotate"}`): one user,
//! a new key now, the old one deactivated at once when asked.

use crate::fixture::*;
use keyfleet_protocol::{AccountStatus, JobMode, Policy, Verdict};

#[tokio::test]
async fn emergency_rotation_replaces_and_deactivates_at_once() {
    let mut acct = new_account().await;
    acct.populate(&[
        user("leaked", vec![key(10, true, Some(0))]),
        user("bystander", vec![key(85, true, Some(1))]),
    ])
    .await;
    let old = acct.created["leaked"][0].clone();
    let mut job = acct.job(Policy::default());
    job.mode = JobMode::Rotate {
        user: "leaked".into(),
        deactivate_old: true,
        key_id: None,
    };
    let result = deliver(&acct.agent, &job).await.unwrap();
    assert_eq!(result.status, AccountStatus::Ok);
    assert_eq!(result.users.len(), 1, "only the named user is touched");
    assert_eq!(result.users[0].verdict, Verdict::Rotated);
    let keys = acct.keys("leaked").await;
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], (old, false), "old key deactivated at once");
    assert!(keys[1].1);
    assert_eq!(result.sealed.len(), 1);
    assert_eq!(result.sealed[0].access_key_id, keys[1].0);
    // The bystander, due for a scheduled rotation, was left alone.
    assert_eq!(acct.keys("bystander").await.len(), 1);

    let mut job = acct.job(Policy::default());
    job.mode = JobMode::Rotate {
        user: "nobody".into(),
        deactivate_old: false,
        key_id: None,
    };
    let result = deliver(&acct.agent, &job).await.unwrap();
    assert_eq!(result.status, AccountStatus::Failed);
    assert!(result.error.as_deref().unwrap().contains("nobody"));
}
