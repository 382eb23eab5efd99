//! Finalize: the end of a run. Builds the consolidated report exactly once
//! (the final marker decides), writes its files, sends the security team's
//! summary and the alerts; the sweep finalizes runs past their deadline.
//! Reading reports back is [`keyfleet_reports::read`]'s.
//!
//! The marker holds the report, and the files people read
//! (`reports/<run>/report.{json,csv,html}`) are only ever rendered from the
//! marker's report: two finalizers may build different reports (one took in
//! a late result the other did not see), and the files must be the one
//! report that won, never a mix or the loser's. A finalizer stopped between
//! its claim and its files leaves a marker without files; the next
//! finalize of the run, or the sweep, writes them from the marker.

use super::{Coordinator, CoordinatorError};
use crate::mail;
use keyfleet_protocol::report::{aggregate_owned, RunReport};
use keyfleet_protocol::{AccountResult, Policy};
use keyfleet_reports::outcome;
use keyfleet_reports::read::Reports;
use keyfleet_reports::render;
use keyfleet_reports::render::summary::CsvReport;
use keyfleet_reports::store;
use time::OffsetDateTime;

/// Account pages of a split HTML report written at once.
const PAGE_WRITES: usize = 16;

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
            self.complete_report_files(run_id).await?;
            return Ok(None);
        }
        let manifest = self
            .manifest(run_id)
            .await?
            .ok_or_else(|| CoordinatorError::UnknownRun(run_id.to_string()))?;
        // Memory: the results are dropped once aggregated (and their sealed
        // credentials, which the report does not use, as they are read), and
        // each rendering is made when it is written and dropped after, so
        // that finalize holds the report and one rendering at a time
        // (`keyfleet bench --finalize` prints the peak).
        let report = {
            let mut results = Vec::new();
            for a in &manifest.accounts {
                if let Some(mut r) = self.account_result(run_id, &a.account_id).await? {
                    r.sealed = Vec::new();
                    note_refused_owners(&manifest.policy, &mut r);
                    results.push(r);
                }
            }
            aggregate_owned(&manifest, results, OffsetDateTime::now_utc())
        };
        // The marker first: only the finalizer that claims it writes the
        // files, so a finalizer that built another report and lost never
        // overwrites the winner's. The summary goes out only for the winner;
        // files that cannot be written, or a failed summary, release the
        // marker so a retry or the sweep does it all again.
        if !self
            .claim(
                &store::final_key(run_id),
                render::to_json(&report),
                "application/json",
            )
            .await?
        {
            return Ok(None);
        }
        let written = self
            .write_report_files(run_id, &report, render::to_json(&report))
            .await;
        self.release_on_failure(&store::final_key(run_id), written)
            .await?;
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
            let built = {
                let csv = render::to_csv(&report);
                let csv_url = self.reports().file_url(run_id, "csv");
                mail::summary_email_with(
                    &self.config.sender,
                    &self.config.security_team,
                    &report,
                    CsvReport::choose(&csv, self.config.summary_attach_max_bytes, &csv_url),
                    Some(&url),
                )
            };
            let sent = match built {
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

    /// The files people read, rendered from `report`, whose JSON rendering
    /// is `json` (the finalize marker's content). Plain puts: every writer
    /// writes the same bytes for the same marker.
    async fn write_report_files(
        &self,
        run_id: &str,
        report: &RunReport,
        json: Vec<u8>,
    ) -> Result<(), CoordinatorError> {
        self.store
            .put(&store::report_key(run_id, "json"), json, "application/json")
            .await?;
        self.store
            .put(
                &store::report_key(run_id, "csv"),
                render::to_csv(report),
                "text/csv",
            )
            .await?;
        // A large run's HTML report is a summary and a page per account
        // (`render::html::is_split`); the pages go first, so the summary
        // never links to a page not written yet.
        if render::html::is_split(report) {
            for chunk in report.accounts.chunks(PAGE_WRITES) {
                let writes = chunk
                    .iter()
                    .map(|a| self.write_account_page(run_id, report, a));
                for written in futures::future::join_all(writes).await {
                    written?;
                }
            }
        }
        // Last: its presence says the files are complete.
        self.store
            .put(
                &store::report_key(run_id, "html"),
                render::to_html(report).into_bytes(),
                "text/html",
            )
            .await?;
        Ok(())
    }

    /// One account's page of a split HTML report.
    async fn write_account_page(
        &self,
        run_id: &str,
        report: &RunReport,
        account: &keyfleet_protocol::report::AccountReport,
    ) -> Result<(), CoordinatorError> {
        let page = render::account_page(report, account).into_bytes();
        self.store
            .put(
                &store::account_page_key(run_id, &account.account_id),
                page,
                "text/html",
            )
            .await?;
        Ok(())
    }

    /// The files of a finalized run, written from its marker when they are
    /// missing (a finalizer stopped after its claim). The HTML file is
    /// written last, so it being there means they all are. The marker is
    /// read again after writing: when a finalizer released it meanwhile (its
    /// summary failed) and another claimed it with another report, the files
    /// are written again from that one, so a slow repair never leaves an
    /// older report's files behind.
    async fn complete_report_files(&self, run_id: &str) -> Result<(), CoordinatorError> {
        if self
            .store
            .exists(&store::report_key(run_id, "html"))
            .await?
        {
            return Ok(());
        }
        let key = store::final_key(run_id);
        let Some(mut marker) = self.store.get(&key).await? else {
            return Ok(());
        };
        loop {
            let report: RunReport = match serde_json::from_slice(&marker) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(run_id = %run_id, error = %e, "the finalize marker holds no readable report; its files are not written");
                    return Ok(());
                }
            };
            self.write_report_files(run_id, &report, marker.clone())
                .await?;
            tracing::warn!(run_id = %run_id, "report files were missing; written from the finalize marker");
            match self.store.get(&key).await? {
                Some(now) if now != marker => marker = now,
                _ => return Ok(()),
            }
        }
    }

    /// Where the HTML report of a run is.
    pub fn report_url(&self, run_id: &str) -> String {
        self.reports().report_url(run_id)
    }

    /// Finalizes every run past its deadline that is not finalized yet, and
    /// writes the files of a finalized run that has none (see
    /// [`Coordinator::complete_report_files`]).
    pub async fn sweep(&self) -> Result<Vec<String>, CoordinatorError> {
        let now = OffsetDateTime::now_utc();
        let mut done = Vec::new();
        for run in self.store.run_ids().await? {
            if self.store.exists(&store::final_key(&run)).await? {
                self.complete_report_files(&run).await?;
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
