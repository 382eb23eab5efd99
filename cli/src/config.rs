//! `keyfleet.toml`: the command line's configuration, with environment
//! overrides.
//!
//! Every key can be overridden by `KEYFLEET_<SECTION>_<KEY>` (for example
//! `KEYFLEET_POLICY_ROTATE_AFTER=10m`, `KEYFLEET_AWS_ENDPOINT_URL=...`;
//! lists are comma-separated). The file is parsed strictly: an unknown key
//! or a bad value is an error naming the key and its line, never a silent
//! default.

use keyfleet_protocol::{Delivery, Duration, Limit, Policy, TagMatch};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSection {
    pub region: String,
    /// An emulator or a VPC endpoint; unset = real AWS.
    pub endpoint_url: Option<String>,
}

impl Default for AwsSection {
    fn default() -> Self {
        AwsSection {
            region: "us-east-1".into(),
            endpoint_url: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    pub rotate_after: Duration,
    pub deactivate_after: Duration,
    pub delete_after: Duration,
    pub unused_delete_after: Duration,
    pub max_key_age: Limit,
    /// `Key=Value`.
    pub exempt_tag: String,
    pub email_tag: String,
    pub delivery: Delivery,
    pub cleanup: bool,
    /// Allow-list of owner email domains; empty = any deliverable address.
    pub owner_domains: Vec<String>,
    /// Deactivate a key past `max_key_age` without waiting for the notice
    /// period (off by default).
    pub deactivate_at_max_age_without_notice: bool,
    /// Alert a new key not delivered this long after it was received.
    pub undelivered_alert_after: keyfleet_protocol::Duration,
    /// Deactivate an old key at the next run once its replacement is used
    /// and it is not (cutover by evidence; on by default).
    pub cutover_on_use: bool,
}

impl Default for PolicySection {
    fn default() -> Self {
        let p = Policy::default();
        PolicySection {
            rotate_after: p.rotate_after,
            deactivate_after: p.deactivate_after,
            delete_after: p.delete_after,
            unused_delete_after: p.unused_delete_after,
            max_key_age: p.max_key_age,
            exempt_tag: format!("{}={}", p.exempt_tag.key, p.exempt_tag.value),
            email_tag: p.email_tag,
            delivery: p.delivery,
            cleanup: p.cleanup,
            owner_domains: p.owner_domains,
            deactivate_at_max_age_without_notice: p.deactivate_at_max_age_without_notice,
            undelivered_alert_after: p.undelivered_alert_after,
            cutover_on_use: p.cutover_on_use,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrgSection {
    pub exclude_accounts: Vec<String>,
    pub exclude_ous: Vec<String>,
    /// Role in the management account to list the organization with.
    pub org_reader_role: Option<String>,
    /// The `sts:ExternalId` that role's trust policy requires (the
    /// org-reader module's `external_id`): sent when assuming it, by
    /// `--local` runs and by the coordinator `keyfleet bootstrap` deploys,
    /// whose org reader's trust then requires it.
    pub org_reader_external_id: Option<String>,
    /// Role assumed in each member account by `--local` runs (default
    /// `OrganizationAccountAccessRole`).
    pub agent_role: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSection {
    pub sender: String,
    pub security_team: Vec<String>,
    pub configuration_set: Option<String>,
}

impl Default for MailSection {
    fn default() -> Self {
        MailSection {
            sender: "keyfleet@example.com".into(),
            security_team: vec!["security-team@example.com".into()],
            configuration_set: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorSection {
    /// The deployed coordinator Lambda (name or ARN) that `run`, `plan`
    /// and `rotate` invoke.
    pub function: String,
    pub report_bucket: String,
    pub results_queue: String,
    pub alerts_topic: String,
    pub private_key_secret: String,
    /// How long agents have before a run is finalized without them
    /// (`--local` runs, and the coordinator `keyfleet bootstrap` deploys).
    pub deadline: Duration,
    /// Following a deployed run gives up after this long without a new
    /// result (the run itself goes on; the sweep finalizes it). Longer
    /// than one retry of a failed job: the jobs queue's visibility
    /// timeout is six times the agent's timeout (30 minutes by default).
    pub stall_after: Duration,
    /// How many agents `--local` runs at once; the others' jobs wait,
    /// and a job is handed out (its deadline counted) only when an agent
    /// is free.
    #[serde(deserialize_with = "number")]
    pub local_agents: u32,
}

impl Default for CoordinatorSection {
    fn default() -> Self {
        CoordinatorSection {
            function: "keyfleet-coordinator".into(),
            report_bucket: "keyfleet-reports".into(),
            results_queue: "keyfleet-results".into(),
            alerts_topic: "keyfleet-alerts".into(),
            private_key_secret: "keyfleet-coordinator/private-key".into(),
            deadline: Duration::from_minutes(30),
            stall_after: Duration::from_minutes(40),
            local_agents: 32,
        }
    }
}

/// `keyfleet serve`: the security team's API and dashboard on a local port
/// (see `keyfleet_api`). It reads the report bucket and invokes the
/// coordinator function of `[coordinator]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Accepted API keys, hashes only: `[[api.keys]]` tables with `id`,
    /// `sha256` and `scopes` (`read`, `rotate`), as `keyfleet api-key new`
    /// prints them.
    pub keys: Vec<keyfleet_api::ApiKeyEntry>,
    /// A Secrets Manager secret holding more entries (the JSON list the
    /// deployed API reads), name or ARN.
    pub keys_secret: Option<String>,
    /// Origins (`https://host[:port]`) allowed to call the API from a
    /// browser script; empty: no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Requests per minute and key id, sustained.
    #[serde(deserialize_with = "number")]
    pub rate_limit_per_minute: u32,
    /// Requests a key may make at once on a full bucket.
    #[serde(deserialize_with = "number")]
    pub rate_limit_burst: u32,
    /// Serve under this role (the API's role, so that its policy is what
    /// allows each call); `--role-arn` overrides it.
    pub role_arn: Option<String>,
}

impl Default for ApiSection {
    fn default() -> Self {
        let limit = keyfleet_api::RateLimit::default();
        ApiSection {
            keys: Vec::new(),
            keys_secret: None,
            cors_origins: Vec::new(),
            rate_limit_per_minute: limit.per_minute,
            rate_limit_burst: limit.burst,
            role_arn: None,
        }
    }
}

/// A whole number from the file, or from an environment override (text).
fn number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Int(u32),
        Text(String),
    }
    match N::deserialize(d)? {
        N::Int(n) => Ok(n),
        N::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a whole number"))),
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub aws: AwsSection,
    pub policy: PolicySection,
    pub org: OrgSection,
    pub mail: MailSection,
    pub coordinator: CoordinatorSection,
    pub api: ApiSection,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {error}")]
    Parse {
        path: PathBuf,
        error: Box<toml::de::Error>,
    },
    #[error("environment variable {var}: {error}")]
    Env { var: String, error: String },
    #[error("{path}: policy.exempt_tag must be `Key=Value`, got `{value}`")]
    ExemptTag { path: PathBuf, value: String },
    #[error("{path}: {error}")]
    Policy { path: PathBuf, error: String },
    #[error("{path}: [api] {error}")]
    Api { path: PathBuf, error: String },
}

const SECTIONS: [&str; 6] = ["aws", "policy", "org", "mail", "coordinator", "api"];

impl Config {
    /// Loads `path`; a missing default file means all defaults, a missing
    /// file that was asked for explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => String::new(),
            Err(error) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    error,
                })
            }
        };
        Self::parse(&text, path, std::env::vars())
    }

    /// Parses file text, then applies `KEYFLEET_<SECTION>_<KEY>` overrides.
    pub fn parse(
        text: &str,
        path: &Path,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        // First pass on the text alone, so errors carry the file's lines.
        let _: Config = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            error: Box::new(error),
        })?;
        let mut table: toml::Table = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            error: Box::new(error),
        })?;
        let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("KEYFLEET_") else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            let Some(section) = SECTIONS.iter().find(|s| rest.starts_with(&format!("{s}_"))) else {
                continue;
            };
            let key = &rest[section.len() + 1..];
            let is_list = defaults
                .get(*section)
                .and_then(|s| s.get(key))
                .is_some_and(|v| v.is_array());
            let is_bool = defaults
                .get(*section)
                .and_then(|s| s.get(key))
                .is_some_and(|v| v.is_bool());
            let v = if is_list {
                toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_string()))
                        .collect(),
                )
            } else if is_bool {
                toml::Value::Boolean(value.parse().map_err(|_| ConfigError::Env {
                    var: var.clone(),
                    error: "expected true or false".into(),
                })?)
            } else {
                toml::Value::String(value.clone())
            };
            table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .map(|t| t.insert(key.to_string(), v));
            // Check each override as it is applied, to name the variable.
            toml::Value::Table(table.clone())
                .try_into::<Config>()
                .map_err(|e| ConfigError::Env {
                    var: var.clone(),
                    error: e.to_string(),
                })?;
        }
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Env {
                var: "KEYFLEET_*".into(),
                error: e.to_string(),
            })?;
        cfg.policy(path)?;
        cfg.api_keys(path)?;
        Ok(cfg)
    }

    /// The `[api]` keys, checked (ids, hashes, scopes, duplicates).
    pub fn api_keys(&self, path: &Path) -> Result<keyfleet_api::KeySet, ConfigError> {
        keyfleet_api::KeySet::new(self.api.keys.clone()).map_err(|e| ConfigError::Api {
            path: path.to_path_buf(),
            error: e.to_string(),
        })
    }

    /// The rotation policy, validated.
    pub fn policy(&self, path: &Path) -> Result<Policy, ConfigError> {
        let p = &self.policy;
        let (key, value) = p
            .exempt_tag
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| ConfigError::ExemptTag {
                path: path.to_path_buf(),
                value: p.exempt_tag.clone(),
            })?;
        let policy = Policy {
            rotate_after: p.rotate_after,
            deactivate_after: p.deactivate_after,
            delete_after: p.delete_after,
            unused_delete_after: p.unused_delete_after,
            max_key_age: p.max_key_age,
            exempt_tag: TagMatch {
                key: key.trim().into(),
                value: value.trim().into(),
            },
            email_tag: p.email_tag.clone(),
            delivery: p.delivery,
            cleanup: p.cleanup,
            owner_domains: p.owner_domains.clone(),
            deactivate_at_max_age_without_notice: p.deactivate_at_max_age_without_notice,
            undelivered_alert_after: p.undelivered_alert_after,
            cutover_on_use: p.cutover_on_use,
        };
        policy.validate().map_err(|e| ConfigError::Policy {
            path: path.to_path_buf(),
            error: e.to_string(),
        })?;
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::parse(
            text,
            Path::new("keyfleet.toml"),
            env.iter().map(|(a, b)| (a.to_string(), b.to_string())),
        )
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = parse("", &[]).unwrap();
        assert_eq!(c.policy(Path::new("x")).unwrap(), Policy::default());
        assert_eq!(c.aws.region, "us-east-1");
    }

    #[test]
    fn documented_keys_parse() {
        let c = parse(
            r#"
[policy]
rotate_after = "10m"
deactivate_after = "20m"
delete_after = "30m"
unused_delete_after = "25m"
max_key_age = "never"
exempt_tag = "Skip=yes"
email_tag = "Owner"
delivery = "both"
owner_domains = ["corp.example", "Example.ORG"]
cutover_on_use = false

[org]
exclude_accounts = ["111122223333"]
exclude_ous = ["ou-abcd-12345678"]
org_reader_role = "arn:aws:iam::111122223333:role/keyfleet-org-reader"
agent_role = "OrganizationAccountAccessRole"

[mail]
sender = "keyfleet@corp.example"
security_team = ["sec@corp.example"]

[aws]
region = "eu-west-1"
endpoint_url = "http://127.0.0.1:5000"
"#,
            &[],
        )
        .unwrap();
        let p = c.policy(Path::new("x")).unwrap();
        assert_eq!(p.rotate_after, Duration::from_minutes(10));
        assert_eq!(p.max_key_age, Limit::Never);
        assert_eq!(p.exempt_tag.key, "Skip");
        assert_eq!(p.delivery, Delivery::Both);
        assert_eq!(c.org.exclude_ous, ["ou-abcd-12345678"]);
        assert_eq!(p.owner_domains, ["corp.example", "Example.ORG"]);
        assert!(!p.cutover_on_use);
        let err = parse("[policy]\nowner_domains = [\"not a domain\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("owner_domains") && err.contains("not a domain"),
            "{err}"
        );
    }

    /// The configuration the README shows is one the command line takes.
    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("```toml\n")
            .expect("a TOML block in the README")
            + 8;
        let len = readme[start..].find("```").expect("the block ends");
        let c = parse(&readme[start..start + len], &[]).unwrap();
        assert_eq!(c.coordinator.function, "keyfleet-coordinator");
        assert_eq!(c.coordinator.stall_after, Duration::from_minutes(40));
    }

    #[test]
    fn the_api_section_takes_key_hashes_origins_and_limits() {
        let (_, entry) = keyfleet_api::keys::generate("sec-team", &[keyfleet_api::Scope::Read]);
        let c = parse(
            &format!(
                r#"
[api]
keys = [{{ id = "sec-team", sha256 = "{}", scopes = ["read"] }}]
cors_origins = ["https://sec.example.com"]
rate_limit_per_minute = 120
rate_limit_burst = 10
role_arn = "arn:aws:iam::111122223333:role/keyfleet-api"
"#,
                entry.sha256
            ),
            &[("KEYFLEET_API_RATE_LIMIT_BURST", "20")],
        )
        .unwrap();
        assert_eq!(c.api.keys, vec![entry.clone()]);
        assert_eq!(c.api.cors_origins, ["https://sec.example.com"]);
        assert_eq!(
            (c.api.rate_limit_per_minute, c.api.rate_limit_burst),
            (120, 20)
        );
        assert!(c.api.role_arn.is_some());
        let d = parse("", &[]).unwrap();
        assert!(d.api.keys.is_empty() && d.api.cors_origins.is_empty());
        // A key entry that cannot be used is refused when the file is read.
        let err = parse(
            "[api]\nkeys = [{ id = \"x\", sha256 = \"abc\", scopes = [\"read\"] }]\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("[api]") && err.contains("sha256"), "{err}");
        let err = parse("[api]\nkeys = [{ id = \"x\", key = \"kfk_...\" }]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("key"), "{err}");
        let err = parse("", &[("KEYFLEET_API_RATE_LIMIT_BURST", "lots")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("KEYFLEET_API_RATE_LIMIT_BURST"), "{err}");
    }

    #[test]
    fn bad_key_is_named_with_its_line() {
        let err = parse(
            "[policy]\nrotate_after = \"10m\"\nrotate_aftr = \"5m\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("rotate_aftr"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        let err = parse("[policy]\n\ndelete_after = \"ten days\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("ten days"), "{err}");
        let err = parse("[policy]\ndelete_after = \"1d\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("policy.delete_after"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file_and_names_bad_variables() {
        let c = parse(
            "[policy]\nrotate_after = \"70d\"\n",
            &[
                ("KEYFLEET_POLICY_ROTATE_AFTER", "75d"),
                (
                    "KEYFLEET_ORG_EXCLUDE_ACCOUNTS",
                    "111111111111, 222222222222",
                ),
                ("KEYFLEET_AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.policy.rotate_after, Duration::from_days(75));
        assert!(c.policy.cutover_on_use, "on unless said otherwise");
        assert_eq!(c.org.exclude_accounts.len(), 2);
        assert_eq!(c.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:1"));
        let err = parse("", &[("KEYFLEET_POLICY_DELETE_AFTER", "soon")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("KEYFLEET_POLICY_DELETE_AFTER"), "{err}");
    }

    /// Cutover by evidence is switched off from the file or the
    /// environment, the environment winning; a value that is not a boolean
    /// names the variable.
    #[test]
    fn cutover_on_use_is_switched_by_file_or_environment() {
        let policy = |text: &str, env: &[(&str, &str)]| {
            parse(text, env)
                .unwrap()
                .policy(Path::new("x"))
                .unwrap()
                .cutover_on_use
        };
        assert!(policy("", &[]));
        assert!(!policy("[policy]\ncutover_on_use = false\n", &[]));
        assert!(!policy("", &[("KEYFLEET_POLICY_CUTOVER_ON_USE", "false")]));
        assert!(policy(
            "[policy]\ncutover_on_use = false\n",
            &[("KEYFLEET_POLICY_CUTOVER_ON_USE", "true")]
        ));
        let err = parse("", &[("KEYFLEET_POLICY_CUTOVER_ON_USE", "no")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("KEYFLEET_POLICY_CUTOVER_ON_USE"), "{err}");
    }
}
