//! One email per owner per run: an owner whose users in two accounts have
//! news gets one digest with all of it, in the order they should act,
//! after the new keys' zip and password; a retried delivery and a second
//! finalize send nothing more; the next run's same notices are not sent
//! again; and a result that comes in after the run was finalized has its
//! own digest sent at once.

use crate::fleet::*;
use keyfleet_testkit::seed::{key, user, UserSpec};

fn owned(name: &str, owner: &str, keys: Vec<keyfleet_testkit::seed::KeySpec>) -> UserSpec {
    UserSpec {
        email: Some(owner.to_string()),
        ..user(name, keys)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_gets_one_digest_per_run_across_users_and_accounts() {
    let s = suffix();
    let owner = format!("team-{s}@example.com");
    let mut a = create_member("digest-a").await;
    let mut b = create_member("digest-b").await;
    a.deploy_agent().await;
    b.deploy_agent().await;
    // Account A: a rotation (zip, password; its deactivation date is in
    // the zip's email), a deactivation coming, an unused key deleted.
    // Account B: a deactivation coming.
    a.populate(&[
        owned(&format!("rot-{s}"), &owner, vec![key(85, true, Some(2))]),
        owned(
            &format!("due-a-{s}"),
            &owner,
            vec![key(84, true, Some(1)), key(5, true, Some(1))],
        ),
        owned(&format!("idle-{s}"), &owner, vec![key(95, true, None)]),
    ])
    .await;
    b.populate(&[owned(
        &format!("due-b-{s}"),
        &owner,
        vec![key(86, true, Some(1)), key(5, true, Some(1))],
    )])
    .await;
    let central = Central::new(Setup::default()).await;
    let run_id = central.start_run_on(&[&a.id, &b.id]).await;
    a.run_agent(&central.public_key).await;
    let (_, result_b) = b.run_agent(&central.public_key).await;
    central.intake_until_finalized().await;

    let mails: Vec<Mail> = emails_of_run(&run_id)
        .into_iter()
        .filter(|m| m.to == [owner.clone()])
        .collect();
    let kinds: Vec<&str> = mails.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, ["new_key", "password", "digest"], "{mails:#?}");
    let digest = &mails[2];
    // B's deactivation is sooner (its key is older): it comes first.
    assert_eq!(
        digest.notices,
        [
            format!("{}/deactivation_scheduled", b.id),
            format!("{}/deactivation_scheduled", a.id),
            format!("{}/unused_deleted", a.id),
        ]
    );
    assert!(
        digest.subject.starts_with(
            "[keyfleet] Action needed on 3 of your access keys: 2 to be deactivated, 1 deleted"
        ),
        "{}",
        digest.subject
    );
    assert!(digest.text.contains("in 2 AWS accounts"), "{}", digest.text);
    for user in [
        format!("due-a-{s}"),
        format!("due-b-{s}"),
        format!("idle-{s}"),
    ] {
        assert!(digest.text.contains(&user), "names {user}: {}", digest.text);
    }
    assert!(
        digest.text.contains("Next step: deactivated on"),
        "{}",
        digest.text
    );

    // A second delivery of B's result and a second finalize: nothing more.
    let body = String::from_utf8(keyfleet_protocol::encode(&result_b)).expect("utf-8");
    central
        .coordinator
        .intake(&body, 2)
        .await
        .expect("a second delivery is taken in");
    assert_eq!(
        central
            .coordinator
            .finalize(&run_id)
            .await
            .expect("finalize"),
        None
    );
    assert_eq!(emails_to(&owner).len(), 3, "nothing sent twice");

    // The next run finds the same deactivations still scheduled: the
    // owner was told, so no digest; only the summary goes out.
    let run2 = central.start_run_on(&[&a.id, &b.id]).await;
    a.run_agent(&central.public_key).await;
    b.run_agent(&central.public_key).await;
    central.intake_until_finalized().await;
    let kinds2: Vec<String> = emails_of_run(&run2).into_iter().map(|m| m.kind).collect();
    assert_eq!(kinds2, ["summary"]);
}

/// A result taken in after its run was finalized (the deadline passed)
/// still reaches its owner: its notices go in a digest of their own, sent
/// at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_after_the_report_has_its_digest_sent_at_once() {
    let s = suffix();
    let owner = format!("late-{s}@example.com");
    let mut a = create_member("digest-late").await;
    a.deploy_agent().await;
    a.populate(&[owned(
        &format!("idle-{s}"),
        &owner,
        vec![key(95, true, None)],
    )])
    .await;
    let central = Central::new(Setup::default()).await;
    let run_id = central.start_run_on(&[&a.id]).await;
    let (_, result) = a.run_agent(&central.public_key).await;
    // The run is finalized without the result (as the deadline sweep does).
    central
        .coordinator
        .finalize(&run_id)
        .await
        .expect("finalize")
        .expect("finalized now");
    assert!(emails_to(&owner).is_empty());
    let body = String::from_utf8(keyfleet_protocol::encode(&result)).expect("utf-8");
    central
        .coordinator
        .intake(&body, 1)
        .await
        .expect("taken in");
    let mails = emails_to(&owner);
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0].notices, [format!("{}/unused_deleted", a.id)]);
    assert_eq!(mails[0].run, run_id);
}
