//! Messages between coordinator and agents, and the run manifest.
//!
//! Every message is JSON with `"v": 1`. Decoding goes through
//! [`crate::decode`], which checks the version first and names the field of
//! any error, then [`Validate`] checks what serde cannot (account id shape,
//! part numbers, policy order, bounds): see [`crate::validate`].

use crate::plan::{ActionRecord, KeyState, Verdict};
use crate::policy::Policy;
use crate::seal::SealedCredential;
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
    /// 32 hex characters, as [`Token::generate`] makes them.
    pub fn is_well_formed(&self) -> bool {
        self.0.len() == 32 && self.0.bytes().all(|b| b.is_ascii_hexdigit())
    }
    /// What a result carries once it is stored: all zeros. The token's one
    /// job, authenticating the message against the manifest's hash, is done
    /// by then, and a stored copy would let anyone who can read the results
    /// bucket forge results for the run.
    pub fn stored() -> Token {
        Token("0".repeat(32))
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
    /// Switch `key_id`, a key keyfleet deactivated and has not deleted, back
    /// to Active (an application broke). The agent records the
    /// reactivation in the protected per-user record first; the key then
    /// gets a fresh notice period before it is deactivated again, and the
    /// usual recovery window after that before it is deleted.
    Reactivate { user: String, key_id: String },
}

impl JobMode {
    /// The one user the job is about, for modes that name one.
    pub fn user(&self) -> Option<&str> {
        match self {
            JobMode::Scheduled => None,
            JobMode::Rotate { user, .. } | JobMode::Reactivate { user, .. } => Some(user),
        }
    }
}

/// How long after it is handed to an agent a job may still run: a guard
/// against stale redeliveries (a job redriven from a queue days later), not
/// against a slow run. The run's own deadline only decides when its report
/// is cut; a result after it is still taken in (late, alerted) and its
/// owners mailed, so nothing is lost by running a job after it.
pub const JOB_EXPIRY: time::Duration = time::Duration::days(1);

/// One account's job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub v: u32,
    pub run_id: String,
    pub account_id: String,
    pub token: Token,
    /// When the job was handed out: sent to the account's queue, or given
    /// to an in-process agent (`--local`, which hands a job out only when an
    /// agent is free).
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// After this (and the agent's clock-skew grace) the agent drops the
    /// job as stale: `issued_at` + the longer of [`JOB_EXPIRY`] and the
    /// run's deadline.
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
    /// The new keys of this account that have not reached their owners
    /// yet (key ids only, never a secret), from the coordinator's ledger.
    /// The agent never deactivates or deletes an old key whose replacement
    /// is among them (see `keyfleet_agent::rules`). Left out when empty, so
    /// a job without any reads as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undelivered: Vec<String>,
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
    /// The credential report's `mfa_active`: whether the user has an MFA
    /// device. `None` when unknown: the per-user scan (no credential
    /// report, and no extra IAM call per user to find out), a user the
    /// cached report does not list yet, or a result from an agent that
    /// predates the field (hence `default`, and left out when `None` so
    /// that coordinators not yet updated read the result unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_active: Option<bool>,
    /// The credential report's `password_enabled`: whether the user can
    /// sign in to the console. `None` when unknown, as for `mfa_active`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_enabled: Option<bool>,
}

fn default_path() -> String {
    "/".into()
}

impl UserReport {
    /// A user's line with nothing known yet but its name and verdict (path
    /// `/`, no keys, no actions, credential state unknown). Code that builds
    /// a line starts here (`UserReport { keys, ..UserReport::new(name, v) }`),
    /// so that a field added to the report needs its default here only.
    pub fn new(user_name: impl Into<String>, verdict: Verdict) -> UserReport {
        UserReport {
            user_name: user_name.into(),
            path: default_path(),
            email: None,
            verdict,
            keys: Vec::new(),
            actions: Vec::new(),
            error: None,
            note: None,
            mfa_active: None,
            password_enabled: None,
        }
    }
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

/// Every method of a result is here; the work of the longer ones is in
/// the module of its job ([`crate::degrade`], [`crate::validate`]).
impl AccountResult {
    /// Leaves out every informational value that breaks its rule (see
    /// [`crate::degrade`]), noting it on the user it belongs to, and bounds
    /// the free texts. Returns how many values were left out. The fields a
    /// result is used by are never touched: [`crate::Validate`] still
    /// refuses a result whose envelope, names, key ids or sealed
    /// credentials are wrong.
    pub fn degrade(&mut self) -> usize {
        crate::degrade::degrade_result(self)
    }

    /// Passes every free text of the result through
    /// [`crate::validate::bound_text`].
    pub fn bound_texts(&mut self) {
        crate::validate::bound_result_texts(self)
    }

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
