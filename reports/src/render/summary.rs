//! The bodies of the security team's summary email: its subject, a plain
//! text part and an HTML part, from the report. The coordinator wraps them
//! into the message (addresses, headers, the CSV attached); the HTML part
//! carries [`widgets::email`]'s inline styles, since mail clients drop
//! `<style>`.

use super::widgets::{self, datetime_utc};
use super::{
    compliance_text, finding_counts, label, one_line, plural, problem_accounts, unknown_state_text,
};
use crate::outcome;
use keyfleet_protocol::report::{AccountReport, AccountState, RunReport, CIS_KEY_ROTATION_DAYS};
use std::fmt::Write as _;

/// How the summary carries the CSV report: attached, or, when it is larger
/// than the team's mail servers take, as a link to where it is stored.
/// SES sends messages up to 40 MB, but many mail servers refuse more than
/// 10 to 25 MB, and base64 makes an attachment a third larger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvReport<'a> {
    Attached(&'a [u8]),
    Linked { url: &'a str, bytes: usize },
}

impl<'a> CsvReport<'a> {
    /// Attached when at most `max_bytes`, else linked to `url`.
    pub fn choose(csv: &'a [u8], max_bytes: usize, url: &'a str) -> CsvReport<'a> {
        if csv.len() <= max_bytes {
            CsvReport::Attached(csv)
        } else {
            CsvReport::Linked {
                url,
                bytes: csv.len(),
            }
        }
    }
}

/// `12.3 MB`: a size as people read it (decimal megabytes, as mail limits
/// are given).
fn megabytes(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

/// What [`summary`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The name the CSV report is attached under (when it is).
    pub csv_name: String,
}

/// The summary of `report`; `report_url` links the HTML report, `footer`
/// ends both parts (the coordinator's mail footer).
pub fn summary(
    report: &RunReport,
    csv: CsvReport<'_>,
    report_url: Option<&str>,
    footer: &str,
) -> Summary {
    let t = &report.totals;
    let problems = problem_accounts(report);
    let rotated = t.by_verdict.get("rotated").copied().unwrap_or(0);
    let failure = outcome::run_failure(report).zip(outcome::describe(report));
    let dry = if report.dry_run { " [DRY RUN]" } else { "" };
    let subject = match &failure {
        Some((f, _)) => format!(
            "[keyfleet]{dry} FAILED: Run {}: {}",
            report.run_id,
            f.headline()
        ),
        None => format!(
            "[keyfleet]{dry} Run {}: {}, {} need attention, {} rotated, {}",
            report.run_id,
            plural(t.accounts, "account"),
            problems.len(),
            plural(rotated, "user"),
            plural(t.failed_actions, "failed action"),
        ),
    };

    let mut text = String::new();
    let _ = writeln!(
        text,
        "keyfleet run {}{}\nStarted {}, finalized {}{}.\n",
        report.run_id,
        if report.dry_run {
            " (DRY RUN: nothing was changed)"
        } else {
            ""
        },
        datetime_utc(report.created_at),
        datetime_utc(report.finalized_at),
        if report.complete {
            ""
        } else {
            "; INCOMPLETE: some accounts did not report"
        }
    );
    if let Some((_, description)) = &failure {
        let _ = writeln!(text, "RUN FAILED: {}\n", one_line(description));
    }
    let _ = writeln!(text, "Accounts:   {}", t.accounts);
    for (label, n) in account_counts(report) {
        let _ = writeln!(text, "  {label:<22}{n}");
    }
    let _ = writeln!(
        text,
        "Users:      {}\nKeys:       {} ({} active)\nFailed actions: {}\n",
        t.users, t.keys, t.active_keys, t.failed_actions
    );
    summary_compliance_text(&mut text, report);
    let _ = writeln!(text, "Users by verdict:");
    for (verdict, n) in t.by_verdict.iter().filter(|(_, n)| **n > 0) {
        let _ = writeln!(text, "  {verdict:<22}{n}");
    }
    let _ = writeln!(text, "\nActions by kind:");
    if t.actions_by_kind.is_empty() {
        let _ = writeln!(text, "  none");
    }
    for (kind, n) in &t.actions_by_kind {
        let _ = writeln!(text, "  {kind:<22}{n}");
    }
    if !problems.is_empty() {
        let _ = writeln!(text, "\nAccounts that need attention:");
        for a in &problems {
            let _ = writeln!(
                text,
                "  {} {:<16} {}{}",
                a.account_id,
                a.state.as_str(),
                display_name(&a.name, a.alias.as_deref()),
                a.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
    }
    if !report.mail_waiting.is_empty() {
        let _ = writeln!(
            text,
            "\nOwner emails not all sent yet (the hourly sweep sends them as SES allows):"
        );
        for w in &report.mail_waiting {
            let _ = writeln!(text, "  {} {}", w.account_id, one_line(&w.reason));
        }
    }
    let csv_name = format!("keyfleet-{}.csv", report.run_id);
    match csv {
        CsvReport::Attached(_) => {
            let _ = write!(text, "\nThe full report is attached as {csv_name}");
            match report_url {
                Some(url) => {
                    let _ = writeln!(text, "; the HTML report is at\n{url}");
                }
                None => {
                    let _ = writeln!(text, ".");
                }
            }
        }
        CsvReport::Linked { url, bytes } => {
            let _ = writeln!(
                text,
                "\nThe full report (CSV, {}) is too large to attach; it is at\n{url}",
                megabytes(bytes)
            );
            if let Some(url) = report_url {
                let _ = writeln!(text, "The HTML report is at\n{url}");
            }
        }
    }
    let _ = writeln!(text, "\n{footer}");

    let html = summary_html(
        report,
        failure.as_ref().map(|(_, d)| d.as_str()),
        &problems,
        &csv_name,
        csv,
        report_url,
        footer,
    );
    Summary {
        subject,
        text,
        html,
        csv_name,
    }
}

/// The summary's compliance lines: the CIS share of active keys at most
/// 90 days old and the counts of the two findings (the HTML report lists
/// the users), or that a report predating them did not record them.
fn summary_compliance_text(text: &mut String, report: &RunReport) {
    let Some(s) = &report.compliance else {
        let _ = writeln!(text, "Compliance: not recorded in this report\n");
        return;
    };
    let _ = writeln!(
        text,
        "Compliance:\n  Active keys at most {CIS_KEY_ROTATION_DAYS} days old (CIS): {}",
        compliance_text(Some(s.total)),
    );
    for (label, n) in finding_counts(s) {
        let _ = writeln!(text, "  {:<32} {n}", format!("{label}:"));
    }
    if let Some(unknown) = unknown_state_text(s) {
        let _ = writeln!(text, "  {unknown}.");
    }
    text.push('\n');
}

fn summary_html(
    report: &RunReport,
    failure: Option<&str>,
    problems: &[&AccountReport],
    csv_name: &str,
    csv: CsvReport<'_>,
    report_url: Option<&str>,
    footer: &str,
) -> String {
    use maud::{html, DOCTYPE};
    let t = &report.totals;
    let cell = widgets::email::CELL;
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "keyfleet run " (report.run_id) } }
            body style=(widgets::email::BODY) {
                h2 style="margin:0 0 4px 0" {
                    "keyfleet run " (report.run_id)
                    @if report.dry_run {
                        " " span style=(widgets::email::DRY_BADGE) { "DRY RUN" }
                    }
                }
                p style="margin:0 0 12px 0;color:#555" {
                    "Finalized " (datetime_utc(report.finalized_at))
                    @if !report.complete { strong style="color:#b00020" { " - incomplete: some accounts did not report" } }
                }
                @if let Some(description) = failure {
                    p style="margin:0 0 12px 0;color:#b00020;font-weight:bold" { "Run failed: " (description) }
                }
                table style="border-collapse:collapse;margin-bottom:12px" {
                    tr { th scope="row" style=(cell) { "Accounts" } td style=(cell) { (t.accounts) } }
                    @for (label, n) in account_counts(report) {
                        tr { th scope="row" style=(format!("{cell};font-weight:normal;padding-left:12px")) { (label) } td style=(cell) { (n) } }
                    }
                    tr { th scope="row" style=(cell) { "Users" } td style=(cell) { (t.users) } }
                    tr { th scope="row" style=(cell) { "Keys (active)" } td style=(cell) { (t.keys) " (" (t.active_keys) ")" } }
                    tr { th scope="row" style=(cell) { "Failed actions" } td style=(cell) { (t.failed_actions) } }
                    tr {
                        th scope="row" style=(cell) { "Active keys \u{2264} " (CIS_KEY_ROTATION_DAYS) " days (CIS)" }
                        td style=(cell) { (compliance_text(report.compliance.as_ref().map(|s| s.total))) }
                    }
                    @if let Some(s) = &report.compliance {
                        @for (label, n) in finding_counts(s) {
                            tr { th scope="row" style=(cell) { (label) } td style=(cell) { (n) } }
                        }
                        @if let Some(unknown) = unknown_state_text(s) {
                            tr { td colspan="2" style=(format!("{cell};color:#555")) { (unknown) "." } }
                        }
                    }
                    @for (verdict, n) in t.by_verdict.iter().filter(|(_, n)| **n > 0) {
                        tr { th scope="row" style=(cell) { "Users " (label(verdict)) } td style=(cell) { (n) } }
                    }
                    @for (kind, n) in &t.actions_by_kind {
                        tr { th scope="row" style=(cell) { "Actions " (kind) } td style=(cell) { (n) } }
                    }
                }
                @if !problems.is_empty() {
                    h3 style="color:#b00020;margin:12px 0 4px 0" { "Accounts that need attention" }
                    table style="border-collapse:collapse" {
                        tr { th scope="col" style=(cell) { "Account" } th scope="col" style=(cell) { "Name" } th scope="col" style=(cell) { "State" } th scope="col" style=(cell) { "Error" } }
                        @for a in problems {
                            tr {
                                td style=(cell) { (a.account_id) }
                                td style=(cell) { (display_name(&a.name, a.alias.as_deref())) }
                                td style=(cell) { (a.state.as_str()) }
                                td style=(cell) { (a.error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
                @if !report.mail_waiting.is_empty() {
                    h3 style="color:#b00020;margin:12px 0 4px 0" { "Owner emails not all sent yet" }
                    p { "The hourly sweep sends them, each once, as SES allows." }
                    table style="border-collapse:collapse" {
                        tr { th scope="col" style=(cell) { "Account" } th scope="col" style=(cell) { "Why" } }
                        @for w in &report.mail_waiting {
                            tr { td style=(cell) { (w.account_id) } td style=(cell) { (w.reason) } }
                        }
                    }
                }
                p {
                    @match csv {
                        CsvReport::Attached(_) => { "The full report is attached as " code { (csv_name) } "." }
                        CsvReport::Linked { url, bytes } => {
                            "The full report (CSV, " (megabytes(bytes)) ") is too large to attach; it is at "
                            a href=(url) { (url) } "."
                        }
                    }
                    @if let Some(url) = report_url {
                        " " a href=(url) { "Open the HTML report" } "."
                    }
                }
                p style=(widgets::email::FOOTER) { (footer) }
            }
        }
    }
    .into_string()
}

fn account_counts(report: &RunReport) -> Vec<(&'static str, u64)> {
    let t = &report.totals;
    let dispatch_failed = report
        .accounts
        .iter()
        .filter(|a| a.state == AccountState::DispatchFailed)
        .count() as u64;
    [
        ("ok", t.accounts_ok),
        ("partial", t.accounts_partial),
        (
            "failed",
            t.accounts_failed - dispatch_failed.min(t.accounts_failed),
        ),
        ("dispatch failed", dispatch_failed),
        ("missing (no result)", t.accounts_missing),
        ("no agent", t.accounts_no_agent),
        ("skipped (excluded)", t.accounts_skipped),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect()
}

/// `Payments Prod (payments)`, made safe for one line of text.
fn display_name(name: &str, alias: Option<&str>) -> String {
    let name = one_line(name);
    let alias = alias.map(one_line);
    let alias = alias.as_deref();
    match (name.is_empty(), alias) {
        (false, Some(a)) if a != name => format!("{name} ({a})"),
        (true, Some(a)) => a.to_string(),
        _ => name,
    }
}
