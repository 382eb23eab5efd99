//! Owner mail that SES refuses when the result comes in: the result is
//! still taken in (no SQS retry that would end in the DLQ), the account is
//! recorded as pending, and the sweep sends what is missing, each email
//! once: a password email that failed after its zip went out carries that
//! zip's password. Mail that never goes out is alerted after its attempts.

use crate::emails::{assert_password_opens_zip, check_zip, password_from};
use crate::fleet::*;
use keyfleet_coordinator::{Intake, PENDING_MAIL_PREFIX};

fn count(mails: &[Mail], to: &str, kind: &str) -> usize {
    mails
        .iter()
        .filter(|m| m.to.first().map(String::as_str) == Some(to) && m.tells_of(kind))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_email_refused_after_its_zip_is_sent_by_the_sweep_with_the_zips_password() {
    let _faults = faults_lock().await;
    let (member, users) = normal_member("mail-retry").await;
    let central = Central::new(Setup::default()).await;
    let owner = owner_address(&users.rotate);
    let run_id = central.start_run_on(&[&member.id]).await;
    member.run_agent(&central.public_key).await;
    // The owner's first email (the zip) goes out; every later one fails,
    // SDK retries included.
    emu()
        .set_faults(serde_json::json!({"seed": 1, "rules": [{
            "service": "sesv2", "action": "SendEmail", "kind": "unavailable",
            "match": {"Destination": owner}, "from_attempt": 1}]}))
        .expect("set faults");
    let intakes = central.intake_until_finalized().await;
    assert!(
        matches!(
            intakes.last(),
            Some(Intake::Accepted {
                finalized: true,
                ..
            })
        ),
        "taken in and finalized despite the mail: {intakes:?}"
    );
    let pending = format!("{PENDING_MAIL_PREFIX}{run_id}/{}", member.id);
    assert!(
        central.object(&pending).await.is_some(),
        "recorded as pending"
    );
    let mails = emails_of_run(&run_id);
    assert_eq!(count(&mails, &owner, "new_key"), 1);
    assert_eq!(count(&mails, &owner, "password"), 0);

    // A sweep while SES still refuses: still pending, nothing sent twice.
    let retry = central
        .coordinator
        .resend_pending_mail()
        .await
        .expect("resend");
    assert_eq!(retry.pending, vec![format!("{run_id}/{}", member.id)]);
    assert_eq!(count(&emails_of_run(&run_id), &owner, "new_key"), 1);

    // SES is back: the sweep sends the password and the notice, once.
    emu().clear_faults().expect("clear faults");
    let retry = central
        .coordinator
        .resend_pending_mail()
        .await
        .expect("resend");
    assert_eq!(retry.sent, vec![format!("{run_id}/{}", member.id)]);
    assert!(central.object(&pending).await.is_none(), "record cleared");
    let again = central
        .coordinator
        .resend_pending_mail()
        .await
        .expect("resend");
    assert_eq!(again, Default::default(), "nothing left to send");
    let mails = emails_of_run(&run_id);
    for kind in ["new_key", "password"] {
        assert_eq!(count(&mails, &owner, kind), 1, "{kind}");
    }
    assert_eq!(
        count(&mails, &owner, "deactivation_scheduled"),
        0,
        "told in the new key's email"
    );

    // The password sent by the sweep opens the zip sent at intake.
    assert_password_opens_zip(&mails, &owner);
    // The one alert: the run was finalized with the account's mail waiting.
    let alerts = central.alerts(1).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].0.contains("owner emails wait") && alerts[0].1.contains(&member.id),
        "{alerts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_mail_that_never_goes_out_is_alerted_once_its_attempts_are_spent() {
    let _faults = faults_lock().await;
    let (member, users) = normal_member("mail-gives-up").await;
    let central = Central::new(Setup::default()).await;
    let owner = owner_address(&users.rotate);
    let run_id = central.start_run_on(&[&member.id]).await;
    member.run_agent(&central.public_key).await;
    emu()
        .set_faults(serde_json::json!({"seed": 1, "rules": [{
            "service": "sesv2", "action": "SendEmail", "kind": "unavailable",
            "match": {"Destination": owner}}]}))
        .expect("set faults");
    central.intake_until_finalized().await; // attempt 1 of 3
    let first = central
        .coordinator
        .resend_pending_mail()
        .await
        .expect("resend"); // attempt 2 of 3
    let label = format!("{run_id}/{}", member.id);
    assert_eq!(first.pending, vec![label.clone()]);
    let retry = central
        .coordinator
        .resend_pending_mail()
        .await
        .expect("resend"); // attempt 3 of 3
    emu().clear_faults().expect("clear faults");
    assert_eq!(retry.gave_up, vec![label]);
    let alerts = central.alerts(1).await;
    let gave_up: Vec<_> = alerts
        .iter()
        .filter(|(s, _)| s.contains("owner emails not sent"))
        .collect();
    assert_eq!(gave_up.len(), 1, "{alerts:?}");
    let text = &gave_up[0].1;
    assert!(text.contains(&member.id), "names the account: {text}");
    assert!(text.contains("after 3 attempts"), "{text}");
    assert!(
        text.contains("ServiceUnavailable"),
        "the last error: {text}"
    );
    assert!(central
        .object(&format!("runs/{run_id}/mail-failed/{}", member.id))
        .await
        .is_some());
    // Given up means given up: the next sweep does not try again.
    let next = central
        .coordinator
        .resend_pending_mail()
        .await
        .expect("resend");
    assert_eq!(next, Default::default());
    let other = owner_address(&users.unused);
    assert_eq!(
        count(&emails_of_run(&run_id), &other, "unused_deleted"),
        1,
        "the other owners' mail went out at intake"
    );
}

/// Two deliveries of one result overlap (SQS handed the message to two
/// invocations): the first claims the zip and SES refuses it; while it is
/// releasing its claim, the second finds the zip claimed. The owner must
/// end up with one zip and one password, the password sent after the zip
/// and opening it, whichever delivery (or the sweep) sends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_deliveries_of_a_key_send_one_zip_and_the_password_that_opens_it() {
    let _faults = faults_lock().await;
    let (member, users) = normal_member("mail-overlap").await;
    let central = Central::new(Setup::default()).await;
    let owner = owner_address(&users.rotate);
    let run_id = central.start_run_on(&[&member.id]).await;
    let (_, result) = member.run_agent(&central.public_key).await;
    let new_key = &result
        .sealed
        .iter()
        .find(|s| s.user_name == users.rotate)
        .expect("the rotated user's box")
        .access_key_id;
    let zip_claim =
        keyfleet_reports::store::ledger_key(&member.id, &users.rotate, new_key, "new_key");
    let (body, receipt) = central.receive_results().await.pop().expect("result");
    // The owner's first SendEmail fails (each of the SDK's three attempts);
    // the claim's release after it is slow, so the claim is still there
    // while the second delivery runs.
    emu()
        .set_faults(serde_json::json!({"seed": 1, "rules": [
            {"service": "sesv2", "action": "SendEmail", "kind": "unavailable",
             "match": {"Destination": owner}, "first_attempts": 3},
            {"service": "s3", "action": "DeleteObject", "kind": "delay", "delay_ms": 20000,
             "match": {"Key": zip_claim}, "first_attempts": 1}]}))
        .expect("set faults");
    let first = {
        let coordinator = central.coordinator.clone();
        let body = body.clone();
        tokio::spawn(async move { coordinator.intake(&body, 1).await })
    };
    // Until the first delivery is releasing its claim (the emulator logs
    // the held DeleteObject when it starts holding it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let faults = emu().faults().expect("faults");
        let releasing = faults["log"]
            .as_array()
            .is_some_and(|log| log.iter().any(|e| e["action"] == "DeleteObject"));
        if releasing {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first delivery never released its claim: {faults}"
        );
        // A poll interval, not a synchronisation: the condition above is.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let second = central.coordinator.intake(&body, 2).await;
    let first = first.await.expect("first delivery");
    emu().clear_faults().expect("clear faults");
    assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
    central.delete_result(&receipt).await;

    // The sweep sends whatever is still missing.
    central
        .coordinator
        .resend_pending_mail()
        .await
        .expect("resend");
    let mails = emails_of_run(&run_id);
    assert_eq!(count(&mails, &owner, "new_key"), 1, "one zip");
    assert_eq!(count(&mails, &owner, "password"), 1, "one password");
    let position = |kind: &str| {
        mails
            .iter()
            .position(|m| m.to[0] == owner && m.tells_of(kind))
            .expect(kind)
    };
    let (zip_name, zip) = &mails[position("new_key")].attachments[0];
    let dir = tempfile::tempdir().expect("temp dir");
    let zip_path = dir.path().join(zip_name);
    std::fs::write(&zip_path, zip).expect("write zip");
    let out = check_zip(&zip_path, &password_from(&mails[position("password")].text));
    assert!(
        out.status.success(),
        "the password opens the zip: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        position("new_key") < position("password"),
        "the password goes out after its zip"
    );
}
