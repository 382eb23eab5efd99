//! `--local` and the errors of a command line that cannot reach AWS.

use crate::common::*;
use keyfleet_protocol::report::RunReport;
use keyfleet_protocol::Verdict;
use keyfleet_testkit::seed::{self, key, user};

/// `run --local` runs the coordinator and the agent in this process, through
/// a role assumed in the account: the user is rotated and mailed, and the
/// deployed queues and Lambdas of the account are never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_run_rotates_without_the_deployed_queues() {
    let cli = deployment().await;
    let account = create_account("cli-local").await;
    let iam = iam_of(&account).await;
    seed::populate(
        emu(),
        &iam,
        &account,
        &[user("local-user", vec![key(85, true, Some(1))])],
    )
    .await
    .expect("seed");

    let out = cli.run(&["run", "--local", "--json", "--accounts", &account]);
    let report: RunReport = serde_json::from_str(&out).expect("report JSON");
    let users = &report.accounts[0].users;
    assert_eq!(users[0].user_name, "local-user");
    assert_eq!(users[0].verdict, Verdict::Rotated);
    assert_eq!(seed::keys(&iam, "local-user").await.expect("keys").len(), 2);
    let mails = emu().outbox().expect("outbox");
    assert_eq!(
        crate::mails::kinds_for(&mails, &account, "owner-local-user@example.com")
            .iter()
            .filter(|k| *k == "new_key")
            .count(),
        1
    );

    // Nothing went through the account's deployed agent.
    let agent_runs = emu()
        .lambda_invocations()
        .expect("invocations")
        .iter()
        .filter(|i| i["account"] == account.as_str())
        .count();
    assert_eq!(agent_runs, 0, "no Lambda ran in the account");
    let sqs = aws_sdk_sqs::Client::new(&emu().config_for_account(&account).await.expect("assume"));
    let url = sqs
        .get_queue_url()
        .queue_name("keyfleet-jobs")
        .send()
        .await
        .expect("the deployed jobs queue")
        .queue_url
        .expect("url");
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .expect("GetQueueAttributes");
    let count = |name: aws_sdk_sqs::types::QueueAttributeName| {
        attrs
            .attributes()
            .and_then(|a| a.get(&name))
            .cloned()
            .unwrap_or_default()
    };
    use aws_sdk_sqs::types::QueueAttributeName as A;
    assert_eq!(count(A::ApproximateNumberOfMessages), "0");
    assert_eq!(count(A::ApproximateNumberOfMessagesNotVisible), "0");
}

/// Starting a run is not idempotent: when the coordinator's answer is lost
/// (here the connection drops), the command line does not invoke it again
/// (an SDK retry would start a second run), and says a run may have started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_the_start_is_not_retried() {
    let cli = deployment().await;
    let _faults = faults_lock().await;
    let function = "keyfleet-coordinator-unanswered";
    emu()
        .set_faults(serde_json::json!({"seed": 1, "rules": [{
            "service": "lambda", "action": "Invoke", "match": {"FunctionName": function},
            "kind": "drop",
        }]}))
        .expect("faults");
    let out = cli
        .command()
        .env("KEYFLEET_COORDINATOR_FUNCTION", function)
        .args(["run", "--accounts", "111122223333"])
        .output()
        .expect("keyfleet runs");
    let faults = emu().faults().expect("faults");
    emu().clear_faults().expect("faults cleared");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(
        faults["rules"][0]["injected"], 1,
        "one attempt, no retry: {faults}"
    );
    assert!(
        stderr.contains("no answer") && stderr.contains("not invoked again"),
        "{stderr}"
    );
}

/// Without credentials the command line says so, and not something that
/// follows from it (a queue or function "not found").
#[test]
fn without_credentials_the_error_says_so() {
    let home = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyfleet"))
        .arg("plan")
        .current_dir(home.path())
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("keyfleet runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("no AWS credentials found"), "{stderr}");
    assert!(stderr.contains("AWS_PROFILE"), "says what to do: {stderr}");
    assert!(
        !stderr.contains("not found") && !stderr.contains("bootstrap"),
        "the credential failure is the error, nothing after it: {stderr}"
    );
}

/// A slow run never drops an account by its own clock: `--local` running
/// one agent at a time, over two accounts whose scans the emulator holds
/// for longer than the run's deadline (plus the agent's grace), serves
/// both. A job's expiry counts from when it is handed to an agent, and
/// guards against stale redeliveries, not against a slow run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_slower_than_its_deadline_serves_every_account() {
    let cli = deployment().await;
    let mut accounts = Vec::new();
    for label in ["slow-a", "slow-b"] {
        let account = create_account(label).await;
        let iam = iam_of(&account).await;
        seed::populate(
            emu(),
            &iam,
            &account,
            &[user("slow-user", vec![key(85, true, Some(1))])],
        )
        .await
        .expect("seed");
        accounts.push(account);
    }
    let out = {
        let _faults = faults_lock().await;
        emu()
            .set_faults(serde_json::json!({"seed": 1, "rules": [{
                "service": "iam", "action": "GetAccountAuthorizationDetails",
                "account": accounts[0], "kind": "delay", "delay_ms": 32000,
            }, {
                "service": "iam", "action": "GetAccountAuthorizationDetails",
                "account": accounts[1], "kind": "delay", "delay_ms": 32000,
            }]}))
            .expect("faults");
        let out = cli
            .command()
            .env("KEYFLEET_COORDINATOR_DEADLINE", "1s")
            .env("KEYFLEET_COORDINATOR_LOCAL_AGENTS", "1")
            .args([
                "run",
                "--local",
                "--json",
                "--accounts",
                &accounts.join(","),
            ])
            .output()
            .expect("keyfleet runs");
        let faults = emu().faults().expect("faults");
        emu().clear_faults().expect("faults cleared");
        (out, faults)
    };
    let (out, faults) = out;
    let report: RunReport = serde_json::from_slice(&out.stdout).expect("report JSON");
    for account in &accounts {
        let a = report
            .accounts
            .iter()
            .find(|a| &a.account_id == account)
            .expect("the account is in the report");
        assert_eq!(a.state.as_str(), "ok", "{account}: {:?}", a.error);
        assert_eq!(a.users[0].verdict, Verdict::Rotated, "{account}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let held: u64 = faults["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["injected"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        held, 2,
        "both scans were held, one after the other: {faults}"
    );
}
