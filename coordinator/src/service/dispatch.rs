//! Dispatch: starting a run. Enumerates the organization, writes the
//! manifest (before any job, so no result can beat it), sends one job per
//! account and records how each send went. Kept apart so that what goes out
//! to the agents is in one place.

use super::{Coordinator, CoordinatorError, JobSink, LocalJob, RunRequest};
use crate::org;
use futures::stream::{self, StreamExt};
use keyfleet_protocol::report::aggregate;
use keyfleet_protocol::{
    encode, Dispatch, Job, JobMode, ManifestAccount, RunManifest, Token, JOB_EXPIRY, VERSION,
};
use keyfleet_reports::outcome::{self, RunFailure};
use keyfleet_reports::store;
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;

fn new_run_id(now: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    format!(
        "{}-{}",
        now.format(&fmt).unwrap_or_default(),
        &Token::generate().0[..6]
    )
}

/// A job handed out at `issued_at` expires [`JOB_EXPIRY`] later, or at the
/// run's deadline when that is later: the run's deadline cuts the report,
/// never a job that merely started late (see [`JOB_EXPIRY`]).
pub fn job_deadline(issued_at: OffsetDateTime, run_deadline: OffsetDateTime) -> OffsetDateTime {
    issued_at
        .checked_add(JOB_EXPIRY)
        .map_or(issued_at.max(run_deadline), |expiry| {
            expiry.max(run_deadline)
        })
}

impl Coordinator {
    /// Enumerates the organization, writes the manifest and sends the jobs.
    pub async fn start_run(&self, req: RunRequest) -> Result<RunManifest, CoordinatorError> {
        let policy = req
            .policy
            .clone()
            .unwrap_or_else(|| self.config.policy.clone());
        policy
            .validate()
            .map_err(|e| CoordinatorError::Policy(e.to_string()))?;
        // What the agent would refuse is refused here, before a run exists.
        let named_key = match &req.mode {
            JobMode::Scheduled => None,
            JobMode::Rotate { key_id, .. } => key_id.as_deref(),
            JobMode::Reactivate { key_id, .. } => Some(key_id.as_str()),
        };
        if matches!(req.mode, JobMode::Reactivate { .. }) && req.dry_run {
            return Err(CoordinatorError::Request(
                "a reactivation is never a dry run".into(),
            ));
        }
        if let Some(user) = req.mode.user() {
            if !keyfleet_protocol::is_user_name(user) {
                return Err(CoordinatorError::Request(format!(
                    "user `{}` is not a valid IAM user name",
                    user.escape_debug()
                )));
            }
            if let Some(k) = named_key.filter(|k| !keyfleet_protocol::is_access_key_id(k)) {
                return Err(CoordinatorError::Request(format!(
                    "key_id `{}` is not an access key id (16-128 of A-Z, 0-9)",
                    k.escape_debug()
                )));
            }
        }
        // The initial clean-up is for the first run only: once a real
        // clean-up run has finalized, leaving the flag on would silently stop
        // all rotation and notices, so it is refused instead.
        if policy.cleanup && !req.dry_run {
            if let Some(done) = self.store.get(store::CLEANUP_DONE).await? {
                return Err(CoordinatorError::Policy(format!(
                    "the initial clean-up already ran (run {}); set cleanup = false",
                    String::from_utf8_lossy(&done)
                )));
            }
        }
        let now = OffsetDateTime::now_utc();
        let run_id = new_run_id(now);
        let org = &self.clients.org;
        let accounts = org::list_accounts(org).await?;
        let mut under = BTreeSet::new();
        for ou in &self.config.exclude_ous {
            under.extend(org::accounts_under(org, ou).await?);
        }
        let exclude: BTreeSet<String> = self.config.exclude_accounts.iter().cloned().collect();
        let only: Option<BTreeSet<String>> =
            req.accounts.as_ref().map(|v| v.iter().cloned().collect());
        let (selected, skipped) = org::select(&accounts, &exclude, &under, only.as_ref());

        let tokens: Vec<Token> = selected.iter().map(|_| Token::generate()).collect();
        let mut manifest = RunManifest {
            v: VERSION,
            run_id: run_id.clone(),
            created_at: now,
            deadline: now + self.config.deadline,
            policy: policy.clone(),
            dry_run: req.dry_run,
            mode: req.mode.clone(),
            accounts: selected
                .iter()
                .zip(&tokens)
                .map(|(a, t)| ManifestAccount {
                    account_id: a.id.clone(),
                    name: a.name.clone(),
                    token_sha256: t.sha256(),
                    dispatch: Dispatch::Sent,
                })
                .collect(),
            skipped,
        };
        // The manifest exists before any job, so no result can beat it.
        self.put_manifest(&manifest).await?;

        let jobs: Vec<Job> = selected
            .iter()
            .zip(tokens)
            .map(|(a, token)| Job {
                v: VERSION,
                run_id: run_id.clone(),
                account_id: a.id.clone(),
                token,
                issued_at: now,
                deadline: job_deadline(now, manifest.deadline),
                policy: policy.clone(),
                dry_run: req.dry_run,
                as_of: req.as_of,
                mode: req.mode.clone(),
                results_queue_url: self.config.results_queue_url.clone(),
                undelivered: Vec::new(),
            })
            .collect();
        let outcomes: Vec<(String, Dispatch)> = stream::iter(jobs)
            .map(|mut job| async move {
                // Which new keys of the account await delivery: the agent
                // keeps their old keys active. A failed listing sends the
                // job without it only for modes that never deactivate.
                match self.undelivered_of(&job.account_id, &job.policy, now).await {
                    Ok(keys) => job.undelivered = keys,
                    Err(e) if matches!(job.mode, JobMode::Scheduled) => {
                        tracing::error!(account = %job.account_id, error = %e, "could not read the account's deliveries; job not sent");
                        return (job.account_id, Dispatch::Failed { error: e.to_string() });
                    }
                    Err(e) => {
                        tracing::warn!(account = %job.account_id, error = %e, "could not read the account's deliveries");
                    }
                }
                let d = self.send_job(&job).await;
                (job.account_id, d)
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let by_id: BTreeMap<String, Dispatch> = outcomes.into_iter().collect();
        for a in &mut manifest.accounts {
            if let Some(d) = by_id.get(&a.account_id) {
                a.dispatch = d.clone();
            }
        }
        self.put_manifest(&manifest).await?;
        tracing::info!(
            run_id = %run_id,
            accounts = manifest.accounts.len(),
            skipped = manifest.skipped.len(),
            no_agent = manifest.accounts.iter().filter(|a| a.dispatch == Dispatch::NoAgent).count(),
            dry_run = req.dry_run,
            "run started"
        );
        // A run where nobody can answer is final at once.
        if !manifest
            .accounts
            .iter()
            .any(|a| a.dispatch == Dispatch::Sent)
        {
            self.finalize(&run_id).await?;
        }
        // No silent success: the run is on record (report, summary, alert),
        // and the caller is told it did nothing.
        if manifest.accounts.is_empty() {
            let report = aggregate(&manifest, &[], OffsetDateTime::now_utc());
            return Err(CoordinatorError::NoAccountSelected {
                run_id: run_id.clone(),
                description: outcome::describe(&report)
                    .unwrap_or_else(|| RunFailure::NoAccountSelected.headline().to_string()),
                report_url: self.report_url(&run_id),
            });
        }
        Ok(manifest)
    }

    async fn send_job(&self, job: &Job) -> Dispatch {
        if let JobSink::Local(tx) = &self.jobs {
            return match tx.send(LocalJob {
                account_id: job.account_id.clone(),
                job: job.clone(),
            }) {
                Ok(()) => Dispatch::Sent,
                Err(_) => Dispatch::Failed {
                    error: "the in-process agents are gone".into(),
                },
            };
        }
        let body = String::from_utf8(encode(job)).expect("serde_json writes UTF-8");
        let url = self.config.jobs_queue_url(&job.account_id);
        match self
            .clients
            .sqs
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
        {
            Ok(_) => Dispatch::Sent,
            Err(e) => {
                use aws_sdk_sqs::error::ProvideErrorMetadata;
                let code = e.code().unwrap_or("");
                if code.contains("NonExistentQueue") || code.contains("QueueDoesNotExist") {
                    tracing::warn!(account = %job.account_id, "no keyfleet-jobs queue: agent not deployed");
                    Dispatch::NoAgent
                } else {
                    let error = format!("{code}: {}", e.message().unwrap_or(""));
                    tracing::error!(account = %job.account_id, error = %error, "job not sent");
                    Dispatch::Failed { error }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_job_expires_a_day_after_it_is_handed_out_or_at_a_later_run_deadline() {
        let now = datetime!(2026-12-05 10:00 UTC);
        let soon = now + time::Duration::minutes(30);
        assert_eq!(job_deadline(now, soon), now + JOB_EXPIRY);
        let later = now + time::Duration::days(3);
        assert_eq!(job_deadline(now, later), later);
        // The end of time neither panics nor expires.
        let end = time::PrimitiveDateTime::MAX.assume_utc();
        assert_eq!(job_deadline(end, soon), end, "never before its issue");
    }
}
