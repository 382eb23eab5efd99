//! The coordinator's key rotation: while agents move to a new key through
//! the StackSet, a result sealed to the previous key is still delivered;
//! once the previous key is retired, a box sealed to it is refused by name
//! and alerted once, never retried into the DLQ, and the rest of the
//! account's mail still goes out.

use crate::fleet::*;
use keyfleet_coordinator::Intake;

fn kinds_to(mails: &[Mail], to: &str) -> Vec<String> {
    let mut k: Vec<String> = mails
        .iter()
        .filter(|m| m.to.first().map(String::as_str) == Some(to))
        .flat_map(Mail::tells)
        .collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_sealed_to_the_previous_key_during_the_roll_out_is_delivered() {
    let (updated, updated_users) = normal_member("ring-new").await;
    let (lagging, lagging_users) = normal_member("ring-old").await;
    let mut central = Central::new(Setup::default()).await;
    // keygen: a new key at the front of the ring; one agent has moved to
    // it, the other still seals to the previous key.
    let previous = central.add_key();
    assert_ne!(previous.key_id, central.public_key.key_id);
    let run_id = central.start_run_on(&[&updated.id, &lagging.id]).await;
    let (_, new_result) = updated.run_agent(&central.public_key).await;
    let (_, old_result) = lagging.run_agent(&previous).await;
    assert_eq!(new_result.sealed[0].key_id, central.public_key.key_id);
    assert_eq!(old_result.sealed[0].key_id, previous.key_id);
    central.intake_until_finalized().await;

    let mails = emails_of_run(&run_id);
    for owner in [
        owner_address(&updated_users.rotate),
        owner_address(&lagging_users.rotate),
    ] {
        assert_eq!(kinds_to(&mails, &owner), ["new_key", "password"], "{owner}");
    }
    assert!(
        central.alerts(0).await.is_empty(),
        "a box sealed to a key of the ring is no alert"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_sealed_to_a_retired_key_is_refused_by_name_and_alerted_once() {
    let (member, users) = normal_member("ring-retired").await;
    let mut central = Central::new(Setup::default()).await;
    let previous = central.add_key();
    central.retire_key(&previous.key_id);
    let run_id = central.start_run_on(&[&member.id]).await;
    // An agent the roll-out never reached.
    let (_, result) = member.run_agent(&previous).await;
    let body = String::from_utf8(keyfleet_protocol::encode(&result)).expect("utf-8");
    // Taken in, not an error: retrying cannot open the box.
    let first = central.coordinator.intake(&body, 1).await.expect("intake");
    assert!(matches!(first, Intake::Accepted { .. }), "{first:?}");
    let again = central.coordinator.intake(&body, 2).await.expect("intake");
    assert!(matches!(again, Intake::Duplicate { .. }), "{again:?}");

    let alerts = central.alerts(1).await;
    assert_eq!(
        alerts.len(),
        1,
        "alerted once across deliveries: {alerts:?}"
    );
    let (subject, text) = &alerts[0];
    assert!(subject.contains("new key not delivered"), "{subject}");
    assert!(text.contains(&previous.key_id), "names the key id: {text}");
    assert!(text.contains(&users.rotate), "names the user: {text}");
    assert!(text.contains("does not hold"), "says why: {text}");

    // The rest of the account's mail still goes out; no zip, no password.
    let mails = emails_of_run(&run_id);
    assert_eq!(
        kinds_to(&mails, &owner_address(&users.rotate)),
        ["deactivation_scheduled"]
    );
    assert_eq!(
        kinds_to(&mails, &owner_address(&users.unused)),
        ["unused_deleted"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_added_while_the_coordinator_runs_is_read_from_the_stored_ring() {
    let (member, users) = normal_member("ring-reload").await;
    let mut central = Central::new(Setup::default()).await;
    let secret = central.store_ring().await;
    let started_with = central.public_key.clone();
    // `keygen` writes the new ring to the secret; the running coordinator
    // is not rebuilt (a warm Lambda keeps what it read at init).
    let new_key = keyfleet_protocol::PrivateKey::generate();
    let new_public = new_key.public_key();
    let mut ring = keyfleet_protocol::KeyRing::new(
        keyfleet_protocol::PrivateKey::from_base64(central.key.to_base64().expose()).expect("copy"),
    );
    ring.add(new_key).expect("add");
    aws_sdk_secretsmanager::Client::new(&emu().config())
        .put_secret_value()
        .secret_id(&secret)
        .secret_string(ring.to_text().expose())
        .send()
        .await
        .expect("PutSecretValue");
    assert_ne!(new_public.key_id, started_with.key_id);

    let run_id = central.start_run_on(&[&member.id]).await;
    // The agent already moved to the new key.
    let (_, result) = member.run_agent(&new_public).await;
    assert_eq!(result.sealed[0].key_id, new_public.key_id);
    central.intake_until_finalized().await;
    assert_eq!(
        kinds_to(&emails_of_run(&run_id), &owner_address(&users.rotate)),
        ["new_key", "password"]
    );
    assert!(central.alerts(0).await.is_empty());
}

/// Secrets Manager failing while the ring is read again is an outage, not
/// a box that cannot be opened: the key must not be refused for good (no
/// refusal recorded, no "not delivered" alert); intake fails so the
/// message comes back, and once Secrets Manager answers again the key
/// reaches its owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_ring_read_that_fails_is_retried_not_refused() {
    let _faults = faults_lock().await;
    let (member, users) = normal_member("ring-outage").await;
    let mut central = Central::new(Setup::default()).await;
    let secret = central.store_ring().await;
    // `keygen` added key B to the stored ring; the coordinator holds A only.
    let new_key = keyfleet_protocol::PrivateKey::generate();
    let new_public = new_key.public_key();
    let mut ring = keyfleet_protocol::KeyRing::new(
        keyfleet_protocol::PrivateKey::from_base64(central.key.to_base64().expose()).expect("copy"),
    );
    ring.add(new_key).expect("add");
    aws_sdk_secretsmanager::Client::new(&emu().config())
        .put_secret_value()
        .secret_id(&secret)
        .secret_string(ring.to_text().expose())
        .send()
        .await
        .expect("PutSecretValue");
    let run_id = central.start_run_on(&[&member.id]).await;
    let (_, result) = member.run_agent(&new_public).await;
    let sealed = result
        .sealed
        .iter()
        .find(|s| s.user_name == users.rotate)
        .expect("the rotated user's box");
    assert_eq!(sealed.key_id, new_public.key_id);
    let refused = keyfleet_reports::store::ledger_key(
        &member.id,
        &users.rotate,
        &sealed.access_key_id,
        "new_key_refused",
    );
    let (body, receipt) = central.receive_results().await.pop().expect("result");

    // Secrets Manager is down (every attempt, SDK retries included).
    emu()
        .set_faults(serde_json::json!({"seed": 1, "rules": [{
            "service": "secretsmanager", "action": "GetSecretValue",
            "kind": "unavailable", "match": {"SecretId": secret}}]}))
        .expect("set faults");
    let first = central.coordinator.intake(&body, 1).await;
    let injected = emu().faults().expect("faults")["injected"].clone();
    emu().clear_faults().expect("clear faults");
    assert!(
        injected.as_u64().unwrap_or_default() > 0,
        "the ring read met the outage: {injected}"
    );
    let refusal = central.object(&refused).await.map(String::from_utf8);
    assert!(
        refusal.is_none() && first.is_err(),
        "an outage of Secrets Manager must be retried, not refused: intake = {first:?}, refusal recorded = {refusal:?}"
    );
    let owner = owner_address(&users.rotate);
    assert!(
        !kinds_to(&emails_of_run(&run_id), &owner).contains(&"new_key".to_string()),
        "no zip without the key"
    );

    // The message comes back; Secrets Manager answers again.
    let again = central
        .coordinator
        .intake(&body, 2)
        .await
        .expect("intake once Secrets Manager is back");
    assert!(
        matches!(again, Intake::Duplicate { .. } | Intake::Accepted { .. }),
        "{again:?}"
    );
    central.delete_result(&receipt).await;
    assert_eq!(
        kinds_to(&emails_of_run(&run_id), &owner),
        ["new_key", "password"]
    );
    assert!(central.object(&refused).await.is_none(), "never refused");
    let alerts = central.alerts(0).await;
    assert!(
        !alerts
            .iter()
            .any(|(s, _)| s.contains("new key not delivered")),
        "{alerts:?}"
    );
}
