//! The HTML report, as stored in S3, renders in headless Chromium without
//! console errors (`scripts/render-check.sh`).

use crate::fleet::*;
use keyfleet_coordinator::RunRequest;
use std::path::Path;
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_renders_in_headless_chromium_without_console_errors() {
    if !Path::new(CHROMIUM).exists() {
        if std::env::var("KEYFLEET_SKIP_BROWSER").as_deref() == Ok("1") {
            eprintln!("{CHROMIUM} missing and KEYFLEET_SKIP_BROWSER=1: render check skipped");
            return;
        }
        panic!(
            "{CHROMIUM} is missing: install it (`apt-get install -y chromium`, as CI does) \
             or set KEYFLEET_SKIP_BROWSER=1 to skip the browser check"
        );
    }
    // A run with something in every section: users with every verdict and
    // an account without an agent (a problem account).
    let (member, _) = normal_member("html").await;
    let no_agent = create_member("html-no-agent").await;
    let central = Central::new(Setup::default()).await;
    let run_id = central
        .coordinator
        .start_run(RunRequest {
            accounts: Some(vec![member.id.clone(), no_agent.id.clone()]),
            ..RunRequest::default()
        })
        .await
        .expect("start run")
        .run_id;
    member.run_agent(&central.public_key).await;
    central.intake_until_finalized().await;

    let html = central
        .object(&format!("reports/{run_id}/report.html"))
        .await
        .expect("report.html in S3");
    let dir = tempfile::tempdir().expect("temp dir");
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).expect("write report.html");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/render-check.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&page)
        .arg(dir.path().join("report.png"))
        .output()
        .expect("run render-check.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "render check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("render check passed"), "{stdout}");
    assert!(
        std::fs::metadata(dir.path().join("report.png"))
            .expect("screenshot")
            .len()
            > 0
    );
}

/// A large run's report, as finalize stores it (a summary page and a page
/// per account beside it), opened in Chromium by Playwright
/// (`tests/browser/report.py`): the summary stays under a megabyte, links
/// every account, and an account's link leads to its page of users and back.
#[test]
fn a_large_report_opens_as_a_summary_with_a_page_per_account() {
    use keyfleet_reports::render;
    if !Path::new(CHROMIUM).exists() {
        if std::env::var("KEYFLEET_SKIP_BROWSER").as_deref() == Ok("1") {
            eprintln!("{CHROMIUM} missing and KEYFLEET_SKIP_BROWSER=1: browser test skipped");
            return;
        }
        panic!("{CHROMIUM} is missing: install it (`apt-get install -y chromium`)");
    }
    let report = keyfleet_reports::fixtures::large_report(30, 80);
    assert!(render::html::is_split(&report));
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = dir.path().join("report.html");
    std::fs::write(&summary, render::to_html(&report)).expect("summary");
    std::fs::create_dir(dir.path().join("accounts")).expect("accounts/");
    for a in &report.accounts {
        std::fs::write(
            dir.path().join(format!("accounts/{}.html", a.account_id)),
            render::account_page(&report, a),
        )
        .expect("account page");
    }
    let size = std::fs::metadata(&summary).expect("summary").len();
    assert!(size < 1_000_000, "summary page of {size} bytes");

    let account = &report.accounts[7].account_id;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("tests/emulator/.venv/bin/python"))
        .arg(root.join("tests/browser/report.py"))
        .arg(&summary)
        .arg(account)
        .output()
        .expect("run report.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "report.py failed: {stderr}");
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report.py JSON");
    assert_eq!(seen["linked"], 30, "{seen}");
    assert!(
        seen["reached"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/accounts/{account}.html"))),
        "{seen}"
    );
    assert!(
        seen["heading"]
            .as_str()
            .is_some_and(|h| h.contains(account.as_str())),
        "{seen}"
    );
    assert_eq!(seen["rows"], 80, "{seen}");
    assert!(
        seen["back"]
            .as_str()
            .is_some_and(|u| u.ends_with("/report.html")),
        "{seen}"
    );
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
}
