//! The command line never passes a failure off as success: a run that
//! selects no account, a run in which every account failed or is missing,
//! and an emergency rotation the agent refused all exit 1 with the reason on
//! stderr; a run that served some accounts but not all exits 2, naming the
//! others.

use crate::common::*;
use keyfleet_testkit::seed::{self, key, user};

/// Removes the agent's jobs queue from an account (as if the StackSet had
/// never reached it).
async fn remove_agent(account: &str) {
    let cfg = emu()
        .config_for_account(account)
        .await
        .expect("assume role in the account");
    let sqs = aws_sdk_sqs::Client::new(&cfg);
    if let Ok(q) = sqs.get_queue_url().queue_name("keyfleet-jobs").send().await {
        sqs.delete_queue()
            .queue_url(q.queue_url().expect("queue url"))
            .send()
            .await
            .expect("DeleteQueue keyfleet-jobs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_that_selects_no_account_exits_non_zero() {
    // The deployment excludes the management account.
    let cli = deployment().await;
    let account = organization().await;
    let (_, stderr) = cli.fail(&["run", "--accounts", &account]);
    assert!(stderr.contains("no account selected"), "{stderr}");
    assert!(
        stderr.contains(&account) && stderr.contains("excluded by account id"),
        "{stderr}"
    );
    // The run is on record, and its report says why it failed.
    let json = cli.report(&run_id_in(&stderr));
    assert!(
        json["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("no account selected"),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_where_every_account_failed_exits_non_zero() {
    let cli = deployment().await;
    let account = create_account("cli-no-agent").await;
    remove_agent(&account).await;
    let (stdout, stderr) = cli.fail(&["run", "--accounts", &account]);
    assert!(
        stderr.contains("every selected account failed or is missing"),
        "{stderr}"
    );
    assert!(
        stdout.contains(&account) && stdout.contains("no_agent"),
        "the report is still printed:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_exits_non_zero_with_the_agents_error_when_it_refuses_the_user() {
    let cli = deployment().await;
    let account = create_account("cli-rotate").await;
    let iam = iam_of(&account).await;
    let created = seed::populate(
        emu(),
        &iam,
        &account,
        &[user(
            "twokeys",
            vec![key(30, true, Some(1)), key(5, true, Some(1))],
        )],
    )
    .await
    .expect("seed");
    let (k1, k2) = (created["twokeys"][0].clone(), created["twokeys"][1].clone());

    // Two active keys and no --key: the agent refuses, naming both keys.
    let (_, stderr) = cli.fail(&["rotate", "--account", &account, "--user", "twokeys"]);
    assert!(stderr.contains("twokeys"), "{stderr}");
    assert!(
        stderr.contains(&k1) && stderr.contains(&k2),
        "the agent's error lists both keys:\n{stderr}"
    );
    assert_eq!(
        seed::keys(&iam, "twokeys").await.expect("keys"),
        vec![(k1.clone(), true), (k2.clone(), true)],
        "nothing changed"
    );

    // Naming the key to replace: it reaches the agent, which replaces that
    // key (with two keys, IAM's limit, it makes room by removing the named
    // one) and leaves the other alone.
    let out = cli.run(&[
        "rotate",
        "--account",
        &account,
        "--user",
        "twokeys",
        "--key",
        &k1,
    ]);
    assert!(out.contains(&account), "{out}");
    let report = cli.report(&run_id_in(&out));
    assert_eq!(report["mode"]["kind"], "rotate", "{report}");
    assert_eq!(report["mode"]["key_id"], k1.as_str(), "{report}");
    assert_eq!(report["mode"]["deactivate_old"], false, "{report}");
    let keys = seed::keys(&iam, "twokeys").await.expect("keys");
    assert!(
        keys.contains(&(k2.clone(), true)),
        "the key nobody named is untouched: {keys:?}"
    );
    assert!(!keys.iter().any(|(id, _)| *id == k1), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_where_some_accounts_were_not_served_exits_2_naming_them() {
    let cli = deployment().await;
    let served = create_account("cli-served").await;
    let unserved = create_account("cli-unserved").await;
    remove_agent(&unserved).await;
    let out = cli.output(&["run", "--accounts", &format!("{served},{unserved}")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "some accounts unserved is its own exit code (README, Exit codes):\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains(&unserved) && stderr.contains("no_agent") && !stderr.contains(&served),
        "stderr names the unserved account and only it: {stderr}"
    );
    let report = cli.report(&run_id_in(&stderr));
    assert_eq!(report["accounts"].as_array().map(Vec::len), Some(2));
}
