//! The report as one self-contained HTML page: inline CSS, inline SVG
//! charts, no script, no external resource; text escaped by maud. Problem
//! accounts and failed users come first, in a highlighted section; a
//! "Compliance" section after the accounts table holds the CIS share per
//! account and in total and the two findings. The stylesheet, cards and
//! charts are [`super::widgets`]'s, shared with the dashboard.

use super::widgets::{actions_chart, age_chart, card, date_utc, datetime_utc, share_card, CSS};
use super::{
    action_error, attention_users, compliance_text, display_name, key_status, label, outcome_str,
    problem_accounts, unknown_state_text, user_failed, AccountCounts,
};
use crate::outcome;
use keyfleet_protocol::messages::{JobMode, UserReport};
use keyfleet_protocol::plan::{Action, ActionRecord, KeyState, Notice, Outcome};
use keyfleet_protocol::report::{
    console_user_with_keys, key_age_days, keys_without_mfa, AccountReport, AccountState,
    Compliance, RunReport, UserRef, CIS_KEY_ROTATION_DAYS,
};
use maud::{html, Markup, PreEscaped, DOCTYPE};

/// Up to this many users the report is one page, each account's users in
/// a section of it; above, the page is a summary and each account has its
/// own page (`accounts/<id>.html`, [`account_page`]), so that the page a
/// person opens stays well under a megabyte whatever the organization's
/// size (500 accounts: about 500 KB).
pub const INLINE_USERS: u64 = 2_000;

/// The longest list the summary page shows in full (users that failed, the
/// users of a finding); a longer one shows its first rows and says how many
/// more there are, and where they are (the account pages, the CSV).
pub const LIST_ROWS: usize = 100;

/// Whether a report of this size is split into a summary and account pages.
pub fn is_split(report: &RunReport) -> bool {
    report.totals.users > INLINE_USERS
}

/// Where the summary page links an account: its section, or its page.
fn account_href(split: bool, account_id: &str) -> String {
    if split {
        format!("accounts/{account_id}.html")
    } else {
        format!("#{}", anchor(account_id))
    }
}

/// "…and 12 more": the line under a capped list, saying where the others
/// are: the account pages of a split report, the sections below otherwise.
fn more_rows(split: bool, shown: usize, total: usize, what: &str) -> Markup {
    let elsewhere = if split {
        "the account pages"
    } else {
        "\"Users by account\" below"
    };
    html! {
        @if total > shown {
            p.muted { "The first " (shown) " of " (total) " " (what) " are listed; the others are in " (elsewhere) " and in the CSV report." }
        }
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
/// The report's page: the whole report for a run of up to
/// [`INLINE_USERS`] users, the summary above that (see [`is_split`]).
pub fn to_html(report: &RunReport) -> String {
    let t = &report.totals;
    let split = is_split(report);
    let href = |id: &str| account_href(split, id);
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
    let (failed_users, failed_count) = attention_users(report);
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
                                                td { a href=(href(&a.account_id)) { code { (a.account_id) } } }
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
                                        @for (account_id, u) in failed_users.iter().take(LIST_ROWS) {
                                            tr.problem {
                                                td { a href=(href(account_id)) { code { (account_id) } } }
                                                td { (u.user_name) }
                                                td { (u.verdict.as_str()) }
                                                td.err { (user_errors(u).join("; ")) }
                                                td { (u.note.as_deref().unwrap_or("")) }
                                            }
                                        }
                                    }
                                }
                                (more_rows(split, LIST_ROWS, failed_count as usize, "users"))
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
                                        td { a href=(href(&a.account_id)) { code { (a.account_id) } } }
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
                    (compliance_section(report, split))
                    section aria-labelledby="users-h" {
                        h2 #users-h { "Users by account" }
                        @if split {
                            p { "With " (t.users) " users, each account's users are on the account's own page: follow its link in the accounts table." }
                        }
                        @for a in report.accounts.iter().filter(|_| !split) {
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
                    @if !report.mail_waiting.is_empty() {
                        section aria-labelledby="mail-waiting-h" {
                            h2 #mail-waiting-h { "Owner emails not all sent yet" }
                            p { "When the run was finalized, these accounts' owner emails were not all sent. The hourly sweep sends them, each once, as SES allows; an old key waits for its new key's delivery." }
                            table {
                                thead { tr { th scope="col" { "Account" } th scope="col" { "Why" } } }
                                tbody {
                                    @for w in &report.mail_waiting {
                                        tr { td { code { (w.account_id) } } td { (w.reason) } }
                                    }
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
                            dt { "Cutover on use" } dd {
                                @if report.policy.cutover_on_use {
                                    "on: an old key goes at the next run once only its replacement is used"
                                } @else { "off: an old key waits for its deactivation date" }
                            }
                            @if report.policy.cleanup { dt { "Mode" } dd { "initial clean-up" } }
                        }
                    }
                }
            }
        }
    };
    markup.into_string()
}
/// The "Compliance" section: the CIS share per account and in total, then
/// the two findings (see the module documentation).
fn compliance_section(report: &RunReport, split: bool) -> Markup {
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
                                th.num scope="col" { "No MFA" }
                                th.num scope="col" { "Console and key" }
                            }
                        }
                        tbody {
                            @for a in &report.accounts {
                                @let f = a.figures();
                                tr {
                                    td { a href=(account_href(split, &a.account_id)) { code { (a.account_id) } } }
                                    td { (display_name(a)) }
                                    @match a.compliance {
                                        Some(c) => { (measure_cells(c)) }
                                        None => { td.muted colspan="3" { "not recorded" } }
                                    }
                                    td.num { (f.keys_without_mfa) }
                                    td.num { (f.console_users_with_keys) }
                                }
                            }
                        }
                        tfoot {
                            tr {
                                th scope="row" colspan="2" { "Total (" (report.accounts.len()) " accounts)" }
                                (measure_cells(s.total))
                                td.num { (s.keys_without_mfa_count()) }
                                td.num { (s.console_users_with_keys_count()) }
                            }
                        }
                    }
                    h3 #no-mfa-h { "Active access key, no MFA (" (s.keys_without_mfa_count()) ")" }
                    (findings_table(report, &s.keys_without_mfa, s.keys_without_mfa_count(), "no-mfa-h", split))
                    h3 #console-keys-h { "Console password and active access key (" (s.console_users_with_keys_count()) ")" }
                    p.muted {
                        "A console password with a long-lived access key is a person rather than a workload: "
                        "give them access through IAM Identity Center, or a role, and remove the key."
                    }
                    (findings_table(report, &s.console_users_with_keys, s.console_users_with_keys_count(), "console-keys-h", split))
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
fn findings_table(
    report: &RunReport,
    users: &[UserRef],
    count: u64,
    labelled_by: &str,
    split: bool,
) -> Markup {
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
                    @for u in users.iter().take(LIST_ROWS) {
                        tr {
                            td { a href=(account_href(split, &u.account_id)) { code { (u.account_id) } } }
                            td { (name(&u.account_id)) }
                            td { (u.user_name) }
                        }
                    }
                }
            }
            (more_rows(split, LIST_ROWS.min(users.len()), count as usize, "users"))
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

/// One account's page of a split report (see [`is_split`]), stored beside
/// the summary as `accounts/<id>.html`: the account's state, its users with
/// their keys and actions, and its users in the two compliance findings.
pub fn account_page(report: &RunReport, a: &AccountReport) -> String {
    let title = format!(
        "keyfleet run {} \u{2014} {} {}",
        report.run_id,
        display_name(a),
        a.account_id
    );
    let in_account = |finding: fn(&UserReport) -> bool| -> Vec<UserRef> {
        a.users
            .iter()
            .filter(|u| finding(u))
            .map(|u| UserRef {
                account_id: a.account_id.clone(),
                user_name: u.user_name.clone(),
            })
            .collect()
    };
    let c = AccountCounts::of(a);
    html! {
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
                    p.sub { a #summary-link href="../report.html" { "\u{2190} run " (report.run_id) } }
                    h1 { (display_name(a)) " " code { (a.account_id) } " " (state_badge(a.state)) }
                    p.sub {
                        "Run started " (datetime_utc(report.created_at))
                        ", finalized " (datetime_utc(report.finalized_at)) "."
                        @if report.dry_run { " " span.badge.dry { "DRY RUN" } }
                    }
                }
                main {
                    ul.cards {
                        (card("Users", c.users, false))
                        (card("New keys", c.rotated, false))
                        (card("Deactivated", c.deactivated, false))
                        (card("Deleted", c.deleted, false))
                        (card("Failures", c.failures, c.failures > 0))
                        (share_card(a.compliance))
                    }
                    section aria-labelledby="users-h" {
                        h2 #users-h { "Users" }
                        @if a.users.is_empty() {
                            p class=[a.state.is_problem().then_some("err")] { (state_explanation(a)) }
                        } @else {
                            @if let Some(e) = &a.error { p.err { (e) } }
                            (users_table(report, a))
                        }
                    }
                    @if report.compliance.is_some() {
                        section aria-labelledby="findings-h" {
                            h2 #findings-h { "Compliance findings" }
                            h3 #no-mfa-h { "Active access key, no MFA" }
                            (account_findings(&in_account(keys_without_mfa)))
                            h3 #console-keys-h { "Console password and active access key" }
                            (account_findings(&in_account(console_user_with_keys)))
                        }
                    }
                }
            }
        }
    }
    .into_string()
}

/// The users of one finding in one account, or "None."
fn account_findings(users: &[UserRef]) -> Markup {
    html! {
        @if users.is_empty() {
            p { "None." }
        } @else {
            ul { @for u in users { li { (u.user_name) } } }
        }
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
        (
            Action::Notify {
                notice:
                    Notice::StillInUse {
                        key_id, used_from, ..
                    },
            },
            _,
        ) if !used_from.is_empty() => {
            let places: Vec<String> = used_from.iter().map(|s| s.describe()).collect();
            format!(
                "notify {} ({key_id}), used from: {}",
                label("still_in_use"),
                places.join("; ")
            )
        }
        (Action::Notify { notice }, _) => {
            format!("notify {} ({})", label(notice.kind()), notice.key_id())
        }
    }
}
