//! `keyfleet bench --finalize`: the coordinator's finalize alone, on a run
//! of N accounts x M users, in a process of its own, printing its peak
//! memory, its time and the sizes of the report objects it wrote.
//!
//! Each size gets a fresh emulator with keyfleet bootstrapped, and a run
//! whose manifest and results are written to the run store as intake
//! writes them (synthetic results: a fifth of the users with a key rotated,
//! a tenth with an unused key deleted, a fifth without MFA, one in fifty
//! failed), so no agent runs. A child process (`keyfleet bench-finalize
//! <run>`, the same binary) then finalizes the run as the coordinator
//! Lambda does, and reports its own high-water mark (`VmHWM`): what a
//! deployed coordinator needs in memory to finalize a run of that size.

use crate::bench::{deployed_org, peak_rss_mib, Deployed};
use crate::config::Config;
use crate::local::Local;
use anyhow::{bail, Context, Result};
use keyfleet_protocol::plan::{Action, ActionRecord, KeyState, KeyStatus, Outcome};
use keyfleet_protocol::{
    encode, AccountResult, AccountStatus, Dispatch, JobMode, ManifestAccount, RunManifest,
    ScanMode, Token, UserReport, Verdict, VERSION,
};
use keyfleet_reports::store::{self, RunStore};
use std::path::Path;
use std::time::Instant;
use time::{Duration, OffsetDateTime};

/// One size's figures.
struct Row {
    accounts: usize,
    users: usize,
    seconds: f64,
    peak_mib: f64,
    json_bytes: u64,
    csv_bytes: u64,
    jsonl_bytes: u64,
    html_bytes: u64,
    pages: usize,
}

/// The synthetic result of one account.
fn result(
    run_id: &str,
    index: usize,
    account: &str,
    users: usize,
    now: OffsetDateTime,
) -> AccountResult {
    let users = (0..users)
        .map(|u| {
            let created = now - Duration::days(((u * 7) % 120) as i64);
            let key = |id: String, status| KeyState {
                id,
                status,
                created,
                last_used: Some(now - Duration::days(1)),
                last_used_service: Some("s3".into()),
                last_used_region: Some("us-east-1".into()),
            };
            let old = format!("AKIA{:016}", index * users + u);
            let mut r = UserReport {
                email: Some(format!("owner-{u}@example.com")),
                keys: vec![key(old.clone(), KeyStatus::Active)],
                mfa_active: Some(u % 5 != 0),
                password_enabled: Some(u % 9 == 0),
                ..UserReport::new(format!("svc-{u:04}"), Verdict::Compliant)
            };
            match u % 10 {
                0 | 1 => {
                    r.verdict = Verdict::Rotated;
                    r.actions = vec![ActionRecord {
                        action: Action::CreateKey,
                        result: Outcome::Done {
                            key_id: Some(format!("AKIANEW{:013}", index * users + u)),
                        },
                    }];
                }
                2 => {
                    r.verdict = Verdict::Cleaned;
                    r.actions = vec![ActionRecord {
                        action: Action::Delete { key_id: old },
                        result: Outcome::Done { key_id: None },
                    }];
                }
                _ => {}
            }
            if u % 50 == 49 {
                r.verdict = Verdict::Failed;
                r.error = Some("CreateAccessKey failed: Throttling: Rate exceeded".into());
            }
            r
        })
        .collect();
    AccountResult {
        v: VERSION,
        run_id: run_id.into(),
        account_id: account.into(),
        token: Token::stored(),
        part: 1,
        parts: 1,
        account_alias: Some(format!("alias-{account}")),
        status: AccountStatus::Partial,
        error: None,
        dry_run: false,
        as_of: now,
        started_at: now,
        finished_at: now + Duration::minutes(1),
        scan_mode: ScanMode::CredentialReport,
        api_calls: [("iam:GetAccountAuthorizationDetails".to_string(), 1)]
            .into_iter()
            .collect(),
        users,
        sealed: Vec::new(),
    }
}

/// Writes a run of `accounts` x `users` as dispatch and intake would.
async fn seed_run(store: &RunStore, accounts: usize, users: usize) -> Result<String> {
    let now = OffsetDateTime::now_utc();
    let run_id = format!("bench-finalize-{accounts}x{users}");
    let ids: Vec<String> = (0..accounts)
        .map(|i| format!("{:012}", 200_000_000_000_u64 + i as u64))
        .collect();
    let manifest = RunManifest {
        v: VERSION,
        run_id: run_id.clone(),
        created_at: now,
        deadline: now + Duration::hours(1),
        policy: Default::default(),
        dry_run: false,
        mode: JobMode::Scheduled,
        accounts: ids
            .iter()
            .map(|id| ManifestAccount {
                account_id: id.clone(),
                name: format!("bench {id}"),
                token_sha256: "00".repeat(32),
                dispatch: Dispatch::Sent,
            })
            .collect(),
        skipped: Vec::new(),
    };
    store
        .put(
            &store::manifest_key(&run_id),
            encode(&manifest),
            "application/json",
        )
        .await?;
    for (i, id) in ids.iter().enumerate() {
        let r = result(&run_id, i, id, users, now);
        let attempt = r.started_at.unix_timestamp_nanos().to_string();
        store
            .put(
                &store::part_key(&run_id, id, &attempt, 1, 1),
                encode(&r),
                "application/json",
            )
            .await?;
    }
    Ok(run_id)
}

async fn size_of(store: &RunStore, key: &str) -> u64 {
    store
        .get(key)
        .await
        .ok()
        .flatten()
        .map_or(0, |b| b.len() as u64)
}

async fn one(accounts: usize, users: usize) -> Result<Row> {
    let Deployed { emu, cfg, sdk, .. } = deployed_org().await?;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let store = RunStore::new(s3, cfg.coordinator.report_bucket.clone());
    let run_id = seed_run(&store, accounts, users).await?;
    let finalized = finalize_in_child(&cfg, &run_id)?;
    let sizes = Sizes::of(&store, &run_id).await?;
    let row = Row {
        accounts,
        users,
        seconds: finalized.seconds,
        peak_mib: finalized.peak_mib,
        json_bytes: sizes.json,
        csv_bytes: sizes.csv,
        jsonl_bytes: sizes.jsonl,
        html_bytes: sizes.html,
        pages: sizes.pages,
    };
    drop(emu);
    Ok(row)
}

/// How one finalize went, as its process reported it.
pub struct Finalized {
    pub seconds: f64,
    pub peak_mib: f64,
}

/// Finalizes `run_id` in a process of its own (`keyfleet bench-finalize`),
/// as the coordinator Lambda would: its peak memory is the coordinator's.
pub fn finalize_in_child(cfg: &Config, run_id: &str) -> Result<Finalized> {
    let config = std::env::temp_dir().join(format!(
        "keyfleet-bench-finalize-{}-{run_id}.toml",
        std::process::id()
    ));
    std::fs::write(&config, toml::to_string(cfg)?)?;
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("--config")
        .arg(&config)
        .args(["bench-finalize", run_id])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .context("running the finalize process")?;
    let _ = std::fs::remove_file(&config);
    if !out.status.success() {
        bail!(
            "finalize of {run_id} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("finalize answer: {}", String::from_utf8_lossy(&out.stdout)))?;
    Ok(Finalized {
        seconds: seen["seconds"].as_f64().unwrap_or(f64::NAN),
        peak_mib: seen["peak_mib"].as_f64().unwrap_or(f64::NAN),
    })
}

/// The sizes of a finalized run's report objects.
pub struct Sizes {
    /// The summary (schema 2: no users inline).
    pub json: u64,
    pub csv: u64,
    /// One line per user.
    pub jsonl: u64,
    /// The HTML page a person opens (the summary of a large run).
    pub html: u64,
    /// Account pages written beside it.
    pub pages: usize,
}

impl Sizes {
    /// The three report files' sizes, and the account pages counted with
    /// one listing.
    pub async fn of(store: &RunStore, run_id: &str) -> Result<Sizes> {
        let pages = store
            .list(&store::account_pages_prefix(run_id))
            .await?
            .len();
        Ok(Sizes {
            json: size_of(store, &store::report_key(run_id, "json")).await,
            csv: size_of(store, &store::report_key(run_id, "csv")).await,
            jsonl: size_of(store, &store::report_key(run_id, "jsonl")).await,
            html: size_of(store, &store::report_key(run_id, "html")).await,
            pages,
        })
    }
}

/// The child: finalizes `run_id` as the coordinator does and prints its
/// time and peak memory as JSON.
pub async fn child(cfg: &Config, path: &Path, run_id: &str) -> Result<()> {
    let sdk = crate::aws::sdk_config(cfg).await;
    let local = Local::connect(cfg, path, sdk).await?;
    let start = Instant::now();
    let report = local.coordinator.finalize(run_id).await?;
    let seconds = start.elapsed().as_secs_f64();
    if report.is_none() {
        bail!("run {run_id} was already finalized");
    }
    println!(
        "{}",
        serde_json::json!({"seconds": seconds, "peak_mib": peak_rss_mib()})
    );
    Ok(())
}

/// Parses `10x50,100x100` into sizes.
pub fn parse_sizes(s: &str) -> Result<Vec<(usize, usize)>> {
    s.split(',')
        .map(|one| {
            let (a, u) = one
                .split_once('x')
                .with_context(|| format!("`{one}` is not ACCOUNTSxUSERS"))?;
            Ok((a.trim().parse()?, u.trim().parse()?))
        })
        .collect()
}

pub async fn run(sizes: &[(usize, usize)]) -> Result<()> {
    println!(
        "{:>8} {:>6} {:>12} {:>16} {:>12} {:>11} {:>13} {:>14} {:>13}",
        "accounts",
        "users",
        "finalize (s)",
        "peak RSS (MiB)",
        "summary JSON (MB)",
        "CSV (MB)",
        "JSONL (MB)",
        "HTML page (KB)",
        "account pages"
    );
    for &(accounts, users) in sizes {
        let r = one(accounts, users).await?;
        println!(
            "{:>8} {:>6} {:>12.1} {:>16.0} {:>12.2} {:>11.1} {:>13.1} {:>14.0} {:>13}",
            r.accounts,
            r.users,
            r.seconds,
            r.peak_mib,
            r.json_bytes as f64 / 1e6,
            r.csv_bytes as f64 / 1e6,
            r.jsonl_bytes as f64 / 1e6,
            r.html_bytes as f64 / 1e3,
            r.pages
        );
    }
    Ok(())
}
