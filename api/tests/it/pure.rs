//! The pure parts over the fixture's whole report: export rows,
//! compliance, the dashboard's rows and trend.

use crate::fixture::*;
use keyfleet_api::dashboard::{trend_points, user_rows, Filter};
use keyfleet_api::inventory::{self, export_rows};
use keyfleet_protocol::plan::Verdict;
use keyfleet_reports::read::finalized::RunSummary;
use std::sync::Arc;

#[test]
fn export_rows_are_the_keys_at_the_end_of_the_run() {
    let r = latest();
    let rows = export_rows(&r);
    let got: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r.user_name.as_str(), r.key_id.as_str(), r.status))
        .collect();
    assert_eq!(
        got,
        [
            ("alice", ALICE_OLD, "Active"),
            ("alice", ALICE_NEW, "Active"),
            ("bob", BOB_KEPT, "Active"),
            ("carol", CAROL_OLD, "Inactive"),
            ("carol", CAROL_NEW, "Active"),
            ("dave", DAVE_KEY, "Active"),
        ]
    );
    assert!(rows.iter().all(|r| r.verdict != "no_keys"));
    assert_eq!(rows[1].created, LATEST_AT);
    assert_eq!(rows[0].last_used_service.as_deref(), Some("s3"));
    // The CSV has a row per key.
    let csv = String::from_utf8(inventory::export_csv(&rows)).unwrap();
    assert_eq!(csv.trim_end().split("\r\n").count(), 7);
}

#[test]
fn compliance_is_the_report_s_cis_figure() {
    let c = inventory::compliance(&latest());
    assert_eq!((c.active_keys, c.active_keys_within_90d), (4, 3));
    assert_eq!(
        (c.percent, c.percent_text.as_str(), c.recorded),
        (Some(75.0), "75.0%", true)
    );
    let c = inventory::compliance(&earlier());
    assert_eq!((c.active_keys, c.active_keys_within_90d), (2, 1));
    // No active key: the control measures nothing.
    let c = inventory::compliance(&dry());
    assert_eq!(
        (c.active_keys, c.percent, c.percent_text.as_str()),
        (0, None, "n/a")
    );
}

#[test]
fn a_report_without_the_figure_gets_it_recomputed_from_its_keys() {
    let mut r = latest();
    r.compliance = None;
    for a in &mut r.accounts {
        a.compliance = None;
    }
    let c = inventory::compliance(&r);
    assert_eq!(
        (c.active_keys, c.active_keys_within_90d, c.recorded),
        (4, 3, false)
    );
}

#[test]
fn dashboard_rows_filter_by_account_verdict_and_age() {
    let r = latest();
    assert_eq!(user_rows(&r, &Filter::default()).len(), 5);
    let f = Filter {
        run: None,
        account: Some(PROD.into()),
        verdict: Some(Verdict::Compliant),
        min_age: None,
        page: None,
    };
    let rows = user_rows(&r, &f);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].user_name, "carol");
    assert_eq!(rows[0].oldest_age, Some(101));
    let f = Filter {
        min_age: Some(97),
        ..Default::default()
    };
    assert_eq!(
        user_rows(&r, &f)
            .iter()
            .map(|u| u.user_name.as_str())
            .collect::<Vec<_>>(),
        ["carol"]
    );
}

#[test]
fn the_trend_is_scheduled_runs_oldest_first() {
    let runs: Vec<Arc<RunSummary>> = [rotation(), dry(), latest(), earlier()]
        .iter()
        .map(|r| Arc::new(RunSummary::of(r)))
        .collect();
    let points: Vec<&str> = trend_points(&runs)
        .iter()
        .map(|s| s.run_id.as_str())
        .collect();
    assert_eq!(points, [EARLIER, LATEST]);
}
