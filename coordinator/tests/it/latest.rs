//! `report --run latest` is the newest finalized real run by start time
//! (the manifest's `created_at`), whatever the text order of run ids (two
//! runs started in the same second differ only by a random suffix) and
//! however recent a dry run is.

use crate::fleet::*;
use keyfleet_protocol::{encode, JobMode, Policy, RunManifest, VERSION};
use keyfleet_reports::store;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

fn manifest(run_id: &str, created_at: OffsetDateTime, dry_run: bool) -> RunManifest {
    RunManifest {
        v: VERSION,
        run_id: run_id.into(),
        created_at,
        deadline: created_at + Duration::hours(1),
        policy: Policy::default(),
        dry_run,
        mode: JobMode::Scheduled,
        accounts: vec![],
        skipped: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_is_the_newest_finalized_real_run_by_start_time() {
    let central = Central::new(Setup::default()).await;
    let c = &central.coordinator;
    let t0 = datetime!(2026-03-10 06:00:00 UTC);
    // Two real runs started in the same second: the later one's id sorts
    // first as text.
    let earlier = manifest(
        "20260310T060000Z-zzzzzz",
        t0 + Duration::milliseconds(100),
        false,
    );
    let later = manifest(
        "20260310T060000Z-aaaaaa",
        t0 + Duration::milliseconds(900),
        false,
    );
    // A dry run started after both, and a real run started after that which
    // has not finalized yet.
    let dry = manifest("20260310T060001Z-mmmmmm", t0 + Duration::seconds(1), true);
    let open = manifest("20260310T060002Z-bbbbbb", t0 + Duration::seconds(2), false);
    for m in [&earlier, &later, &dry, &open] {
        c.store()
            .put(
                &store::manifest_key(&m.run_id),
                encode(m),
                "application/json",
            )
            .await
            .expect("put manifest");
    }
    assert_eq!(
        c.report("latest").await.expect("latest"),
        None,
        "nothing finalized yet"
    );
    for m in [&later, &earlier] {
        c.finalize(&m.run_id)
            .await
            .expect("finalize")
            .expect("finalized now");
    }
    let latest = c.report("latest").await.expect("latest").expect("a report");
    assert_eq!(latest.run_id, later.run_id, "the run that started last");

    c.finalize(&dry.run_id)
        .await
        .expect("finalize")
        .expect("finalized now");
    let latest = c.report("latest").await.expect("latest").expect("a report");
    assert_eq!(latest.run_id, later.run_id, "a dry run is never latest");
    // The dry run's report is still there by its id.
    let dry_report = c
        .report(&dry.run_id)
        .await
        .expect("report")
        .expect("stored");
    assert!(dry_report.dry_run);
}
