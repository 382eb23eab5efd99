//! Where a key still in use is used from, through the deployed system: an
//! old key a program elsewhere keeps using after its replacement was
//! created is kept active at its date (`still_in_use`), and the owner's
//! notice, the JSON, CSV and HTML reports name the source IP, user agent,
//! service and region of those calls, read by the agent from the key's
//! CloudTrail events (its role's `cloudtrail:LookupEvents`).

use crate::common::*;
use crate::mails::header;

const IP: &str = "203.0.113.5";
const AGENT: &str = "aws-cli/2.15.0 Python/3.11.6 Linux/6.1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_still_in_use_is_reported_with_where_it_is_used_from() {
    let cli = deployment().await;
    let emu = emu();
    let name = "busy-owner";
    let DueUser {
        account,
        owner,
        key: old,
        ..
    } = account_with_due_user("cli-where-used", name).await;
    let run = |label: &'static str| {
        let out = cli.run(&["run", "--accounts", &account]);
        let id = run_id_in(&out);
        let report = cli.report(&id);
        assert_eq!(report["accounts"][0]["state"], "ok", "{label}: {report}");
        (id, report)
    };

    // Day 85: rotated, the new key delivered by email.
    let (_, first) = run("day 85");
    assert_eq!(
        first["accounts"][0]["users"][0]["verdict"], "rotated",
        "{first}"
    );

    // Day 86: a program on another machine still calls S3 with the old key
    // (IAM's last use, and two CloudTrail events with where they came from).
    emu.advance_clock(1.0, Some(&account)).expect("clock");
    emu.mark_key_used(&account, &old, None, "s3", "eu-west-1")
        .expect("key used");
    for _ in 0..2 {
        emu.record_cloudtrail_event(serde_json::json!({
            "access_key_id": old, "event_name": "ListBuckets", "service": "s3",
            "region": "eu-west-1", "source_ip": IP, "user_agent": AGENT,
        }))
        .expect("event");
    }

    // Day 95: the old key is due, but in use: kept, with where.
    emu.advance_clock(9.0, Some(&account)).expect("clock");
    let (run_id, report) = run("day 95");
    let row = &report["accounts"][0]["users"][0];
    assert_eq!(row["verdict"], "still_in_use", "{row}");
    let notice = row["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| &a["notice"])
        .find(|n| n["kind"] == "still_in_use")
        .unwrap_or_else(|| panic!("a still-in-use notice in {row}"));
    assert_eq!(notice["key_id"], old.as_str());
    let sites = notice["used_from"]
        .as_array()
        .unwrap_or_else(|| panic!("used_from in {notice}"));
    assert_eq!(sites.len(), 1, "{sites:?}");
    assert_eq!(
        (
            &sites[0]["source_ip"],
            &sites[0]["user_agent"],
            &sites[0]["service"]
        ),
        (
            &serde_json::json!(IP),
            &serde_json::json!(AGENT),
            &serde_json::json!("s3")
        )
    );
    assert_eq!(
        (&sites[0]["region"], &sites[0]["calls"]),
        (&serde_json::json!("eu-west-1"), &serde_json::json!(2))
    );

    // The CSV's where_used column, on the notice's line.
    let csv = cli.run(&["report", "--run", &run_id, "--format", "csv"]);
    let mut rows = csv::Reader::from_reader(csv.trim_start_matches('\u{feff}').as_bytes());
    let headers = rows.headers().expect("header").clone();
    let col = headers
        .iter()
        .position(|h| h == "where_used")
        .expect("where_used column");
    let cells: Vec<String> = rows
        .records()
        .map(|r| r.expect("row")[col].to_string())
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells.len(), 1, "{cells:?}");
    assert!(
        cells[0].starts_with(&format!("{IP} \"{AGENT}\" s3 eu-west-1, 2 calls, last ")),
        "{cells:?}"
    );

    // The HTML report, and the owner's notice.
    let html = cli.run(&["report", "--run", &run_id, "--format", "html"]);
    assert!(
        html.contains(&format!("used from: {IP} &quot;{AGENT}&quot; s3 eu-west-1")),
        "no place of use in the HTML report"
    );
    let mails = emu.outbox().expect("outbox");
    let notice_mail = mails
        .iter()
        .rev()
        .find(|m| {
            m.destinations.contains(&owner)
                && header(&m.raw, "X-Keyfleet-Kind") == "digest"
                && header(&m.raw, "X-Keyfleet-Notices").contains(&format!("{account}/still_in_use"))
        })
        .expect("the owner's digest with the still-in-use notice");
    let body = mail_parser::MessageParser::default()
        .parse(notice_mail.raw.as_bytes())
        .and_then(|m| m.body_text(0).map(|b| b.to_string()))
        .expect("text body");
    assert!(body.contains(IP) && body.contains(AGENT), "{body}");

    // The dashboard, in a browser, under the key.
    if !chromium_present() {
        return;
    }
    let (served, reader_key) = Served::for_reading(cli, "where-used-reader");
    let seen = browser_script(
        "key_uses.py",
        &[&served.base, &reader_key, &run_id, &account].map(|a| std::ffi::OsStr::new(a.as_str())),
    );
    let places = seen["places"].as_array().expect("places");
    assert_eq!(places.len(), 1, "{seen}");
    let place = places[0].as_str().unwrap_or_default();
    assert!(
        place.starts_with(&format!(
            "used from {IP} {AGENT}, s3 eu-west-1, 2 calls, last "
        )),
        "{place}"
    );
    assert_eq!(seen["errors"], serde_json::json!([]), "console errors");
}
