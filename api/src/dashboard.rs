//! The dashboard at `/`: server-rendered HTML, readable without script
//! (the pages carry none, and their Content-Security-Policy allows none).
//!
//! - the latest scheduled run: id, times, totals, the state of every
//!   account;
//! - accounts and users, filtered by a plain GET form
//!   (`/?account=...&verdict=...&min_age=...`, and `run=<id>` to show a
//!   given finalized run instead of the newest scheduled one; `select#account`,
//!   `select#verdict`, `input#min_age`, `button#apply`), keys as of the end
//!   of the run, one page of [`PAGE_ROWS`] users at a time (see "Pages"
//!   below);
//! - key ages (the report's `key_age_histogram`) as the HTML report's
//!   bar chart;
//! - compliance over the last [`TREND_RUNS`] finalized scheduled runs
//!   (the report's CIS figure, see [`crate::inventory::compliance`]) as an
//!   inline SVG line, with the same figures in a table;
//! - every finalized run with links to its JSON, CSV and HTML report.
//!
//! Its stylesheet, cards, charts and dates are the report's
//! ([`keyfleet_reports::render::widgets`]), so the dashboard and the HTML
//! report look alike.
//!
//! A browser without a session gets the login form (`POST /login`, see
//! [`crate::auth`]). Links start with the [`crate::routes::BasePath`] the
//! request was mounted at, so the pages work behind an API Gateway stage.
//!
//! # Pages
//!
//! An organization of 500 accounts of 100 users has 50,000 users: the
//! users table shows the page `?page=` asks for (from 1; empty or absent:
//! the first), at most [`PAGE_ROWS`] rows, says which ("rows 101–200 of
//! 50000 users") and links to the previous (`a#prev`) and the next page
//! (`a#next`). The links keep the filter (`run`, `account`, `verdict`,
//! `min_age`, those set) and the base path, and end in `#users`, so the
//! browser lands on the table rather than on the summary above it. The
//! filter form carries no page: applying a filter starts at page 1.
//! Only the page's rows are built and rendered, whatever the page number.
//!
//! A `page` that is not a number from 1 (`0`, `x`, `-1`, `1.5`, one past
//! `usize`) is a 400 page, like the other filter parameters. A page past
//! the last is not: the link that asked for it was well formed when it was
//! made, and the newest scheduled run or the filter's rows may have
//! changed since (a bookmark, a reload the next day). It shows the table
//! empty, says there are no rows on that page, and links back to the last
//! page (`a#back`), or to none when nothing matches the filter (page 1 is
//! then the one empty page).
//!
//! **The pages link only outside `/v1`**: to the stored reports
//! (`/runs/{id}/report.{json,csv,html}`) and the key inventory
//! (`/export.csv`, `/export.json`), which take the session cookie. In
//! production API Gateway wants a SigV4 signature on every `/v1` path,
//! which a browser following a link cannot make, and the API's routes
//! (`/v1` and `/keys/v1`) take no cookie. The users table shows each
//! user's keys in place, so it links to no per-user read.

use crate::auth::Denied;
use crate::inventory::{self, oldest_key_age, parse_verdict};
use crate::middleware;
use crate::routes::DashboardQuery;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use keyfleet_protocol::plan::{KeyState, Verdict};
use keyfleet_protocol::report::{AccountReport, RunReport};
use keyfleet_protocol::UserReport;
use keyfleet_reports::read::finalized::RunSummary;
use keyfleet_reports::render::widgets::{self, card, datetime_utc, TrendPoint};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use std::num::NonZeroUsize;
use std::sync::Arc;

/// Users on a page of the users table (see "Pages" in the module doc).
pub const PAGE_ROWS: usize = 100;
/// Runs in the compliance trend.
pub const TREND_RUNS: usize = 30;

/// The users table's filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The run shown, when not the newest scheduled one (`?run=`).
    pub run: Option<String>,
    pub account: Option<String>,
    pub verdict: Option<Verdict>,
    pub min_age: Option<u64>,
    /// The page of the users table (`?page=`, from 1); `None`: the first.
    pub page: Option<NonZeroUsize>,
}

impl Filter {
    /// From the query; empty values mean "all".
    pub(crate) fn parse(q: &DashboardQuery) -> Result<Filter, String> {
        let some = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let run = some(&q.run);
        if let Some(r) = &run {
            if !keyfleet_protocol::is_run_id(r) {
                return Err("run must be a run id".into());
            }
        }
        let account = some(&q.account);
        if let Some(a) = &account {
            if !keyfleet_protocol::is_account_id(a) {
                return Err("account must be an AWS account id (12 digits)".into());
            }
        }
        let verdict = match some(&q.verdict) {
            None => None,
            Some(v) => Some(parse_verdict(&v).ok_or_else(|| {
                format!(
                    "verdict must be one of {}",
                    Verdict::ALL.map(|v| v.as_str()).join(", ")
                )
            })?),
        };
        let min_age = match some(&q.min_age) {
            None => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .ok()
                    .filter(|d| *d <= 100_000)
                    .ok_or("min_age must be a number of days")?,
            ),
        };
        let page = match some(&q.page) {
            None => None,
            Some(v) => Some(
                v.parse::<NonZeroUsize>()
                    .map_err(|_| "page must be a page number: 1, 2, 3, ...")?,
            ),
        };
        Ok(Filter {
            run,
            account,
            verdict,
            min_age,
            page,
        })
    }

    /// The dashboard's address of `page` of this filter's users table,
    /// under `base`. The values were checked by `Filter::parse` (run
    /// ids, account ids, verdicts and numbers hold nothing a query must
    /// escape).
    pub fn page_href(&self, base: &str, page: usize) -> String {
        let mut q = Vec::new();
        if let Some(r) = &self.run {
            q.push(format!("run={r}"));
        }
        if let Some(a) = &self.account {
            q.push(format!("account={a}"));
        }
        if let Some(v) = self.verdict {
            q.push(format!("verdict={}", v.as_str()));
        }
        if let Some(d) = self.min_age {
            q.push(format!("min_age={d}"));
        }
        q.push(format!("page={page}"));
        format!("{base}/?{}#users", q.join("&"))
    }
}

/// Where a page of the users table falls among the rows the filter keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// The page asked for, from 1.
    pub number: usize,
    /// The pages the rows fill: at least 1 (no rows is one empty page).
    pub pages: usize,
    /// The rows the filter keeps.
    pub total: usize,
    /// This page's rows are `start..end` of them; none past the last page.
    pub start: usize,
    pub end: usize,
}

impl Page {
    /// Page `number` (from 1; 0 counts as 1) of `total` rows.
    pub fn of(total: usize, number: usize) -> Page {
        let number = number.max(1);
        let start = (number - 1).saturating_mul(PAGE_ROWS).min(total);
        Page {
            number,
            pages: total.div_ceil(PAGE_ROWS).max(1),
            total,
            start,
            end: start.saturating_add(PAGE_ROWS).min(total),
        }
    }

    pub fn past_the_end(&self) -> bool {
        self.number > self.pages
    }
}

/// What the dashboard shows.
pub struct View<'a> {
    pub base: &'a str,
    /// The newest finalized scheduled run.
    pub latest: Option<&'a RunReport>,
    /// Every finalized run, newest first.
    pub runs: &'a [Arc<RunSummary>],
    pub filter: &'a Filter,
}

/// One user row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub account_id: String,
    pub account_name: String,
    pub user_name: String,
    pub path: String,
    pub verdict: Verdict,
    pub oldest_age: Option<u64>,
    pub keys: Vec<inventory::KeyView>,
}

/// A user the filter keeps, before its row is built.
struct Kept<'r> {
    account: &'r AccountReport,
    user: &'r UserReport,
    keys: Vec<KeyState>,
    oldest: Option<u64>,
}

impl Kept<'_> {
    fn row(&self, report: &RunReport) -> UserRow {
        UserRow {
            account_id: self.account.account_id.clone(),
            account_name: self.account.name.clone(),
            user_name: self.user.user_name.clone(),
            path: self.user.path.clone(),
            verdict: self.user.verdict,
            oldest_age: self.oldest,
            keys: self
                .keys
                .iter()
                .map(|k| inventory::KeyView::of(self.user, k, report.finalized_at))
                .collect(),
        }
    }
}

/// The users of `report` that pass `filter` (all but its page), in report
/// order.
fn kept<'r>(report: &'r RunReport, filter: &Filter) -> Vec<Kept<'r>> {
    let mut out = Vec::new();
    for a in &report.accounts {
        if filter.account.as_ref().is_some_and(|f| *f != a.account_id) {
            continue;
        }
        let created = inventory::account_time(report, a);
        for u in &a.users {
            if filter.verdict.is_some_and(|v| v != u.verdict) {
                continue;
            }
            let mut keys = inventory::keys_after_run(u, created);
            keys.sort_by_key(|k| k.created);
            let oldest = oldest_key_age(&keys, report.finalized_at);
            if let Some(min) = filter.min_age {
                if oldest.is_none_or(|age| age < min) {
                    continue;
                }
            }
            out.push(Kept {
                account: a,
                user: u,
                keys,
                oldest,
            });
        }
    }
    out
}

/// The users of `report` that pass `filter` (all but its page), in report
/// order.
pub fn user_rows(report: &RunReport, filter: &Filter) -> Vec<UserRow> {
    kept(report, filter).iter().map(|k| k.row(report)).collect()
}

/// The page of [`user_rows`] that `filter` asks for, and where it falls;
/// only that page's rows are built.
pub fn user_page(report: &RunReport, filter: &Filter) -> (Vec<UserRow>, Page) {
    let kept = kept(report, filter);
    let page = Page::of(kept.len(), filter.page.map_or(1, NonZeroUsize::get));
    let rows = kept[page.start..page.end]
        .iter()
        .map(|k| k.row(report))
        .collect();
    (rows, page)
}

fn page(title: &str, base: &str, logged_in: bool, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(widgets::CSS)) (PreEscaped(widgets::DASHBOARD_CSS)) }
            }
            body {
                header.bar-top {
                    h1 { a href=(format!("{base}/")) { "keyfleet" } " — " (title) }
                    @if logged_in {
                        form method="post" action=(format!("{base}/logout")) {
                            button #logout type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
    .into_string()
}

/// The dashboard page.
pub fn render(v: &View<'_>) -> String {
    let base = v.base;
    let body = html! {
        @match v.latest {
            None => section #summary {
                h2 { "Latest scheduled run" }
                p { "No scheduled run has been finalized yet." }
            },
            Some(r) => {
                (summary(r, base, v.filter.run.is_some()))
                (accounts(r, base))
                (age_chart(r))
            },
        }
        (trend(v.runs))
        @if let Some(r) = v.latest {
            (users(r, v.filter, base))
        }
        (runs(v.runs, base))
    };
    page("dashboard", base, true, body)
}

fn summary(r: &RunReport, base: &str, chosen: bool) -> Markup {
    let t = &r.totals;
    let c = inventory::compliance(r);
    html! {
        section #summary {
            h2 { @if chosen { "Run " (r.run_id) } @else { "Latest scheduled run" } }
            p {
                "Run " a #latest-run href=(format!("{base}/runs/{}/report.json", r.run_id)) { code { (r.run_id) } }
                ", started " (datetime_utc(r.created_at)) ", finalized " (datetime_utc(r.finalized_at)) ". "
                a href=(format!("{base}/runs/{}/report.html", r.run_id)) { "HTML report" } " · "
                a href=(format!("{base}/runs/{}/report.csv", r.run_id)) { "CSV" } " · "
                @if r.schema >= 2 {
                    a href=(format!("{base}/runs/{}/report.jsonl", r.run_id)) { "JSON Lines" } " · "
                }
                a #export-csv href=(format!("{base}/export.csv")) { "key inventory (CSV)" } " · "
                a #export-json href=(format!("{base}/export.json")) { "(JSON)" }
                @if !r.complete { " " span .bad { "Incomplete: some accounts did not report." } }
            }
            ul .cards {
                (card("accounts", t.accounts, false))
                (card("accounts ok", t.accounts_ok, false))
                (card("partial", t.accounts_partial, t.accounts_partial > 0))
                (card("failed", t.accounts_failed, t.accounts_failed > 0))
                (card("missing", t.accounts_missing, t.accounts_missing > 0))
                (card("no agent", t.accounts_no_agent, t.accounts_no_agent > 0))
                (card("users", t.users, false))
                (card("keys", t.keys, false))
                (card("active keys", t.active_keys, false))
                (card("failed actions", t.failed_actions, t.failed_actions > 0))
                li #compliance class=[(c.active_keys_within_90d < c.active_keys).then_some("bad")] {
                    span.n { (c.percent_text) }
                    span.l {
                        "keys rotated in 90 days: "
                        (c.active_keys_within_90d) " of " (c.active_keys) " active keys (CIS)"
                        @if !c.recorded { "; recomputed: the report predates the figure" }
                    }
                }
            }
        }
    }
}

/// The run's accounts: the first [`PAGE_ROWS`] in report order (those
/// that need attention come first), with the count and the HTML report,
/// which lists every one, for the rest: like the users table, the page
/// never grows with the organization.
fn accounts(r: &RunReport, base: &str) -> Markup {
    html! {
        section #accounts {
            h2 { "Accounts" }
            table {
                thead { tr { th { "account" } th { "name" } th { "state" } th { "users" } th { "keys" } th { "error" } } }
                tbody {
                    @for a in r.accounts.iter().take(PAGE_ROWS) {
                        @let f = a.figures();
                        tr {
                            td { code { (a.account_id) } }
                            td { (a.name) }
                            td class=(if a.state.is_problem() { "bad" } else { "state-ok" }) { (a.state.as_str().replace('_', " ")) }
                            td { (f.users) }
                            td { (f.keys) }
                            td { (a.error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
            @if r.accounts.len() > PAGE_ROWS {
                p .note #more-accounts {
                    "The first " (PAGE_ROWS) " of " (r.accounts.len()) " accounts, those that need attention first; "
                    a href=(format!("{base}/runs/{}/report.html", r.run_id)) { "the HTML report" }
                    " lists every one, and the users table below filters by account."
                }
            }
        }
    }
}

fn age_chart(r: &RunReport) -> Markup {
    html! {
        section #age {
            h2 { "Key ages" }
            p .note { "Keys found by the run, by age in days at the start of the run." }
            div.chart { (widgets::age_chart(r)) }
        }
    }
}

/// The last [`TREND_RUNS`] scheduled runs, oldest first.
pub fn trend_points(runs: &[Arc<RunSummary>]) -> Vec<&RunSummary> {
    let mut points: Vec<&RunSummary> = runs
        .iter()
        .filter(|s| s.is_scheduled())
        .take(TREND_RUNS)
        .map(|s| s.as_ref())
        .collect();
    points.reverse();
    points
}

fn trend(runs: &[Arc<RunSummary>]) -> Markup {
    let points = trend_points(runs);
    let n = points.len();
    let chart: Vec<TrendPoint<'_>> = points
        .iter()
        .map(|p| TrendPoint {
            label: &p.run_id,
            percent: p.compliance.percent,
            percent_text: &p.compliance.percent_text,
        })
        .collect();
    html! {
        section #trend {
            h2 { "Compliance over the last " (n) " scheduled runs" }
            p .note { "CIS AWS Foundations: the share of active keys at most 90 days old, as each run found them." }
            @if n > 0 {
                (widgets::compliance_chart(&chart))
                table #trend-table {
                    thead { tr { th { "run" } th { "finalized" } th { "compliant" } th { "active keys" } } }
                    tbody {
                        @for p in points.iter().rev() {
                            tr {
                                td { code { (p.run_id) } }
                                td { (datetime_utc(p.finalized_at)) }
                                td { (p.compliance.percent_text) }
                                td { (p.compliance.active_keys) }
                            }
                        }
                    }
                }
            } @else {
                p { "No scheduled run yet." }
            }
        }
    }
}

fn users(r: &RunReport, f: &Filter, base: &str) -> Markup {
    let (rows, p) = user_page(r, f);
    let noun = |n: usize| if n == 1 { "user" } else { "users" };
    html! {
        section #users {
            h2 { "Users" }
            form .filters #filters method="get" action=(format!("{base}/")) {
                @if let Some(run) = &f.run {
                    input type="hidden" name="run" value=(run);
                }
                label for="account" { "Account " }
                select #account name="account" {
                    option value="" selected[f.account.is_none()] { "all accounts" }
                    @for a in &r.accounts {
                        option value=(a.account_id) selected[f.account.as_deref() == Some(a.account_id.as_str())] {
                            (a.account_id) @if !a.name.is_empty() { " — " (a.name) }
                        }
                    }
                }
                " "
                label for="verdict" { "Verdict " }
                select #verdict name="verdict" {
                    option value="" selected[f.verdict.is_none()] { "any verdict" }
                    @for v in Verdict::ALL {
                        option value=(v.as_str()) selected[f.verdict == Some(v)] { (v.as_str().replace('_', " ")) }
                    }
                }
                " "
                label for="min_age" { "Oldest key at least " }
                input #min_age name="min_age" type="number" min="0" size="5" value=[f.min_age];
                " days "
                button #apply type="submit" { "Apply" }
            }
            p #user-count .note {
                @if p.total == 0 {
                    "0 users"
                } @else if p.past_the_end() {
                    "No rows on page " (p.number) ": " (p.total) " " (noun(p.total))
                    " fill " (p.pages) @if p.pages == 1 { " page" } @else { " pages" } ". "
                    a #back href=(f.page_href(base, p.pages)) { "Back to page " (p.pages) }
                } @else {
                    "rows " (p.start + 1) "–" (p.end) " of " (p.total) " " (noun(p.total))
                    @if p.pages > 1 { ", page " (p.number) " of " (p.pages) }
                }
            }
            (pager(&p, f, base, true))
            table #user-table {
                thead { tr { th { "account" } th { "user" } th { "verdict" } th { "keys (as of the end of the run)" } } }
                tbody {
                    @for u in &rows {
                        tr data-account=(u.account_id) {
                            td { code { (u.account_id) } @if !u.account_name.is_empty() { br; span .note { (u.account_name) } } }
                            td {
                                (u.user_name)
                                @if u.path != "/" { br; span .note { (u.path) } }
                            }
                            td { (u.verdict.as_str().replace('_', " ")) }
                            td {
                                @if u.keys.is_empty() { span .note { "no keys" } }
                                @for k in &u.keys {
                                    div {
                                        code { @if k.key_id.is_empty() { "(id not read)" } @else { (k.key_id) } }
                                        " " (k.status) ", " (k.age_days) " days"
                                        @if let Some(t) = k.last_used {
                                            ", last used " (datetime_utc(t))
                                            @if let Some(s) = &k.last_used_service { " " (s) }
                                            @if let Some(g) = &k.last_used_region { " " (g) }
                                        } @else { ", never used" }
                                        @if !k.used_from.is_empty() {
                                            ul .used-from {
                                                @for site in &k.used_from {
                                                    li { "used from " code { (site.source_ip) } " " (site.user_agent) ", " (site.service) " " (site.region) ", " (site.calls) " calls, last " (datetime_utc(site.last_seen)) }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (pager(&p, f, base, false))
        }
    }
}

/// The links to the previous and the next page of the users table, when
/// there are such pages (none past the last page: `a#back` there). Above
/// the table with ids (`#pager`, `#prev`, `#next`), below it without.
fn pager(p: &Page, f: &Filter, base: &str, ids: bool) -> Markup {
    let prev = p.number > 1 && !p.past_the_end();
    let next = p.number < p.pages;
    html! {
        @if prev || next {
            nav .pager .note id=[ids.then_some("pager")] {
                @if prev {
                    a id=[ids.then_some("prev")] rel="prev" href=(f.page_href(base, p.number - 1)) {
                        "← previous " (PAGE_ROWS)
                    }
                }
                @if prev && next { " · " }
                @if next {
                    a id=[ids.then_some("next")] rel="next" href=(f.page_href(base, p.number + 1)) {
                        "next " (PAGE_ROWS.min(p.total - p.end)) " →"
                    }
                }
            }
        }
    }
}

fn mode(s: &RunSummary) -> String {
    use keyfleet_protocol::JobMode;
    let m = match &s.mode {
        JobMode::Scheduled => "scheduled".to_string(),
        JobMode::Rotate { user, .. } => format!("rotate {user}"),
        JobMode::Reactivate { user, key_id } => format!("reactivate {user} {key_id}"),
    };
    if s.dry_run {
        format!("{m} (dry run)")
    } else {
        m
    }
}

fn runs(runs: &[Arc<RunSummary>], base: &str) -> Markup {
    html! {
        section #runs {
            h2 { "Reports" }
            @if runs.is_empty() { p { "No finalized run yet." } }
            @else {
                table #run-table {
                    thead { tr { th { "run" } th { "kind" } th { "finalized" } th { "accounts" } th { "users" } th { "reports" } } }
                    tbody {
                        @for s in runs {
                            tr {
                                td { code { (s.run_id) } }
                                td { (mode(s)) }
                                td { (datetime_utc(s.finalized_at)) }
                                td class=[s.problems.then_some("bad")] { (s.totals.accounts_ok) " of " (s.totals.accounts) " ok" }
                                td { (s.totals.users) }
                                td {
                                    a href=(format!("{base}/runs/{}/report.json", s.run_id)) { "JSON" } " · "
                                    a href=(format!("{base}/runs/{}/report.csv", s.run_id)) { "CSV" } " · "
                                    a href=(format!("{base}/runs/{}/report.html", s.run_id)) { "HTML" } " · "
                                    a .view href=(format!("{base}/?run={}", s.run_id)) { "view" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The login form, with a status and an optional message.
pub fn login_page(status: StatusCode, message: Option<&str>, base: &str) -> Response {
    let body = html! {
        section #login {
            h2 { "Log in" }
            @if let Some(m) = message { p .bad #login-error { (m) } }
            p { "Paste an API key with the read scope. The browser keeps a signed session cookie for 8 hours, never the key." }
            form method="post" action=(format!("{base}/login")) {
                label for="api_key" { "API key " }
                input #api_key name="api_key" type="password" autocomplete="off" required size="50";
                " "
                button #login-submit type="submit" { "Log in" }
            }
        }
    };
    let mut resp = middleware::html(status, page("log in", base, false, body));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(crate::auth::WWW_AUTHENTICATE),
        );
    }
    resp
}

/// A page saying what went wrong.
pub fn error_page(status: StatusCode, message: &str, base: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = html! {
        section #error {
            h2 { (status.as_u16()) " " (title) }
            p { (message) }
            p { a href=(format!("{base}/")) { "Back to the dashboard" } }
        }
    };
    middleware::html(status, page(title, base, false, body))
}

/// An HTML route's refusal: the login form for a 401, otherwise a page.
pub fn refusal(denied: &Denied, base: &str) -> Response {
    let p = denied.problem();
    match denied {
        Denied::Missing { legacy: false } => login_page(StatusCode::UNAUTHORIZED, None, base),
        Denied::Missing { legacy: true } | Denied::Invalid | Denied::SessionEnded => {
            login_page(StatusCode::UNAUTHORIZED, Some(&p.detail), base)
        }
        Denied::Forbidden { .. } | Denied::Unlisted { .. } => {
            error_page(StatusCode::FORBIDDEN, &p.detail, base)
        }
        Denied::Limited { retry_after, .. } => {
            let mut r = error_page(StatusCode::TOO_MANY_REQUESTS, &p.detail, base);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            r
        }
    }
}
