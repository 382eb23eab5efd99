//! Mail retry: owners' emails that could not be sent when their result came
//! in are sent again by the sweep, from the stored result parts, until they
//! go out or the attempts run out, and then the security team is alerted.
//!
//! Why not let SQS retry the result message: a result whose emails keep
//! failing (SES throttled, sending paused, a quota reached) would reach the
//! results DLQ after its receives and its emails would never be sent, while
//! the agent has already cleared its intent (the result is on the queue).
//! Instead, once a result's parts are stored, intake records the account in
//! `pending-mail/<run>/<account>` and consumes the message; everything needed
//! to send again is in the stored parts (the sealed boxes, the notices) and
//! in the ledger (what was sent already: each email goes out once). The
//! hourly sweep takes every pending account, sends what is missing, and
//! clears the record; after [`CoordinatorConfig::mail_attempts`] failed
//! attempts (24 by default: a day of hourly sweeps) it gives up on the
//! account, alerts with the last error and records
//! `runs/<run>/mail-failed/<account>`.
//!
//! An email that waits for SES's quota ([`CoordinatorError::MailDeferred`],
//! see `pacing`) is not a failed attempt: it counts in `deferred`, not
//! `attempts`, so a reached quota never makes the sweep give up; the sweep
//! sends it once the quota has room (the next day, for a daily quota).
//!
//! The record holds counts, times and the last error text (SES's error code
//! and message, the recipient address): no secret.
//!
//! [`CoordinatorConfig::mail_attempts`]: super::CoordinatorConfig::mail_attempts

use super::digests::DigestFailure;
use super::{Coordinator, CoordinatorError};
use keyfleet_reports::store::{self, RUNS_PREFIX};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Where accounts with unsent mail are recorded: one listing finds them all.
pub const PENDING_MAIL_PREFIX: &str = "pending-mail/";

/// What a sweep's digests did, per run: sent once a sweep, whichever of
/// the run's pending accounts comes first.
type DigestsSent = std::collections::HashMap<String, Vec<DigestFailure>>;

fn pending_key(run: &str, account: &str) -> String {
    format!("{PENDING_MAIL_PREFIX}{run}/{account}")
}

fn failed_key(run: &str, account: &str) -> String {
    format!("{RUNS_PREFIX}{run}/mail-failed/{account}")
}

/// The record of an account whose mail is not all sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingMail {
    pub run_id: String,
    pub account_id: String,
    /// Attempts that failed so far (intake's is the first).
    pub attempts: u32,
    /// Attempts that found SES's quota without room (not failures).
    #[serde(default)]
    pub deferred: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub first_failure: OffsetDateTime,
    pub last_error: String,
}

impl PendingMail {
    /// Counts one more attempt that ended in `error`: a failure, or a
    /// deferral to SES's quota.
    fn count(&mut self, error: &CoordinatorError) {
        if matches!(error, CoordinatorError::MailDeferred { .. }) {
            self.deferred += 1;
        } else {
            self.attempts += 1;
        }
        self.last_error = error.to_string();
    }
}

/// What one pass over the pending accounts did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MailRetry {
    /// Accounts whose mail is now all sent, as `run/account`.
    pub sent: Vec<String>,
    /// Accounts still pending after another failure.
    pub pending: Vec<String>,
    /// Accounts given up on (alerted).
    pub gave_up: Vec<String>,
}

impl Coordinator {
    /// Records that `account`'s mail in `run` failed (`error`); the sweep
    /// sends it again. A record already there counts one more attempt.
    pub(super) async fn mail_pending(
        &self,
        run: &str,
        account: &str,
        error: &CoordinatorError,
    ) -> Result<(), CoordinatorError> {
        tracing::warn!(run_id = %run, account = %account, error = %error, "owner mail not all sent; the sweep sends it again");
        let key = pending_key(run, account);
        let mut record = self.read_pending(&key).await?.unwrap_or(PendingMail {
            run_id: run.to_string(),
            account_id: account.to_string(),
            attempts: 0,
            deferred: 0,
            first_failure: OffsetDateTime::now_utc(),
            last_error: String::new(),
        });
        record.count(error);
        self.write_pending(&key, &record).await
    }

    async fn read_pending(&self, key: &str) -> Result<Option<PendingMail>, CoordinatorError> {
        Ok(self
            .store
            .get(key)
            .await?
            .and_then(|b| match serde_json::from_slice(&b) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::error!(key = %key, error = %e, "pending-mail record unreadable; starting it again");
                    None
                }
            }))
    }

    async fn write_pending(&self, key: &str, record: &PendingMail) -> Result<(), CoordinatorError> {
        let body = serde_json::to_vec(record).expect("a plain struct serializes");
        self.store.put(key, body, "application/json").await?;
        Ok(())
    }

    /// Every account with unsent mail: sends what is missing (each email
    /// still only once, by the ledger), clears the record when all is sent,
    /// gives up and alerts after the configured number of attempts. One
    /// account's failure never stops the others.
    pub async fn resend_pending_mail(&self) -> Result<MailRetry, CoordinatorError> {
        let mut out = MailRetry::default();
        self.pacer.forget().await;
        let mut digests = DigestsSent::new();
        for key in self.store.list(PENDING_MAIL_PREFIX).await? {
            let Some((run, account)) = key
                .strip_prefix(PENDING_MAIL_PREFIX)
                .and_then(|rest| rest.split_once('/'))
                .map(|(r, a)| (r.to_string(), a.to_string()))
            else {
                continue;
            };
            let label = format!("{run}/{account}");
            match self.resend_account(&run, &account, &mut digests).await {
                Ok(()) => {
                    self.store.delete(&key).await?;
                    tracing::info!(run_id = %run, account = %account, "pending owner mail sent");
                    out.sent.push(label);
                }
                Err(e) => {
                    let mut record = self.read_pending(&key).await?.unwrap_or(PendingMail {
                        run_id: run.clone(),
                        account_id: account.clone(),
                        attempts: 0,
                        deferred: 0,
                        first_failure: OffsetDateTime::now_utc(),
                        last_error: String::new(),
                    });
                    record.count(&e);
                    if record.attempts >= self.config.mail_attempts {
                        self.give_up(&key, &record).await?;
                        out.gave_up.push(label);
                    } else {
                        self.write_pending(&key, &record).await?;
                        out.pending.push(label);
                    }
                }
            }
        }
        // The runs of the accounts above had their digests sent with them.
        let taken: Vec<&str> = out
            .sent
            .iter()
            .chain(&out.pending)
            .chain(&out.gave_up)
            .filter_map(|l| l.split_once('/').map(|(run, _)| run))
            .collect();
        let resent = self.resend_digests(&taken).await?;
        out.sent.extend(resent);
        Ok(out)
    }

    async fn resend_account(
        &self,
        run: &str,
        account: &str,
        digests: &mut DigestsSent,
    ) -> Result<(), CoordinatorError> {
        let manifest = self
            .manifest(run)
            .await?
            .ok_or_else(|| CoordinatorError::UnknownRun(run.to_string()))?;
        let attempts = self.account_attempts(run, account).await?;
        if attempts.is_empty() {
            // Recorded only after the parts were complete: they are gone.
            return Err(CoordinatorError::Request(format!(
                "the stored result of account {account} in run {run} is gone"
            )));
        }
        self.notify_attempts(&manifest, &attempts).await?;
        // The account's notices wait in digests (see `digests`), sent with
        // the run's others once it is finalized: once a sweep for each run.
        // A digest that fails again is the attempt's failure of each
        // account it holds, counted when that account's turn comes (an
        // account the digest holds that waits for nothing yet is recorded).
        if !self.store.exists(&store::final_key(run)).await? {
            return Ok(());
        }
        if !digests.contains_key(run) {
            let sent = self.send_digests(run).await?;
            for f in &sent.failed {
                for other in f.accounts.iter().filter(|a| *a != account) {
                    self.mail_pending_if_absent(run, other, &f.replay()).await?;
                }
            }
            digests.insert(run.to_string(), sent.failed);
        }
        match digests[run]
            .iter()
            .find(|f| f.accounts.iter().any(|a| a == account))
        {
            Some(f) => Err(f.replay()),
            None => Ok(()),
        }
    }

    /// Records `account` as waiting for mail unless it is already.
    async fn mail_pending_if_absent(
        &self,
        run: &str,
        account: &str,
        error: &CoordinatorError,
    ) -> Result<(), CoordinatorError> {
        if self
            .read_pending(&pending_key(run, account))
            .await?
            .is_none()
        {
            self.mail_pending(run, account, error).await?;
        }
        Ok(())
    }

    async fn give_up(&self, key: &str, record: &PendingMail) -> Result<(), CoordinatorError> {
        let body = serde_json::to_vec(record).expect("a plain struct serializes");
        self.store
            .put(
                &failed_key(&record.run_id, &record.account_id),
                body,
                "application/json",
            )
            .await?;
        self.store.delete(key).await?;
        // Its notices are not tried again by the sweep's digests either.
        self.drop_account_parts(&record.run_id, &record.account_id)
            .await?;
        tracing::error!(run_id = %record.run_id, account = %record.account_id, attempts = record.attempts, error = %record.last_error, "owner mail not sent; giving up");
        self.alert(
            &format!("keyfleet run {}: owner emails not sent", record.run_id),
            &format!(
                "Run {}, account {}: owners' emails could not be sent after {} attempts since {}; last error: {}. Keys created in this run may not have reached their owners: check SES, then rotate the affected users again.",
                record.run_id,
                record.account_id,
                record.attempts,
                record
                    .first_failure
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                record.last_error
            ),
        )
        .await;
        Ok(())
    }
}
