//! The read routes over the fixture's bucket.

use crate::fixture::*;
use crate::world::{Options, World};
use keyfleet_api::inventory::EXPORT_COLUMNS;
use keyfleet_protocol::JobMode;
use keyfleet_reports::render::CSV_HEADER;
use serde_json::json;
use time::macros::datetime;

#[tokio::test]
async fn user_keys_are_those_at_the_end_of_the_latest_scheduled_run() {
    let w = World::new(Options::default()).await;
    let a = w
        .get(
            &format!("/v1/accounts/{PROD}/users/alice/keys"),
            Some(&w.reader),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-keyfleet-run-id"), Some(LATEST));
    assert_eq!(
        a.header("x-keyfleet-run-time"),
        Some("2026-03-01T00:10:00Z")
    );
    let v = a.json();
    assert_eq!(v["run_id"], LATEST);
    assert_eq!(v["as_of"], "2026-03-01T00:10:00Z");
    assert_eq!(v["account_name"], "Production");
    assert_eq!(v["verdict"], "rotated");
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["key_id"], ALICE_OLD);
    assert_eq!(keys[0]["status"], "Active");
    assert_eq!(keys[0]["age_days"], 96);
    assert_eq!(keys[0]["last_used"], "2026-02-27T10:00:00Z");
    assert_eq!(keys[0]["last_used_service"], "s3");
    assert_eq!(keys[0]["last_used_region"], "eu-west-1");
    // Created by the run, at the run's start.
    assert_eq!(keys[1]["key_id"], ALICE_NEW);
    assert_eq!(keys[1]["created"], "2026-03-01T00:00:00Z");
    assert_eq!(keys[1]["age_days"], 0);
    assert_eq!(keys[1]["last_used"], json!(null));
    assert_eq!(
        v["current_secret"],
        json!({"kept_in": "none", "emailed": true,
               "description": "not kept: delivered to the owner by email"})
    );

    // A delete the run did is applied.
    let v = w
        .get(
            &format!("/v1/accounts/{PROD}/users/bob/keys"),
            Some(&w.reader),
        )
        .await
        .json();
    let ids: Vec<&str> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [BOB_KEPT]);

    // A user without keys.
    let v = w
        .get(
            &format!("/v1/accounts/{PROD}/users/+eve/keys"),
            Some(&w.reader),
        )
        .await
        .json();
    assert_eq!(v["keys"], json!([]));
}

/// The decision in the crate doc: one-user runs do not replace the
/// organization's picture.
#[tokio::test]
async fn key_reads_ignore_newer_one_user_and_dry_runs() {
    let w = World::new(Options::default()).await;
    let v = w
        .get(
            &format!("/v1/accounts/{SANDBOX}/users/dave/keys"),
            Some(&w.reader),
        )
        .await
        .json();
    assert_eq!(v["run_id"], LATEST);
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0]["key_id"].as_str(), keys[0]["status"].as_str()),
        (Some(DAVE_KEY), Some("Active"))
    );
}

#[tokio::test]
async fn unknown_accounts_and_users_are_404_and_malformed_ids_400() {
    let w = World::new(Options::default()).await;
    let p = w
        .get(
            &format!("/v1/accounts/{PROD}/users/zed/keys"),
            Some(&w.reader),
        )
        .await
        .problem(404);
    // A user name may be a pasted secret: not echoed (see crate::problem).
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("no such user") && !detail.contains("zed"),
        "{p}"
    );
    w.get(
        "/v1/accounts/999999999999/users/alice/keys",
        Some(&w.reader),
    )
    .await
    .problem(404);
    // The account that never reported says so.
    let p = w
        .get(
            &format!("/v1/accounts/{MISSING}/users/alice/keys"),
            Some(&w.reader),
        )
        .await
        .problem(404);
    assert!(p["detail"].as_str().unwrap().contains("missing"), "{p}");
    for uri in [
        "/v1/accounts/11112222333/users/alice/keys".to_string(),
        "/v1/accounts/abcdefghijkl/users/alice/keys".to_string(),
        format!("/v1/accounts/{PROD}/users/a%20b/keys"),
        format!("/v1/accounts/{PROD}/users/{}/keys", "x".repeat(65)),
        "/v1/runs/a.b".to_string(),
        "/runs/a.b/report.html".to_string(),
    ] {
        w.get(&uri, Some(&w.reader)).await.problem(400);
    }
}

#[tokio::test]
async fn runs_are_listed_newest_first_with_their_summaries() {
    let w = World::new(Options::default()).await;
    let a = w.get("/v1/runs", Some(&w.reader)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-keyfleet-run-id"), Some(ROTATION));
    let v = a.json();
    let runs = v["runs"].as_array().unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    // The run still waiting for results is not listed.
    assert_eq!(ids, [ROTATION, DRY, LATEST, EARLIER]);
    let latest = &runs[2];
    assert_eq!(latest["mode"], json!({"kind": "scheduled"}));
    assert_eq!(latest["dry_run"], false);
    assert_eq!(latest["created_at"], "2026-03-01T00:00:00Z");
    assert_eq!(latest["finalized_at"], "2026-03-01T00:10:00Z");
    assert_eq!(latest["complete"], false);
    assert_eq!(latest["problems"], true);
    assert_eq!(latest["totals"]["accounts"], 3);
    assert_eq!(latest["totals"]["accounts_missing"], 1);
    assert_eq!(latest["totals"]["users"], 5);
    assert_eq!(runs[1]["dry_run"], true);
    assert_eq!(runs[0]["mode"]["kind"], "rotate");
    // The report's CIS figure: active keys as scanned (alice's old key,
    // 96 days, bob's, carol's new one, dave's), three at most 90 days old.
    assert_eq!(
        latest["compliance"],
        json!({"active_keys": 4, "active_keys_within_90d": 3, "percent": 75.0,
               "percent_text": "75.0%", "recorded": true})
    );

    let v = w.get("/v1/runs?limit=2", Some(&w.reader)).await.json();
    assert_eq!(v["runs"].as_array().unwrap().len(), 2);
    for bad in ["0", "1001", "x", "-1"] {
        w.get(&format!("/v1/runs?limit={bad}"), Some(&w.reader))
            .await
            .problem(400);
    }
}

#[tokio::test]
async fn a_run_is_its_report_as_json_or_csv() {
    let w = World::new(Options::default()).await;
    let a = w.get(&format!("/v1/runs/{LATEST}"), Some(&w.reader)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.header("x-keyfleet-run-id"), Some(LATEST));
    let v = a.json();
    assert_eq!(v["run_id"], LATEST);
    assert_eq!(v["accounts"].as_array().unwrap().len(), 3);

    let csv_header = CSV_HEADER.join(",");
    let a = w
        .call(
            axum::http::Method::GET,
            &format!("/v1/runs/{LATEST}"),
            Some(&w.reader),
            &[("accept", "text/csv")],
            axum::body::Body::empty(),
        )
        .await;
    assert_eq!(a.status, 200);
    assert!(a.header("content-type").unwrap().starts_with("text/csv"));
    assert_eq!(a.header("x-keyfleet-run-id"), Some(LATEST));
    assert!(
        a.text()
            .trim_start_matches('\u{feff}')
            .starts_with(&csv_header),
        "{}",
        a.text()
    );
    let a = w
        .get(&format!("/v1/runs/{LATEST}?format=csv"), Some(&w.reader))
        .await;
    assert!(a
        .text()
        .trim_start_matches('\u{feff}')
        .starts_with(&csv_header));
    w.get(&format!("/v1/runs/{LATEST}?format=xml"), Some(&w.reader))
        .await
        .problem(400);

    // Dry runs and one-user runs are readable by id.
    assert_eq!(
        w.get(&format!("/v1/runs/{DRY}"), Some(&w.reader))
            .await
            .status,
        200
    );
    assert_eq!(
        w.get(&format!("/v1/runs/{ROTATION}"), Some(&w.reader))
            .await
            .status,
        200
    );
    // Not finalized, or unknown.
    w.get(&format!("/v1/runs/{RUNNING}"), Some(&w.reader))
        .await
        .problem(404);
    w.get("/v1/runs/20990101T000000Z-zzzzzz", Some(&w.reader))
        .await
        .problem(404);
}

#[tokio::test]
async fn the_stored_html_report_is_served_without_script() {
    let w = World::new(Options::default()).await;
    let a = w
        .get(&format!("/runs/{LATEST}/report.html"), Some(&w.reader))
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.header("content-type").unwrap().starts_with("text/html"));
    let csp = a.header("content-security-policy").unwrap();
    assert!(
        csp.contains("sandbox") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(a.header("x-keyfleet-run-id"), Some(LATEST));
    assert!(a.text().contains(LATEST));
    w.get(&format!("/runs/{RUNNING}/report.html"), Some(&w.reader))
        .await
        .problem(404);
}

#[tokio::test]
async fn the_export_lists_every_key_at_the_end_of_the_run() {
    let w = World::new(Options::default()).await;
    let a = w.get("/v1/export", Some(&w.reader)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-keyfleet-run-id"), Some(LATEST));
    let v = a.json();
    assert_eq!(v["run_id"], LATEST);
    let rows = v["keys"].as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["key_id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [ALICE_OLD, ALICE_NEW, BOB_KEPT, CAROL_OLD, CAROL_NEW, DAVE_KEY]
    );
    let carol = &rows[3];
    assert_eq!(carol["account_id"], PROD);
    assert_eq!(carol["account_name"], "Production");
    assert_eq!(carol["user_name"], "carol");
    assert_eq!(carol["path"], "/");
    assert_eq!(carol["status"], "Inactive");
    assert_eq!(carol["created"], "2025-11-20T00:00:00Z");
    assert_eq!(carol["age_days"], 101);
    assert_eq!(carol["verdict"], "compliant");
    for r in rows {
        let fields: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = EXPORT_COLUMNS.to_vec();
        want.sort();
        let mut got = fields.clone();
        got.sort();
        assert_eq!(got, want);
    }

    for csv in [
        w.get("/v1/export?format=csv", Some(&w.reader)).await,
        w.call(
            axum::http::Method::GET,
            "/v1/export",
            Some(&w.reader),
            &[("accept", "text/csv, application/json;q=0.5")],
            axum::body::Body::empty(),
        )
        .await,
    ] {
        assert_eq!(csv.status, 200);
        assert!(csv.header("content-disposition").unwrap().contains(LATEST));
        let text = csv.text();
        let lines: Vec<&str> = text
            .trim_start_matches('\u{feff}')
            .trim_end()
            .split("\r\n")
            .collect();
        assert_eq!(lines[0], EXPORT_COLUMNS.join(","));
        assert_eq!(lines.len(), 7, "{text}");
        assert!(
            lines[4].starts_with(&format!(
                "{PROD},Production,carol,/,{CAROL_OLD},Inactive,2025-11-20T00:00:00Z,101,"
            )),
            "{}",
            lines[4]
        );
    }
}

#[tokio::test]
async fn without_a_scheduled_run_key_reads_are_404_and_the_list_is_empty() {
    let w = World::new(Options {
        reports: vec![crate::fixture::dry()],
        ..Default::default()
    })
    .await;
    let p = w.get("/v1/export", Some(&w.reader)).await.problem(404);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("no finalized scheduled run"),
        "{p}"
    );
    w.get(
        &format!("/v1/accounts/{PROD}/users/alice/keys"),
        Some(&w.reader),
    )
    .await
    .problem(404);
    let v = w.get("/v1/runs", Some(&w.reader)).await.json();
    assert_eq!(v["runs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn health_and_the_document_are_public() {
    let w = World::new(Options::default()).await;
    let a = w.get("/healthz", None).await;
    assert_eq!(
        (a.status.as_u16(), a.json()),
        (200, json!({"status": "ok"}))
    );
    let a = w.get("/openapi.json", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["openapi"], "3.1.0");
}

#[tokio::test]
async fn unknown_paths_and_methods_are_problems() {
    let w = World::new(Options::default()).await;
    w.get("/v2/nothing", Some(&w.reader)).await.problem(404);
    let a = w
        .call(
            axum::http::Method::DELETE,
            "/v1/runs",
            Some(&w.reader),
            &[],
            axum::body::Body::empty(),
        )
        .await;
    a.problem(405);
    assert!(a.header("allow").unwrap().contains("GET"));
}

/// A newer scheduled run limited to other accounts (`run --accounts`), or
/// one in which the account did not report, does not hide the account's
/// last known keys; an account no scheduled run has reported is a 404.
#[tokio::test]
async fn key_reads_come_from_the_newest_scheduled_run_that_reported_the_account() {
    let mut opts = Options::default();
    let sandbox_only = "20260305T000000Z-ffffff";
    opts.reports.push(report(
        sandbox_only,
        datetime!(2026-03-05 00:00 UTC),
        JobMode::Scheduled,
        false,
        vec![
            (SANDBOX, "Sandbox", Some(json!([]))),
            (PROD, "Production", None),
        ],
    ));
    let w = World::new(opts).await;
    let v = w
        .get(
            &format!("/v1/accounts/{PROD}/users/alice/keys"),
            Some(&w.reader),
        )
        .await
        .json();
    assert_eq!(v["run_id"], LATEST, "{v}");
    let v = w
        .get(
            &format!("/v1/accounts/{SANDBOX}/users/dave/keys"),
            Some(&w.reader),
        )
        .await
        .problem(404);
    assert!(
        v["detail"].as_str().unwrap().contains("no such user"),
        "{v}"
    );
    let p = w
        .get(
            &format!("/v1/accounts/{MISSING}/users/alice/keys"),
            Some(&w.reader),
        )
        .await
        .problem(404);
    assert!(p["detail"].as_str().unwrap().contains(MISSING), "{p}");
}

/// Runs are ordered by their reports' start times, whatever is read first
/// (crate::data reads runs lazily, newest first by the start second in the
/// coordinator's run ids): an id of another form is read before anything
/// is decided, and two runs started in the same second are told apart by
/// their times, not their ids.
#[tokio::test]
async fn runs_are_ordered_by_start_time_whatever_their_ids() {
    let mut opts = Options::default();
    let alice = || {
        Some(json!([user(
            "alice",
            "compliant",
            json!([key(ALICE_OLD, "Active", "2025-11-25T00:00:00Z")]),
            json!([])
        )]))
    };
    let (later, sooner) = ("20260306T000000Z-000001", "20260306T000000Z-000002");
    opts.reports.push(report(
        sooner,
        datetime!(2026-03-06 00:00:00.1 UTC),
        JobMode::Scheduled,
        false,
        vec![(PROD, "Production", alice())],
    ));
    opts.reports.push(report(
        later,
        datetime!(2026-03-06 00:00:00.2 UTC),
        JobMode::Scheduled,
        false,
        vec![(PROD, "Production", alice())],
    ));
    opts.reports.push(report(
        "manual",
        datetime!(2026-03-07 00:00 UTC),
        JobMode::Scheduled,
        false,
        vec![(SANDBOX, "Sandbox", Some(json!([])))],
    ));
    let mut w = World::new(opts).await;
    let keys = format!("/v1/accounts/{PROD}/users/alice/keys");
    let expected = ["manual", later, sooner, ROTATION, DRY, LATEST, EARLIER];
    // A key read first (the walk stops early), then the list.
    let v = w.get(&keys, Some(&w.reader)).await.json();
    assert_eq!(v["run_id"], later, "{v}");
    let v = w.get("/v1/runs", Some(&w.reader)).await.json();
    let ids: Vec<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, expected);
    // In a new process: the list's head first, then the key read.
    w.restart();
    let v = w.get("/v1/runs?limit=2", Some(&w.reader)).await.json();
    assert_eq!(v["runs"][0]["run_id"], "manual", "{v}");
    assert_eq!(v["runs"][1]["run_id"], later, "{v}");
    let v = w.get(&keys, Some(&w.reader)).await.json();
    assert_eq!(v["run_id"], later, "{v}");
    let v = w
        .get(
            &format!("/v1/accounts/{SANDBOX}/users/dave/keys"),
            Some(&w.reader),
        )
        .await
        .problem(404);
    assert!(v["detail"].as_str().unwrap().contains("manual"), "{v}");
}
