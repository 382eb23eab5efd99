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
    let result = acct
        .agent
        .handle(&acct.job(Policy::default()))
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
    acct.agent
        .handle(&acct.job(Policy::default()))
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
    crashing
        .handle(&acct.job(Policy::default()))
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
    let result = acct
        .agent
        .handle(&acct.job(Policy::default()))
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
    let result = flaky.handle(&acct.job(Policy::default())).await.unwrap();
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
    let next = acct
        .agent
        .handle(&acct.job(Policy::default()))
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
    let result = acct.agent.handle(&acct.job(policy)).await.unwrap();
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

/// IAM allows a comma in a user name, Secrets Manager not in a secret
/// name: the user's record lives at the mapped name and the key is
/// rotated and kept, not created and deleted again on every run.
#[tokio::test]
async fn user_name_with_a_comma_is_rotated_once() {
    let mut acct = new_account().await;
    acct.populate(&[user("ops,ci", vec![key(85, true, Some(1))])])
        .await;
    let first = acct
        .agent
        .handle(&acct.job(Policy::default()))
        .await
        .unwrap();
    let u = &first.users[0];
    assert_eq!(u.verdict, Verdict::Rotated, "{u:?}");
    assert_eq!(first.sealed.len(), 1);
    let stored = acct
        .sm
        .get_secret_value()
        .secret_id("keyfleet/ops/ci")
        .send()
        .await
        .expect("record at the mapped name");
    assert!(stored
        .secret_string()
        .unwrap()
        .contains(&first.sealed[0].access_key_id));
    let second = acct
        .agent
        .handle(&acct.job(Policy::default()))
        .await
        .unwrap();
    assert!(second.sealed.is_empty());
    assert_eq!(acct.keys("ops,ci").await.len(), 2);
}

/// A secret at the user's name that keyfleet did not create: no key is
/// created (it could not be stored), the working key is untouched, and the
/// row says why.
#[tokio::test]
async fn foreign_secret_means_no_key_and_a_reason() {
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
    let result = acct
        .agent
        .handle(&acct.job(Policy::default()))
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
    let result = acct.agent.handle(&job).await.unwrap();
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
    let result = acct.agent.handle(&job).await.unwrap();
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
        async move { agent.handle(&job).await.unwrap() }
    };
    let first = run(&acct).await;
    assert_eq!(first.users[0].verdict, Verdict::Deactivated);
    assert_eq!(acct.keys("unowned").await, vec![(id.clone(), false)]);
    let record = acct
        .sm
        .get_secret_value()
        .secret_id("keyfleet/unowned")
        .send()
        .await
        .expect("deactivation recorded");
    assert!(record.secret_string().unwrap().contains(&id));
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
    emu()
        .set_faults(serde_json::json!({"seed": 1, "rules": [{
            "service": "iam", "action": "CreateAccessKey", "kind": "do_then_drop",
            "account": acct.account_id, "match": {"UserName": name},
            "first_attempts": 1
        }]}))
        .unwrap();
    let result = acct.agent.handle(&acct.job(Policy::default())).await;
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
    let next = acct
        .agent
        .handle(&acct.job(Policy::default()))
        .await
        .unwrap();
    let keys = acct.keys(&name).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(next.sealed.len(), 1);
    assert_eq!(next.sealed[0].access_key_id, keys[1].0);
}
