//! The consolidated report model and its aggregation from a manifest and the
//! accounts' results.
//!
//! Aggregation is a pure function so that the coordinator, the CLI and the
//! tests compute the same numbers. Accounts are ordered failures first
//! (failed, missing, no agent, partial), then by account id, because that is
//! what the security team reads first.

use crate::messages::{AccountResult, AccountStatus, Dispatch, JobMode, RunManifest, UserReport};
use crate::plan::{KeyStatus, Verdict};
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

/// Builds the report. `results` holds at most one reassembled result per
/// account; results for accounts not in the manifest are ignored.
pub fn aggregate(
    manifest: &RunManifest,
    results: &[AccountResult],
    finalized_at: OffsetDateTime,
) -> RunReport {
    let by_id: BTreeMap<&str, &AccountResult> =
        results.iter().map(|r| (r.account_id.as_str(), r)).collect();
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
            let result = by_id.get(m.account_id.as_str());
            let (state, error) = match (&m.dispatch, result) {
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
            AccountReport {
                account_id: m.account_id.clone(),
                name: m.name.clone(),
                alias: result.and_then(|r| r.account_alias.clone()),
                state,
                error,
                iam_calls: result.map(|r| r.iam_calls()).unwrap_or(0),
                users: result.map(|r| r.users.clone()).unwrap_or_default(),
            }
        })
        .collect();
    accounts.sort_by(|a, b| a.state.cmp(&b.state).then(a.account_id.cmp(&b.account_id)));

    for a in &accounts {
        totals.accounts += 1;
        match a.state {
            AccountState::Ok => totals.accounts_ok += 1,
            AccountState::Partial => totals.accounts_partial += 1,
            AccountState::Failed | AccountState::DispatchFailed => totals.accounts_failed += 1,
            AccountState::Missing => totals.accounts_missing += 1,
            AccountState::NoAgent => totals.accounts_no_agent += 1,
        }
        totals.iam_calls += a.iam_calls;
        let as_of = by_id
            .get(a.account_id.as_str())
            .map(|r| r.as_of)
            .unwrap_or(finalized_at);
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
                let days = ((as_of - k.created).whole_days()).max(0) as u64;
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
        accounts,
        skipped: manifest.skipped.clone(),
    }
}
