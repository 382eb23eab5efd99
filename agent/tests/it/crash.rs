//! Crash at each step of the executor, then a normal run: the account must
//! converge with no lost credential and no extra key.

use crate::fixture::*;
use keyfleet_agent::{FaultHook, FaultPoint};
use keyfleet_protocol::Policy;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_each_step_converges() {
    for point in FaultPoint::CRASHES {
        let mut acct = new_account().await;
        let specs = vec![
            user("rotating", vec![key(85, true, Some(1))]),
            user(
                "deactivating",
                vec![key(105, true, Some(20)), key(15, true, Some(1))],
            ),
        ];
        acct.populate(&specs).await;
        let user_for = |p: FaultPoint| match p {
            FaultPoint::AfterRevoke => "deactivating",
            FaultPoint::BeforeSend | FaultPoint::AfterSend => "",
            _ => "rotating",
        };
        let target = user_for(point);
        let hook: FaultHook = Arc::new(move |p, u| p == point && u == target);
        let crashing = acct.agent.clone().with_fault_hook(hook);
        let job = acct.job(Policy::default());
        let err = deliver(&crashing, &job).await.expect_err("injected crash");
        assert!(
            err.to_string().contains("injected crash"),
            "{point:?}: {err}"
        );

        // The next scheduled run (a new job) converges.
        let second = deliver(&acct.agent, &acct.job(Policy::default()))
            .await
            .expect("recovery run");
        let third = deliver(&acct.agent, &acct.job(Policy::default()))
            .await
            .expect("steady run");
        assert!(
            third.sealed.is_empty(),
            "{point:?}: converged run creates nothing"
        );

        let before = &acct.created["rotating"];
        let keys = acct.keys("rotating").await;
        assert_eq!(keys.len(), 2, "{point:?}: exactly one new key, {keys:?}");
        assert_eq!(keys[0].0, before[0], "{point:?}: old key kept");
        let new_id = &keys[1].0;
        // The new key's secret reached the coordinator in some result.
        let delivered: Vec<_> = acct
            .drain_results()
            .await
            .into_iter()
            .flat_map(|r| r.sealed)
            .filter(|s| &s.access_key_id == new_id)
            .collect();
        assert!(
            !delivered.is_empty(),
            "{point:?}: credential for {new_id} was lost"
        );
        for s in &delivered {
            assert_eq!(acct.open(s).len(), 40);
        }
        // The intent is cleared from the record once the result was
        // delivered.
        let record: serde_json::Value =
            serde_json::from_str(&acct.record_item("rotating").await.unwrap()).unwrap();
        assert!(
            record.get("intent").is_none(),
            "{point:?}: intent left behind: {record}"
        );
        let d = acct.keys("deactivating").await;
        assert_eq!(d.len(), 2, "{point:?}");
        assert!(!d[0].1 && d[1].1, "{point:?}: oldest deactivated, {d:?}");
        assert!(
            second.users.iter().all(|u| u.error.is_none()),
            "{point:?}: {:?}",
            second.users
        );
    }
}
