//! `keyfleet doctor`: reads the deployment the configuration names and
//! says, check by check, what would break a run, with the fix. Read-only:
//! it changes nothing anywhere.
//!
//! Each check prints `PASS`, `WARN` or `FAIL`, what it saw, and for a
//! warning or a failure the exact fix (a command, a Terraform variable, a
//! console page). `--json` prints the same as a JSON array. The exit code
//! is 0 when nothing failed (warnings allowed), [`EXIT_FAILED`] when a
//! check failed, 1 when doctor itself could not run.
//!
//! What the deployment is comes from the coordinator function: its
//! environment names the results queue, the report bucket, the alerts
//! topic, the sender, the org reader role and the key ring, exactly as the
//! function will use them; `keyfleet.toml` only names the function (and
//! the StackSet, the role to reach member accounts). The checks, by module:
//! - [`central`]: who am I; the org reader role; the coordinator function
//!   (exists, its environment parses, reserved concurrency above the
//!   results mapping's maximum); its schedules; its failed invocations of
//!   the last day (its log's `ERROR` lines: CloudWatch's metrics speak a
//!   protocol the emulator does not, and the log also says why);
//! - [`resources`]: the results queue (its DLQ, its policy admitting only
//!   the organization's `keyfleet-agent*` roles), dead letters waiting;
//!   the report bucket (encryption, TLS only, public access blocked); SES
//!   (sender verified, production access, the day's quota against the
//!   last run's mail, the configuration set); the alerts topic's
//!   confirmed subscriptions;
//! - [`fleet`]: the agent StackSet (auto-deployment, an instance CURRENT
//!   in every account a run serves, the agents' key in the ring) and, per
//!   account, the jobs queue (only the coordinator may send) and the agent
//!   function with the StackSet's settings (the key it seals to, the
//!   results queue it sends to).
//!
//! Reading is all it does: the one request that touches data is a peek at
//! dead letters (visibility 0) to tell their age.

mod central;
mod fleet;
mod resources;

use crate::config::Config;
use anyhow::Result;
use aws_config::SdkConfig;
use serde::Serialize;

/// The exit code of a doctor run in which a check failed.
pub const EXIT_FAILED: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// One check's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    /// What it saw.
    pub saw: String,
    /// What to do, for a warning or a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(name: &'static str, saw: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Pass,
            saw: saw.into(),
            fix: None,
        }
    }

    pub fn warn(name: &'static str, saw: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Warn,
            saw: saw.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn fail(name: &'static str, saw: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Fail,
            saw: saw.into(),
            fix: Some(fix.into()),
        }
    }

    /// A check that could not look: the AWS error, and the advice for its
    /// cause (see `errors`).
    /// A refusal to look (access denied) is a warning: doctor runs as
    /// whoever the operator is, and what it may not read it cannot judge.
    pub fn error(name: &'static str, what: &str, error: &str) -> Check {
        let saw = format!("{what}: {error}");
        let cause = crate::errors::cause_of(&saw);
        let fix = crate::errors::advice(cause).unwrap_or_else(|| {
            "Run `keyfleet doctor` again; if it persists, look at the error above.".into()
        });
        if cause == crate::errors::Cause::AccessDenied {
            return Check::warn(name, format!("not checked: {saw}"), fix);
        }
        Check::fail(name, saw, fix)
    }
}

/// A doctor run in which checks failed: the exit code says so.
#[derive(Debug, thiserror::Error)]
#[error("{0} of the checks failed")]
pub struct ChecksFailed(pub usize);

/// What the checks share: the SDK configuration of the operator's
/// account, the configuration, and what the early checks learned.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub sdk: &'a SdkConfig,
    /// How the StackSet is read: as its owner (`None`, `SELF`), or as a
    /// delegated administrator (`DELEGATED_ADMIN`).
    pub call_as: Option<aws_sdk_cloudformation::types::CallAs>,
}

/// `keyfleet doctor [--json] [--call-as SELF|DELEGATED_ADMIN]`.
pub async fn run(cfg: &Config, json: bool, call_as: Option<&str>) -> Result<()> {
    let sdk = crate::aws::sdk_config(cfg).await;
    let call_as = call_as.map(aws_sdk_cloudformation::types::CallAs::from);
    let ctx = Ctx {
        cfg,
        sdk: &sdk,
        call_as,
    };
    let mut checks = Vec::new();
    let identity = central::identity(&ctx).await;
    let stop = identity.status == Status::Fail;
    checks.push(identity);
    if !stop {
        let deployed = central::coordinator(&ctx, &mut checks).await;
        let org = central::organization(&ctx, deployed.as_ref(), &mut checks).await;
        if let Some(d) = &deployed {
            central::schedules(&ctx, d, &mut checks).await;
            central::recent_errors(&ctx, d, &mut checks).await;
            resources::results_queue(&ctx, d, org.as_ref(), &mut checks).await;
            resources::bucket(&ctx, d, &mut checks).await;
            resources::mail(&ctx, d, &mut checks).await;
            resources::alerts(&ctx, d, &mut checks).await;
            let served = fleet::served(d, org.as_ref()).await;
            let key_id = fleet::stack_set(&ctx, d, &served, &mut checks).await;
            fleet::accounts(&ctx, d, &served, key_id.as_deref(), &mut checks).await;
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print!("{}", table(&checks));
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if failed > 0 {
        return Err(ChecksFailed(failed).into());
    }
    Ok(())
}

/// The checks as lines: `PASS  name  what it saw`, and the fix under a
/// warning or a failure.
pub fn table(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let status = match c.status {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        out.push_str(&format!("{status}  {:<width$}  {}\n", c.name, c.saw));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("      {:<width$}  fix: {fix}\n", ""));
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    out.push_str(&format!(
        "\n{} checks: {} passed, {warned} warnings, {failed} failed\n",
        checks.len(),
        checks.len() - failed - warned
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_each_fix_under_its_check_and_counts() {
        let checks = vec![
            Check::pass("identity", "arn:aws:iam::1:user/ops"),
            Check::fail(
                "schedules",
                "keyfleet-sweep is DISABLED",
                "aws events enable-rule --name keyfleet-sweep",
            ),
            Check::warn("SES account", "in the sandbox", "request production access"),
        ];
        let t = table(&checks);
        let lines: Vec<&str> = t.lines().collect();
        // Names padded to the longest ("SES account", 11 characters).
        assert_eq!(lines[0], "PASS  identity     arn:aws:iam::1:user/ops");
        assert_eq!(lines[1], "FAIL  schedules    keyfleet-sweep is DISABLED");
        assert_eq!(
            lines[2],
            format!(
                "{}fix: aws events enable-rule --name keyfleet-sweep",
                " ".repeat(19)
            )
        );
        assert!(
            t.ends_with("3 checks: 1 passed, 1 warnings, 1 failed\n"),
            "{t}"
        );
        let json: serde_json::Value = serde_json::to_value(&checks).unwrap();
        assert_eq!(json[1]["status"], "FAIL");
        assert!(json[0].get("fix").is_none());
    }
}
