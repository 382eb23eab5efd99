//! `keyfleet demo`: the whole system on the embedded emulator, no AWS
//! account needed, deployed as it is in AWS.
//!
//! It starts the emulator harness, creates an organization (two OUs, five
//! member accounts, two of them added after the agent StackSet exists to
//! show auto-deployment, plus a sandbox account under an excluded OU),
//! deploys keyfleet (`keyfleet bootstrap`: the coordinator Lambda with its
//! queues, bucket, schedules and role, the agent template by StackSet),
//! turns on the emulator's IAM enforcement of keyfleet's roles, seeds every
//! account with users whose keys cover every rule, then runs three cycles
//! with the clock advanced in between: rotate -> deactivate -> delete. Each
//! cycle fires the coordinator's daily schedule; the emulator runs the
//! coordinator, delivers the jobs to the agent Lambdas and their results
//! back to the coordinator through the queues, and the demo prints the
//! consolidated report once the run is finalized. The HTML reports, the
//! emails sent, one owner's emails run by run (a team owning three users in
//! every account: the key files and passwords of its rotations, and one
//! digest per run, whose still-in-use item names where the old key is used
//! from) and the Lambda invocations are listed at the end, then `keyfleet
//! doctor`'s checks of the deployment.

use crate::bootstrap::{self, START_RULE};
use crate::config::Config;
use crate::deployed::Deployment;
use anyhow::{Context, Result};
use keyfleet_testkit::seed::{self, key, user, UserSpec};
use keyfleet_testkit::Emulator;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The users seeded in every member account, one per rule.
pub(crate) fn users() -> Vec<UserSpec> {
    vec![
        // Seed: one key nearing expiry -> new key.
        user("alice", vec![key(85, true, Some(1))]),
        // Seed: two keys, older inactive -> delete older, create new.
        UserSpec {
            path: "/engineering/ci/".into(),
            ..user(
                "bob.ci",
                vec![key(95, false, Some(40)), key(85, true, Some(1))],
            )
        },
        // Seed: two keys, younger inactive -> delete younger, create new.
        user(
            "carol+deploy",
            vec![key(86, true, Some(2)), key(30, false, None)],
        ),
        // Seed: two active, one nearing expiry -> notice, then deactivate.
        user(
            "dave",
            vec![key(84, true, Some(14)), key(12, true, Some(1))],
        ),
        // Seed: unused -> delete and notify.
        user("erin", vec![key(95, true, None)]),
        // Exempt: untouched whatever the age.
        UserSpec {
            exempt: true,
            ..user("frank.breakglass", vec![key(130, true, Some(1))])
        },
        // No email tag: reported unreachable, no key created.
        UserSpec {
            email: None,
            ..user("grace-noemail", vec![key(85, true, Some(1))])
        },
        // Compliant.
        user("heidi", vec![key(20, true, Some(1))]),
        // Old key still used after its replacement: held, owner told.
        user("ivan", vec![key(95, true, Some(1)), key(20, true, Some(3))]),
    ]
}

/// The owner of alice, dave and ivan in every account: a team that owns
/// several users, to show that an owner hears once a run, whatever the
/// run does to how many of their keys.
const TEAM: &str = "app-team@example.com";
/// Where ivan's old key is still used from (a CloudTrail event the demo
/// records for it in each account): the digest names them.
const IVAN_SOURCE_IP: &str = "198.51.100.24";
const IVAN_USER_AGENT: &str = "Boto3/1.34.0 Python/3.11.6 Linux/6.1 nightly-export/2.3";

/// [`users`], with alice, dave and ivan owned by [`TEAM`].
fn seeded_users() -> Vec<UserSpec> {
    users()
        .into_iter()
        .map(|u| match u.name.as_str() {
            "alice" | "dave" | "ivan" => UserSpec {
                email: Some(TEAM.to_string()),
                ..u
            },
            _ => u,
        })
        .collect()
}

const ACCOUNTS: [(&str, &str); 4] = [
    ("payments", "workloads"),
    ("analytics", "workloads"),
    ("platform", "workloads"),
    ("sandbox-dev", "sandbox"),
];

async fn create_account(
    org: &aws_sdk_organizations::Client,
    name: &str,
    ou: &str,
    root: &str,
) -> Result<String> {
    let out = org
        .create_account()
        .account_name(name)
        .email(format!("aws+{name}@example.com"))
        .send()
        .await
        .with_context(|| format!("creating account {name}"))?;
    let id = out
        .create_account_status()
        .and_then(|s| s.account_id())
        .context("CreateAccount returned no account id")?
        .to_string();
    org.move_account()
        .account_id(&id)
        .source_parent_id(root)
        .destination_parent_id(ou)
        .send()
        .await
        .with_context(|| format!("moving {name} into its OU"))?;
    Ok(id)
}

pub async fn run(out_dir: &Path) -> Result<()> {
    println!("Starting the AWS emulator (first run installs it into tests/emulator/.venv)...");
    let emu = Emulator::start().context("starting the emulator harness")?;
    println!("  emulator at {}", emu.endpoint());
    let mut cfg = Config::default();
    cfg.aws.endpoint_url = Some(emu.endpoint().to_string());
    let sdk = emu.config();

    // Organization: two OUs; the sandbox OU is excluded from rotation.
    let org = aws_sdk_organizations::Client::new(&sdk);
    org.create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .context("creating the organization")?;
    let root = org
        .list_roots()
        .send()
        .await?
        .roots()
        .first()
        .and_then(|r| r.id().map(str::to_string))
        .context("no root")?;
    let mut ous = std::collections::BTreeMap::new();
    for name in ["workloads", "sandbox"] {
        let ou = org
            .create_organizational_unit()
            .parent_id(&root)
            .name(name)
            .send()
            .await?
            .organizational_unit()
            .and_then(|o| o.id().map(str::to_string))
            .context("no OU id")?;
        ous.insert(name, ou);
    }
    cfg.org.exclude_ous = vec![ous["sandbox"].clone()];
    // Service-managed StackSets never deploy to the management account, so
    // it is excluded (as the Terraform example does by default).
    let management = org
        .describe_organization()
        .send()
        .await?
        .organization()
        .and_then(|o| o.master_account_id().map(str::to_string))
        .context("no management account")?;
    cfg.org.exclude_accounts = vec![management];
    let mut members = Vec::new();
    for (name, ou) in ACCOUNTS {
        let id = create_account(&org, name, &ous[ou], &root).await?;
        if ou != "sandbox" {
            members.push((name.to_string(), id));
        }
    }
    println!(
        "Organization: {} member accounts in OU workloads, 1 in the excluded OU sandbox",
        members.len()
    );

    let boot = bootstrap::bootstrap(&cfg, Path::new("keyfleet.toml"), &sdk).await?;
    emu.enforce_iam(true)?;
    println!(
        "Deployed keyfleet in {}: the coordinator Lambda (results queue, report bucket, alerts topic, SES identity, schedules, key {}) and the agent StackSet; IAM enforced for keyfleet's roles",
        boot.account_id, boot.key_id
    );
    // Two accounts joining after the StackSet exists get an agent by
    // auto-deployment.
    for name in ["data-science", "edge"] {
        let id = create_account(&org, name, &ous["workloads"], &root).await?;
        members.push((name.to_string(), id));
    }
    let cfn_ok = check_agents(&emu, &members).await?;
    println!(
        "  agent Lambda deployed in {cfn_ok}/{} member accounts (2 of them by auto-deployment)",
        members.len()
    );

    for (name, id) in &members {
        let acct = emu.config_for_account(id).await?;
        let iam = aws_sdk_iam::Client::new(&acct);
        let created = seed::populate(&emu, &iam, id, &seeded_users())
            .await
            .with_context(|| format!("seeding {name}"))?;
        // A program elsewhere still calls S3 with ivan's old key.
        if let Some(old) = created.get("ivan").and_then(|k| k.first()) {
            emu.record_cloudtrail_event(serde_json::json!({
                "access_key_id": old, "event_name": "GetObject", "service": "s3",
                "region": "eu-west-1", "source_ip": IVAN_SOURCE_IP,
                "user_agent": IVAN_USER_AGENT,
            }))
            .with_context(|| format!("recording ivan's key use in {name}"))?;
        }
    }
    println!(
        "Seeded {} users in {} accounts (keys aged with the emulator clock)\n",
        users().len() * members.len(),
        members.len()
    );

    let deployment = Deployment::new(&cfg, &sdk);
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut htmls: Vec<PathBuf> = Vec::new();
    let mut runs: Vec<(String, &str)> = Vec::new();
    let steps = [
        (0.0, "day 0: rotate"),
        (10.0, "day 10: deactivate"),
        (11.0, "day 21: delete"),
    ];
    for (i, (advance, title)) in steps.iter().enumerate() {
        if *advance > 0.0 {
            emu.advance_clock(*advance, None)?;
        }
        println!("=== Cycle {} ({title}) ===", i + 1);
        let known: BTreeSet<String> = deployment.reports().run_ids().await?.into_iter().collect();
        emu.fire_rule(START_RULE)?;
        let run_id = deployment.next_run(&known).await?;
        runs.push((run_id.clone(), title));
        let report = deployment.follow(&run_id).await?;
        println!("{}", keyfleet_reports::render::to_table(&report));
        let path = out_dir.join(format!("report-{}.html", i + 1));
        std::fs::write(&path, keyfleet_reports::render::to_html(&report))?;
        htmls.push(path);
    }

    let mails = emu.outbox()?;
    let mut by_kind: std::collections::BTreeMap<String, usize> = Default::default();
    let mut sample = Vec::new();
    let first = &members[0].1;
    for m in &mails {
        let parsed = mail_parser::MessageParser::default().parse(m.raw.as_bytes());
        let header = |name: &str| {
            parsed
                .as_ref()
                .and_then(|p| p.header_raw(name))
                .unwrap_or("")
                .trim()
                .to_string()
        };
        *by_kind.entry(header("X-Keyfleet-Kind")).or_default() += 1;
        let about_first = header("X-Keyfleet-Account")
            .split(',')
            .any(|a| a.trim() == first);
        if about_first || header("X-Keyfleet-Kind") == "summary" {
            let subject = parsed
                .as_ref()
                .and_then(|p| p.subject().map(str::to_string))
                .unwrap_or_default();
            sample.push(format!("  {:<34} {subject}", m.destinations.join(",")));
        }
    }
    println!("=== Emails sent: {} ===", mails.len());
    for (kind, n) in &by_kind {
        println!("  {n:>4}  {kind}");
    }
    println!(
        "\nThose of account {} ({}) and the security team's summaries:",
        members[0].0, first
    );
    for line in sample {
        println!("{line}");
    }
    print_owner(&mails, &runs, members.len());
    print_invocations(&emu)?;
    // The deployment, as an operator checks theirs.
    println!("\n=== keyfleet doctor ===");
    if let Err(e) = crate::doctor::run(&cfg, false, None).await {
        println!("keyfleet doctor: {e}");
    }
    println!("\nHTML reports:");
    for h in &htmls {
        println!(
            "  {}",
            std::fs::canonicalize(h).unwrap_or(h.clone()).display()
        );
    }
    Ok(())
}

/// The emails [`TEAM`] got, run by run: the key files and passwords of
/// its rotations, and one digest per run with news; then the still-in-use
/// item of its first digest, with where the old key is used from.
fn print_owner(mails: &[keyfleet_testkit::SentEmail], runs: &[(String, &str)], accounts: usize) {
    println!("\n=== Emails to {TEAM} (owner of alice, dave and ivan in {accounts} accounts) ===");
    let mut total = 0;
    let mut rotations = 0;
    let mut still_in_use = None;
    for (i, (run_id, title)) in runs.iter().enumerate() {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        let mut digests = Vec::new();
        for m in mails
            .iter()
            .filter(|m| m.destinations.iter().any(|d| d == TEAM))
        {
            let Some(parsed) = mail_parser::MessageParser::default().parse(m.raw.as_bytes()) else {
                continue;
            };
            let header = |name: &str| parsed.header_raw(name).unwrap_or("").trim().to_string();
            if header("X-Keyfleet-Run") != *run_id {
                continue;
            }
            let kind = header("X-Keyfleet-Kind");
            if kind == "digest" {
                let body = parsed.body_text(0).unwrap_or_default().to_string();
                if still_in_use.is_none() && body.contains("is still in use") {
                    still_in_use = Some(body);
                }
                digests.push(parsed.subject().unwrap_or_default().to_string());
            }
            *kinds.entry(kind).or_default() += 1;
        }
        let n: usize = kinds.values().sum();
        total += n;
        rotations += kinds.get("new_key").copied().unwrap_or(0);
        let counts: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "  cycle {} ({title}): {n} email{}: {}",
            i + 1,
            if n == 1 { "" } else { "s" },
            counts.join(", ")
        );
        for subject in digests {
            println!("    digest: {subject}");
        }
    }
    if rotations > 0 {
        println!(
            "  {total} emails for {rotations} rotations: {:.1} per rotation (key file, password, one digest per run with news)",
            total as f64 / rotations as f64
        );
    }
    if let Some(body) = still_in_use {
        println!("\n  The still-in-use item of its digest:");
        let item: Vec<&str> = body
            .lines()
            .skip_while(|l| !l.contains("is still in use"))
            .take_while(|l| !l.starts_with("Next step"))
            .collect();
        for line in item {
            println!("    {line}");
        }
        if let Some(next) = body.lines().find(|l| l.starts_with("Next step")) {
            println!("    {next}");
        }
    }
}

/// How many member accounts have the agent's function (deployed by the
/// StackSet).
async fn check_agents(emu: &Emulator, members: &[(String, String)]) -> Result<usize> {
    let mut n = 0;
    for (_, id) in members {
        let acct = emu.config_for_account(id).await?;
        let lambda = aws_sdk_lambda::Client::new(&acct);
        if lambda
            .get_function()
            .function_name("keyfleet-agent")
            .send()
            .await
            .is_ok()
        {
            n += 1;
        }
    }
    Ok(n)
}

/// Invocations per function, and the largest resident set one reached.
fn print_invocations(emu: &Emulator) -> Result<()> {
    let mut by_function: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for inv in emu.lambda_invocations()? {
        let name = inv["function_arn"]
            .as_str()
            .and_then(|a| a.rsplit(':').next())
            .unwrap_or("?")
            .to_string();
        let e = by_function.entry(name).or_default();
        e.0 += 1;
        e.1 = e.1.max(inv["max_rss_kib"].as_u64().unwrap_or(0));
    }
    println!("\nLambda invocations:");
    for (name, (n, rss)) in by_function {
        println!(
            "  {n:>4}  {name:<22} peak RSS {:.0} MiB",
            rss as f64 / 1024.0
        );
    }
    // Every call of keyfleet's roles was decided by the emulator's policy
    // engine (identity, resource and trust policies, SCPs and RCPs).
    let decisions = emu.iam_decisions()?;
    let denied = decisions.iter().filter(|d| d.decision != "ALLOWED").count();
    println!(
        "\nIAM: {} calls of keyfleet's roles decided by the policy engine, {denied} denied",
        decisions.len()
    );
    for d in decisions.iter().filter(|d| d.decision != "ALLOWED") {
        println!(
            "  denied {} on {} ({}): {}",
            d.action, d.resource, d.role, d.reason
        );
    }
    Ok(())
}
