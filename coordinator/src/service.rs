//! The coordinator's operations: start a run, take results in, notify
//! owners, finalize, sweep. Built once per process with its clients.
//!
//! Jobs go out with one SendMessage per account (SQS batches must target a
//! single queue, and every account has its own), sixteen at a time. An
//! account whose `keyfleet-jobs` queue does not exist has no agent: it is
//! recorded as such in the manifest, not treated as a crash.
//!
//! Intake separates the two kinds of failure: a result that is forged or
//! malformed is rejected (logged, alerted, and the message consumed: retrying
//! it cannot help), while an infrastructure failure (S3, SES) is returned as
//! an error so the SQS message is retried. An owner address that the
//! deliverability rule refuses under the run's policy (the manifest's, with
//! its `owner_domains`) is neither: nothing is sent to it, it is recorded
//! and alerted once, the report's row of the user says why, and the rest of
//! the result is taken in as usual.

use crate::mail::{self, MailContext, NewKeyInfo};
use crate::org::{self, OrgError};
use crate::outcome::{self, RunFailure};
use crate::render;
use crate::store::{self, Put, RunStore, StoreError};
use crate::zipbox;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
use futures::stream::{self, StreamExt};
use keyfleet_protocol::report::{aggregate, RunReport};
use keyfleet_protocol::{
    decode, encode, AccountResult, Action, Dispatch, Job, JobMode, ManifestAccount, Notice,
    Outcome, Policy, PrivateKey, ProtocolError, RunManifest, Token, VERSION,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use time::OffsetDateTime;

/// Settings of a coordinator deployment.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub region: String,
    pub report_bucket: String,
    pub results_queue_url: String,
    pub alerts_topic_arn: Option<String>,
    pub sender: String,
    pub security_team: Vec<String>,
    pub ses_configuration_set: Option<String>,
    pub exclude_accounts: Vec<String>,
    pub exclude_ous: Vec<String>,
    pub policy: Policy,
    /// Name of the member accounts' jobs queue.
    pub jobs_queue_name: String,
    /// How long agents have before a run is finalized without them.
    pub deadline: time::Duration,
}

impl CoordinatorConfig {
    /// The production queue URL of an account's agent.
    pub fn jobs_queue_url(&self, account: &str) -> String {
        format!(
            "https://sqs.{}.amazonaws.com/{account}/{}",
            self.region, self.jobs_queue_name
        )
    }
}

/// The clients the coordinator needs, built once.
#[derive(Debug, Clone)]
pub struct CoordinatorClients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub ses: aws_sdk_sesv2::Client,
    pub sns: aws_sdk_sns::Client,
    /// Organizations, with the org-reader role's credentials.
    pub org: aws_sdk_organizations::Client,
}

/// Everything that can stop an operation.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Org(#[from] OrgError),
    #[error("run {0} has no manifest")]
    UnknownRun(String),
    #[error("manifest of run {run} is unreadable: {error}")]
    Manifest { run: String, error: ProtocolError },
    #[error("SES SendEmail to {to} failed: {message}")]
    Ses { to: String, message: String },
    #[error("building the email for {user} failed: {message}")]
    Mail { user: String, message: String },
    #[error("invalid policy: {0}")]
    Policy(String),
    #[error("invalid request: {0}")]
    Request(String),
    /// The run was recorded, reported and alerted, but had no account to
    /// run on.
    #[error("run {run_id} failed: {description}; report: {report_url}")]
    NoAccountSelected {
        run_id: String,
        description: String,
        report_url: String,
    },
}

/// Why a result was refused. Never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed result: {0}")]
    Malformed(String),
    #[error("result for unknown run {0}")]
    UnknownRun(String),
    #[error("result from account {account}, which run {run} did not send a job to")]
    UnknownAccount { run: String, account: String },
    #[error(
        "result for account {account} in run {run} carries a token that does not match the job's"
    )]
    BadToken { run: String, account: String },
}

/// What intake did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    /// Stored; the account is complete when `account_complete`.
    Accepted {
        run_id: String,
        account_id: String,
        account_complete: bool,
        /// The run was finalized by this message.
        finalized: bool,
    },
    /// A copy of a part already stored: dropped.
    Duplicate { run_id: String, account_id: String },
    /// Refused (logged and alerted).
    Rejected(Rejection),
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub dry_run: bool,
    /// Only these accounts (`None` = the whole organization).
    pub accounts: Option<Vec<String>>,
    pub mode: JobMode,
    /// Evaluate as of this instant (dry runs only).
    pub as_of: Option<OffsetDateTime>,
    /// Overrides the configured policy for this run.
    pub policy: Option<Policy>,
}

/// A coordinator: configuration, clients and the private key, built once.
#[derive(Clone)]
pub struct Coordinator {
    pub config: CoordinatorConfig,
    clients: CoordinatorClients,
    store: RunStore,
    key: Arc<PrivateKey>,
}

fn new_run_id(now: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    format!(
        "{}-{}",
        now.format(&fmt).unwrap_or_default(),
        &Token::generate().0[..6]
    )
}

fn ses_message<E, R>(e: &aws_sdk_sesv2::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sesv2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_sesv2::error::ProvideErrorMetadata;
    match e.code() {
        Some(c) => format!("{c}: {}", e.message().unwrap_or("")),
        None => aws_sdk_sesv2::error::DisplayErrorContext(e).to_string(),
    }
}

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
    pub fn new(config: CoordinatorConfig, clients: CoordinatorClients, key: PrivateKey) -> Self {
        let store = RunStore::new(clients.s3.clone(), config.report_bucket.clone());
        Coordinator {
            config,
            clients,
            store,
            key: Arc::new(key),
        }
    }

    pub fn store(&self) -> &RunStore {
        &self.store
    }

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
        if let JobMode::Rotate { user, key_id, .. } = &req.mode {
            if !keyfleet_protocol::is_user_name(user) {
                return Err(CoordinatorError::Request(format!(
                    "user `{}` is not a valid IAM user name",
                    user.escape_debug()
                )));
            }
            if let Some(k) = key_id
                .as_deref()
                .filter(|k| !keyfleet_protocol::is_access_key_id(k))
            {
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
        self.store
            .put(
                &store::manifest_key(&run_id),
                encode(&manifest),
                "application/json",
            )
            .await?;

        let jobs: Vec<Job> = selected
            .iter()
            .zip(tokens)
            .map(|(a, token)| Job {
                v: VERSION,
                run_id: run_id.clone(),
                account_id: a.id.clone(),
                token,
                issued_at: now,
                deadline: manifest.deadline,
                policy: policy.clone(),
                dry_run: req.dry_run,
                as_of: req.as_of,
                mode: req.mode.clone(),
                results_queue_url: self.config.results_queue_url.clone(),
            })
            .collect();
        let outcomes: Vec<(String, Dispatch)> = stream::iter(jobs)
            .map(|job| async move {
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
        self.store
            .put(
                &store::manifest_key(&run_id),
                encode(&manifest),
                "application/json",
            )
            .await?;
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
        let url = self.config.jobs_queue_url(&job.account_id);
        let body = String::from_utf8(encode(job)).expect("serde_json writes UTF-8");
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

    async fn manifest(&self, run_id: &str) -> Result<Option<RunManifest>, CoordinatorError> {
        let Some(bytes) = self.store.get(&store::manifest_key(run_id)).await? else {
            return Ok(None);
        };
        decode(&bytes)
            .map(Some)
            .map_err(|error| CoordinatorError::Manifest {
                run: run_id.to_string(),
                error,
            })
    }

    /// Takes one result message in.
    pub async fn intake(&self, body: &str) -> Result<Intake, CoordinatorError> {
        let result: AccountResult = match decode(body.as_bytes()) {
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
        let duplicate = self
            .store
            .put_new(&key, encode(&result), "application/json")
            .await?
            == Put::AlreadyExists;
        if duplicate {
            tracing::info!(run_id = %run, account = %account, part = result.part, "duplicate result part; not stored again");
        }
        // Even for a duplicate, carry on: if an earlier intake of this part
        // stored it and then failed (SES or S3 down), this retry is what
        // sends the owners' emails and finalizes. The ledger and the finalize
        // marker make repeating these steps harmless.
        let Some(whole) = self.account_result(&run, &account).await? else {
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
        self.notify_owners(&manifest, &whole).await?;
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
    /// delivery attempt are stored (the earliest complete attempt wins).
    pub async fn account_result(
        &self,
        run: &str,
        account: &str,
    ) -> Result<Option<AccountResult>, CoordinatorError> {
        let prefix = format!("runs/{run}/results/{account}/");
        let keys = self.store.list(&prefix).await?;
        let Some((_, complete)) = store::complete_attempts(&keys).into_iter().next() else {
            return Ok(None);
        };
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
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                // Parts that disagree cannot be trusted; the account is
                // reported missing at the deadline and the reason logged.
                tracing::error!(run_id = %run, account = %account, error = %e, "result parts do not fit together");
                Ok(None)
            }
        }
    }

    async fn all_reported(&self, manifest: &RunManifest) -> Result<bool, CoordinatorError> {
        let keys = self
            .store
            .list(&format!("runs/{}/results/", manifest.run_id))
            .await?;
        let mut by_account: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for k in &keys {
            let rest = &k[format!("runs/{}/results/", manifest.run_id).len()..];
            if let Some((account, _)) = rest.split_once('/') {
                by_account.entry(account).or_default().push(k.clone());
            }
        }
        Ok(manifest
            .accounts
            .iter()
            .filter(|a| a.dispatch == Dispatch::Sent)
            .all(|a| {
                by_account
                    .get(a.account_id.as_str())
                    .is_some_and(|ks| !store::complete_attempts(ks).is_empty())
            }))
    }

    /// Sends the owners of one account their emails, each exactly once.
    /// Users are independent, so several are served at once; one user's
    /// emails keep their order (key file, password, notices).
    async fn notify_owners(
        &self,
        manifest: &RunManifest,
        result: &AccountResult,
    ) -> Result<(), CoordinatorError> {
        if result.dry_run {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        let outcomes: Vec<Result<(), CoordinatorError>> = stream::iter(&result.users)
            .map(|user| self.notify_user(manifest, result, user, now))
            .buffer_unordered(8)
            .collect()
            .await;
        outcomes.into_iter().collect()
    }

    async fn notify_user(
        &self,
        manifest: &RunManifest,
        result: &AccountResult,
        user: &keyfleet_protocol::UserReport,
        now: OffsetDateTime,
    ) -> Result<(), CoordinatorError> {
        let Some(to) = user.email.clone() else {
            return Ok(());
        };
        if let Some(why) = mail::owner_refusal(&manifest.policy, result, user) {
            return self.refuse_owner(manifest, result, user, &why).await;
        }
        let ctx = MailContext {
            sender: self.config.sender.clone(),
            account_id: result.account_id.clone(),
            account_alias: result.account_alias.clone(),
            user_name: user.user_name.clone(),
            to,
            now,
            run_id: result.run_id.clone(),
        };
        if manifest.policy.delivery.by_email() {
            for sealed in result
                .sealed
                .iter()
                .filter(|s| s.user_name == user.user_name)
            {
                let ledger = store::ledger_key(
                    &result.account_id,
                    &user.user_name,
                    &sealed.access_key_id,
                    "new_key",
                );
                if self
                    .store
                    .put_new(&ledger, manifest.run_id.clone().into_bytes(), "text/plain")
                    .await?
                    == Put::AlreadyExists
                {
                    continue;
                }
                if let Err(e) = self.deliver_key(&ctx, user, result, sealed).await {
                    // Release the claim so the retry sends it.
                    self.store.delete(&ledger).await?;
                    return Err(e);
                }
            }
        }
        for rec in &user.actions {
            let (Action::Notify { notice }, Outcome::Done { .. }) = (&rec.action, &rec.result)
            else {
                continue;
            };
            let ledger = store::ledger_key(
                &result.account_id,
                &user.user_name,
                notice.key_id(),
                notice.kind(),
            );
            if self
                .store
                .put_new(&ledger, manifest.run_id.clone().into_bytes(), "text/plain")
                .await?
                == Put::AlreadyExists
            {
                continue;
            }
            let sent = match mail::notice_email(&ctx, notice) {
                Ok(m) => self.send_email(&m).await,
                Err(e) => {
                    // A bad address never fixes itself: log, keep the claim.
                    tracing::error!(user = %user.user_name, error = %e, "notice not sendable");
                    Ok(())
                }
            };
            if let Err(e) = sent {
                self.store.delete(&ledger).await?;
                return Err(e);
            }
        }
        Ok(())
    }

    /// An owner the deliverability rule refuses (under the run's policy):
    /// nothing is sent, since retrying cannot fix an address. It is recorded
    /// once per run, account and user, and alerted once; the report's row of
    /// the user says it (see [`Coordinator::finalize`]).
    async fn refuse_owner(
        &self,
        manifest: &RunManifest,
        result: &AccountResult,
        user: &keyfleet_protocol::UserReport,
        why: &keyfleet_protocol::AddressError,
    ) -> Result<(), CoordinatorError> {
        let text = mail::refusal_text(why);
        let key = store::refusal_key(&manifest.run_id, &result.account_id, &user.user_name);
        if self
            .store
            .put_new(&key, text.clone().into_bytes(), "text/plain")
            .await?
            == Put::AlreadyExists
        {
            return Ok(());
        }
        tracing::error!(run_id = %manifest.run_id, account = %result.account_id, user = %user.user_name, reason = %why, "owner address not deliverable; nothing sent");
        self.alert(
            &format!(
                "keyfleet run {}: owner address not deliverable",
                manifest.run_id
            ),
            &format!(
                "Run {}, account {}, user {}: {text}. Correct the user's `{}` tag; the run's report lists the user.",
                manifest.run_id, result.account_id, user.user_name, manifest.policy.email_tag
            ),
        )
        .await;
        Ok(())
    }

    async fn deliver_key(
        &self,
        ctx: &MailContext,
        user: &keyfleet_protocol::UserReport,
        result: &AccountResult,
        sealed: &keyfleet_protocol::SealedCredential,
    ) -> Result<(), CoordinatorError> {
        let mail_err = |m: String| CoordinatorError::Mail {
            user: user.user_name.clone(),
            message: m,
        };
        let cred = keyfleet_protocol::seal::open(&self.key, &result.account_id, sealed)
            .map_err(|e| mail_err(e.to_string()))?;
        let password = zipbox::generate_password();
        let (zip_name, zip) =
            zipbox::credentials_zip(&cred, &password, result.account_alias.as_deref())
                .map_err(|e| mail_err(e.to_string()))?;
        let (old, on) = user
            .actions
            .iter()
            .find_map(|a| match &a.action {
                Action::Notify {
                    notice: Notice::DeactivationScheduled { key_id, on, .. },
                } => Some((Some(key_id.as_str()), Some(*on))),
                _ => None,
            })
            .unwrap_or((None, None));
        let info = NewKeyInfo {
            access_key_id: cred.access_key_id.clone(),
            created: cred.created,
        };
        let m1 = mail::new_key_email(ctx, &info, &zip_name, &zip, on, old)
            .map_err(|e| mail_err(e.to_string()))?;
        let m2 = mail::password_email(ctx, &cred.access_key_id, &password)
            .map_err(|e| mail_err(e.to_string()))?;
        self.send_email(&m1).await?;
        self.send_email(&m2).await?;
        tracing::info!(account = %result.account_id, user = %user.user_name, key = %mail::short_key(&cred.access_key_id), "new key delivered by email");
        Ok(())
    }

    async fn send_email(&self, m: &mail::Email) -> Result<(), CoordinatorError> {
        let raw = RawMessage::builder()
            .data(Blob::new(m.raw.clone()))
            .build()
            .map_err(|e| CoordinatorError::Ses {
                to: m.to.join(","),
                message: e.to_string(),
            })?;
        self.clients
            .ses
            .send_email()
            .from_email_address(&self.config.sender)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(m.to.clone()))
                    .build(),
            )
            .content(EmailContent::builder().raw(raw).build())
            .set_configuration_set_name(self.config.ses_configuration_set.clone())
            .send()
            .await
            .map_err(|e| CoordinatorError::Ses {
                to: m.to.join(","),
                message: ses_message(&e),
            })?;
        Ok(())
    }

    async fn alert(&self, subject: &str, message: &str) {
        let Some(topic) = &self.config.alerts_topic_arn else {
            return;
        };
        if let Err(e) = self
            .clients
            .sns
            .publish()
            .topic_arn(topic)
            .subject(subject.chars().take(100).collect::<String>())
            .message(message)
            .send()
            .await
        {
            tracing::error!(error = %aws_sdk_sns::error::DisplayErrorContext(e), "SNS alert not sent");
        }
    }

    /// Builds the consolidated report, exactly once per run. Returns `None`
    /// when another invocation already finalized it.
    pub async fn finalize(&self, run_id: &str) -> Result<Option<RunReport>, CoordinatorError> {
        if self.store.exists(&store::final_key(run_id)).await? {
            return Ok(None);
        }
        let manifest = self
            .manifest(run_id)
            .await?
            .ok_or_else(|| CoordinatorError::UnknownRun(run_id.to_string()))?;
        let mut results = Vec::new();
        for a in &manifest.accounts {
            if let Some(mut r) = self.account_result(run_id, &a.account_id).await? {
                note_refused_owners(&manifest.policy, &mut r);
                results.push(r);
            }
        }
        let report = aggregate(&manifest, &results, OffsetDateTime::now_utc());
        let json = render::to_json(&report);
        let csv = render::to_csv(&report);
        let html = render::to_html(&report);
        // The files first (plain puts, safe to repeat), then the marker that
        // makes this the one finalization; the summary goes out only for the
        // winner, and a failed summary releases the marker so a retry or the
        // sweep sends it.
        let base = format!("reports/{run_id}");
        self.store
            .put(
                &format!("{base}/report.json"),
                json.clone(),
                "application/json",
            )
            .await?;
        self.store
            .put(&format!("{base}/report.csv"), csv.clone(), "text/csv")
            .await?;
        self.store
            .put(
                &format!("{base}/report.html"),
                html.into_bytes(),
                "text/html",
            )
            .await?;
        if self
            .store
            .put_new(&store::final_key(run_id), json, "application/json")
            .await?
            == Put::AlreadyExists
        {
            return Ok(None);
        }
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
            let sent = match mail::summary_email(
                &self.config.sender,
                &self.config.security_team,
                &report,
                &csv,
                Some(&url),
            ) {
                Ok(m) => self.send_email(&m).await,
                Err(e) => {
                    // A bad configured address never fixes itself.
                    tracing::error!(error = %e, "summary email not built");
                    Ok(())
                }
            };
            if let Err(e) = sent {
                self.store.delete(&store::final_key(run_id)).await?;
                return Err(e);
            }
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

    /// The newest finalized real run, by start time (the manifest's
    /// `created_at`, which the finalized report carries). Dry runs are kept
    /// and readable by id but are never `latest`; nor is a run still
    /// waiting for results. Run ids are not compared: they carry the start
    /// second and a random suffix, so two runs started in the same second
    /// would sort by chance. Ties on the start time (same nanosecond) go to
    /// the greater run id, so the answer is stable.
    pub async fn latest_run_id(&self) -> Result<Option<String>, CoordinatorError> {
        #[derive(serde::Deserialize)]
        struct Started {
            #[serde(with = "time::serde::rfc3339")]
            created_at: OffsetDateTime,
            #[serde(default)]
            dry_run: bool,
        }
        let ids = self.store.run_ids().await?;
        let finals: Vec<Result<Option<(OffsetDateTime, String)>, CoordinatorError>> =
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

    /// Where the HTML report of a run is.
    pub fn report_url(&self, run_id: &str) -> String {
        format!("s3://{}/reports/{run_id}/report.html", self.store.bucket())
    }

    /// Finalizes every run past its deadline that is not finalized yet.
    pub async fn sweep(&self) -> Result<Vec<String>, CoordinatorError> {
        let now = OffsetDateTime::now_utc();
        let mut done = Vec::new();
        for run in self.store.run_ids().await? {
            if self.store.exists(&store::final_key(&run)).await? {
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

    /// A stored report by run id, or `latest`: see [`Coordinator::latest_run_id`].
    pub async fn report(&self, run: &str) -> Result<Option<RunReport>, CoordinatorError> {
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
        Ok(serde_json::from_slice(&bytes).ok())
    }
}
