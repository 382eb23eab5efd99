//! AWS builds the credential report asynchronously: GenerateCredentialReport
//! answers `STARTED` then `INPROGRESS` until it is built, and
//! GetCredentialReport fails with `ReportInProgress` meanwhile. The scan
//! polls; a report that never gets built sends it to the per-user scan,
//! which the result says. The emulator's
//! `POST /_keyfleet/iam/credential-report {"in_progress": N, "account"}`
//! makes the account's next N generations answer in progress (see
//! tests/emulator/ext_clock.py); each test uses its own account.

use crate::fixture::*;
use keyfleet_agent::ReportPolling;
use keyfleet_protocol::{Policy, ScanMode, Verdict};
use std::io::{Read, Write};
use std::time::Duration;

/// Makes the account's next `n` GenerateCredentialReport calls answer
/// in progress. The testkit has no method for this control endpoint, so a
/// plain HTTP/1.1 POST (the emulator's control API is local, unsigned JSON).
fn report_in_progress(account: &str, n: u32) {
    let body = serde_json::json!({"in_progress": n, "account": account}).to_string();
    let addr = emu()
        .endpoint()
        .strip_prefix("http://")
        .expect("the emulator speaks plain HTTP")
        .to_string();
    let mut conn = std::net::TcpStream::connect(&addr).expect("connect to the emulator");
    write!(
        conn,
        "POST /_keyfleet/iam/credential-report HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send the request");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("read the answer");
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
        "POST /_keyfleet/iam/credential-report: {answer}"
    );
}

fn users() -> Vec<UserSpec> {
    vec![
        user("in-use", vec![key(10, true, Some(1))]),
        user(
            "two-keys",
            vec![key(40, true, Some(2)), key(5, false, None)],
        ),
        user("unused", vec![key(95, true, None)]),
        user("no-keys", vec![]),
    ]
}

/// What the scan must have seen of [`users`]: name, key count and whether
/// the oldest key is active, sorted by name.
fn seen(result: &keyfleet_protocol::AccountResult) -> Vec<(String, usize, Option<bool>)> {
    let mut seen: Vec<_> = result
        .users
        .iter()
        .map(|u| {
            (
                u.user_name.clone(),
                u.keys.len(),
                u.keys
                    .first()
                    .map(|k| k.status == keyfleet_protocol::KeyStatus::Active),
            )
        })
        .collect();
    seen.sort();
    seen
}

fn expected() -> Vec<(String, usize, Option<bool>)> {
    vec![
        ("in-use".into(), 1, Some(true)),
        ("no-keys".into(), 0, None),
        ("two-keys".into(), 2, Some(true)),
        ("unused".into(), 1, Some(true)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_waits_for_a_report_in_progress_and_reads_it() {
    let mut acct = new_account().await;
    acct.populate(&users()).await;
    // STARTED, INPROGRESS, INPROGRESS, then COMPLETE: with the default
    // polling, three waits (250 + 500 + 1000 ms).
    report_in_progress(&acct.account_id, 3);
    let mut job = acct.job(Policy::default());
    job.dry_run = true;
    let result = deliver(&acct.agent, &job).await.expect("agent run");
    assert_eq!(result.scan_mode, ScanMode::CredentialReport, "{result:?}");
    assert_eq!(result.error, None);
    assert_eq!(seen(&result), expected());
    let calls = &result.api_calls;
    assert_eq!(
        calls.get("iam:GenerateCredentialReport"),
        Some(&4),
        "polled through the three answers in progress: {calls:?}"
    );
    assert_eq!(calls.get("iam:GetCredentialReport"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("iam:ListUsers"), None, "no fallback: {calls:?}");
    let unused = result.users.iter().find(|u| u.user_name == "unused");
    assert_eq!(unused.map(|u| u.verdict), Some(Verdict::Cleaned));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_still_in_progress_after_the_polls_falls_back_to_the_per_user_scan() {
    let mut acct = new_account().await;
    acct.populate(&users()).await;
    let polling = ReportPolling {
        attempts: 3,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
    };
    let agent = acct.agent.clone().with_report_polling(polling);
    // As many answers in progress as the agent polls: it gives up on the
    // last one, and the account's state is back to normal afterwards.
    report_in_progress(&acct.account_id, polling.attempts);
    let mut job = acct.job(Policy::default());
    job.dry_run = true;
    let result = deliver(&agent, &job).await.expect("agent run");
    assert_eq!(result.scan_mode, ScanMode::PerUser, "{result:?}");
    assert_eq!(result.error, None, "a fallback, not a failure");
    assert_eq!(seen(&result), expected());
    let calls = &result.api_calls;
    assert_eq!(
        calls.get("iam:GenerateCredentialReport"),
        Some(&u64::from(polling.attempts)),
        "bounded: {calls:?}"
    );
    assert_eq!(calls.get("iam:GetCredentialReport"), None, "{calls:?}");
    assert_eq!(calls.get("iam:ListUsers"), Some(&1), "{calls:?}");
    let unused = result.users.iter().find(|u| u.user_name == "unused");
    assert_eq!(unused.map(|u| u.verdict), Some(Verdict::Cleaned));
}
