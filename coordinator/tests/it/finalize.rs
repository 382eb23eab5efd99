//! A run is finalized exactly once: a second finalize is a no-op, and the
//! sweep finalizes a run past its deadline, listing the accounts that never
//! answered as missing.

use crate::fleet::*;
use keyfleet_coordinator::RunRequest;
use keyfleet_protocol::report::{AccountState, RunReport};
use keyfleet_protocol::Dispatch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_finalizes_an_overdue_run_once_with_missing_accounts() {
    let (answering, _) = normal_member("sweep-ok").await;
    let (silent, _) = normal_member("sweep-silent").await;
    let central = Central::new(Setup {
        deadline: time::Duration::ZERO,
        ..Setup::default()
    })
    .await;
    let manifest = central
        .coordinator
        .start_run(RunRequest {
            accounts: Some(vec![answering.id.clone(), silent.id.clone()]),
            ..RunRequest::default()
        })
        .await
        .expect("start run");
    let run_id = manifest.run_id.clone();
    assert!(manifest
        .accounts
        .iter()
        .all(|a| a.dispatch == Dispatch::Sent));
    assert!(
        central
            .object(&format!("runs/{run_id}/report.json"))
            .await
            .is_none(),
        "not finalized while jobs are out"
    );

    // One agent answers; the other never runs.
    answering.run_agent(&central.public_key).await;
    let (body, receipt) = central
        .receive_results()
        .await
        .pop()
        .expect("the answering agent's result");
    let intake = central.coordinator.intake(&body, 1).await.expect("intake");
    assert!(
        matches!(
            intake,
            keyfleet_coordinator::Intake::Accepted {
                account_complete: true,
                finalized: false,
                ..
            }
        ),
        "{intake:?}"
    );
    central.delete_result(&receipt).await;

    // The deadline (zero) has passed: the sweep finalizes the run.
    let swept = central.coordinator.sweep().await.expect("sweep");
    assert_eq!(swept, vec![run_id.clone()]);
    let report: RunReport = serde_json::from_slice(
        &central
            .object(&format!("reports/{run_id}/report.json"))
            .await
            .expect("report.json"),
    )
    .expect("report JSON");
    assert!(!report.complete);
    assert!(report.has_problems());
    assert_eq!(report.totals.accounts, 2);
    assert_eq!(report.totals.accounts_ok, 1);
    assert_eq!(report.totals.accounts_missing, 1);
    let missing: Vec<&str> = report
        .accounts
        .iter()
        .filter(|a| a.state == AccountState::Missing)
        .map(|a| a.account_id.as_str())
        .collect();
    assert_eq!(missing, vec![silent.id.as_str()]);
    assert_eq!(
        report.accounts[0].account_id, silent.id,
        "problem accounts come first"
    );
    for ext in ["csv", "html"] {
        assert!(
            central
                .object(&format!("reports/{run_id}/report.{ext}"))
                .await
                .is_some(),
            "report.{ext}"
        );
    }
    let stored = central
        .coordinator
        .report(&run_id)
        .await
        .expect("report")
        .expect("stored report");
    assert_eq!(stored.totals, report.totals);

    // The security team: one summary naming the missing account, one alert.
    let summaries: Vec<Mail> = emails_of_run(&run_id)
        .into_iter()
        .filter(|m| m.kind == "summary")
        .collect();
    assert_eq!(summaries.len(), 1);
    assert!(summaries[0].text.contains(&silent.id));
    assert!(summaries[0].text.contains("missing"));
    let alerts = central.alerts(1).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].1.contains("1 missing"), "{alerts:?}");

    // Exactly once: neither finalize nor another sweep does it again.
    assert_eq!(
        central
            .coordinator
            .finalize(&run_id)
            .await
            .expect("finalize"),
        None
    );
    assert_eq!(
        central.coordinator.sweep().await.expect("sweep"),
        Vec::<String>::new()
    );
    assert_eq!(
        emails_of_run(&run_id)
            .iter()
            .filter(|m| m.kind == "summary")
            .count(),
        1
    );
    assert_eq!(central.alerts(0).await, vec![], "no second alert");
    // The summary the sweep stored, with its users read back.
    let report = keyfleet_reports::read::with_users(central.coordinator.store(), report)
        .await
        .expect("users");
    assert_eq!(
        central.coordinator.report("latest").await.expect("latest"),
        Some(report)
    );

    // A late result is still stored (first write wins), but the run stays
    // as finalized.
    silent.run_agent(&central.public_key).await;
    let (late, receipt) = central.receive_results().await.pop().expect("late result");
    let intake = central
        .coordinator
        .intake(&late, 1)
        .await
        .expect("late intake");
    assert!(
        matches!(
            intake,
            keyfleet_coordinator::Intake::Accepted {
                finalized: false,
                ..
            }
        ),
        "{intake:?}"
    );
    central.delete_result(&receipt).await;
    let alerts = central.alerts(1).await;
    assert!(
        alerts
            .iter()
            .any(|(s, m)| s.contains("result after the report") && m.contains(&silent.id)),
        "a late result is alerted: {alerts:?}"
    );
    let again = central
        .coordinator
        .report(&run_id)
        .await
        .expect("report")
        .expect("stored report");
    assert_eq!(again.totals.accounts_missing, 1, "the report is final");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_of_a_completed_run_returns_none() {
    let (member, _) = normal_member("fin-once").await;
    let central = Central::new(Setup::default()).await;
    let run_id = central
        .coordinator
        .start_run(RunRequest {
            accounts: Some(vec![member.id.clone()]),
            ..RunRequest::default()
        })
        .await
        .expect("start run")
        .run_id;
    member.run_agent(&central.public_key).await;
    central.intake_until_finalized().await;
    let first = central
        .object(&format!("reports/{run_id}/report.json"))
        .await
        .expect("report.json");
    for _ in 0..2 {
        assert_eq!(
            central
                .coordinator
                .finalize(&run_id)
                .await
                .expect("finalize"),
            None
        );
    }
    assert_eq!(
        central
            .object(&format!("reports/{run_id}/report.json"))
            .await
            .expect("report.json"),
        first,
        "the report was not rewritten"
    );
    assert_eq!(
        emails_of_run(&run_id)
            .iter()
            .filter(|m| m.kind == "summary")
            .count(),
        1
    );
    // A run that does not exist cannot be finalized.
    assert!(central
        .coordinator
        .finalize("20200101T000000Z-nosuch")
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_cleanup_runs_once() {
    let (member, _) = normal_member("cleanup-once").await;
    let central = Central::new(Setup::default()).await;
    let policy = keyfleet_protocol::Policy {
        cleanup: true,
        ..keyfleet_protocol::Policy::default()
    };
    let req = || RunRequest {
        accounts: Some(vec![member.id.clone()]),
        policy: Some(policy.clone()),
        ..RunRequest::default()
    };
    let first = central
        .coordinator
        .start_run(req())
        .await
        .expect("first clean-up run");
    member.run_agent(&central.public_key).await;
    central.intake_until_finalized().await;
    let err = central
        .coordinator
        .start_run(req())
        .await
        .expect_err("a second clean-up run is refused");
    assert!(err.to_string().contains(&first.run_id), "{err}");
    // A dry run with the flag is still allowed (it changes nothing).
    central
        .coordinator
        .start_run(RunRequest {
            dry_run: true,
            ..req()
        })
        .await
        .expect("dry run");
}

/// The report files are the finalize marker's: a finalizer that computed
/// another report (here the late result's intake, which found no marker
/// when it looked and lost the claim to the sweep) never overwrites them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalizer_that_loses_the_claim_leaves_the_winners_report_files() {
    let _faults = faults_lock().await;
    let (answering, _) = normal_member("fin-race-ok").await;
    let (late, _) = normal_member("fin-race-late").await;
    let central = Central::new(Setup {
        deadline: time::Duration::ZERO,
        ..Setup::default()
    })
    .await;
    let run_id = central.start_run_on(&[&answering.id, &late.id]).await;
    answering.run_agent(&central.public_key).await;
    let (body, receipt) = central.receive_results().await.pop().expect("result");
    central.coordinator.intake(&body, 1).await.expect("intake");
    central.delete_result(&receipt).await;
    // The winner: the sweep, with one account missing.
    assert_eq!(
        central.coordinator.sweep().await.expect("sweep"),
        vec![run_id.clone()]
    );
    let marker = central
        .object(&keyfleet_reports::store::final_key(&run_id))
        .await
        .expect("the finalize marker");
    let winner: RunReport = serde_json::from_slice(&marker).expect("marker is the report");
    assert_eq!(winner.totals.accounts_missing, 1);

    // The late account's result comes in; its intake finalizes too, having
    // looked for the marker before the sweep wrote it (the emulator answers
    // its HeadObject 404, as S3 did at that moment).
    late.run_agent(&central.public_key).await;
    let (body, receipt) = central.receive_results().await.pop().expect("late result");
    emu()
        .set_faults(serde_json::json!({"seed": 1, "rules": [{
            "service": "s3", "action": "HeadObject", "kind": "internal_error",
            "status": 404, "code": "NotFound", "message": "Not Found",
            "match": {"Key": keyfleet_reports::store::final_key(&run_id)}}]}))
        .expect("set faults");
    let intake = central.coordinator.intake(&body, 1).await;
    let injected = emu().faults().expect("faults")["injected"].clone();
    emu().clear_faults().expect("clear faults");
    assert!(
        injected.as_u64().unwrap_or_default() > 0,
        "the loser looked for the marker: {injected}"
    );
    let intake = intake.expect("late intake");
    assert!(
        matches!(
            intake,
            keyfleet_coordinator::Intake::Accepted {
                finalized: false,
                ..
            }
        ),
        "the loser did not finalize: {intake:?}"
    );
    central.delete_result(&receipt).await;

    let central = &central;
    let file = |ext: &str| {
        let key = format!("reports/{run_id}/report.{ext}");
        async move { central.object(&key).await.unwrap_or_default() }
    };
    let json = file("json").await;
    let in_file: RunReport = serde_json::from_slice(&json).expect("report.json");
    assert_eq!(
        in_file.totals, winner.totals,
        "report.json is the claim winner's report"
    );
    assert_eq!(json, marker, "report.json is the marker's report");
    let winner = keyfleet_reports::read::with_users(central.coordinator.store(), winner)
        .await
        .expect("the winner's users");
    assert_eq!(
        file("csv").await,
        keyfleet_reports::render::to_csv(&winner),
        "report.csv is the winner's"
    );
    assert_eq!(
        String::from_utf8(file("html").await).expect("utf-8"),
        keyfleet_reports::render::to_html(&winner),
        "report.html is the winner's"
    );
    let jsonl: Vec<u8> = winner
        .accounts
        .iter()
        .flat_map(|a| keyfleet_reports::render::jsonl_account(&winner, a))
        .collect();
    assert_eq!(file("jsonl").await, jsonl, "report.jsonl is the winner's");
}

/// A finalizer stopped after its claim (the Lambda timed out) leaves the
/// marker without the files people read: the next sweep writes them from
/// the marker, once, without finalizing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_marker_without_its_files_gets_them_from_the_sweep() {
    let (member, _) = normal_member("fin-crash").await;
    let central = Central::new(Setup::default()).await;
    let run_id = central.start_run_on(&[&member.id]).await;
    member.run_agent(&central.public_key).await;
    central.intake_until_finalized().await;
    let marker = central
        .object(&keyfleet_reports::store::final_key(&run_id))
        .await
        .expect("the finalize marker");
    // What a finalizer stopped right after its claim leaves behind.
    let store = central.coordinator.store();
    for ext in ["json", "csv", "jsonl", "html"] {
        store
            .delete(&format!("reports/{run_id}/report.{ext}"))
            .await
            .expect("delete");
    }
    let swept = central.coordinator.sweep().await.expect("sweep");
    assert!(swept.is_empty(), "not finalized again: {swept:?}");
    let report: RunReport = serde_json::from_slice(&marker).expect("marker is the report");
    let report = keyfleet_reports::read::with_users(store, report)
        .await
        .expect("the marker's users");
    let jsonl: Vec<u8> = report
        .accounts
        .iter()
        .flat_map(|a| keyfleet_reports::render::jsonl_account(&report, a))
        .collect();
    let expected = [
        ("json", marker.clone()),
        ("csv", keyfleet_reports::render::to_csv(&report)),
        ("jsonl", jsonl),
        (
            "html",
            keyfleet_reports::render::to_html(&report).into_bytes(),
        ),
    ];
    for (ext, bytes) in expected {
        let file = central
            .object(&format!("reports/{run_id}/report.{ext}"))
            .await;
        assert!(
            file.as_deref() == Some(&bytes[..]),
            "report.{ext} written from the marker (present: {})",
            file.is_some()
        );
    }
    assert_eq!(
        emails_of_run(&run_id)
            .iter()
            .filter(|m| m.kind == "summary")
            .count(),
        1,
        "no second summary"
    );
}

/// A CSV report larger than the configured limit is not attached to the
/// security team's summary (mail servers refuse large messages): the email
/// names where it is instead. At the default limit it is attached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_report_over_the_attachment_limit_is_linked_not_attached() {
    let (member, _) = normal_member("big-csv").await;
    let central = Central::new(Setup {
        summary_attach_max_bytes: 64,
        ..Setup::default()
    })
    .await;
    let run_id = central
        .coordinator
        .start_run(RunRequest {
            accounts: Some(vec![member.id.clone()]),
            ..RunRequest::default()
        })
        .await
        .expect("start run")
        .run_id;
    member.run_agent(&central.public_key).await;
    for (body, receipt) in central.receive_results().await {
        central.coordinator.intake(&body, 1).await.expect("intake");
        central.delete_result(&receipt).await;
    }
    central
        .coordinator
        .finalize(&run_id)
        .await
        .expect("finalize");
    let csv = central
        .object(&format!("reports/{run_id}/report.csv"))
        .await
        .expect("report.csv");
    assert!(
        csv.len() > 64,
        "the CSV is over the limit: {} bytes",
        csv.len()
    );
    let summary: Vec<Mail> = emails_of_run(&run_id)
        .into_iter()
        .filter(|m| m.kind == "summary")
        .collect();
    assert_eq!(summary.len(), 1);
    assert!(
        summary[0].attachments.is_empty(),
        "{:?}",
        summary[0].attachments
    );
    assert!(
        summary[0]
            .text
            .contains(&format!("reports/{run_id}/report.csv"))
            && summary[0].text.contains("too large to attach"),
        "{}",
        summary[0].text
    );
}

/// A large run's HTML report is stored as a summary page and a page per
/// account beside it (`reports/<run>/accounts/<id>.html`), written before the
/// summary so that it never links to a page not there; a finalizer stopped
/// after its claim leaves them to the sweep, like the other files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_report_is_stored_as_a_summary_and_a_page_per_account() {
    let (member, _) = normal_member("fin-large").await;
    let central = Central::new(Setup::default()).await;
    let run_id = central.start_run_on(&[&member.id]).await;
    member.run_agent(&central.public_key).await;
    central.intake_until_finalized().await;
    // The marker of a run of 25 accounts x 90 users, as a finalizer stopped
    // right after its claim leaves it.
    let mut big = keyfleet_reports::fixtures::large_report(25, 90);
    big.run_id = run_id.clone();
    assert!(keyfleet_reports::render::html::is_split(&big));
    let store = central.coordinator.store();
    store
        .put(
            &keyfleet_reports::store::final_key(&run_id),
            keyfleet_reports::render::to_json(&big),
            "application/json",
        )
        .await
        .expect("marker");
    for ext in ["json", "csv", "jsonl", "html"] {
        store
            .delete(&format!("reports/{run_id}/report.{ext}"))
            .await
            .expect("delete");
    }
    central.coordinator.sweep().await.expect("sweep");
    let summary = central
        .object(&format!("reports/{run_id}/report.html"))
        .await
        .expect("report.html");
    assert_eq!(
        summary,
        keyfleet_reports::render::to_html(&big).into_bytes()
    );
    for a in &big.accounts {
        let page = central
            .object(&keyfleet_reports::store::account_page_key(
                &run_id,
                &a.account_id,
            ))
            .await
            .unwrap_or_else(|| panic!("the page of {}", a.account_id));
        assert_eq!(
            page,
            keyfleet_reports::render::account_page(&big, a).into_bytes()
        );
    }
}

/// Intakes that take in a run's last results at once each find the run
/// complete and call finalize: only one of them builds the report (reads
/// every result, writes every account's section), the others leave it to
/// it. Seen on the bucket's versions: every section ever written, deleted
/// or not, under the one attempt that built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_finalizers_build_the_report_once() {
    let (member, _) = normal_member("fin-stampede").await;
    // An account with an agent that does not answer (yet).
    let mut absent = create_member("fin-stampede-absent").await;
    absent.deploy_agent().await;
    let central = Central::new(Setup::default()).await;
    let run_id = central.start_run_on(&[&member.id, &absent.id]).await;
    member.run_agent(&central.public_key).await;
    // One of two results: taken in, the run not complete, not finalized.
    let results = central.receive_results().await;
    assert_eq!(results.len(), 1);
    for (body, receipt) in results {
        let intake = central.coordinator.intake(&body, 1).await.expect("intake");
        assert!(
            matches!(
                intake,
                keyfleet_coordinator::Intake::Accepted {
                    finalized: false,
                    ..
                }
            ),
            "{intake:?}"
        );
        central.delete_result(&receipt).await;
    }
    let s3 = central.s3();
    s3.put_bucket_versioning()
        .bucket(central.bucket())
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("PutBucketVersioning");
    let c = &central.coordinator;
    let (a, b, d, e) = tokio::join!(
        c.finalize(&run_id),
        c.finalize(&run_id),
        c.finalize(&run_id),
        c.finalize(&run_id)
    );
    let built: Vec<_> = [a, b, d, e]
        .into_iter()
        .map(|r| r.expect("finalize"))
        .filter(Option::is_some)
        .collect();
    assert_eq!(built.len(), 1, "one finalizer stored the report");
    let versions = s3
        .list_object_versions()
        .bucket(central.bucket())
        .prefix(format!("runs/{run_id}/final/"))
        .send()
        .await
        .expect("ListObjectVersions");
    let mut attempts: Vec<String> = versions
        .versions()
        .iter()
        .filter_map(|v| v.key())
        .chain(versions.delete_markers().iter().filter_map(|m| m.key()))
        .filter_map(|k| k.split('/').nth(3).map(str::to_string))
        .collect();
    attempts.sort();
    attempts.dedup();
    assert_eq!(attempts.len(), 1, "sections written by {attempts:?}");
}
