//! The Lambda's manual emergency rotation event: the old key stays active
//! unless the event says `"deactivate_old": true` (the same default as
//! `keyfleet rotate`), and `key_id` names the key to replace.

use crate::fleet::*;
use keyfleet_coordinator::lambda;
use keyfleet_protocol::JobMode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_event_keeps_the_old_key_by_default_and_passes_the_key_to_replace() {
    let mut member = create_member("manual-rotate").await;
    member.deploy_agent().await;
    let central = Central::new(Setup::default()).await;
    let c = &central.coordinator;
    let cases = [
        (
            json!({"action": "rotate", "account": member.id, "user": "bob"}),
            JobMode::Rotate {
                user: "bob".into(),
                deactivate_old: false,
                key_id: None,
            },
        ),
        (
            json!({"action": "rotate", "account": member.id, "user": "bob",
                   "key_id": "AKIAIOSFODNN7EXAMPLE"}),
            JobMode::Rotate {
                user: "bob".into(),
                deactivate_old: false,
                key_id: Some("AKIAIOSFODNN7EXAMPLE".into()),
            },
        ),
        (
            json!({"action": "rotate", "account": member.id, "user": "bob",
                   "deactivate_old": true, "key_id": "AKIAIOSFODNN7EXAMPLE"}),
            JobMode::Rotate {
                user: "bob".into(),
                deactivate_old: true,
                key_id: Some("AKIAIOSFODNN7EXAMPLE".into()),
            },
        ),
    ];
    for (event, mode) in cases {
        let answer = lambda::handle(c, event.clone())
            .await
            .unwrap_or_else(|e| panic!("{event}: {}", e.error_message));
        let jobs = member.receive_jobs().await;
        assert_eq!(jobs.len(), 1, "{event}: one job");
        assert_eq!(jobs[0].0.run_id, answer["run_id"], "{event}");
        assert_eq!(jobs[0].0.mode, mode, "{event}");
    }
    // A key id or user name the agent would refuse is refused at once,
    // before any run is recorded or job sent.
    for event in [
        json!({"action": "rotate", "account": member.id, "user": "bob", "key_id": "not-a-key"}),
        json!({"action": "rotate", "account": member.id, "user": "bob smith"}),
    ] {
        let err = lambda::handle(c, event.clone()).await.expect_err("refused");
        assert_eq!(err.error_type, "keyfleet.BadRequest", "{event}");
        let msg = err.error_message;
        assert!(
            msg.contains("key_id") || msg.contains("user"),
            "{event}: {msg}"
        );
        assert!(member.receive_jobs().await.is_empty(), "{event}: no job");
    }
}
