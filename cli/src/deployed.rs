//! The deployed system: `keyfleet run`, `plan` and `rotate` invoke the
//! coordinator Lambda with the same manual event an operator would send
//! (`{"action":"run",...}`, see [`keyfleet_protocol::command::Command`]),
//! then follow the run in the report bucket until it is finalized.
//!
//! Following never stops at a fixed time: a 500-account organization takes
//! as long as it takes. It stops when the run is finalized, or when it has
//! made no progress (no new result part stored) for `[coordinator]
//! stall_after` (default 40 minutes, longer than one retry of a failed
//! job), naming the accounts still missing;
//! the coordinator's hourly sweep finalizes such a run at its deadline.

use crate::config::Config;
use anyhow::{anyhow, bail, Context, Result};
use aws_config::SdkConfig;
use keyfleet_protocol::command::Command;
use keyfleet_protocol::invoke::{InvokeError, LambdaCoordinator};
use keyfleet_protocol::report::RunReport;
use keyfleet_reports::read::{Progress, Reports};
use keyfleet_reports::store::RunStore;
#[cfg(feature = "emulator")]
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How to reach a deployed coordinator: its function and its report bucket.
pub struct Deployment {
    coordinator: LambdaCoordinator,
    function: String,
    reports: Reports,
    stall_after: Duration,
}

/// What the coordinator answered to a command that starts a run.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Started {
    pub run_id: String,
    #[serde(default)]
    pub accounts: usize,
}

/// The coordinator ran the command and failed it: its own words. A cause
/// they show (access denied, a missing bucket) is the coordinator's, not
/// the operator's: the command line's advice says so (see `errors`).
#[derive(Debug)]
pub struct CoordinatorAnswered {
    pub function: String,
    pub message: String,
}

impl std::fmt::Display for CoordinatorAnswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CoordinatorAnswered {}

impl Deployment {
    /// One attempt per invocation ([`LambdaCoordinator`], the API's too):
    /// starting a run is not idempotent, and an SDK retry after a lost
    /// response (a dropped connection, a timeout, a 5xx) would start a
    /// second run.
    pub fn new(cfg: &Config, sdk: &SdkConfig) -> Deployment {
        Deployment {
            coordinator: LambdaCoordinator::new(sdk, cfg.coordinator.function.clone()),
            function: cfg.coordinator.function.clone(),
            reports: reports(cfg, sdk),
            stall_after: cfg.coordinator.stall_after.to_time().unsigned_abs(),
        }
    }

    pub fn reports(&self) -> &Reports {
        &self.reports
    }

    /// Invokes the coordinator with `cmd` and returns its answer.
    pub async fn invoke(&self, cmd: &Command) -> Result<serde_json::Value> {
        self.coordinator.invoke(cmd).await.map_err(|e| match e {
            InvokeError::NotFound(function) => anyhow!(
                "the coordinator function `{function}` does not exist here: deploy keyfleet with Terraform \
                 (terraform/README.md), run `keyfleet bootstrap` on an emulator, or use --local to \
                 run without the deployment"
            ),
            // Sent, but what happened is not known.
            InvokeError::NoAnswer { function, error } => anyhow!(
                "invoking the coordinator `{function}`: no answer ({error}); it may have started a run all the \
                 same, so it is not invoked again: look for the run with `keyfleet report` before \
                 starting another"
            ),
            InvokeError::Failed { function, error } => {
                anyhow!("invoking the coordinator `{function}`: {error}")
            }
            // The coordinator's errors say what is wrong (a run that
            // selected no account names the report); the Runtime's say
            // that the function itself broke.
            InvokeError::Function { kind, message }
                if kind.starts_with("Runtime.") || kind.starts_with("Sandbox.") =>
            {
                anyhow!(
                    "the coordinator function `{}` failed ({kind}): {message}",
                    self.function
                )
            }
            InvokeError::Function { message, .. } => anyhow::Error::new(CoordinatorAnswered {
                function: self.function.clone(),
                message,
            }),
            InvokeError::Answer(text) => {
                anyhow!("the coordinator answered with something that is not JSON: {text}")
            }
        })
    }

    /// Starts a run with `cmd` and follows it to its report.
    pub async fn run(&self, cmd: &Command) -> Result<RunReport> {
        let answer = self.invoke(cmd).await?;
        let started: Started = serde_json::from_value(answer.clone())
            .with_context(|| format!("the coordinator's answer names no run: {answer}"))?;
        tracing::info!(run_id = %started.run_id, accounts = started.accounts, "run started");
        self.follow(&started.run_id).await
    }

    /// Waits until a run other than `known` appears (one a schedule
    /// started), and returns its id.
    #[cfg(feature = "emulator")]
    pub async fn next_run(&self, known: &BTreeSet<String>) -> Result<String> {
        let since = Instant::now();
        let mut pause = Pause::new();
        loop {
            let ids = self.reports.run_ids().await?;
            if let Some(id) = ids.into_iter().find(|id| !known.contains(id)) {
                return Ok(id);
            }
            if since.elapsed() > self.stall_after {
                bail!("no run started within {}s", self.stall_after.as_secs());
            }
            pause.wait().await;
        }
    }

    /// Follows a run until it is finalized (see the module doc).
    pub async fn follow(&self, run_id: &str) -> Result<RunReport> {
        let mut last: Option<Progress> = None;
        let mut moved = Instant::now();
        let mut pause = Pause::new();
        let bar = Bar::new();
        loop {
            let now = self
                .reports
                .progress(run_id)
                .await?
                .ok_or_else(|| anyhow!("run {run_id} has no manifest in the report bucket"))?;
            bar.show(&now);
            if now.finalized {
                bar.clear();
                return self.reports.report(run_id).await?.ok_or_else(|| {
                    anyhow!("run {run_id} is finalized but its report is unreadable")
                });
            }
            if last.as_ref().is_none_or(|l| l.parts != now.parts) {
                moved = Instant::now();
                pause = Pause::new();
            } else if moved.elapsed() > self.stall_after {
                bar.clear();
                let missing = now.missing();
                bail!(
                    "run {run_id} made no progress for {}s: {} of {} accounts reported, waiting for {}; \
                     the coordinator's sweep finalizes it at its deadline ({}); read it then with \
                     `keyfleet report --run {run_id}`",
                    self.stall_after.as_secs(),
                    now.reported.len(),
                    now.expected.len(),
                    missing.join(", "),
                    now.deadline
                );
            }
            last = Some(now);
            pause.wait().await;
        }
    }
}

/// The report bucket's read side, as the operator sees it.
pub fn reports(cfg: &Config, sdk: &SdkConfig) -> Reports {
    Reports::new(RunStore::new(
        crate::aws::s3_client(cfg, sdk),
        cfg.coordinator.report_bucket.clone(),
    ))
}

/// Between two looks at the bucket: short at first, longer while nothing
/// moves (at most 2 s).
struct Pause(Duration);

impl Pause {
    fn new() -> Pause {
        Pause(Duration::from_millis(100))
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
}

/// Accounts reported, on stderr when it is a terminal.
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn new() -> Bar {
        Bar(crate::progress::bar(0, "accounts reported"))
    }

    fn show(&self, p: &Progress) {
        if let Some(b) = &self.0 {
            b.set_length(p.expected.len() as u64);
            b.set_position(p.reported.len() as u64);
        }
    }

    fn clear(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}
