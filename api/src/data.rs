//! The API's view of the report bucket: finalized reports, newest first,
//! with the summaries the run list, the dashboard and the trend need.
//!
//! Reads go through the run store's read side: the run ids from
//! [`keyfleet_coordinator::reports::Reports`], each finalized report from
//! `runs/<id>/report.json` (whose existence means the run is finalized),
//! and the rendered reports, served as stored, from
//! `reports/<id>/report.{json,csv,html}` ([`RunStore`],
//! [`store::report_key`]). A finalized report that exists but cannot be
//! read is logged and left out, not silently dropped and not fatal to every
//! read.
//!
//! A finalized report never changes (it is written once, with
//! `If-None-Match: *`), so what was read of it is kept: each run's summary
//! for the life of the process, and the last few whole reports. A request
//! then costs one listing of the run ids plus the reports not seen before.
//! A run that is not finalized yet is looked at again next time.

use crate::inventory::{self, Compliance};
use futures::stream::{self, StreamExt};
use keyfleet_coordinator::reports::{Reports, ReportsError};
use keyfleet_coordinator::store::{self, RunStore, StoreError};
use keyfleet_protocol::report::{RunReport, Totals};
use keyfleet_protocol::JobMode;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// Whole reports kept in memory.
const FULL_CACHE: usize = 4;
/// Reports read at once.
const CONCURRENCY: usize = 8;

/// One finalized run, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finalized_at: OffsetDateTime,
    pub dry_run: bool,
    pub mode: JobMode,
    /// Every expected account reported.
    pub complete: bool,
    /// Some account failed, is missing or has no agent.
    pub problems: bool,
    pub totals: Totals,
    pub compliance: Compliance,
}

impl RunSummary {
    pub fn of(r: &RunReport) -> RunSummary {
        RunSummary {
            run_id: r.run_id.clone(),
            created_at: r.created_at,
            finalized_at: r.finalized_at,
            dry_run: r.dry_run,
            mode: r.mode.clone(),
            complete: r.complete,
            problems: r.has_problems(),
            totals: r.totals.clone(),
            compliance: inventory::compliance(r),
        }
    }

    /// A real run of the whole organization (what key reads use).
    pub fn is_scheduled(&self) -> bool {
        !self.dry_run && self.mode == JobMode::Scheduled
    }
}

/// Why the bucket could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Reports(#[from] ReportsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Default)]
struct Cache {
    summaries: HashMap<String, Arc<RunSummary>>,
    full: VecDeque<Arc<RunReport>>,
}

/// The report bucket, read-only.
pub struct ReportData {
    reports: Reports,
    store: RunStore,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for ReportData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportData")
            .field("bucket", &self.store.bucket())
            .finish_non_exhaustive()
    }
}

impl ReportData {
    pub fn new(store: RunStore) -> ReportData {
        ReportData {
            reports: Reports::new(store.clone()),
            store,
            cache: Mutex::new(Cache::default()),
        }
    }

    pub fn bucket(&self) -> &str {
        self.store.bucket()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A finalized report read from the bucket: `None` when the run is not
    /// finalized, or when its report cannot be read as one (logged: such a
    /// run is left out rather than failing every read).
    async fn read(&self, run_id: &str) -> Result<Option<RunReport>, DataError> {
        let Some(bytes) = self.store.get(&store::final_key(run_id)).await? else {
            return Ok(None);
        };
        match serde_json::from_slice::<RunReport>(&bytes) {
            Ok(r) if r.run_id == run_id => Ok(Some(r)),
            Ok(r) => {
                tracing::error!(run_id, found = %r.run_id, "finalized report names another run; left out");
                Ok(None)
            }
            Err(e) => {
                tracing::error!(run_id, error = %e, "finalized report unreadable; left out");
                Ok(None)
            }
        }
    }

    fn remember(&self, report: Arc<RunReport>) {
        let mut c = self.cache();
        c.summaries
            .entry(report.run_id.clone())
            .or_insert_with(|| Arc::new(RunSummary::of(&report)));
        c.full.retain(|r| r.run_id != report.run_id);
        c.full.push_front(report);
        c.full.truncate(FULL_CACHE);
    }

    /// A finalized report by run id.
    pub async fn report(&self, run_id: &str) -> Result<Option<Arc<RunReport>>, DataError> {
        if let Some(r) = self.cache().full.iter().find(|r| r.run_id == run_id) {
            return Ok(Some(r.clone()));
        }
        let Some(report) = self.read(run_id).await? else {
            return Ok(None);
        };
        let report = Arc::new(report);
        self.remember(report.clone());
        Ok(Some(report))
    }

    /// A finalized run's summary by run id: the one kept since a listing
    /// read it, else from its report (read now, and kept).
    pub async fn summary(&self, run_id: &str) -> Result<Option<Arc<RunSummary>>, DataError> {
        if let Some(s) = self.cache().summaries.get(run_id) {
            return Ok(Some(s.clone()));
        }
        let Some(report) = self.report(run_id).await? else {
            return Ok(None);
        };
        let kept = self.cache().summaries.get(run_id).cloned();
        Ok(Some(
            kept.unwrap_or_else(|| Arc::new(RunSummary::of(&report))),
        ))
    }

    /// Every finalized run, newest first (by start time, then run id).
    pub async fn summaries(&self) -> Result<Vec<Arc<RunSummary>>, DataError> {
        let ids = self.reports.run_ids().await?;
        let (mut known, unknown): (Vec<Arc<RunSummary>>, Vec<String>) = {
            let c = self.cache();
            let mut known = Vec::new();
            let mut unknown = Vec::new();
            for id in ids {
                match c.summaries.get(&id) {
                    Some(s) => known.push(s.clone()),
                    None => unknown.push(id),
                }
            }
            (known, unknown)
        };
        let read: Vec<Result<Option<RunSummary>, DataError>> = stream::iter(unknown)
            .map(|id| async move {
                // Not finalized yet (or unreadable): `None`, looked at again
                // next time. Only the summary is kept of an old report.
                Ok(self.read(&id).await?.map(|r| RunSummary::of(&r)))
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        {
            let mut c = self.cache();
            for s in read {
                if let Some(s) = s? {
                    let s = Arc::new(s);
                    c.summaries.insert(s.run_id.clone(), s.clone());
                    known.push(s);
                }
            }
        }
        known.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.run_id.cmp(&a.run_id))
        });
        Ok(known)
    }

    /// The newest finalized, non-dry-run, scheduled run's report.
    pub async fn latest_scheduled(&self) -> Result<Option<Arc<RunReport>>, DataError> {
        let summaries = self.summaries().await?;
        match summaries.iter().find(|s| s.is_scheduled()) {
            Some(s) => self.report(&s.run_id).await,
            None => Ok(None),
        }
    }

    /// The newest finalized, non-dry-run, scheduled run that reported
    /// `account` (its section holds a result: not missing, no agent or
    /// failed). In an organization run daily that is the latest scheduled
    /// run; a run limited to other accounts (`run --accounts`) or one in
    /// which this account did not report does not hide the account's last
    /// known keys.
    pub async fn latest_scheduled_for(
        &self,
        account: &str,
    ) -> Result<Option<Arc<RunReport>>, DataError> {
        let summaries = self.summaries().await?;
        for s in summaries.iter().filter(|s| s.is_scheduled()) {
            let Some(report) = self.report(&s.run_id).await? else {
                continue;
            };
            if reported(&report, account) {
                return Ok(Some(report));
            }
        }
        Ok(None)
    }

    /// The newest finalized real run that holds `user` of `account`: a
    /// one-user run (emergency rotation, reactivation) newer than the last
    /// scheduled run that reported the account, or else that scheduled run
    /// (which then may or may not hold the user).
    pub async fn latest_for_user(
        &self,
        account: &str,
        user: &str,
    ) -> Result<Option<Arc<RunReport>>, DataError> {
        let summaries = self.summaries().await?;
        for s in summaries.iter().filter(|s| !s.dry_run) {
            let scheduled = s.mode == JobMode::Scheduled;
            if !scheduled && s.mode.user() != Some(user) {
                continue;
            }
            let Some(report) = self.report(&s.run_id).await? else {
                continue;
            };
            let holds = report
                .accounts
                .iter()
                .any(|a| a.account_id == account && a.users.iter().any(|u| u.user_name == user));
            if holds || (scheduled && reported(&report, account)) {
                return Ok(Some(report));
            }
        }
        Ok(None)
    }

    /// A stored rendered report of a run (`reports/<id>/report.<ext>`,
    /// `ext` being `json`, `csv` or `html`), as the coordinator wrote it.
    pub async fn rendered(&self, run_id: &str, ext: &str) -> Result<Option<Vec<u8>>, DataError> {
        Ok(self.store.get(&store::report_key(run_id, ext)).await?)
    }
}

/// The run holds a result of `account`.
fn reported(report: &RunReport, account: &str) -> bool {
    use keyfleet_protocol::report::AccountState;
    report.accounts.iter().any(|a| {
        a.account_id == account && matches!(a.state, AccountState::Ok | AccountState::Partial)
    })
}
