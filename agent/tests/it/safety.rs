//! Safety on AWS as it is today: leftover state, lost responses and
//! undeliverable owners never cost a working key or create a key nobody
//! can receive.

use crate::fixture::*;
use keyfleet_protocol::{Action, JobMode, Outcome, Policy, Verdict};

/// Adds a tag to a user, as anyone with `iam:TagUser` can.
async fn tag(acct: &TestAccount, user: &str, key: &str, value: &str) {
    acct.iam
        .tag_user()
        .user_name(user)
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key(key)
                .value(value)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// A leftover or forged `keyfleet:rotation` tag (value `v1 x`) on a user
/// whose only key is 20 days old and used yesterday: the key stays.
#[tokio::test]
async fn stray_rotation_tag_never_deletes_a_working_key() {
    let mut acct = new_account().await;
    acct.populate(&[user("tagged", vec![key(20, true, Some(1))])])
        .await;
    tag(&acct, "tagged", "keyfleet:rotation", "v1 x").await;
    let before = acct.keys("tagged").await;
    let result = deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    assert_eq!(acct.keys("tagged").await, before, "working key untouched");
    let u = &result.users[0];
    assert!(
        u.actions
            .iter()
            .all(|a| !matches!(a.action, Action::Delete { .. })),
        "{:?}",
        u.actions
    );
}

/// A record keyfleet did not write (no keyfleet resource policy) holding a
/// forged intent: a key an administrator just created, never used, is not
/// removed; the user is reported, not touched.
#[tokio::test]
async fn forged_record_never_deletes_a_key() {
    let mut acct = new_account().await;
    acct.populate(&[user("forged", vec![key(30, true, Some(1))])])
        .await;
    let forged = serde_json::json!({
        "v": 1, "account_id": acct.account_id, "user_name": "forged",
        "intent": {"run_id": "x", "at": "2000-01-01T00:00:00Z", "before": []}
    });
    acct.sm
        .create_secret()
        .name("keyfleet/forged")
        .secret_string(forged.to_string())
        .send()
        .await
        .unwrap();
    // An administrator adds a second key by hand; nobody used it yet.
    acct.iam
        .create_access_key()
        .user_name("forged")
        .send()
        .await
        .unwrap();
    let before = acct.keys("forged").await;
    assert_eq!(before.len(), 2);
    deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    assert_eq!(acct.keys("forged").await, before);
}

/// An administrator's key created while keyfleet's own intent is pending
/// but used since: reconciliation leaves it and reports it.
#[tokio::test]
async fn unexpected_key_in_use_is_left_alone_and_reported() {
    use keyfleet_agent::{FaultHook, FaultPoint};
    use std::sync::Arc;
    let mut acct = new_account().await;
    acct.populate(&[user("busy", vec![key(85, true, Some(1))])])
        .await;
    // keyfleet records its intent, then dies before CreateAccessKey.
    let hook: FaultHook = Arc::new(|p, u| p == FaultPoint::AfterIntent && u == "busy");
    let crashing = acct.agent.clone().with_fault_hook(hook);
    deliver(&crashing, &acct.job(Policy::default()))
        .await
        .expect_err("injected crash");
    // Meanwhile an administrator creates a key and it gets used.
    let k = acct
        .iam
        .create_access_key()
        .user_name("busy")
        .send()
        .await
        .unwrap();
    let admin_key = k.access_key().unwrap().access_key_id().to_string();
    emu()
        .mark_key_used(&acct.account_id, &admin_key, None, "s3", "us-east-1")
        .unwrap();
    let result = deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    let keys = acct.keys("busy").await;
    assert!(keys.iter().any(|(id, _)| id == &admin_key), "{keys:?}");
    let u = &result.users[0];
    let note = u.note.as_deref().unwrap_or_default();
    assert!(
        note.contains(&admin_key) && note.contains("not created by keyfleet"),
        "{u:?}"
    );
}

/// CreateAccessKey succeeds in IAM but the agent gets an error: the key
/// nobody received is found and deleted in the same run, no owner is told
/// about it, and the next run rotates normally.
#[tokio::test]
async fn lost_create_response_leaves_no_orphan_key() {
    use keyfleet_agent::{FaultHook, FaultPoint};
    use std::sync::Arc;
    let mut acct = new_account().await;
    acct.populate(&[user("lost", vec![key(85, true, Some(1))])])
        .await;
    let old = acct.created["lost"][0].clone();
    let hook: FaultHook = Arc::new(|p, u| p == FaultPoint::CreateResponseLost && u == "lost");
    let flaky = acct.agent.clone().with_fault_hook(hook);
    let result = deliver(&flaky, &acct.job(Policy::default())).await.unwrap();
    assert_eq!(
        acct.keys("lost").await,
        vec![(old.clone(), true)],
        "the key IAM created but nobody received is gone"
    );
    let u = &result.users[0];
    assert_eq!(u.verdict, Verdict::Failed);
    let err = u.error.as_deref().unwrap();
    assert!(err.contains("created") && err.contains("deleted"), "{err}");
    assert!(result.sealed.is_empty(), "no key to deliver");
    // No notice about a key the owner never saw.
    assert!(
        u.actions
            .iter()
            .all(|a| !matches!(a.action, Action::Notify { .. })
                || !matches!(a.result, Outcome::Done { .. })),
        "{:?}",
        u.actions
    );
    // The next run rotates normally: exactly one new key, delivered.
    let next = deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    let keys = acct.keys("lost").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], (old, true));
    assert_eq!(next.sealed.len(), 1);
    assert_eq!(next.sealed[0].access_key_id, keys[1].0);
    assert_eq!(next.users[0].verdict, Verdict::Rotated);
}

/// `Email=bad@corp`: the agent and the coordinator share one rule, which
/// refuses it, so no key is created and the row says why.
#[tokio::test]
async fn undeliverable_email_creates_no_key_and_says_why() {
    let mut acct = new_account().await;
    let mut spec = user("badmail", vec![key(85, true, Some(1))]);
    spec.email = Some("bad@corp".into());
    let mut listed = user("elsewhere", vec![key(85, true, Some(1))]);
    listed.email = Some("dev@other.example".into());
    acct.populate(&[spec, listed]).await;
    let policy = Policy {
        owner_domains: vec!["example.com".into()],
        ..Policy::default()
    };
    let result = deliver(&acct.agent, &acct.job(policy)).await.unwrap();
    assert!(result.sealed.is_empty());
    for name in ["badmail", "elsewhere"] {
        assert_eq!(acct.keys(name).await.len(), 1, "{name}: no key created");
        let u = result.users.iter().find(|u| u.user_name == name).unwrap();
        assert_eq!(u.verdict, Verdict::Unreachable, "{name}");
        assert!(u.actions.is_empty(), "{name}: {:?}", u.actions);
        let note = u.note.as_deref().unwrap_or_default();
        assert!(note.contains("Email"), "{name}: {note}");
    }
    let note = |n: &str| {
        result
            .users
            .iter()
            .find(|u| u.user_name == n)
            .and_then(|u| u.note.clone())
            .unwrap()
    };
    assert!(note("badmail").contains("bad@corp"), "{}", note("badmail"));
    assert!(
        note("elsewhere").contains("owner_domains"),
        "{}",
        note("elsewhere")
    );
}

/// IAM allows a comma in a user name: the user's record is found again
/// and the key is rotated and kept, not created and deleted again on
/// every run.
#[tokio::test]
async fn user_name_with_a_comma_is_rotated_once() {
    let mut acct = new_account().await;
    acct.populate(&[user("ops,ci", vec![key(85, true, Some(1))])])
        .await;
    let first = deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    let u = &first.users[0];
    assert_eq!(u.verdict, Verdict::Rotated, "{u:?}");
    assert_eq!(first.sealed.len(), 1);
    let stored = acct.record_item("ops,ci").await.expect("the user's record");
    assert!(stored.contains(&first.sealed[0].access_key_id));
    let second = deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    assert!(second.sealed.is_empty());
    assert_eq!(acct.keys("ops,ci").await.len(), 2);
}

/// An item at the user's record that is not a record of this account and
/// user: no key is created (it could not be recorded), the working key is
/// untouched, and the row says why.
#[tokio::test]
async fn an_item_that_is_not_a_record_means_no_key_and_a_reason() {
    let mut acct = new_account().await;
    acct.populate(&[
        user("unstorable", vec![key(85, true, Some(1))]),
        user("elsewhere", vec![key(85, true, Some(1))]),
    ])
    .await;
    acct.forge_item("unstorable", "not json").await;
    acct.forge_item(
        "elsewhere",
        &serde_json::json!({"v": 1, "account_id": "999999999999", "user_name": "elsewhere"})
            .to_string(),
    )
    .await;
    let result = deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    for (name, why) in [
        ("unstorable", "not a keyfleet record"),
        ("elsewhere", "names another account or user"),
    ] {
        let u = result.users.iter().find(|u| u.user_name == name).unwrap();
        assert_eq!(u.verdict, Verdict::Unreachable, "{u:?}");
        let note = u.note.as_deref().unwrap();
        assert!(
            note.contains("is not keyfleet's") && note.contains(why),
            "{note}"
        );
        assert_eq!(
            acct.keys(name).await,
            vec![(acct.created[name][0].clone(), true)]
        );
    }
    assert!(result.sealed.is_empty());
    // The items are left as they were.
    assert_eq!(
        acct.record_item("unstorable").await.as_deref(),
        Some("not json")
    );
}

/// With Secrets Manager delivery, a secret at the user's name that
/// keyfleet did not create: no key is created (it could not be
/// delivered), the working key is untouched, and the row says why.
#[tokio::test]
async fn a_foreign_delivery_secret_means_no_key_and_a_reason() {
    let mut acct = new_account().await;
    acct.populate(&[user("unstorable", vec![key(85, true, Some(1))])])
        .await;
    acct.sm
        .create_secret()
        .name("keyfleet/unstorable")
        .secret_string("not json")
        .send()
        .await
        .unwrap();
    let result = deliver(
        &acct.agent,
        &acct.job(Policy {
            delivery: keyfleet_protocol::Delivery::SecretsManager,
            ..Policy::default()
        }),
    )
    .await
    .unwrap();
    let u = &result.users[0];
    assert_eq!(u.verdict, Verdict::Unreachable);
    let note = u.note.as_deref().unwrap();
    assert!(note.contains("not created by keyfleet"), "{note}");
    assert!(result.sealed.is_empty());
    assert_eq!(
        acct.keys("unstorable").await,
        vec![(acct.created["unstorable"][0].clone(), true)]
    );
}

/// Emergency rotation of a user with two active keys without naming one:
/// refused, the error lists both keys, nothing changes. Naming one
/// replaces it and leaves the other alone.
#[tokio::test]
async fn emergency_with_two_active_keys_needs_the_key_to_replace() {
    let mut acct = new_account().await;
    acct.populate(&[user(
        "pair",
        vec![key(40, true, Some(1)), key(5, true, Some(1))],
    )])
    .await;
    let (a, b) = (
        acct.created["pair"][0].clone(),
        acct.created["pair"][1].clone(),
    );
    let mut job = acct.job(Policy::default());
    job.mode = JobMode::Rotate {
        user: "pair".into(),
        deactivate_old: false,
        key_id: None,
    };
    let result = deliver(&acct.agent, &job).await.unwrap();
    let u = &result.users[0];
    assert_eq!(u.verdict, Verdict::Failed);
    let err = u.error.as_deref().unwrap();
    assert!(err.contains(&a) && err.contains(&b), "{err}");
    assert_eq!(
        acct.keys("pair").await,
        vec![(a.clone(), true), (b.clone(), true)]
    );

    let mut job = acct.job(Policy::default());
    job.mode = JobMode::Rotate {
        user: "pair".into(),
        deactivate_old: false,
        key_id: Some(a.clone()),
    };
    let result = deliver(&acct.agent, &job).await.unwrap();
    assert_eq!(result.users[0].verdict, Verdict::Rotated);
    let keys = acct.keys("pair").await;
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], (b, true), "the key nobody named is untouched");
    assert!(keys.iter().all(|(id, _)| id != &a), "named key replaced");
}

/// A user without an email tag whose only active key is 125 days old and
/// was used 11 days ago: the key is deactivated (recorded first), not
/// deleted; it is deleted a whole recovery window later.
#[tokio::test]
async fn unowned_key_past_the_hard_limit_is_deactivated_then_deleted_a_window_later() {
    let mut acct = new_account().await;
    let mut spec = user("unowned", vec![key(125, true, Some(11))]);
    spec.email = None;
    acct.populate(&[spec]).await;
    let id = acct.created["unowned"][0].clone();
    let run = |acct: &TestAccount| {
        let job = acct.job(Policy::default());
        let agent = acct.agent.clone();
        async move { deliver(&agent, &job).await.unwrap() }
    };
    let first = run(&acct).await;
    assert_eq!(first.users[0].verdict, Verdict::Deactivated);
    assert_eq!(acct.keys("unowned").await, vec![(id.clone(), false)]);
    let record = acct
        .record_item("unowned")
        .await
        .expect("deactivation recorded");
    assert!(record.contains(&id));
    // Nine days later it is still there, switched off, recoverable.
    emu().advance_clock(9.0, Some(&acct.account_id)).unwrap();
    run(&acct).await;
    assert_eq!(acct.keys("unowned").await, vec![(id.clone(), false)]);
    // The recovery window (delete_after - deactivate_after = 10 days) over.
    emu().advance_clock(1.0, Some(&acct.account_id)).unwrap();
    let last = run(&acct).await;
    assert!(acct.keys("unowned").await.is_empty(), "{:?}", last.users);
}

/// The same lost response, made by the emulator's fault switch instead of
/// the agent's own hook: IAM creates the key, then the connection drops
/// (the SDK's retry then meets the two-key limit). The key nobody received
/// is deleted in the same run and the next run rotates normally.
#[tokio::test]
async fn lost_create_response_from_the_emulator_leaves_no_orphan_key() {
    let mut acct = new_account().await;
    let name = format!("lost-{}", rand_suffix());
    acct.populate(&[user(name.clone(), vec![key(85, true, Some(1))])])
        .await;
    let old = acct.created[&name][0].clone();
    let _faults = faults_lock().await;
    emu()
        .set_faults(serde_json::json!({"seed": 1, "rules": [{
            "service": "iam", "action": "CreateAccessKey", "kind": "do_then_drop",
            "account": acct.account_id, "match": {"UserName": name},
            "first_attempts": 1
        }]}))
        .unwrap();
    let result = deliver(&acct.agent, &acct.job(Policy::default())).await;
    let injected = emu().faults().unwrap()["injected"].clone();
    emu().clear_faults().unwrap();
    let result = result.unwrap();
    assert!(
        injected.as_u64().unwrap_or(0) >= 1,
        "fault fired: {injected}"
    );
    assert_eq!(
        acct.keys(&name).await,
        vec![(old.clone(), true)],
        "the key IAM created but nobody received is gone"
    );
    let u = &result.users[0];
    assert_eq!(u.verdict, Verdict::Failed, "{u:?}");
    assert!(result.sealed.is_empty());
    let next = deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    let keys = acct.keys(&name).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(next.sealed.len(), 1);
    assert_eq!(next.sealed[0].access_key_id, keys[1].0);
}

/// Writes `record` as the user's item of the table, as a principal the
/// table's policy lets write could: the agent trusts it.
async fn forge_trusted_record(acct: &TestAccount, user: &str, record: serde_json::Value) {
    acct.forge_item(user, &record.to_string()).await;
}

/// A forged but trusted record (in keyfleet's table) with extreme
/// times: a reactivation at year 9999, ages beyond what a date can hold
/// (both ways), an intent at the earliest date the format can carry. No
/// run panics, and no forged reactivation grants more grace than one
/// notice period from now: the times count as now at the latest.
#[tokio::test]
async fn forged_record_with_extreme_times_neither_panics_nor_grants_endless_grace() {
    let mut acct = new_account().await;
    // Each older key is past its deactivation date; its replacement has
    // had the notice period.
    let pair = || vec![key(95, true, Some(20)), key(15, true, Some(1))];
    acct.populate(&[
        user("far", pair()),
        user("overflow", pair()),
        user("ancient", pair()),
    ])
    .await;
    let now = time::OffsetDateTime::now_utc();
    let old = |u: &str| acct.created[u][0].clone();
    let record = |u: &str, reactivated: serde_json::Value| {
        serde_json::json!({
            "v": 1, "account_id": acct.account_id, "user_name": u,
            "reactivated": [reactivated],
            "deactivated": [{"key_id": acct.created[u][1], "at": "9999-12-31T23:59:59Z", "age_secs": i64::MAX}],
        })
    };
    // The key is 95 days old: an age that puts the reactivation at the end
    // of year 9999.
    let to_9999 = (time::macros::datetime!(9999-12-31 00:00 UTC) - now).whole_seconds()
        + time::Duration::days(95).whole_seconds();
    let far = record(
        "far",
        serde_json::json!({"key_id": old("far"), "at": "9999-12-31T23:59:59Z", "age_secs": to_9999}),
    );
    let overflow = record(
        "overflow",
        serde_json::json!({"key_id": old("overflow"), "at": "9999-12-31T23:59:59Z", "age_secs": i64::MAX}),
    );
    let mut ancient = record(
        "ancient",
        serde_json::json!({"key_id": old("ancient"), "at": "0000-01-01T00:00:00+23:59", "age_secs": i64::MIN}),
    );
    ancient["intent"] =
        serde_json::json!({"run_id": "x", "at": "0000-01-01T00:00:00+23:59", "before": []});
    forge_trusted_record(&acct, "far", far).await;
    forge_trusted_record(&acct, "overflow", overflow).await;
    forge_trusted_record(&acct, "ancient", ancient).await;

    let result = deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    let latest_end = time::OffsetDateTime::now_utc() + time::Duration::days(10);
    for name in ["far", "overflow"] {
        let u = result.users.iter().find(|u| u.user_name == name).unwrap();
        assert_eq!(u.verdict, Verdict::PendingDeactivation, "{name}: {u:?}");
        // The grace ends at most one notice period after now.
        let on = u
            .actions
            .iter()
            .find_map(|a| match &a.action {
                Action::Notify {
                    notice: keyfleet_protocol::Notice::DeactivationScheduled { on, .. },
                } => Some(*on),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name}: no reminder: {u:?}"));
        assert!(on <= latest_end, "{name}: grace until {on}");
        let note = u.note.as_deref().unwrap_or_default();
        assert!(!note.contains("9999"), "{name}: {note}");
    }
    // A reactivation before any date: long over, the pair rule applies.
    let u = result
        .users
        .iter()
        .find(|u| u.user_name == "ancient")
        .unwrap();
    assert_eq!(u.verdict, Verdict::Deactivated, "{u:?}");
    assert!(!acct.keys("ancient").await[0].1);

    // One notice period later the grace is over: it does not start again
    // on every run.
    emu()
        .advance_clock(10.01, Some(&acct.account_id))
        .expect("advance the clock");
    let result = deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    for name in ["far", "overflow"] {
        let u = result.users.iter().find(|u| u.user_name == name).unwrap();
        assert_eq!(u.verdict, Verdict::Deactivated, "{name}: {u:?}");
        assert!(!acct.keys(name).await[0].1, "{name}");
    }
}

/// The policy on `name`, if any.
async fn policy_of(acct: &TestAccount, name: &str) -> Option<serde_json::Value> {
    acct.sm
        .get_resource_policy()
        .secret_id(name)
        .send()
        .await
        .unwrap()
        .resource_policy()
        .filter(|p| !p.trim().is_empty())
        .map(|p| serde_json::from_str(p).unwrap())
}

/// With Secrets Manager delivery, creating the delivery secret is two
/// calls: `CreateSecret` succeeded, then `PutResourcePolicy` failed. The
/// new key is deleted again (nobody could have it safely); the secret
/// keyfleet half made (its description, its tag, no policy at all) is
/// completed by the next run, which rotates the user. A secret that looks
/// the same but carries a foreign policy stays untrusted: no key.
#[tokio::test]
async fn a_half_made_delivery_secret_is_completed_and_a_foreign_policy_stays_untrusted() {
    let sm_delivery = || Policy {
        delivery: keyfleet_protocol::Delivery::SecretsManager,
        ..Policy::default()
    };
    let mut acct = new_account().await;
    acct.populate(&[
        user("half", vec![key(85, true, Some(1))]),
        user("foreign-policy", vec![key(85, true, Some(1))]),
    ])
    .await;
    let arn = |u: &str| format!("arn:aws:iam::{}:user/{u}", acct.account_id);
    // keyfleet's description, tag and content, but a policy that lets
    // everyone write.
    acct.sm
        .create_secret()
        .name("keyfleet/foreign-policy")
        .description("Access key record managed by keyfleet")
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("keyfleet:user")
                .value("foreign-policy")
                .build(),
        )
        .secret_string(
            serde_json::json!({"v": 1, "account_id": acct.account_id, "user_name": "foreign-policy"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let mut foreign =
        keyfleet_agent::record::resource_policy(&acct.account_id, &arn("foreign-policy"));
    foreign["Statement"].as_array_mut().unwrap().pop();
    acct.sm
        .put_resource_policy()
        .secret_id("keyfleet/foreign-policy")
        .resource_policy(foreign.to_string())
        .send()
        .await
        .unwrap();

    let faults = faults_lock().await;
    emu()
        .set_faults(serde_json::json!({"seed": 1, "rules": [{
            "service": "secretsmanager", "action": "PutResourcePolicy",
            "kind": "internal_error", "account": acct.account_id,
            "match": {"SecretId": "keyfleet/half"}
        }]}))
        .unwrap();
    let first = deliver(&acct.agent, &acct.job(sm_delivery())).await;
    let injected = emu().faults().unwrap()["injected"].clone();
    emu().clear_faults().unwrap();
    drop(faults);
    let first = first.unwrap();
    assert!(
        injected.as_u64().unwrap_or(0) >= 1,
        "fault fired: {injected}"
    );
    let u = first.users.iter().find(|u| u.user_name == "half").unwrap();
    assert_eq!(u.verdict, Verdict::Failed, "{u:?}");
    assert!(first.sealed.is_empty());
    assert_eq!(
        acct.keys("half").await.len(),
        1,
        "no key that could not be delivered"
    );
    assert_eq!(policy_of(&acct, "keyfleet/half").await, None, "half made");

    let second = deliver(&acct.agent, &acct.job(sm_delivery()))
        .await
        .unwrap();
    let u = second.users.iter().find(|u| u.user_name == "half").unwrap();
    assert_eq!(u.verdict, Verdict::Rotated, "{u:?}");
    assert_eq!(acct.keys("half").await.len(), 2);
    assert!(second.sealed.iter().any(|s| s.user_name == "half"));
    assert_eq!(
        policy_of(&acct, "keyfleet/half").await,
        Some(keyfleet_agent::record::resource_policy(
            &acct.account_id,
            &arn("half")
        )),
        "completed with keyfleet's policy"
    );

    for result in [&first, &second] {
        let u = result
            .users
            .iter()
            .find(|u| u.user_name == "foreign-policy")
            .unwrap();
        assert_eq!(u.verdict, Verdict::Unreachable, "{u:?}");
        let note = u.note.as_deref().unwrap_or_default();
        assert!(note.contains("not created by keyfleet"), "{note}");
    }
    assert_eq!(acct.keys("foreign-policy").await.len(), 1);
    assert_eq!(
        policy_of(&acct, "keyfleet/foreign-policy").await,
        Some(foreign)
    );
}
