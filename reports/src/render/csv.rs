//! The report as CSV, for the security team's spreadsheet.
//!
//! The columns are one table, [`COLUMNS`]: a header and the function that
//! fills its cell from a [`Row`]. A new column is one row there (and, when
//! it shows a new fact, the field in the protocol's report that holds it);
//! nothing else counts positions. See the [module documentation](super)
//! for which row an action, an error or a note lands on.

use super::widgets::rfc3339;
use super::{action_error, key_status, outcome_str};
use crate::outcome;
use keyfleet_protocol::messages::UserReport;
use keyfleet_protocol::plan::{Action, ActionRecord, KeyState, Notice, Outcome};
use keyfleet_protocol::report::{key_age_days, AccountReport, Compliance, RunReport};
use std::sync::LazyLock;

/// UTF-8 byte-order mark at the start of the CSV (for Excel).
pub const CSV_BOM: &[u8] = b"\xEF\xBB\xBF";

/// What one line of the CSV is about: an account (without users), a user's
/// key (or the user, without keys), or the run's failure.
pub struct Row<'r> {
    pub report: &'r RunReport,
    /// `None` on the run-failed line.
    pub account: Option<&'r AccountReport>,
    /// `None` on an account's only line when it has no users.
    pub user: Option<&'r UserReport>,
    /// `None` for a user without keys.
    pub key: Option<&'r KeyState>,
    /// The user's first line (their error and note go there).
    pub first: bool,
    /// The actions placed on this line.
    pub actions: Vec<&'r ActionRecord>,
    /// Why the run failed as a whole, on its own first line.
    pub failure: Option<String>,
}

/// A CSV column: its header and how a row fills it (unguarded: [`to_csv`]
/// guards every cell against formula injection).
pub struct Column {
    pub header: &'static str,
    pub cell: fn(&Row<'_>) -> String,
}

const fn column(header: &'static str, cell: fn(&Row<'_>) -> String) -> Column {
    Column { header, cell }
}

/// The columns, in order. Consumers read them by header; new ones go at the
/// end, so that those reading by position keep working.
pub const COLUMNS: &[Column] = &[
    column("account_id", |r| account(r, |a| a.account_id.clone())),
    column("account_name", |r| account(r, |a| a.name.clone())),
    column("alias", |r| {
        account(r, |a| a.alias.clone().unwrap_or_default())
    }),
    column("account_state", |r| account(r, |a| a.state.as_str().into())),
    column("user_name", |r| user(r, |u| u.user_name.clone())),
    column("path", |r| user(r, |u| u.path.clone())),
    column("email", |r| {
        user(r, |u| u.email.clone().unwrap_or_default())
    }),
    column("verdict", |r| user(r, |u| u.verdict.as_str().into())),
    column("key_id", |r| key(r, |k| k.id.clone())),
    column("key_status", |r| key(r, |k| key_status(k.status).into())),
    column("key_created", |r| key(r, |k| rfc3339(k.created))),
    column("key_age_days", |r| {
        key(r, |k| {
            key_age_days(r.report.created_at, k.created).to_string()
        })
    }),
    column("last_used", |r| {
        key(r, |k| k.last_used.map(rfc3339).unwrap_or_default())
    }),
    column("last_used_service", |r| {
        key(r, |k| k.last_used_service.clone().unwrap_or_default())
    }),
    column("last_used_region", |r| {
        key(r, |k| k.last_used_region.clone().unwrap_or_default())
    }),
    column("actions", |r| {
        r.actions
            .iter()
            .map(|a| action_label(a))
            .collect::<Vec<_>>()
            .join("; ")
    }),
    column("error", error_cell),
    column("note", |r| {
        user(r, |u| match r.first {
            true => u.note.clone().unwrap_or_default(),
            false => String::new(),
        })
    }),
    column("mfa_active", |r| user(r, |u| flag_cell(u.mfa_active))),
    column("password_enabled", |r| {
        user(r, |u| flag_cell(u.password_enabled))
    }),
    column("account_active_keys", |r| {
        compliance(r, |c| c.active_keys.to_string())
    }),
    column("account_active_keys_within_90d", |r| {
        compliance(r, |c| c.active_keys_within_90d.to_string())
    }),
    column("account_within_90d_percent", |r| {
        compliance(r, |c| c.percent_text())
    }),
    column("where_used", where_used_cell),
];

/// The CSV's header line, from [`COLUMNS`].
pub static CSV_HEADER: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| COLUMNS.iter().map(|c| c.header).collect());

fn account(r: &Row<'_>, f: impl Fn(&AccountReport) -> String) -> String {
    r.account.map(f).unwrap_or_default()
}

fn user(r: &Row<'_>, f: impl Fn(&UserReport) -> String) -> String {
    r.user.map(f).unwrap_or_default()
}

fn key(r: &Row<'_>, f: impl Fn(&KeyState) -> String) -> String {
    r.key.map(f).unwrap_or_default()
}

/// The account's CIS measure, on every line of the account (empty when not
/// recorded).
fn compliance(r: &Row<'_>, f: impl Fn(Compliance) -> String) -> String {
    r.account
        .and_then(|a| a.compliance)
        .map(f)
        .unwrap_or_default()
}

/// `true`, `false`, or empty when unknown: a credential report flag.
fn flag_cell(flag: Option<bool>) -> String {
    flag.map(|f| f.to_string()).unwrap_or_default()
}

/// The run's failure on its line; an account's error on its line without
/// users; else the user's error (first line) and the failed actions'.
/// Where the key of a "still in use" notice on this line was used from
/// since its replacement was created (CloudTrail), one place after another.
fn where_used_cell(r: &Row<'_>) -> String {
    r.actions
        .iter()
        .filter_map(|a| match &a.action {
            Action::Notify {
                notice: Notice::StillInUse { used_from, .. },
            } => Some(used_from),
            _ => None,
        })
        .flatten()
        .map(|s| s.describe())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn error_cell(r: &Row<'_>) -> String {
    if let Some(failure) = &r.failure {
        return format!("run failed: {failure}");
    }
    let Some(u) = r.user else {
        return account(r, |a| a.error.clone().unwrap_or_default());
    };
    let mut errors: Vec<String> = Vec::new();
    if r.first {
        errors.extend(u.error.clone());
    }
    errors.extend(r.actions.iter().filter_map(|a| action_error(u, a)));
    errors.join("; ")
}

/// The report as CSV (see the module documentation for the layout).
pub fn to_csv(report: &RunReport) -> Vec<u8> {
    let mut out = csv_head(report);
    for a in &report.accounts {
        out.extend(csv_account(report, a));
    }
    out
}

/// The CSV's start: the byte-order mark, the header, and the run's
/// failure line when it failed as a whole. [`csv_account`] gives each
/// account's lines after it, so that the CSV can be written one account at
/// a time.
pub fn csv_head(report: &RunReport) -> Vec<u8> {
    let mut out = CSV_BOM.to_vec();
    let mut lines = vec![CSV_HEADER.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    if let Some(failure) = outcome::describe(report) {
        let row = Row {
            report,
            account: None,
            user: None,
            key: None,
            first: true,
            actions: Vec::new(),
            failure: Some(failure),
        };
        lines.push(cells(&row));
    }
    write_lines(&mut out, lines);
    out
}

/// One account's lines of the CSV, `account` holding its users.
pub fn csv_account(report: &RunReport, account: &AccountReport) -> Vec<u8> {
    let mut out = Vec::new();
    write_lines(
        &mut out,
        account_rows(report, account).iter().map(cells).collect(),
    );
    out
}

fn cells(row: &Row<'_>) -> Vec<String> {
    COLUMNS.iter().map(|c| guard_cell(&(c.cell)(row))).collect()
}

fn write_lines(out: &mut Vec<u8>, lines: Vec<Vec<String>>) {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    for line in lines {
        // Writing to a Vec cannot fail.
        w.write_record(&line).expect("write to memory");
    }
    w.flush().expect("write to memory");
}

/// An account's lines, in order: one without users, else one per key of
/// each user (one for a user without keys).
fn account_rows<'r>(report: &'r RunReport, a: &'r AccountReport) -> Vec<Row<'r>> {
    let line = |user, key, first, actions| Row {
        report,
        account: Some(a),
        user,
        key,
        first,
        actions,
        failure: None,
    };
    if a.users.is_empty() {
        return vec![line(None, None, true, Vec::new())];
    }
    let mut rows = Vec::new();
    for u in &a.users {
        let placed = place_actions(u);
        for i in 0..u.keys.len().max(1) {
            let actions = placed
                .iter()
                .filter(|(row, _)| *row == i)
                .map(|(_, r)| *r)
                .collect();
            rows.push(line(Some(u), u.keys.get(i), i == 0, actions));
        }
    }
    rows
}

/// Which key row (index into `u.keys`, 0 when the user has no keys) each
/// action goes on.
fn place_actions(u: &UserReport) -> Vec<(usize, &ActionRecord)> {
    u.actions
        .iter()
        .map(|r| {
            let target = match &r.action {
                Action::Deactivate { key_id }
                | Action::Delete { key_id }
                | Action::Reactivate { key_id } => Some(key_id.as_str()),
                Action::Notify { notice } => Some(notice.key_id()),
                Action::CreateKey => None,
            };
            let row = target
                .filter(|id| !id.is_empty())
                .and_then(|id| u.keys.iter().position(|k| k.id == id))
                .unwrap_or(0);
            (row, r)
        })
        .collect()
}

/// `create(AKIA...):done`, `notify(still_in_use):done`, `delete:failed`.
fn action_label(r: &ActionRecord) -> String {
    let detail = match (&r.action, &r.result) {
        (Action::CreateKey, Outcome::Done { key_id: Some(id) }) => Some(id.as_str()),
        (Action::Notify { notice }, _) => Some(notice.kind()),
        _ => None,
    };
    match detail {
        Some(d) => format!("{}({d}):{}", r.action.kind(), outcome_str(&r.result)),
        None => format!("{}:{}", r.action.kind(), outcome_str(&r.result)),
    }
}

/// Prefixes a quote to cells a spreadsheet would read as a formula (the
/// key inventory's export guards its cells with it too).
pub fn guard_cell(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}
