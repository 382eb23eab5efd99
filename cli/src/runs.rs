//! `keyfleet run`, `plan`, `rotate` and `reactivate`: each becomes one coordinator
//! [`Command`] (the manual event of the deployed coordinator), run on the
//! deployment (invoke the coordinator, follow the run to its report) or,
//! with `--local`, in this process. Then the report is printed and the
//! exit code says whether the run did what was asked: no silent success.
//! 0: every selected account reported cleanly; [`EXIT_UNSERVED`] (2): the
//! run finished but some accounts were not served cleanly ([`Unserved`]
//! names them); 1: any other error, including a run that failed as a whole
//! and an emergency rotation or reactivation that did not happen.

use crate::aws;
use crate::config::Config;
use crate::deployed::Deployment;
use crate::local::Local;
use anyhow::{bail, Result};
use keyfleet_protocol::command::Command;
use keyfleet_protocol::report::RunReport;
use keyfleet_protocol::{Action, Outcome, Verdict};
use keyfleet_reports::{outcome, render};
use std::path::Path;

/// Where a run happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The deployed coordinator and agents (the default).
    Deployed,
    /// This process (`--local`).
    Local,
}

impl Mode {
    pub fn from_flag(local: bool) -> Mode {
        if local {
            Mode::Local
        } else {
            Mode::Deployed
        }
    }
}

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Plan,
    Json,
}

/// Runs `cmd` in `mode` and returns its report and where the HTML is.
pub async fn execute(
    cfg: &Config,
    config_path: &Path,
    mode: Mode,
    cmd: &Command,
) -> Result<(RunReport, String)> {
    let sdk = aws::sdk_config(cfg).await;
    aws::require_credentials(&sdk).await?;
    match mode {
        Mode::Deployed => {
            let d = Deployment::new(cfg, &sdk);
            let report = d.run(cmd).await?;
            let url = d.reports().report_url(&report.run_id);
            Ok((report, url))
        }
        Mode::Local => {
            let local = Local::connect(cfg, config_path, sdk).await?;
            let report = local.run(cmd).await?;
            let url = local.coordinator.report_url(&report.run_id);
            Ok((report, url))
        }
    }
}

/// `run`, `plan`, `rotate`: execute, print, check.
pub async fn run(
    cfg: &Config,
    config_path: &Path,
    mode: Mode,
    cmd: Command,
    output: Output,
) -> Result<()> {
    let (report, url) = execute(cfg, config_path, mode, &cmd).await?;
    match output {
        Output::Json => println!("{}", String::from_utf8_lossy(&render::to_json(&report))),
        Output::Plan => print_plan(&report),
        Output::Table => println!("{}", render::to_table(&report)),
    }
    check_run(&report, &url)?;
    match &cmd {
        Command::Rotate { account, user, .. } => {
            check_user(&report, account, user, "emergency rotation")?
        }
        Command::Reactivate { account, user, .. } => {
            check_user(&report, account, user, "reactivation")?
        }
        _ => {}
    }
    check_served(&report, &url)
}

fn print_plan(report: &RunReport) {
    println!(
        "Plan for run {} (dry run: nothing was changed)",
        report.run_id
    );
    for a in &report.accounts {
        println!(
            "\naccount {} {} [{}]",
            a.account_id,
            a.name,
            a.state.as_str()
        );
        for u in &a.users {
            let actions: Vec<String> = u
                .actions
                .iter()
                .map(|r| {
                    let what = match &r.action {
                        Action::CreateKey => "create new key".to_string(),
                        Action::Deactivate { key_id } => format!("deactivate {key_id}"),
                        Action::Delete { key_id } => format!("delete {key_id}"),
                        Action::Reactivate { key_id } => format!("reactivate {key_id}"),
                        Action::Notify { notice } => {
                            format!("notify {} ({})", notice.kind(), notice.key_id())
                        }
                    };
                    match &r.result {
                        Outcome::Planned => what,
                        other => format!("{what} [{other:?}]"),
                    }
                })
                .collect();
            println!(
                "  {:<32} {:<22} {}{}",
                u.user_name,
                u.verdict.as_str(),
                if actions.is_empty() {
                    "-".into()
                } else {
                    actions.join("; ")
                },
                u.note
                    .as_deref()
                    .map(|n| format!(" (note: {})", n.escape_debug()))
                    .unwrap_or_default()
            );
        }
    }
}

/// The exit code of a run that finished but left some selected accounts
/// unserved (see [`Unserved`]); 1 is every other error, 0 a run in which
/// every selected account reported cleanly.
pub const EXIT_UNSERVED: u8 = 2;

/// A run that finished but did not serve every selected account cleanly:
/// some failed, are missing (no result by the deadline, or a result the
/// coordinator refused), have no agent, could not be sent their job, or
/// reported some users failed (`partial`). The report names them; so does
/// this error, and the exit code ([`EXIT_UNSERVED`]) lets a scheduler tell
/// "partial" from "done" without reading the report.
#[derive(Debug, thiserror::Error)]
#[error("run {run_id} left {} of {total} selected accounts not served cleanly: {}; report: {report_url}", .accounts.len(), list(.accounts))]
pub struct Unserved {
    pub run_id: String,
    pub total: usize,
    /// (account id, state) of each account not served cleanly.
    pub accounts: Vec<(String, String)>,
    pub report_url: String,
}

/// At most this many accounts are named; the report has them all.
const NAMED: usize = 20;

fn list(accounts: &[(String, String)]) -> String {
    let mut named: Vec<String> = accounts
        .iter()
        .take(NAMED)
        .map(|(a, state)| format!("{a} {state}"))
        .collect();
    if accounts.len() > NAMED {
        named.push(format!("and {} more", accounts.len() - NAMED));
    }
    named.join(", ")
}

/// No silent success: a run that failed as a whole (no account selected,
/// or every selected account failed or is missing) is an error, after its
/// report was printed.
fn check_run(report: &RunReport, report_url: &str) -> Result<()> {
    if let Some(why) = outcome::describe(report) {
        bail!("run {} failed: {why}; report: {report_url}", report.run_id);
    }
    Ok(())
}

/// Every selected account reported cleanly, or [`Unserved`] names those
/// that did not.
fn check_served(report: &RunReport, report_url: &str) -> Result<()> {
    let outcome::Served::Unserved { accounts } = outcome::served(report) else {
        return Ok(());
    };
    Err(Unserved {
        run_id: report.run_id.clone(),
        total: report.accounts.len(),
        accounts,
        report_url: report_url.to_string(),
    }
    .into())
}

/// An emergency rotation or a reactivation (`what`) succeeded only if the
/// agent reported the user and did not fail it; otherwise its reason is the
/// error.
fn check_user(report: &RunReport, account: &str, user: &str, what: &str) -> Result<()> {
    let reported = report.accounts.iter().find(|a| a.account_id == account);
    let Some(u) = reported.and_then(|a| a.users.iter().find(|u| u.user_name == user)) else {
        let why = reported
            .and_then(|a| a.error.as_deref())
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        bail!("{what} of `{user}` in {account}: the agent did not report the user{why}");
    };
    let mut errors: Vec<String> = u.error.iter().cloned().collect();
    for r in &u.actions {
        if let Outcome::Failed { error } = &r.result {
            if !errors.iter().any(|e| e.contains(error.as_str())) {
                errors.push(format!("{}: {error}", r.action.kind()));
            }
        }
    }
    if u.verdict == Verdict::Failed || !errors.is_empty() {
        bail!(
            "{what} of `{user}` in {account} failed: {}",
            if errors.is_empty() {
                "the agent reported the user as failed".to_string()
            } else {
                errors.join("; ")
            }
        );
    }
    Ok(())
}
