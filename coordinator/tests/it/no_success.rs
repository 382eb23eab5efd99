//! No silent success: a run that selects no account, or in which every
//! selected account failed or is missing, is an error. The coordinator says
//! so in the consolidated report (JSON, CSV, HTML), in the summary email and
//! in an SNS alert; a start that selects nothing also fails the call.

use crate::fleet::*;
use keyfleet_coordinator::RunRequest;
use keyfleet_protocol::report::RunReport;

/// The report files of a run, as text.
async fn report_files(central: &Central, run_id: &str) -> Vec<(&'static str, String)> {
    let mut files = Vec::new();
    for ext in ["json", "csv", "html"] {
        let bytes = central
            .object(&format!("reports/{run_id}/report.{ext}"))
            .await
            .unwrap_or_else(|| panic!("report.{ext} stored"));
        files.push((ext, String::from_utf8(bytes).expect("UTF-8 report")));
    }
    files
}

fn summary_of(run_id: &str) -> Mail {
    let mut summaries: Vec<Mail> = emails_of_run(run_id)
        .into_iter()
        .filter(|m| m.kind == "summary")
        .collect();
    assert_eq!(summaries.len(), 1, "one summary for run {run_id}");
    summaries.pop().expect("one summary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_selects_no_account_is_an_error_alerted_and_reported() {
    let (member, _) = normal_member("all-excluded").await;
    let central = Central::new(Setup {
        exclude_accounts: vec![member.id.clone()],
        ..Setup::default()
    })
    .await;
    let err = central
        .coordinator
        .start_run(RunRequest {
            accounts: Some(vec![member.id.clone()]),
            ..RunRequest::default()
        })
        .await
        .expect_err("a run that selects no account is an error");
    let msg = err.to_string();
    assert!(msg.contains("no account selected"), "{msg}");
    assert!(
        msg.contains(&member.id) && msg.contains("excluded by account id"),
        "the error says which accounts were left out and why: {msg}"
    );
    assert!(member.receive_jobs().await.is_empty(), "no job went out");

    // The run is on record, finalized at once, and says why it failed.
    let report: RunReport = central
        .coordinator
        .report("latest")
        .await
        .expect("report")
        .expect("the run is finalized at once");
    let run_id = report.run_id.clone();
    assert!(msg.contains(&run_id), "the error names the run: {msg}");
    assert_eq!(report.totals.accounts, 0);
    assert_eq!(report.totals.accounts_skipped, 1);
    for (ext, text) in report_files(&central, &run_id).await {
        assert!(
            text.contains("no account selected"),
            "report.{ext} says no account was selected:\n{text}"
        );
    }

    let alerts = central.alerts(1).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let (subject, message) = &alerts[0];
    assert!(subject.contains(&run_id), "{subject}");
    assert!(subject.contains("no account selected"), "{subject}");
    assert!(message.contains("excluded by account id"), "{message}");

    let summary = summary_of(&run_id);
    assert!(summary.subject.contains("FAILED"), "{}", summary.subject);
    assert!(
        summary.text.contains("no account selected"),
        "{}",
        summary.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_where_every_account_failed_or_is_missing_is_alerted_and_reported() {
    // One account whose agent never answers, one without an agent.
    let (silent, _) = normal_member("all-fail-silent").await;
    let no_agent = create_member("all-fail-no-agent").await;
    let central = Central::new(Setup {
        deadline: time::Duration::ZERO,
        ..Setup::default()
    })
    .await;
    let run_id = central
        .coordinator
        .start_run(RunRequest {
            accounts: Some(vec![silent.id.clone(), no_agent.id.clone()]),
            ..RunRequest::default()
        })
        .await
        .expect("a job went out: the start itself succeeds")
        .run_id;
    assert_eq!(
        central.coordinator.sweep().await.expect("sweep"),
        vec![run_id.clone()]
    );
    let report = central
        .coordinator
        .report(&run_id)
        .await
        .expect("report")
        .expect("finalized");
    assert_eq!(
        (
            report.totals.accounts_missing,
            report.totals.accounts_no_agent
        ),
        (1, 1)
    );
    for (ext, text) in report_files(&central, &run_id).await {
        assert!(
            text.contains("every selected account failed or is missing"),
            "report.{ext} says the run failed as a whole:\n{text}"
        );
    }

    let alerts = central.alerts(1).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let (subject, message) = &alerts[0];
    assert!(subject.contains(&run_id), "{subject}");
    assert!(subject.contains("failed"), "{subject}");
    assert!(
        message.contains("every selected account failed or is missing"),
        "{message}"
    );

    let summary = summary_of(&run_id);
    assert!(summary.subject.contains("FAILED"), "{}", summary.subject);
    assert!(
        summary
            .text
            .contains("every selected account failed or is missing"),
        "{}",
        summary.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_manual_run_that_selects_no_account_fails_the_invoke_the_schedule_reports_it() {
    use keyfleet_coordinator::lambda;
    use serde_json::json;
    let member = create_member("lambda-excluded").await;
    let central = Central::new(Setup {
        exclude_accounts: vec![member.id.clone()],
        ..Setup::default()
    })
    .await;
    // A person invoking the function is told: the invocation fails.
    let err = lambda::handle(
        &central.coordinator,
        json!({"action": "run", "accounts": [member.id]}),
    )
    .await
    .expect_err("a manual run that selects no account fails the invocation");
    assert_eq!(err.error_type, "keyfleet.NoAccountSelected");
    assert!(
        err.error_message.contains("no account selected"),
        "{}",
        err.error_message
    );
    // The schedule's start is invoked asynchronously: a function error would
    // only make Lambda run it twice more, with the same result. It answers
    // with the error in its payload; the alert, report and summary say it.
    let answer = lambda::handle(
        &central.coordinator,
        json!({"action": "start", "accounts": [member.id]}),
    )
    .await
    .expect("the scheduled start is not retried");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("no account selected"), "{answer}");
    let alerts = central.alerts(2).await;
    assert_eq!(alerts.len(), 2, "one alert per run: {alerts:?}");
    assert!(alerts
        .iter()
        .all(|(subject, _)| subject.contains("no account selected")));
}
