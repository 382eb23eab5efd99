//! Aggregation: the report from a manifest and the accounts' results, one
//! result at a time.
//!
//! [`Aggregator`] takes each account's result, hands back that account's
//! section with its users (for the caller to store and drop), and keeps
//! only what the summary needs: totals, the histogram, each account's row
//! and figures, the compliance counts, and the first [`LISTED_USERS`] of
//! each list. Its memory grows with the number of accounts, never with the
//! number of users, which is what lets the coordinator finalize an
//! organization of any size in a fixed Lambda memory. [`aggregate`] is the
//! same computation with the users kept, for callers that hold them anyway
//! (tests, small runs).
//!
//! Accounts are ordered failures first (failed, missing, no agent,
//! partial), then by account id. Results arrive in any order, so the
//! capped lists keep their first entries *in that order*: each entry
//! carries its place (account state, account id, the user's position), and
//! a list is cut back to its cap as it grows.

use super::{
    compliance_of, console_user_with_keys, key_age_days, keys_without_mfa, needs_attention,
    AccountFigures, AccountReport, AccountState, AccountUser, AgeBucket, ComplianceSummary,
    FailedUsers, RunReport, Totals, UserRef, LISTED_USERS, SCHEMA,
};
use crate::messages::{AccountResult, AccountStatus, Dispatch, RunManifest};
use crate::plan::{KeyStatus, Outcome, Verdict};
use std::collections::BTreeMap;
use time::OffsetDateTime;

const AGE_EDGES: [u64; 7] = [0, 30, 60, 80, 90, 100, 120];

/// Where an entry goes in report order: its account's place, then the
/// user's position in the account.
type Place = (AccountState, String, usize);

/// A list that keeps its first `LISTED_USERS` entries in report order.
struct Capped<T> {
    entries: Vec<(Place, T)>,
}

impl<T> Capped<T> {
    fn new() -> Self {
        Capped {
            entries: Vec::new(),
        }
    }

    fn push(&mut self, place: Place, item: T) {
        self.entries.push((place, item));
        if self.entries.len() >= 2 * LISTED_USERS {
            self.cut();
        }
    }

    fn cut(&mut self) {
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        self.entries.truncate(LISTED_USERS);
    }

    fn into_vec(mut self) -> Vec<T> {
        self.cut();
        self.entries.into_iter().map(|(_, t)| t).collect()
    }
}

/// The report, built one account result at a time (see the module
/// documentation).
pub struct Aggregator<'m> {
    manifest: &'m RunManifest,
    finalized_at: OffsetDateTime,
    accounts: BTreeMap<String, AccountReport>,
    totals: Totals,
    hist: Vec<AgeBucket>,
    compliance: ComplianceSummary,
    no_mfa: Capped<UserRef>,
    console: Capped<UserRef>,
    failed: Capped<AccountUser>,
    failed_count: u64,
}

impl<'m> Aggregator<'m> {
    pub fn new(manifest: &'m RunManifest, finalized_at: OffsetDateTime) -> Self {
        let hist = AGE_EDGES
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
        let mut totals = Totals::default();
        for v in Verdict::ALL {
            totals.by_verdict.insert(v.as_str().to_string(), 0);
        }
        Aggregator {
            manifest,
            finalized_at,
            accounts: BTreeMap::new(),
            totals,
            hist,
            compliance: ComplianceSummary::default(),
            no_mfa: Capped::new(),
            console: Capped::new(),
            failed: Capped::new(),
            failed_count: 0,
        }
    }

    /// Takes one account's (reassembled) result and returns the account's
    /// section with its users. `None` for an account the manifest does not
    /// list, or one already taken (a second result is ignored).
    pub fn add(&mut self, result: AccountResult) -> Option<AccountReport> {
        let m = self
            .manifest
            .accounts
            .iter()
            .find(|m| m.account_id == result.account_id)?;
        if self.accounts.contains_key(&m.account_id) {
            return None;
        }
        let (state, error) = match &m.dispatch {
            Dispatch::NoAgent => (AccountState::NoAgent, None),
            Dispatch::Failed { error } => (AccountState::DispatchFailed, Some(error.clone())),
            Dispatch::Sent => (
                match result.status {
                    AccountStatus::Ok => AccountState::Ok,
                    AccountStatus::Partial => AccountState::Partial,
                    AccountStatus::Failed => AccountState::Failed,
                },
                result.error.clone(),
            ),
        };
        let as_of = result.as_of;
        let iam_calls = result.iam_calls();
        let alias = result.account_alias.clone();
        let users = result.users;
        let full = AccountReport {
            account_id: m.account_id.clone(),
            name: m.name.clone(),
            alias,
            state,
            error,
            iam_calls,
            compliance: Some(compliance_of(&users, as_of)),
            figures: Some(AccountFigures::of(&users)),
            users,
            users_key: None,
        };
        self.count_users(&full, as_of);
        self.accounts.insert(
            full.account_id.clone(),
            AccountReport {
                users: Vec::new(),
                ..full.clone()
            },
        );
        Some(full)
    }

    /// Adds an account's users to the totals, the histogram and the lists.
    fn count_users(&mut self, a: &AccountReport, as_of: OffsetDateTime) {
        let t = &mut self.totals;
        for (i, u) in a.users.iter().enumerate() {
            let place = || (a.state, a.account_id.clone(), i);
            let named = || UserRef {
                account_id: a.account_id.clone(),
                user_name: u.user_name.clone(),
            };
            t.users += 1;
            *t.by_verdict
                .entry(u.verdict.as_str().to_string())
                .or_default() += 1;
            for k in &u.keys {
                t.keys += 1;
                if k.status == KeyStatus::Active {
                    t.active_keys += 1;
                }
                let days = key_age_days(as_of, k.created);
                if let Some(b) = self.hist.iter_mut().rev().find(|b| days >= b.from_days) {
                    b.count += 1;
                }
            }
            for rec in &u.actions {
                let kind = rec.action.kind().to_string();
                *t.actions_by_kind.entry(kind.clone()).or_default() += 1;
                let o = t.action_outcomes.entry(kind).or_default();
                match rec.result {
                    Outcome::Done { .. } => o.done += 1,
                    Outcome::Planned => o.planned += 1,
                    Outcome::Skipped { .. } => o.skipped += 1,
                    Outcome::Failed { .. } => {
                        o.failed += 1;
                        t.failed_actions += 1;
                    }
                }
            }
            if keys_without_mfa(u) {
                self.no_mfa.push(place(), named());
            }
            if console_user_with_keys(u) {
                self.console.push(place(), named());
            }
            if needs_attention(u) {
                self.failed_count += 1;
                self.failed.push(
                    place(),
                    AccountUser {
                        account_id: a.account_id.clone(),
                        user: u.clone(),
                    },
                );
            }
        }
        if let Some(f) = a.figures {
            self.compliance.keys_without_mfa_total += f.keys_without_mfa;
            self.compliance.console_users_with_keys_total += f.console_users_with_keys;
            self.compliance.credential_state_unknown += f.credential_state_unknown;
        }
    }

    /// The report without users: every account of the manifest, those
    /// without a result in the state their dispatch left them.
    pub fn finish(mut self) -> RunReport {
        let mut accounts: Vec<AccountReport> = self
            .manifest
            .accounts
            .iter()
            .map(|m| {
                self.accounts
                    .remove(&m.account_id)
                    .unwrap_or_else(|| AccountReport {
                        account_id: m.account_id.clone(),
                        name: m.name.clone(),
                        alias: None,
                        state: match &m.dispatch {
                            Dispatch::NoAgent => AccountState::NoAgent,
                            Dispatch::Failed { .. } => AccountState::DispatchFailed,
                            Dispatch::Sent => AccountState::Missing,
                        },
                        error: match &m.dispatch {
                            Dispatch::Failed { error } => Some(error.clone()),
                            _ => None,
                        },
                        iam_calls: 0,
                        users: Vec::new(),
                        compliance: Some(compliance_of(&[], self.finalized_at)),
                        figures: Some(AccountFigures::default()),
                        users_key: None,
                    })
            })
            .collect();
        accounts.sort_by(|a, b| a.state.cmp(&b.state).then(a.account_id.cmp(&b.account_id)));
        let t = &mut self.totals;
        for a in &accounts {
            t.accounts += 1;
            match a.state {
                AccountState::Ok => t.accounts_ok += 1,
                AccountState::Partial => t.accounts_partial += 1,
                AccountState::Failed | AccountState::DispatchFailed => t.accounts_failed += 1,
                AccountState::Missing => t.accounts_missing += 1,
                AccountState::NoAgent => t.accounts_no_agent += 1,
            }
            t.iam_calls += a.iam_calls;
            self.compliance.total.add(a.compliance.unwrap_or_default());
        }
        t.accounts_skipped = self.manifest.skipped.len() as u64;
        self.compliance.keys_without_mfa = self.no_mfa.into_vec();
        self.compliance.console_users_with_keys = self.console.into_vec();
        RunReport {
            v: crate::messages::VERSION,
            schema: SCHEMA,
            run_id: self.manifest.run_id.clone(),
            created_at: self.manifest.created_at,
            finalized_at: self.finalized_at,
            dry_run: self.manifest.dry_run,
            mode: self.manifest.mode.clone(),
            policy: self.manifest.policy.clone(),
            complete: self.totals.accounts_missing == 0,
            totals: self.totals,
            key_age_histogram: self.hist,
            compliance: Some(self.compliance),
            accounts,
            skipped: self.manifest.skipped.clone(),
            failed_users: FailedUsers {
                count: self.failed_count,
                first: self.failed.into_vec(),
            },
            mail_waiting: Vec::new(),
        }
    }
}

/// Builds the report with every account's users inline. `results` holds
/// at most one reassembled result per account; results for accounts not in
/// the manifest are ignored.
pub fn aggregate(
    manifest: &RunManifest,
    results: &[AccountResult],
    finalized_at: OffsetDateTime,
) -> RunReport {
    aggregate_owned(manifest, results.to_vec(), finalized_at)
}

/// [`aggregate`], taking the results: their users move into the report
/// instead of being copied.
pub fn aggregate_owned(
    manifest: &RunManifest,
    results: Vec<AccountResult>,
    finalized_at: OffsetDateTime,
) -> RunReport {
    let mut agg = Aggregator::new(manifest, finalized_at);
    let mut users: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for r in results {
        if let Some(a) = agg.add(r) {
            users.insert(a.account_id, a.users);
        }
    }
    let mut report = agg.finish();
    for a in &mut report.accounts {
        if let Some(u) = users.remove(&a.account_id) {
            a.users = u;
        }
    }
    report
}
