//! The finalized runs as the API lists them: finalized reports, newest first,
//! with the summaries the run list, the dashboard and the trend need.
//!
//! Reads go through the run store's read side: the run ids from
//! [`Reports`], each finalized report from
//! `runs/<id>/report.json` (whose existence means the run is finalized),
//! and the rendered reports, served as stored, from
//! `reports/<id>/report.{json,csv,html}` ([`RunStore`],
//! [`store::report_key`]). A finalized report that exists but cannot be
//! read is logged and left out, not silently dropped and not fatal to every
//! read.
//!
//! # What is kept, and what a request costs
//!
//! A finalized report never changes (it is written once, with
//! `If-None-Match: *`), so what was read of it stays true: the cache is
//! keyed by run id and never goes stale. New runs are found by listing the
//! run ids (`runs/` by common prefix, one ListObjectsV2 per 1000 runs),
//! once in every request that needs the runs. A process keeps:
//!
//! - of every finalized run it has read, what finding runs needs (`Seen`):
//!   its [`RunSummary`], the accounts with a result in it, and the few
//!   users it holds outside those accounts. A few hundred bytes and 8 bytes
//!   an account reported, kept for the life of the process: a year of
//!   daily runs over 1000 accounts is about 3 MB;
//! - whole reports, the most recently used first, up to
//!   [`FULL_CACHE_BYTES`] of their stored JSON (the newest one always).
//!
//! Runs are looked at newest first and read only as far as an answer
//! needs: the coordinator's run ids begin with the second the run started,
//! the second its `created_at` falls in ([`run_started`]), so a run
//! not read yet is older than every run read whose `created_at` is past
//! that second, and the walk stops as soon as it has its answer. Runs whose
//! id is of another form are read before anything else. Reads ramp up over
//! 1, 2, 4, then 8 start seconds at a time: a lookup answered by the newest
//! run reads one report, a long walk runs [`CONCURRENCY`] reads at once.
//!
//! The bound, in S3 requests per API call, with N finalized runs:
//!
//! - every call that needs the runs: the listing, and one GetObject for
//!   each run not finalized yet that the walk reaches (looked at again
//!   every time: it may have been finalized since);
//! - a key read, the export or the dashboard's run in a process that has
//!   not read the runs yet (a cold start): the reports of the runs from the
//!   newest down to the one that answers, at most twice that with the
//!   read-ahead; with a scheduled run a day, one or two;
//! - the run list (its newest `limit` runs), the dashboard (every run) and
//!   a lookup of an account or user no run holds: each of those finalized
//!   runs not read yet, once;
//! - after that (a warm process) no finalized report is read twice as long
//!   as the whole reports asked for fit in [`FULL_CACHE_BYTES`]: a lookup
//!   of an unknown account reads none, a key read at most the one report
//!   that answers when it was evicted.
//!
//! Two requests at once in a cold process may both read a report (a
//! Lambda instance serves one request at a time). What a cold process
//! cannot avoid without an index is reading every finalized report once
//! for the run list and for an account no run reported; an index object
//! the coordinator writes when it finalizes a run (mode, dry run, times,
//! totals, accounts with a result) would make that one GetObject, and is
//! the coordinator's to write.

use super::{Reports, ReportsError};
use crate::store::{self, RunStore, StoreError};
use futures::stream::{self, StreamExt};
use keyfleet_protocol::report::{self, AccountState, RunReport, Totals};
use keyfleet_protocol::JobMode;
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use time::{OffsetDateTime, PrimitiveDateTime};

/// Whole reports kept in memory, by the size of their stored JSON: the
/// API's Lambda has 256 MB by default, and the newest scheduled report,
/// which answers nearly every read, is the one that matters.
pub const FULL_CACHE_BYTES: usize = 16 * 1024 * 1024;
/// Reports read at once.
pub const CONCURRENCY: usize = 8;

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
            compliance: compliance(r),
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

/// What is kept of every finalized run read: its summary, and whom it
/// answers for, so that finding the run that answers a key read reads no
/// report but that one, and an account no run reported reads none.
#[derive(Debug)]
struct Seen {
    summary: Arc<RunSummary>,
    /// The accounts with a result (ok or partial), as numbers (12 digits
    /// fit a `u64`, a third of a `String`'s size), sorted.
    reported: Box<[u64]>,
    /// The (account, user) pairs the run holds that `reported` does not
    /// answer for, sorted: every pair of a one-user run, and the users of a
    /// scheduled run's accounts without a result (normally none).
    held: Box<[(u64, Box<str>)]>,
}

impl Seen {
    fn of(r: &RunReport) -> Seen {
        let summary = RunSummary::of(r);
        let scheduled = summary.mode == JobMode::Scheduled;
        let mut reported = Vec::new();
        let mut held = Vec::new();
        for a in &r.accounts {
            let Some(n) = account_number(&a.account_id) else {
                continue;
            };
            let with_result = matches!(a.state, AccountState::Ok | AccountState::Partial);
            if with_result {
                reported.push(n);
            }
            if !scheduled || !with_result {
                held.extend(a.users.iter().map(|u| (n, Box::from(u.user_name.as_str()))));
            }
        }
        reported.sort_unstable();
        reported.dedup();
        held.sort_unstable();
        held.dedup();
        Seen {
            summary: Arc::new(summary),
            reported: reported.into_boxed_slice(),
            held: held.into_boxed_slice(),
        }
    }

    /// The run holds a result of the account.
    fn reported(&self, account: u64) -> bool {
        self.reported.binary_search(&account).is_ok()
    }

    /// The run holds the user of the account.
    fn holds(&self, account: u64, user: &str) -> bool {
        self.held
            .binary_search_by(|(a, u)| (*a, &**u).cmp(&(account, user)))
            .is_ok()
    }
}

/// An account id as a number: `None` unless 12 digits.
fn account_number(account: &str) -> Option<u64> {
    keyfleet_protocol::is_account_id(account)
        .then(|| account.parse().ok())
        .flatten()
}

/// Newest first: by start time, then run id.
fn newest_first(a: &RunSummary, b: &RunSummary) -> Ordering {
    b.created_at
        .cmp(&a.created_at)
        .then_with(|| b.run_id.cmp(&a.run_id))
}

#[derive(Default)]
struct Cache {
    seen: HashMap<String, Arc<Seen>>,
    /// Whole reports, the most recently used first, with their stored size.
    full: VecDeque<(Arc<RunReport>, usize)>,
    full_bytes: usize,
}

impl Cache {
    fn full(&mut self, run_id: &str) -> Option<Arc<RunReport>> {
        let at = self.full.iter().position(|(r, _)| r.run_id == run_id)?;
        let entry = self.full.remove(at)?;
        let report = entry.0.clone();
        self.full.push_front(entry);
        Some(report)
    }

    fn keep_full(&mut self, report: Arc<RunReport>, bytes: usize) {
        if let Some(at) = self
            .full
            .iter()
            .position(|(r, _)| r.run_id == report.run_id)
        {
            if let Some((_, b)) = self.full.remove(at) {
                self.full_bytes -= b;
            }
        }
        self.full.push_front((report, bytes));
        self.full_bytes += bytes;
        while self.full_bytes > FULL_CACHE_BYTES && self.full.len() > 1 {
            if let Some((_, b)) = self.full.pop_back() {
                self.full_bytes -= b;
            }
        }
    }
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

    /// A finalized report read from the bucket with its users, and its
    /// stored size (the summary and its accounts' sections):
    /// `None` when the run is not finalized, or when its report cannot be
    /// read as one (logged: such a run is left out rather than failing
    /// every read).
    async fn read(&self, run_id: &str) -> Result<Option<(RunReport, usize)>, DataError> {
        let Some(bytes) = self.store.get(&store::final_key(run_id)).await? else {
            return Ok(None);
        };
        let mut sections = 0;
        let parsed = match serde_json::from_slice::<RunReport>(&bytes) {
            Ok(r) if r.run_id == run_id => match super::with_users_sized(&self.store, r).await {
                Ok((r, read)) => {
                    sections = read;
                    Ok(r)
                }
                Err(e @ ReportsError::Users { .. }) => {
                    tracing::error!(run_id, error = %e, "finalized report incomplete; left out");
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            },
            other => other,
        };
        match parsed {
            Ok(r) if r.run_id == run_id => {
                if let Some(second) = run_started(run_id) {
                    if !(second..second + time::Duration::SECOND).contains(&r.created_at) {
                        // The walk's order assumes the two agree.
                        tracing::warn!(run_id, created_at = %r.created_at, "a run id's start second is not its report's created_at; runs may be listed out of order");
                    }
                }
                Ok(Some((r, bytes.len() + sections)))
            }
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

    /// Reads a finalized report and keeps what is kept of it.
    async fn load(&self, run_id: &str) -> Result<Option<(Arc<RunReport>, Arc<Seen>)>, DataError> {
        let Some((report, bytes)) = self.read(run_id).await? else {
            return Ok(None);
        };
        let report = Arc::new(report);
        let mut c = self.cache();
        let seen = c
            .seen
            .entry(report.run_id.clone())
            .or_insert_with(|| Arc::new(Seen::of(&report)))
            .clone();
        c.keep_full(report.clone(), bytes);
        Ok(Some((report, seen)))
    }

    /// A finalized report by run id.
    pub async fn report(&self, run_id: &str) -> Result<Option<Arc<RunReport>>, DataError> {
        if let Some(r) = self.cache().full(run_id) {
            return Ok(Some(r));
        }
        Ok(self.load(run_id).await?.map(|(r, _)| r))
    }

    /// A finalized run's summary by run id: the one kept since the run was
    /// read, else from its report (read now, and kept).
    pub async fn summary(&self, run_id: &str) -> Result<Option<Arc<RunSummary>>, DataError> {
        if let Some(s) = self.cache().seen.get(run_id) {
            return Ok(Some(s.summary.clone()));
        }
        Ok(self.load(run_id).await?.map(|(_, s)| s.summary.clone()))
    }

    /// Hands the finalized runs to `stop`, newest first (by start time,
    /// then run id), reading a run's report only once it could be the next
    /// one (see the module doc), until `stop` says so: the run it stopped
    /// at, or `None` when it never did.
    async fn walk(
        &self,
        mut stop: impl FnMut(&Seen) -> bool,
    ) -> Result<Option<Arc<Seen>>, DataError> {
        let ids = self.reports.run_ids().await?;
        let (mut known, mut unread) = {
            let c = self.cache();
            let mut known: Vec<Arc<Seen>> = Vec::new();
            let mut unread: Vec<(Option<OffsetDateTime>, String)> = Vec::new();
            for id in ids {
                match c.seen.get(&id) {
                    Some(s) => known.push(s.clone()),
                    None => unread.push((run_started(&id), id)),
                }
            }
            (known, unread)
        };
        // Oldest first, so that `pop` takes the newest. An id without a
        // start second sorts as the newest: nothing is known to be newer
        // than it before it is read.
        let oldest_first = |a: &Arc<Seen>, b: &Arc<Seen>| newest_first(&b.summary, &a.summary);
        known.sort_by(oldest_first);
        unread.sort_by(|(sa, a), (sb, b)| match (sa, sb) {
            (Some(x), Some(y)) => x.cmp(y).then_with(|| a.cmp(b)),
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (None, None) => a.cmp(b),
        });
        let mut seconds_at_once = 1;
        loop {
            let read_next = match (known.last(), unread.last()) {
                (_, None) => false,
                (None, Some(_)) | (_, Some((None, _))) => true,
                (Some(k), Some((Some(second), _))) => {
                    k.summary.created_at < *second + time::Duration::SECOND
                }
            };
            if read_next {
                let mut batch = Vec::new();
                let mut seconds = 0;
                let mut current = None;
                while let Some((second, _)) = unread.last() {
                    if current != Some(*second) {
                        if seconds == seconds_at_once {
                            break;
                        }
                        seconds += 1;
                        current = Some(*second);
                    }
                    if let Some((_, id)) = unread.pop() {
                        batch.push(id);
                    }
                }
                seconds_at_once = (seconds_at_once * 2).min(CONCURRENCY);
                let read: Vec<Result<Option<Arc<Seen>>, DataError>> = stream::iter(batch)
                    .map(|id| async move { Ok(self.load(&id).await?.map(|(_, s)| s)) })
                    .buffer_unordered(CONCURRENCY)
                    .collect()
                    .await;
                for s in read {
                    // Not finalized yet (or unreadable): looked at again
                    // next time.
                    if let Some(s) = s? {
                        known.push(s);
                    }
                }
                known.sort_by(oldest_first);
                continue;
            }
            match known.pop() {
                None => return Ok(None),
                Some(s) if stop(&s) => return Ok(Some(s)),
                Some(_) => {}
            }
        }
    }

    /// Every finalized run, newest first (by start time, then run id).
    pub async fn summaries(&self) -> Result<Vec<Arc<RunSummary>>, DataError> {
        self.newest(usize::MAX).await
    }

    /// The newest `limit` finalized runs, newest first.
    pub async fn newest(&self, limit: usize) -> Result<Vec<Arc<RunSummary>>, DataError> {
        let mut out = Vec::new();
        if limit > 0 {
            self.walk(|s| {
                out.push(s.summary.clone());
                out.len() >= limit
            })
            .await?;
        }
        Ok(out)
    }

    /// The report of the run `stop` stopped at.
    async fn report_of(
        &self,
        found: Option<Arc<Seen>>,
    ) -> Result<Option<Arc<RunReport>>, DataError> {
        match found {
            Some(s) => self.report(&s.summary.run_id).await,
            None => Ok(None),
        }
    }

    /// The newest finalized, non-dry-run, scheduled run's report.
    pub async fn latest_scheduled(&self) -> Result<Option<Arc<RunReport>>, DataError> {
        let found = self.walk(|s| s.summary.is_scheduled()).await?;
        self.report_of(found).await
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
        let Some(n) = account_number(account) else {
            return Ok(None);
        };
        let found = self
            .walk(|s| s.summary.is_scheduled() && s.reported(n))
            .await?;
        self.report_of(found).await
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
        let Some(n) = account_number(account) else {
            return Ok(None);
        };
        let found = self
            .walk(|s| {
                let m = &s.summary;
                if m.dry_run {
                    false
                } else if m.mode == JobMode::Scheduled {
                    s.reported(n) || s.holds(n, user)
                } else {
                    m.mode.user() == Some(user) && s.holds(n, user)
                }
            })
            .await?;
        self.report_of(found).await
    }

    /// A stored rendered report of a run (`reports/<id>/report.<ext>`,
    /// `ext` being `json`, `csv` or `html`), as the coordinator wrote it.
    pub async fn rendered(&self, run_id: &str, ext: &str) -> Result<Option<Vec<u8>>, DataError> {
        Ok(self.store.get(&store::report_key(run_id, ext)).await?)
    }
}
/// A run's compliance figure: the CIS AWS Foundations control "access
/// keys rotated every 90 days or less", the share of active keys at most
/// [`report::CIS_KEY_ROTATION_DAYS`] whole days old, as the agents scanned them
/// (before the run's actions): the report's own figure
/// (`RunReport::compliance`), so the API, the dashboard and every shape of
/// the report agree. A report finalized before the figure was recorded
/// gets it recomputed the same way from its keys, aged at the run's start
/// (the report keeps no per-account scan time), with `recorded: false`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Compliance {
    pub active_keys: u64,
    pub active_keys_within_90d: u64,
    /// `None` when there is no active key (the control measures nothing).
    pub percent: Option<f64>,
    /// `87.5%` (rounded down to a tenth) or `n/a`.
    pub percent_text: String,
    /// The figure is the report's (false: recomputed, see above).
    pub recorded: bool,
}

/// See [`Compliance`].
pub fn compliance(report: &RunReport) -> Compliance {
    let (c, recorded) = match &report.compliance {
        Some(s) => (s.total, true),
        None => {
            let mut c = report::Compliance::default();
            for a in &report.accounts {
                let x = a
                    .compliance
                    .unwrap_or_else(|| report::compliance_of(&a.users, report.created_at));
                c.active_keys += x.active_keys;
                c.active_keys_within_90d += x.active_keys_within_90d;
            }
            (c, false)
        }
    };
    Compliance {
        active_keys: c.active_keys,
        active_keys_within_90d: c.active_keys_within_90d,
        percent: c.percent(),
        percent_text: c.percent_text(),
        recorded,
    }
}

/// The start second of a run id of the coordinator's form,
/// `YYYYMMDDTHHMMSSZ-` and 6 lower case hex digits (`new_run_id` in
/// coordinator/src/service/dispatch.rs, which takes the stamp from the same
/// clock reading as the manifest's `created_at`): the second `created_at`
/// falls in. `None` for any other id.
pub fn run_started(s: &str) -> Option<OffsetDateTime> {
    let (stamp, suffix) = s.split_once('-')?;
    let suffix_ok = suffix.len() == 6
        && suffix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !suffix_ok || stamp.len() != 16 {
        return None;
    }
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(stamp, fmt)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}
