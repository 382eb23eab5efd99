//! S3's 409 `ConditionalRequestConflict` to a conditional write: another
//! conditional write to the same key was in flight, and the object may or
//! may not exist. AWS says to retry; it is never "already claimed". The
//! emulator answers it without writing (`kind: conflict` in
//! tests/emulator/ext_faults.py), to the first attempt only unless told
//! otherwise, on keys no other test uses.

use crate::fleet::*;
use keyfleet_coordinator::Intake;
use keyfleet_reports::store::{self, Put};

/// One 409 to the conditional writes of `key` (all of them when `first` is
/// `None`).
pub fn conflict_on(key: &str, first: Option<u32>) {
    let mut rule = serde_json::json!({
        "service": "s3", "action": "PutObject", "kind": "conflict",
        "match": {"Key": key}});
    if let Some(n) = first {
        rule["first_attempts"] = n.into();
    }
    emu()
        .set_faults(serde_json::json!({"seed": 1, "rules": [rule]}))
        .expect("set faults");
}

/// How many faults the emulator injected since the rules were set: the
/// proof that the code under test met the 409.
fn injected() -> u64 {
    emu().faults().expect("faults")["injected"]
        .as_u64()
        .expect("injected count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_hit_by_one_conflict_is_retried_and_creates_the_object() {
    let _faults = faults_lock().await;
    let central = Central::new(Setup::default()).await;
    let store = central.coordinator.store();
    let key = format!("conflict/{}/fresh", suffix());
    conflict_on(&key, Some(1));
    let put = store
        .put_new(&key, b"mine".to_vec(), "text/plain")
        .await
        .expect("put_new");
    let hit = injected();
    emu().clear_faults().expect("clear faults");
    assert_eq!(hit, 1, "the first attempt met the 409");
    assert_eq!(put, Put::Created, "nobody else holds the key");
    assert_eq!(central.object(&key).await.as_deref(), Some(&b"mine"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_on_an_existing_object_is_retried_and_answers_already_exists() {
    let _faults = faults_lock().await;
    let central = Central::new(Setup::default()).await;
    let store = central.coordinator.store();
    let key = format!("conflict/{}/taken", suffix());
    store
        .put(&key, b"theirs".to_vec(), "text/plain")
        .await
        .expect("put");
    conflict_on(&key, Some(1));
    let put = store
        .put_new(&key, b"mine".to_vec(), "text/plain")
        .await
        .expect("put_new");
    let hit = injected();
    emu().clear_faults().expect("clear faults");
    assert_eq!(hit, 1, "the first attempt met the 409");
    assert_eq!(put, Put::AlreadyExists);
    assert_eq!(central.object(&key).await.as_deref(), Some(&b"theirs"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_that_lasts_is_an_error_naming_the_key_not_already_exists() {
    let _faults = faults_lock().await;
    let central = Central::new(Setup::default()).await;
    let store = central.coordinator.store();
    let key = format!("conflict/{}/stuck", suffix());
    conflict_on(&key, None);
    let put = store.put_new(&key, b"mine".to_vec(), "text/plain").await;
    let hit = injected();
    emu().clear_faults().expect("clear faults");
    let err = put.expect_err("a conflict on every attempt is not a claim held elsewhere");
    assert_eq!(
        hit,
        u64::from(store::CONFLICT_ATTEMPTS),
        "retried, a bounded number of times"
    );
    assert_eq!(err.key, key);
    assert_eq!(err.op, "PutObject");
    assert!(
        err.to_string().contains("ConditionalRequestConflict"),
        "{err}"
    );
    assert!(central.object(&key).await.is_none(), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_email_whose_ledger_claim_meets_a_conflict_is_sent_once() {
    let _faults = faults_lock().await;
    let (member, users) = normal_member("conflict-ledger").await;
    let central = Central::new(Setup::default()).await;
    let run_id = central.start_run_on(&[&member.id]).await;
    member.run_agent(&central.public_key).await;
    let ledger = store::ledger_key(
        &member.id,
        &users.unused,
        &member.created[&users.unused][0],
        "unused_deleted",
    );
    conflict_on(&ledger, Some(1));
    let intakes = central.intake_until_finalized().await;
    let hit = injected();
    emu().clear_faults().expect("clear faults");
    assert_eq!(hit, 1, "the ledger claim met the 409");
    assert!(
        matches!(
            intakes.last(),
            Some(Intake::Accepted {
                finalized: true,
                ..
            })
        ),
        "{intakes:?}"
    );
    let owner = owner_address(&users.unused);
    let sent = emails_of_run(&run_id)
        .into_iter()
        .filter(|m| m.to == [owner.clone()] && m.tells_of("unused_deleted"))
        .count();
    assert_eq!(sent, 1, "the owner is told, once");
    assert!(central.object(&ledger).await.is_some(), "the claim is held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalize_marker_that_meets_a_conflict_still_finalizes_the_run_once() {
    let _faults = faults_lock().await;
    let (member, _) = normal_member("conflict-final").await;
    let central = Central::new(Setup::default()).await;
    let run_id = central.start_run_on(&[&member.id]).await;
    member.run_agent(&central.public_key).await;
    conflict_on(&store::final_key(&run_id), Some(1));
    let mut intakes = Vec::new();
    for (body, receipt) in central.receive_results().await {
        intakes.push(central.coordinator.intake(&body, 1).await.expect("intake"));
        central.delete_result(&receipt).await;
    }
    let hit = injected();
    emu().clear_faults().expect("clear faults");
    assert_eq!(hit, 1, "the finalize marker met the 409");
    assert!(
        matches!(
            intakes.last(),
            Some(Intake::Accepted {
                finalized: true,
                ..
            })
        ),
        "this intake is the finalizer: {intakes:?}"
    );
    assert!(central.object(&store::final_key(&run_id)).await.is_some());
    let summaries = emails_of_run(&run_id)
        .into_iter()
        .filter(|m| m.kind == "summary")
        .count();
    assert_eq!(summaries, 1, "the summary goes out once");
    // A later finalize finds the run finalized.
    assert!(central
        .coordinator
        .finalize(&run_id)
        .await
        .expect("finalize")
        .is_none());
}
