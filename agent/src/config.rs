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
    lookup_var(&|n| std::env::var(n).ok(), name)
}

fn lookup_var(
    env: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<String, ConfigError> {
    env(name)
        .filter(|v| !v.trim().is_empty())
        .ok_or(ConfigError::Missing(name))
}

/// Reads `KEYFLEET_COORDINATOR_PUBLIC_KEY` (base64 X25519) and, if set,
/// checks it against `KEYFLEET_COORDINATOR_KEY_ID`, so a StackSet deployed
/// with a mismatched pair fails at start-up rather than sealing keys nobody
/// can open.
pub fn from_env() -> Result<AgentConfig, ConfigError> {
    from_lookup(&|n| std::env::var(n).ok())
}

/// [`from_env`] over any variable lookup (the tests use a map).
fn from_lookup(env: &dyn Fn(&str) -> Option<String>) -> Result<AgentConfig, ConfigError> {
    let var = |name| lookup_var(env, name);
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

#[cfg(test)]
mod tests {
    use super::*;
    use keyfleet_protocol::PrivateKey;
    use std::collections::HashMap;

    fn config(vars: &[(&str, String)]) -> Result<AgentConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        from_lookup(&|n| map.get(n).cloned())
    }

    #[test]
    fn a_public_key_whose_id_does_not_match_is_refused_at_start() {
        let key = PrivateKey::generate().public_key();
        let other = PrivateKey::generate().public_key();
        let ok = config(&[
            ("KEYFLEET_COORDINATOR_PUBLIC_KEY", key.to_base64()),
            ("KEYFLEET_COORDINATOR_KEY_ID", key.key_id.clone()),
        ])
        .expect("a matching pair");
        assert_eq!(ok.coordinator_key.key_id, key.key_id);
        match config(&[
            ("KEYFLEET_COORDINATOR_PUBLIC_KEY", key.to_base64()),
            ("KEYFLEET_COORDINATOR_KEY_ID", other.key_id.clone()),
        ]) {
            Err(ConfigError::Invalid { name, reason }) => {
                assert_eq!(name, "KEYFLEET_COORDINATOR_KEY_ID");
                assert!(reason.contains(&other.key_id) && reason.contains(&key.key_id));
            }
            other => panic!("a mismatched pair must be refused, got {other:?}"),
        }
        assert!(matches!(
            config(&[]),
            Err(ConfigError::Missing("KEYFLEET_COORDINATOR_PUBLIC_KEY"))
        ));
        assert!(matches!(
            config(&[("KEYFLEET_COORDINATOR_PUBLIC_KEY", "bm90IGEga2V5".into())]),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn the_results_queue_comes_from_the_environment_not_the_job() {
        let key = PrivateKey::generate().public_key();
        let configured = "https://sqs.us-east-1.amazonaws.com/111111111111/keyfleet-results";
        let cfg = config(&[
            ("KEYFLEET_COORDINATOR_PUBLIC_KEY", key.to_base64()),
            ("KEYFLEET_RESULTS_QUEUE_URL", configured.into()),
        ])
        .expect("config");
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let agent = crate::Agent::new(crate::AgentClients::new(&sdk), cfg, "222222222222");
        let forged = "https://sqs.us-east-1.amazonaws.com/999999999999/attacker";
        assert_eq!(agent.results_queue(forged), configured);
    }
}
