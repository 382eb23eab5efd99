//! The consolidated report in its shapes, one module each: [`json`] (the
//! record), [`csv`] (for the security team's spreadsheet), [`html`] (a
//! self-contained page), [`table`] (plain text for a terminal) and
//! [`summary`] (the bodies of the security team's summary email). What they
//! draw alike (the stylesheet, the cards, the charts, how a date is
//! written) is [`widgets`], which the API's dashboard uses too; the words
//! they share (labels, plurals, the CIS share as text) are below.
//!
//! Decisions:
//!
//! - CSV: one row per user per key (a user without keys gets one row with
//!   empty key columns); an account without users (missing, no agent,
//!   failed, or simply no IAM users) gets one row with empty user columns,
//!   so every account of the run appears. Columns are [`csv::COLUMNS`], one
//!   (header, cell) row each.
//!   RFC 4180 quoting by the `csv` crate, CRLF line ends, and a UTF-8
//!   byte-order mark so that Excel reads non-ASCII account names correctly.
//! - Each action appears on exactly one row, so counting in a spreadsheet
//!   matches the report's totals: on the row of the key it targets
//!   (deactivate, delete, and notify by its notice's key), otherwise (create)
//!   on the user's first, oldest, key row. The `actions` cell reads
//!   `create(AKIA...):done; notify(deactivation_scheduled):done`: kind, the
//!   new key id or notice kind in brackets, and the outcome
//!   (`planned`/`done`/`skipped`/`failed`). Action errors go to `error`.
//! - A user's `error` and `note` (why the user is unreachable, or a key
//!   keyfleet found but did not create) are on the user's first row.
//! - Compliance columns, appended after `note` so that consumers of the
//!   first 18 columns read the file as before: `mfa_active` and
//!   `password_enabled` (the credential report's; `true`, `false`, or empty
//!   when unknown) on every row of the user, like `email`; and on every row
//!   of the account, like `account_state`, the account's CIS key-rotation
//!   measure (`account_active_keys`, `account_active_keys_within_90d`,
//!   `account_within_90d_percent` as `60.0%` or `n/a` without an active
//!   key; all three empty in a report finalized before they were
//!   recorded). The run's total is not a row (a row per user is what a
//!   spreadsheet counts): it is the sum over the accounts, and in the JSON,
//!   HTML and summary mail.
//! - Formula injection: a cell that starts with `=`, `+`, `-`, `@`, tab or
//!   carriage return gets a leading `'`, which Excel and LibreOffice show as
//!   text. IAM user names may legitimately start with `+`, `=`, `-` or `@`;
//!   in the CSV they then carry the extra quote (JSON keeps them exact).
//! - Times are RFC 3339 UTC. `key_age_days` is the key's age at the start of
//!   the run (the report keeps no per-account scan time; agents scan within
//!   minutes of the start).
//! - HTML: one file, inline CSS, inline SVG charts, no script, no external
//!   resource. Text is escaped by maud. Problem accounts and failed users come
//!   first, in a highlighted section. A "Compliance" section after the
//!   accounts table holds the CIS share per account and in total and the
//!   two findings (`keyfleet_protocol::report` defines them), with the
//!   number of users whose credential state is unknown, so that an empty
//!   list never passes for a clean one.
//! - Terminal table: one line per account, then the totals (with the CIS
//!   share and the findings' counts), then a `notes:` line per user that
//!   has a note. Control characters in names are replaced, so a crafted
//!   account name cannot send escape sequences to the terminal.
//! - A run that failed as a whole ([`crate::outcome`]: no account selected,
//!   or every selected account failed or is missing) says so in every
//!   shape: JSON gets a top-level `error` (absent otherwise), the CSV a first
//!   row whose only filled cell is `error` (`run failed: ...`), the HTML page
//!   a "Run failed" section above everything else, the table a `RUN FAILED`
//!   line under its title.

pub mod csv;
pub mod html;
pub mod json;
pub mod jsonl;
pub mod summary;
pub mod table;
pub mod widgets;

pub use self::csv::{csv_account, csv_head, guard_cell, to_csv, CSV_BOM, CSV_HEADER};
pub use html::{account_page, to_html};
pub use json::to_json;
pub use jsonl::jsonl_account;
pub use table::to_table;
pub use widgets::{date_utc, datetime_utc, rfc3339};

use keyfleet_protocol::messages::UserReport;
use keyfleet_protocol::plan::{ActionRecord, KeyStatus, Outcome};
use keyfleet_protocol::report::{
    needs_attention, AccountReport, Compliance, ComplianceSummary, RunReport, LISTED_USERS,
};

/// The accounts whose state needs attention, in report order (the report's
/// and the summary mail's "problems" list).
pub fn problem_accounts(report: &RunReport) -> Vec<&AccountReport> {
    report
        .accounts
        .iter()
        .filter(|a| a.state.is_problem())
        .collect()
}

/// `still in use` for `still_in_use`: a verdict, state or notice kind as
/// a label (shared by the report and the summary mail).
pub fn label(s: &str) -> String {
    s.replace('_', " ")
}

/// `50.0% (4 of 8 active keys)`, `n/a (no active key)`, or `not recorded`
/// for a report finalized before keyfleet recorded it: the CIS share as
/// the report and the summary mail print it.
pub fn compliance_text(c: Option<Compliance>) -> String {
    match c {
        None => "not recorded".to_string(),
        Some(c) if c.active_keys == 0 => "n/a (no active key)".to_string(),
        Some(c) => format!(
            "{} ({} of {})",
            c.percent_text(),
            c.active_keys_within_90d,
            plural(c.active_keys, "active key")
        ),
    }
}

/// What the report and the summary mail say about the credential state the
/// scan could not read, or `None` when it read every user's.
pub fn unknown_state_text(s: &ComplianceSummary) -> Option<String> {
    (s.credential_state_unknown > 0).then(|| {
        format!(
            "MFA or console password unknown for {} with an active key (not read from the credential report): the findings may miss them",
            plural(s.credential_state_unknown, "user")
        )
    })
}

/// The two findings' labels and counts, as the summary mail lists them.
pub fn finding_counts(s: &ComplianceSummary) -> [(&'static str, String); 2] {
    [
        (
            "Active key, no MFA",
            plural(s.keys_without_mfa_count(), "user"),
        ),
        (
            "Console password and active key",
            plural(s.console_users_with_keys_count(), "user"),
        ),
    ]
}

/// `1 user`, `2 users`: `n` of `what`, with an `s` unless `n` is 1.
pub fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Per-account numbers shown in the HTML and terminal tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccountCounts {
    pub users: u64,
    /// New keys created (or planned, in a dry run).
    pub rotated: u64,
    pub deactivated: u64,
    pub deleted: u64,
    /// Users with a failure: verdict `failed`, an error, or a failed action.
    pub failures: u64,
}

impl AccountCounts {
    /// From the account's figures (recorded in a schema 2 report, counted
    /// from its users in a schema 1 one).
    pub fn of(a: &AccountReport) -> Self {
        let f = a.figures();
        AccountCounts {
            users: f.users,
            rotated: f.rotated,
            deactivated: f.deactivated,
            deleted: f.deleted,
            failures: f.failures,
        }
    }

    pub fn add(&mut self, o: AccountCounts) {
        self.users += o.users;
        self.rotated += o.rotated;
        self.deactivated += o.deactivated;
        self.deleted += o.deleted;
        self.failures += o.failures;
    }
}

pub use keyfleet_protocol::report::user_failed;

/// The users that failed or cannot be reached, with their account: the
/// first [`LISTED_USERS`] in report order, and how many there are. A
/// schema 2 report recorded them (its users may not be inline); a schema 1
/// report's users say it.
pub fn attention_users(report: &RunReport) -> (Vec<(&str, &UserReport)>, u64) {
    if report.schema >= 2 {
        let f = &report.failed_users;
        return (
            f.first
                .iter()
                .map(|x| (x.account_id.as_str(), &x.user))
                .collect(),
            f.count,
        );
    }
    let all: Vec<(&str, &UserReport)> = report
        .accounts
        .iter()
        .flat_map(|a| a.users.iter().map(move |u| (a.account_id.as_str(), u)))
        .filter(|(_, u)| needs_attention(u))
        .collect();
    let count = all.len() as u64;
    (all.into_iter().take(LISTED_USERS).collect(), count)
}

/// `Payments Prod (payments)`: an account's name with its alias, when the
/// alias says something the name does not.
pub fn display_name(a: &AccountReport) -> String {
    match &a.alias {
        Some(alias) if !alias.is_empty() && *alias != a.name => {
            if a.name.is_empty() {
                alias.clone()
            } else {
                format!("{} ({alias})", a.name)
            }
        }
        _ => a.name.clone(),
    }
}

/// Names from IAM and Organizations, made safe for one line of text
/// (control characters become `?`).
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `kind: error` for a failed action, unless the user's error already says it.
pub fn action_error(u: &UserReport, r: &ActionRecord) -> Option<String> {
    match &r.result {
        Outcome::Failed { error } if !u.error.as_deref().unwrap_or("").contains(error.as_str()) => {
            Some(format!("{}: {error}", r.action.kind()))
        }
        _ => None,
    }
}

/// `planned`, `done`, `skipped`, `failed`.
pub fn outcome_str(o: &Outcome) -> &'static str {
    match o {
        Outcome::Planned => "planned",
        Outcome::Done { .. } => "done",
        Outcome::Skipped { .. } => "skipped",
        Outcome::Failed { .. } => "failed",
    }
}

/// `Active` or `Inactive`, as IAM writes it.
pub fn key_status(s: KeyStatus) -> &'static str {
    match s {
        KeyStatus::Active => "Active",
        KeyStatus::Inactive => "Inactive",
    }
}

#[cfg(test)]
mod tests;
