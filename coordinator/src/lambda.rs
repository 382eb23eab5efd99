//! The coordinator Lambda's single handler: it looks at the event's shape
//! and dispatches.
//!
//! - SQS batch (`Records` from the results queue): intake, with per-message
//!   batch failures for infrastructure errors only (a rejected result is
//!   consumed: retrying a forgery cannot make it genuine);
//! - EventBridge schedule: the rule's constant input says what to do
//!   (`{"action":"start"}` daily, `{"action":"sweep"}` hourly); a bare
//!   `Scheduled Event` starts a run. A scheduled start that selects no
//!   account answers with the error in its payload rather than failing the
//!   (retried) asynchronous invocation; see [`Command::Start`];
//! - manual invoke: `{"action":"run"}`, `{"action":"run","accounts":[..]}`,
//!   `{"action":"plan"}` (dry run), `{"action":"rotate","account":"..",
//!   "user":"..","deactivate_old":false,"key_id":"AKIA.."}` (emergency;
//!   `deactivate_old` defaults to false and `key_id` is optional),
//!   `{"action":"sweep"}`, `{"action":"finalize","run_id":".."}`.

use crate::service::{Coordinator, CoordinatorError, Intake, RunRequest};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use keyfleet_protocol::JobMode;
use serde::Deserialize;
use serde_json::{json, Value};

/// A manual or scheduled command.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// A run started by a person (or a script) invoking the function: a
    /// run that selects no account fails the invocation.
    Run {
        #[serde(default)]
        accounts: Option<Vec<String>>,
        #[serde(default)]
        dry_run: bool,
    },
    /// What the Terraform schedule sends (and a bare `Scheduled Event`).
    /// EventBridge invokes asynchronously, and Lambda retries a failed
    /// asynchronous invocation twice: a run that selects no account would
    /// only be repeated with the same result. So it answers with the error
    /// in its payload instead; the SNS alert, the report and the summary
    /// email say it (once). Other errors (S3, Organizations) still fail the
    /// invocation and are retried.
    Start {
        #[serde(default)]
        accounts: Option<Vec<String>>,
        #[serde(default)]
        dry_run: bool,
    },
    Plan {
        #[serde(default)]
        accounts: Option<Vec<String>>,
    },
    /// Emergency rotation of one user. As everywhere (`keyfleet rotate`,
    /// the protocol), the old key stays active unless `deactivate_old`;
    /// `key_id` names the key to replace (needed when the user has two
    /// active keys: the agent refuses otherwise).
    Rotate {
        account: String,
        user: String,
        #[serde(default)]
        deactivate_old: bool,
        #[serde(default)]
        key_id: Option<String>,
    },
    Sweep,
    Finalize {
        run_id: String,
    },
}

/// Why an event was not understood.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event is neither an SQS batch, a schedule nor a command: {0}")]
    Unknown(String),
    #[error("bad command: {0}")]
    BadCommand(String),
}

/// What the event is.
#[derive(Debug)]
pub enum Event {
    Results(SqsEvent),
    Command(Command),
}

/// Classifies a raw event.
pub fn classify(v: Value) -> Result<Event, EventError> {
    if v.get("Records").is_some() {
        return serde_json::from_value(v)
            .map(Event::Results)
            .map_err(|e| EventError::BadCommand(e.to_string()));
    }
    if v.get("action").is_some() {
        return serde_json::from_value(v)
            .map(Event::Command)
            .map_err(|e| EventError::BadCommand(e.to_string()));
    }
    if v.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        return Ok(Event::Command(Command::Start {
            accounts: None,
            dry_run: false,
        }));
    }
    Err(EventError::Unknown(
        v.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_else(|| "not an object".into()),
    ))
}

/// Runs one command; returns a JSON summary for the invoker.
pub async fn run_command(c: &Coordinator, cmd: Command) -> Result<Value, crate::CoordinatorError> {
    Ok(match cmd {
        Command::Run { accounts, dry_run } => {
            let m = c
                .start_run(RunRequest {
                    dry_run,
                    accounts,
                    ..Default::default()
                })
                .await?;
            json!({"run_id": m.run_id, "accounts": m.accounts.len(), "skipped": m.skipped.len()})
        }
        Command::Start { accounts, dry_run } => {
            match c
                .start_run(RunRequest {
                    dry_run,
                    accounts,
                    ..Default::default()
                })
                .await
            {
                Ok(m) => {
                    json!({"run_id": m.run_id, "accounts": m.accounts.len(), "skipped": m.skipped.len()})
                }
                Err(e) => {
                    let CoordinatorError::NoAccountSelected { run_id, .. } = &e else {
                        return Err(e);
                    };
                    tracing::error!(run_id = %run_id, error = %e, "scheduled run selected no account");
                    json!({"run_id": run_id, "accounts": 0, "error": e.to_string()})
                }
            }
        }
        Command::Plan { accounts } => {
            let m = c
                .start_run(RunRequest {
                    dry_run: true,
                    accounts,
                    ..Default::default()
                })
                .await?;
            json!({"run_id": m.run_id, "dry_run": true, "accounts": m.accounts.len()})
        }
        Command::Rotate {
            account,
            user,
            deactivate_old,
            key_id,
        } => {
            let m = c
                .start_run(RunRequest {
                    accounts: Some(vec![account]),
                    mode: JobMode::Rotate {
                        user,
                        deactivate_old,
                        key_id,
                    },
                    ..Default::default()
                })
                .await?;
            json!({"run_id": m.run_id, "accounts": m.accounts.len()})
        }
        Command::Sweep => json!({"finalized": c.sweep().await?}),
        Command::Finalize { run_id } => json!({"finalized": c.finalize(&run_id).await?.is_some()}),
    })
}

/// Intake of a results batch, with partial batch failures.
pub async fn handle_results(c: &Coordinator, event: SqsEvent) -> SqsBatchResponse {
    let mut resp = SqsBatchResponse::default();
    for r in event.records {
        let id = r.message_id.clone().unwrap_or_default();
        match c.intake(r.body.as_deref().unwrap_or("")).await {
            Ok(Intake::Rejected(why)) => {
                tracing::warn!(message_id = %id, reason = %why, "result consumed after rejection")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "intake failed; will retry");
                let mut f = BatchItemFailure::default();
                f.item_identifier = id;
                resp.batch_item_failures.push(f);
            }
        }
    }
    resp
}

/// The handler body: classify, dispatch, answer.
pub async fn handle(c: &Coordinator, event: Value) -> Result<Value, lambda_runtime::Error> {
    match classify(event)? {
        Event::Results(e) => Ok(serde_json::to_value(handle_results(c, e).await)?),
        Event::Command(cmd) => Ok(run_command(c, cmd).await?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_documented_event() {
        assert!(matches!(
            classify(json!({"action":"run"})).unwrap(),
            Event::Command(Command::Run {
                accounts: None,
                dry_run: false
            })
        ));
        assert!(matches!(
            classify(json!({"action":"run","accounts":["111122223333"]})).unwrap(),
            Event::Command(Command::Run {
                accounts: Some(_),
                ..
            })
        ));
        assert!(matches!(
            classify(json!({"action":"plan"})).unwrap(),
            Event::Command(Command::Plan { .. })
        ));
        assert!(matches!(
            classify(json!({"action":"rotate","account":"111122223333","user":"bob"})).unwrap(),
            Event::Command(Command::Rotate {
                deactivate_old: false,
                key_id: None,
                ..
            })
        ));
        assert!(matches!(
            classify(
                json!({"action":"rotate","account":"111122223333","user":"bob",
                            "deactivate_old":true,"key_id":"AKIAIOSFODNN7EXAMPLE"})
            )
            .unwrap(),
            Event::Command(Command::Rotate {
                deactivate_old: true,
                key_id: Some(_),
                ..
            })
        ));
        assert!(matches!(
            classify(json!({"detail-type":"Scheduled Event","source":"aws.events"})).unwrap(),
            Event::Command(Command::Start { .. })
        ));
        assert!(matches!(
            classify(json!({"action":"start"})).unwrap(),
            Event::Command(Command::Start {
                accounts: None,
                dry_run: false
            })
        ));
        assert!(matches!(
            classify(json!({"Records":[]})).unwrap(),
            Event::Results(_)
        ));
        assert!(matches!(
            classify(json!({"action":"explode"})),
            Err(EventError::BadCommand(_))
        ));
        assert!(matches!(
            classify(json!({"hello":1})),
            Err(EventError::Unknown(_))
        ));
        assert!(matches!(classify(json!([1])), Err(EventError::Unknown(_))));
    }
}
