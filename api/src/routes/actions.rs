//! The actions: an emergency rotation of one user and the reactivation of
//! a key, each a run the coordinator starts; the answer is a 202 with the
//! run's id and `Location`.

use super::users::lookup;
use super::{path_problem, store_failed, BasePath, KEYS_PREFIX};
use crate::auth::Caller;
use crate::ids;
use crate::inventory::{self, Reactivation};
use crate::invoke::{self, InvokeError};
use crate::middleware::json;
use crate::problem::{self, Problem};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{MatchedPath, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use keyfleet_protocol::command::Command;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    deactivate_old: bool,
}

pub(super) async fn rotate(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    base: Option<Extension<BasePath>>,
    caller: Option<Extension<Caller>>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let Path((account, user)) = path.map_err(path_problem)?;
    let (account, user) = (ids::account(&account)?, ids::user(&user)?);
    let body = body.map_err(|e| Problem::new(e.status(), e.body_text()))?;
    let req: RotateBody = if body.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            Problem::bad_request(format!(
                "the body must be {{\"key_id\": \"AKIA...\", \"deactivate_old\": false}} (both optional): {e}"
            ))
        })?
    };
    if let Some(k) = &req.key_id {
        ids::key_id(k)?;
    }
    let cmd = Command::Rotate {
        account: account.to_string(),
        user: user.to_string(),
        deactivate_old: req.deactivate_old,
        key_id: req.key_id,
    };
    start(&state, door(matched), base, caller, cmd).await
}

pub(super) async fn reactivate(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    base: Option<Extension<BasePath>>,
    caller: Option<Extension<Caller>>,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Response, Problem> {
    let Path((account, user, key_id)) = path.map_err(path_problem)?;
    let (account, user, key_id) = (
        ids::account(&account)?,
        ids::user(&user)?,
        ids::key_id(&key_id)?,
    );
    let report = state
        .data()
        .latest_for_user(account, user)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| Problem::not_found("no finalized run yet"))?;
    let (a, u) = lookup(&report, account, user)?;
    let run = &report.run_id;
    match inventory::reactivation(u, key_id, inventory::account_time(&report, a)) {
        Reactivation::Possible => {}
        Reactivation::Deleted => {
            return Err(Problem::conflict(
                problem::KEY_DELETED,
                format!("key {key_id} of {user} was deleted in run {run}: there is nothing to switch back on"),
            ))
        }
        Reactivation::Active => {
            return Err(Problem::conflict(
                problem::KEY_ACTIVE,
                format!("key {key_id} of {user} is active as of run {run}: there is nothing to reactivate"),
            ))
        }
        Reactivation::NeverSeen => {
            return Err(Problem::not_found(format!(
                "run {run} shows no key {key_id} for {user} in account {account}"
            )))
        }
    }
    let cmd = Command::Reactivate {
        account: account.to_string(),
        user: user.to_string(),
        key_id: key_id.to_string(),
    };
    start(&state, door(matched), base, caller, cmd).await
}

/// The door a request came in by: [`KEYS_PREFIX`] for the API key
/// clients' twin of `/v1`, else nothing. The started run's `Location` keeps
/// it, so a key client is not sent to a `/v1` that wants a signature.
fn door(matched: Option<MatchedPath>) -> &'static str {
    match matched {
        Some(m) if m.as_str().starts_with(&format!("{KEYS_PREFIX}/")) => KEYS_PREFIX,
        _ => "",
    }
}

/// Invokes the coordinator and answers 202 with the run id.
async fn start(
    state: &AppState,
    door: &str,
    base: Option<Extension<BasePath>>,
    caller: Option<Extension<Caller>>,
    cmd: Command,
) -> Result<Response, Problem> {
    let base = base.map(|Extension(b)| b.0).unwrap_or_default();
    let caller_id = caller.map(|Extension(c)| c.id).unwrap_or_default();
    let action = serde_json::to_value(&cmd)
        .ok()
        .and_then(|v| v.get("action").and_then(|a| a.as_str()).map(str::to_string))
        .unwrap_or_default();
    tracing::info!(caller = %caller_id, action = %action, command = ?cmd, "starting a run for the caller");
    let answer = state
        .coordinator()
        .invoke(&cmd)
        .await
        .map_err(invoke_problem)?;
    let run_id = invoke::run_id_of(&answer).map_err(invoke_problem)?;
    tracing::info!(caller = %caller_id, action = %action, run_id = %run_id, "run started");
    let mut resp = (StatusCode::ACCEPTED, json(&json!({"run_id": run_id}))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{base}{door}/v1/runs/{run_id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

fn invoke_problem(e: InvokeError) -> Problem {
    match &e {
        InvokeError::Function { kind, .. } if kind == "keyfleet.NoAccountSelected" => {
            tracing::warn!(error = %e, "the coordinator selected no account");
            Problem::not_found(
                "the coordinator selected no account: the account is not an active member of the \
                 organization, or keyfleet excludes it (the run is recorded in /v1/runs)",
            )
        }
        InvokeError::NoAnswer { .. } => {
            let p = Problem::bad_gateway("invoking the coordinator", &e);
            Problem {
                detail: format!(
                    "{}; it may have started a run all the same: look in /v1/runs before asking again",
                    p.detail
                ),
                ..p
            }
        }
        _ => Problem::bad_gateway("invoking the coordinator", &e),
    }
}
