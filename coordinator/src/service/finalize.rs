//! Finalize: the end of a run. Builds the consolidated report exactly once
//! (the final marker decides), writes its files, sends the security team's
//! summary and the alerts; the sweep finalizes runs past their deadline.
//! Reading reports back is [`crate::reports`]'s.

use super::{Coordinator, CoordinatorError};
use crate::mail;
use crate::outcome;
use crate::render;
use crate::reports::Reports;
use crate::store;
use keyfleet_protocol::report::{aggregate, RunReport};
use keyfleet_protocol::{AccountResult, Policy};
use time::OffsetDateTime;

/// Writes on each user whose owner the deliverability rule refuses (and
/// who had mail coming) why nothing was emailed, into the user's `error`.
fn note_refused_owners(policy: &Policy, result: &mut AccountResult) {
    let refused: Vec<(usize, String)> = result
        .users
        .iter()
        .enumerate()
        .filter_map(|(i, u)| {
            mail::owner_refusal(policy, result, u).map(|why| (i, mail::refusal_text(&why)))
        })
        .collect();
    for (i, text) in refused {
        let u = &mut result.users[i];
        u.error = Some(match u.error.take() {
            Some(e) => format!("{e}; {text}"),
            None => text,
        });
    }
}

impl Coordinator {
    /// Builds the consolidated report, exactly once per run. Returns `None`
    /// when another invocation already finalized it.
    pub async fn finalize(&self, run_id: &str) -> Result<Option<RunReport>, CoordinatorError> {
        if self.store.exists(&store::final_key(run_id)).await? {
            return Ok(None);
        }
        let manifest = self
            .manifest(run_id)
            .await?
            .ok_or_else(|| CoordinatorError::UnknownRun(run_id.to_string()))?;
        let mut results = Vec::new();
        for a in &manifest.accounts {
            if let Some(mut r) = self.account_result(run_id, &a.account_id).await? {
                note_refused_owners(&manifest.policy, &mut r);
                results.push(r);
            }
        }
        let report = aggregate(&manifest, &results, OffsetDateTime::now_utc());
        let json = render::to_json(&report);
        let csv = render::to_csv(&report);
        let html = render::to_html(&report);
        // The files first (plain puts, safe to repeat), then the marker that
        // makes this the one finalization; the summary goes out only for the
        // winner, and a failed summary releases the marker so a retry or the
        // sweep sends it.
        self.store
            .put(
                &store::report_key(run_id, "json"),
                json.clone(),
                "application/json",
            )
            .await?;
        self.store
            .put(&store::report_key(run_id, "csv"), csv.clone(), "text/csv")
            .await?;
        self.store
            .put(
                &store::report_key(run_id, "html"),
                html.into_bytes(),
                "text/html",
            )
            .await?;
        if !self
            .claim(&store::final_key(run_id), json, "application/json")
            .await?
        {
            return Ok(None);
        }
        if manifest.policy.cleanup && !manifest.dry_run {
            self.store
                .put_new(
                    store::CLEANUP_DONE,
                    run_id.as_bytes().to_vec(),
                    "text/plain",
                )
                .await?;
        }
        let url = self.report_url(run_id);
        if !self.config.security_team.is_empty() {
            let sent = match mail::summary_email(
                &self.config.sender,
                &self.config.security_team,
                &report,
                &csv,
                Some(&url),
            ) {
                Ok(m) => self.send_email(&m).await,
                Err(e) => {
                    // A bad configured address never fixes itself.
                    tracing::error!(error = %e, "summary email not built");
                    Ok(())
                }
            };
            self.release_on_failure(&store::final_key(run_id), sent)
                .await?;
        }
        if let Some(failure) = outcome::run_failure(&report) {
            let description =
                outcome::describe(&report).unwrap_or_else(|| failure.headline().to_string());
            self.alert(
                &format!("keyfleet run {run_id} failed: {}", failure.headline()),
                &format!("Run {run_id} failed: {description}. Report: {url}"),
            )
            .await;
        } else if report.has_problems() {
            let t = &report.totals;
            self.alert(
                &format!("keyfleet run {run_id}: accounts need attention"),
                &format!(
                    "Run {run_id}: {} failed, {} missing, {} without agent, {} partial of {} accounts. Report: {url}",
                    t.accounts_failed, t.accounts_missing, t.accounts_no_agent, t.accounts_partial, t.accounts
                ),
            )
            .await;
        }
        tracing::info!(run_id = %run_id, complete = report.complete, "run finalized");
        Ok(Some(report))
    }

    /// Where the HTML report of a run is.
    pub fn report_url(&self, run_id: &str) -> String {
        self.reports().report_url(run_id)
    }

    /// Finalizes every run past its deadline that is not finalized yet.
    pub async fn sweep(&self) -> Result<Vec<String>, CoordinatorError> {
        let now = OffsetDateTime::now_utc();
        let mut done = Vec::new();
        for run in self.store.run_ids().await? {
            if self.store.exists(&store::final_key(&run)).await? {
                continue;
            }
            let Some(m) = self.manifest(&run).await? else {
                continue;
            };
            if m.deadline <= now && self.finalize(&run).await?.is_some() {
                done.push(run);
            }
        }
        Ok(done)
    }

    /// A stored report by run id, or `latest`; see [`Reports::report`].
    pub async fn report(&self, run: &str) -> Result<Option<RunReport>, CoordinatorError> {
        Ok(self.reports().report(run).await?)
    }

    /// The read side of the run store.
    pub fn reports(&self) -> Reports {
        Reports::new(self.store.clone())
    }
}
