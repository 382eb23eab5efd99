//! SES refusing an owner's email, through the deployed system: the
//! coordinator's intake releases the email's ledger claim (which needs
//! `s3:DeleteObject` on its role: without it the claim stayed, every retry
//! skipped the email and the owner never got the key), records the account
//! as pending mail and consumes the result (a result retried by SQS would
//! end in the DLQ with its emails unsent); the coordinator's sweep then
//! sends the key, so the owner gets the zip and the password exactly once.

use crate::common::*;
use crate::mails::{delivered_key, kinds_for};
use aws_sdk_lambda::primitives::Blob;
use keyfleet_testkit::seed;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_email_is_sent_on_the_next_delivery_exactly_once() {
    let cli = deployment().await;
    let _faults = faults_lock().await;
    let emu = emu();
    let name = "ses-refused";
    let DueUser {
        account,
        iam,
        owner,
        key: first,
    } = account_with_due_user("cli-ses", name).await;

    // SES refuses the first email to this owner (the key file), as it
    // refuses a message it will not send; every later one goes through.
    emu.set_faults(serde_json::json!({"seed": 1, "rules": [{
        "service": "sesv2", "action": "SendEmail", "match": {"Destination": owner},
        "kind": "internal_error", "code": "MessageRejected", "status": 400,
        "message": "Email address is not verified.", "first_attempts": 1,
    }]}))
    .expect("faults");

    // A manual run, as an operator invokes the coordinator; the job, the
    // agent and the result's first delivery run their course.
    let admin = emu.config();
    let run_id = run_through_coordinator(&account, 120).await;
    let keys = seed::keys(&iam, name).await.expect("keys");
    assert_eq!(keys.len(), 2, "the new key exists: {keys:?}");
    let new_key = keys
        .iter()
        .find(|(id, _)| *id != first)
        .expect("new key")
        .0
        .clone();
    assert!(
        kinds_for(&emu.outbox().expect("outbox"), &account, &owner).is_empty(),
        "nothing reached the owner yet"
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&admin)
            .force_path_style(true)
            .build(),
    );
    let claim = keyfleet_reports::store::ledger_key(&account, name, &new_key, "new_key");
    let head = s3
        .head_object()
        .bucket("keyfleet-reports")
        .key(&claim)
        .send()
        .await;
    assert!(
        head.as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .is_some_and(|e| e.is_not_found()),
        "the claim on the key email was released: {head:?}"
    );
    let intake = emu.lambda_invocations().expect("invocations");
    let intake: Vec<_> = intake
        .iter()
        .filter(|i| {
            i["source"] == "sqs"
                && i["function_arn"]
                    .as_str()
                    .is_some_and(|a| a.ends_with(":function:keyfleet-coordinator"))
                && i["log_tail"]
                    .as_str()
                    .is_some_and(|l| l.contains(&owner) && l.contains("MessageRejected"))
        })
        .collect();
    assert_eq!(intake.len(), 1, "one intake met the refusal: {intake:?}");
    assert!(
        intake[0]["failed_items"]
            .as_array()
            .is_none_or(|f| f.is_empty()),
        "the result is consumed, not retried: {:?}",
        intake[0]
    );
    let pending = format!("pending-mail/{run_id}/{account}");
    assert!(
        s3.head_object()
            .bucket("keyfleet-reports")
            .key(&pending)
            .send()
            .await
            .is_ok(),
        "the account is recorded as pending mail"
    );

    // The coordinator's sweep (hourly in AWS; invoked now) sends the key.
    let swept = aws_sdk_lambda::Client::new(&admin)
        .invoke()
        .function_name("keyfleet-coordinator")
        .payload(Blob::new(r#"{"action":"sweep"}"#))
        .send()
        .await
        .expect("Invoke");
    assert!(swept.function_error().is_none(), "{swept:?}");
    let swept: serde_json::Value =
        serde_json::from_slice(swept.payload().expect("payload").as_ref()).expect("JSON");
    assert!(
        swept["mail"]["sent"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| *x == format!("{run_id}/{account}"))),
        "{swept}"
    );
    emu.clear_faults().expect("faults cleared");

    let mails = emu.outbox().expect("outbox");
    let kinds = kinds_for(&mails, &account, &owner);
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(count("new_key"), 1, "{kinds:?}");
    assert_eq!(count("password"), 1, "{kinds:?}");
    let dir = tempfile::tempdir().expect("temp dir");
    let delivered = delivered_key(&mails, &owner, &format!("-{name}.zip"), dir.path());
    assert_eq!(
        delivered.access_key_id, new_key,
        "the zip holds the key IAM has"
    );
    let report = cli.report(&run_id);
    assert_eq!(
        report["accounts"][0]["users"][0]["verdict"], "rotated",
        "{report}"
    );
}
