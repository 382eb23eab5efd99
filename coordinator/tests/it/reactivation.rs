//! A reactivated key's mail: the owner is told of the reactivation once,
//! and the notices of the key's second deactivation are not dropped as
//! duplicates of the first ones (the ledger releases them when the
//! reactivation is told).

use crate::fleet::*;
use keyfleet_protocol::JobMode;
use keyfleet_testkit::seed::{key, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reactivated_keys_second_deactivation_reaches_its_owner() {
    let mut member = create_member("reactivated").await;
    member.deploy_agent().await;
    member
        .populate(&[user(
            "app",
            vec![key(95, true, Some(20)), key(15, true, Some(1))],
        )])
        .await;
    let old = member.created["app"][0].clone();
    let owner = owner_address("app");
    let central = Central::new(Setup::default()).await;
    let kinds = || -> Vec<String> { emails_to(&owner).iter().flat_map(Mail::tells).collect() };

    // Day 95: the pair's older key is deactivated.
    central.start_run_on(&[&member.id]).await;
    member.run_agent(&central.public_key).await;
    central.intake_until_finalized().await;
    assert_eq!(kinds(), ["deactivated"]);
    assert_eq!(member.keys("app").await[0], (old.clone(), false));

    // The security team switches it back on; the result is delivered twice.
    let run_id = central
        .coordinator
        .start_run(keyfleet_coordinator::RunRequest {
            accounts: Some(vec![member.id.clone()]),
            mode: JobMode::Reactivate {
                user: "app".into(),
                key_id: old.clone(),
            },
            ..Default::default()
        })
        .await
        .expect("start the reactivation")
        .run_id;
    let (_, result) = member.run_agent(&central.public_key).await;
    assert_eq!(
        result.users[0].verdict,
        keyfleet_protocol::Verdict::Reactivated
    );
    let body = String::from_utf8(keyfleet_protocol::encode(&result)).unwrap();
    central.intake_until_finalized().await;
    central
        .coordinator
        .intake(&body, 2)
        .await
        .expect("a second delivery is taken in");
    assert_eq!(kinds(), ["deactivated", "reactivated"], "told once");
    let mail = emails_of_run(&run_id)
        .into_iter()
        .find(|m| m.tells_of("reactivated"))
        .expect("reactivation email");
    assert!(mail.text.contains(&old) && mail.text.contains("deactivated again on"));
    assert_eq!(member.keys("app").await[0], (old.clone(), true));

    // Ten days later its grace is over: deactivated again, and told again.
    emu().advance_clock(10.0, Some(&member.id)).unwrap();
    central.start_run_on(&[&member.id]).await;
    member.run_agent(&central.public_key).await;
    central.intake_until_finalized().await;
    assert_eq!(kinds(), ["deactivated", "reactivated", "deactivated"]);
    assert_eq!(member.keys("app").await[0], (old, false));
}

/// A coordinator that stopped right after claiming the reactivation email
/// (before it released the earlier notices) must not leave them claimed:
/// the key's second deactivation would never reach its owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reactivation_interrupted_after_its_claim_still_releases_the_earlier_notices() {
    let mut member = create_member("reactivated-crash").await;
    member.deploy_agent().await;
    member
        .populate(&[user(
            "crash-app",
            vec![key(95, true, Some(20)), key(15, true, Some(1))],
        )])
        .await;
    let old = member.created["crash-app"][0].clone();
    let owner = owner_address("crash-app");
    let central = Central::new(Setup::default()).await;
    let kinds = || -> Vec<String> { emails_to(&owner).iter().flat_map(Mail::tells).collect() };
    central.start_run_on(&[&member.id]).await;
    member.run_agent(&central.public_key).await;
    central.intake_until_finalized().await;
    assert_eq!(kinds(), ["deactivated"]);

    central
        .coordinator
        .start_run(keyfleet_coordinator::RunRequest {
            accounts: Some(vec![member.id.clone()]),
            mode: JobMode::Reactivate {
                user: "crash-app".into(),
                key_id: old.clone(),
            },
            ..Default::default()
        })
        .await
        .expect("start the reactivation");
    let (_, result) = member.run_agent(&central.public_key).await;
    let until = result.users[0]
        .actions
        .iter()
        .find_map(|a| match &a.action {
            keyfleet_protocol::Action::Notify {
                notice: keyfleet_protocol::Notice::Reactivated { until, .. },
            } => Some(*until),
            _ => None,
        })
        .expect("a reactivation notice");
    // What the stopped coordinator left: the claim, nothing released.
    central
        .coordinator
        .store()
        .put(
            &keyfleet_reports::store::ledger_key(
                &member.id,
                "crash-app",
                &old,
                &format!("reactivated-{}", until.unix_timestamp()),
            ),
            b"an earlier attempt".to_vec(),
            "text/plain",
        )
        .await
        .unwrap();
    central.intake_until_finalized().await;

    emu().advance_clock(10.0, Some(&member.id)).unwrap();
    central.start_run_on(&[&member.id]).await;
    member.run_agent(&central.public_key).await;
    central.intake_until_finalized().await;
    assert_eq!(
        kinds(),
        ["deactivated", "deactivated"],
        "the second deactivation reached the owner"
    );
}
