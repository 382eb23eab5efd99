//! What the report's presentations draw alike, so that the HTML report, the
//! API's dashboard and the summary email look like one product and a
//! change is made once: the stylesheet ([`CSS`], with [`DASHBOARD_CSS`] for
//! the dashboard's page chrome), the summary cards ([`card`],
//! [`share_card`]), the charts as inline SVG ([`age_chart`],
//! [`actions_chart`], [`compliance_chart`]), how an instant is written
//! ([`rfc3339`], [`datetime_utc`], [`date_utc`]) and, for the email, whose
//! clients drop `<style>`, the same colours as inline styles ([`email`]).
//!
//! Charts are SVG with a `title` and a `desc` (screen readers read the
//! figures), no script; colours follow the policy's thresholds.

use keyfleet_protocol::plan::Outcome;
use keyfleet_protocol::report::{Compliance, RunReport, CIS_KEY_ROTATION_DAYS};
use maud::{html, Markup};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The stylesheet of the HTML report, and the base of the dashboard's:
/// palette, badges, cards, charts, tables.
pub const CSS: &str = r#"
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
/// One figure of a summary: a number (or a share) over its label, red
/// when `bad`. Goes in a `ul.cards`.
pub fn card(label: &str, n: impl maud::Render, bad: bool) -> Markup {
    html! {
        li class=[bad.then_some("bad")] { span.n { (n) } span.l { (label) } }
    }
}

/// The summary's CIS card: the share, red when some active key is older.
pub fn share_card(c: Option<Compliance>) -> Markup {
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

/// Vertical bars, one per age bucket, coloured by the policy's thresholds
/// (each bar is a `rect.bar`).
pub fn age_chart(report: &RunReport) -> Markup {
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
                rect.bar x=(fmt1(x)) y=(fmt1(top + plot_h - bh)) width=(fmt1(slot * 0.7)) height=(fmt1(bh)) fill=(color) {
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

/// An action kind's name as the chart labels it: one of the kinds the
/// protocol knows, or `other` for a kind a newer coordinator recorded.
fn kind_name(kind: &str) -> &'static str {
    ["create", "deactivate", "delete", "notify", "reactivate"]
        .into_iter()
        .find(|k| *k == kind)
        .unwrap_or("other")
}

/// Horizontal stacked bars: per action kind, done/planned, skipped, failed.
pub fn actions_chart(report: &RunReport) -> Markup {
    // kind -> [done, planned, skipped, failed]
    let mut by_kind: BTreeMap<&'static str, [u64; 4]> = BTreeMap::new();
    for k in ["create", "deactivate", "delete", "notify"] {
        by_kind.insert(k, [0; 4]);
    }
    if report.schema >= 2 {
        // Recorded: the users of a summary are not inline.
        for (kind, o) in &report.totals.action_outcomes {
            let slot = by_kind.entry(kind_name(kind)).or_insert([0; 4]);
            for (n, v) in slot
                .iter_mut()
                .zip([o.done, o.planned, o.skipped, o.failed])
            {
                *n += v;
            }
        }
    } else {
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

/// `2026-01-31T09:05:00Z`: an instant as the CSV, the JSON views and the
/// key inventory write it.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `2026-01-31 09:05 UTC`: an instant as people read it (the report, the
/// summary mail and the owner notices share it).
pub fn datetime_utc(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_default()
}

/// `2026-01-31`: the UTC day of an instant (shared like [`datetime_utc`]).
pub fn date_utc(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

/// The dashboard's page chrome, after [`CSS`]: the header bar with the
/// log-out button, white sections, the filter form.
pub const DASHBOARD_CSS: &str = r#"
body{background:var(--bg);padding:0;max-width:none}
ul.used-from{margin:.2rem 0 .2rem 1rem;padding:0;font-size:.85rem;color:#b71c1c}
header.bar-top{background:#1a237e;color:#fff;padding:.6rem 1.2rem;display:flex;justify-content:space-between;align-items:center}
header.bar-top h1{font-size:1.2rem;margin:0}
header.bar-top a{color:#fff;text-decoration:none}
header.bar-top form{margin:0}
main{padding:0 1.2rem 2rem;max-width:80rem}
main>section{background:#fff;border:1px solid var(--line);border-radius:6px;margin:1rem 0;padding:.6rem 1rem}
.bad{color:var(--bad)}
.state-ok{color:var(--ok)}
.note{color:var(--muted);font-size:.85rem}
form.filters label{margin-right:1rem}
"#;

/// One run of a compliance trend: its label (the run id) and its CIS share
/// (`None`: no active key, no point on the line).
pub struct TrendPoint<'a> {
    pub label: &'a str,
    pub percent: Option<f64>,
    pub percent_text: &'a str,
}

/// The CIS share over runs, oldest first, as a line.
pub fn compliance_chart(points: &[TrendPoint<'_>]) -> Markup {
    let (w, h, pad) = (600.0_f64, 160.0_f64, 24.0_f64);
    let n = points.len();
    let x = |i: usize| {
        if n <= 1 {
            w / 2.0
        } else {
            pad + (w - 2.0 * pad) * i as f64 / (n - 1) as f64
        }
    };
    let y = |share: f64| pad + (h - 2.0 * pad) * (1.0 - share);
    let share = |p: &TrendPoint<'_>| p.percent.map(|pc| pc / 100.0);
    let line = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| share(p).map(|s| format!("{:.1},{:.1}", x(i), y(s))))
        .collect::<Vec<_>>()
        .join(" ");
    html! {
        svg role="img" aria-label="compliance trend" viewBox=(format!("0 0 {w} {h}")) width="600" height="160" xmlns="http://www.w3.org/2000/svg" font-size="11" {
            line x1=(pad) y1=(y(1.0)) x2=(w - pad) y2=(y(1.0)) stroke="#dadce0" {}
            line x1=(pad) y1=(y(0.0)) x2=(w - pad) y2=(y(0.0)) stroke="#9aa0a6" {}
            text x="0" y=(y(1.0) + 4.0) fill="#5f6368" { "100%" }
            text x="0" y=(y(0.0) + 4.0) fill="#5f6368" { "0%" }
            polyline points=(line) fill="none" stroke="#3949ab" stroke-width="2" {}
            @for (i, p) in points.iter().enumerate() {
                @if let Some(s) = share(p) {
                    circle cx=(format!("{:.1}", x(i))) cy=(format!("{:.1}", y(s))) r="3" fill="#3949ab" {
                        title { (p.label) ": " (p.percent_text) }
                    }
                }
            }
        }
    }
}

/// The summary email's inline styles: mail clients drop `<style>`, so the
/// email carries the report's colours on each element.
pub mod email {
    /// A cell of the summary's tables.
    pub const CELL: &str = "padding:2px 12px 2px 0;text-align:left";
    /// The page.
    pub const BODY: &str = "font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222";
    /// The dry-run badge (the report's `.badge.dry`).
    pub const DRY_BADGE: &str =
        "background:#6b4fbb;color:#fff;padding:1px 6px;border-radius:3px;font-size:12px";
    /// Text that needs attention.
    pub const BAD: &str = "color:#b00020";
    /// Secondary text.
    pub const MUTED: &str = "color:#555";
    /// The footer.
    pub const FOOTER: &str = "color:#777;font-size:12px";
}
