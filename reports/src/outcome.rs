//! No silent success: when a run as a whole counts as failed.
//!
//! A run fails as a whole when it selected no account (every account of the
//! organization, or of `--accounts`, was excluded, not ACTIVE or not in the
//! organization), or when accounts were selected but none of them reported
//! a result (each one failed, is missing, has no agent or could not be sent
//! its job). An account that reported, even with some users failed
//! (`partial`), makes the run a success as a whole; its failures are
//! reported per account and per user as usual.
//!
//! The decision is a pure function of the report, so the finalize step (SNS
//! alert, report files, summary email), the renderers and the CLI's exit
//! code cannot disagree.

use keyfleet_protocol::report::{AccountState, RunReport};
use std::fmt::Write as _;

/// Why a run failed as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunFailure {
    /// No account got a job.
    NoAccountSelected,
    /// Accounts got a job, none reported a result.
    EveryAccountFailed,
}

impl RunFailure {
    /// The short phrase used in subjects, alerts and report headlines.
    pub fn headline(self) -> &'static str {
        match self {
            RunFailure::NoAccountSelected => "no account selected",
            RunFailure::EveryAccountFailed => "every selected account failed or is missing",
        }
    }
}

/// The run's failure as a whole, if it failed.
pub fn run_failure(report: &RunReport) -> Option<RunFailure> {
    if report.accounts.is_empty() {
        return Some(RunFailure::NoAccountSelected);
    }
    let answered = report
        .accounts
        .iter()
        .any(|a| matches!(a.state, AccountState::Ok | AccountState::Partial));
    (!answered).then_some(RunFailure::EveryAccountFailed)
}

/// How a finished run served its accounts, for exit codes and the
/// coordinator's invocation answers: `ok` only when every selected account
/// reported cleanly; `unserved` when the run did not fail as a whole but
/// some accounts failed, are missing (no result, or a result refused),
/// have no agent, were not sent their job, or are partial; `failed` when
/// it failed as a whole ([`run_failure`]). Scripts and schedulers tell
/// "partial" from "done" by it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Served {
    Ok,
    Unserved {
        /// (account id, state) of each account not served cleanly.
        accounts: Vec<(String, String)>,
    },
    Failed {
        reason: String,
    },
}

/// See [`Served`].
pub fn served(report: &RunReport) -> Served {
    if let Some(why) = describe(report) {
        return Served::Failed { reason: why };
    }
    let accounts: Vec<(String, String)> = report
        .accounts
        .iter()
        .filter(|a| a.state != AccountState::Ok)
        .map(|a| (a.account_id.clone(), a.state.as_str().to_string()))
        .collect();
    if accounts.is_empty() {
        Served::Ok
    } else {
        Served::Unserved { accounts }
    }
}

/// At most this many accounts are named in one message.
const NAMED: usize = 10;

/// One line for people: the headline, then what happened to the accounts
/// (`no account selected (2 left out: 1111... excluded by account id; ...)`).
pub fn describe(report: &RunReport) -> Option<String> {
    let failure = run_failure(report)?;
    let mut s = failure.headline().to_string();
    match failure {
        RunFailure::NoAccountSelected if report.skipped.is_empty() => {
            s.push_str(" (the organization listed no account to run on)");
        }
        RunFailure::NoAccountSelected => {
            let _ = write!(s, " ({} left out: ", report.skipped.len());
            let named: Vec<String> = report
                .skipped
                .iter()
                .take(NAMED)
                .map(|a| format!("{} {}", a.account_id, a.reason))
                .collect();
            s.push_str(&named.join("; "));
            if report.skipped.len() > NAMED {
                let _ = write!(s, "; and {} more", report.skipped.len() - NAMED);
            }
            s.push(')');
        }
        RunFailure::EveryAccountFailed => {
            let named: Vec<String> = report
                .accounts
                .iter()
                .take(NAMED)
                .map(|a| match &a.error {
                    Some(e) => format!("{} {}: {}", a.account_id, a.state.as_str(), one_line(e)),
                    None => format!("{} {}", a.account_id, a.state.as_str()),
                })
                .collect();
            let _ = write!(s, " ({}", named.join("; "));
            if report.accounts.len() > NAMED {
                let _ = write!(s, "; and {} more", report.accounts.len() - NAMED);
            }
            s.push(')');
        }
    }
    Some(s)
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use keyfleet_protocol::report::aggregate;
    use keyfleet_protocol::Dispatch;

    #[test]
    fn a_run_with_one_answering_account_is_not_a_failure() {
        assert_eq!(run_failure(&fixtures::report()), None);
        assert_eq!(describe(&fixtures::report()), None);
        // Partial counts as answered: its failures are per user.
        let mut m = fixtures::manifest();
        m.accounts.retain(|a| a.account_id == "222222222222");
        let results = fixtures::results();
        assert_eq!(run_failure(&aggregate(&m, &results, fixtures::NOW)), None);
    }

    #[test]
    fn a_run_serves_its_accounts_only_when_every_one_is_ok() {
        let r = fixtures::report();
        let not_ok: Vec<(String, String)> = r
            .accounts
            .iter()
            .filter(|a| a.state != AccountState::Ok)
            .map(|a| (a.account_id.clone(), a.state.as_str().to_string()))
            .collect();
        assert!(!not_ok.is_empty(), "the fixture has accounts not ok");
        assert_eq!(served(&r), Served::Unserved { accounts: not_ok });
        let mut clean = r.clone();
        clean.accounts.retain(|a| a.state == AccountState::Ok);
        assert_eq!(served(&clean), Served::Ok);
        clean.accounts.clear();
        assert!(matches!(served(&clean), Served::Failed { .. }));
        assert_eq!(
            serde_json::to_value(served(&r)).unwrap()["outcome"],
            "unserved"
        );
    }

    #[test]
    fn no_account_selected_names_the_skipped_accounts() {
        let mut m = fixtures::manifest();
        m.accounts.clear();
        let r = aggregate(&m, &[], fixtures::NOW);
        assert_eq!(run_failure(&r), Some(RunFailure::NoAccountSelected));
        assert_eq!(
            describe(&r).unwrap(),
            "no account selected (1 left out: 555555555555 excluded OU ou-abcd-12345678)"
        );
        m.skipped.clear();
        let r = aggregate(&m, &[], fixtures::NOW);
        assert!(describe(&r).unwrap().contains("listed no account"));
    }

    #[test]
    fn every_account_failed_missing_or_without_agent_is_a_failure() {
        let mut m = fixtures::manifest();
        m.accounts[1].dispatch = Dispatch::Failed {
            error: "AccessDenied:\nno".into(),
        };
        // 111 and 333 sent but no result (missing), 222 not sent, 444 no agent.
        let r = aggregate(&m, &[], fixtures::NOW);
        assert_eq!(run_failure(&r), Some(RunFailure::EveryAccountFailed));
        let d = describe(&r).unwrap();
        assert!(
            d.starts_with("every selected account failed or is missing ("),
            "{d}"
        );
        for part in [
            "111111111111 missing",
            "222222222222 dispatch_failed: AccessDenied: no",
            "444444444444 no_agent",
        ] {
            assert!(d.contains(part), "{part} in {d}");
        }
    }
}
