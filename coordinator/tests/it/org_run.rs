//! A run over an organization with every kind of account: exactly the
//! expected jobs go out, the manifest says why the others were left out, an
//! account without an agent is recorded as such and alerted, and the report
//! files carry the right numbers.

use crate::fleet::*;
use keyfleet_coordinator::{Intake, RunRequest};
use keyfleet_protocol::report::{AccountState, RunReport};
use keyfleet_protocol::{Dispatch, Verdict};
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sends_jobs_only_where_expected_and_reports_every_account() {
    // The organization: a parent OU that is excluded, with a child OU.
    let root = org_root().await;
    let s = suffix();
    let excluded_parent = create_ou(&root, &format!("excluded-{s}")).await;
    let excluded_child = create_ou(&excluded_parent, &format!("child-{s}")).await;

    let (normal, users) = normal_member("normal").await;
    let mut suspended = create_member("suspended").await;
    suspended.deploy_agent().await;
    suspended.close().await;
    let mut by_id = create_member("excluded-id").await;
    by_id.deploy_agent().await;
    let mut in_ou = create_member("excluded-ou").await;
    in_ou.deploy_agent().await;
    in_ou.move_to(&excluded_child).await;
    let no_agent = create_member("no-agent").await;

    // What Organizations reports for the closed account: its `State`
    // (AWS retired the `Status` field on 2026-09-09; the harness, like AWS,
    // no longer sends it).
    let listed = aws_sdk_organizations::Client::new(&emu().config())
        .describe_account()
        .account_id(&suspended.id)
        .send()
        .await
        .expect("DescribeAccount");
    let account = listed.account().expect("an account");
    assert_eq!(
        account.state(),
        Some(&aws_sdk_organizations::types::AccountState::Suspended)
    );
    assert_eq!(account.status(), None, "the retired Status is not sent");

    let central = Central::new(Setup {
        exclude_accounts: vec![by_id.id.clone()],
        exclude_ous: vec![excluded_parent.clone()],
        ..Setup::default()
    })
    .await;
    let all = [&normal, &suspended, &by_id, &in_ou, &no_agent];
    let manifest = central
        .coordinator
        .start_run(RunRequest {
            accounts: Some(all.iter().map(|m| m.id.clone()).collect()),
            ..RunRequest::default()
        })
        .await
        .expect("start run");
    let run_id = manifest.run_id.clone();

    // The manifest: two accounts expected, three skipped with their reason.
    let dispatch: BTreeMap<&str, &Dispatch> = manifest
        .accounts
        .iter()
        .map(|a| (a.account_id.as_str(), &a.dispatch))
        .collect();
    assert_eq!(
        dispatch,
        BTreeMap::from([
            (normal.id.as_str(), &Dispatch::Sent),
            (no_agent.id.as_str(), &Dispatch::NoAgent),
        ])
    );
    let skipped: BTreeMap<&str, &str> = manifest
        .skipped
        .iter()
        .map(|s| (s.account_id.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(
        skipped,
        BTreeMap::from([
            (
                suspended.id.as_str(),
                "account is not ACTIVE (state SUSPENDED)"
            ),
            (by_id.id.as_str(), "excluded by account id"),
            (in_ou.id.as_str(), "under an excluded organizational unit"),
        ])
    );
    // The stored manifest is the one returned.
    let stored: keyfleet_protocol::RunManifest = serde_json::from_slice(
        &central
            .object(&format!("runs/{run_id}/manifest.json"))
            .await
            .expect("manifest stored"),
    )
    .expect("manifest JSON");
    assert_eq!(stored, manifest);
    // No token in clear in the manifest: only hashes.
    assert!(manifest.accounts.iter().all(|a| a.token_sha256.len() == 64));

    // Jobs: none on the queues of the skipped accounts.
    for skipped in [&suspended, &by_id, &in_ou] {
        let jobs = skipped.receive_jobs().await;
        assert!(
            jobs.is_empty(),
            "account {} ({}) got a job: {jobs:?}",
            skipped.id,
            skipped.name
        );
    }
    // Exactly one on the normal account's queue; the agent runs it.
    let (job, result) = normal.run_agent(&central.public_key).await;
    assert_eq!(job.run_id, run_id);
    assert_eq!(job.results_queue_url, central.results_queue_url);
    assert!(!job.dry_run);
    assert_eq!(
        result.status,
        keyfleet_protocol::AccountStatus::Ok,
        "{:?}",
        result.error
    );
    assert!(
        normal.receive_jobs().await.is_empty(),
        "a second job for the normal account"
    );

    let intakes = central.intake_until_finalized().await;
    assert_eq!(
        intakes,
        vec![Intake::Accepted {
            run_id: run_id.clone(),
            account_id: normal.id.clone(),
            account_complete: true,
            finalized: true,
        }],
        "the only agent's result completes and finalizes the run"
    );

    // The report files.
    let base = format!("reports/{run_id}");
    let json = central
        .object(&format!("{base}/report.json"))
        .await
        .expect("report.json");
    let csv = central
        .object(&format!("{base}/report.csv"))
        .await
        .expect("report.csv");
    let html = central
        .object(&format!("{base}/report.html"))
        .await
        .expect("report.html");
    let summary: RunReport = serde_json::from_slice(&json).expect("report JSON");
    // Schema 2: report.json is the summary; each account with users names
    // the object that holds them, and the users come back from there.
    assert_eq!(summary.schema, keyfleet_protocol::report::SCHEMA);
    assert!(summary.accounts.iter().all(|a| a.users.is_empty()));
    assert!(summary.accounts.iter().any(|a| a.users_key.is_some()));
    let report = keyfleet_reports::read::with_users(central.coordinator.store(), summary)
        .await
        .expect("users read back");
    // report.jsonl: one line per user, naming the run and the account.
    let jsonl = central
        .object(&format!("{base}/report.jsonl"))
        .await
        .expect("report.jsonl");
    let lines: Vec<serde_json::Value> = String::from_utf8(jsonl)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len() as u64, report.totals.users);
    for a in &report.accounts {
        for u in &a.users {
            assert!(
                lines.iter().any(|l| l["run_id"] == run_id.as_str()
                    && l["account_id"] == a.account_id.as_str()
                    && l["user_name"] == u.user_name.as_str()
                    && l["verdict"] == u.verdict.as_str()),
                "{} of {} in report.jsonl",
                u.user_name,
                a.account_id
            );
        }
    }
    assert_eq!(report.run_id, run_id);
    assert!(report.complete, "no account is missing");
    assert!(report.has_problems(), "an account has no agent");
    let states: BTreeMap<&str, AccountState> = report
        .accounts
        .iter()
        .map(|a| (a.account_id.as_str(), a.state))
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([
            (normal.id.as_str(), AccountState::Ok),
            (no_agent.id.as_str(), AccountState::NoAgent),
        ])
    );
    let t = &report.totals;
    assert_eq!(t.accounts, 2);
    assert_eq!(t.accounts_ok, 1);
    assert_eq!(t.accounts_no_agent, 1);
    assert_eq!(t.accounts_missing, 0);
    assert_eq!(t.accounts_failed, 0);
    assert_eq!(t.accounts_partial, 0);
    assert_eq!(t.accounts_skipped, 3);
    assert_eq!(t.users, 6);
    assert_eq!(t.keys, 6, "keys before the run");
    assert_eq!(t.active_keys, 6);
    assert_eq!(t.failed_actions, 0);
    let verdicts: BTreeMap<&str, u64> = t
        .by_verdict
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(v, n)| (v.as_str(), *n))
        .collect();
    assert_eq!(
        verdicts,
        BTreeMap::from([
            (Verdict::Rotated.as_str(), 1),
            (Verdict::PendingDeactivation.as_str(), 1),
            (Verdict::Cleaned.as_str(), 1),
            (Verdict::Compliant.as_str(), 1),
            (Verdict::NoKeys.as_str(), 1),
            (Verdict::Unreachable.as_str(), 1),
        ])
    );
    assert_eq!(
        t.actions_by_kind,
        BTreeMap::from([
            ("create".to_string(), 1),
            ("delete".to_string(), 1),
            ("notify".to_string(), 3),
        ])
    );
    // Each user's verdict is where it belongs.
    let normal_report = report
        .accounts
        .iter()
        .find(|a| a.account_id == normal.id)
        .expect("normal account in the report");
    let verdict_of: BTreeMap<&str, Verdict> = normal_report
        .users
        .iter()
        .map(|u| (u.user_name.as_str(), u.verdict))
        .collect();
    assert_eq!(
        verdict_of,
        BTreeMap::from([
            (users.rotate.as_str(), Verdict::Rotated),
            (users.pending.as_str(), Verdict::PendingDeactivation),
            (users.unused.as_str(), Verdict::Cleaned),
            (users.compliant.as_str(), Verdict::Compliant),
            (users.no_keys.as_str(), Verdict::NoKeys),
            (users.no_email.as_str(), Verdict::Unreachable),
        ])
    );
    let skipped_in_report: Vec<&str> = report
        .skipped
        .iter()
        .map(|s| s.account_id.as_str())
        .collect();
    assert_eq!(skipped_in_report.len(), 3);
    for a in [&suspended, &by_id, &in_ou] {
        assert!(skipped_in_report.contains(&a.id.as_str()));
    }

    // CSV: one row per user per key (at least one per user) for the normal
    // account, one row for the account without agent.
    let mut rows = csv::ReaderBuilder::new().from_reader(
        csv.strip_prefix(b"\xEF\xBB\xBF".as_slice())
            .expect("CSV starts with a BOM"),
    );
    let header: Vec<String> = rows
        .headers()
        .expect("CSV header")
        .iter()
        .map(str::to_string)
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    let (c_account, c_state, c_user) = (col("account_id"), col("account_state"), col("user_name"));
    let records: Vec<csv::StringRecord> = rows.records().map(|r| r.expect("CSV row")).collect();
    let no_agent_rows: Vec<&csv::StringRecord> = records
        .iter()
        .filter(|r| r[c_account] == no_agent.id)
        .collect();
    assert_eq!(no_agent_rows.len(), 1);
    assert_eq!(&no_agent_rows[0][c_state], "no_agent");
    assert_eq!(&no_agent_rows[0][c_user], "");
    let normal_rows: Vec<&csv::StringRecord> = records
        .iter()
        .filter(|r| r[c_account] == normal.id)
        .collect();
    // rotate 1, pending 2, unused 1, compliant 1, no keys 1, no email 1.
    assert_eq!(normal_rows.len(), 7);
    assert!(normal_rows.iter().all(|r| &r[c_state] == "ok"));
    assert_eq!(records.len(), 8, "no other account in the CSV");

    // HTML: a whole page naming both accounts.
    let html = String::from_utf8(html).expect("UTF-8 HTML");
    assert!(html.trim_end().ends_with("</html>"));
    assert!(html.contains(&normal.id) && html.contains(&no_agent.id));

    // The security team is alerted about the account without agent.
    let alerts = central.alerts(1).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let (subject, message) = &alerts[0];
    assert!(subject.contains(&run_id), "{subject}");
    assert!(message.contains("1 without agent"), "{message}");

    // And gets one summary.
    let summaries: Vec<Mail> = emails_of_run(&run_id)
        .into_iter()
        .filter(|m| m.kind == "summary")
        .collect();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].to, vec![central.security_team.clone()]);
}
