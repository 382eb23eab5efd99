//! An old key is never switched off before its replacement reached the
//! owner, through the deployed system: every email to one owner fails for
//! two runs (SES refuses them), so the new key is created but not
//! delivered; on the day the old key would have been deactivated it stays
//! active, the report row saying what it waits for. Once SES takes the
//! emails again the coordinator's sweep delivers the key, and the old key
//! is deactivated one notice period after that delivery, not before.

use crate::common::*;
use crate::mails::kinds_for;
use aws_sdk_lambda::primitives::Blob;
use keyfleet_testkit::seed;

fn row<'r>(report: &'r serde_json::Value, name: &str) -> &'r serde_json::Value {
    report["accounts"][0]["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["user_name"] == name)
        .unwrap_or_else(|| panic!("{name} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_key_waits_for_its_replacements_delivery() {
    let cli = deployment().await;
    let _faults = faults_lock().await;
    let emu = emu();
    let name = "late-owner";
    let DueUser {
        account,
        iam,
        owner,
        key: old,
    } = account_with_due_user("cli-delivery", name).await;

    // SES refuses every email to this owner.
    emu.set_faults(serde_json::json!({"seed": 1, "rules": [{
        "service": "sesv2", "action": "SendEmail", "match": {"Destination": owner},
        "kind": "internal_error", "code": "MessageRejected", "status": 400,
        "message": "Email address is not verified.",
    }]}))
    .expect("faults");
    let run = |label: &'static str| {
        let out = cli.run(&["run", "--accounts", &account]);
        let report = cli.report(&run_id_in(&out));
        assert_eq!(report["accounts"][0]["state"], "ok", "{label}: {report}");
        report
    };

    // Day 85: the new key is created; its emails are refused.
    let first = run("day 85");
    assert_eq!(row(&first, name)["verdict"], "rotated", "{first}");
    let keys = seed::keys(&iam, name).await.expect("keys");
    assert_eq!(keys.len(), 2, "{keys:?}");
    let new = keys
        .iter()
        .find(|(id, _)| *id != old)
        .expect("new key")
        .0
        .clone();
    let mails = |emu: &keyfleet_testkit::Emulator| {
        kinds_for(&emu.outbox().expect("outbox"), &account, &owner)
    };
    assert!(
        !mails(emu).contains(&"new_key".to_string()),
        "{:?}",
        mails(emu)
    );

    // Day 95: the pair rule would deactivate the old key today (90 days,
    // and its replacement 10 days old); it awaits the delivery instead.
    emu.advance_clock(10.0, Some(&account)).expect("clock");
    let second = run("day 95");
    let r = row(&second, name);
    assert_eq!(r["verdict"], "pending_deactivation", "{r}");
    assert!(
        r["note"]
            .as_str()
            .is_some_and(|n| n.contains(&format!("waiting for delivery of {new}"))),
        "{r}"
    );
    assert_eq!(
        seed::keys(&iam, name).await.expect("keys"),
        vec![(old.clone(), true), (new.clone(), true)],
        "the old key stays active"
    );

    // SES takes the emails again; the sweep delivers the key.
    emu.clear_faults().expect("faults cleared");
    let swept = aws_sdk_lambda::Client::new(&emu.config())
        .invoke()
        .function_name("keyfleet-coordinator")
        .payload(Blob::new(r#"{"action":"sweep"}"#))
        .send()
        .await
        .expect("Invoke");
    assert!(swept.function_error().is_none(), "{swept:?}");
    let kinds = mails(emu);
    assert_eq!(
        kinds.iter().filter(|k| *k == "new_key").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "password").count(),
        1,
        "{kinds:?}"
    );

    // Day 95, after the delivery: the owner gets the whole notice period
    // from now. Day 104: still active. Day 105: deactivated.
    let third = run("day 95, delivered");
    assert_eq!(
        row(&third, name)["verdict"],
        "pending_deactivation",
        "{third}"
    );
    for (days, active) in [(9.0, true), (1.0, false)] {
        emu.advance_clock(days, Some(&account)).expect("clock");
        run("after the notice period");
        assert_eq!(
            seed::keys(&iam, name).await.expect("keys"),
            vec![(old.clone(), active), (new.clone(), true)],
            "{days} more days"
        );
    }
}
