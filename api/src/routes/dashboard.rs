//! The handler of the dashboard (`/`): its query, the runs it reads and
//! the answer; the page itself is [`crate::dashboard`].

use super::{label, run_named, store_failed, BasePath};
use crate::dashboard;
use crate::middleware::html;
use crate::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DashboardQuery {
    /// Show this finalized run instead of the newest scheduled one.
    pub run: Option<String>,
    pub account: Option<String>,
    pub verdict: Option<String>,
    pub min_age: Option<String>,
    /// The page of the users table, from 1.
    pub page: Option<String>,
}

pub(super) async fn dashboard_page(
    State(state): State<AppState>,
    base: Option<Extension<BasePath>>,
    q: Result<Query<DashboardQuery>, QueryRejection>,
) -> Response {
    let base = base.map(|Extension(b)| b.0).unwrap_or_default();
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return dashboard::error_page(StatusCode::BAD_REQUEST, &e.body_text(), &base),
    };
    let filter = match dashboard::Filter::parse(&q) {
        Ok(f) => f,
        Err(why) => return dashboard::error_page(StatusCode::BAD_REQUEST, &why, &base),
    };
    let summaries = match state.data().summaries().await {
        Ok(s) => s,
        Err(e) => {
            let p = store_failed(e);
            return dashboard::error_page(p.status(), &p.detail, &base);
        }
    };
    let shown = match &filter.run {
        Some(id) => summaries.iter().find(|s| s.run_id == *id),
        None => summaries.iter().find(|s| s.is_scheduled()),
    };
    if let (Some(id), None) = (&filter.run, shown) {
        return dashboard::error_page(
            StatusCode::NOT_FOUND,
            &format!("no finalized report for {}", run_named(id)),
            &base,
        );
    }
    let latest = match shown {
        Some(s) => match state.data().report(&s.run_id).await {
            Ok(r) => r,
            Err(e) => {
                let p = store_failed(e);
                return dashboard::error_page(p.status(), &p.detail, &base);
            }
        },
        None => None,
    };
    let page = dashboard::render(&dashboard::View {
        base: &base,
        latest: latest.as_deref(),
        runs: &summaries,
        filter: &filter,
    });
    let resp = html(StatusCode::OK, page);
    match latest {
        Some(r) => label(resp, &r.run_id, r.finalized_at),
        None => resp,
    }
}
