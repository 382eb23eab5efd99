//! The consolidated report in four shapes: JSON (the record), CSV (for the
//! security team's spreadsheet), a self-contained HTML page, and a plain
//! text table for a terminal.
//!
//! Decisions:
//!
//! - CSV: one row per user per key (a user without keys gets one row with
//!   empty key columns); an account without users (missing, no agent,
//!   failed, or simply no IAM users) gets one row with empty user columns,
//!   so every account of the run appears. Columns are [`CSV_HEADER`].
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

use crate::outcome;
use keyfleet_protocol::messages::{JobMode, UserReport};
use keyfleet_protocol::plan::{Action, ActionRecord, KeyState, KeyStatus, Outcome, Verdict};
use keyfleet_protocol::report::{
    key_age_days, AccountReport, AccountState, Compliance, ComplianceSummary, RunReport, UserRef,
    CIS_KEY_ROTATION_DAYS,
};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use time::OffsetDateTime;

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; COLUMNS] = [
    "account_id",
    "account_name",
    "alias",
    "account_state",
    "user_name",
    "path",
    "email",
    "verdict",
    "key_id",
    "key_status",
    "key_created",
    "key_age_days",
    "last_used",
    "last_used_service",
    "last_used_region",
    "actions",
    "error",
    "note",
    "mfa_active",
    "password_enabled",
    "account_active_keys",
    "account_active_keys_within_90d",
    "account_within_90d_percent",
];

/// Number of CSV columns.
const COLUMNS: usize = 23;

/// UTF-8 byte-order mark at the start of the CSV (for Excel).
pub const CSV_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The report as pretty-printed JSON, newline-terminated. A run that
/// failed as a whole carries a top-level `error` after the report's fields.
pub fn to_json(report: &RunReport) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Json<'a> {
        #[serde(flatten)]
        report: &'a RunReport,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    }
    let json = Json {
        report,
        error: outcome::describe(report),
    };
    // Plain structs with string keys: serialization cannot fail.
    let mut out = serde_json::to_vec_pretty(&json).expect("a RunReport always serializes");
    out.push(b'\n');
    out
}

/// The report as CSV (see the module documentation for the layout).
pub fn to_csv(report: &RunReport) -> Vec<u8> {
    let mut out = CSV_BOM.to_vec();
    {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(&mut out);
        // Writing to a Vec cannot fail.
        w.write_record(CSV_HEADER).expect("write to memory");
        for row in csv_rows(report) {
            w.write_record(row.iter().map(|c| guard_cell(c)))
                .expect("write to memory");
        }
        w.flush().expect("write to memory");
    }
    out
}

const ERROR: usize = 16;
const NOTE: usize = 17;
const MFA_ACTIVE: usize = 18;
const PASSWORD_ENABLED: usize = 19;
/// The first of the three account compliance columns.
const ACCOUNT_COMPLIANCE: usize = 20;

/// `true`, `false`, or empty when unknown: a credential report flag.
fn flag_cell(flag: Option<bool>) -> String {
    flag.map(|f| f.to_string()).unwrap_or_default()
}

/// The account's CIS measure as its three CSV cells (empty when not
/// recorded).
fn compliance_cells(c: Option<Compliance>) -> [String; 3] {
    match c {
        Some(c) => [
            c.active_keys.to_string(),
            c.active_keys_within_90d.to_string(),
            c.percent_text(),
        ],
        None => Default::default(),
    }
}

/// Rows of the CSV, unguarded, in column order.
fn csv_rows(report: &RunReport) -> Vec<[String; COLUMNS]> {
    let mut rows = Vec::new();
    if let Some(failure) = outcome::describe(report) {
        let mut row: [String; COLUMNS] = Default::default();
        row[ERROR] = format!("run failed: {failure}");
        rows.push(row);
    }
    for a in &report.accounts {
        let account = [
            a.account_id.clone(),
            a.name.clone(),
            a.alias.clone().unwrap_or_default(),
            a.state.as_str().to_string(),
        ];
        let compliance = compliance_cells(a.compliance);
        if a.users.is_empty() {
            let mut row: [String; COLUMNS] = Default::default();
            row[..4].clone_from_slice(&account);
            row[ERROR] = a.error.clone().unwrap_or_default();
            row[ACCOUNT_COMPLIANCE..].clone_from_slice(&compliance);
            rows.push(row);
            continue;
        }
        for u in &a.users {
            let placed = place_actions(u);
            let n = u.keys.len().max(1);
            for i in 0..n {
                let key = u.keys.get(i);
                let mut row: [String; COLUMNS] = Default::default();
                row[..4].clone_from_slice(&account);
                row[4] = u.user_name.clone();
                row[5] = u.path.clone();
                row[6] = u.email.clone().unwrap_or_default();
                row[7] = u.verdict.as_str().to_string();
                if let Some(k) = key {
                    row[8] = k.id.clone();
                    row[9] = key_status(k.status).to_string();
                    row[10] = rfc3339(k.created);
                    row[11] = key_age_days(report.created_at, k.created).to_string();
                    row[12] = k.last_used.map(rfc3339).unwrap_or_default();
                    row[13] = k.last_used_service.clone().unwrap_or_default();
                    row[14] = k.last_used_region.clone().unwrap_or_default();
                }
                let actions: Vec<&ActionRecord> = placed
                    .iter()
                    .filter(|(row, _)| *row == i)
                    .map(|(_, r)| *r)
                    .collect();
                row[15] = actions
                    .iter()
                    .map(|r| action_label(r))
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut errors: Vec<String> = Vec::new();
                if i == 0 {
                    errors.extend(u.error.clone());
                }
                for r in &actions {
                    if let Some(e) = action_error(u, r) {
                        errors.push(e);
                    }
                }
                row[ERROR] = errors.join("; ");
                if i == 0 {
                    row[NOTE] = u.note.clone().unwrap_or_default();
                }
                row[MFA_ACTIVE] = flag_cell(u.mfa_active);
                row[PASSWORD_ENABLED] = flag_cell(u.password_enabled);
                row[ACCOUNT_COMPLIANCE..].clone_from_slice(&compliance);
                rows.push(row);
            }
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

fn outcome_str(o: &Outcome) -> &'static str {
    match o {
        Outcome::Planned => "planned",
        Outcome::Done { .. } => "done",
        Outcome::Skipped { .. } => "skipped",
        Outcome::Failed { .. } => "failed",
    }
}

fn key_status(s: KeyStatus) -> &'static str {
    match s {
        KeyStatus::Active => "Active",
        KeyStatus::Inactive => "Inactive",
    }
}

/// Prefixes a quote to cells a spreadsheet would read as a formula.
fn guard_cell(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `2026-01-31 09:05 UTC`: an instant as people read it (the report, the
/// summary mail and the owner notices share it).
pub(crate) fn datetime_utc(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_default()
}

/// `2026-01-31`: the UTC day of an instant (shared like [`datetime_utc`]).
pub(crate) fn date_utc(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

/// The accounts whose state needs attention, in report order (the report's
/// and the summary mail's "problems" list).
pub(crate) fn problem_accounts(report: &RunReport) -> Vec<&AccountReport> {
    report
        .accounts
        .iter()
        .filter(|a| a.state.is_problem())
        .collect()
}

/// `still in use` for `still_in_use`: a verdict, state or notice kind as
/// a label (shared by the report and the summary mail).
pub(crate) fn label(s: &str) -> String {
    s.replace('_', " ")
}

/// `50.0% (4 of 8 active keys)`, `n/a (no active key)`, or `not recorded`
/// for a report finalized before keyfleet recorded it: the CIS share as
/// the report and the summary mail print it.
pub(crate) fn compliance_text(c: Option<Compliance>) -> String {
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
pub(crate) fn unknown_state_text(s: &ComplianceSummary) -> Option<String> {
    (s.credential_state_unknown > 0).then(|| {
        format!(
            "MFA or console password unknown for {} with an active key (not read from the credential report): the findings may miss them",
            plural(s.credential_state_unknown, "user")
        )
    })
}

/// The two findings' labels and counts, as the summary mail lists them.
pub(crate) fn finding_counts(s: &ComplianceSummary) -> [(&'static str, String); 2] {
    [
        (
            "Active key, no MFA",
            plural(s.keys_without_mfa.len() as u64, "user"),
        ),
        (
            "Console password and active key",
            plural(s.console_users_with_keys.len() as u64, "user"),
        ),
    ]
}

/// `1 user`, `2 users`: `n` of `what`, with an `s` unless `n` is 1.
pub(crate) fn plural(n: u64, what: &str) -> String {
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
    pub fn of(a: &AccountReport) -> Self {
        let mut c = AccountCounts {
            users: a.users.len() as u64,
            ..Default::default()
        };
        for u in &a.users {
            if user_failed(u) {
                c.failures += 1;
            }
            for r in &u.actions {
                if !matches!(r.result, Outcome::Done { .. } | Outcome::Planned) {
                    continue;
                }
                match r.action {
                    Action::CreateKey => c.rotated += 1,
                    Action::Deactivate { .. } => c.deactivated += 1,
                    Action::Delete { .. } => c.deleted += 1,
                    Action::Reactivate { .. } | Action::Notify { .. } => {}
                }
            }
        }
        c
    }

    fn add(&mut self, o: AccountCounts) {
        self.users += o.users;
        self.rotated += o.rotated;
        self.deactivated += o.deactivated;
        self.deleted += o.deleted;
        self.failures += o.failures;
    }
}

fn user_failed(u: &UserReport) -> bool {
    u.verdict == Verdict::Failed
        || u.error.is_some()
        || u.actions
            .iter()
            .any(|r| matches!(r.result, Outcome::Failed { .. }))
}

/// Replaces control characters (terminal escapes) and caps the width.
fn term_text(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.chars().count() > max {
        let mut t: String = clean.chars().take(max.saturating_sub(1)).collect();
        t.push('\u{2026}');
        t
    } else {
        clean
    }
}

/// A plain-text table for a terminal: one line per account, then totals.
pub fn to_table(report: &RunReport) -> String {
    let head = [
        "ACCOUNT",
        "NAME",
        "STATE",
        "USERS",
        "ROTATED",
        "DEACTIVATED",
        "DELETED",
        "FAILURES",
    ];
    let mut rows: Vec<[String; 8]> = Vec::new();
    let mut total = AccountCounts::default();
    for a in &report.accounts {
        let c = AccountCounts::of(a);
        total.add(c);
        rows.push([
            term_text(&a.account_id, 12),
            term_text(&display_name(a), 32),
            a.state.as_str().to_string(),
            c.users.to_string(),
            c.rotated.to_string(),
            c.deactivated.to_string(),
            c.deleted.to_string(),
            c.failures.to_string(),
        ]);
    }
    let total_row = [
        "TOTAL".to_string(),
        format!("{} accounts", report.accounts.len()),
        String::new(),
        total.users.to_string(),
        total.rotated.to_string(),
        total.deactivated.to_string(),
        total.deleted.to_string(),
        total.failures.to_string(),
    ];
    let mut widths = head.map(|h| h.chars().count());
    for r in rows.iter().chain(std::iter::once(&total_row)) {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String; 8], out: &mut String| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - c.chars().count();
            if i >= 3 {
                // Numbers right-aligned.
                let _ = write!(l, "{}{c}  ", " ".repeat(pad));
            } else {
                let _ = write!(l, "{c}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    let t = &report.totals;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "keyfleet run {}{} - finalized {}{}",
        term_text(&report.run_id, 64),
        if report.dry_run { " [DRY RUN]" } else { "" },
        datetime_utc(report.finalized_at),
        if report.complete { "" } else { " - INCOMPLETE" }
    );
    if let Some(failure) = outcome::describe(report) {
        let _ = writeln!(out, "RUN FAILED: {}", term_text(&failure, 1000));
    }
    out.push('\n');
    line(&head.map(String::from), &mut out);
    let rule = widths.map(|w| "-".repeat(w));
    line(&rule, &mut out);
    for r in &rows {
        line(r, &mut out);
    }
    line(&rule, &mut out);
    line(&total_row, &mut out);
    out.push('\n');
    let _ = writeln!(
        out,
        "accounts: {} ok, {} partial, {} failed, {} missing, {} no agent, {} skipped",
        t.accounts_ok,
        t.accounts_partial,
        t.accounts_failed,
        t.accounts_missing,
        t.accounts_no_agent,
        t.accounts_skipped
    );
    let _ = writeln!(
        out,
        "users: {}, keys: {} ({} active), failed actions: {}, IAM calls: {}",
        t.users, t.keys, t.active_keys, t.failed_actions, t.iam_calls
    );
    let _ = writeln!(
        out,
        "active keys at most {CIS_KEY_ROTATION_DAYS} days old (CIS): {}",
        compliance_text(report.compliance.as_ref().map(|s| s.total))
    );
    if let Some(s) = &report.compliance {
        let _ = writeln!(
            out,
            "findings: {} with an active key and no MFA, {} with a console password and an active key",
            plural(s.keys_without_mfa.len() as u64, "user"),
            plural(s.console_users_with_keys.len() as u64, "user")
        );
        if let Some(unknown) = unknown_state_text(s) {
            let _ = writeln!(out, "  {unknown}");
        }
    }
    let notes: Vec<(&AccountReport, &UserReport, &str)> = report
        .accounts
        .iter()
        .flat_map(|a| {
            a.users
                .iter()
                .filter_map(move |u| u.note.as_deref().map(|n| (a, u, n)))
        })
        .collect();
    if !notes.is_empty() {
        out.push_str("\nnotes:\n");
        for (a, u, note) in notes {
            let _ = writeln!(
                out,
                "  {}  {}: {}",
                term_text(&a.account_id, 12),
                term_text(&u.user_name, 64),
                term_text(note, 500)
            );
        }
    }
    out
}

fn display_name(a: &AccountReport) -> String {
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

/// An HTML id for an account section.
fn anchor(account_id: &str) -> String {
    let id: String = account_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("acct-{id}")
}

const CSS: &str = r#"
:root{--ok:#2e7d32;--warn:#b26a00;--bad:#c62828;--muted:#5f6368;--line:#dadce0;--bg:#f8f9fa}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#202124;margin:0;padding:24px;max-width:1280px;margin:auto}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:20px 0 6px}
.sub{color:var(--muted);margin:0 0 16px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;vertical-align:middle;background:#e8eaed;color:#202124}
.badge.dry{background:#6b4fbb;color:#fff}
.badge.incomplete{background:var(--bad);color:#fff}
.st-ok{background:#e6f4ea;color:var(--ok)}
.st-partial{background:#fef7e0;color:var(--warn)}
.st-failed,.st-dispatch_failed,.st-missing,.st-no_agent{background:#fce8e6;color:var(--bad)}
.cards{display:flex;flex-wrap:wrap;gap:8px;margin:8px 0 16px;padding:0;list-style:none}
.cards li{border:1px solid var(--line);border-radius:6px;padding:8px 12px;min-width:110px;background:#fff}
.cards .n{display:block;font-size:22px;font-weight:700}
.cards .l{color:var(--muted);font-size:12px}
.cards .bad .n{color:var(--bad)}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.chart{border:1px solid var(--line);border-radius:6px;padding:8px;background:#fff;flex:1 1 420px;max-width:620px}
.chart h3{margin:0 0 4px}
.chart svg{width:100%;height:auto;display:block}
.attention{border:2px solid var(--bad);background:#fff5f5;border-radius:6px;padding:4px 16px 12px;margin:16px 0}
.attention h2{color:var(--bad);border-bottom-color:#f4c7c3}
table{border-collapse:collapse;width:100%;margin:4px 0 12px;background:#fff}
th,td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
thead th{background:var(--bg);font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.problem td{background:#fff8f7}
code{font:12px/1.3 ui-monospace,SFMono-Regular,Consolas,monospace}
ul.plain{list-style:none;margin:0;padding:0}
.err{color:var(--bad)}
.muted{color:var(--muted)}
.o-failed{color:var(--bad);font-weight:600}
.o-planned{color:#6b4fbb}
.o-skipped{color:var(--muted)}
.o-done{color:var(--ok)}
dl.policy{display:grid;grid-template-columns:max-content auto;gap:2px 16px}
dl.policy dt{color:var(--muted)}
dl.policy dd{margin:0}
@media print{body{padding:0}.chart,.attention{break-inside:avoid}}
"#;

/// The report as one self-contained HTML page.
pub fn to_html(report: &RunReport) -> String {
    let t = &report.totals;
    let counts: Vec<(&AccountReport, AccountCounts)> = report
        .accounts
        .iter()
        .map(|a| (a, AccountCounts::of(a)))
        .collect();
    let mut total = AccountCounts::default();
    for (_, c) in &counts {
        total.add(*c);
    }
    let problems = problem_accounts(report);
    let failed_users: Vec<(&AccountReport, &UserReport)> = report
        .accounts
        .iter()
        .flat_map(|a| a.users.iter().map(move |u| (a, u)))
        .filter(|(_, u)| user_failed(u) || u.verdict == Verdict::Unreachable)
        .collect();
    let title = format!(
        "keyfleet run {} \u{2014} {}",
        report.run_id,
        date_utc(report.created_at)
    );
    let failure = outcome::run_failure(report).zip(outcome::describe(report));
    let emergency = match &report.mode {
        JobMode::Rotate {
            user,
            deactivate_old,
            ..
        } => Some(format!(
            "Emergency rotation of {user}{}",
            if *deactivate_old {
                " (old key deactivated at once)"
            } else {
                ""
            }
        )),
        JobMode::Reactivate { user, key_id } => {
            Some(format!("Reactivation of access key {key_id} of {user}"))
        }
        JobMode::Scheduled => None,
    };
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    h1 {
                        "keyfleet run " code { (report.run_id) } " "
                        @if report.dry_run { span.badge.dry title="Nothing was changed" { "DRY RUN" } " " }
                        @if !report.complete { span.badge.incomplete { "INCOMPLETE" } " " }
                        @if failure.is_some() { span.badge.incomplete { "FAILED" } }
                    }
                    p.sub {
                        "Started " (datetime_utc(report.created_at))
                        ", finalized " (datetime_utc(report.finalized_at))
                        @if let Some(what) = &emergency {
                            ". " (what)
                        }
                        "."
                    }
                }
                main {
                    @if let Some((failure, description)) = &failure {
                        section.attention #run-failed role="alert" aria-labelledby="run-failed-h" {
                            h2 #run-failed-h { "Run failed: " (failure.headline()) }
                            p.err { (description) }
                        }
                    }
                    section aria-labelledby="summary-h" {
                        h2 #summary-h { "Summary" }
                        ul.cards {
                            (card("Accounts", t.accounts, false))
                            (card("OK", t.accounts_ok, false))
                            (card("Partial", t.accounts_partial, t.accounts_partial > 0))
                            (card("Failed", t.accounts_failed, t.accounts_failed > 0))
                            (card("Missing", t.accounts_missing, t.accounts_missing > 0))
                            (card("No agent", t.accounts_no_agent, t.accounts_no_agent > 0))
                            (card("Skipped", t.accounts_skipped, false))
                            (card("Users", t.users, false))
                            (card("Keys", t.keys, false))
                            (card("Active keys", t.active_keys, false))
                            (share_card(report.compliance.as_ref().map(|s| s.total)))
                            (card("New keys", total.rotated, false))
                            (card("Deactivated", total.deactivated, false))
                            (card("Deleted", total.deleted, false))
                            (card("Failed actions", t.failed_actions, t.failed_actions > 0))
                            (card("IAM calls", t.iam_calls, false))
                        }
                        div.charts {
                            div.chart { h3 { "Key age" } (age_chart(report)) }
                            div.chart { h3 { "Actions by kind" } (actions_chart(report)) }
                        }
                    }
                    @if !problems.is_empty() || !failed_users.is_empty() {
                        section.attention #attention aria-labelledby="attention-h" {
                            h2 #attention-h { "Needs attention" }
                            @if !problems.is_empty() {
                                table {
                                    caption.muted { "Accounts that did not complete" }
                                    thead { tr { th scope="col" { "Account" } th scope="col" { "Name" } th scope="col" { "State" } th scope="col" { "What happened" } } }
                                    tbody {
                                        @for a in &problems {
                                            tr.problem {
                                                td { a href=(format!("#{}", anchor(&a.account_id))) { code { (a.account_id) } } }
                                                td { (display_name(a)) }
                                                td { (state_badge(a.state)) }
                                                td { (state_explanation(a)) }
                                            }
                                        }
                                    }
                                }
                            }
                            @if !failed_users.is_empty() {
                                table {
                                    caption.muted { "Users that failed or cannot be reached" }
                                    thead { tr { th scope="col" { "Account" } th scope="col" { "User" } th scope="col" { "Verdict" } th scope="col" { "Error" } th scope="col" { "Note" } } }
                                    tbody {
                                        @for (a, u) in &failed_users {
                                            tr.problem {
                                                td { a href=(format!("#{}", anchor(&a.account_id))) { code { (a.account_id) } } }
                                                td { (u.user_name) }
                                                td { (u.verdict.as_str()) }
                                                td.err { (user_errors(u).join("; ")) }
                                                td { (u.note.as_deref().unwrap_or("")) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    section aria-labelledby="accounts-h" {
                        h2 #accounts-h { "Accounts" }
                        table {
                            thead {
                                tr {
                                    th scope="col" { "Account" } th scope="col" { "Name" } th scope="col" { "State" }
                                    th.num scope="col" { "Users" } th.num scope="col" { "New keys" } th.num scope="col" { "Deactivated" }
                                    th.num scope="col" { "Deleted" } th.num scope="col" { "Failures" } th scope="col" { "Error" }
                                }
                            }
                            tbody {
                                @for (a, c) in &counts {
                                    tr class=[a.state.is_problem().then_some("problem")] {
                                        td { a href=(format!("#{}", anchor(&a.account_id))) { code { (a.account_id) } } }
                                        td { (display_name(a)) }
                                        td { (state_badge(a.state)) }
                                        td.num { (c.users) } td.num { (c.rotated) } td.num { (c.deactivated) }
                                        td.num { (c.deleted) } td.num { (c.failures) }
                                        td.err { (a.error.as_deref().unwrap_or("")) }
                                    }
                                }
                            }
                            tfoot {
                                tr {
                                    th scope="row" colspan="3" { "Total (" (report.accounts.len()) " accounts)" }
                                    td.num { (total.users) } td.num { (total.rotated) } td.num { (total.deactivated) }
                                    td.num { (total.deleted) } td.num { (total.failures) } td {}
                                }
                            }
                        }
                    }
                    (compliance_section(report))
                    section aria-labelledby="users-h" {
                        h2 #users-h { "Users by account" }
                        @for a in &report.accounts {
                            section id=(anchor(&a.account_id)) {
                                h3 {
                                    (display_name(a)) " " code { (a.account_id) } " " (state_badge(a.state))
                                }
                                @if a.users.is_empty() {
                                    p class=[a.state.is_problem().then_some("err")] { (state_explanation(a)) }
                                } @else {
                                    @if let Some(e) = &a.error { p.err { (e) } }
                                    (users_table(report, a))
                                }
                            }
                        }
                    }
                    @if !report.skipped.is_empty() {
                        section aria-labelledby="skipped-h" {
                            h2 #skipped-h { "Skipped accounts" }
                            table {
                                thead { tr { th scope="col" { "Account" } th scope="col" { "Name" } th scope="col" { "Reason" } } }
                                tbody {
                                    @for s in &report.skipped {
                                        tr { td { code { (s.account_id) } } td { (s.name) } td { (s.reason) } }
                                    }
                                }
                            }
                        }
                    }
                    section aria-labelledby="policy-h" {
                        h2 #policy-h { "Policy" }
                        dl.policy {
                            dt { "Rotate after" } dd { (report.policy.rotate_after) }
                            dt { "Deactivate after" } dd { (report.policy.deactivate_after) }
                            dt { "Delete inactive after" } dd { (report.policy.delete_after) }
                            dt { "Delete unused after" } dd { (report.policy.unused_delete_after) }
                            dt { "Maximum key age" } dd { (report.policy.max_key_age) }
                            dt { "Exempt tag" } dd { code { (report.policy.exempt_tag.key) "=" (report.policy.exempt_tag.value) } }
                            dt { "Email tag" } dd { code { (report.policy.email_tag) } }
                            dt { "Delivery" } dd { (format!("{:?}", report.policy.delivery)) }
                            @if report.policy.cleanup { dt { "Mode" } dd { "initial clean-up" } }
                        }
                    }
                }
            }
        }
    };
    markup.into_string()
}

fn card(label: &str, n: u64, bad: bool) -> Markup {
    html! {
        li class=[bad.then_some("bad")] { span.n { (n) } span.l { (label) } }
    }
}

/// The summary's CIS card: the share, red when some active key is older.
fn share_card(c: Option<Compliance>) -> Markup {
    let text = match c {
        None => "not recorded".to_string(),
        Some(c) => c.percent_text(),
    };
    let bad = c.is_some_and(|c| c.active_keys_within_90d < c.active_keys);
    html! {
        li class=[bad.then_some("bad")] {
            span.n { (text) }
            span.l { "Active keys \u{2264} " (CIS_KEY_ROTATION_DAYS) " days (CIS)" }
        }
    }
}

/// The "Compliance" section: the CIS share per account and in total, then
/// the two findings (see the module documentation).
fn compliance_section(report: &RunReport) -> Markup {
    html! {
        section #compliance aria-labelledby="compliance-h" {
            h2 #compliance-h { "Compliance" }
            @match &report.compliance {
                None => {
                    p.muted { "Not recorded: this report was finalized before keyfleet recorded compliance evidence." }
                }
                Some(s) => {
                    h3 { "Access keys rotated every " (CIS_KEY_ROTATION_DAYS) " days or less" }
                    p {
                        "Active access keys at most " (CIS_KEY_ROTATION_DAYS) " days old (CIS AWS Foundations Benchmark): "
                        strong { (compliance_text(Some(s.total))) } ". "
                        span.muted {
                            "Ages are taken when each account was scanned, before this run's actions; inactive keys are not counted. "
                            "The threshold is the benchmark's, not the rotation policy's."
                        }
                    }
                    table {
                        thead {
                            tr {
                                th scope="col" { "Account" } th scope="col" { "Name" }
                                th.num scope="col" { "Active keys" }
                                th.num scope="col" { "\u{2264} " (CIS_KEY_ROTATION_DAYS) " days" }
                                th.num scope="col" { "Share" }
                            }
                        }
                        tbody {
                            @for a in &report.accounts {
                                tr {
                                    td { a href=(format!("#{}", anchor(&a.account_id))) { code { (a.account_id) } } }
                                    td { (display_name(a)) }
                                    @match a.compliance {
                                        Some(c) => { (measure_cells(c)) }
                                        None => { td.muted colspan="3" { "not recorded" } }
                                    }
                                }
                            }
                        }
                        tfoot {
                            tr {
                                th scope="row" colspan="2" { "Total (" (report.accounts.len()) " accounts)" }
                                (measure_cells(s.total))
                            }
                        }
                    }
                    h3 #no-mfa-h { "Active access key, no MFA (" (s.keys_without_mfa.len()) ")" }
                    (findings_table(report, &s.keys_without_mfa, "no-mfa-h"))
                    h3 #console-keys-h { "Console password and active access key (" (s.console_users_with_keys.len()) ")" }
                    p.muted {
                        "A console password with a long-lived access key is a person rather than a workload: "
                        "give them access through IAM Identity Center, or a role, and remove the key."
                    }
                    (findings_table(report, &s.console_users_with_keys, "console-keys-h"))
                    @if let Some(unknown) = unknown_state_text(s) {
                        p.muted { (unknown) "." }
                    }
                }
            }
        }
    }
}

/// A CIS measure's three cells: active keys, those within, the share.
fn measure_cells(c: Compliance) -> Markup {
    html! {
        td.num { (c.active_keys) }
        td.num { (c.active_keys_within_90d) }
        td.num { (c.percent_text()) }
    }
}

/// The users of one finding, with their account, or "None."
fn findings_table(report: &RunReport, users: &[UserRef], labelled_by: &str) -> Markup {
    let name = |id: &str| {
        report
            .accounts
            .iter()
            .find(|a| a.account_id == id)
            .map(display_name)
            .unwrap_or_default()
    };
    html! {
        @if users.is_empty() {
            p { "None." }
        } @else {
            table aria-labelledby=(labelled_by) {
                thead { tr { th scope="col" { "Account" } th scope="col" { "Name" } th scope="col" { "User" } } }
                tbody {
                    @for u in users {
                        tr {
                            td { a href=(format!("#{}", anchor(&u.account_id))) { code { (u.account_id) } } }
                            td { (name(&u.account_id)) }
                            td { (u.user_name) }
                        }
                    }
                }
            }
        }
    }
}

fn state_badge(s: AccountState) -> Markup {
    html! { span class=(format!("badge st-{}", s.as_str())) { (label(s.as_str())) } }
}

fn state_explanation(a: &AccountReport) -> String {
    let base = match a.state {
        AccountState::Failed => "The agent could not process the account.",
        AccountState::Missing => "No result before the deadline: the agent did not report.",
        AccountState::NoAgent => "No agent: the account has no keyfleet-jobs queue.",
        AccountState::DispatchFailed => "The job could not be sent.",
        AccountState::Partial => "Some users failed; the others were processed.",
        AccountState::Ok => "No IAM users.",
    };
    match &a.error {
        Some(e) => format!("{base} {e}"),
        None => base.to_string(),
    }
}

fn user_errors(u: &UserReport) -> Vec<String> {
    let mut errors: Vec<String> = u.error.iter().cloned().collect();
    errors.extend(u.actions.iter().filter_map(|r| action_error(u, r)));
    errors
}

/// `kind: error` for a failed action, unless the user's error already says it.
fn action_error(u: &UserReport, r: &ActionRecord) -> Option<String> {
    match &r.result {
        Outcome::Failed { error } if !u.error.as_deref().unwrap_or("").contains(error.as_str()) => {
            Some(format!("{}: {error}", r.action.kind()))
        }
        _ => None,
    }
}

fn users_table(report: &RunReport, a: &AccountReport) -> Markup {
    html! {
        table {
            thead {
                tr {
                    th scope="col" { "User" } th scope="col" { "Path" } th scope="col" { "Email" }
                    th scope="col" { "Verdict" } th scope="col" { "Keys (oldest first)" }
                    th scope="col" { "Actions" } th scope="col" { "Error" } th scope="col" { "Note" }
                }
            }
            tbody {
                @for u in &a.users {
                    tr class=[user_failed(u).then_some("problem")] {
                        th scope="row" { (u.user_name) }
                        td { code { (u.path) } }
                        td { (u.email.as_deref().unwrap_or("")) }
                        td { (label(u.verdict.as_str())) }
                        td {
                            @if u.keys.is_empty() { span.muted { "none" } }
                            ul.plain {
                                @for k in &u.keys { li { (key_line(report, k)) } }
                            }
                        }
                        td {
                            ul.plain {
                                @for r in &u.actions {
                                    li {
                                        (action_text(r)) " "
                                        span class=(format!("o-{}", outcome_str(&r.result))) { (outcome_str(&r.result)) }
                                        @match &r.result {
                                            Outcome::Failed { error } => { br; span.err { (error) } }
                                            Outcome::Skipped { reason } => { " " span.muted { "(" (reason) ")" } }
                                            _ => {}
                                        }
                                    }
                                }
                            }
                        }
                        td.err { (u.error.as_deref().unwrap_or("")) }
                        td { (u.note.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}

fn key_line(report: &RunReport, k: &KeyState) -> Markup {
    let age = key_age_days(report.created_at, k.created);
    let used = match (k.last_used, &k.last_used_service, &k.last_used_region) {
        (Some(t), s, r) => {
            let mut where_ = String::new();
            if let Some(s) = s {
                where_.push_str(s);
            }
            if let Some(r) = r {
                if !where_.is_empty() {
                    where_.push_str(", ");
                }
                where_.push_str(r);
            }
            if where_.is_empty() {
                format!("last used {}", date_utc(t))
            } else {
                format!("last used {} ({where_})", date_utc(t))
            }
        }
        (None, ..) => "never used".to_string(),
    };
    html! {
        code { @if k.id.is_empty() { "(id not read)" } @else { (k.id) } }
        " " (key_status(k.status)) ", " (age) "d, " span.muted { (used) }
    }
}

fn action_text(r: &ActionRecord) -> String {
    match (&r.action, &r.result) {
        (Action::CreateKey, Outcome::Done { key_id: Some(id) }) => format!("create key {id}"),
        (Action::CreateKey, _) => "create key".to_string(),
        (Action::Deactivate { key_id }, _) => format!("deactivate {key_id}"),
        (Action::Delete { key_id }, _) => format!("delete {key_id}"),
        (Action::Reactivate { key_id }, _) => format!("reactivate {key_id}"),
        (Action::Notify { notice }, _) => {
            format!("notify {} ({})", label(notice.kind()), notice.key_id())
        }
    }
}

/// Vertical bars, one per age bucket, coloured by the policy's thresholds.
fn age_chart(report: &RunReport) -> Markup {
    let buckets = &report.key_age_histogram;
    let rotate = report.policy.rotate_after.as_secs() / 86_400;
    let deactivate = report.policy.deactivate_after.as_secs() / 86_400;
    let (w, h) = (560.0_f64, 230.0_f64);
    let (left, right, top, bottom) = (36.0, 8.0, 22.0, 40.0);
    let plot_h = h - top - bottom;
    let n = buckets.len().max(1) as f64;
    let slot = (w - left - right) / n;
    let max = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let desc = buckets
        .iter()
        .map(|b| format!("{}: {}", b.label, b.count))
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        svg role="img" aria-labelledby="age-title age-desc" viewBox=(format!("0 0 {w} {h}")) xmlns="http://www.w3.org/2000/svg" font-family="system-ui, Arial, sans-serif" font-size="12" {
            title #age-title { "Access keys by age in days" }
            desc #age-desc { (desc) }
            line x1=(left) y1=(top + plot_h) x2=(w - right) y2=(top + plot_h) stroke="#9aa0a6" {}
            text x="4" y=(top + 4.0) fill="#5f6368" { (max as u64) }
            text x="4" y=(top + plot_h) fill="#5f6368" { "0" }
            @for (i, b) in buckets.iter().enumerate() {
                @let bh = plot_h * b.count as f64 / max;
                @let x = left + slot * i as f64 + slot * 0.15;
                @let color = if b.from_days >= deactivate { "#c62828" } else if b.from_days >= rotate { "#e37400" } else { "#2e7d32" };
                rect x=(fmt1(x)) y=(fmt1(top + plot_h - bh)) width=(fmt1(slot * 0.7)) height=(fmt1(bh)) fill=(color) {
                    title { (b.label) ": " (b.count) " keys" }
                }
                text x=(fmt1(x + slot * 0.35)) y=(fmt1(top + plot_h - bh - 5.0)) text-anchor="middle" fill="#202124" { (b.count) }
                text x=(fmt1(x + slot * 0.35)) y=(fmt1(top + plot_h + 16.0)) text-anchor="middle" fill="#5f6368" { (b.label) }
            }
            text x=(left) y=(h - 6.0) fill="#5f6368" {
                "green: under " (rotate) "d, amber: due for rotation, red: " (deactivate) "d and older"
            }
        }
    }
}

/// Horizontal stacked bars: per action kind, done/planned, skipped, failed.
fn actions_chart(report: &RunReport) -> Markup {
    // kind -> [done, planned, skipped, failed]
    let mut by_kind: BTreeMap<&'static str, [u64; 4]> = BTreeMap::new();
    for k in ["create", "deactivate", "delete", "notify"] {
        by_kind.insert(k, [0; 4]);
    }
    for a in &report.accounts {
        for u in &a.users {
            for r in &u.actions {
                let slot = match r.result {
                    Outcome::Done { .. } => 0,
                    Outcome::Planned => 1,
                    Outcome::Skipped { .. } => 2,
                    Outcome::Failed { .. } => 3,
                };
                by_kind.entry(r.action.kind()).or_insert([0; 4])[slot] += 1;
            }
        }
    }
    let colors = ["#1a73e8", "#6b4fbb", "#9aa0a6", "#c62828"];
    let names = ["done", "planned", "skipped", "failed"];
    let (w, row_h) = (560.0_f64, 30.0_f64);
    let (left, right, top) = (90.0, 50.0, 8.0);
    let h = top + row_h * by_kind.len() as f64 + 34.0;
    let max = by_kind
        .values()
        .map(|v| v.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let scale = (w - left - right) / max;
    let desc = by_kind
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}: {} done, {} planned, {} skipped, {} failed",
                v[0], v[1], v[2], v[3]
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    struct Segment {
        x: f64,
        width: f64,
        color: &'static str,
        label: String,
    }
    let rows: Vec<(&str, u64, Vec<Segment>, f64)> = by_kind
        .iter()
        .map(|(kind, v)| {
            let mut x = left;
            let mut segments = Vec::new();
            for (j, count) in v.iter().enumerate().filter(|(_, c)| **c > 0) {
                let width = *count as f64 * scale;
                segments.push(Segment {
                    x,
                    width,
                    color: colors[j],
                    label: format!("{kind} {}: {count}", names[j]),
                });
                x += width;
            }
            (*kind, v.iter().sum::<u64>(), segments, x)
        })
        .collect();
    html! {
        svg role="img" aria-labelledby="actions-title actions-desc" viewBox=(format!("0 0 {w} {}", fmt1(h))) xmlns="http://www.w3.org/2000/svg" font-family="system-ui, Arial, sans-serif" font-size="12" {
            title #actions-title { "Actions by kind and outcome" }
            desc #actions-desc { (desc) }
            @for (i, (kind, sum, segments, end)) in rows.iter().enumerate() {
                @let y = top + row_h * i as f64;
                text x=(left - 8.0) y=(fmt1(y + 16.0)) text-anchor="end" fill="#202124" { (kind) }
                @for seg in segments {
                    rect x=(fmt1(seg.x)) y=(fmt1(y + 4.0)) width=(fmt1(seg.width)) height="18" fill=(seg.color) {
                        title { (seg.label) }
                    }
                }
                text x=(fmt1(end + 6.0)) y=(fmt1(y + 17.0)) fill="#202124" { (sum) }
            }
            @for (j, name) in names.iter().enumerate() {
                @let lx = left + 90.0 * j as f64;
                rect x=(fmt1(lx)) y=(fmt1(h - 22.0)) width="12" height="12" fill=(colors[j]) {}
                text x=(fmt1(lx + 16.0)) y=(fmt1(h - 12.0)) fill="#5f6368" { (name) }
            }
        }
    }
}

fn fmt1(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests;
