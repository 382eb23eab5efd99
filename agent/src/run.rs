//! One job, end to end: scan, reconcile, plan, execute, seal, report.
//!
//! Order of operations for a new key, chosen so that a crash at any point
//! loses no credential and leaves no stray key:
//!
//! 1. tag the user `keyfleet:rotation = v1 <run_id> <existing key ids>`
//!    (intent, recorded before CreateAccessKey);
//! 2. CreateAccessKey;
//! 3. seal the key to the coordinator and store the sealed copy (and, with
//!    Secrets Manager delivery, the plain key) in `keyfleet/<user>`;
//! 4. only then revoke anything (deactivate/delete old keys);
//! 5. send the result; only after the coordinator's queue accepted it,
//!    remove the intent tag.
//!
//! The next run reconciles any user still carrying the intent tag (free to
//! see: tags come with the scan): a key created under the intent whose copy
//! is in the secret is sent again (the coordinator's ledger drops the
//! duplicate); a key whose copy never reached the secret is deleted and the
//! rotation redone; with no new key, the tag is dropped and the rules run as
//! usual. A job delivered twice therefore changes nothing the second time:
//! the rules see the new key and only schedule notices.
//!
//! A dry run goes through the same steps with every write replaced by an
//! `Outcome::Planned` record, so it reports exactly what the real run would
//! do from the same state.

use crate::clients::AgentClients;
use crate::rules::{self, UserPlan, UserSnapshot};
use crate::scan::{self, ScannedUser};
use crate::store::{self, CurrentKey, StoredSecret};
use aws_sdk_iam::types::{StatusType, Tag};
use futures::stream::{self, StreamExt};
use keyfleet_protocol::parts::{self, PartsError};
use keyfleet_protocol::{
    AccountResult, AccountStatus, Action, ActionRecord, Credential, Job, JobMode, Notice, Outcome,
    PublicKey, SealedCredential, Secret, UserReport, Verdict, VERSION,
};
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The user tag that records a rotation in progress.
pub const INTENT_TAG: &str = "keyfleet:rotation";
/// Users processed at once within an account (IAM rate limits are per
/// account; the SDK's adaptive retry absorbs bursts).
const USER_CONCURRENCY: usize = 4;

/// Where a test may make the agent crash. Production never sets a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    AfterIntent,
    AfterCreate,
    AfterStore,
    AfterRevoke,
    BeforeSend,
    AfterSend,
}

impl FaultPoint {
    pub const ALL: [FaultPoint; 6] = [
        FaultPoint::AfterIntent,
        FaultPoint::AfterCreate,
        FaultPoint::AfterStore,
        FaultPoint::AfterRevoke,
        FaultPoint::BeforeSend,
        FaultPoint::AfterSend,
    ];
}

/// Returns true to make the agent stop dead at that point for that user
/// (the user is empty for account-level points).
pub type FaultHook = Arc<dyn Fn(FaultPoint, &str) -> bool + Send + Sync>;

/// Errors that stop a whole job. Per-user failures are reported on the user.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("job is for account {job}, this agent serves account {agent}")]
    WrongAccount { job: String, agent: String },
    #[error("injected crash at {point:?} (user `{user}`)")]
    Crashed { point: FaultPoint, user: String },
    #[error("sending the result to {queue} failed: {message}")]
    Send { queue: String, message: String },
    #[error("result could not be split for SQS: {0}")]
    Parts(#[from] PartsError),
}

/// What the agent needs besides its clients.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The coordinator's public key (from the agent's own configuration,
    /// never from the job).
    pub coordinator_key: PublicKey,
    /// Largest SQS message to send.
    pub max_part_bytes: usize,
    /// The coordinator's results queue, from the agent's own configuration
    /// (`KEYFLEET_RESULTS_QUEUE_URL`, set by the StackSet). When set, results
    /// go there whatever the job says, so a forged job cannot redirect them;
    /// local fleet mode leaves it unset and uses the job's.
    pub results_queue_url: Option<String>,
}

/// An agent for one account: clients built once, reused for every job.
#[derive(Clone)]
pub struct Agent {
    clients: AgentClients,
    config: AgentConfig,
    account_id: String,
    fault: Option<FaultHook>,
}

struct UserOutcome {
    report: UserReport,
    sealed: Option<SealedCredential>,
    /// Remove the intent tag once the result is delivered.
    clear_intent: bool,
}

/// Parsed intent tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub run_id: String,
    pub before: Vec<String>,
}

impl Intent {
    pub fn encode(&self) -> String {
        let mut s = format!("v1 {}", self.run_id);
        for k in &self.before {
            s.push(' ');
            s.push_str(k);
        }
        s
    }
    pub fn parse(v: &str) -> Option<Intent> {
        let mut it = v.split_whitespace();
        if it.next()? != "v1" {
            return None;
        }
        let run_id = it.next()?.to_string();
        Some(Intent {
            run_id,
            before: it.map(str::to_string).collect(),
        })
    }
    fn of(user: &UserSnapshot) -> Option<Intent> {
        user.tags
            .iter()
            .find(|(k, _)| k == INTENT_TAG)
            .and_then(|(_, v)| Intent::parse(v))
    }
}

fn now_utc() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn failed(error: impl std::fmt::Display) -> Outcome {
    Outcome::Failed {
        error: error.to_string(),
    }
}

impl Agent {
    pub fn new(clients: AgentClients, config: AgentConfig, account_id: impl Into<String>) -> Self {
        Agent {
            clients,
            config,
            account_id: account_id.into(),
            fault: None,
        }
    }

    /// Installs a fault hook (tests of crash safety).
    pub fn with_fault_hook(mut self, hook: FaultHook) -> Self {
        self.fault = Some(hook);
        self
    }

    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    pub fn clients(&self) -> &AgentClients {
        &self.clients
    }

    fn crash_at(&self, point: FaultPoint, user: &str) -> Result<(), AgentError> {
        match &self.fault {
            Some(h) if h(point, user) => Err(AgentError::Crashed {
                point,
                user: user.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Runs a job and sends its result (in parts if needed) to the job's
    /// results queue. Returns the whole result.
    pub async fn handle(&self, job: &Job) -> Result<AccountResult, AgentError> {
        use tracing::Instrument;
        let span = tracing::info_span!("job", run_id = %job.run_id, account = %job.account_id, dry_run = job.dry_run);
        self.handle_inner(job).instrument(span).await
    }

    async fn handle_inner(&self, job: &Job) -> Result<AccountResult, AgentError> {
        if job.account_id != self.account_id {
            return Err(AgentError::WrongAccount {
                job: job.account_id.clone(),
                agent: self.account_id.clone(),
            });
        }
        let started_at = now_utc();
        let as_of = job.as_of.unwrap_or(started_at);
        let calls_before = self.clients.calls.snapshot();

        let mut result = AccountResult {
            v: VERSION,
            run_id: job.run_id.clone(),
            account_id: job.account_id.clone(),
            token: job.token.clone(),
            part: 1,
            parts: 1,
            account_alias: None,
            status: AccountStatus::Ok,
            error: None,
            dry_run: job.dry_run,
            as_of,
            started_at,
            finished_at: started_at,
            scan_mode: Default::default(),
            api_calls: Default::default(),
            users: Vec::new(),
            sealed: Vec::new(),
        };

        let mut clear = Vec::new();
        match scan::scan_account(&self.clients.iam).await {
            Err(e) => {
                tracing::error!(error = %e, "account scan failed");
                result.status = AccountStatus::Failed;
                result.error = Some(e.to_string());
            }
            Ok(scan) => {
                result.scan_mode = scan.mode;
                let mut users = scan.users;
                if let JobMode::Rotate { user, .. } = &job.mode {
                    users.retain(|u| &u.snapshot.user_name == user);
                    if users.is_empty() {
                        result.status = AccountStatus::Failed;
                        result.error = Some(format!("user `{user}` not found"));
                    }
                }
                users.sort_by(|a, b| a.snapshot.user_name.cmp(&b.snapshot.user_name));
                let outcomes: Vec<Result<UserOutcome, AgentError>> = stream::iter(users)
                    .map(|u| self.process_user(job, as_of, u))
                    .buffered(USER_CONCURRENCY)
                    .collect()
                    .await;
                for o in outcomes {
                    let o = o?;
                    if o.report.verdict == Verdict::Failed {
                        result.status = AccountStatus::Partial;
                    }
                    if o.clear_intent {
                        clear.push(o.report.user_name.clone());
                    }
                    result.sealed.extend(o.sealed);
                    result.users.push(o.report);
                }
            }
        }
        if result.users.iter().any(|u| !u.actions.is_empty()) {
            match scan::account_alias(&self.clients.iam).await {
                Ok(a) => result.account_alias = a,
                Err(e) => tracing::warn!(error = %e, "could not read the account alias"),
            }
        }
        result.finished_at = now_utc();
        result.api_calls = self.clients.calls.since(&calls_before);

        self.crash_at(FaultPoint::BeforeSend, "")?;
        self.send(job, result.clone()).await?;
        self.crash_at(FaultPoint::AfterSend, "")?;
        if !job.dry_run {
            for user in clear {
                if let Err(e) = self
                    .clients
                    .iam
                    .untag_user()
                    .user_name(&user)
                    .tag_keys(INTENT_TAG)
                    .send()
                    .await
                {
                    // Harmless: the next run sees the tag, finds the key
                    // stored and sends its sealed copy again (deduplicated).
                    tracing::warn!(user = %user, error = %scan::sdk_message(&e), "could not clear rotation intent");
                }
            }
        }
        tracing::info!(
            users = result.users.len(),
            new_keys = result.sealed.len(),
            status = ?result.status,
            iam_calls = result.iam_calls(),
            "job done"
        );
        Ok(result)
    }

    /// Where results go: the configured queue, else the job's.
    pub fn results_queue<'a>(&'a self, job_queue: &'a str) -> &'a str {
        self.config
            .results_queue_url
            .as_deref()
            .unwrap_or(job_queue)
    }

    async fn send(&self, job: &Job, result: AccountResult) -> Result<(), AgentError> {
        let queue = self.results_queue(&job.results_queue_url);
        for part in parts::split(result, self.config.max_part_bytes)? {
            let body = String::from_utf8(keyfleet_protocol::encode(&part))
                .expect("serde_json writes UTF-8");
            self.clients
                .sqs
                .send_message()
                .queue_url(queue)
                .message_body(body)
                .send()
                .await
                .map_err(|e| {
                    use aws_sdk_sqs::error::ProvideErrorMetadata;
                    AgentError::Send {
                        queue: queue.to_string(),
                        message: format!(
                            "{}: {}",
                            e.code().unwrap_or("error"),
                            e.message().unwrap_or(
                                &aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()
                            )
                        ),
                    }
                })?;
        }
        Ok(())
    }

    fn plan(&self, job: &Job, user: &UserSnapshot, now: OffsetDateTime) -> UserPlan {
        match &job.mode {
            JobMode::Scheduled => rules::plan_user(user, &job.policy, now),
            JobMode::Rotate { deactivate_old, .. } => {
                rules::plan_emergency(user, &job.policy, now, *deactivate_old)
            }
        }
    }

    async fn process_user(
        &self,
        job: &Job,
        now: OffsetDateTime,
        mut user: ScannedUser,
    ) -> Result<UserOutcome, AgentError> {
        let name = user.snapshot.user_name.clone();
        let intent = Intent::of(&user.snapshot);
        let first = self.plan(job, &user.snapshot, now);
        let due = !first.actions.is_empty()
            || !user.in_report
            || intent.is_some()
            || matches!(job.mode, JobMode::Rotate { .. });
        let mut out = UserOutcome {
            report: UserReport {
                user_name: name.clone(),
                path: user.snapshot.path.clone(),
                email: first.email.clone(),
                verdict: first.verdict,
                keys: user.snapshot.keys.clone(),
                actions: Vec::new(),
                error: None,
                note: None,
            },
            sealed: None,
            clear_intent: false,
        };
        if let Some(e) = user.error.take() {
            return Ok(self.user_failed(out, e));
        }
        if !due {
            return Ok(out);
        }
        if let Err(e) = scan::refresh_user(&self.clients.iam, &mut user).await {
            return Ok(self.user_failed(out, e));
        }
        out.report.keys = user.snapshot.keys.clone();

        let mut recovered: Option<String> = None;
        if let Some(intent) = intent {
            match self.reconcile(job, &mut user, &intent, &mut out).await {
                Ok(r) => recovered = r,
                Err(e) => return Ok(self.user_failed(out, e)),
            }
        }

        let plan = self.plan(job, &user.snapshot, now);
        out.report.email = plan.email.clone();
        out.report.verdict = match (plan.verdict, &recovered) {
            (Verdict::PendingDeactivation | Verdict::Compliant, Some(_)) => Verdict::Rotated,
            (v, _) => v,
        };
        let mut created: Option<String> = recovered;
        let mut failed_at: Option<String> = None;
        for action in plan.actions {
            let action = fill_replacement(action, created.as_deref());
            if let Some(err) = &failed_at {
                out.report.actions.push(ActionRecord {
                    action,
                    result: Outcome::Skipped {
                        reason: format!("an earlier action failed: {err}"),
                    },
                });
                continue;
            }
            let result = if job.dry_run {
                Outcome::Planned
            } else {
                self.apply(job, &user, &action, &mut out, &mut created)
                    .await?
            };
            if let Outcome::Failed { error } = &result {
                tracing::error!(user = %name, action = action.kind(), error = %error, "action failed");
                failed_at = Some(error.clone());
            } else {
                tracing::info!(user = %name, action = action.kind(), outcome = ?result, "action");
            }
            out.report.actions.push(ActionRecord { action, result });
        }
        if let Some(err) = failed_at {
            out.report.verdict = Verdict::Failed;
            out.report.error = Some(err);
        }
        Ok(out)
    }

    fn user_failed(&self, mut out: UserOutcome, e: impl std::fmt::Display) -> UserOutcome {
        tracing::error!(user = %out.report.user_name, error = %e, "user failed");
        out.report.verdict = Verdict::Failed;
        out.report.error = Some(e.to_string());
        out
    }

    /// Finishes or undoes a rotation a previous run left half-done.
    /// Returns the recovered key id when its sealed copy is sent again.
    async fn reconcile(
        &self,
        job: &Job,
        user: &mut ScannedUser,
        intent: &Intent,
        out: &mut UserOutcome,
    ) -> Result<Option<String>, String> {
        let name = user.snapshot.user_name.clone();
        let newest_new = user
            .snapshot
            .keys
            .iter()
            .filter(|k| !intent.before.contains(&k.id))
            .max_by_key(|k| k.created)
            .cloned();
        out.clear_intent = true;
        let Some(key) = newest_new else {
            return Ok(None);
        };
        let stored = store::read(&self.clients.secrets, &name)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(s) = stored.filter(|s| s.current.access_key_id == key.id) {
            if let Some(sealed) = s.sealed {
                tracing::info!(user = %name, run = %intent.run_id, "re-sending key stored by an interrupted run");
                out.sealed = Some(sealed);
                out.report.actions.push(ActionRecord {
                    action: Action::CreateKey,
                    result: Outcome::Done {
                        key_id: Some(key.id.clone()),
                    },
                });
                return Ok(Some(key.id));
            }
        }
        // Created under the intent but never stored: nobody can have it.
        tracing::warn!(user = %name, run = %intent.run_id, "deleting a key whose secret was never stored");
        let result = if job.dry_run {
            Outcome::Planned
        } else {
            match self
                .clients
                .iam
                .delete_access_key()
                .user_name(&name)
                .access_key_id(&key.id)
                .send()
                .await
            {
                Ok(_) => Outcome::Done { key_id: None },
                Err(e) => return Err(format!("DeleteAccessKey: {}", scan::sdk_message(&e))),
            }
        };
        out.report.actions.push(ActionRecord {
            action: Action::Delete {
                key_id: key.id.clone(),
            },
            result,
        });
        user.snapshot.keys.retain(|k| k.id != key.id);
        Ok(None)
    }

    /// Applies one action for real.
    async fn apply(
        &self,
        job: &Job,
        user: &ScannedUser,
        action: &Action,
        out: &mut UserOutcome,
        created: &mut Option<String>,
    ) -> Result<Outcome, AgentError> {
        let iam = &self.clients.iam;
        let name = user.snapshot.user_name.as_str();
        Ok(match action {
            Action::Notify { .. } => Outcome::Done { key_id: None },
            Action::Delete { key_id } => {
                match iam
                    .delete_access_key()
                    .user_name(name)
                    .access_key_id(key_id)
                    .send()
                    .await
                {
                    Ok(_) => {
                        self.crash_at(FaultPoint::AfterRevoke, name)?;
                        Outcome::Done { key_id: None }
                    }
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_no_such_entity_exception()) =>
                    {
                        Outcome::Skipped {
                            reason: "key already deleted".into(),
                        }
                    }
                    Err(e) => failed(format!("DeleteAccessKey: {}", scan::sdk_message(&e))),
                }
            }
            Action::Deactivate { key_id } => {
                match iam
                    .update_access_key()
                    .user_name(name)
                    .access_key_id(key_id)
                    .status(StatusType::Inactive)
                    .send()
                    .await
                {
                    Ok(_) => {
                        self.crash_at(FaultPoint::AfterRevoke, name)?;
                        Outcome::Done { key_id: None }
                    }
                    Err(e) => failed(format!("UpdateAccessKey: {}", scan::sdk_message(&e))),
                }
            }
            Action::CreateKey => match self.create_key(job, user, out).await? {
                Ok(id) => {
                    *created = Some(id.clone());
                    Outcome::Done { key_id: Some(id) }
                }
                Err(e) => failed(e),
            },
        })
    }

    /// Intent, create, seal, store. The outer error is an injected crash;
    /// the inner one a failure reported on the user.
    async fn create_key(
        &self,
        job: &Job,
        user: &ScannedUser,
        out: &mut UserOutcome,
    ) -> Result<Result<String, String>, AgentError> {
        let iam = &self.clients.iam;
        let name = user.snapshot.user_name.as_str();
        let intent = Intent {
            run_id: job.run_id.clone(),
            before: user.snapshot.keys.iter().map(|k| k.id.clone()).collect(),
        };
        let tag = Tag::builder()
            .key(INTENT_TAG)
            .value(intent.encode())
            .build()
            .expect("key and value are set");
        if let Err(e) = iam.tag_user().user_name(name).tags(tag).send().await {
            return Ok(Err(format!("TagUser: {}", scan::sdk_message(&e))));
        }
        out.clear_intent = true;
        self.crash_at(FaultPoint::AfterIntent, name)?;

        let created = match iam.create_access_key().user_name(name).send().await {
            Ok(o) => o,
            Err(e) => return Ok(Err(format!("CreateAccessKey: {}", scan::sdk_message(&e)))),
        };
        let Some(key) = created.access_key() else {
            return Ok(Err("CreateAccessKey returned no key".into()));
        };
        let cred = Credential {
            account_id: self.account_id.clone(),
            user_name: name.to_string(),
            access_key_id: key.access_key_id().to_string(),
            secret_access_key: Secret::new(key.secret_access_key()),
            created: key.create_date().map(scan::to_time).unwrap_or_else(now_utc),
        };
        self.crash_at(FaultPoint::AfterCreate, name)?;

        let sealed = match self.store_new_key(job, user, &cred).await {
            Ok(s) => s,
            Err(e) => {
                // The key exists but its copy could not be stored: nobody
                // could ever receive it. Delete it now; if even that fails,
                // keep the intent tag so the next run's reconcile deletes it.
                let undo = iam
                    .delete_access_key()
                    .user_name(name)
                    .access_key_id(&cred.access_key_id)
                    .send()
                    .await;
                if undo.is_err() {
                    out.clear_intent = false;
                }
                return Ok(Err(format!(
                    "new key {} not stored ({e}); {}",
                    cred.access_key_id,
                    if undo.is_ok() {
                        "it was deleted again"
                    } else {
                        "the next run deletes it"
                    }
                )));
            }
        };
        self.crash_at(FaultPoint::AfterStore, name)?;
        out.sealed = Some(sealed);
        Ok(Ok(cred.access_key_id))
    }

    /// Seals the new key for the coordinator and stores it in
    /// `keyfleet/<user>` (with the plain key for Secrets Manager delivery).
    async fn store_new_key(
        &self,
        job: &Job,
        user: &ScannedUser,
        cred: &Credential,
    ) -> Result<SealedCredential, String> {
        let name = user.snapshot.user_name.as_str();
        let sealed = keyfleet_protocol::seal::seal(&self.config.coordinator_key, cred)
            .map_err(|e| e.to_string())?;
        let previous = store::read(&self.clients.secrets, name)
            .await
            .map_err(|e| e.to_string())?;
        let mut history: Vec<String> = previous
            .iter()
            .flat_map(|p| std::iter::once(p.current.access_key_id.clone()).chain(p.history.clone()))
            .filter(|id| id != &cred.access_key_id)
            .collect();
        history.truncate(20);
        let secret = StoredSecret {
            v: 1,
            account_id: self.account_id.clone(),
            user_name: name.to_string(),
            current: CurrentKey {
                access_key_id: cred.access_key_id.clone(),
                created: cred.created.format(&Rfc3339).unwrap_or_default(),
                secret_access_key: job
                    .policy
                    .delivery
                    .by_secrets_manager()
                    .then(|| cred.secret_access_key.clone()),
            },
            history,
            sealed: Some(sealed.clone()),
        };
        store::write(&self.clients.secrets, &user.arn, previous.as_ref(), &secret)
            .await
            .map_err(|e| e.to_string())?;
        Ok(sealed)
    }
}

/// A notice planned before the key existed names the new key once created.
fn fill_replacement(action: Action, created: Option<&str>) -> Action {
    match (action, created) {
        (
            Action::Notify {
                notice:
                    Notice::DeactivationScheduled {
                        key_id,
                        on,
                        replacement: None,
                    },
            },
            Some(new),
        ) => Action::Notify {
            notice: Notice::DeactivationScheduled {
                key_id,
                on,
                replacement: Some(new.to_string()),
            },
        },
        (a, _) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_round_trips_and_rejects_foreign_values() {
        let i = Intent {
            run_id: "run-1".into(),
            before: vec!["AKIA1".into(), "AKIA2".into()],
        };
        assert_eq!(Intent::parse(&i.encode()), Some(i));
        let none = Intent {
            run_id: "r".into(),
            before: vec![],
        };
        assert_eq!(Intent::parse(&none.encode()), Some(none));
        assert_eq!(Intent::parse("v2 x"), None);
        assert_eq!(Intent::parse(""), None);
    }

    #[test]
    fn scheduled_notice_gets_the_new_key_id() {
        let a = Action::Notify {
            notice: Notice::DeactivationScheduled {
                key_id: "OLD".into(),
                on: OffsetDateTime::UNIX_EPOCH,
                replacement: None,
            },
        };
        match fill_replacement(a, Some("NEW")) {
            Action::Notify {
                notice: Notice::DeactivationScheduled { replacement, .. },
            } => assert_eq!(replacement.as_deref(), Some("NEW")),
            other => panic!("{other:?}"),
        }
    }
}
