//! What each call costs in S3 requests, over a bucket of 50 finalized runs.
//!
//! The emulator counts them: a fault rule of kind `delay` (0 ms) matching
//! every S3 request to the test's bucket changes nothing but logs each
//! request it matched, with its action and object key
//! (tests/emulator/README.md, "Faults on demand"). Rules are global to the
//! harness and posting them replaces every rule, so the tests of this
//! module take [`FAULTS`] first, and no other test of this binary posts
//! rules.

use crate::fixture::*;
use crate::world::{Options, World};
use keyfleet_protocol::report::RunReport;
use keyfleet_protocol::JobMode;
use keyfleet_testkit::Emulator;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use time::macros::datetime;

static FAULTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const RUNS: usize = 50;

/// Run `i` of [`RUNS`], one a day from 2026-01-01: every tenth (the
/// newest among them) a dry run, every tenth from the fifth an emergency
/// rotation of dave, the others scheduled runs in which PROD and SANDBOX
/// reported.
fn nth(i: usize) -> RunReport {
    let at = datetime!(2026-01-01 00:00 UTC) + time::Duration::days(i as i64);
    let id = format!(
        "{:04}{:02}{:02}T000000Z-{:06x}",
        at.year(),
        at.month() as u8,
        at.day(),
        i
    );
    let alice = json!([user(
        "alice",
        "compliant",
        json!([key(ALICE_OLD, "Active", "2025-12-01T00:00:00Z")]),
        json!([])
    )]);
    let dave = json!([user(
        "dave",
        "compliant",
        json!([key(DAVE_KEY, "Active", "2025-12-20T00:00:00Z")]),
        json!([])
    )]);
    match i % 10 {
        9 => report(
            &id,
            at,
            JobMode::Scheduled,
            true,
            vec![(PROD, "Production", Some(alice))],
        ),
        4 => report(
            &id,
            at,
            JobMode::Rotate {
                user: "dave".into(),
                deactivate_old: false,
                key_id: None,
            },
            false,
            vec![(SANDBOX, "Sandbox", Some(dave))],
        ),
        _ => report(
            &id,
            at,
            JobMode::Scheduled,
            false,
            vec![
                (PROD, "Production", Some(alice)),
                (SANDBOX, "Sandbox", Some(dave)),
            ],
        ),
    }
}

/// The S3 requests one call made, by action, the finalized reports
/// (`runs/<id>/report.json`) it read, by key, and the accounts' sections
/// (`runs/<id>/final/...`, schema 2) read with them.
#[derive(Debug, Default)]
struct Cost {
    actions: BTreeMap<String, usize>,
    finals: BTreeMap<String, usize>,
    sections: usize,
}

impl Cost {
    /// Requests of an action; for GetObject, those that are not a
    /// section: a finalized report costs one read and, when it is read,
    /// one per account with users (at most 2 here, see [`nth`]).
    fn of(&self, action: &str) -> usize {
        let n = self.actions.get(action).copied().unwrap_or(0);
        if action == "GetObject" {
            n - self.sections
        } else {
            n
        }
    }
}

fn count_from_now(emu: &Emulator, bucket: &str) {
    emu.set_faults(json!({"seed": 1, "rules": [{
        "service": "s3", "kind": "delay", "delay_ms": 0,
        "match": {"Bucket": bucket},
    }]}))
    .expect("fault rules");
}

fn counted(emu: &Emulator) -> Cost {
    let f = emu.faults().expect("faults");
    let mut cost = Cost::default();
    for entry in f["log"].as_array().unwrap() {
        let action = entry["action"].as_str().unwrap_or("?").to_string();
        *cost.actions.entry(action.clone()).or_default() += 1;
        let key = entry["key"]["Key"].as_str().unwrap_or_default();
        if action == "GetObject" && key.starts_with("runs/") && key.ends_with("/report.json") {
            *cost.finals.entry(key.to_string()).or_default() += 1;
        }
        if action == "GetObject" && key.starts_with("runs/") && key.contains("/final/") {
            cost.sections += 1;
        }
    }
    // Sections are read only with their report: at most two per report.
    assert!(
        cost.sections <= 2 * cost.finals.values().sum::<usize>(),
        "sections read without their report: {cost:?}"
    );
    cost
}

/// One call, and what it cost.
async fn measure(w: &World, emu: &Emulator, what: &str, method: &str, uri: &str) -> (Value, Cost) {
    count_from_now(emu, &w.bucket);
    let a = match method {
        "GET" => w.get(uri, Some(&w.admin)).await,
        _ => w.post(uri, Some(&w.admin), "").await,
    };
    let cost = counted(emu);
    eprintln!(
        "{what:<48} {:>3} {:?} ({} of them runs/*/report.json)",
        a.status.as_u16(),
        cost.actions,
        cost.finals.values().sum::<usize>()
    );
    let body = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
    (body, cost)
}

/// A cold start answers a key read with one listing of the run ids and a
/// few reads (the newest runs, down to the one that answers); a warm
/// process reads no finalized report twice, and a lookup of an account no
/// run reported reads nothing again.
#[tokio::test]
async fn reads_cost_a_listing_and_each_finalized_report_at_most_once() {
    let _only = FAULTS.lock().await;
    let emu = Emulator::shared().expect("the emulator harness starts");
    let mut w = World::new(Options {
        reports: (0..RUNS).map(nth).collect(),
        ..Default::default()
    })
    .await;
    let newest_scheduled = nth(RUNS - 2).run_id;
    let unknown = "999988887777";
    let mut finals: BTreeMap<String, usize> = BTreeMap::new();
    let mut add = |c: &Cost| {
        for (k, n) in &c.finals {
            *finals.entry(k.clone()).or_default() += n;
        }
    };

    // Cold: the newest runs down to the newest scheduled one that
    // reported PROD, and the run still in progress (started later).
    let (v, c) = measure(
        &w,
        emu,
        "cold: keys of a known account",
        "GET",
        &format!("/v1/accounts/{PROD}/users/alice/keys"),
    )
    .await;
    add(&c);
    assert_eq!(v["run_id"], newest_scheduled.as_str(), "{v}");
    assert_eq!(c.of("ListObjectsV2"), 1, "{c:?}");
    assert!(c.of("GetObject") <= 4, "a cold key read: {c:?}");

    let (_, c) = measure(
        &w,
        emu,
        "warm: the same keys again",
        "GET",
        &format!("/v1/accounts/{PROD}/users/alice/keys"),
    )
    .await;
    add(&c);
    assert_eq!(c.of("ListObjectsV2"), 1, "{c:?}");
    assert!(c.of("GetObject") <= 1, "a warm key read: {c:?}");

    // An account no run reported: every scheduled run is looked at once...
    let (_, c) = measure(
        &w,
        emu,
        "warm: keys of an unknown account",
        "GET",
        &format!("/v1/accounts/{unknown}/users/alice/keys"),
    )
    .await;
    add(&c);
    assert!(c.of("GetObject") <= RUNS + 1, "{c:?}");
    // ...and never again.
    for (what, method, uri) in [
        (
            "warm: keys of the unknown account again",
            "GET",
            format!("/v1/accounts/{unknown}/users/alice/keys"),
        ),
        (
            "warm: reactivation in the unknown account",
            "POST",
            format!("/v1/accounts/{unknown}/users/alice/keys/{ALICE_OLD}/reactivate"),
        ),
        ("warm: the run list", "GET", "/v1/runs".to_string()),
        ("warm: the export", "GET", "/v1/export".to_string()),
        (
            "warm: reactivation check of dave",
            "POST",
            format!("/v1/accounts/{SANDBOX}/users/dave/keys/{DAVE_KEY}/reactivate"),
        ),
    ] {
        let (_, c) = measure(&w, emu, what, method, &uri).await;
        add(&c);
        assert_eq!(c.of("ListObjectsV2"), 1, "{what}: {c:?}");
        // At most the run in progress, looked at again in case it has
        // been finalized since.
        assert!(c.of("GetObject") <= 1, "{what}: {c:?}");
    }
    // Every run by id: each report read at most once in this process.
    for i in 0..RUNS {
        let (_, c) = measure(
            &w,
            emu,
            &format!("warm: run {i} by id"),
            "GET",
            &format!("/v1/runs/{}", nth(i).run_id),
        )
        .await;
        add(&c);
        assert!(c.of("GetObject") <= 1, "{c:?}");
    }
    // The run still in progress (RUNNING) is looked at again every time:
    // it may have been finalized since.
    let finalized: Vec<String> = (0..RUNS)
        .map(|i| format!("runs/{}/report.json", nth(i).run_id))
        .collect();
    let twice: Vec<_> = finals
        .iter()
        .filter(|(k, n)| **n > 1 && finalized.contains(k))
        .collect();
    assert!(
        twice.is_empty(),
        "finalized reports read more than once by one process: {twice:?}"
    );

    // A new process: an unknown account first, then nothing more.
    w.restart();
    let (_, c) = measure(
        &w,
        emu,
        "cold: keys of an unknown account",
        "GET",
        &format!("/v1/accounts/{unknown}/users/alice/keys"),
    )
    .await;
    assert!(c.finals.values().all(|n| *n == 1), "{c:?}");
    assert_eq!(
        c.finals.len(),
        RUNS + 1,
        "each finalized run, and RUNNING: {c:?}"
    );
    let (_, c) = measure(
        &w,
        emu,
        "warm: keys of the unknown account again",
        "GET",
        &format!("/v1/accounts/{unknown}/users/alice/keys"),
    )
    .await;
    assert!(c.of("GetObject") <= 1, "{c:?}");
    emu.clear_faults().expect("clear faults");
}

/// A report written between the API's read of it and the listing that
/// tells a missing object from a refused read (S3 answers 403, not 404, to
/// a role without `s3:ListBucket`) is read again, not reported as a
/// failure: the run was finalized meanwhile (seen once on a clean clone,
/// while another run finalized under the dashboard's eyes). The first
/// GetObject is answered 403 as a missing object is; the listing then
/// shows the key.
#[tokio::test]
async fn a_report_finalized_between_the_read_and_the_listing_is_read_again() {
    let _only = FAULTS.lock().await;
    let emu = Emulator::shared().expect("the emulator harness starts");
    let w = World::new(Options::default()).await;
    emu.set_faults(json!({"seed": 1, "rules": [{
        "service": "s3", "action": "GetObject", "kind": "internal_error",
        "code": "AccessDenied", "status": 403, "message": "Access Denied",
        "match": {"Bucket": w.bucket.as_str(), "Key": format!("runs/{LATEST}/report.json")},
        "first_attempts": 1,
    }]}))
    .expect("fault rules");
    let a = w.get(&format!("/v1/runs/{LATEST}"), Some(&w.reader)).await;
    let injected = emu.faults().expect("faults")["log"]
        .as_array()
        .map(|l| l.len())
        .unwrap_or(0);
    emu.clear_faults().expect("clear faults");
    assert_eq!(injected, 1, "the first read was refused once");
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["run_id"], LATEST);
}
