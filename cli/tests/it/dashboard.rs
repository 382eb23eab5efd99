//! The dashboard in a browser: `keyfleet serve` on the deployed system's
//! data, Debian's Chromium driven by Playwright (`tests/browser/dashboard.py`,
//! from the emulator's venv): log in with an API key, open the run, filter
//! to one account with the form, save a screenshot
//! (`target/screenshots/dashboard.png`; the README shows a copy).

use crate::common::*;
use keyfleet_protocol::report::RunReport;
use keyfleet_testkit::seed::{self, key, user, UserSpec};
use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_filters_to_one_account_in_a_browser() {
    if !chromium_present() {
        return;
    }
    let cli = deployment().await;
    let shown = create_account("dash-shown").await;
    let other = create_account("dash-other").await;
    for (account, users) in [
        (
            &shown,
            vec![
                user("build-bot", vec![key(85, true, Some(1))]),
                user("reporting", vec![key(20, true, Some(2))]),
                user("old-batch", vec![key(95, true, Some(94))]),
                UserSpec {
                    email: None,
                    ..user("nobody-owns", vec![key(82, true, Some(3))])
                },
            ],
        ),
        (
            &other,
            vec![user("elsewhere", vec![key(10, true, Some(1))])],
        ),
    ] {
        let iam = iam_of(account).await;
        seed::populate(emu(), &iam, account, &users)
            .await
            .expect("seed");
    }
    let report: RunReport = serde_json::from_str(&cli.run(&[
        "run",
        "--json",
        "--accounts",
        &format!("{shown},{other}"),
    ]))
    .expect("report JSON");
    let (served, reader_key) = Served::for_reading(cli, "dashboard-reader");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shots = root.join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let seen = browser_script(
        "dashboard.py",
        &[
            served.base.as_ref(),
            reader_key.as_ref(),
            report.run_id.as_ref(),
            shown.as_ref(),
            shot.as_os_str(),
        ],
    );
    let offered: Vec<&str> = seen["offered"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        offered.contains(&shown.as_str()) && offered.contains(&other.as_str()),
        "{seen}"
    );
    let rows: Vec<&str> = seen["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        rows,
        vec![shown.as_str(); 4],
        "only the chosen account's users: {seen}"
    );
    let url = seen["url"].as_str().unwrap();
    assert!(
        url.contains(&format!("account={shown}")) && url.contains(&report.run_id),
        "{url}"
    );
    assert_eq!(seen["errors"], serde_json::json!([]), "console errors");
    assert!(std::fs::metadata(&shot).expect("screenshot").len() > 10_000);
}
