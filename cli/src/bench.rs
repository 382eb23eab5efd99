//! `keyfleet bench`: a full cycle on organizations of growing size against
//! the emulator, printing the figures the design targets: accounts per
//! second, keyfleet's own CPU per account, IAM calls per account, wall time
//! and peak memory.
//!
//! Each size gets a fresh emulator, an organization of N accounts with the
//! agent StackSet, and `users` users per account (mostly compliant, a tenth
//! with a key due for rotation, a few unused keys), then one `--local`
//! cycle: the coordinator and every agent in this process, so the figures
//! are keyfleet's own (the emulator's Lambda processes would add their
//! start-up, which Lambda does not have at that scale). Only the cycle is
//! timed; seeding is not. Peak memory is the high-water mark of this whole
//! process (the coordinator's dispatch and intake and every agent together),
//! read from /proc: an upper bound for one agent Lambda, which holds a
//! single account. The run is finalized in a process of its own (as the
//! coordinator Lambda would), whose peak memory and time are printed apart,
//! with the sizes of the report objects. Each cycle's end state is checked
//! (every account served, every due key rotated, no failed action; the
//! first account's keys in IAM), and the bench fails when it is not.

use crate::bootstrap;
use crate::config::Config;
use crate::local::Local;
use anyhow::{Context, Result};
use futures::stream::{self, StreamExt};
use keyfleet_protocol::command::Command;
use keyfleet_testkit::seed::{self, key, user, UserSpec};
use keyfleet_testkit::Emulator;
use std::path::Path;
use std::time::Instant;

fn users(n: usize) -> Vec<UserSpec> {
    (0..n)
        .map(|i| match i % 10 {
            0 => user(format!("svc-{i:04}"), vec![key(85, true, Some(1))]),
            1 if i % 20 == 1 => user(format!("svc-{i:04}"), vec![key(95, true, None)]),
            _ => user(format!("svc-{i:04}"), vec![key(20, true, Some(1))]),
        })
        .collect()
}

/// CPU time (user and system, every thread) this process has used, in
/// seconds: `/proc/self/stat`'s `utime` and `stime`, in clock ticks of
/// 1/100 s (Linux's `USER_HZ` on every architecture keyfleet builds for).
/// The emulator is another process: its CPU is not in it.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces: fields are counted after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are the 14th and 15th fields, the 12th and 13th
    // after the name and the state.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Peak resident set size of this process, in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

pub struct Row {
    pub accounts: usize,
    pub users: usize,
    pub wall_s: f64,
    pub accounts_per_s: f64,
    /// keyfleet's own CPU per account in the cycle (this process: the
    /// coordinator and every agent), in milliseconds; the rest of the wall
    /// time is the emulator's.
    pub cpu_ms_per_account: f64,
    pub iam_calls_per_account: f64,
    pub peak_mib: f64,
    pub ok: u64,
    /// The finalize, in a process of its own (the coordinator alone).
    pub finalize: crate::bench_finalize::Finalized,
    pub sizes: crate::bench_finalize::Sizes,
    /// The AWS requests of the cycle and of a quiet one after it, by
    /// service and action (counted at the emulator), and the keys rotated.
    pub counted: crate::cost::Counted,
    /// A month of this organization, from those calls (see `crate::cost`).
    pub estimate: crate::cost::Estimate,
}

/// Users of [`users`] whose key is due for rotation.
fn due(users_per: usize) -> u64 {
    (0..users_per).filter(|i| i % 10 == 0).count() as u64
}

/// The end state a cycle must leave: every account served (none dropped,
/// missing or failed), every due key rotated and no action failed; and in
/// the first account, as IAM shows it, every due user with its new key
/// beside the old one.
async fn check_end_state(
    emu: &Emulator,
    report: &keyfleet_protocol::report::RunReport,
    ids: &[String],
    users_per: usize,
) -> Result<()> {
    let t = &report.totals;
    let accounts = ids.len() as u64;
    if t.accounts_ok != accounts {
        let others: Vec<String> = report
            .accounts
            .iter()
            .filter(|a| a.state != keyfleet_protocol::report::AccountState::Ok)
            .take(5)
            .map(|a| format!("{} {} {:?}", a.account_id, a.state.as_str(), a.error))
            .collect();
        anyhow::bail!(
            "{} of {accounts} accounts served cleanly; for example: {}",
            t.accounts_ok,
            others.join("; ")
        );
    }
    let rotated = t.by_verdict.get("rotated").copied().unwrap_or(0);
    if rotated != accounts * due(users_per) || t.failed_actions != 0 {
        anyhow::bail!(
            "{rotated} users rotated (expected {}), {} failed actions",
            accounts * due(users_per),
            t.failed_actions
        );
    }
    let first = ids.first().context("no account")?;
    let iam = aws_sdk_iam::Client::new(&emu.config_for_account(first).await?);
    for i in (0..users_per).filter(|i| i % 10 == 0) {
        let name = format!("svc-{i:04}");
        let keys = seed::keys(&iam, &name).await?;
        if keys.len() != 2 {
            anyhow::bail!("{first}/{name} has {} keys after its rotation", keys.len());
        }
    }
    Ok(())
}

/// A fresh emulator with an organization and keyfleet deployed in it (the
/// management account excluded: service-managed StackSets never deploy
/// there).
pub(crate) struct Deployed {
    pub emu: Emulator,
    pub cfg: Config,
    pub sdk: aws_config::SdkConfig,
    pub org: aws_sdk_organizations::Client,
    pub boot: bootstrap::Bootstrapped,
}

pub(crate) async fn deployed_org() -> Result<Deployed> {
    let emu = Emulator::start().context("starting the emulator")?;
    let mut cfg = Config::default();
    cfg.aws.endpoint_url = Some(emu.endpoint().to_string());
    let sdk = emu.config();
    let org = aws_sdk_organizations::Client::new(&sdk);
    org.create_organization().send().await?;
    let management = org
        .describe_organization()
        .send()
        .await?
        .organization()
        .and_then(|o| o.master_account_id().map(str::to_string))
        .context("no management account")?;
    cfg.org.exclude_accounts = vec![management];
    let boot = bootstrap::bootstrap(&cfg, Path::new("keyfleet.toml"), &sdk).await?;
    Ok(Deployed {
        emu,
        cfg,
        sdk,
        org,
        boot,
    })
}

async fn one(accounts: usize, users_per: usize) -> Result<Row> {
    let Deployed {
        emu, cfg, sdk, org, ..
    } = deployed_org().await?;
    let mut ids = Vec::new();
    for i in 0..accounts {
        let out = org
            .create_account()
            .account_name(format!("bench-{i:03}"))
            .email(format!("aws+bench-{i:03}@example.com"))
            .send()
            .await?;
        ids.push(
            out.create_account_status()
                .and_then(|s| s.account_id())
                .context("no account id")?
                .to_string(),
        );
    }
    let specs = users(users_per);
    let seeded: Vec<Result<()>> = stream::iter(&ids)
        .map(|id| {
            let (emu, specs) = (&emu, &specs);
            async move {
                let acct = emu.config_for_account(id).await?;
                let iam = aws_sdk_iam::Client::new(&acct);
                seed::populate(emu, &iam, id, specs).await?;
                Ok(())
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    seeded.into_iter().collect::<Result<Vec<()>>>()?;

    let local = Local::connect(&cfg, Path::new("keyfleet.toml"), sdk.clone()).await?;
    emu.reset_calls()?;
    let start = Instant::now();
    let cpu_before = cpu_seconds();
    let run_id = local
        .run_agents(&Command::Run {
            accounts: None,
            dry_run: false,
        })
        .await?;
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map_or(f64::NAN, |(after, before)| after - before);
    let busy = counted_calls(&emu)?;
    // The last result's intake finalized the run in this process; it is
    // finalized once more from its stored results in a process of its own,
    // as the coordinator Lambda does, for the coordinator's own figures.
    let store = keyfleet_reports::store::RunStore::new(
        crate::aws::s3_client(&cfg, &sdk),
        cfg.coordinator.report_bucket.clone(),
    );
    store
        .delete(&keyfleet_reports::store::final_key(&run_id))
        .await?;
    for ext in ["json", "csv", "html"] {
        store
            .delete(&keyfleet_reports::store::report_key(&run_id, ext))
            .await?;
    }
    let finalize = crate::bench_finalize::finalize_in_child(&cfg, &run_id)?;
    let report = local
        .coordinator
        .report(&run_id)
        .await?
        .with_context(|| format!("run {run_id} did not finalize"))?;
    check_end_state(&emu, &report, &ids, users_per).await?;
    let sizes = crate::bench_finalize::Sizes::of(&store, &run_id).await?;
    // A quiet run right after: nothing is due (the new keys wait for
    // their delivery, the old ones for their dates); what it costs is what
    // every run costs.
    emu.reset_calls()?;
    local
        .run_agents(&Command::Run {
            accounts: None,
            dry_run: false,
        })
        .await?;
    let quiet = counted_calls(&emu)?;
    let t = &report.totals;
    let counted = crate::cost::Counted {
        busy,
        quiet,
        rotated: t.actions_by_kind.get("create").copied().unwrap_or(0),
    };
    let agents = cfg.coordinator.local_agents.max(1) as f64;
    let shape = crate::cost::Shape {
        // Seconds an agent spent on an account here (the emulator's
        // slowness included: an upper bound for AWS).
        agent_seconds: wall * agents / accounts.max(1) as f64,
        coordinator_seconds: finalize.seconds.max(1.0) * 2.0,
        run_bytes: (sizes.json + sizes.csv + sizes.jsonl + sizes.html) as f64
            + sizes.pages as f64 * 40_000.0,
        ..crate::cost::Shape::deployed(accounts as u64, users_per as u64)
    };
    let estimate = crate::cost::monthly(&shape, &counted);
    Ok(Row {
        accounts,
        users: users_per,
        wall_s: wall,
        accounts_per_s: accounts as f64 / wall,
        cpu_ms_per_account: cpu * 1000.0 / accounts.max(1) as f64,
        iam_calls_per_account: t.iam_calls as f64
            / (t.accounts_ok + t.accounts_partial).max(1) as f64,
        peak_mib: peak_rss_mib().unwrap_or(f64::NAN),
        ok: t.accounts_ok,
        finalize,
        sizes,
        counted,
        estimate,
    })
}

pub async fn run(sizes: &[usize], users_per: usize) -> Result<()> {
    println!(
        "{:>8} {:>6} {:>10} {:>11} {:>14} {:>15} {:>14} {:>6} {:>13} {:>15} {:>10} {:>9} {:>10}",
        "accounts",
        "users",
        "wall (s)",
        "accounts/s",
        "CPU/acct (ms)",
        "IAM calls/acct",
        "peak RSS (MiB)",
        "ok",
        "finalize (s)",
        "finalize (MiB)",
        "JSON (MB)",
        "CSV (MB)",
        "HTML (KB)"
    );
    let mut rows = Vec::new();
    for &n in sizes {
        let r = one(n, users_per).await?;
        println!(
            "{:>8} {:>6} {:>10.2} {:>11.1} {:>14.0} {:>15.1} {:>14.0} {:>6} {:>13.1} {:>15.0} {:>10.1} {:>9.1} {:>10.0}",
            r.accounts,
            r.users,
            r.wall_s,
            r.accounts_per_s,
            r.cpu_ms_per_account,
            r.iam_calls_per_account,
            r.peak_mib,
            r.ok,
            r.finalize.seconds,
            r.finalize.peak_mib,
            r.sizes.json as f64 / 1e6,
            r.sizes.csv as f64 / 1e6,
            r.sizes.html as f64 / 1e3,
        );
        rows.push(r);
    }
    println!("every account served, every due key rotated (checked in the report and, for the first account, in IAM)");
    println!("CPU/acct: keyfleet's own CPU time in the cycle (this process: the coordinator and every agent) per account; the rest of the wall time is the emulator's");
    for r in &rows {
        print_cost(r);
    }
    println!("\nprices (us-east-1 list prices):");
    for p in crate::cost::PRICES {
        println!(
            "  {:<46} ${:>12} per {:>9}  {}",
            p.what, p.usd, p.per, p.page
        );
    }
    Ok(())
}

/// The requests counted at the emulator since its last reset, summed over
/// accounts.
fn counted_calls(emu: &Emulator) -> Result<crate::cost::Calls> {
    let mut calls = crate::cost::Calls::new();
    for (_, service, action, n) in emu.calls()? {
        *calls.entry((service, action)).or_default() += n;
    }
    Ok(calls)
}

/// The AWS requests per rotated key by service, and the month's estimate
/// with its lines by what they grow with.
fn print_cost(r: &Row) {
    println!(
        "\n{} x {}: AWS requests per rotated key ({} keys rotated; a quiet run's requests taken out), counted at the emulator:",
        r.accounts, r.users, r.counted.rotated
    );
    let per = r.counted.per_rotated_key();
    let by_action = r.counted.per_rotated_key_by_action();
    for (service, n) in &per {
        println!("  {service:<16} {n:>8.1}");
        for ((_, action), n) in by_action
            .iter()
            .filter(|((s, _), n)| s == service && n.abs() >= 0.05)
        {
            println!("    {action:<30} {n:>6.1}");
        }
    }
    println!("  {:<16} {:>8.1}", "total", per.values().sum::<f64>());
    let mut by_service: std::collections::BTreeMap<&str, u64> = Default::default();
    for ((service, _), n) in &r.counted.busy {
        *by_service.entry(service).or_default() += n;
    }
    println!(
        "AWS requests per account in the busy cycle, by service (agents' and coordinator's; jobs and results pass in process):"
    );
    for (service, n) in &by_service {
        println!(
            "  {service:<16} {:>8.1}",
            *n as f64 / r.accounts.max(1) as f64
        );
    }
    println!(
        "monthly AWS cost of keyfleet for {} accounts x {} users, one run a day (list prices us-east-1, checked {}; see cli/src/cost.rs):",
        r.accounts,
        r.users,
        crate::cost::PRICES_CHECKED
    );
    for l in r.estimate.lines.iter().filter(|l| l.usd >= 0.005) {
        println!("  {:<12} {:<72} ${:>9.2}", l.grows_with, l.what, l.usd);
    }
    println!(
        "  {:<12} {:<72} ${:>9.2}",
        "",
        "keyfleet's own state (records, report bucket, secrets)",
        r.estimate.state()
    );
    println!("  {:<12} {:<72} ${:>9.2}", "", "total", r.estimate.total());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_and_grows_with_work() {
        let before = cpu_seconds().expect("/proc/self/stat readable");
        let mut x = 0u64;
        let start = Instant::now();
        // Work until the clock-tick counter can have moved (ticks are 10 ms).
        while cpu_seconds().unwrap_or(before) <= before {
            for i in 0..100_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            assert!(start.elapsed().as_secs() < 60, "no CPU time counted");
        }
        std::hint::black_box(x);
        assert!(cpu_seconds().unwrap() > before);
    }
}
