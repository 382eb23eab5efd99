//! The organization's key inventory as of the latest scheduled run:
//! `/v1/export` (JSON or CSV) and the browser's `/export.csv` and
//! `/export.json`.

use super::{label, store_failed, wants_csv, FormatQuery};
use crate::inventory::{self, rfc3339};
use crate::middleware::{csv, json};
use crate::problem::Problem;
use crate::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use keyfleet_protocol::report::RunReport;
use serde_json::json;

pub(super) async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<FormatQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let as_csv = wants_csv(&headers, q)?;
    export_as(&state, as_csv).await
}

pub(super) async fn export_csv_file(State(state): State<AppState>) -> Result<Response, Problem> {
    export_as(&state, true).await
}

pub(super) async fn export_json_file(State(state): State<AppState>) -> Result<Response, Problem> {
    export_as(&state, false).await
}

/// The inventory of the latest scheduled run (`/v1/export`, and the
/// browser's `/export.csv` and `/export.json`).
async fn export_as(state: &AppState, as_csv: bool) -> Result<Response, Problem> {
    let report = latest_scheduled(state).await?;
    let rows = inventory::export_rows(&report);
    let resp = if as_csv {
        csv(
            inventory::export_csv(&rows),
            &format!("keyfleet-keys-{}.csv", report.run_id),
        )
    } else {
        json(&json!({
            "run_id": report.run_id,
            "run_created_at": rfc3339(report.created_at),
            "run_finalized_at": rfc3339(report.finalized_at),
            "keys": rows,
        }))
    };
    Ok(label(resp, &report.run_id, report.finalized_at))
}

/// The newest scheduled run, or a 404 saying there is none yet.
async fn latest_scheduled(state: &AppState) -> Result<std::sync::Arc<RunReport>, Problem> {
    state
        .data()
        .latest_scheduled()
        .await
        .map_err(store_failed)?
        .ok_or_else(|| Problem::not_found("no finalized scheduled run yet"))
}
