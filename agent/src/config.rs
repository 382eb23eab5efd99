//! Agent configuration from the Lambda environment.

use crate::run::AgentConfig;
use keyfleet_protocol::parts::DEFAULT_MAX_PART_BYTES;
use keyfleet_protocol::PublicKey;

/// A missing or malformed setting, named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

fn var(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or(ConfigError::Missing(name))
}

/// Reads `KEYFLEET_COORDINATOR_PUBLIC_KEY` (base64 X25519) and, if set,
/// checks it against `KEYFLEET_COORDINATOR_KEY_ID`, so a StackSet deployed
/// with a mismatched pair fails at start-up rather than sealing keys nobody
/// can open.
pub fn from_env() -> Result<AgentConfig, ConfigError> {
    let name = "KEYFLEET_COORDINATOR_PUBLIC_KEY";
    let key = PublicKey::from_base64(&var(name)?).map_err(|e| ConfigError::Invalid {
        name,
        reason: e.to_string(),
    })?;
    if let Ok(id) = var("KEYFLEET_COORDINATOR_KEY_ID") {
        if id != key.key_id {
            return Err(ConfigError::Invalid {
                name: "KEYFLEET_COORDINATOR_KEY_ID",
                reason: format!(
                    "`{id}` does not match the public key (its id is `{}`)",
                    key.key_id
                ),
            });
        }
    }
    Ok(AgentConfig {
        coordinator_key: key,
        max_part_bytes: DEFAULT_MAX_PART_BYTES,
        results_queue_url: var("KEYFLEET_RESULTS_QUEUE_URL").ok(),
    })
}

/// `KEYFLEET_TIME_MARGIN` (a duration such as `20s`; default
/// [`crate::budget::DEFAULT_MARGIN`]): how much of a Lambda invocation's
/// time is kept for finishing the users in flight and sending the result.
pub fn time_margin() -> Result<std::time::Duration, ConfigError> {
    match var("KEYFLEET_TIME_MARGIN") {
        Err(_) => Ok(crate::budget::DEFAULT_MARGIN),
        Ok(v) => v
            .parse::<keyfleet_protocol::Duration>()
            .map(|d| std::time::Duration::from_secs(d.as_secs()))
            .map_err(|e| ConfigError::Invalid {
                name: "KEYFLEET_TIME_MARGIN",
                reason: e.to_string(),
            }),
    }
}
