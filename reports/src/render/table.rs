//! The report as a plain-text table for a terminal: one line per account,
//! the totals (with the CIS share and the findings' counts), then a
//! `notes:` line per user that has a note. Control characters in names are
//! replaced, so a crafted account name cannot send escape sequences to the
//! terminal.

use super::widgets::datetime_utc;
use super::{compliance_text, display_name, plural, unknown_state_text, AccountCounts};
use crate::outcome;
use keyfleet_protocol::messages::UserReport;
use keyfleet_protocol::report::{AccountReport, RunReport, CIS_KEY_ROTATION_DAYS};
use std::fmt::Write as _;

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
            plural(s.keys_without_mfa_count(), "user"),
            plural(s.console_users_with_keys_count(), "user")
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
