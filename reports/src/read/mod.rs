//! The read side of the run store: finalized reports (by id or `latest`),
//! where they are, and how far a run in progress has got. It needs only
//! read access to the report bucket, never the coordinator's private key,
//! so the command line uses it to follow a run of the deployed coordinator
//! and to read reports. [`finalized`] is the API's view: the finalized
//! runs, newest first, with their summaries and a cache.

pub mod finalized;

use crate::store::{self, RunStore, StoreError};
use futures::stream::{self, StreamExt};
use keyfleet_protocol::report::{AccountReport, RunReport};
use keyfleet_protocol::{decode, Dispatch, RunManifest};
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;

/// Reading a run store.
#[derive(Debug, Clone)]
pub struct Reports {
    store: RunStore,
}

/// How far a run has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Accounts a job was sent to.
    pub expected: BTreeSet<String>,
    /// Those whose complete result is stored.
    pub reported: BTreeSet<String>,
    /// Result parts stored so far (grows with every part taken in).
    pub parts: usize,
    /// The run's deadline, after which the sweep finalizes it.
    pub deadline: OffsetDateTime,
    pub finalized: bool,
}

impl Progress {
    /// Accounts still to report.
    pub fn missing(&self) -> Vec<&str> {
        self.expected
            .difference(&self.reported)
            .map(String::as_str)
            .collect()
    }
}

/// The accounts a run waits for: those a job was sent to.
pub fn expected_accounts(manifest: &RunManifest) -> impl Iterator<Item = &String> {
    manifest
        .accounts
        .iter()
        .filter(|a| a.dispatch == Dispatch::Sent)
        .map(|a| &a.account_id)
}

/// The expected accounts of `manifest` whose result is complete (all the
/// parts of one delivery attempt), from the keys under the run's results
/// prefix.
pub fn reported_accounts(manifest: &RunManifest, result_keys: &[String]) -> BTreeSet<String> {
    let mut by_account: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for k in result_keys {
        if let Some(account) = store::result_account(&manifest.run_id, k) {
            by_account.entry(account).or_default().push(k.clone());
        }
    }
    expected_accounts(manifest)
        .filter(|a| {
            by_account
                .get(a.as_str())
                .is_some_and(|ks| !store::complete_attempts(ks).is_empty())
        })
        .cloned()
        .collect()
}

/// Why the store could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("manifest of run {run} is unreadable: {error}")]
    Manifest {
        run: String,
        error: keyfleet_protocol::ProtocolError,
    },
    /// A schema 2 report names an object for an account's users that is
    /// missing or is not that account's section.
    #[error("run {run}: the users of account {account} ({key}) {problem}")]
    Users {
        run: String,
        account: String,
        key: String,
        problem: String,
    },
}

/// Puts a schema 2 report's users back: each account that names an object
/// for its users ([`AccountReport::users_key`]) gets them from it, one
/// account at a time. A schema 1 report (users inline) comes back as it
/// is. The result is the report as [`keyfleet_protocol::report::aggregate`]
/// builds it, which is what the API, the CLI and the mails read.
pub async fn with_users(store: &RunStore, report: RunReport) -> Result<RunReport, ReportsError> {
    Ok(with_users_sized(store, report).await?.0)
}

/// [`with_users`], and the bytes of the sections it read (what the report
/// weighs beyond its summary, for a cache's budget).
pub async fn with_users_sized(
    store: &RunStore,
    mut report: RunReport,
) -> Result<(RunReport, usize), ReportsError> {
    let mut bytes = 0;
    for a in &mut report.accounts {
        let (section, read) = section_sized(store, &report.run_id, a).await?;
        *a = section;
        bytes += read;
    }
    Ok((report, bytes))
}

/// One account of a report with its users: read from the object its row
/// names, or the row itself when it names none (no users, or a schema 1
/// report with its users inline).
pub async fn section(
    store: &RunStore,
    run_id: &str,
    row: &AccountReport,
) -> Result<AccountReport, ReportsError> {
    Ok(section_sized(store, run_id, row).await?.0)
}

/// [`section`], and the bytes read for it (0 when nothing was read).
async fn section_sized(
    store: &RunStore,
    run_id: &str,
    row: &AccountReport,
) -> Result<(AccountReport, usize), ReportsError> {
    let Some(key) = &row.users_key else {
        return Ok((row.clone(), 0));
    };
    let problem = |problem: String| ReportsError::Users {
        run: run_id.to_string(),
        account: row.account_id.clone(),
        key: key.clone(),
        problem,
    };
    let Some(bytes) = store.get(key).await? else {
        return Err(problem("is missing".into()));
    };
    let stored: AccountReport =
        serde_json::from_slice(&bytes).map_err(|e| problem(format!("is unreadable: {e}")))?;
    if stored.account_id != row.account_id {
        return Err(problem(format!("holds account {}", stored.account_id)));
    }
    Ok((
        AccountReport {
            users: stored.users,
            users_key: None,
            ..row.clone()
        },
        bytes.len(),
    ))
}

impl Reports {
    pub fn new(store: RunStore) -> Self {
        Reports { store }
    }

    /// Where the HTML report of a run is.
    pub fn report_url(&self, run_id: &str) -> String {
        self.file_url(run_id, "html")
    }

    /// Where one of a run's report files (`json`, `csv`, `html`) is.
    pub fn file_url(&self, run_id: &str, ext: &str) -> String {
        format!(
            "s3://{}/{}",
            self.store.bucket(),
            store::report_key(run_id, ext)
        )
    }

    /// Every run with a manifest.
    pub async fn run_ids(&self) -> Result<Vec<String>, ReportsError> {
        Ok(self.store.run_ids().await?)
    }

    /// A run's manifest, if the run exists.
    pub async fn manifest(&self, run_id: &str) -> Result<Option<RunManifest>, ReportsError> {
        let Some(bytes) = self.store.get(&store::manifest_key(run_id)).await? else {
            return Ok(None);
        };
        decode(&bytes)
            .map(Some)
            .map_err(|error| ReportsError::Manifest {
                run: run_id.to_string(),
                error,
            })
    }

    /// How far a run has got; `None` when it has no manifest.
    pub async fn progress(&self, run_id: &str) -> Result<Option<Progress>, ReportsError> {
        let Some(manifest) = self.manifest(run_id).await? else {
            return Ok(None);
        };
        let keys = self.store.list(&store::results_prefix(run_id)).await?;
        Ok(Some(Progress {
            expected: expected_accounts(&manifest).cloned().collect(),
            reported: reported_accounts(&manifest, &keys),
            parts: keys.len(),
            deadline: manifest.deadline,
            finalized: self.store.exists(&store::final_key(run_id)).await?,
        }))
    }

    /// The newest finalized real run, by start time (the manifest's
    /// `created_at`, which the finalized report carries). Dry runs are kept
    /// and readable by id but are never `latest`; nor is a run still
    /// waiting for results. Run ids are not compared: they carry the start
    /// second and a random suffix, so two runs started in the same second
    /// would sort by chance. Ties on the start time (same nanosecond) go to
    /// the greater run id, so the answer is stable.
    pub async fn latest_run_id(&self) -> Result<Option<String>, ReportsError> {
        #[derive(serde::Deserialize)]
        struct Started {
            #[serde(with = "time::serde::rfc3339")]
            created_at: OffsetDateTime,
            #[serde(default)]
            dry_run: bool,
        }
        let ids = self.store.run_ids().await?;
        let finals: Vec<Result<Option<(OffsetDateTime, String)>, ReportsError>> =
            stream::iter(ids)
                .map(|id| async move {
                    let Some(bytes) = self.store.get(&store::final_key(&id)).await? else {
                        return Ok(None);
                    };
                    match serde_json::from_slice::<Started>(&bytes) {
                        Ok(s) if !s.dry_run => Ok(Some((s.created_at, id))),
                        Ok(_) => Ok(None),
                        Err(e) => {
                            tracing::error!(run_id = %id, error = %e, "finalized report unreadable; not a candidate for latest");
                            Ok(None)
                        }
                    }
                })
                .buffer_unordered(16)
                .collect()
                .await;
        let mut latest: Option<(OffsetDateTime, String)> = None;
        for f in finals {
            if let Some(c) = f? {
                if latest.as_ref().is_none_or(|l| c > *l) {
                    latest = Some(c);
                }
            }
        }
        Ok(latest.map(|(_, id)| id))
    }

    /// A stored report by run id, or `latest`: see [`Reports::latest_run_id`].
    pub async fn report(&self, run: &str) -> Result<Option<RunReport>, ReportsError> {
        let run_id = if run == "latest" {
            match self.latest_run_id().await? {
                Some(id) => id,
                None => return Ok(None),
            }
        } else {
            run.to_string()
        };
        let Some(bytes) = self.store.get(&store::final_key(&run_id)).await? else {
            return Ok(None);
        };
        match serde_json::from_slice(&bytes) {
            Ok(r) => Ok(Some(with_users(&self.store, r).await?)),
            Err(_) => Ok(None),
        }
    }
}
