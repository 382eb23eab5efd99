//! The coordinator's invocation contract: the [`Command`] a schedule, an
//! operator (`keyfleet run`, `plan`, `rotate`, `reactivate`), the API and
//! `keyfleet run --local` send to the coordinator, and how its answer names
//! the run it started ([`run_id_of`]).
//!
//! The coordinator answers a command that starts a run with
//! `{"run_id", "accounts", "skipped", "dry_run"}`; a finalize that wrote
//! the report with `{"finalized":true,"outcome":"ok"}`,
//! `{"finalized":true,"outcome":"unserved","accounts":[["<id>","<state>"],..]}`
//! or `{"finalized":true,"outcome":"failed","reason":".."}`; a failed
//! invocation with Lambda's `{"errorType":"keyfleet.<Kind>","errorMessage"}`.
//! The one client that sends a command to the deployed function is
//! [`crate::invoke`] (feature `invoke`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// A manual or scheduled command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// A run started by a person (or a script) invoking the function: a
    /// run that selects no account fails the invocation.
    Run {
        #[serde(default, skip_serializing_if = "Option::is_none")]
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accounts: Option<Vec<String>>,
        #[serde(default)]
        dry_run: bool,
    },
    /// A dry run, evaluated now or `as_of` an instant.
    Plan {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accounts: Option<Vec<String>>,
        #[serde(
            default,
            with = "time::serde::rfc3339::option",
            skip_serializing_if = "Option::is_none"
        )]
        as_of: Option<OffsetDateTime>,
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_id: Option<String>,
    },
    /// Switch a key keyfleet deactivated back to Active (the same as
    /// `keyfleet reactivate` and the API's reactivate): a one-user run whose
    /// job the agent checks against its protected record.
    Reactivate {
        account: String,
        user: String,
        key_id: String,
    },
    Sweep,
    Finalize {
        run_id: String,
    },
}

/// The run id a coordinator's answer names (`{"run_id": ..}`), if it is one
/// of keyfleet's form.
pub fn run_id_of(answer: &Value) -> Option<&str> {
    answer
        .get("run_id")
        .and_then(Value::as_str)
        .filter(|id| crate::is_run_id(id))
}
