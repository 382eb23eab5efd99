//! Intake: one result message in. Validates it against the run's manifest
//! (rejecting what is forged or malformed), stores its part, reassembles the
//! account's result once complete, has the owners notified and finalizes the
//! run when every account has reported. Kept apart so the trust boundary
//! (what an agent may send) is read in one place.

use super::{Coordinator, CoordinatorError, Intake, Rejection};
use keyfleet_protocol::parts::PartsError;
use keyfleet_protocol::{decode, encode, AccountResult, RunManifest, Token};
use keyfleet_reports::store::{self, Put};

/// What the stored parts of an account add up to.
enum Assembly {
    /// Not every part of any attempt is stored yet.
    Incomplete,
    /// Every complete attempt whose parts fit together, earliest first;
    /// never empty.
    Complete(Vec<AccountResult>),
    Broken(PartsError),
}

/// Written once an account's result has had its owners mailed (or its
/// mail recorded as waiting): `runs/<run>/notified/<account>`.
fn notified_key(run: &str, account: &str) -> String {
    format!("{}{run}/notified/{account}", store::RUNS_PREFIX)
}

impl Coordinator {
    /// The coordinator's one doorway for results: one message in (its body
    /// and how many times it has been delivered), what became of it out.
    /// The Lambda's SQS handler, `keyfleet run --local` and the tests all
    /// call it. `Ok` means the message is done with (taken in, a duplicate,
    /// or rejected for good); `Err` is an infrastructure failure the
    /// message should come back for.
    /// The body is bytes: SQS only carries UTF-8, but nothing here depends
    /// on it, and a non-UTF-8 body is refused as malformed like any other.
    pub async fn intake(
        &self,
        body: impl AsRef<[u8]>,
        receive_count: u32,
    ) -> Result<Intake, CoordinatorError> {
        use tracing::Instrument;
        self.intake_inner(body.as_ref())
            .instrument(tracing::info_span!("intake", receive_count))
            .await
    }

    async fn intake_inner(&self, body: &[u8]) -> Result<Intake, CoordinatorError> {
        let result: AccountResult = match decode(body) {
            Ok(r) => r,
            Err(e) => return Ok(self.reject(Rejection::Malformed(e.to_string())).await),
        };
        let run = result.run_id.clone();
        let account = result.account_id.clone();
        let Some(manifest) = self.manifest(&run).await? else {
            return Ok(self.reject(Rejection::UnknownRun(run)).await);
        };
        let Some(expected) = manifest.accounts.iter().find(|a| a.account_id == account) else {
            return Ok(self
                .reject(Rejection::UnknownAccount { run, account })
                .await);
        };
        if !result.token.matches_hash(&expected.token_sha256) {
            return Ok(self.reject(Rejection::BadToken { run, account }).await);
        }
        // Parts are stored per delivery attempt (the agent's start time), so
        // a retried job's parts are never mixed with an earlier attempt's.
        let attempt = result.started_at.unix_timestamp_nanos().to_string();
        let key = store::part_key(&run, &account, &attempt, result.part, result.parts);
        // Whether the report was written before this part arrived: a late
        // result is still taken (its owners must get their keys) and
        // alerted, since the report lists the account as missing.
        let late = self.store.exists(&store::final_key(&run)).await?;
        // Stored without the token (see `Token::stored`).
        let stored = AccountResult {
            token: Token::stored(),
            ..result
        };
        let duplicate = self
            .store
            .put_new(&key, encode(&stored), "application/json")
            .await?
            == Put::AlreadyExists;
        if duplicate {
            tracing::info!(run_id = %run, account = %account, part = stored.part, "duplicate result part; not stored again");
        }
        // Even for a duplicate, carry on: if an earlier intake of this part
        // stored it and then failed (SES or S3 down), this retry is what
        // sends the owners' emails and finalizes. The ledger and the finalize
        // marker make repeating these steps harmless.
        let attempts = match self.assemble(&run, &account).await? {
            Assembly::Complete(attempts) => Some(attempts),
            Assembly::Incomplete => None,
            Assembly::Broken(e) => {
                // The parts stay stored, as evidence; the account is
                // reported missing. Nothing of it will be mailed: the run
                // need not wait for it (see `all_reported`).
                self.store
                    .put(&notified_key(&run, &account), Vec::new(), "text/plain")
                    .await?;
                return Ok(self
                    .reject(Rejection::PartsDoNotFit {
                        run,
                        account,
                        reason: e.to_string(),
                    })
                    .await);
            }
        };
        let Some(attempts) = attempts else {
            return Ok(if duplicate {
                Intake::Duplicate {
                    run_id: run,
                    account_id: account,
                }
            } else {
                Intake::Accepted {
                    run_id: run,
                    account_id: account,
                    account_complete: false,
                    finalized: false,
                }
            });
        };
        // Every attempt's owners, not only the first's: a retried job's
        // result carries keys of users the first attempt deferred.
        // Mail that fails is not a reason to receive the result again (it
        // would end in the DLQ with its emails unsent): the sweep sends it.
        // A key ring that could not be read is recorded for the sweep too,
        // and also fails the message: it is no mail failure but an outage
        // that a redelivery minutes later usually outlives, while the sweep
        // comes an hour later.
        if let Err(e) = self.notify_attempts(&manifest, &attempts).await {
            self.mail_pending(&run, &account, &e).await?;
            if matches!(e, CoordinatorError::KeyRing { .. }) {
                return Err(e);
            }
        }
        // The account's notices are queued for the run's digests (or its
        // mail waits for the sweep): the run may end.
        self.store
            .put(&notified_key(&run, &account), Vec::new(), "text/plain")
            .await?;
        // A run finalized before this result, or while it was being taken
        // in (the deadline sweep), sent its digests already: this result's
        // notices go in digests of their own, now.
        if late || self.store.exists(&store::final_key(&run)).await? {
            self.send_digests_or_leave(&run).await;
        }
        if late && !duplicate {
            let whole = &attempts[0];
            let error = whole
                .error
                .as_deref()
                .map(|e| format!(", error: {e}"))
                .unwrap_or_default();
            let text = format!(
                "Account {account} reported after run {run} was finalized; its owners were mailed, the run's report lists it as missing. Status: {:?}{error}",
                whole.status
            );
            self.alert(
                &format!("keyfleet run {run}: result after the report"),
                &text,
            )
            .await;
        }
        let finalized = if self.all_reported(&manifest).await? {
            self.finalize(&run).await?.is_some()
        } else {
            false
        };
        if duplicate {
            return Ok(Intake::Duplicate {
                run_id: run,
                account_id: account,
            });
        }
        Ok(Intake::Accepted {
            run_id: run,
            account_id: account,
            account_complete: true,
            finalized,
        })
    }

    async fn reject(&self, why: Rejection) -> Intake {
        tracing::error!(reason = %why, "result rejected");
        self.alert(
            "keyfleet: result rejected",
            &format!("A result message was rejected: {why}"),
        )
        .await;
        Intake::Rejected(why)
    }

    /// The reassembled result of an account, once all the parts of one
    /// delivery attempt are stored (the earliest complete attempt that fits
    /// together wins: it is what the report shows). Parts that do not fit
    /// together count as no result.
    pub async fn account_result(
        &self,
        run: &str,
        account: &str,
    ) -> Result<Option<AccountResult>, CoordinatorError> {
        Ok(self
            .account_attempts(run, account)
            .await?
            .into_iter()
            .next())
    }

    /// Every complete attempt of an account whose parts fit together,
    /// earliest first (empty when there is none). Owner mail is sent from
    /// all of them: each attempt's new keys exist in IAM, and only its own
    /// result carries their boxes.
    pub(super) async fn account_attempts(
        &self,
        run: &str,
        account: &str,
    ) -> Result<Vec<AccountResult>, CoordinatorError> {
        Ok(match self.assemble(run, account).await? {
            Assembly::Complete(attempts) => attempts,
            Assembly::Incomplete => Vec::new(),
            Assembly::Broken(e) => {
                tracing::error!(run_id = %run, account = %account, error = %e, "result parts do not fit together");
                Vec::new()
            }
        })
    }

    /// Every complete attempt whose parts fit together, earliest first; the
    /// first misfit when no complete attempt fits (so parts a compromised
    /// agent forged for its own account never hide a genuine attempt).
    async fn assemble(&self, run: &str, account: &str) -> Result<Assembly, CoordinatorError> {
        let prefix = store::account_results_prefix(run, account);
        let keys = self.store.list(&prefix).await?;
        let mut misfit = None;
        let mut fitting = Vec::new();
        for (_, complete) in store::complete_attempts(&keys) {
            let mut all = Vec::with_capacity(complete.len());
            for k in &complete {
                if let Some(b) = self.store.get(k).await? {
                    match decode::<AccountResult>(&b) {
                        Ok(r) => all.push(r),
                        Err(e) => tracing::error!(key = %k, error = %e, "stored part unreadable"),
                    }
                }
            }
            match keyfleet_protocol::parts::reassemble(all) {
                Ok(r) => fitting.push(r),
                Err(e) => {
                    misfit.get_or_insert(e);
                }
            }
        }
        Ok(match misfit {
            _ if !fitting.is_empty() => Assembly::Complete(fitting),
            Some(e) => Assembly::Broken(e),
            None => Assembly::Incomplete,
        })
    }

    /// Whether every expected account has reported and had its owners
    /// mailed: the run's digests go out at its end (see `digests`), so an
    /// account whose intake is still queueing its notices holds it back,
    /// or they would miss the digest.
    async fn all_reported(&self, manifest: &RunManifest) -> Result<bool, CoordinatorError> {
        let keys = self
            .store
            .list(&store::results_prefix(&manifest.run_id))
            .await?;
        let reported = keyfleet_reports::read::reported_accounts(manifest, &keys);
        if !keyfleet_reports::read::expected_accounts(manifest).all(|a| reported.contains(a)) {
            return Ok(false);
        }
        let prefix = notified_key(&manifest.run_id, "");
        let notified: std::collections::BTreeSet<String> = self
            .store
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect();
        Ok(keyfleet_reports::read::expected_accounts(manifest).all(|a| notified.contains(a)))
    }
}
