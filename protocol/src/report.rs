//! The consolidated report model and its aggregation from a manifest and the
//! accounts' results.
//!
//! Aggregation is a pure function so that the coordinator, the CLI and the
//! tests compute the same numbers. Accounts are ordered failures first
//! (failed, missing, no agent, partial), then by account id, because that is
//! what the security team reads first.
//!
//! **Compliance evidence** ([`ComplianceSummary`], per account
//! [`Compliance`]), computed here so every shape of the report shows the
//! same figures:
//!
//! - The CIS AWS Foundations control "Ensure access keys are rotated every
//!   90 days or less": the share of *active* keys at most
//!   [`CIS_KEY_ROTATION_DAYS`] whole days old. Inactive keys cannot sign a
//!   request, so they neither help nor hurt. Age is measured at the
//!   account's result `as_of` (when the agent read the keys), in whole
//!   days like the histogram, and over the keys as scanned, before this
//!   run's actions: a key this run deactivates still counts as the active
//!   key it was when read, so the figure is the state the run found, which
//!   is what an auditor can check against the credential report. Exempt
//!   users count: the exemption is keyfleet's, not the control's. An
//!   account with no active key has no share ("n/a"), not 100% or 0%.
//! - Two hygiene findings from the credential report, over users with at
//!   least one *active* key (a user whose keys are all inactive holds
//!   nothing that works today; keyfleet deletes those keys in time):
//!   such a user without an MFA device, and such a user who also has a
//!   console password, a person rather than a workload, who belongs in IAM
//!   Identity Center or a role. A user whose MFA or password state the scan
//!   did not read (the per-user scan, a user newer than the cached
//!   credential report, an agent that predates the fields) is in neither
//!   list but counted apart, so that an empty list never passes for a clean
//!   one.
//! - Reports finalized before this evidence existed read back with
//!   `compliance: None` (account and run): the renderers say "not
//!   recorded" rather than "n/a" or an empty finding.

use crate::messages::{JobMode, UserReport};
use crate::plan::{KeyState, KeyStatus, Verdict};
use crate::policy::Policy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Where an account stands in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    /// Could not be processed at all.
    Failed,
    /// Job sent, no result by the deadline.
    Missing,
    /// No `keyfleet-jobs` queue: agent not deployed.
    NoAgent,
    /// The job could not be sent.
    DispatchFailed,
    /// Some users failed.
    Partial,
    /// Reported, every user processed.
    Ok,
}

impl AccountState {
    /// True for states the security team is alerted about.
    pub fn is_problem(self) -> bool {
        !matches!(self, AccountState::Ok)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Failed => "failed",
            AccountState::Missing => "missing",
            AccountState::NoAgent => "no_agent",
            AccountState::DispatchFailed => "dispatch_failed",
            AccountState::Partial => "partial",
            AccountState::Ok => "ok",
        }
    }
}

/// One account's section of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountReport {
    pub account_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub alias: Option<String>,
    pub state: AccountState,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub iam_calls: u64,
    #[serde(default)]
    pub users: Vec<UserReport>,
    /// The CIS key-rotation measure over this account's keys; `None` in a
    /// report finalized before it was recorded.
    #[serde(default)]
    pub compliance: Option<Compliance>,
    /// The account's figures, so that a summary without its users still
    /// says what they were (schema 2); `None` in a schema 1 report, whose
    /// users are inline ([`AccountFigures::of`] them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figures: Option<AccountFigures>,
    /// Schema 2: the object of the run store that holds this account's
    /// users (an [`AccountReport`] with them), when it has any; the
    /// summary's `users` is then empty. `None` in a schema 1 report, and
    /// in a report read with its users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_key: Option<String>,
}

impl AccountReport {
    /// The account's figures: recorded (schema 2), or counted from its
    /// users (a schema 1 report).
    pub fn figures(&self) -> AccountFigures {
        self.figures
            .unwrap_or_else(|| AccountFigures::of(&self.users))
    }
}

/// One account's figures, counted over its users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AccountFigures {
    pub users: u64,
    pub keys: u64,
    /// New keys created (or planned, in a dry run).
    pub rotated: u64,
    pub deactivated: u64,
    pub deleted: u64,
    /// Users with a failure ([`user_failed`]).
    pub failures: u64,
    /// Users with an active key and no MFA device ([`keys_without_mfa`]).
    pub keys_without_mfa: u64,
    /// Users with an active key and a console password
    /// ([`console_user_with_keys`]).
    pub console_users_with_keys: u64,
    /// Users with an active key whose MFA or password state is unknown.
    pub credential_state_unknown: u64,
}

impl AccountFigures {
    pub fn of(users: &[UserReport]) -> AccountFigures {
        use crate::plan::{Action, Outcome};
        let mut f = AccountFigures {
            users: users.len() as u64,
            ..Default::default()
        };
        for u in users {
            f.keys += u.keys.len() as u64;
            f.failures += u64::from(user_failed(u));
            f.keys_without_mfa += u64::from(keys_without_mfa(u));
            f.console_users_with_keys += u64::from(console_user_with_keys(u));
            f.credential_state_unknown += u64::from(credential_state_unknown(u));
            for r in &u.actions {
                if !matches!(r.result, Outcome::Done { .. } | Outcome::Planned) {
                    continue;
                }
                match r.action {
                    Action::CreateKey => f.rotated += 1,
                    Action::Deactivate { .. } => f.deactivated += 1,
                    Action::Delete { .. } => f.deleted += 1,
                    Action::Reactivate { .. } | Action::Notify { .. } => {}
                }
            }
        }
        f
    }

    pub fn add(&mut self, o: AccountFigures) {
        self.users += o.users;
        self.keys += o.keys;
        self.rotated += o.rotated;
        self.deactivated += o.deactivated;
        self.deleted += o.deleted;
        self.failures += o.failures;
        self.keys_without_mfa += o.keys_without_mfa;
        self.console_users_with_keys += o.console_users_with_keys;
        self.credential_state_unknown += o.credential_state_unknown;
    }
}

/// The CIS AWS Foundations Benchmark's threshold for its control "Ensure
/// access keys are rotated every 90 days or less" (numbered 1.4, 1.14 or
/// 2.12 depending on the benchmark's version): a key is compliant when it
/// is at most this many whole days old, as the benchmark's own audit
/// computes it (`days > 90` fails).
///
/// Fixed on purpose, not the policy's `deactivate_after`: the evidence
/// answers the auditor's question whatever keyfleet is configured to do,
/// so a laxer policy shows as a lower share instead of moving the bar.
pub const CIS_KEY_ROTATION_DAYS: u64 = 90;

/// The CIS key-rotation measure over a set of keys: counts, not a ratio,
/// so that the report stays `Eq` and account figures add up to the total
/// exactly; [`Compliance::percent`] computes the share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Compliance {
    /// Active keys, as scanned.
    pub active_keys: u64,
    /// Of those, the keys at most [`CIS_KEY_ROTATION_DAYS`] whole days old.
    pub active_keys_within_90d: u64,
}

impl Compliance {
    /// The share of active keys within the threshold, in percent; `None`
    /// when there is no active key, where the control has nothing to
    /// measure (neither 100% nor 0% would be true).
    pub fn percent(&self) -> Option<f64> {
        (self.active_keys > 0)
            .then(|| self.active_keys_within_90d as f64 * 100.0 / self.active_keys as f64)
    }

    /// The share in tenths of a percent, rounded down, so that a fleet with
    /// one stale key in thousands never shows as 100%.
    pub fn per_mille(&self) -> Option<u64> {
        (self.active_keys > 0).then(|| {
            let within = u128::from(self.active_keys_within_90d.min(self.active_keys));
            (within * 1000 / u128::from(self.active_keys)) as u64
        })
    }

    /// `87.5%` (rounded down to a tenth, see [`Compliance::per_mille`]), or
    /// `n/a` when there is no active key: the figure every rendering shows.
    pub fn percent_text(&self) -> String {
        match self.per_mille() {
            Some(pm) => format!("{}.{}%", pm / 10, pm % 10),
            None => "n/a".to_string(),
        }
    }

    pub fn add(&mut self, other: Compliance) {
        self.active_keys += other.active_keys;
        self.active_keys_within_90d += other.active_keys_within_90d;
    }
}

/// A user named in a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    pub account_id: String,
    pub user_name: String,
}

/// The most users a list of the summary names ([`ComplianceSummary`]'s
/// findings, [`FailedUsers`]): the first ones in report order. The counts
/// are whole, and each account's figures and users say the rest.
pub const LISTED_USERS: usize = 100;

/// The run's compliance evidence (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ComplianceSummary {
    /// The CIS key-rotation measure over every account's keys.
    pub total: Compliance,
    /// Users with an active key and no MFA device, in report order: the
    /// first [`LISTED_USERS`] (schema 2; every one in schema 1).
    #[serde(default)]
    pub keys_without_mfa: Vec<UserRef>,
    /// Users with an active key and a console password (people rather
    /// than workloads: move them to IAM Identity Center or roles), in
    /// report order: the first [`LISTED_USERS`] (every one in schema 1).
    #[serde(default)]
    pub console_users_with_keys: Vec<UserRef>,
    /// How many users `keys_without_mfa` would list uncapped (schema 2; 0
    /// in schema 1, whose list is whole: see
    /// [`ComplianceSummary::keys_without_mfa_count`]).
    #[serde(default)]
    pub keys_without_mfa_total: u64,
    /// The same for `console_users_with_keys`.
    #[serde(default)]
    pub console_users_with_keys_total: u64,
    /// Users with an active key whose MFA or password state the scan did
    /// not read, so they could be in either list.
    #[serde(default)]
    pub credential_state_unknown: u64,
}

impl ComplianceSummary {
    /// Users with an active key and no MFA device, in the whole run.
    pub fn keys_without_mfa_count(&self) -> u64 {
        self.keys_without_mfa_total
            .max(self.keys_without_mfa.len() as u64)
    }

    /// Users with an active key and a console password, in the whole run.
    pub fn console_users_with_keys_count(&self) -> u64 {
        self.console_users_with_keys_total
            .max(self.console_users_with_keys.len() as u64)
    }
}

/// Users that need attention ([`needs_attention`]): how many, and the
/// first [`LISTED_USERS`] of them in report order with their lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FailedUsers {
    pub count: u64,
    pub first: Vec<AccountUser>,
}

/// A user's line with its account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountUser {
    pub account_id: String,
    pub user: UserReport,
}

/// How a kind of action ended, over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ActionOutcomes {
    pub done: u64,
    pub planned: u64,
    pub skipped: u64,
    pub failed: u64,
}

/// Key-age histogram bucket (days, upper bound exclusive; `None` = open).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgeBucket {
    pub label: String,
    pub from_days: u64,
    pub to_days: Option<u64>,
    pub count: u64,
}

/// Headline numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Totals {
    pub accounts: u64,
    pub accounts_ok: u64,
    pub accounts_partial: u64,
    pub accounts_failed: u64,
    pub accounts_missing: u64,
    pub accounts_no_agent: u64,
    pub accounts_skipped: u64,
    pub users: u64,
    pub keys: u64,
    pub active_keys: u64,
    pub by_verdict: BTreeMap<String, u64>,
    pub actions_by_kind: BTreeMap<String, u64>,
    pub failed_actions: u64,
    pub iam_calls: u64,
    /// Per action kind, how its actions ended (schema 2; empty in
    /// schema 1, where the users say it).
    #[serde(default)]
    pub action_outcomes: BTreeMap<String, ActionOutcomes>,
}

/// The report's schema: 2 = a summary whose accounts name the objects
/// that hold their users (`users_key`), with each account's figures, the
/// findings' counts and capped lists, and the first users that need
/// attention; 1 (a report that does not say) = every user inline.
/// Readers of the run store ([`RunReport::users_inline`]) put the users
/// back, so code that reads a report sees the users either way.
pub const SCHEMA: u32 = 2;

fn schema_1() -> u32 {
    1
}

/// `runs/<run_id>/report.json` (the finalize marker) and
/// `reports/<run_id>/report.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// The protocol version of the coordinator that wrote it.
    pub v: u32,
    /// See [`SCHEMA`].
    #[serde(default = "schema_1")]
    pub schema: u32,
    pub run_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finalized_at: OffsetDateTime,
    pub dry_run: bool,
    pub mode: JobMode,
    pub policy: Policy,
    /// True when every expected account reported.
    pub complete: bool,
    pub totals: Totals,
    pub key_age_histogram: Vec<AgeBucket>,
    /// Compliance evidence; `None` in a report finalized before it was
    /// recorded.
    #[serde(default)]
    pub compliance: Option<ComplianceSummary>,
    pub accounts: Vec<AccountReport>,
    #[serde(default)]
    pub skipped: Vec<crate::messages::SkippedAccount>,
    /// The users that need attention (schema 2; empty in schema 1, where
    /// the users say it).
    #[serde(default)]
    pub failed_users: FailedUsers,
    /// Accounts whose owner emails were not all sent when the run was
    /// finalized (SES's quota without room, or SES failing): the hourly
    /// sweep sends them, each once. Empty in reports finalized before it
    /// was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mail_waiting: Vec<MailWaiting>,
}

/// An account whose owner emails wait (see [`RunReport::mail_waiting`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailWaiting {
    pub account_id: String,
    /// The last error: SES's, or why the quota had no room. No secret.
    pub reason: String,
}

impl RunReport {
    /// True when every account's users are in the report (a schema 1
    /// report, or a schema 2 summary whose users were read back).
    pub fn users_inline(&self) -> bool {
        self.accounts.iter().all(|a| a.users_key.is_none())
    }

    /// The report without its users: what the finalize marker and
    /// `report.json` hold, each account naming where its users are.
    pub fn without_users(&self, users_key: impl Fn(&AccountReport) -> String) -> RunReport {
        let mut r = self.clone();
        for a in &mut r.accounts {
            if !a.users.is_empty() {
                a.users_key = Some(users_key(a));
                a.users = Vec::new();
            }
        }
        r
    }

    /// True when the security team must be alerted.
    pub fn has_problems(&self) -> bool {
        self.accounts.iter().any(|a| a.state.is_problem())
    }
}

/// A key's age in whole days at `as_of` (a key dated after `as_of`, clock
/// skew, is 0 days old): the one age the histogram and the CIS measure
/// share.
pub fn key_age_days(as_of: OffsetDateTime, created: OffsetDateTime) -> u64 {
    (as_of - created).whole_days().max(0) as u64
}

/// Whether a key counts as rotated in time for the CIS control: active
/// keys only (the caller's filter), at most [`CIS_KEY_ROTATION_DAYS`]
/// whole days old.
fn within_cis_rotation(as_of: OffsetDateTime, key: &KeyState) -> bool {
    key_age_days(as_of, key.created) <= CIS_KEY_ROTATION_DAYS
}

/// The CIS key-rotation measure over `users`' active keys, aged at
/// `as_of` (the account's result `as_of`).
pub fn compliance_of(users: &[UserReport], as_of: OffsetDateTime) -> Compliance {
    let mut c = Compliance::default();
    for k in users.iter().flat_map(|u| &u.keys) {
        if k.status == KeyStatus::Active {
            c.active_keys += 1;
            if within_cis_rotation(as_of, k) {
                c.active_keys_within_90d += 1;
            }
        }
    }
    c
}

/// At least one active key: the users the hygiene findings are about.
fn has_active_key(u: &UserReport) -> bool {
    u.keys.iter().any(|k| k.status == KeyStatus::Active)
}

/// Finding: a user with a working access key and no MFA device.
pub fn keys_without_mfa(u: &UserReport) -> bool {
    has_active_key(u) && u.mfa_active == Some(false)
}

/// Finding: a user with a working access key and a console password, a
/// person rather than a workload.
pub fn console_user_with_keys(u: &UserReport) -> bool {
    has_active_key(u) && u.password_enabled == Some(true)
}

/// A user with a working access key whose MFA or password state is
/// unknown, so either finding may apply unseen.
pub fn credential_state_unknown(u: &UserReport) -> bool {
    has_active_key(u) && (u.mfa_active.is_none() || u.password_enabled.is_none())
}

/// A user who failed: verdict `failed`, an error, or a failed action.
pub fn user_failed(u: &UserReport) -> bool {
    u.verdict == Verdict::Failed
        || u.error.is_some()
        || u.actions
            .iter()
            .any(|r| matches!(r.result, crate::plan::Outcome::Failed { .. }))
}

/// A user the summary's "needs attention" list names: failed, or cannot
/// be reached (no owner to tell).
pub fn needs_attention(u: &UserReport) -> bool {
    user_failed(u) || u.verdict == Verdict::Unreachable
}
mod aggregate;
pub use aggregate::{aggregate, aggregate_owned, Aggregator};

#[cfg(test)]
mod tests;
