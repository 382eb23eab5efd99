//! `keyfleet bench --faults`: the deployed system under AWS faults, against
//! the same organization without them.
//!
//! Two fresh emulators, each with keyfleet deployed as in `demo` (IAM
//! enforced), `accounts` member accounts seeded with the demo's users (one
//! per rule). The clean one runs one scheduled cycle. The faulted one runs
//! with IAM throttling 30% of calls, SQS answering 500 to 10%, SES refusing
//! 20% of emails (`MessageRejected`, which the SDK does not retry) and S3
//! answering 503 to 10%, from the first run to the last; scheduled runs are
//! repeated (with the hourly sweep after each) until a report has no more
//! problems than the clean run's and no failed action. Between deliveries
//! the emulator makes retried messages visible at once, standing in for
//! the visibility timeout; a run whose agents did not all report by then is
//! finalized the way the deadline sweep would.
//!
//! Then it checks, and exits non-zero if any fails:
//! - every user ends in the same state as in the clean run (number of keys,
//!   their statuses, whether the original key is still there);
//! - every key the run created and IAM still holds reached its owner
//!   exactly once: one zip email and one password email per key;
//! - every owner got the same emails as in the clean run (each notice
//!   once, counted inside the digests), however many runs it took.
//!
//! It prints the runs it took, the wall time (runs only, not set-up) next
//! to the clean run's, the emails and the faults the emulator injected.

use crate::deployed::Deployment;
use anyhow::{bail, Context, Result};
use keyfleet_protocol::command::Command;
use keyfleet_protocol::report::RunReport;
use keyfleet_testkit::seed::{self, UserSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// At most this many scheduled runs before the fault run gives up.
const MAX_RUNS: usize = 8;
/// Delivery rounds (settle, then make retried messages visible) per run.
const ROUNDS: usize = 6;

/// The fault rules: the shares the design's fault run names.
fn fault_rules() -> serde_json::Value {
    serde_json::json!({"seed": 11, "rules": [
        {"service": "iam", "kind": "throttle", "share": 0.3},
        {"service": "sqs", "kind": "internal_error", "share": 0.1},
        {"service": "sesv2", "action": "SendEmail", "kind": "internal_error", "share": 0.2,
         "status": 400, "code": "MessageRejected", "message": "Email refused."},
        {"service": "s3", "kind": "unavailable", "share": 0.1},
    ]})
}

/// A user's end state, comparable across emulators (key ids differ).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct UserState {
    keys: usize,
    statuses: Vec<String>,
    original_kept: bool,
}

/// What one scenario ended with.
struct Outcome {
    runs: usize,
    wall_s: f64,
    /// (account name, user) -> state.
    users: BTreeMap<(String, String), UserState>,
    /// (account name, user, kind) -> emails, summaries left out; a
    /// digest counts once for each of its notices, under the notice's
    /// account and kind.
    mails: BTreeMap<(String, String, String), usize>,
    total_mails: usize,
    /// (account name, user, new key id) of keys created and still in IAM.
    new_keys: BTreeSet<(String, String, String)>,
    /// Keys named by a zip email: (account name, user, key id) -> count.
    zips: BTreeMap<(String, String, String), usize>,
    injected: u64,
    /// Accounts whose pending mail a sweep sent.
    resent: usize,
    /// Injected faults per service.
    by_service: BTreeMap<String, u64>,
    problems: usize,
}

/// Reads a run's report as the operator does. The faults hit this
/// process's S3 calls too (they come from the same account as the
/// coordinator's), and the fault run is about keyfleet, not about the
/// operator's reads: a read that fails after the SDK's retries is tried
/// again, up to ten times.
async fn read_report(deployment: &Deployment, run_id: &str) -> Result<Option<RunReport>> {
    let mut last = None;
    for _ in 0..10 {
        match deployment.reports().report(run_id).await {
            Ok(r) => return Ok(r),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .map(anyhow::Error::from)
        .unwrap_or_else(|| anyhow::anyhow!("no attempt")))
}

fn problems(r: &RunReport) -> usize {
    r.accounts.iter().filter(|a| a.state.is_problem()).count()
}

async fn scenario(accounts: usize, faults: bool, clean_problems: Option<usize>) -> Result<Outcome> {
    let crate::bench::Deployed {
        emu,
        cfg,
        sdk,
        org,
        boot,
    } = crate::bench::deployed_org().await?;
    emu.enforce_iam(true)?;
    let specs: Vec<UserSpec> = crate::demo::users();
    let mut members: Vec<(String, String)> = Vec::new();
    let mut originals: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for i in 0..accounts {
        let name = format!("fault-{i:03}");
        let out = org
            .create_account()
            .account_name(&name)
            .email(format!("aws+{name}@example.com"))
            .send()
            .await?;
        let id = out
            .create_account_status()
            .and_then(|s| s.account_id())
            .context("no account id")?
            .to_string();
        let iam = aws_sdk_iam::Client::new(&emu.config_for_account(&id).await?);
        for (user, keys) in seed::populate(&emu, &iam, &id, &specs).await? {
            originals.insert((name.clone(), user), keys);
        }
        members.push((name, id));
    }
    let ids: Vec<&str> = members.iter().map(|(_, id)| id.as_str()).collect();
    let mut settle_on: Vec<&str> = ids.clone();
    settle_on.push(&boot.account_id);
    let deployment = Deployment::new(&cfg, &sdk);
    let mut jobs_queues = Vec::new();
    for id in &ids {
        let sqs = aws_sdk_sqs::Client::new(&emu.config_for_account(id).await?);
        jobs_queues.push(
            sqs.get_queue_url()
                .queue_name("keyfleet-jobs")
                .send()
                .await?
                .queue_url
                .unwrap_or_default(),
        );
    }

    if faults {
        emu.set_faults(fault_rules())?;
    }
    let start = Instant::now();
    let mut runs = 0;
    let mut resent = 0;
    let mut last_problems;
    loop {
        runs += 1;
        let started = deployment
            .invoke(&Command::Run {
                accounts: None,
                dry_run: false,
            })
            .await
            .context("starting a run")?;
        let run_id = started["run_id"]
            .as_str()
            .context("the coordinator named no run")?
            .to_string();
        let mut report = None;
        for _ in 0..ROUNDS {
            emu.settle(&settle_on, 600)?;
            if let Some(r) = read_report(&deployment, &run_id).await? {
                report = Some(r);
                break;
            }
            for q in jobs_queues.iter().chain([&boot.results_queue_url]) {
                emu.make_visible(q)?;
            }
        }
        let report = match report {
            Some(r) => r,
            None => {
                // What the deadline sweep does for agents that never reported.
                deployment
                    .invoke(&Command::Finalize {
                        run_id: run_id.clone(),
                    })
                    .await?;
                read_report(&deployment, &run_id)
                    .await?
                    .context("the finalized run has no report")?
            }
        };
        // The hourly sweep: mail that failed at intake.
        let swept = deployment.invoke(&Command::Sweep).await?;
        resent += swept["mail"]["sent"].as_array().map_or(0, Vec::len);
        last_problems = problems(&report);
        let converged = last_problems <= clean_problems.unwrap_or(usize::MAX)
            && report.totals.failed_actions == 0;
        if converged || runs >= MAX_RUNS {
            break;
        }
    }
    // Mail still pending after the last run: the sweeps of the next hours.
    for _ in 0..MAX_RUNS {
        let swept = deployment.invoke(&Command::Sweep).await?;
        resent += swept["mail"]["sent"].as_array().map_or(0, Vec::len);
        if swept["mail"]["pending"]
            .as_array()
            .is_none_or(|p| p.is_empty())
        {
            break;
        }
    }
    let wall_s = start.elapsed().as_secs_f64();
    let mut by_service = BTreeMap::new();
    let injected = if faults {
        let f = emu.faults()?;
        emu.clear_faults()?;
        for e in f["log"].as_array().into_iter().flatten() {
            *by_service
                .entry(e["service"].as_str().unwrap_or("?").to_string())
                .or_insert(0) += 1;
        }
        f["injected"].as_u64().unwrap_or(0)
    } else {
        0
    };

    let mut users = BTreeMap::new();
    let mut new_keys = BTreeSet::new();
    for (name, id) in &members {
        let iam = aws_sdk_iam::Client::new(&emu.config_for_account(id).await?);
        for spec in &specs {
            let keys = seed::keys(&iam, &spec.name).await?;
            let original = &originals[&(name.clone(), spec.name.clone())];
            let mut statuses: Vec<String> = keys
                .iter()
                .map(|(_, active)| if *active { "Active" } else { "Inactive" }.to_string())
                .collect();
            statuses.sort();
            for (k, _) in &keys {
                if !original.contains(k) {
                    new_keys.insert((name.clone(), spec.name.clone(), k.clone()));
                }
            }
            users.insert(
                (name.clone(), spec.name.clone()),
                UserState {
                    keys: keys.len(),
                    statuses,
                    original_kept: keys.iter().any(|(k, _)| original.contains(k)),
                },
            );
        }
    }
    let by_id: BTreeMap<&str, &str> = members
        .iter()
        .map(|(n, id)| (id.as_str(), n.as_str()))
        .collect();
    let owners: BTreeMap<String, String> = specs
        .iter()
        .filter_map(|s| s.email.clone().map(|e| (e, s.name.clone())))
        .collect();
    let mut mails = BTreeMap::new();
    let mut zips = BTreeMap::new();
    let outbox = emu.outbox()?;
    for m in &outbox {
        let Some(parsed) = mail_parser::MessageParser::default().parse(m.raw.as_bytes()) else {
            continue;
        };
        let header = |h: &str| parsed.header_raw(h).unwrap_or("").trim().to_string();
        let kind = header("X-Keyfleet-Kind");
        if kind == "summary" {
            continue;
        }
        let name = |id: &str| by_id.get(id).copied().unwrap_or("?").to_string();
        let account = name(&header("X-Keyfleet-Account"));
        let account = account.as_str();
        let user = m
            .destinations
            .first()
            .and_then(|d| owners.get(d))
            .cloned()
            .unwrap_or_default();
        if kind == "digest" {
            // Counted by notice: faults may split an owner's notices over
            // more digests than the clean run sent, never repeat one.
            for notice in header("X-Keyfleet-Notices").split(',') {
                if let Some((id, k)) = notice.trim().split_once('/') {
                    *mails
                        .entry((name(id), user.clone(), k.to_string()))
                        .or_insert(0) += 1;
                }
            }
            continue;
        }
        *mails
            .entry((account.to_string(), user.clone(), kind.clone()))
            .or_insert(0) += 1;
        if kind == "new_key" {
            let text = parsed.body_text(0).unwrap_or_default().to_string();
            for (n, u, k) in new_keys
                .iter()
                .filter(|(n, u, _)| n == account && *u == user)
            {
                if text.contains(k.as_str()) {
                    *zips.entry((n.clone(), u.clone(), k.clone())).or_insert(0) += 1;
                }
            }
        }
    }
    Ok(Outcome {
        runs,
        wall_s,
        users,
        mails,
        total_mails: outbox.len(),
        new_keys,
        zips,
        injected,
        by_service,
        resent,
        problems: last_problems,
    })
}

/// The fault run (see the module doc).
pub async fn run(accounts: usize) -> Result<()> {
    println!(
        "clean run: {accounts} accounts, {} users each...",
        crate::demo::users().len()
    );
    let clean = scenario(accounts, false, None).await?;
    println!(
        "faulted runs: IAM throttled 30%, SQS 500 10%, SES MessageRejected 20%, S3 503 10%..."
    );
    let faulted = scenario(accounts, true, Some(clean.problems)).await?;
    println!(
        "\n{:<8} {:>5} {:>9} {:>7} {:>9} {:>8} {:>13}",
        "", "runs", "wall (s)", "emails", "new keys", "faults", "mail by sweep"
    );
    for (label, o) in [("clean", &clean), ("faulted", &faulted)] {
        println!(
            "{label:<8} {:>5} {:>9.1} {:>7} {:>9} {:>8} {:>13}",
            o.runs,
            o.wall_s,
            o.total_mails,
            o.new_keys.len(),
            o.injected,
            o.resent
        );
    }
    println!(
        "faults injected: {}",
        faulted
            .by_service
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut wrong = Vec::new();
    for (who, state) in &clean.users {
        match faulted.users.get(who) {
            Some(s) if s == state => {}
            other => wrong.push(format!(
                "{}/{}: {other:?} after the faults, {state:?} clean",
                who.0, who.1
            )),
        }
    }
    for o in [&clean, &faulted] {
        for k in &o.new_keys {
            let n = o.zips.get(k).copied().unwrap_or(0);
            if n != 1 {
                wrong.push(format!(
                    "{}/{}: new key {} in {n} zip emails",
                    k.0, k.1, k.2
                ));
            }
            let pw = o
                .mails
                .get(&(k.0.clone(), k.1.clone(), "password".into()))
                .copied()
                .unwrap_or(0);
            if pw != 1 {
                wrong.push(format!("{}/{}: {pw} password emails", k.0, k.1));
            }
        }
    }
    if clean.mails != faulted.mails {
        for (k, n) in clean.mails.iter() {
            let f = faulted.mails.get(k).copied().unwrap_or(0);
            if f != *n {
                wrong.push(format!(
                    "{}/{} {}: {f} emails after the faults, {n} clean",
                    k.0, k.1, k.2
                ));
            }
        }
        for (k, f) in faulted.mails.iter() {
            if !clean.mails.contains_key(k) {
                wrong.push(format!(
                    "{}/{} {}: {f} emails after the faults, none clean",
                    k.0, k.1, k.2
                ));
            }
        }
    }
    if !wrong.is_empty() {
        for w in &wrong {
            eprintln!("  {w}");
        }
        bail!(
            "the faulted runs did not end as the clean run: {} differences",
            wrong.len()
        );
    }
    println!(
        "same end state as the clean run for {} users; {} new keys, each in one zip and one password email; the same {} owner emails",
        clean.users.len(),
        faulted.new_keys.len(),
        clean.mails.values().sum::<usize>()
    );
    Ok(())
}
