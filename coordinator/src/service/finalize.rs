//! Finalize: the end of a run. Builds the consolidated report exactly once
//! (the final marker decides), writes its files, sends the security team's
//! summary and the alerts; the sweep finalizes runs past their deadline.
//! Reading reports back is [`keyfleet_reports::read`]'s.
//!
//! The marker holds the report, and the files people read
//! (`reports/<run>/report.{json,csv,jsonl,html}`, the account pages) are
//! only ever rendered from the marker's report: two finalizers may build
//! different reports (one took in a late result the other did not see),
//! and the files must be the one report that won, never a mix or the
//! loser's. A finalizer stopped between its claim and its files leaves a
//! marker without files; the next finalize of the run, or the sweep,
//! writes them from the marker.
//!
//! **Bounded memory.** Finalize never holds a run's users. It reads the
//! stored results one account at a time; [`Aggregator`] keeps what the
//! summary needs (totals, histogram, each account's row and figures, the
//! compliance counts, the first users of each list) and hands back the
//! account's section with its users, which is written at once to
//! `runs/<run>/final/<attempt>/<account>.json` and dropped. The marker is
//! the summary (report schema 2), each account naming its section; the
//! marker's attempt is the only one whose sections are ever read, so a
//! losing finalizer's sections (which it deletes) never mix in. The files
//! are then written from the sections, again one account at a time: the
//! CSV and the JSON Lines as multipart uploads, the account pages of a
//! large run one by one, the HTML summary page last. What is held is the
//! summary (it grows with accounts, not users), [`PAGE_WRITES`] accounts'
//! sections, a part buffer per upload, and the CSV itself only while it is
//! small enough to attach to the summary email. `keyfleet bench
//! --finalize` prints the peak.

use super::{Coordinator, CoordinatorError};
use crate::mail;
use keyfleet_protocol::report::{AccountReport, Aggregator, RunReport};
use keyfleet_protocol::{AccountResult, Policy};
use keyfleet_reports::outcome;
use keyfleet_reports::read::Reports;
use keyfleet_reports::render;
use keyfleet_reports::render::summary::CsvReport;
use keyfleet_reports::store;
use keyfleet_reports::upload::Upload;
use time::OffsetDateTime;

/// An account's section as stored: compact JSON (it is read by programs).
fn section_json(section: &AccountReport) -> Vec<u8> {
    serde_json::to_vec(section).expect("an AccountReport always serializes")
}

/// How long an invocation building a run's report keeps others from
/// building it too: longer than a coordinator invocation lasts (Lambda
/// stops one at 15 minutes), so a hold older than this is a finalizer that
/// was stopped, and the next finalize takes over.
pub const FINALIZING_FOR: time::Duration = time::Duration::minutes(15);

/// Accounts whose sections are read, and pages written, at once.
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

/// What writing the files left for the summary email: the CSV's size, and
/// its bytes while they are within the attachment limit.
struct CsvWritten {
    bytes: usize,
    kept: Option<Vec<u8>>,
}

/// A finalize attempt's name: its start time and a random part, so that
/// two finalizers of one run never share their sections' keys.
fn attempt_id(at: OffsetDateTime) -> String {
    use rand::{RngCore, TryRngCore};
    let random = rand::rngs::OsRng.unwrap_err().next_u32();
    format!("{}-{random:08x}", at.unix_timestamp_nanos())
}

impl Coordinator {
    /// Builds the consolidated report, exactly once per run. Returns the
    /// report without its users (the summary that was stored), or `None`
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
        // The intakes that take in a run's last results at once all find
        // it complete: one builds the report (every result read, every
        // section written), the others leave it to it. The final marker
        // still decides, should two ever build.
        if !self.hold_finalizing(run_id).await? {
            tracing::info!(run_id = %run_id, "another invocation is finalizing the run");
            return Ok(None);
        }
        let built = self.finalize_held(run_id, &manifest).await;
        if let Err(e) = self.store.delete(&store::finalizing_key(run_id)).await {
            tracing::warn!(run_id = %run_id, error = %e, "the finalizing hold was not removed; it lapses");
        }
        built
    }

    /// Takes the run's finalizing hold (a create-if-absent put of the
    /// time); `false` when another invocation holds it, unless its hold is
    /// older than [`FINALIZING_FOR`] (that finalizer was stopped): it is
    /// then taken over.
    async fn hold_finalizing(&self, run_id: &str) -> Result<bool, CoordinatorError> {
        use time::format_description::well_known::Rfc3339;
        let key = store::finalizing_key(run_id);
        let now = OffsetDateTime::now_utc();
        let body = now.format(&Rfc3339).unwrap_or_default().into_bytes();
        if self.claim(&key, body.clone(), "text/plain").await? {
            return Ok(true);
        }
        let since = self
            .store
            .get(&key)
            .await?
            .and_then(|b| OffsetDateTime::parse(&String::from_utf8_lossy(&b), &Rfc3339).ok());
        if since.is_some_and(|t| now - t < FINALIZING_FOR) {
            return Ok(false);
        }
        self.store.put(&key, body, "text/plain").await?;
        Ok(true)
    }

    /// [`Coordinator::finalize`] once its hold is taken.
    async fn finalize_held(
        &self,
        run_id: &str,
        manifest: &keyfleet_protocol::RunManifest,
    ) -> Result<Option<RunReport>, CoordinatorError> {
        // The owners' digests first: a finalized run's owners have been
        // mailed, or their digests wait for the sweep (see `digests`).
        if !manifest.dry_run {
            self.send_digests_or_leave(run_id).await;
        }
        let finalized_at = OffsetDateTime::now_utc();
        let attempt = attempt_id(finalized_at);
        let mut sections: Vec<String> = Vec::new();
        let report = {
            let mut agg = Aggregator::new(manifest, finalized_at);
            for a in &manifest.accounts {
                let Some(mut r) = self.account_result(run_id, &a.account_id).await? else {
                    continue;
                };
                // The sealed credentials are not the report's.
                r.sealed = Vec::new();
                note_refused_owners(&manifest.policy, &mut r);
                let Some(section) = agg.add(r) else {
                    continue;
                };
                if !section.users.is_empty() {
                    let key = store::users_key(run_id, &attempt, &section.account_id);
                    self.store
                        .put(&key, section_json(&section), "application/json")
                        .await?;
                    sections.push(key);
                }
            }
            let mut report = agg.finish();
            report.mail_waiting = self.mail_waiting(run_id).await?;
            for a in &mut report.accounts {
                let key = store::users_key(run_id, &attempt, &a.account_id);
                if sections.contains(&key) {
                    a.users_key = Some(key);
                }
            }
            report
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
            for key in &sections {
                if let Err(e) = self.store.delete(key).await {
                    tracing::warn!(error = %e, "a losing finalizer's section not deleted; the bucket's lifecycle rule removes it");
                }
            }
            return Ok(None);
        }
        let written = self
            .write_report_files(run_id, &report, render::to_json(&report))
            .await;
        let csv = self
            .release_on_failure(&store::final_key(run_id), written)
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
            let csv_url = self.reports().file_url(run_id, "csv");
            let attachment = match &csv.kept {
                Some(bytes) => CsvReport::Attached(bytes),
                None => CsvReport::Linked {
                    url: &csv_url,
                    bytes: csv.bytes,
                },
            };
            let built = mail::summary_email_with(
                &self.config.sender,
                &self.config.security_team,
                &report,
                attachment,
                Some(&url),
            );
            let sent = match built {
                Ok(m) => self.send_email_keeping(&m, 0).await,
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
        if !report.mail_waiting.is_empty() {
            let first = &report.mail_waiting[0];
            self.alert(
                &format!("keyfleet run {run_id}: owner emails wait"),
                &format!(
                    "Run {run_id}: the owner emails of {} account(s) were not all sent when the run was finalized ({}: {}). \
                     The hourly sweep sends them, each once, as SES allows; old keys wait for their new keys' delivery. \
                     If SES's daily quota is the reason, ask AWS for a higher one (SES console, Account dashboard). Report: {url}",
                    report.mail_waiting.len(),
                    first.account_id,
                    first.reason
                ),
            )
            .await;
        }
        tracing::info!(run_id = %run_id, complete = report.complete, "run finalized");
        Ok(Some(report))
    }

    /// The accounts of `run_id` whose owner mail waits for the sweep (see
    /// `mail_retry`), with the last reason; at most
    /// [`keyfleet_protocol::report::LISTED_USERS`] of them are read.
    async fn mail_waiting(
        &self,
        run_id: &str,
    ) -> Result<Vec<keyfleet_protocol::report::MailWaiting>, CoordinatorError> {
        let prefix = format!("{}{run_id}/", super::mail_retry::PENDING_MAIL_PREFIX);
        let mut out = Vec::new();
        for key in self
            .store
            .list(&prefix)
            .await?
            .into_iter()
            .take(keyfleet_protocol::report::LISTED_USERS)
        {
            let Some(account_id) = key.strip_prefix(&prefix) else {
                continue;
            };
            let reason = match self.store.get(&key).await? {
                Some(bytes) => serde_json::from_slice::<super::PendingMail>(&bytes)
                    .map(|p| p.last_error)
                    .unwrap_or_default(),
                None => continue,
            };
            out.push(keyfleet_protocol::report::MailWaiting {
                account_id: account_id.to_string(),
                reason,
            });
        }
        Ok(out)
    }

    /// The files people read, rendered from `report` (the marker's
    /// summary, whose JSON rendering is `json`) and its accounts'
    /// sections, read [`PAGE_WRITES`] at a time. Plain puts and uploads:
    /// every writer writes the same bytes for the same marker. Returns what
    /// the summary email needs of the CSV.
    async fn write_report_files(
        &self,
        run_id: &str,
        report: &RunReport,
        json: Vec<u8>,
    ) -> Result<CsvWritten, CoordinatorError> {
        self.store
            .put(&store::report_key(run_id, "json"), json, "application/json")
            .await?;
        let mut csv = self
            .store
            .upload(&store::report_key(run_id, "csv"), "text/csv");
        let mut jsonl = self
            .store
            .upload(&store::report_key(run_id, "jsonl"), "application/x-ndjson");
        let max = self.config.summary_attach_max_bytes;
        let mut kept = Some(Vec::new());
        let streamed = self
            .stream_accounts(run_id, report, &mut csv, &mut jsonl, &mut kept, max)
            .await;
        let inline = match streamed {
            Ok(inline) => inline,
            Err(e) => {
                csv.abort().await;
                jsonl.abort().await;
                return Err(e);
            }
        };
        let bytes = csv.finish().await?;
        jsonl.finish().await?;
        // Last: its presence says the files are complete. A run small
        // enough for one page has its users inline (at most
        // `render::html::INLINE_USERS` of them).
        let html = match &inline {
            Some(full) => render::to_html(full),
            None => render::to_html(report),
        };
        self.store
            .put(
                &store::report_key(run_id, "html"),
                html.into_bytes(),
                "text/html",
            )
            .await?;
        Ok(CsvWritten { bytes, kept })
    }

    /// The accounts' lines of the CSV and the JSON Lines, and a large run's
    /// account pages (written before the summary page, so that it never
    /// links to a page not written yet), one group of accounts at a time.
    /// Returns the report with its users for a run small enough for one
    /// page, `None` otherwise.
    async fn stream_accounts(
        &self,
        run_id: &str,
        report: &RunReport,
        csv: &mut Upload,
        jsonl: &mut Upload,
        kept: &mut Option<Vec<u8>>,
        max: usize,
    ) -> Result<Option<RunReport>, CoordinatorError> {
        let split = render::html::is_split(report);
        let mut inline = (!split).then(|| report.clone());
        let csv_out = |bytes: Vec<u8>, kept: &mut Option<Vec<u8>>| {
            if let Some(k) = kept {
                if k.len() + bytes.len() <= max {
                    k.extend_from_slice(&bytes);
                } else {
                    *kept = None;
                }
            }
            bytes
        };
        let head = csv_out(render::csv_head(report), kept);
        csv.write(&head).await?;
        for (n, chunk) in report.accounts.chunks(PAGE_WRITES).enumerate() {
            let reads = chunk
                .iter()
                .map(|a| keyfleet_reports::read::section(&self.store, run_id, a));
            let sections = futures::future::try_join_all(reads).await?;
            for a in &sections {
                let lines = csv_out(render::csv_account(report, a), kept);
                csv.write(&lines).await?;
                jsonl.write(&render::jsonl_account(report, a)).await?;
            }
            if split {
                let writes = sections
                    .iter()
                    .map(|a| self.write_account_page(run_id, report, a));
                futures::future::try_join_all(writes).await?;
            }
            if let Some(full) = &mut inline {
                for (i, a) in sections.into_iter().enumerate() {
                    full.accounts[n * PAGE_WRITES + i].users = a.users;
                    full.accounts[n * PAGE_WRITES + i].users_key = None;
                }
            }
        }
        Ok(inline)
    }

    /// One account's page of a split HTML report.
    async fn write_account_page(
        &self,
        run_id: &str,
        report: &RunReport,
        account: &AccountReport,
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
