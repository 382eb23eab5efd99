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

use crate::messages::{AccountResult, AccountStatus, Dispatch, JobMode, RunManifest, UserReport};
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

    fn add(&mut self, other: Compliance) {
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

/// The run's compliance evidence (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ComplianceSummary {
    /// The CIS key-rotation measure over every account's keys.
    pub total: Compliance,
    /// Users with an active key and no MFA device, in report order.
    #[serde(default)]
    pub keys_without_mfa: Vec<UserRef>,
    /// Users with an active key and a console password (people rather
    /// than workloads: move them to IAM Identity Center or roles), in
    /// report order.
    #[serde(default)]
    pub console_users_with_keys: Vec<UserRef>,
    /// Users with an active key whose MFA or password state the scan did
    /// not read, so they could be in either list.
    #[serde(default)]
    pub credential_state_unknown: u64,
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
}

/// `reports/<run_id>/report.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub v: u32,
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
}

impl RunReport {
    /// True when the security team must be alerted.
    pub fn has_problems(&self) -> bool {
        self.accounts.iter().any(|a| a.state.is_problem())
    }
}

const AGE_EDGES: [u64; 7] = [0, 30, 60, 80, 90, 100, 120];

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
fn credential_state_unknown(u: &UserReport) -> bool {
    has_active_key(u) && (u.mfa_active.is_none() || u.password_enabled.is_none())
}

/// The run's compliance evidence from its (sorted) accounts, whose
/// per-account measure is already set.
fn compliance_summary(accounts: &[AccountReport]) -> ComplianceSummary {
    let mut s = ComplianceSummary::default();
    for a in accounts {
        s.total.add(a.compliance.unwrap_or_default());
        let named = |u: &UserReport| UserRef {
            account_id: a.account_id.clone(),
            user_name: u.user_name.clone(),
        };
        for u in &a.users {
            if keys_without_mfa(u) {
                s.keys_without_mfa.push(named(u));
            }
            if console_user_with_keys(u) {
                s.console_users_with_keys.push(named(u));
            }
            if credential_state_unknown(u) {
                s.credential_state_unknown += 1;
            }
        }
    }
    s
}

/// Builds the report. `results` holds at most one reassembled result per
/// account; results for accounts not in the manifest are ignored.
pub fn aggregate(
    manifest: &RunManifest,
    results: &[AccountResult],
    finalized_at: OffsetDateTime,
) -> RunReport {
    aggregate_owned(manifest, results.to_vec(), finalized_at)
}

/// [`aggregate`], taking the results: their users move into the report
/// instead of being copied, so that finalize never holds a run's users
/// twice.
pub fn aggregate_owned(
    manifest: &RunManifest,
    results: Vec<AccountResult>,
    finalized_at: OffsetDateTime,
) -> RunReport {
    let as_of_by_id: BTreeMap<String, OffsetDateTime> = results
        .iter()
        .map(|r| (r.account_id.clone(), r.as_of))
        .collect();
    let mut by_id: BTreeMap<String, AccountResult> = results
        .into_iter()
        .map(|r| (r.account_id.clone(), r))
        .collect();
    let mut totals = Totals::default();
    let mut hist: Vec<AgeBucket> = AGE_EDGES
        .iter()
        .enumerate()
        .map(|(i, &from)| {
            let to = AGE_EDGES.get(i + 1).copied();
            AgeBucket {
                label: match to {
                    Some(t) => format!("{from}-{}d", t - 1),
                    None => format!("{from}d+"),
                },
                from_days: from,
                to_days: to,
                count: 0,
            }
        })
        .collect();
    for v in Verdict::ALL {
        totals.by_verdict.insert(v.as_str().to_string(), 0);
    }

    let mut accounts: Vec<AccountReport> = manifest
        .accounts
        .iter()
        .map(|m| {
            let result = by_id.remove(m.account_id.as_str());
            let (state, error) = match (&m.dispatch, &result) {
                (Dispatch::NoAgent, _) => (AccountState::NoAgent, None),
                (Dispatch::Failed { error }, _) => {
                    (AccountState::DispatchFailed, Some(error.clone()))
                }
                (Dispatch::Sent, None) => (AccountState::Missing, None),
                (Dispatch::Sent, Some(r)) => (
                    match r.status {
                        AccountStatus::Ok => AccountState::Ok,
                        AccountStatus::Partial => AccountState::Partial,
                        AccountStatus::Failed => AccountState::Failed,
                    },
                    r.error.clone(),
                ),
            };
            let iam_calls = result.as_ref().map(|r| r.iam_calls()).unwrap_or(0);
            AccountReport {
                account_id: m.account_id.clone(),
                name: m.name.clone(),
                alias: result.as_ref().and_then(|r| r.account_alias.clone()),
                state,
                error,
                iam_calls,
                users: result.map(|r| r.users).unwrap_or_default(),
                // Set below, with the account's `as_of`.
                compliance: None,
            }
        })
        .collect();
    accounts.sort_by(|a, b| a.state.cmp(&b.state).then(a.account_id.cmp(&b.account_id)));

    for a in &mut accounts {
        totals.accounts += 1;
        match a.state {
            AccountState::Ok => totals.accounts_ok += 1,
            AccountState::Partial => totals.accounts_partial += 1,
            AccountState::Failed | AccountState::DispatchFailed => totals.accounts_failed += 1,
            AccountState::Missing => totals.accounts_missing += 1,
            AccountState::NoAgent => totals.accounts_no_agent += 1,
        }
        totals.iam_calls += a.iam_calls;
        let as_of = as_of_by_id
            .get(a.account_id.as_str())
            .copied()
            .unwrap_or(finalized_at);
        a.compliance = Some(compliance_of(&a.users, as_of));
        for u in &a.users {
            totals.users += 1;
            *totals
                .by_verdict
                .entry(u.verdict.as_str().to_string())
                .or_default() += 1;
            for k in &u.keys {
                totals.keys += 1;
                if k.status == KeyStatus::Active {
                    totals.active_keys += 1;
                }
                let days = key_age_days(as_of, k.created);
                if let Some(b) = hist.iter_mut().rev().find(|b| days >= b.from_days) {
                    b.count += 1;
                }
            }
            for rec in &u.actions {
                *totals
                    .actions_by_kind
                    .entry(rec.action.kind().to_string())
                    .or_default() += 1;
                if matches!(rec.result, crate::plan::Outcome::Failed { .. }) {
                    totals.failed_actions += 1;
                }
            }
        }
    }
    totals.accounts_skipped = manifest.skipped.len() as u64;

    RunReport {
        v: crate::messages::VERSION,
        run_id: manifest.run_id.clone(),
        created_at: manifest.created_at,
        finalized_at,
        dry_run: manifest.dry_run,
        mode: manifest.mode.clone(),
        policy: manifest.policy.clone(),
        complete: totals.accounts_missing == 0,
        totals,
        key_age_histogram: hist,
        compliance: Some(compliance_summary(&accounts)),
        accounts,
        skipped: manifest.skipped.clone(),
    }
}

#[cfg(test)]
mod tests;
