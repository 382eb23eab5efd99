//! Coordinator configuration from the Lambda environment (set by the
//! Terraform module; see `terraform/modules/coordinator`).

use crate::service::CoordinatorConfig;
use keyfleet_protocol::Policy;

/// A missing or malformed setting, named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Where the settings come from: the process environment in the Lambda,
/// the deployed function's environment for `keyfleet doctor`.
type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

fn var(vars: Vars<'_>, name: &'static str) -> Result<String, ConfigError> {
    vars(name)
        .filter(|v| !v.trim().is_empty())
        .ok_or(ConfigError::Missing(name))
}

fn list(vars: Vars<'_>, name: &'static str) -> Vec<String> {
    vars(name)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// How long agents have to answer when `KEYFLEET_DEADLINE` is not set.
pub const DEFAULT_DEADLINE: time::Duration = time::Duration::hours(2);

/// How many times an account's unsent owner mail is tried (intake, then
/// each sweep) before the security team is alerted, when
/// `KEYFLEET_MAIL_ATTEMPTS` is not set: a day of hourly sweeps.
pub const DEFAULT_MAIL_ATTEMPTS: u32 = 24;

/// The largest CSV report the summary email attaches (7 MB; larger ones
/// are linked): SES sends up to 40 MB, but mail servers often refuse
/// messages over 10 to 25 MB, and base64 adds a third, so 7 MB of CSV keeps
/// the email under the smallest common limit. At 500 accounts x 100 users
/// the CSV is 8 to 12 MB, and is linked. `KEYFLEET_SUMMARY_ATTACH_MAX_BYTES`.
pub const DEFAULT_SUMMARY_ATTACH_MAX_BYTES: usize = 7_000_000;

/// Reads the configuration the Terraform module (or `keyfleet bootstrap`)
/// sets; `KEYFLEET_DEADLINE` (e.g. `2h`) is how long a run waits for its
/// agents before the sweep finalizes it without them.
pub fn from_env() -> Result<CoordinatorConfig, ConfigError> {
    from_vars(&|name| std::env::var(name).ok())
}

/// [`from_env`], the variables read through `vars` (a function's
/// environment as Lambda's GetFunctionConfiguration gives it).
pub fn from_vars(vars: Vars<'_>) -> Result<CoordinatorConfig, ConfigError> {
    let var = |name| var(vars, name);
    let list = |name| list(vars, name);
    let policy: Policy = match vars("KEYFLEET_POLICY") {
        Some(p) if !p.trim().is_empty() => {
            serde_json::from_str(&p).map_err(|e| ConfigError::Invalid {
                name: "KEYFLEET_POLICY",
                reason: e.to_string(),
            })?
        }
        _ => Policy::default(),
    };
    policy.validate().map_err(|e| ConfigError::Invalid {
        name: "KEYFLEET_POLICY",
        reason: e.to_string(),
    })?;
    Ok(CoordinatorConfig {
        region: var("AWS_REGION")?,
        report_bucket: var("KEYFLEET_REPORT_BUCKET")?,
        results_queue_url: var("KEYFLEET_RESULTS_QUEUE_URL")?,
        alerts_topic_arn: var("KEYFLEET_ALERTS_TOPIC_ARN").ok(),
        sender: var("KEYFLEET_SENDER")?,
        security_team: list("KEYFLEET_SECURITY_TEAM"),
        ses_configuration_set: var("KEYFLEET_SES_CONFIGURATION_SET").ok(),
        exclude_accounts: list("KEYFLEET_EXCLUDE_ACCOUNTS"),
        exclude_ous: list("KEYFLEET_EXCLUDE_OUS"),
        policy,
        jobs_queue_name: "keyfleet-jobs".into(),
        deadline: match var("KEYFLEET_DEADLINE") {
            Ok(d) => d
                .parse::<keyfleet_protocol::Duration>()
                .map_err(|e| ConfigError::Invalid {
                    name: "KEYFLEET_DEADLINE",
                    reason: e.to_string(),
                })?
                .to_time(),
            Err(_) => DEFAULT_DEADLINE,
        },
        mail_attempts: at_least_one(vars, "KEYFLEET_MAIL_ATTEMPTS", DEFAULT_MAIL_ATTEMPTS)?,
        summary_attach_max_bytes: match var("KEYFLEET_SUMMARY_ATTACH_MAX_BYTES") {
            Ok(n) => n
                .trim()
                .parse::<usize>()
                .map_err(|_| ConfigError::Invalid {
                    name: "KEYFLEET_SUMMARY_ATTACH_MAX_BYTES",
                    reason: format!("`{n}` is not a whole number of bytes"),
                })?,
            Err(_) => DEFAULT_SUMMARY_ATTACH_MAX_BYTES,
        },
        mail_senders: at_least_one(vars, "KEYFLEET_MAIL_SENDERS", 1)?,
    })
}

/// A whole number of at least 1 from the environment variable `name`;
/// `default` when it is not set.
fn at_least_one(vars: Vars<'_>, name: &'static str, default: u32) -> Result<u32, ConfigError> {
    match var(vars, name) {
        Ok(n) => n
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or(ConfigError::Invalid {
                name,
                reason: format!("`{n}` is not a whole number of at least 1"),
            }),
        Err(_) => Ok(default),
    }
}
