//! The runs: the list (`/v1/runs`), a run's consolidated report
//! (`/v1/runs/{run_id}`, JSON or CSV) and the browser's copies of the
//! reports the coordinator stored (`/runs/{run_id}/report.{html,json,csv}`,
//! and the HTML report's page of each account,
//! `/runs/{run_id}/accounts/<account>.html`, which the summary page
//! `report.html` links to as `accounts/<account>.html`).

use super::model::{JSON, JSONL};
use super::{
    label, path_problem, run_named, store_failed, wants_csv, FormatQuery, DEFAULT_LIMIT, MAX_LIMIT,
};
use crate::ids;
use crate::middleware::{self, csv, html, json};
use crate::problem::Problem;
use crate::AppState;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyfleet_reports::read::finalized::DataError;
use keyfleet_reports::{render, store};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    limit: Option<String>,
}

pub(super) async fn list_runs(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                Problem::bad_request(format!("limit must be a number from 1 to {MAX_LIMIT}"))
            })?,
    };
    // Only the newest `limit` runs are read (see keyfleet_reports::read::finalized).
    let summaries = state.data().newest(limit).await.map_err(store_failed)?;
    let runs: Vec<_> = summaries.iter().map(|s| s.as_ref()).collect();
    let resp = json(&json!({"runs": runs}));
    Ok(match summaries.first() {
        Some(s) => label(resp, &s.run_id, s.finalized_at),
        None => resp,
    })
}

pub(super) async fn get_run(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    q: Result<Query<FormatQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Path(run_id) = path.map_err(path_problem)?;
    let run_id = ids::run(&run_id)?;
    let as_csv = wants_csv(&headers, q)?;
    let report = state
        .data()
        .report(run_id)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| {
            Problem::not_found(format!("no finalized report for {}", run_named(run_id)))
        })?;
    let resp = if as_csv {
        csv(
            render::to_csv(&report),
            &format!("keyfleet-report-{run_id}.csv"),
        )
    } else {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
            render::to_json(&report),
        )
            .into_response()
    };
    Ok(label(resp, &report.run_id, report.finalized_at))
}

/// A rendered report of a run as the coordinator stored it
/// (`reports/<run_id>/report.<ext>`, [`keyfleet_reports::store::report_key`]):
/// the run id and the bytes, or a 404 naming `what` is missing.
async fn stored_report(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
    ext: &'static str,
    what: &'static str,
) -> Result<(String, Vec<u8>), Problem> {
    let Path(run_id) = path.map_err(path_problem)?;
    let run_id = ids::run(&run_id)?.to_string();
    let bytes = state
        .data()
        .rendered(&run_id, ext)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| {
            Problem::not_found(format!("no {what} report for {}", run_named(&run_id)))
        })?;
    Ok((run_id, bytes))
}

/// Labels a stored report's answer with its run, when the run's finalized
/// report is readable (its summary, kept since the run list or the
/// dashboard read it, has the two values: no second read of the report).
async fn label_stored(state: &AppState, run_id: &str, resp: Response) -> Response {
    match state.data().summary(run_id).await {
        Ok(Some(s)) => label(resp, &s.run_id, s.finalized_at),
        _ => resp,
    }
}

/// A stored HTML page of a report, under the report's CSP (self-contained:
/// inline CSS and SVG, no script, sandboxed).
fn report_page(page: &[u8]) -> Response {
    let mut resp = html(StatusCode::OK, String::from_utf8_lossy(page).into_owned());
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(middleware::REPORT_CSP),
    );
    resp
}

pub(super) async fn run_html(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let (run_id, page) = stored_report(&state, path, "html", "HTML").await?;
    Ok(label_stored(&state, &run_id, report_page(&page)).await)
}

/// `/runs/{run_id}/accounts/{account_page}`: one account's page of a run's
/// HTML report as the coordinator stored it
/// ([`keyfleet_reports::store::account_page_key`]), served as
/// [`run_html`] serves the summary page that links to it.
pub(super) async fn run_account_html(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, Problem> {
    let Path((run_id, page)) = path.map_err(path_problem)?;
    let run_id = ids::run(&run_id)?;
    let account = ids::account_page(&page)?;
    let page = state
        .store()
        .get(&store::account_page_key(run_id, account))
        .await
        .map_err(|e| store_failed(DataError::from(e)))?
        .ok_or_else(|| {
            Problem::not_found(format!(
                "no HTML page of account {account} in {}",
                run_named(run_id)
            ))
        })?;
    Ok(label_stored(&state, run_id, report_page(&page)).await)
}

/// `/runs/{run_id}/report.json`: the browser's copy of the JSON report.
pub(super) async fn run_json_file(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let (run_id, body) = stored_report(&state, path, "json", "JSON").await?;
    let resp = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
        body,
    )
        .into_response();
    Ok(label_stored(&state, &run_id, resp).await)
}

/// `/runs/{run_id}/report.jsonl`: the run's users as JSON Lines, as a
/// download.
pub(super) async fn run_jsonl_file(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let (run_id, body) = stored_report(&state, path, "jsonl", "JSON Lines").await?;
    let resp = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(JSONL)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!(
                    "attachment; filename=\"keyfleet-report-{run_id}.jsonl\""
                ))
                .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
            ),
        ],
        body,
    )
        .into_response();
    Ok(label_stored(&state, &run_id, resp).await)
}

/// `/runs/{run_id}/report.csv`: the browser's copy of the CSV report.
pub(super) async fn run_csv_file(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let (run_id, body) = stored_report(&state, path, "csv", "CSV").await?;
    let resp = csv(body, &format!("keyfleet-report-{run_id}.csv"));
    Ok(label_stored(&state, &run_id, resp).await)
}
