//! Secret hygiene across every sink: the demo's three cycles (rotate,
//! deactivate, delete) through the deployed system with the agent and the
//! coordinator logging at trace level, then every
//! place a secret could end up is read back and searched:
//!
//! - the secrets: the new secret access key (out of the zip), the zip's
//!   password (out of the second email), every private key of the
//!   coordinator's key ring, and the job's token;
//! - the sinks: the Lambdas' CloudWatch logs and log tails, every object of
//!   every S3 bucket of both accounts, every SQS message sent and SNS
//!   message published (the harness's message log, which keeps messages
//!   after they were consumed), and every email (its decoded parts and
//!   attachments, not only the raw MIME).
//!
//! The secret key may travel only inside the encrypted zip, the password
//! only in the password email, the private keys nowhere, and the token only
//! in the job message and the result message.

use crate::common::*;
use crate::mails::delivered_key;
use aws_sdk_lambda::types::Environment;
use keyfleet_testkit::seed;
use keyfleet_testkit::DEFAULT_ACCOUNT;

/// Sets `RUST_LOG` of a function, keeping its other variables.
async fn log_level(lambda: &aws_sdk_lambda::Client, function: &str, level: &str) {
    let conf = lambda
        .get_function_configuration()
        .function_name(function)
        .send()
        .await
        .expect("GetFunctionConfiguration");
    let mut vars = conf
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default();
    vars.insert("RUST_LOG".into(), level.into());
    lambda
        .update_function_configuration()
        .function_name(function)
        .environment(Environment::builder().set_variables(Some(vars)).build())
        .send()
        .await
        .expect("UpdateFunctionConfiguration");
}

/// Every object of every bucket the account owns, as (bucket/key, text).
async fn all_objects(cfg: &aws_config::SdkConfig) -> Vec<(String, String)> {
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(cfg)
            .force_path_style(true)
            .build(),
    );
    let mut out = Vec::new();
    let buckets = s3.list_buckets().send().await.expect("ListBuckets");
    for b in buckets.buckets() {
        let bucket = b.name().expect("bucket name");
        let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
        while let Some(page) = pages.next().await {
            for o in page.expect("ListObjectsV2").contents() {
                let key = o.key().expect("key");
                let got = s3.get_object().bucket(bucket).key(key).send().await;
                // Another test's run may delete an object between the
                // listing and the read (a delivery marker once its key is
                // delivered): what is gone holds nothing to look at.
                if got
                    .as_ref()
                    .err()
                    .and_then(|e| e.as_service_error())
                    .is_some_and(|e| e.is_no_such_key())
                {
                    continue;
                }
                let body = got
                    .expect("GetObject")
                    .body
                    .collect()
                    .await
                    .expect("object body")
                    .into_bytes();
                out.push((
                    format!("{bucket}/{key}"),
                    String::from_utf8_lossy(&body).into_owned(),
                ));
            }
        }
    }
    out
}

/// An email's decoded content: every text part and every attachment's
/// bytes (lossy), after the raw message.
fn decoded(raw: &str) -> Vec<(String, String)> {
    let parsed = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .expect("MIME parses");
    let mut parts = vec![("raw".to_string(), raw.to_string())];
    for (i, p) in parsed.parts.iter().enumerate() {
        parts.push((
            format!("part {i}"),
            String::from_utf8_lossy(p.contents()).into_owned(),
        ));
    }
    parts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_an_object_a_message_or_an_email_it_does_not_belong_to() {
    let cli = deployment().await;
    let emu = emu();
    let name = "hygiene";
    let DueUser {
        account,
        iam,
        owner,
        key: original,
    } = account_with_due_user("cli-hygiene", name).await;
    let admin = emu.config();
    let member = emu.config_for_account(&account).await.expect("member");
    let member_lambda = aws_sdk_lambda::Client::new(&member);
    let central_lambda = aws_sdk_lambda::Client::new(&admin);
    log_level(&member_lambda, "keyfleet-agent", "trace").await;
    log_level(&central_lambda, "keyfleet-coordinator", "trace").await;

    let cycle = || async {
        let run_id = run_through_coordinator(&account, 120).await;
        let report = cli.report(&run_id);
        let verdict = report["accounts"][0]["users"][0]["verdict"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (run_id, verdict, report)
    };
    // The demo's three cycles on this account: rotate (key at day 85),
    // deactivate once the owner switched (day 95), delete (day 105).
    let (run_id, verdict, report) = cycle().await;
    assert_eq!(verdict, "rotated", "{report}");
    let new_key = seed::keys(&iam, name)
        .await
        .expect("keys")
        .into_iter()
        .map(|(k, _)| k)
        .find(|k| *k != original)
        .expect("the new key");
    emu.advance_clock(10.0, Some(&account)).expect("clock");
    let switched = (time::OffsetDateTime::now_utc() - time::Duration::days(2))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("date");
    emu.mark_key_used(&account, &new_key, Some(&switched), "s3", "eu-west-1")
        .expect("mark used");
    let (_, verdict, report) = cycle().await;
    assert_eq!(verdict, "deactivated", "{report}");
    emu.advance_clock(10.0, Some(&account)).expect("clock");
    let (_, verdict, report) = cycle().await;
    assert_eq!(verdict, "cleaned", "{report}");
    assert_eq!(
        seed::keys(&iam, name).await.expect("keys"),
        vec![(new_key.clone(), true)]
    );
    log_level(&central_lambda, "keyfleet-coordinator", "info").await;

    // The secrets.
    let mails = emu.outbox().expect("outbox");
    let dir = tempfile::tempdir().expect("temp dir");
    let delivered = delivered_key(&mails, &owner, &format!("-{name}.zip"), dir.path());
    let ring = aws_sdk_secretsmanager::Client::new(&admin)
        .get_secret_value()
        .secret_id("keyfleet-coordinator/private-key")
        .send()
        .await
        .expect("the coordinator's key ring")
        .secret_string()
        .expect("text")
        .to_string();
    let private_keys: Vec<String> = ring
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    assert!(!private_keys.is_empty());
    let messages = emu.messages().expect("message log");
    let sqs = messages["sqs"].as_array().expect("sqs messages");
    let job_queue = format!("/{account}/keyfleet-jobs");
    let job = sqs
        .iter()
        .find(|m| m["queue"] == job_queue.as_str())
        .expect("the job in the message log");
    let job_body = job["body"].as_str().expect("body");
    let token = serde_json::from_str::<serde_json::Value>(job_body).expect("job JSON")["token"]
        .as_str()
        .expect("token")
        .to_string();
    assert!(token.len() >= 32, "a job token: {token}");

    let mut secrets: Vec<(&str, String)> = vec![
        ("the secret access key", delivered.secret_access_key.clone()),
        ("the zip password", delivered.password.clone()),
    ];
    for k in &private_keys {
        secrets.push(("a coordinator private key", k.clone()));
    }
    let check = |place: &str, text: &str, allowed: &[&str]| {
        for (what, s) in &secrets {
            if !allowed.contains(what) {
                assert!(!text.contains(s.as_str()), "{what} in {place}");
            }
        }
    };

    // Logs: CloudWatch and the invocations' tails, at trace level.
    let agent_logs = crate::mails::lambda_logs(&account, "keyfleet-agent").await;
    let coordinator_logs = crate::mails::lambda_logs(DEFAULT_ACCOUNT, "keyfleet-coordinator").await;
    assert!(
        agent_logs.contains("TRACE") || agent_logs.contains("\"level\":\"TRACE\""),
        "the agent logged at trace level"
    );
    for (place, text) in [
        ("the agent's logs", &agent_logs),
        ("the coordinator's logs", &coordinator_logs),
    ] {
        check(place, text, &[]);
        if let Some(line) = text.lines().find(|l| l.contains(&token)) {
            let cut: String = line.chars().take(600).collect();
            panic!(
                "the job token in {place}: {}",
                cut.replace(&token, "<TOKEN>")
            );
        }
    }
    for inv in emu.lambda_invocations().expect("invocations") {
        let tail = inv["log_tail"].as_str().unwrap_or_default();
        check("a log tail", tail, &[]);
        assert!(!tail.contains(&token), "the job token in a log tail");
    }

    // Every S3 object of both accounts.
    let mut objects = all_objects(&admin).await;
    objects.extend(all_objects(&member).await);
    assert!(
        objects.iter().any(|(k, _)| k.contains(&run_id)),
        "the run's objects are among those read"
    );
    for (key, text) in &objects {
        check(key, text, &[]);
        assert!(!text.contains(&token), "the job token in s3://{key}");
    }

    // Every SQS message and SNS message; the token only in this account's
    // job and result.
    for m in sqs {
        let body = m["body"].as_str().unwrap_or_default();
        let queue = m["queue"].as_str().unwrap_or_default();
        check(&format!("an SQS message to {queue}"), body, &[]);
        if body.contains(&token) {
            let is_job = queue == job_queue;
            let is_result = queue.ends_with("/keyfleet-results")
                && body.contains(&format!("\"account_id\":\"{account}\""));
            assert!(is_job || is_result, "the job token in a message to {queue}");
        }
    }
    for m in messages["sns"].as_array().expect("sns messages") {
        let text = format!("{} {}", m["subject"], m["message"]);
        check("an SNS message", &text, &[]);
        assert!(!text.contains(&token), "the job token in an SNS message");
    }

    // Emails: the password only in the password email, the secret key in
    // none (the zip is encrypted), the private keys and the token nowhere.
    for m in &mails {
        let kind = crate::mails::header(&m.raw, "X-Keyfleet-Kind");
        let allowed: &[&str] = if kind == "password" {
            &["the zip password"]
        } else {
            &[]
        };
        for (part, text) in decoded(&m.raw) {
            check(&format!("{part} of a {kind} email"), &text, allowed);
            assert!(!text.contains(&token), "the job token in a {kind} email");
        }
    }
}
