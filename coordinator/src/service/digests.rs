//! Digests: one email per owner per run with every notice the run has for
//! them (see [`crate::mail::digest`]), across all their users and accounts.
//!
//! **Queued, then sent at the run's end.** An account's notices are known
//! when its result comes in, but an owner's other accounts may report
//! later, so intake only queues them: one part per owner and result,
//! `digests/<run>/<owner>/<account>-<hash>.json` (`<owner>` a hash of the
//! lowercased address, `<hash>` one of the part's content, so that two
//! attempts of one account never overwrite each other and a retried intake
//! usually rewrites the same part). A run ends (before its deadline) only
//! once every account's intake has queued its notices (see intake's
//! `all_reported`), and finalize sends the digests before it builds the
//! report, so a finalized run's owners have been mailed (or their mail is
//! waiting for a retry); a result that comes in after the run was
//! finalized has its owners' digests sent at once. Each owner's digest
//! reads that owner's parts only, and owners are taken a chunk at a time:
//! memory grows with one owner's notices and the run's part keys, not with
//! its notices.
//!
//! **Exactly once per notice.** Every notice keeps its own ledger entry
//! (account, user, key, kind), as when each had its own email: a digest
//! claims the entries of its notices (create-if-absent puts), sends only
//! the notices it claimed, releases them if anything fails before SES
//! takes the email, and
//! deletes the owner's parts once sent. A retried finalize or intake finds
//! the notices claimed and sends nothing; a notice a later run repeats
//! (still in use, run after run) is not sent again; a reactivated key's
//! fresh notices are released at intake, as before. What a digest claims
//! and then cannot send because the coordinator stopped in between is lost,
//! as any claimed email is (see `notify`): never sent twice.
//!
//! **Retries.** A digest that cannot be sent releases every claim it
//! holds (a claim S3 refuses included), puts its parts back (a sender that
//! found its notices claimed meanwhile may have dropped them), and each
//! account it holds notices of is recorded as waiting for mail, as an
//! account whose key email failed is (see `mail_retry`): the report lists
//! it, and the hourly sweep takes it up again. The sweep sends a run's
//! digests once, whichever of its waiting accounts comes first, and counts
//! one attempt (or one deferral to SES's quota) per account and sweep,
//! however many accounts a failed digest holds; giving up on an account
//! drops its parts. The sweep also sends the digests of any finalized run
//! that still has parts. The bucket's lifecycle removes any part left after
//! 7 days.
//!
//! **What it costs.** Per owner and result with news: one S3 PUT for the
//! part; per digest: a LIST of the run's parts (shared), one GET per part,
//! one PUT per notice (its ledger entry), one DELETE per part and one SES
//! email, instead of a claim and an email per notice.
//!

use super::notify::notice_ledger_kind;
use super::{Coordinator, CoordinatorError};
use crate::mail::digest::{self, DigestContext, DigestItem};
use futures::stream::{self, StreamExt};
use keyfleet_reports::store;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

/// Where queued notices wait for their digest.
pub const DIGESTS_PREFIX: &str = "digests/";

/// Digests sent at once: owners are independent.
const CONCURRENT_DIGESTS: usize = 8;

fn run_prefix(run: &str) -> String {
    format!("{DIGESTS_PREFIX}{run}/")
}

fn hash16(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// An owner as keys name them: the hash of the trimmed, lowercased address
/// (addresses are matched without case, as mail systems do in practice).
fn owner_token(to: &str) -> String {
    hash16(to.trim().to_ascii_lowercase().as_bytes())
}

/// Whether two addresses are one owner's.
pub(super) fn same_owner(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// One owner's notices from one result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DigestPart {
    /// The owner's address, as the user's tag gives it.
    to: String,
    items: Vec<DigestItem>,
}

/// The owner segment of a part's key.
fn owner_of(run: &str, key: &str) -> Option<String> {
    key.strip_prefix(&run_prefix(run))?
        .split_once('/')
        .map(|(owner, _)| owner.to_string())
}

impl Coordinator {
    /// Queues the notices of one account's result, by owner, for the run's
    /// digests.
    pub(super) async fn queue_digests(
        &self,
        run: &str,
        account: &str,
        by_owner: Vec<(String, Vec<DigestItem>)>,
    ) -> Result<(), CoordinatorError> {
        for (to, items) in by_owner {
            let part = DigestPart { to, items };
            let body = serde_json::to_vec(&part).expect("a plain struct serializes");
            let key = format!(
                "{}{}/{account}-{}.json",
                run_prefix(run),
                owner_token(&part.to),
                hash16(&body)
            );
            self.store.put(&key, body, "application/json").await?;
        }
        Ok(())
    }

    /// Sends every queued digest of `run`, each owner's once. One owner's
    /// failure does not stop the others': the failed digests are returned,
    /// with the accounts whose notices they hold (their parts stay).
    pub(super) async fn send_digests(&self, run: &str) -> Result<Digests, CoordinatorError> {
        let keys = self.store.list(&run_prefix(run)).await?;
        if keys.is_empty() {
            return Ok(Digests::default());
        }
        let manifest = self
            .manifest(run)
            .await?
            .ok_or_else(|| CoordinatorError::UnknownRun(run.to_string()))?;
        let mut owners: Vec<(String, Vec<String>)> = Vec::new();
        for key in keys {
            let Some(owner) = owner_of(run, &key) else {
                continue;
            };
            match owners.last_mut() {
                Some((o, keys)) if *o == owner => keys.push(key),
                _ => owners.push((owner, vec![key])),
            }
        }
        let cutover = manifest.policy.cutover_on_use;
        let mut out = Digests::default();
        // A chunk of owners at a time: the futures of a chunk are built
        // before they are streamed (see `notify_owners` on why), and a
        // run's owners may be many.
        for chunk in owners.chunks(CONCURRENT_DIGESTS * 8) {
            let sends: Vec<_> = chunk
                .iter()
                .map(|(_, keys)| self.send_digest(run, cutover, keys))
                .collect();
            let outcomes: Vec<Result<bool, DigestFailure>> = stream::iter(sends)
                .buffer_unordered(CONCURRENT_DIGESTS)
                .collect()
                .await;
            for outcome in outcomes {
                match outcome {
                    Ok(true) => out.sent += 1,
                    Ok(false) => {}
                    Err(f) => out.failed.push(f),
                }
            }
        }
        Ok(out)
    }

    /// [`Coordinator::send_digests`], whose failures are recorded for the
    /// sweep on the accounts they hold notices of (see `mail_retry`), never
    /// the caller's error: a report or an intake does not wait for SES.
    pub(super) async fn send_digests_or_leave(&self, run: &str) {
        let failed = match self.send_digests(run).await {
            Ok(d) => {
                if d.sent > 0 {
                    tracing::info!(run_id = %run, digests = d.sent, "owner digests sent");
                }
                d.failed
            }
            Err(e) => {
                tracing::warn!(run_id = %run, error = %e, "owner digests not read; the sweep sends them");
                return;
            }
        };
        if let Err(e) = self.record_digest_failures(run, &failed).await {
            tracing::error!(run_id = %run, error = %e, "a digest failure was not recorded; the sweep finds its parts");
        }
    }

    /// Records each account of `failed` as waiting for mail, one attempt
    /// each, however many failed digests hold it.
    pub(super) async fn record_digest_failures(
        &self,
        run: &str,
        failed: &[DigestFailure],
    ) -> Result<(), CoordinatorError> {
        let mut done: Vec<&str> = Vec::new();
        for f in failed {
            for account in &f.accounts {
                if done.contains(&account.as_str()) {
                    continue;
                }
                done.push(account);
                self.mail_pending(run, account, &f.replay()).await?;
            }
        }
        Ok(())
    }

    /// One owner's digest from its parts `keys`: `true` when an email went
    /// out.
    async fn send_digest(
        &self,
        run: &str,
        cutover_on_use: bool,
        keys: &[String],
    ) -> Result<bool, DigestFailure> {
        let mut accounts: Vec<String> = Vec::new();
        self.send_digest_of(run, cutover_on_use, keys, &mut accounts)
            .await
            .map_err(|error| DigestFailure { accounts, error })
    }

    async fn send_digest_of(
        &self,
        run: &str,
        cutover_on_use: bool,
        keys: &[String],
        accounts: &mut Vec<String>,
    ) -> Result<bool, CoordinatorError> {
        let mut to = None;
        let mut read: Vec<(String, Vec<u8>)> = Vec::with_capacity(keys.len());
        let mut seen = std::collections::HashSet::new();
        let mut items: Vec<(String, DigestItem)> = Vec::new();
        for key in keys {
            let Some(bytes) = self.store.get(key).await? else {
                continue;
            };
            let part: DigestPart = match serde_json::from_slice(&bytes) {
                Ok(p) => p,
                Err(e) => {
                    // Written by the coordinator itself: a part that does
                    // not read never will.
                    tracing::error!(key = %key, error = %e, "digest part unreadable; dropped");
                    continue;
                }
            };
            read.push((key.clone(), bytes));
            to.get_or_insert(part.to);
            for item in part.items {
                if !accounts.contains(&item.account_id) {
                    accounts.push(item.account_id.clone());
                }
                let ledger = store::ledger_key(
                    &item.account_id,
                    &item.user_name,
                    item.notice.key_id(),
                    &notice_ledger_kind(&item.notice),
                );
                if seen.insert(ledger.clone()) {
                    items.push((ledger, item));
                }
            }
        }
        let Some(to) = to else {
            return self.drop_parts(keys).await.map(|()| false);
        };
        // Every claim this digest holds is released on any failure below,
        // so that a notice is never left claimed and unsent but by a
        // coordinator stopped in between.
        let mut claimed: Vec<(String, DigestItem)> = Vec::new();
        for (ledger, item) in items {
            match self
                .claim(&ledger, run.as_bytes().to_vec(), "text/plain")
                .await
            {
                Ok(true) => claimed.push((ledger, item)),
                Ok(false) => {}
                Err(e) => {
                    self.release(&claimed).await;
                    return Err(e);
                }
            }
        }
        if claimed.is_empty() {
            return self.drop_parts(keys).await.map(|()| false);
        }
        let ctx = DigestContext {
            sender: self.config.sender.clone(),
            to,
            now: OffsetDateTime::now_utc(),
            run_id: run.to_string(),
            cutover_on_use,
        };
        let notices: Vec<DigestItem> = claimed.iter().map(|(_, i)| i.clone()).collect();
        let email = match digest::digest_email(&ctx, &notices) {
            Ok(m) => m,
            Err(e) => {
                // A bad address never fixes itself: log, keep the claims.
                tracing::error!(run_id = %run, error = %e, "digest not sendable");
                return self.drop_parts(keys).await.map(|()| false);
            }
        };
        if let Err(e) = self.send_email(&email).await {
            self.release(&claimed).await;
            // Another sender that found these notices claimed (by this
            // digest, in flight) may have dropped the parts: they are put
            // back, so the notices wait for the next attempt.
            for (key, bytes) in read {
                if let Err(p) = self.store.put(&key, bytes, "application/json").await {
                    tracing::error!(key = %key, error = %p, "a digest part was not put back");
                }
            }
            return Err(e);
        }
        tracing::info!(run_id = %run, notices = claimed.len(), "owner digest sent");
        self.drop_parts(keys).await?;
        Ok(true)
    }

    /// Releases the ledger claims of a digest that was not sent, each one
    /// even if another's release fails (that one stays claimed: logged).
    async fn release(&self, claimed: &[(String, DigestItem)]) {
        for (ledger, _) in claimed {
            if let Err(e) = self.store.delete(ledger).await {
                tracing::error!(ledger = %ledger, error = %e, "a digest's claim was not released; its notice is not sent");
            }
        }
    }

    async fn drop_parts(&self, keys: &[String]) -> Result<(), CoordinatorError> {
        for key in keys {
            self.store.delete(key).await?;
        }
        Ok(())
    }

    /// Drops the parts of `account` in `run`: its mail was given up on
    /// (see `mail_retry`), so no sweep tries its notices again.
    pub(super) async fn drop_account_parts(
        &self,
        run: &str,
        account: &str,
    ) -> Result<(), CoordinatorError> {
        let mine = format!("/{account}-");
        let keys: Vec<String> = self
            .store
            .list(&run_prefix(run))
            .await?
            .into_iter()
            .filter(|k| k.contains(&mine))
            .collect();
        self.drop_parts(&keys).await
    }

    /// The sweep's part: sends the digests of every finalized run that
    /// still has parts (a finalize that could not even list them leaves
    /// them), but those of `skip` (runs whose accounts the sweep took up
    /// just before, digests included), recording failures as
    /// [`Coordinator::send_digests_or_leave`] does. One run's trouble (its
    /// manifest gone) does not stop the others'. Returns the runs that had
    /// digests to send and sent them all (parts whose notices were all
    /// sent already are only removed).
    pub(super) async fn resend_digests(
        &self,
        skip: &[&str],
    ) -> Result<Vec<String>, CoordinatorError> {
        let mut runs: Vec<String> = self
            .store
            .list(DIGESTS_PREFIX)
            .await?
            .iter()
            .filter_map(|k| k.strip_prefix(DIGESTS_PREFIX)?.split_once('/'))
            .map(|(run, _)| run.to_string())
            .collect();
        runs.dedup();
        let mut sent = Vec::new();
        for run in runs {
            if skip.contains(&run.as_str()) {
                continue;
            }
            let digests = async {
                if !self.store.exists(&store::final_key(&run)).await? {
                    // Finalize sends them, with the run's last results.
                    return Ok(None);
                }
                self.send_digests(&run).await.map(Some)
            };
            match digests.await {
                Ok(None) => {}
                Ok(Some(d)) => {
                    if d.sent > 0 && d.failed.is_empty() {
                        sent.push(format!("{run}/digests"));
                    }
                    self.record_digest_failures(&run, &d.failed).await?;
                }
                Err(e) => {
                    tracing::error!(run_id = %run, error = %e, "the run's digests were not sent; the next sweep tries again")
                }
            }
        }
        Ok(sent)
    }
}

/// What [`Coordinator::send_digests`] did.
#[derive(Debug, Default)]
pub(super) struct Digests {
    pub sent: usize,
    pub failed: Vec<DigestFailure>,
}

/// A digest that did not go out: the accounts whose notices it holds, and
/// why.
#[derive(Debug)]
pub(super) struct DigestFailure {
    pub accounts: Vec<String>,
    pub error: CoordinatorError,
}

impl DigestFailure {
    /// The failure again, for one more account it holds: a deferral to
    /// SES's quota stays one (it is not a failed attempt).
    pub fn replay(&self) -> CoordinatorError {
        match &self.error {
            CoordinatorError::MailDeferred { to, reason } => CoordinatorError::MailDeferred {
                to: to.clone(),
                reason: reason.clone(),
            },
            other => CoordinatorError::DigestFailed(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_is_one_whatever_the_case_and_spaces_of_the_address() {
        assert_eq!(
            owner_token("Alice@Example.com"),
            owner_token(" alice@example.com")
        );
        assert_ne!(
            owner_token("alice@example.com"),
            owner_token("bob@example.com")
        );
        assert!(same_owner("Alice@Example.com", "alice@example.com "));
        assert!(!same_owner("alice@example.com", "alice@example.org"));
        let key = format!(
            "{}{}/111122223333-00.json",
            run_prefix("r1"),
            owner_token("a@b.co")
        );
        assert_eq!(owner_of("r1", &key), Some(owner_token("a@b.co")));
        assert_eq!(owner_of("r2", &key), None);
    }
}
