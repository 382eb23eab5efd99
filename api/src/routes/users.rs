//! A user's keys (`/v1/accounts/{account}/users/{user}/keys`), and the
//! lookup of an account and a user in a run that the actions share.

use super::{label, path_problem, store_failed};
use crate::ids;
use crate::inventory::{self, rfc3339, KeyView, Lookup};
use crate::middleware::json;
use crate::problem::Problem;
use crate::AppState;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use keyfleet_protocol::report::RunReport;
use serde_json::json;

/// The account's section and the user's in `report`, or a 404 that names
/// the account (validated: 12 digits) but not the user (see
/// [`crate::problem`]).
pub(super) fn lookup<'r>(
    report: &'r RunReport,
    account: &str,
    user: &str,
) -> Result<
    (
        &'r keyfleet_protocol::report::AccountReport,
        &'r keyfleet_protocol::UserReport,
    ),
    Problem,
> {
    match inventory::find_user(report, account, user) {
        Lookup::Found(a, u) => Ok((a, u)),
        Lookup::NoAccount => Err(Problem::not_found(format!(
            "account {account} is not in run {}",
            report.run_id
        ))),
        // The user name may be a pasted secret: not echoed (crate::problem).
        Lookup::NoUser(a) => Err(Problem::not_found(format!(
            "no such user in account {account} in run {}{}",
            report.run_id,
            if a.state.is_problem() {
                format!(" (the account is {} in that run)", a.state.as_str())
            } else {
                String::new()
            }
        ))),
    }
}

pub(super) async fn user_keys(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, Problem> {
    let Path((account, user)) = path.map_err(path_problem)?;
    let (account, user) = (ids::account(&account)?, ids::user(&user)?);
    let report = state
        .data()
        .latest_scheduled_for(account)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| {
            Problem::not_found(format!(
                "account {account} is missing from every finalized scheduled run: no result of it yet"
            ))
        })?;
    let (a, u) = lookup(&report, account, user)?;
    let created = inventory::account_time(&report, a);
    let mut keys = inventory::keys_after_run(u, created);
    keys.sort_by_key(|k| k.created);
    let keys: Vec<KeyView> = keys
        .iter()
        .map(|k| KeyView::of(u, k, report.finalized_at))
        .collect();
    let body = json!({
        "run_id": report.run_id,
        "run_created_at": rfc3339(report.created_at),
        "run_finalized_at": rfc3339(report.finalized_at),
        "as_of": rfc3339(report.finalized_at),
        "account_id": a.account_id,
        "account_name": a.name,
        "user_name": u.user_name,
        "path": u.path,
        "verdict": u.verdict.as_str(),
        "keys": keys,
        "current_secret": inventory::secret_location(&report.policy, account, user),
    });
    Ok(label(json(&body), &report.run_id, report.finalized_at))
}
