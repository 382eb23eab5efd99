//! The coordinator Lambda's single handler: it looks at the event's shape
//! and dispatches.
//!
//! - SQS batch (`Records` from the results queue): each record goes to the
//!   one per-message function, [`Coordinator::intake`], with per-message
//!   batch failures for infrastructure errors only (a rejected result is
//!   consumed: retrying a forgery cannot make it genuine);
//! - EventBridge schedule: the rule's constant input says what to do
//!   (`{"action":"start"}` daily, `{"action":"sweep"}` hourly); a bare
//!   `Scheduled Event` starts a run. A scheduled start that selects no
//!   account answers with the error in its payload rather than failing the
//!   (retried) asynchronous invocation; see [`Command::Start`];
//! - manual invoke: `{"action":"run"}`, `{"action":"run","accounts":[..]}`,
//!   `{"action":"plan","as_of":"2026-01-01T00:00:00Z"}` (dry run; `as_of`
//!   optional), `{"action":"rotate","account":"..","user":"..",
//!   "deactivate_old":false,"key_id":"AKIA.."}` (emergency;
//!   `deactivate_old` defaults to false and `key_id` is optional),
//!   `{"action":"reactivate","account":"..","user":"..","key_id":"AKIA.."}`
//!   (switch a key keyfleet deactivated back on),
//!   `{"action":"sweep"}`, `{"action":"finalize","run_id":".."}`. A
//!   finalize that wrote the report answers how the run served its
//!   accounts, as `keyfleet run`'s exit code does
//!   ([`keyfleet_reports::outcome::Served`]): `{"finalized":true,"outcome":"ok"}`,
//!   `{"finalized":true,"outcome":"unserved","accounts":[["<id>","<state>"],..]}`
//!   or `{"finalized":true,"outcome":"failed","reason":".."}`.
//!
//! [`Command`] is also what the command line sends (`keyfleet run`, `plan`,
//! `rotate` invoke the deployed coordinator with it) and runs in-process
//! (`--local`): [`run_request`] is the one place where a command
//! becomes a [`RunRequest`].
//!
//! [`run_function`] is the whole Lambda process (the `coordinator`
//! bootstrap and `keyfleet lambda coordinator` both call it).

use crate::service::{Coordinator, CoordinatorClients, CoordinatorError, Intake, RunRequest};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
pub use keyfleet_protocol::command::Command;
use keyfleet_protocol::JobMode;
use lambda_runtime::Diagnostic;
use serde_json::{json, Value};

/// The run a command starts, or `None` for the commands that start none
/// (sweep, finalize): the one place where a [`Command`] becomes a
/// [`RunRequest`].
pub fn run_request(cmd: &Command) -> Option<RunRequest> {
    match cmd.clone() {
        Command::Run { accounts, dry_run } | Command::Start { accounts, dry_run } => {
            Some(RunRequest {
                dry_run,
                accounts,
                ..Default::default()
            })
        }
        Command::Plan { accounts, as_of } => Some(RunRequest {
            dry_run: true,
            accounts,
            as_of,
            ..Default::default()
        }),
        Command::Rotate {
            account,
            user,
            deactivate_old,
            key_id,
        } => Some(RunRequest {
            accounts: Some(vec![account]),
            mode: JobMode::Rotate {
                user,
                deactivate_old,
                key_id,
            },
            ..Default::default()
        }),
        Command::Reactivate {
            account,
            user,
            key_id,
        } => Some(RunRequest {
            accounts: Some(vec![account]),
            mode: JobMode::Reactivate { user, key_id },
            ..Default::default()
        }),
        Command::Sweep | Command::Finalize { .. } => None,
    }
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

/// Runs one command; returns a JSON summary for the invoker: the run's id
/// and how many accounts it has (`{"run_id", "accounts", "skipped",
/// "dry_run"}`), or what a sweep or finalize did.
pub async fn run_command(c: &Coordinator, cmd: Command) -> Result<Value, CoordinatorError> {
    let Some(req) = run_request(&cmd) else {
        return Ok(match cmd {
            Command::Finalize { run_id } => match c.finalize(&run_id).await? {
                // How the run served its accounts, as `keyfleet run`'s exit
                // code says it (`keyfleet_reports::outcome::Served`).
                Some(report) => {
                    let mut answer = json!(keyfleet_reports::outcome::served(&report));
                    answer["finalized"] = json!(true);
                    answer
                }
                None => json!({"finalized": false}),
            },
            _ => {
                // Pending mail first: it does not depend on the runs
                // finalized now, and an error there must not stop them.
                let mail = match c.resend_pending_mail().await {
                    Ok(m) => json!(m),
                    Err(e) => {
                        tracing::error!(error = %e, "resending pending mail failed");
                        json!({"error": e.to_string()})
                    }
                };
                json!({"finalized": c.sweep().await?, "mail": mail})
            }
        });
    };
    let dry_run = req.dry_run;
    match c.start_run(req).await {
        Ok(m) => Ok(json!({
            "run_id": m.run_id,
            "accounts": m.accounts.len(),
            "skipped": m.skipped.len(),
            "dry_run": dry_run,
        })),
        Err(e @ CoordinatorError::NoAccountSelected { .. })
            if matches!(cmd, Command::Start { .. }) =>
        {
            let CoordinatorError::NoAccountSelected { run_id, .. } = &e else {
                unreachable!("matched above")
            };
            tracing::error!(run_id = %run_id, error = %e, "scheduled run selected no account");
            Ok(json!({"run_id": run_id, "accounts": 0, "error": e.to_string()}))
        }
        Err(e) => Err(e),
    }
}

/// How many results of a batch are taken in at once. Intake of different
/// results is independent (each is its own conditional write; notices and
/// deliveries are keyed per account and user), and the mapping delivers up
/// to 10 a batch.
const INTAKE_CONCURRENCY: usize = 10;

/// Intake of a results batch, with partial batch failures: a rejected
/// result is consumed (logged), an infrastructure error retries that
/// message only.
pub async fn handle_results(c: &Coordinator, event: SqsEvent) -> SqsBatchResponse {
    keyfleet_lambda::sqs::run_batch(event, INTAKE_CONCURRENCY, |r| async move {
        let id = r.message_id.as_deref().unwrap_or_default();
        let receive_count = keyfleet_lambda::sqs::receive_count(&r);
        match c
            .intake(r.body.as_deref().unwrap_or(""), receive_count)
            .await
        {
            Ok(Intake::Rejected(why)) => {
                tracing::warn!(message_id = %id, reason = %why, "result consumed after rejection");
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "intake failed; will retry");
                Err(e)
            }
        }
    })
    .await
}

/// The handler body: classify, dispatch, answer.
/// A failed invocation answers `{"errorType", "errorMessage"}`: the type
/// names the kind of failure (`keyfleet.NoAccountSelected`,
/// `keyfleet.BadEvent`, ...), the message says what is wrong.
pub async fn handle(c: &Coordinator, event: Value) -> Result<Value, Diagnostic> {
    match classify(event).map_err(|e| diagnostic("BadEvent", &e))? {
        Event::Results(e) => Ok(serde_json::to_value(handle_results(c, e).await)
            .map_err(|e| diagnostic("Internal", &e))?),
        Event::Command(cmd) => run_command(c, cmd)
            .await
            .map_err(|e| diagnostic(error_kind(&e), &e)),
    }
}

fn diagnostic(kind: &str, e: &dyn std::fmt::Display) -> Diagnostic {
    Diagnostic {
        error_type: format!("keyfleet.{kind}"),
        error_message: e.to_string(),
    }
}

fn error_kind(e: &CoordinatorError) -> &'static str {
    match e {
        CoordinatorError::Store(_) | CoordinatorError::Reports(_) => "Store",
        CoordinatorError::Org(_) => "Organizations",
        CoordinatorError::UnknownRun(_) => "UnknownRun",
        CoordinatorError::Ses { .. }
        | CoordinatorError::Mail { .. }
        | CoordinatorError::MailDeferred { .. }
        | CoordinatorError::DigestFailed(_) => "Mail",
        CoordinatorError::KeyRing { .. } => "KeyRing",
        CoordinatorError::Policy(_) => "Policy",
        CoordinatorError::Request(_) => "BadRequest",
        CoordinatorError::NoAccountSelected { .. } => "NoAccountSelected",
    }
}

/// `KEYFLEET_ORG_READER_EXTERNAL_ID`: the `sts:ExternalId` the org reader
/// role's trust policy requires, when its module sets one (unset or empty:
/// none is sent).
pub fn org_reader_external_id() -> Option<String> {
    std::env::var("KEYFLEET_ORG_READER_EXTERNAL_ID")
        .ok()
        .filter(|v| !v.is_empty())
}

/// The coordinator's Lambda process: configuration, clients and the
/// private key are loaded once at init; each event goes to [`handle`].
///
/// Against an emulator (`AWS_ENDPOINT_URL` set, as the emulator's Lambda
/// execution sets it) S3 is addressed path-style, which emulators need and
/// AWS accepts.
pub async fn run_function() -> Result<(), lambda_runtime::Error> {
    use aws_config::BehaviorVersion;
    keyfleet_lambda::logs::init_json_logs();
    let config = crate::config::from_env()?;
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let org_sdk = match std::env::var("KEYFLEET_ORG_READER_ROLE_ARN") {
        Ok(role) if !role.is_empty() => {
            let mut provider = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("keyfleet-coordinator");
            // The org reader's trust may require an ExternalId (the
            // org-reader module's `external_id`): send the one configured.
            if let Some(external_id) = org_reader_external_id() {
                provider = provider.external_id(external_id);
            }
            let provider = provider.configure(&sdk).build().await;
            sdk.to_builder()
                .credentials_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(provider),
                )
                .build()
        }
        _ => sdk.clone(),
    };
    let secret_arn = std::env::var("KEYFLEET_PRIVATE_KEY_SECRET_ARN")
        .map_err(|_| "environment variable KEYFLEET_PRIVATE_KEY_SECRET_ARN is not set")?;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let key_b64 = sm
        .get_secret_value()
        .secret_id(&secret_arn)
        .send()
        .await
        .map_err(|e| {
            format!(
                "reading the private key {secret_arn}: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            )
        })?
        .secret_string()
        .unwrap_or_default()
        .to_string();
    let keys = keyfleet_protocol::KeyRing::parse(&key_b64)
        .map_err(|e| format!("the key ring in {secret_arn}: {e}"))?;
    let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some();
    let s3 = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(path_style)
        .build();
    let clients = CoordinatorClients {
        s3: aws_sdk_s3::Client::from_conf(s3),
        sqs: aws_sdk_sqs::Client::new(&sdk),
        ses: aws_sdk_sesv2::Client::new(&sdk),
        sns: aws_sdk_sns::Client::new(&sdk),
        org: aws_sdk_organizations::Client::new(&org_sdk),
    };
    let coordinator =
        Coordinator::new(config, clients, keys).with_key_source(crate::service::KeySource {
            client: sm,
            secret_id: secret_arn,
        });
    // Boxed: the runtime's future is deep enough to overflow the compiler's
    // layout query limit when embedded in a caller's future.
    Box::pin(lambda_runtime::run(lambda_runtime::service_fn(
        |event: lambda_runtime::LambdaEvent<Value>| {
            let c = coordinator.clone();
            async move {
                let answer = handle(&c, event.payload).await;
                if let Err(d) = &answer {
                    // One line per failed invocation, at ERROR: what
                    // `keyfleet doctor` counts in the function's log.
                    tracing::error!(error_type = %d.error_type, error = %d.error_message, "invocation failed");
                }
                answer
            }
        },
    )))
    .await
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
        let reactivate = classify(json!({"action":"reactivate","account":"111122223333",
                                         "user":"bob","key_id":"AKIAIOSFODNN7EXAMPLE"}))
        .unwrap();
        let Event::Command(cmd) = reactivate else {
            panic!("not a command: {reactivate:?}");
        };
        let req = run_request(&cmd).expect("a reactivation starts a run");
        assert_eq!(req.accounts, Some(vec!["111122223333".to_string()]));
        assert_eq!(
            req.mode,
            JobMode::Reactivate {
                user: "bob".into(),
                key_id: "AKIAIOSFODNN7EXAMPLE".into()
            }
        );
        assert!(!req.dry_run);
        assert!(
            classify(json!({"action":"reactivate","account":"111122223333","user":"bob"})).is_err()
        );
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

    /// What the command line sends is what the function reads back, and
    /// each command maps to its run in one place.
    #[test]
    fn commands_round_trip_and_map_to_their_runs() {
        let as_of = time::macros::datetime!(2026-01-02 03:04:05 UTC);
        let cases = [
            Command::Run {
                accounts: Some(vec!["111122223333".into()]),
                dry_run: true,
            },
            Command::Start {
                accounts: None,
                dry_run: false,
            },
            Command::Plan {
                accounts: None,
                as_of: Some(as_of),
            },
            Command::Rotate {
                account: "111122223333".into(),
                user: "bob".into(),
                deactivate_old: false,
                key_id: Some("AKIAIOSFODNN7EXAMPLE".into()),
            },
            Command::Reactivate {
                account: "111122223333".into(),
                user: "bob".into(),
                key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            },
            Command::Sweep,
            Command::Finalize { run_id: "r".into() },
        ];
        for cmd in cases {
            let sent = serde_json::to_value(&cmd).unwrap();
            let Event::Command(back) = classify(sent.clone()).unwrap() else {
                panic!("{sent} is not a command");
            };
            assert_eq!(back, cmd, "{sent}");
            let req = run_request(&cmd);
            match &cmd {
                Command::Run { accounts, dry_run } | Command::Start { accounts, dry_run } => {
                    let req = req.unwrap();
                    assert_eq!((&req.accounts, req.dry_run), (accounts, *dry_run));
                    assert_eq!(req.mode, JobMode::Scheduled);
                }
                Command::Plan { as_of, .. } => {
                    let req = req.unwrap();
                    assert!(req.dry_run);
                    assert_eq!(req.as_of, *as_of);
                }
                Command::Rotate {
                    account,
                    user,
                    key_id,
                    ..
                } => {
                    let req = req.unwrap();
                    assert_eq!(req.accounts, Some(vec![account.clone()]));
                    assert!(!req.dry_run);
                    assert_eq!(
                        req.mode,
                        JobMode::Rotate {
                            user: user.clone(),
                            deactivate_old: false,
                            key_id: key_id.clone(),
                        }
                    );
                }
                Command::Reactivate {
                    account,
                    user,
                    key_id,
                } => {
                    let req = req.unwrap();
                    assert_eq!(req.accounts, Some(vec![account.clone()]));
                    assert!(!req.dry_run);
                    assert_eq!(
                        req.mode,
                        JobMode::Reactivate {
                            user: user.clone(),
                            key_id: key_id.clone(),
                        }
                    );
                }
                Command::Sweep | Command::Finalize { .. } => assert!(req.is_none()),
            }
        }
        // Optional fields stay off the wire at their defaults.
        assert_eq!(
            serde_json::to_value(Command::Plan {
                accounts: None,
                as_of: None
            })
            .unwrap(),
            json!({"action": "plan"})
        );
    }
}
