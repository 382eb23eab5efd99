//! The rotation timeline through the CLI: day 0 keys; day 81 -> new key
//! delivered (zip decrypted by an independent implementation, key matches
//! IAM); day 91 -> old key deactivated; day 92 -> reactivated through the
//! API (`keyfleet serve`) and not used afterwards; active until day 102,
//! deactivated then with a notice; deleted on day 112, never deactivated
//! and deleted in one run. An exempt user
//! is untouched throughout, a user without email is reported unreachable,
//! notices go out once, and a dry run before each step changes nothing and
//! predicts exactly what the real run then does.

use keyfleet_protocol::report::RunReport;
use keyfleet_protocol::{predictable, Action, Outcome, Verdict};
use keyfleet_testkit::seed::{self, key, user, UserSpec};
use keyfleet_testkit::Emulator;
use std::collections::BTreeMap;

use crate::common::{call, create_account, deployment, iam_of, Cli, Served};
use crate::mails::{delivered_key, kinds_for, lambda_logs};

/// The day-N cycle: `keyfleet run --json --accounts <account>`, dry or real.
fn cycle(cli: &Cli, account: &str, dry_run: bool) -> RunReport {
    let mut args = vec!["run", "--json", "--accounts", account];
    if dry_run {
        args.push("--dry-run");
    }
    serde_json::from_str(&cli.run(&args)).expect("report JSON on stdout")
}

/// A key id and whether it is active.
type KeyFlag = (String, bool);
type Keys = BTreeMap<String, Vec<KeyFlag>>;

async fn keys_of(iam: &aws_sdk_iam::Client, users: &[&str]) -> Keys {
    let mut all = Keys::new();
    for u in users {
        all.insert(
            u.to_string(),
            seed::keys(iam, u).await.expect("ListAccessKeys"),
        );
    }
    all
}

/// The users of the timeline account, as the report lists them.
fn users_of(report: &RunReport, account: &str) -> BTreeMap<String, keyfleet_protocol::UserReport> {
    report
        .accounts
        .iter()
        .find(|a| a.account_id == account)
        .expect("account in report")
        .users
        .iter()
        .map(|u| (u.user_name.clone(), u.clone()))
        .collect()
}

fn assert_plan_predicts(plan: &RunReport, real: &RunReport, account: &str, step: &str) {
    let p = users_of(plan, account);
    let r = users_of(real, account);
    assert_eq!(
        p.keys().collect::<Vec<_>>(),
        r.keys().collect::<Vec<_>>(),
        "{step}"
    );
    for (name, pu) in &p {
        let ru = &r[name];
        assert_eq!(pu.verdict, ru.verdict, "{step}: verdict of {name}");
        assert_eq!(
            predictable(&pu.actions),
            predictable(&ru.actions),
            "{step}: actions of {name}"
        );
        assert!(
            pu.actions.iter().all(|a| a.result == Outcome::Planned),
            "{step}: {name}"
        );
        assert!(
            ru.actions
                .iter()
                .all(|a| matches!(a.result, Outcome::Done { .. })),
            "{step}: {name} {:?}",
            ru.actions
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_timeline_through_the_cli() {
    let emu = Emulator::shared().expect("emulator");
    // Other tests share the deployment: every run here names its account.
    let cli = deployment().await;
    let account = create_account("timeline").await;
    let dir = tempfile::tempdir().unwrap();

    // Day 0.
    let iam = iam_of(&account).await;
    let specs: Vec<UserSpec> = vec![
        user("owner", vec![key(0, true, Some(0))]),
        UserSpec {
            exempt: true,
            ..user("exempt", vec![key(0, true, Some(0))])
        },
        UserSpec {
            email: None,
            ..user("noemail", vec![key(0, true, Some(0))])
        },
    ];
    let day0 = seed::populate(emu, &iam, &account, &specs).await.unwrap();
    let names = ["owner", "exempt", "noemail"];
    let owner_mail = "owner-owner@example.com";
    let k1 = day0["owner"][0].clone();

    // Day 81: the owner's key was used yesterday; a new key is due.
    emu.advance_clock(81.0, Some(&account)).unwrap();
    let used = (time::OffsetDateTime::now_utc() - time::Duration::days(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    for (u, ids) in &day0 {
        emu.mark_key_used(&account, &ids[0], Some(&used), "s3", "eu-west-1")
            .unwrap();
        let _ = u;
    }
    let before = keys_of(&iam, &names).await;
    let plan = cycle(cli, &account, true);
    assert_eq!(
        keys_of(&iam, &names).await,
        before,
        "day 81 dry run changed IAM"
    );
    let real = cycle(cli, &account, false);
    assert_plan_predicts(&plan, &real, &account, "day 81");
    let users = users_of(&real, &account);
    assert_eq!(users["owner"].verdict, Verdict::Rotated);
    assert_eq!(users["exempt"].verdict, Verdict::Exempt);
    assert_eq!(users["noemail"].verdict, Verdict::Unreachable);
    let after81 = keys_of(&iam, &names).await;
    assert_eq!(after81["exempt"], before["exempt"]);
    assert_eq!(
        after81["noemail"], before["noemail"],
        "no key for an unreachable user"
    );
    assert_eq!(after81["owner"].len(), 2);
    let k2 = after81["owner"][1].0.clone();
    assert_ne!(k2, k1);

    // The new key reached its owner: zip in one email, password in another.
    let mails = emu.outbox().unwrap();
    let delivered = delivered_key(&mails, owner_mail, "-owner.zip", dir.path());
    assert_eq!(delivered.access_key_id, k2, "the zip holds the key IAM has");
    let zip_secret = delivered.secret_access_key.clone();
    assert_eq!(zip_secret.len(), 40);
    // Nor in what the Lambdas logged (the agent created the key, the
    // coordinator opened it to build the zip).
    for (logs_account, function) in [
        (account.as_str(), "keyfleet-agent"),
        (keyfleet_testkit::DEFAULT_ACCOUNT, "keyfleet-coordinator"),
    ] {
        let logs = lambda_logs(logs_account, function).await;
        assert!(
            logs.contains("\"level\""),
            "{function} logged as JSON:\n{logs}"
        );
        assert!(
            !logs.contains(&zip_secret) && !logs.contains(&delivered.password),
            "a secret in the logs of {function}"
        );
    }
    for m in &mails {
        assert!(
            !m.raw.contains(&zip_secret),
            "secret in plain text in an email"
        );
    }

    // Day 91: the owner switched; the old key is deactivated.
    emu.advance_clock(10.0, Some(&account)).unwrap();
    let switched = (time::OffsetDateTime::now_utc() - time::Duration::days(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    emu.mark_key_used(&account, &k2, Some(&switched), "s3", "eu-west-1")
        .unwrap();
    let before = keys_of(&iam, &names).await;
    let plan = cycle(cli, &account, true);
    assert_eq!(
        keys_of(&iam, &names).await,
        before,
        "day 91 dry run changed IAM"
    );
    let real = cycle(cli, &account, false);
    assert_plan_predicts(&plan, &real, &account, "day 91");
    let after91 = keys_of(&iam, &names).await;
    assert_eq!(
        after91["owner"],
        vec![(k1.clone(), false), (k2.clone(), true)]
    );
    assert_eq!(after91["exempt"], before["exempt"]);
    assert_eq!(
        users_of(&real, &account)["noemail"].verdict,
        Verdict::Unreachable
    );

    // Day 92: an application broke; the security team switches the old key
    // back on through the API (the deployed coordinator and agent do it).
    emu.advance_clock(1.0, Some(&account)).unwrap();
    let (ops_key, ops) = keyfleet_api::keys::generate(
        "timeline-ops",
        &[keyfleet_api::Scope::Read, keyfleet_api::Scope::Rotate],
    );
    let served = Served::start(
        cli,
        &format!(
            "keys = [{{ id = \"{}\", sha256 = \"{}\", scopes = [\"read\", \"rotate\"] }}]",
            ops.id, ops.sha256
        ),
    );
    let answer = call(
        &served.base,
        "POST",
        &format!("/v1/accounts/{account}/users/owner/keys/{k1}/reactivate"),
        Some(&ops_key),
        &[],
        None,
    );
    assert_eq!(answer.status, 202, "{}", answer.body);
    let reactivation = answer.json()["run_id"].as_str().unwrap().to_string();
    emu.settle(&[&account, keyfleet_testkit::DEFAULT_ACCOUNT], 120)
        .expect("settled");
    let report: RunReport =
        serde_json::from_value(cli.report(&reactivation)).expect("reactivation report");
    assert_eq!(
        users_of(&report, &account)["owner"].verdict,
        Verdict::Reactivated
    );
    assert_eq!(
        keys_of(&iam, &["owner"]).await["owner"],
        vec![(k1.clone(), true), (k2.clone(), true)],
        "switched back on"
    );

    // Days 101, 102, 111, 112: the reactivated key keeps its fresh notice
    // period (active on day 101), is deactivated on day 102 with a notice,
    // kept inactive for the recovery window (day 111) and deleted on day
    // 112: never deactivated and deleted in one run. Each day's dry run
    // predicts its run exactly.
    let steps: [(f64, &str, Vec<KeyFlag>); 4] = [
        (9.0, "day 101", vec![(k1.clone(), true), (k2.clone(), true)]),
        (
            1.0,
            "day 102",
            vec![(k1.clone(), false), (k2.clone(), true)],
        ),
        (
            9.0,
            "day 111",
            vec![(k1.clone(), false), (k2.clone(), true)],
        ),
        (1.0, "day 112", vec![(k2.clone(), true)]),
    ];
    for (days, step, want) in steps {
        emu.advance_clock(days, Some(&account)).unwrap();
        let before = keys_of(&iam, &names).await;
        let plan = cycle(cli, &account, true);
        assert_eq!(
            keys_of(&iam, &names).await,
            before,
            "{step} dry run changed IAM"
        );
        let real = cycle(cli, &account, false);
        assert_plan_predicts(&plan, &real, &account, step);
        assert_eq!(keys_of(&iam, &["owner"]).await["owner"], want, "{step}");
        let owner = &users_of(&real, &account)["owner"];
        let deactivated = owner
            .actions
            .iter()
            .any(|a| matches!(&a.action, Action::Deactivate { key_id } if *key_id == k1));
        let deleted = owner
            .actions
            .iter()
            .any(|a| matches!(&a.action, Action::Delete { key_id } if *key_id == k1));
        assert!(
            !(deactivated && deleted),
            "{step}: deactivated and deleted in one run"
        );
    }
    let after101 = keys_of(&iam, &names).await;
    assert_eq!(
        after101["exempt"],
        day0["exempt"]
            .iter()
            .map(|k| (k.clone(), true))
            .collect::<Vec<_>>()
    );
    assert_eq!(after101["noemail"].len(), 1);
    // Deleted now: the API refuses to reactivate it.
    let gone = call(
        &served.base,
        "POST",
        &format!("/v1/accounts/{account}/users/owner/keys/{k1}/reactivate"),
        Some(&ops_key),
        &[],
        None,
    );
    assert_eq!(gone.status, 409, "{}", gone.body);
    drop(served);
    // So does the command line, which asks the agent: it refuses by name.
    let (_, stderr) = cli.fail(&[
        "reactivate",
        "--account",
        &account,
        "--user",
        "owner",
        "--key",
        &k1,
    ]);
    assert!(
        stderr.contains("reactivation of `owner`") && stderr.contains("cannot be reactivated"),
        "{stderr}"
    );

    // Every owner email went out exactly once.
    let mails = emu.outbox().unwrap();
    let kinds = kinds_for(&mails, &account, owner_mail);
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(count("new_key"), 1, "{kinds:?}");
    assert_eq!(count("password"), 1, "{kinds:?}");
    // The deactivation twice: before and after the reactivation, which is
    // told once. Its date is told first in the new key's email, then in a
    // notice after the reactivation.
    assert_eq!(count("deactivation_scheduled"), 1, "{kinds:?}");
    assert_eq!(count("deactivated"), 2, "{kinds:?}");
    assert_eq!(count("reactivated"), 1, "{kinds:?}");
    assert_eq!(count("deleted"), 1, "{kinds:?}");
    assert!(kinds_for(&mails, &account, "owner-exempt@example.com").is_empty());

    // The stored report is readable through the CLI, in every format.
    let run = real.run_id.as_str();
    let table = cli.run(&["report", "--run", run]);
    assert!(table.contains(&account), "{table}");
    let json: RunReport =
        serde_json::from_str(&cli.run(&["report", "--run", run, "--format", "json"])).unwrap();
    assert_eq!(json.run_id, real.run_id);
    let csv = cli.run(&["report", "--run", run, "--format", "csv"]);
    assert!(
        csv.lines()
            .any(|l| l.contains(&account) && l.contains("owner")),
        "{csv}"
    );
    assert!(cli
        .run(&["report", "--run", run, "--format", "html"])
        .contains("<html"));

    // Emergency rotation through the CLI: a new key now, the old one
    // deactivated at once.
    cli.run(&[
        "rotate",
        "--account",
        &account,
        "--user",
        "owner",
        "--deactivate-old",
    ]);
    let after = keys_of(&iam, &["owner"]).await;
    assert_eq!(after["owner"].len(), 2, "{after:?}");
    assert_eq!(
        after["owner"][0],
        (k2.clone(), false),
        "old key deactivated at once"
    );
    assert!(after["owner"][1].1 && after["owner"][1].0 != k2);

    // All of it ran in the deployed Lambdas: the agent of this account
    // once per run (six plans, six runs, two reactivations, the rotation),
    // under its role.
    // Each run was over when its report was; an invocation's record is
    // complete once the emulator has nothing left to do in the account.
    emu.settle(&[&account], 120).unwrap();
    let agent_runs = emu
        .lambda_invocations()
        .unwrap()
        .iter()
        .filter(|i| {
            i["account"] == account.as_str()
                && i["function_arn"]
                    .as_str()
                    .is_some_and(|a| a.ends_with(":function:keyfleet-agent"))
                && i["status"] == "ok"
        })
        .count();
    assert_eq!(agent_runs, 15, "one agent invocation per run");
    crate::permissions::assert_used_matches_granted(&account, keyfleet_testkit::DEFAULT_ACCOUNT)
        .await;
}
