//! Messages between coordinator and agents, and the run manifest.
//!
//! Every message is JSON with `"v": 1`. Decoding goes through
//! [`crate::decode`], which checks the version first and names the field of
//! any error, then [`Validate`] checks what serde cannot (account id shape,
//! part numbers, policy order).

use crate::plan::{ActionRecord, KeyState, Verdict};
use crate::policy::Policy;
use crate::seal::SealedCredential;
use crate::ValidationError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use time::OffsetDateTime;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// A per-job capability: 128 random bits, hex. Sent to the agent inside the
/// job (the jobs queue only accepts the coordinator role and is encrypted at
/// rest) and echoed in the result; the manifest keeps only its SHA-256.
/// `Debug` never prints it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(pub String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A fresh random token from the OS generator.
    pub fn generate() -> Token {
        use rand::TryRngCore;
        let mut b = [0u8; 16];
        rand::rngs::OsRng
            .try_fill_bytes(&mut b)
            .expect("the OS random generator is available");
        Token(hex::encode(b))
    }
    /// Hex SHA-256, what the manifest stores.
    pub fn sha256(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(self.0.as_bytes()))
    }
    /// Constant-time comparison against a stored hash.
    pub fn matches_hash(&self, hash: &str) -> bool {
        let ours = self.sha256();
        ours.len() == hash.len()
            && ours
                .bytes()
                .zip(hash.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// What a job asks the agent to do.
///
/// Unknown fields are rejected: an agent that does not know a field (say,
/// `key_id`) refuses the job rather than doing something else than asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum JobMode {
    /// Apply the rules to every user.
    #[default]
    Scheduled,
    /// Emergency rotation of one user: a new key now. The old key stays
    /// active unless `deactivate_old` (default false everywhere: CLI,
    /// Lambda manual event, API). A user with two active keys needs
    /// `key_id`, the key to replace; the other is never touched.
    Rotate {
        user: String,
        #[serde(default)]
        deactivate_old: bool,
        /// The key to replace. Left out of the message when not given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_id: Option<String>,
    },
}

/// One account's job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub v: u32,
    pub run_id: String,
    pub account_id: String,
    pub token: Token,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    pub policy: Policy,
    #[serde(default)]
    pub dry_run: bool,
    /// Evaluate the rules as of this instant instead of the agent's clock
    /// (`keyfleet plan --as-of`). Only allowed with `dry_run`.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub as_of: Option<OffsetDateTime>,
    #[serde(default)]
    pub mode: JobMode,
    pub results_queue_url: String,
}

/// How the agent read the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScanMode {
    /// Credential report + authorization details (few calls).
    #[default]
    CredentialReport,
    /// ListUsers + ListUserTags + ListAccessKeys (report unavailable).
    PerUser,
}

/// Overall state of an account's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Every user processed.
    Ok,
    /// Some users failed; the others were processed.
    Partial,
    /// The account could not be processed at all (see `error`).
    Failed,
}

/// One user's line in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserReport {
    pub user_name: String,
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub email: Option<String>,
    pub verdict: Verdict,
    /// Keys before the run, oldest first.
    pub keys: Vec<KeyState>,
    #[serde(default)]
    pub actions: Vec<ActionRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the verdict is what it is, when a person must act: the reason a
    /// user is unreachable, or a key keyfleet found but did not create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn default_path() -> String {
    "/".into()
}

/// An agent's answer to a job, possibly one part of several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountResult {
    pub v: u32,
    pub run_id: String,
    pub account_id: String,
    pub token: Token,
    /// 1-based part number and part count (1/1 when not split).
    pub part: u32,
    pub parts: u32,
    #[serde(default)]
    pub account_alias: Option<String>,
    pub status: AccountStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub as_of: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    #[serde(default)]
    pub scan_mode: ScanMode,
    /// IAM/SM/SQS calls made, by operation name.
    #[serde(default)]
    pub api_calls: BTreeMap<String, u64>,
    #[serde(default)]
    pub users: Vec<UserReport>,
    /// New credentials, sealed to the coordinator's key.
    #[serde(default)]
    pub sealed: Vec<SealedCredential>,
}

impl AccountResult {
    /// Sum of all API calls.
    pub fn total_calls(&self) -> u64 {
        self.api_calls.values().sum()
    }
    /// Sum of IAM calls (operation names prefixed `iam:`).
    pub fn iam_calls(&self) -> u64 {
        self.api_calls
            .iter()
            .filter(|(k, _)| k.starts_with("iam:"))
            .map(|(_, v)| v)
            .sum()
    }
}

/// How a job was (or was not) handed to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Dispatch {
    Sent,
    /// The account has no `keyfleet-jobs` queue: agent not deployed.
    NoAgent,
    Failed {
        error: String,
    },
}

/// An account the run expects a result from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestAccount {
    pub account_id: String,
    #[serde(default)]
    pub name: String,
    /// Hex SHA-256 of the job token.
    pub token_sha256: String,
    pub dispatch: Dispatch,
}

/// An account left out of the run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedAccount {
    pub account_id: String,
    #[serde(default)]
    pub name: String,
    pub reason: String,
}

/// `runs/<run_id>/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunManifest {
    pub v: u32,
    pub run_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    pub policy: Policy,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub mode: JobMode,
    pub accounts: Vec<ManifestAccount>,
    #[serde(default)]
    pub skipped: Vec<SkippedAccount>,
}

/// Checks serde cannot express.
pub trait Validate {
    fn validate(&self) -> Result<(), ValidationError>;
}

/// 12 ASCII digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Access key ids: 16-128 of `[A-Z0-9]` (AWS's `AKIA...`).
pub fn is_access_key_id(s: &str) -> bool {
    (16..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Run ids are used in S3 keys: `[A-Za-z0-9-_]{1,64}`.
pub fn is_run_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// IAM user names: 1-64 of `[\w+=,.@-]`.
pub fn is_user_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@-_".contains(&b))
}

fn check(ok: bool, field: &'static str, reason: impl Into<String>) -> Result<(), ValidationError> {
    if ok {
        Ok(())
    } else {
        Err(ValidationError {
            field,
            reason: reason.into(),
        })
    }
}

fn check_common(
    v: u32,
    run_id: &str,
    account_id: &str,
    token: &Token,
) -> Result<(), ValidationError> {
    check(v == VERSION, "v", format!("must be {VERSION}"))?;
    check(is_run_id(run_id), "run_id", "must be 1-64 of [A-Za-z0-9-_]")?;
    check(is_account_id(account_id), "account_id", "must be 12 digits")?;
    check(
        token.0.len() == 32 && token.0.bytes().all(|b| b.is_ascii_hexdigit()),
        "token",
        "must be 32 hex characters",
    )
}

impl Validate for Job {
    fn validate(&self) -> Result<(), ValidationError> {
        check_common(self.v, &self.run_id, &self.account_id, &self.token)?;
        self.policy.validate().map_err(|e| ValidationError {
            field: "policy",
            reason: e.to_string(),
        })?;
        check(
            self.as_of.is_none() || self.dry_run,
            "as_of",
            "only allowed with dry_run",
        )?;
        check(
            self.results_queue_url.starts_with("https://")
                || self.results_queue_url.starts_with("http://"),
            "results_queue_url",
            "must be an http(s) SQS queue URL",
        )?;
        if let JobMode::Rotate { user, key_id, .. } = &self.mode {
            check(is_user_name(user), "mode.user", "not a valid IAM user name")?;
            if let Some(k) = key_id {
                check(
                    is_access_key_id(k),
                    "mode.key_id",
                    "not an access key id (16-128 of [A-Z0-9])",
                )?;
            }
        }
        Ok(())
    }
}

impl Validate for AccountResult {
    fn validate(&self) -> Result<(), ValidationError> {
        check_common(self.v, &self.run_id, &self.account_id, &self.token)?;
        check(self.parts >= 1, "parts", "must be at least 1")?;
        check(
            self.part >= 1 && self.part <= self.parts,
            "part",
            format!("must be between 1 and parts ({})", self.parts),
        )?;
        for u in &self.users {
            check(
                is_user_name(&u.user_name),
                "users[].user_name",
                format!("`{}` is not a valid IAM user name", u.user_name),
            )?;
        }
        for s in &self.sealed {
            check(
                is_user_name(&s.user_name),
                "sealed[].user_name",
                format!("`{}` is not a valid IAM user name", s.user_name),
            )?;
        }
        Ok(())
    }
}

impl Validate for RunManifest {
    fn validate(&self) -> Result<(), ValidationError> {
        check(self.v == VERSION, "v", format!("must be {VERSION}"))?;
        check(
            is_run_id(&self.run_id),
            "run_id",
            "must be 1-64 of [A-Za-z0-9-_]",
        )?;
        for a in &self.accounts {
            check(
                is_account_id(&a.account_id),
                "accounts[].account_id",
                "must be 12 digits",
            )?;
        }
        Ok(())
    }
}
