//! An agent that runs out of time sends what it has: the deployed agent's
//! timeout is shortened to the template's minimum (60 s, with
//! UpdateFunctionConfiguration) on an account with 20 users due, and IAM is
//! made slow (each CreateAccessKey held 10 s by the emulator); the agent
//! works on 4 users at a time, so the users need at least 50 s where the
//! invocation has 40 s before its margin (`KEYFLEET_TIME_MARGIN`, 20 s). The agent stops starting users, sends
//! the keys it created and reports the rest as deferred: every key in IAM
//! reached its owner, every deferred user is untouched, and the next run
//! rotates exactly the deferred users.
//!
//! Nothing here is timed: rotating a user cannot take less than the held
//! call, so 20 users cannot fit into 40 s, whatever the machine.

use crate::common::*;
use crate::mails::{delivered_key, kinds_for};
use keyfleet_testkit::seed::{self, key, user};
use std::collections::BTreeMap;

const USERS: usize = 20;

fn verdicts(report: &serde_json::Value) -> BTreeMap<String, String> {
    report["accounts"][0]["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| {
            (
                u["user_name"].as_str().expect("name").to_string(),
                u["verdict"].as_str().expect("verdict").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_short_of_time_defers_users_and_no_key_goes_undelivered() {
    let cli = deployment().await;
    let emu = emu();
    let account = create_account("cli-timeout").await;
    let iam = iam_of(&account).await;
    let names: Vec<String> = (0..USERS).map(|i| format!("slow-{i:02}")).collect();
    let specs: Vec<_> = names
        .iter()
        .map(|n| user(n.as_str(), vec![key(85, true, Some(1))]))
        .collect();
    let before = seed::populate(emu, &iam, &account, &specs)
        .await
        .expect("seed");
    let member = emu.config_for_account(&account).await.expect("member");
    aws_sdk_lambda::Client::new(&member)
        .update_function_configuration()
        .function_name("keyfleet-agent")
        .timeout(60)
        .send()
        .await
        .expect("UpdateFunctionConfiguration");

    let run_id = {
        let _faults = faults_lock().await;
        emu.set_faults(serde_json::json!({"seed": 1, "rules": [{
            "service": "iam", "action": "CreateAccessKey", "account": account,
            "kind": "delay", "delay_ms": 10000}]}))
            .expect("faults");
        let run_id = run_through_coordinator(&account, 300).await;
        emu.clear_faults().expect("faults cleared");
        run_id
    };

    let report = cli.report(&run_id);
    let first = verdicts(&report);
    assert_eq!(first.len(), USERS, "{report}");
    let deferred: Vec<&String> = first
        .iter()
        .filter(|(_, v)| *v == "deferred")
        .map(|(n, _)| n)
        .collect();
    let rotated: Vec<&String> = first
        .iter()
        .filter(|(_, v)| *v == "rotated")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(deferred.len() + rotated.len(), USERS, "{first:?}");
    assert!(
        !deferred.is_empty(),
        "5 rounds of 4 users x 10 s cannot fit in 40 s: {first:?}"
    );
    assert_eq!(report["accounts"][0]["state"], "partial", "{report}");

    // Every key IAM holds reached its owner; deferred users are untouched.
    let mails = emu.outbox().expect("outbox");
    let dir = tempfile::tempdir().expect("temp dir");
    for name in &names {
        let owner = format!("owner-{name}@example.com");
        let keys = seed::keys(&iam, name).await.expect("keys");
        let kinds = kinds_for(&mails, &account, &owner);
        if deferred.contains(&name) {
            assert_eq!(keys.len(), 1, "{name} deferred and untouched: {keys:?}");
            assert!(!kinds.iter().any(|k| k == "new_key"), "{name}: {kinds:?}");
        } else {
            assert_eq!(keys.len(), 2, "{name} rotated: {keys:?}");
            let new_key = keys
                .iter()
                .find(|(id, _)| *id != before[name][0])
                .expect("new key");
            let got = delivered_key(&mails, &owner, &format!("-{name}.zip"), dir.path());
            assert_eq!(
                got.access_key_id, new_key.0,
                "{name}'s zip holds its new key"
            );
            assert_eq!(
                kinds.iter().filter(|k| *k == "new_key").count(),
                1,
                "{name}: {kinds:?}"
            );
        }
    }

    // The next run (IAM fast again) rotates exactly the deferred users.
    let second = verdicts(&cli.report(&run_through_coordinator(&account, 300).await));
    let rotated_now: Vec<&String> = second
        .iter()
        .filter(|(_, v)| *v == "rotated")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(rotated_now, deferred, "{second:?}");
}
