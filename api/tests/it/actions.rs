//! Rotation and reactivation: checked, then handed to the coordinator.

use crate::fixture::*;
use crate::world::{Coord, Options, World};
use keyfleet_protocol::command::Command;
use serde_json::json;

fn rotate_uri(account: &str, user: &str) -> String {
    format!("/v1/accounts/{account}/users/{user}/rotate")
}

fn reactivate_uri(account: &str, user: &str, key: &str) -> String {
    format!("/v1/accounts/{account}/users/{user}/keys/{key}/reactivate")
}

#[tokio::test]
async fn rotate_invokes_the_coordinator_and_answers_its_run_id() {
    let w = World::new(Options::default()).await;
    let a = w.post(&rotate_uri(PROD, "alice"), Some(&w.admin), "").await;
    assert_eq!(a.status, 202, "{}", a.text());
    assert_eq!(a.json(), json!({"run_id": "20260305T000000Z-ffffff"}));
    assert_eq!(
        a.header("location"),
        Some("/v1/runs/20260305T000000Z-ffffff")
    );
    let a = w
        .post(
            &rotate_uri(PROD, "bob"),
            Some(&w.rotator),
            &json!({"key_id": BOB_KEPT, "deactivate_old": true}).to_string(),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text());
    assert_eq!(
        *w.fake.commands.lock().unwrap(),
        [
            Command::Rotate {
                account: PROD.into(),
                user: "alice".into(),
                deactivate_old: false,
                key_id: None
            },
            Command::Rotate {
                account: PROD.into(),
                user: "bob".into(),
                deactivate_old: true,
                key_id: Some(BOB_KEPT.into())
            },
        ]
    );
}

#[tokio::test]
async fn a_bad_rotate_request_is_refused_before_the_coordinator_hears_of_it() {
    let w = World::new(Options::default()).await;
    for body in [
        "{\"key_id\": \"nope\"}",
        "{\"deactivate_old\": \"yes\"}",
        "{\"key\": \"AKIAALICEOLD00000001\"}",
        "not json",
    ] {
        w.post(&rotate_uri(PROD, "alice"), Some(&w.admin), body)
            .await
            .problem(400);
    }
    w.post(&rotate_uri("12345", "alice"), Some(&w.admin), "")
        .await
        .problem(400);
    w.post(&rotate_uri(PROD, "a%2Fb"), Some(&w.admin), "")
        .await
        .problem(400);
    let big = format!("{{\"key_id\": \"{}\"}}", "A".repeat(20_000));
    w.post(&rotate_uri(PROD, "alice"), Some(&w.admin), &big)
        .await
        .problem(413);
    assert!(w.fake.commands.lock().unwrap().is_empty());
}

#[tokio::test]
async fn reactivation_is_checked_against_the_newest_run_of_the_user() {
    let w = World::new(Options::default()).await;
    // Deleted in the latest run.
    let p = w
        .post(
            &reactivate_uri(PROD, "bob", BOB_DELETED),
            Some(&w.admin),
            "",
        )
        .await
        .problem(409);
    assert_eq!(p["type"], "urn:keyfleet:problem:key-deleted");
    assert!(p["detail"].as_str().unwrap().contains("deleted"), "{p}");
    // Active: nothing to switch on.
    let p = w
        .post(
            &reactivate_uri(PROD, "alice", ALICE_OLD),
            Some(&w.admin),
            "",
        )
        .await
        .problem(409);
    assert_eq!(p["type"], "urn:keyfleet:problem:key-active");
    // Seen only in an earlier run, or never: 404.
    w.post(&reactivate_uri(PROD, "alice", UNSEEN), Some(&w.admin), "")
        .await
        .problem(404);
    // Unknown user or account.
    w.post(&reactivate_uri(PROD, "zed", CAROL_OLD), Some(&w.admin), "")
        .await
        .problem(404);
    w.post(
        &reactivate_uri("999999999999", "carol", CAROL_OLD),
        Some(&w.admin),
        "",
    )
    .await
    .problem(404);
    // Malformed key id.
    w.post(
        &reactivate_uri(PROD, "carol", "AKIA123"),
        Some(&w.admin),
        "",
    )
    .await
    .problem(400);
    assert!(w.fake.commands.lock().unwrap().is_empty());

    // Inactive in the latest run.
    let a = w
        .post(
            &reactivate_uri(PROD, "carol", CAROL_OLD),
            Some(&w.admin),
            "",
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text());
    assert_eq!(a.json()["run_id"], "20260305T000000Z-ffffff");
    // Deactivated by the emergency rotation after the latest scheduled run.
    let a = w
        .post(
            &reactivate_uri(SANDBOX, "dave", DAVE_KEY),
            Some(&w.rotator),
            "",
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text());
    assert_eq!(
        *w.fake.commands.lock().unwrap(),
        [
            Command::Reactivate {
                account: PROD.into(),
                user: "carol".into(),
                key_id: CAROL_OLD.into()
            },
            Command::Reactivate {
                account: SANDBOX.into(),
                user: "dave".into(),
                key_id: DAVE_KEY.into()
            },
        ]
    );
}

#[tokio::test]
async fn the_coordinator_s_refusals_are_mapped() {
    let w = World::new(Options::default()).await;
    *w.fake.answer.lock().unwrap() = Some(Err((
        "keyfleet.NoAccountSelected".into(),
        "run r failed: no account selected; report: s3://keyfleet-reports/reports/r/report.html"
            .into(),
    )));
    let p = w
        .post(&rotate_uri("123412341234", "alice"), Some(&w.admin), "")
        .await
        .problem(404);
    assert!(!p["detail"].as_str().unwrap().contains("s3://"), "{p}");
    *w.fake.answer.lock().unwrap() = Some(Err((
        "Runtime.ExitError".into(),
        "secret arn:aws:secretsmanager:us-east-1:111122223333:secret:x".into(),
    )));
    let p = w
        .post(&rotate_uri(PROD, "alice"), Some(&w.admin), "")
        .await
        .problem(502);
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("error id") && !detail.contains("arn:"),
        "{p}"
    );
    // An answer without a run id is the coordinator's failure too.
    *w.fake.answer.lock().unwrap() = Some(Ok(json!({"finalized": 1})));
    w.post(&rotate_uri(PROD, "alice"), Some(&w.admin), "")
        .await
        .problem(502);
}

/// Against the emulator's Lambda: a coordinator function that does not
/// exist is a 502 that names no internal detail.
#[tokio::test]
async fn a_missing_coordinator_function_is_a_502() {
    let w = World::new(Options {
        coordinator: Coord::MissingLambda,
        ..Default::default()
    })
    .await;
    for (uri, body) in [
        (rotate_uri(PROD, "alice"), String::new()),
        (reactivate_uri(PROD, "carol", CAROL_OLD), String::new()),
    ] {
        let p = w.post(&uri, Some(&w.admin), &body).await.problem(502);
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains("invoking the coordinator"), "{p}");
        assert!(!detail.contains("keyfleet-coordinator-absent"), "{p}");
    }
}
