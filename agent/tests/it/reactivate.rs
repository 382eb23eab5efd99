//! Reactivation (`keyfleet reactivate`, `{"action":"reactivate"}`, the
//! API's reactivate): only a key keyfleet deactivated and has not deleted
//! is switched back on; the protected record remembers it, so the next
//! scheduled run leaves it active for a fresh notice period.

use crate::fixture::*;
use keyfleet_protocol::{AccountStatus, Action, JobMode, Notice, Outcome, Policy, Verdict};

fn reactivate(acct: &TestAccount, user: &str, key_id: &str) -> keyfleet_protocol::Job {
    let mut job = acct.job(Policy::default());
    job.mode = JobMode::Reactivate {
        user: user.into(),
        key_id: key_id.into(),
    };
    job
}

#[tokio::test]
async fn a_key_keyfleet_deactivated_is_switched_back_on_and_kept_for_a_notice_period() {
    let mut acct = new_account().await;
    acct.populate(&[
        // The older key is past its deactivation date; its replacement has
        // had the notice period.
        user("app", vec![key(95, true, Some(20)), key(15, true, Some(1))]),
        // An inactive key keyfleet never deactivated.
        user("foreign", vec![key(40, false, Some(30))]),
    ])
    .await;
    let old = acct.created["app"][0].clone();
    let new = acct.created["app"][1].clone();

    let scheduled = deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    let app = scheduled
        .users
        .iter()
        .find(|u| u.user_name == "app")
        .unwrap();
    assert_eq!(app.verdict, Verdict::Deactivated, "{app:?}");
    assert_eq!(
        acct.keys("app").await,
        vec![(old.clone(), false), (new.clone(), true)]
    );

    let result = deliver(&acct.agent, &reactivate(&acct, "app", &old))
        .await
        .unwrap();
    assert_eq!(result.status, AccountStatus::Ok, "{result:?}");
    assert_eq!(result.users.len(), 1, "only the named user");
    let u = &result.users[0];
    assert_eq!(u.verdict, Verdict::Reactivated, "{u:?}");
    assert_eq!(
        u.actions[0].action,
        Action::Reactivate {
            key_id: old.clone()
        }
    );
    assert!(matches!(u.actions[0].result, Outcome::Done { .. }));
    let Action::Notify {
        notice: Notice::Reactivated { until, .. },
    } = &u.actions[1].action
    else {
        panic!("no reactivation notice: {u:?}");
    };
    let in_days = (*until - time::OffsetDateTime::now_utc()).whole_days();
    assert!(
        (9..=10).contains(&in_days),
        "a fresh notice period: {until}"
    );
    assert_eq!(
        acct.keys("app").await,
        vec![(old.clone(), true), (new.clone(), true)]
    );

    // The next scheduled run keeps it active and reminds the owner.
    let next = deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    let app = next.users.iter().find(|u| u.user_name == "app").unwrap();
    assert_eq!(app.verdict, Verdict::PendingDeactivation, "{app:?}");
    assert!(
        app.note
            .as_deref()
            .is_some_and(|n| n.contains(&format!("key {old} reactivated by the security team"))),
        "the report shows the reactivation: {app:?}"
    );
    assert!(
        app.actions.iter().all(|a| !a.action.mutates_iam()),
        "{:?}",
        app.actions
    );
    assert_eq!(acct.keys("app").await[0], (old.clone(), true));

    // Refusals name the reason: an active key, a key keyfleet did not
    // deactivate, a key that does not exist (deleted).
    let foreign_key = acct.created["foreign"][0].clone();
    for (user, key, why) in [
        ("app", old.as_str(), "is active"),
        (
            "foreign",
            foreign_key.as_str(),
            "not deactivated by keyfleet",
        ),
        ("app", "AKIAGONE000000000000", "cannot be reactivated"),
    ] {
        let r = deliver(&acct.agent, &reactivate(&acct, user, key))
            .await
            .unwrap();
        let u = &r.users[0];
        assert_eq!(u.verdict, Verdict::Failed, "{user} {key}: {u:?}");
        assert!(
            u.error.as_deref().is_some_and(|e| e.contains(why)),
            "{user} {key}: {:?}",
            u.error
        );
        assert!(u.actions.is_empty());
    }
    assert_eq!(acct.keys("foreign").await, vec![(foreign_key, false)]);
}

/// keyfleet deactivated the key, the security team switched it back on,
/// then a person deactivated it by hand, outside keyfleet. Only the latest
/// deactivation counts, and it was not keyfleet's: a reactivation is
/// refused and the key stays off.
#[tokio::test]
async fn a_key_deactivated_by_hand_after_a_reactivation_is_not_switched_back_on() {
    let mut acct = new_account().await;
    acct.populate(&[user(
        "app",
        vec![key(95, true, Some(20)), key(15, true, Some(1))],
    )])
    .await;
    let old = acct.created["app"][0].clone();
    deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    assert!(!acct.keys("app").await[0].1, "deactivated by keyfleet");
    let r = deliver(&acct.agent, &reactivate(&acct, "app", &old))
        .await
        .unwrap();
    assert_eq!(r.users[0].verdict, Verdict::Reactivated, "{:?}", r.users);
    assert!(acct.keys("app").await[0].1, "switched back on");
    // A person switches it off by hand.
    acct.iam
        .update_access_key()
        .user_name("app")
        .access_key_id(&old)
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .unwrap();

    let r = deliver(&acct.agent, &reactivate(&acct, "app", &old))
        .await
        .unwrap();
    let u = &r.users[0];
    assert_eq!(u.verdict, Verdict::Failed, "{u:?}");
    let err = u.error.as_deref().unwrap_or_default();
    assert!(
        err.contains(&old) && err.contains("outside keyfleet"),
        "{err}"
    );
    assert!(u.actions.is_empty(), "{:?}", u.actions);
    assert!(!acct.keys("app").await[0].1, "the key stays off");
}
