//! Intake takes genuine results and refuses forged or broken ones without
//! touching anything; a duplicate delivery is dropped and mails nobody.

use crate::fleet::*;
use keyfleet_coordinator::{Intake, Rejection, RunRequest};
use keyfleet_protocol::Token;

/// `body` with top-level fields replaced.
fn forge(body: &str, fields: &[(&str, serde_json::Value)]) -> String {
    let mut v: serde_json::Value = serde_json::from_str(body).expect("JSON result");
    for (k, val) in fields {
        v[*k] = val.clone();
    }
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_accepts_genuine_results_and_rejects_forged_ones() {
    let (a, _) = normal_member("intake-a").await;
    let (b, _) = normal_member("intake-b").await;
    let stranger = create_member("intake-stranger").await;
    let central = Central::new(Setup::default()).await;
    let manifest = central
        .coordinator
        .start_run(RunRequest {
            accounts: Some(vec![a.id.clone(), b.id.clone()]),
            ..RunRequest::default()
        })
        .await
        .expect("start run");
    let run_id = manifest.run_id.clone();
    a.run_agent(&central.public_key).await;
    b.run_agent(&central.public_key).await;

    let mut results = central.receive_results().await;
    assert_eq!(results.len(), 2, "one result per agent");
    results.sort_by_key(|(body, _)| body.contains(&format!("\"account_id\":\"{}\"", b.id)));
    let (body_a, receipt_a) = results[0].clone();
    let (body_b, receipt_b) = results[1].clone();
    assert!(body_a.contains(&a.id) && body_b.contains(&b.id));
    let token_b: serde_json::Value =
        serde_json::from_str::<serde_json::Value>(&body_b).expect("JSON")["token"].clone();

    let rejected = |why: Rejection| Intake::Rejected(why);
    let cases: Vec<(&str, String, Intake)> = vec![
        (
            "a fresh token",
            forge(&body_a, &[("token", Token::generate().0.into())]),
            rejected(Rejection::BadToken {
                run: run_id.clone(),
                account: a.id.clone(),
            }),
        ),
        (
            "account B's genuine token on account A's result",
            forge(&body_a, &[("token", token_b.clone())]),
            rejected(Rejection::BadToken {
                run: run_id.clone(),
                account: a.id.clone(),
            }),
        ),
        (
            "an account the run sent no job to",
            forge(
                &body_b,
                &[
                    ("account_id", stranger.id.clone().into()),
                    ("token", token_b),
                ],
            ),
            rejected(Rejection::UnknownAccount {
                run: run_id.clone(),
                account: stranger.id.clone(),
            }),
        ),
        (
            "an unknown run",
            forge(&body_a, &[("run_id", "20200101T000000Z-nosuch".into())]),
            rejected(Rejection::UnknownRun("20200101T000000Z-nosuch".into())),
        ),
    ];
    for (what, body, expected) in cases {
        let got = central
            .coordinator
            .intake(&body)
            .await
            .unwrap_or_else(|e| panic!("intake of {what} must not fail: {e}"));
        assert_eq!(got, expected, "{what}");
    }
    for (what, body) in [
        ("not JSON", "this is not a result".to_string()),
        ("an empty object", "{}".to_string()),
        ("an unknown version", forge(&body_a, &[("v", 99.into())])),
        (
            "a missing field",
            forge(&body_a, &[("status", serde_json::Value::Null)]),
        ),
        (
            "a bad account id",
            forge(&body_a, &[("account_id", "12345".into())]),
        ),
    ] {
        let got = central
            .coordinator
            .intake(&body)
            .await
            .unwrap_or_else(|e| panic!("intake of {what} must not fail: {e}"));
        assert!(
            matches!(got, Intake::Rejected(Rejection::Malformed(_))),
            "{what}: {got:?}"
        );
    }

    // Nothing was stored, mailed or finalized by the rejected messages.
    let store = central.coordinator.store();
    assert!(
        store
            .list(&format!("runs/{run_id}/results/"))
            .await
            .expect("list")
            .is_empty(),
        "a rejected message stored a result"
    );
    assert!(
        store
            .list("runs/20200101T000000Z-nosuch/")
            .await
            .expect("list")
            .is_empty(),
        "a result for an unknown run was stored"
    );
    assert!(central
        .object(&format!("runs/{run_id}/report.json"))
        .await
        .is_none());
    assert!(emails_of_run(&run_id).is_empty(), "emails before intake");
    // Each rejection is alerted.
    let alerts = central.alerts(9).await;
    assert_eq!(alerts.len(), 9, "{alerts:?}");
    assert!(alerts
        .iter()
        .all(|(subject, _)| subject == "keyfleet: result rejected"));

    // The genuine results still go through.
    let got_a = central.coordinator.intake(&body_a).await.expect("intake A");
    assert_eq!(
        got_a,
        Intake::Accepted {
            run_id: run_id.clone(),
            account_id: a.id.clone(),
            account_complete: true,
            finalized: false,
        }
    );
    central.delete_result(&receipt_a).await;
    let after_a = emails_of_run(&run_id);
    assert!(
        !after_a.is_empty() && after_a.iter().all(|m| m.account == a.id),
        "owner emails of account A only: {after_a:?}"
    );
    let got_b = central.coordinator.intake(&body_b).await.expect("intake B");
    assert_eq!(
        got_b,
        Intake::Accepted {
            run_id: run_id.clone(),
            account_id: b.id.clone(),
            account_complete: true,
            finalized: true,
        }
    );
    central.delete_result(&receipt_b).await;
    let report = central
        .coordinator
        .report(&run_id)
        .await
        .expect("report")
        .expect("finalized");
    assert_eq!(report.totals.accounts_ok, 2);
    assert!(!report.has_problems());

    // A duplicate delivery (SQS redelivers, or the agent resends) is
    // dropped: no second email of any kind.
    let before = emails_of_run(&run_id).len();
    for (body, account) in [(&body_a, &a.id), (&body_b, &b.id)] {
        let got = central.coordinator.intake(body).await.expect("duplicate");
        assert_eq!(
            got,
            Intake::Duplicate {
                run_id: run_id.clone(),
                account_id: account.clone(),
            }
        );
    }
    assert_eq!(emails_of_run(&run_id).len(), before, "a duplicate mailed");
    assert_eq!(central.alerts(0).await, vec![], "no alert for duplicates");
}
