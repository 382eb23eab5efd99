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

/// Two member accounts with agents, each with a user `idle-a-<s>` /
/// `idle-b-<s>` owned by `owner` whose only key is unused (deleted, with a
/// notice), and `more_b` in the second.
async fn two_idle_accounts(
    label: &str,
    s: &str,
    owner: &str,
    more_b: Vec<UserSpec>,
) -> (Member, Member) {
    let mut a = create_member(&format!("{label}-a")).await;
    let mut b = create_member(&format!("{label}-b")).await;
    a.deploy_agent().await;
    b.deploy_agent().await;
    let idle = |name: String| owned(&name, owner, vec![key(95, true, None)]);
    a.populate(&[idle(format!("idle-a-{s}"))]).await;
    let mut users_b = vec![idle(format!("idle-b-{s}"))];
    users_b.extend(more_b);
    b.populate(&users_b).await;
    (a, b)
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

/// Two accounts' results come in at once, and one account's owners are
/// still being mailed (its zip email is slow) when the other's intake finds
/// every result stored: the run's end waits for that mail, so the shared
/// owner's one digest holds both accounts' notices, none left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_waits_for_every_account_being_mailed() {
    let _faults = faults_lock().await;
    let s = suffix();
    let owner = format!("shared-{s}@example.com");
    let zip_owner = format!("zip-{s}@example.com");
    let (a, b) = two_idle_accounts(
        "digest-race",
        &s,
        &owner,
        vec![owned(
            &format!("rot-b-{s}"),
            &zip_owner,
            vec![key(85, true, Some(2))],
        )],
    )
    .await;
    let central = Central::new(Setup::default()).await;
    let run_id = central.start_run_on(&[&a.id, &b.id]).await;
    a.run_agent(&central.public_key).await;
    b.run_agent(&central.public_key).await;
    let results = central.receive_results().await;
    let body_of = |id: &str| {
        results
            .iter()
            .find(|(body, _)| body.contains(id))
            .map(|(body, _)| body.clone())
            .expect("the account's result")
    };
    let (body_a, body_b) = (body_of(&a.id), body_of(&b.id));
    emu()
        .set_faults(serde_json::json!({"seed": 1, "rules": [
            {"service": "sesv2", "action": "SendEmail", "kind": "delay", "delay_ms": 8000,
             "match": {"Destination": zip_owner}, "first_attempts": 1}]}))
        .expect("set faults");
    let slow = {
        let coordinator = central.coordinator.clone();
        tokio::spawn(async move { coordinator.intake(&body_b, 1).await })
    };
    // Until B's intake is sending its zip (the emulator logs the held
    // SendEmail when it starts holding it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let faults = emu().faults().expect("faults");
        let held = faults["log"]
            .as_array()
            .is_some_and(|log| log.iter().any(|e| e["action"] == "SendEmail"));
        if held {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B's zip was never sent: {faults}"
        );
        // A poll interval, not a synchronisation: the condition above is.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let fast = central
        .coordinator
        .intake(&body_a, 1)
        .await
        .expect("A taken in");
    let slow = slow.await.expect("B's intake").expect("B taken in");
    emu().clear_faults().expect("clear faults");
    for (_, receipt) in &results {
        central.delete_result(receipt).await;
    }
    let finalized = |i: &keyfleet_coordinator::Intake| {
        matches!(
            i,
            keyfleet_coordinator::Intake::Accepted {
                finalized: true,
                ..
            }
        )
    };
    // The race happened as staged (else the test proves nothing): A's
    // intake found B's result stored but its owners not yet mailed, and
    // left the run's end to B.
    assert!(
        !finalized(&fast) && finalized(&slow),
        "A must not end the run while B's owners are being mailed: {fast:?} {slow:?}"
    );
    let mails: Vec<Mail> = emails_of_run(&run_id)
        .into_iter()
        .filter(|m| m.to == [owner.clone()])
        .collect();
    assert_eq!(mails.len(), 1, "one digest: {mails:#?}");
    let mut notices = mails[0].notices.clone();
    notices.sort();
    let mut expected = vec![
        format!("{}/unused_deleted", a.id),
        format!("{}/unused_deleted", b.id),
    ];
    expected.sort();
    assert_eq!(notices, expected);
}

/// A digest whose second notice cannot be claimed (S3 keeps answering
/// 409) sends nothing and leaves no claim behind: the notice it claimed
/// first is released, and the sweep sends both in one digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_whose_claim_fails_releases_what_it_claimed() {
    let _faults = faults_lock().await;
    let s = suffix();
    let owner = format!("claims-{s}@example.com");
    let (first, second) = (format!("a-{s}"), format!("b-{s}"));
    let mut m = create_member("digest-claim").await;
    m.deploy_agent().await;
    m.populate(&[
        owned(&first, &owner, vec![key(95, true, None)]),
        owned(&second, &owner, vec![key(95, true, None)]),
    ])
    .await;
    let ledger = |user: &str| {
        keyfleet_reports::store::ledger_key(&m.id, user, &m.created[user][0], "unused_deleted")
    };
    let central = Central::new(Setup::default()).await;
    let run_id = central.start_run_on(&[&m.id]).await;
    m.run_agent(&central.public_key).await;
    crate::conflict::conflict_on(&ledger(&second), None);
    central.intake_until_finalized().await;
    emu().clear_faults().expect("clear faults");
    assert!(emails_to(&owner).is_empty(), "nothing sent");
    assert!(
        central.object(&ledger(&first)).await.is_none(),
        "the first notice's claim was released"
    );
    let retry = central
        .coordinator
        .resend_pending_mail()
        .await
        .expect("sweep");
    assert_eq!(retry.sent, vec![format!("{run_id}/{}", m.id)], "{retry:?}");
    let mails = emails_to(&owner);
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(
        mails[0].notices,
        [
            format!("{}/unused_deleted", m.id),
            format!("{}/unused_deleted", m.id)
        ]
    );
}

/// SES refuses an owner's digest for good, and the digest holds notices
/// of two accounts: each sweep counts one attempt per account (not one per
/// account for each other account the digest holds), both are given up
/// together at the limit with an alert each, and giving up sticks: the
/// next sweep tries nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_refused_for_good_counts_one_attempt_a_sweep_per_account_and_gives_up_once() {
    let _faults = faults_lock().await;
    let s = suffix();
    let owner = format!("refused-{s}@example.com");
    let (a, b) = two_idle_accounts("digest-refused", &s, &owner, Vec::new()).await;
    let central = Central::new(Setup::default()).await;
    let run_id = central.start_run_on(&[&a.id, &b.id]).await;
    a.run_agent(&central.public_key).await;
    b.run_agent(&central.public_key).await;
    emu()
        .set_faults(serde_json::json!({"seed": 1, "rules": [{
            "service": "sesv2", "action": "SendEmail", "kind": "unavailable",
            "match": {"Destination": owner}}]}))
        .expect("set faults");
    central.intake_until_finalized().await; // attempt 1 of 3, each account
    let attempts = |account: String| {
        let central = &central;
        let key = format!(
            "{}{run_id}/{account}",
            keyfleet_coordinator::PENDING_MAIL_PREFIX
        );
        async move {
            central.object(&key).await.map(|b| {
                serde_json::from_slice::<keyfleet_coordinator::PendingMail>(&b)
                    .expect("pending record")
                    .attempts
            })
        }
    };
    assert_eq!(attempts(a.id.clone()).await, Some(1));
    assert_eq!(attempts(b.id.clone()).await, Some(1));
    let first = central
        .coordinator
        .resend_pending_mail()
        .await
        .expect("sweep"); // 2 of 3
    assert!(first.gave_up.is_empty(), "{first:?}");
    assert_eq!(attempts(a.id.clone()).await, Some(2));
    assert_eq!(attempts(b.id.clone()).await, Some(2));
    let second = central
        .coordinator
        .resend_pending_mail()
        .await
        .expect("sweep"); // 3 of 3
    let mut gave_up = second.gave_up.clone();
    gave_up.sort();
    let mut expected = vec![format!("{run_id}/{}", a.id), format!("{run_id}/{}", b.id)];
    expected.sort();
    assert_eq!(gave_up, expected, "{second:?}");
    let next = central
        .coordinator
        .resend_pending_mail()
        .await
        .expect("sweep");
    emu().clear_faults().expect("clear faults");
    assert_eq!(next, Default::default(), "given up means given up");
    assert_eq!(attempts(a.id.clone()).await, None);
    assert!(emails_to(&owner).is_empty());
}
