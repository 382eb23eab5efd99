//! Digests: one email per owner per run with every notice the run has for
//! them (see [`crate::mail::digest`]), across all their users and accounts.
//!
//! **Queued, then sent at the run's end.** An account's notices are known
//! when its result comes in, but an owner's other accounts may report
//! later, so intake only queues them: one part per owner and result,
//! `digests/<run>/<owner>/<account>-<hash>.json` (`<owner>` a hash of the
//! lowercased address, `<hash>` one of the part's content, so that two
//! attempts of one account never overwrite each other and a retried intake
//! rewrites the same part). Finalize sends the digests before it builds the
//! report, so a finalized run's owners have been mailed (or their mail is
//! waiting for a retry); a result that comes in after the run was
//! finalized has its owners' digests sent at once. Each owner's digest
//! reads that owner's parts only: memory grows with one owner's notices,
//! never with the run.
//!
//! **Exactly once per notice.** Every notice keeps its own ledger entry
//! (account, user, key, kind), as when each had its own email: a digest
//! claims the entries of its notices (create-if-absent puts), sends only
//! the notices it claimed, releases them if SES refuses the email, and
//! deletes the owner's parts once sent. A retried finalize or intake finds
//! the notices claimed and sends nothing; a notice a later run repeats
//! (still in use, run after run) is not sent again; a reactivated key's
//! fresh notices are released at intake, as before. What a digest claims
//! and then cannot send because the coordinator stopped in between is lost,
//! as any claimed email is (see `notify`): never sent twice.
//!
//! **Retries.** A digest that cannot be sent keeps its parts and its
//! notices unclaimed, and each account it holds notices of is recorded as
//! waiting for mail, as an account whose key email failed is (see
//! `mail_retry`): the report lists it, and the hourly sweep takes it up
//! again, counting attempts and deferrals to SES's quota the same way and
//! giving up with an alert at the same limit. The sweep also sends the
//! digests of any finalized run that still has parts.
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
        let sends: Vec<_> = owners
            .iter()
            .map(|(_, keys)| self.send_digest(run, cutover, keys))
            .collect();
        let outcomes: Vec<Result<bool, DigestFailure>> = stream::iter(sends)
            .buffer_unordered(CONCURRENT_DIGESTS)
            .collect()
            .await;
        let mut out = Digests::default();
        for outcome in outcomes {
            match outcome {
                Ok(true) => out.sent += 1,
                Ok(false) => {}
                Err(f) => out.failed.push(f),
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
        if let Err(e) = self.record_digest_failures(run, &failed, None).await {
            tracing::error!(run_id = %run, error = %e, "a digest failure was not recorded; the sweep finds its parts");
        }
    }

    /// Records each account of `failed` as waiting for mail, but `except`
    /// (whose caller counts the attempt itself).
    pub(super) async fn record_digest_failures(
        &self,
        run: &str,
        failed: &[DigestFailure],
        except: Option<&str>,
    ) -> Result<(), CoordinatorError> {
        let mut done: Vec<&str> = Vec::new();
        for f in failed {
            for account in &f.accounts {
                if Some(account.as_str()) == except || done.contains(&account.as_str()) {
                    continue;
                }
                done.push(account);
                self.mail_pending(run, account, &f.error).await?;
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
                if !items.iter().any(|(l, _)| *l == ledger) {
                    items.push((ledger, item));
                }
            }
        }
        let Some(to) = to else {
            return self.drop_parts(keys).await.map(|()| false);
        };
        let mut claimed = Vec::new();
        for (ledger, item) in items {
            if self
                .claim(&ledger, run.as_bytes().to_vec(), "text/plain")
                .await?
            {
                claimed.push((ledger, item));
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
            for (ledger, _) in &claimed {
                self.store.delete(ledger).await?;
            }
            return Err(e);
        }
        tracing::info!(run_id = %run, notices = claimed.len(), "owner digest sent");
        self.drop_parts(keys).await?;
        Ok(true)
    }

    async fn drop_parts(&self, keys: &[String]) -> Result<(), CoordinatorError> {
        for key in keys {
            self.store.delete(key).await?;
        }
        Ok(())
    }

    /// The sweep's part: sends the digests of every finalized run that
    /// still has parts, but those of `skip` (whose accounts the sweep just
    /// took up, digests included) (a finalize that could not even list them leaves
    /// them so), recording failures as [`Coordinator::send_digests_or_leave`]
    /// does. Returns the runs that had digests to send and sent them all
    /// (parts whose notices were all sent already are only removed).
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
            if !self.store.exists(&store::final_key(&run)).await? {
                // Finalize sends them, with the run's last results.
                continue;
            }
            let digests = self.send_digests(&run).await?;
            if digests.sent > 0 && digests.failed.is_empty() {
                sent.push(format!("{run}/digests"));
            }
            self.record_digest_failures(&run, &digests.failed, None)
                .await?;
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
