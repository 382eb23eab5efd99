//! A job whose result was lost (the agent stopped before or right after
//! sending it) is delivered again with the same run id. The retry reports
//! what its first attempt did, from the protected record: the action done
//! and the owner's notice, exactly as the first attempt would have sent
//! them; it neither refuses (the key is already switched) nor reports a
//! skip that drops the notice, and it never does the job a second time.

use crate::fixture::*;
use keyfleet_agent::{FaultHook, FaultPoint};
use keyfleet_protocol::{
    AccountResult, Action, ActionRecord, Job, JobMode, Notice, Outcome, Policy, UserReport, Verdict,
};
use std::sync::Arc;

/// The first attempt stops at `point` (after every user is done).
async fn first_attempt(acct: &TestAccount, job: &Job, point: FaultPoint) {
    let hook: FaultHook = Arc::new(move |p, _| p == point);
    let err = deliver(&acct.agent.clone().with_fault_hook(hook), job)
        .await
        .expect_err("injected crash");
    assert!(
        err.to_string().contains("injected crash"),
        "{point:?}: {err}"
    );
}

fn row<'a>(result: &'a AccountResult, user: &str) -> &'a UserReport {
    result
        .users
        .iter()
        .find(|u| u.user_name == user)
        .unwrap_or_else(|| panic!("no row for {user}: {:?}", result.users))
}

fn done(action: Action) -> ActionRecord {
    ActionRecord {
        action,
        result: Outcome::Done { key_id: None },
    }
}

fn notify(notice: Notice) -> ActionRecord {
    done(Action::Notify { notice })
}

/// The result the first attempt sent, when it sent one (`AfterSend`).
async fn sent_by_first(acct: &TestAccount, job: &Job) -> Option<AccountResult> {
    acct.drain_results()
        .await
        .into_iter()
        .find(|r| r.run_id == job.run_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_reactivation_reports_the_reactivation_and_its_notice() {
    for point in [FaultPoint::BeforeSend, FaultPoint::AfterSend] {
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
        assert!(!acct.keys("app").await[0].1, "{point:?}: deactivated");
        acct.drain_results().await;

        let mut job = acct.job(Policy::default());
        job.mode = JobMode::Reactivate {
            user: "app".into(),
            key_id: old.clone(),
        };
        first_attempt(&acct, &job, point).await;
        assert!(acct.keys("app").await[0].1, "{point:?}: switched back on");
        let first = sent_by_first(&acct, &job).await;

        let retry = redeliver(&acct.agent, &job).await.expect("retry");
        let u = row(&retry, "app");
        assert_eq!(u.verdict, Verdict::Reactivated, "{point:?}: {u:?}");
        assert_eq!(u.error, None, "{point:?}");
        assert_eq!(u.actions.len(), 2, "{point:?}: {:?}", u.actions);
        assert_eq!(
            u.actions[0],
            done(Action::Reactivate {
                key_id: old.clone()
            }),
            "{point:?}"
        );
        let Action::Notify {
            notice: Notice::Reactivated { key_id, until },
        } = &u.actions[1].action
        else {
            panic!("{point:?}: no reactivation notice: {:?}", u.actions);
        };
        assert_eq!(key_id, &old);
        assert_eq!(u.actions[1].result, Outcome::Done { key_id: None });
        let in_days = (*until - time::OffsetDateTime::now_utc()).whole_days();
        assert!((9..=10).contains(&in_days), "{point:?}: {until}");
        if let Some(first) = first {
            // The same notice as the one already sent: the coordinator's
            // ledger takes it as the duplicate it is.
            assert_eq!(row(&first, "app").actions, u.actions, "{point:?}");
        }
        assert!(acct.keys("app").await[0].1, "{point:?}: still active");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_scheduled_run_reports_its_deactivations_and_deletions() {
    for point in [FaultPoint::BeforeSend, FaultPoint::AfterSend] {
        let mut acct = new_account().await;
        acct.populate(&[
            // The older key is past its deactivation date.
            user(
                "deactivating",
                vec![key(95, true, Some(20)), key(15, true, Some(1))],
            ),
            // An inactive key past its deletion date next to a working key.
            user(
                "expired",
                vec![key(105, false, Some(30)), key(25, true, Some(1))],
            ),
            // A key nobody used for 95 days.
            user("idle", vec![key(95, true, None)]),
        ])
        .await;
        let deactivated = acct.created["deactivating"][0].clone();
        let replacement = acct.created["deactivating"][1].clone();
        let expired = acct.created["expired"][0].clone();
        let idle = acct.created["idle"][0].clone();
        let job = acct.job(Policy::default());
        first_attempt(&acct, &job, point).await;
        let first = sent_by_first(&acct, &job).await;

        let retry = redeliver(&acct.agent, &job).await.expect("retry");
        let u = row(&retry, "deactivating");
        assert_eq!(u.verdict, Verdict::Deactivated, "{point:?}: {u:?}");
        assert_eq!(
            u.actions,
            vec![
                done(Action::Deactivate {
                    key_id: deactivated.clone()
                }),
                notify(Notice::Deactivated {
                    key_id: deactivated.clone(),
                    replacement: Some(replacement.clone()),
                }),
            ],
            "{point:?}"
        );
        let u = row(&retry, "expired");
        assert_eq!(u.verdict, Verdict::Cleaned, "{point:?}: {u:?}");
        assert_eq!(
            u.actions,
            vec![
                done(Action::Delete {
                    key_id: expired.clone()
                }),
                notify(Notice::Deleted {
                    key_id: expired.clone()
                }),
            ],
            "{point:?}"
        );
        let u = row(&retry, "idle");
        assert_eq!(u.verdict, Verdict::Cleaned, "{point:?}: {u:?}");
        assert_eq!(
            u.actions,
            vec![
                done(Action::Delete {
                    key_id: idle.clone()
                }),
                notify(Notice::UnusedDeleted {
                    key_id: idle.clone(),
                    last_used: None,
                }),
            ],
            "{point:?}"
        );
        if let Some(first) = first {
            for name in ["deactivating", "expired", "idle"] {
                assert_eq!(
                    row(&first, name).actions,
                    row(&retry, name).actions,
                    "{point:?} {name}"
                );
            }
        }
        // Nothing was done twice.
        assert_eq!(
            acct.keys("deactivating").await,
            vec![(deactivated, false), (replacement, true)],
            "{point:?}"
        );
        assert_eq!(acct.keys("expired").await.len(), 1, "{point:?}");
        assert!(acct.keys("idle").await.is_empty(), "{point:?}");
    }
}

/// An emergency rotation that deactivates the old key at once: a retry
/// after the new key was stored (and, for `BeforeSend`, the old key
/// deactivated) finishes the first attempt's plan. It neither replaces the
/// new key nor deactivates it, and reports the new key, the old key's
/// deactivation and its notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_emergency_rotation_finishes_its_first_attempt() {
    for point in [FaultPoint::AfterStore, FaultPoint::BeforeSend] {
        let mut acct = new_account().await;
        acct.populate(&[user("leaked", vec![key(10, true, Some(0))])])
            .await;
        let old = acct.created["leaked"][0].clone();
        let mut job = acct.job(Policy::default());
        job.mode = JobMode::Rotate {
            user: "leaked".into(),
            deactivate_old: true,
            key_id: None,
        };
        first_attempt(&acct, &job, point).await;
        let keys = acct.keys("leaked").await;
        assert_eq!(keys.len(), 2, "{point:?}: {keys:?}");
        let new = keys[1].0.clone();

        let retry = redeliver(&acct.agent, &job).await.expect("retry");
        let u = row(&retry, "leaked");
        assert_eq!(u.verdict, Verdict::Rotated, "{point:?}: {u:?}");
        assert_eq!(
            u.actions,
            vec![
                ActionRecord {
                    action: Action::CreateKey,
                    result: Outcome::Done {
                        key_id: Some(new.clone())
                    },
                },
                done(Action::Deactivate {
                    key_id: old.clone()
                }),
                notify(Notice::Deactivated {
                    key_id: old.clone(),
                    replacement: None,
                }),
            ],
            "{point:?}"
        );
        assert_eq!(retry.sealed.len(), 1, "{point:?}");
        assert_eq!(retry.sealed[0].access_key_id, new, "{point:?}");
        assert_eq!(
            acct.keys("leaked").await,
            vec![(old, false), (new, true)],
            "{point:?}: the new key stays, the old one is off"
        );
    }
}
