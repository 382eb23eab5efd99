//! Applies one user's plan: the crash-safe order of writes, reconciliation
//! of a rotation a previous run left half-done, and dry runs.
//!
//! Order of operations for a new key, chosen so that a crash or a lost
//! response at any point loses no credential and leaves no stray key:
//!
//! 1. write the intent (run, time, the keys that exist) into the protected
//!    record (`crate::record`); if it cannot be written, nothing is created;
//! 2. `CreateAccessKey`; if the call errors, the outcome is unknown (IAM may
//!    have created the key, e.g. a timeout, or an SDK retry that then hit
//!    the two-key limit): the keys are listed again and a key created under
//!    the intent is deleted at once (nobody received its secret);
//! 3. seal the key to the coordinator and store the sealed copy (and, with
//!    Secrets Manager delivery, the plain key) in the record;
//! 4. only then revoke anything; a deactivation is written to the record
//!    before `UpdateAccessKey` (if it cannot be recorded, the key stays
//!    active), so that the key is deleted no sooner than the recovery
//!    window later;
//! 5. the run sends its result; only after the coordinator's queue accepted
//!    it is the intent cleared.
//!
//! **Reconciliation** (a record that still holds an intent): a key the
//! user has that is not among the intent's keys is
//! - sent again when its sealed copy is the record's current key (the
//!   coordinator's ledger drops the duplicate);
//! - deleted when it was created after the intent (5 minutes of clock skew
//!   allowed), was never used and has no stored copy: keyfleet created it
//!   and nobody can have it;
//! - otherwise left alone and reported ("unexpected key, not created by
//!   keyfleet"): a tag, a forged record entry or an administrator's new key
//!   never cause a deletion.
//!
//! The rules decide; the executor applies their actions in order, stops a
//! user at the first failure (the rest is reported skipped) and never
//! overrides a verdict except to report what actually happened.

use crate::fault::FaultPoint;
use crate::record::{self, CurrentKey, Intent, Loaded, UserRecord};
use crate::rules::{self, UserPlan, UserSnapshot};
use crate::run::{now_utc, Agent, AgentError};
use crate::scan::{self, ScannedUser};
use aws_sdk_iam::types::StatusType;
use keyfleet_protocol::{
    Action, ActionRecord, Credential, Job, JobMode, KeyStatus, Notice, Outcome, SealedCredential,
    Secret, UserReport, Verdict,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What happens to a user's intent after the result is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AfterSend {
    /// Nothing to do.
    Nothing,
    /// Clear the intent in this record (last written state).
    ClearIntent {
        arn: String,
        record: Box<UserRecord>,
    },
}

pub(crate) struct UserOutcome {
    pub report: UserReport,
    pub sealed: Option<SealedCredential>,
    pub after_send: AfterSend,
}

/// One user during execution: the keys as IAM has them and the record as
/// last read or written.
struct Ctx {
    user: ScannedUser,
    found: Loaded,
    /// Keep the intent after sending (an undeliverable key could not be
    /// removed yet: the next run's reconciliation must see the intent).
    keep_intent: bool,
}

impl Ctx {
    fn name(&self) -> &str {
        &self.user.snapshot.user_name
    }
}

fn failed(error: impl std::fmt::Display) -> Outcome {
    Outcome::Failed {
        error: error.to_string(),
    }
}

fn add_note(report: &mut UserReport, note: String) {
    report.note = Some(match report.note.take() {
        Some(n) => format!("{n}; {note}"),
        None => note,
    });
}

impl Agent {
    fn plan(
        &self,
        job: &Job,
        user: &UserSnapshot,
        now: OffsetDateTime,
    ) -> Result<UserPlan, String> {
        match &job.mode {
            JobMode::Scheduled => {
                // The job's deliveries of this user's keys: the pair rule
                // waits for a replacement's delivery.
                let mut user = user.clone();
                user.deliveries = job
                    .deliveries
                    .iter()
                    .filter(|d| user.keys.iter().any(|k| k.id == d.key_id))
                    .map(|d| (d.key_id.clone(), d.delivered_at))
                    .collect();
                Ok(rules::plan_user(&user, &job.policy, now))
            }
            JobMode::Rotate {
                deactivate_old,
                key_id,
                ..
            } => rules::plan_emergency(user, &job.policy, now, *deactivate_old, key_id.as_deref())
                .map_err(|e| e.to_string()),
            JobMode::Reactivate { key_id, .. } => {
                rules::plan_reactivation(user, &job.policy, now, key_id).map_err(|e| e.to_string())
            }
        }
    }

    fn user_failed(&self, mut out: UserOutcome, e: impl std::fmt::Display) -> UserOutcome {
        tracing::error!(user = %out.report.user_name, error = %e, "user failed");
        out.report.verdict = Verdict::Failed;
        out.report.error = Some(e.to_string());
        out
    }

    fn user_deferred(&self, mut out: UserOutcome) -> UserOutcome {
        let due = out.report.verdict.as_str();
        tracing::warn!(user = %out.report.user_name, due, "user deferred: the invocation's time ran short");
        out.report.note = Some(format!(
            "deferred: `{due}` was due, but the agent's time ran short before it started this user; the next run picks it up"
        ));
        out.report.verdict = Verdict::Deferred;
        out
    }

    pub(crate) async fn process_user(
        &self,
        job: &Job,
        now: OffsetDateTime,
        mut user: ScannedUser,
    ) -> Result<UserOutcome, AgentError> {
        let emergency = matches!(job.mode, JobMode::Rotate { .. });
        // A reactivation is planned from the protected record (only a key
        // keyfleet deactivated may be switched back on): no plan before it
        // is read.
        let reactivation = matches!(job.mode, JobMode::Reactivate { .. });
        let targeted = emergency || reactivation;
        let mut out = UserOutcome {
            report: UserReport {
                user_name: user.snapshot.user_name.clone(),
                path: user.snapshot.path.clone(),
                email: None,
                verdict: Verdict::Compliant,
                keys: user.snapshot.keys.clone(),
                actions: Vec::new(),
                error: None,
                note: None,
                mfa_active: user.mfa_active,
                password_enabled: user.password_enabled,
            },
            sealed: None,
            after_send: AfterSend::Nothing,
        };
        if let Some(e) = user.error.take() {
            return Ok(self.user_failed(out, e));
        }
        // An emergency or a reactivation names keys: read them before
        // planning.
        if targeted {
            if let Err(e) = scan::refresh_user(&self.clients.iam, &mut user).await {
                return Ok(self.user_failed(out, e));
            }
            out.report.keys = user.snapshot.keys.clone();
        }
        let first = if reactivation {
            UserPlan {
                verdict: Verdict::Reactivated,
                email: rules::owner_email(&user.snapshot.tags, &job.policy),
                actions: Vec::new(),
                exempt: false,
                note: None,
            }
        } else {
            match self.plan(job, &user.snapshot, now) {
                Ok(p) => p,
                Err(e) => return Ok(self.user_failed(out, e)),
            }
        };
        out.report.email = first.email.clone();
        out.report.verdict = first.verdict;
        out.report.note = first.note.clone();
        let keys = &user.snapshot.keys;
        let record_matters = targeted
            || !user.in_report
            || keys.len() >= 2
            || keys.iter().any(|k| k.status == KeyStatus::Inactive)
            || !first.actions.is_empty();
        if !record_matters {
            return Ok(out);
        }
        // From here on the user costs IAM and Secrets Manager calls: start
        // it only while the invocation has time to finish it and send the
        // result (see `crate::budget`).
        if !self.budget.may_start() {
            return Ok(self.user_deferred(out));
        }
        let found = match record::load(
            &self.clients.secrets,
            &self.account_id,
            &user.snapshot.user_name,
            &user.arn,
        )
        .await
        {
            Ok(f) => f,
            Err(e) => return Ok(self.user_failed(out, e)),
        };
        let intent = found.trusted().and_then(|r| r.intent.clone());
        if first.actions.is_empty() && user.in_report && !targeted && intent.is_none() {
            // The record can only delay what the rules decide; nothing is due.
            return Ok(out);
        }
        if let Err(e) = scan::refresh_user(&self.clients.iam, &mut user).await {
            return Ok(self.user_failed(out, e));
        }
        out.report.keys = user.snapshot.keys.clone();
        let mut ctx = Ctx {
            user,
            found,
            keep_intent: false,
        };

        let mut recovered: Option<String> = None;
        if let Some(intent) = intent {
            match self.reconcile(job, &mut ctx, &intent, &mut out).await {
                Ok(r) => recovered = r,
                Err(e) => return Ok(self.user_failed(out, e)),
            }
        }
        if let Some(r) = ctx.found.trusted() {
            ctx.user.snapshot.deactivated = r.deactivations(&ctx.user.snapshot.keys);
            ctx.user.snapshot.reactivated = r.reactivations(&ctx.user.snapshot.keys);
        }

        let plan = match self.plan(job, &ctx.user.snapshot, now) {
            Ok(p) => p,
            Err(e) => return Ok(self.user_failed(out, e)),
        };
        out.report.email = plan.email.clone();
        if let Some(note) = plan.note.clone() {
            add_note(&mut out.report, note);
        }
        if let Some(note) = rules::reactivation_note(&ctx.user.snapshot, &job.policy, now) {
            add_note(&mut out.report, note);
        }
        out.report.verdict = match (plan.verdict, &recovered) {
            (Verdict::PendingDeactivation | Verdict::Compliant, Some(_)) => Verdict::Rotated,
            (v, _) => v,
        };
        if let (true, Loaded::Untrusted { reason }) =
            (plan.actions.contains(&Action::CreateKey), &ctx.found)
        {
            // No key can be stored for this user: create nothing at all.
            out.report.verdict = Verdict::Unreachable;
            add_note(
                &mut out.report,
                format!(
                    "no new key: secret {} was not created by keyfleet ({reason})",
                    record::secret_name(ctx.name())
                ),
            );
            self.finish(&mut ctx, &mut out);
            return Ok(out);
        }

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
                self.apply(job, &mut ctx, &action, &mut out, &mut created)
                    .await?
            };
            if let Outcome::Failed { error } = &result {
                tracing::error!(user = %ctx.name(), action = action.kind(), error = %error, "action failed");
                failed_at = Some(error.clone());
            } else {
                tracing::info!(user = %ctx.name(), action = action.kind(), outcome = ?result, "action");
            }
            out.report.actions.push(ActionRecord { action, result });
        }
        if let Some(err) = failed_at {
            out.report.verdict = Verdict::Failed;
            out.report.error = Some(err);
        }
        self.finish(&mut ctx, &mut out);
        Ok(out)
    }

    /// Decides what happens to the intent once the result is sent.
    fn finish(&self, ctx: &mut Ctx, out: &mut UserOutcome) {
        if let Loaded::Trusted(r) = &ctx.found {
            if r.intent.is_some() && !ctx.keep_intent {
                out.after_send = AfterSend::ClearIntent {
                    arn: ctx.user.arn.clone(),
                    record: r.clone(),
                };
            }
        }
    }

    /// Writes the record and remembers it as the current state.
    async fn save(&self, ctx: &mut Ctx, record: UserRecord) -> Result<(), record::RecordError> {
        record::save(&self.clients.secrets, &ctx.user.arn, &ctx.found, &record).await?;
        ctx.found = Loaded::Trusted(Box::new(record));
        Ok(())
    }

    /// Clears the intent of a user whose result was delivered.
    pub(crate) async fn clear_intent(&self, arn: &str, mut record: Box<UserRecord>) {
        let found = Loaded::Trusted(record.clone());
        record.intent = None;
        if let Err(e) = record::save(&self.clients.secrets, arn, &found, &record).await {
            // Harmless: the next run sees the intent, finds the key stored
            // and sends its sealed copy again (deduplicated).
            tracing::warn!(user = %record.user_name, error = %e, "could not clear rotation intent");
        }
    }

    /// Finishes or undoes a rotation a previous run left half-done (module
    /// doc). Returns the recovered key id when its sealed copy is sent again.
    async fn reconcile(
        &self,
        job: &Job,
        ctx: &mut Ctx,
        intent: &Intent,
        out: &mut UserOutcome,
    ) -> Result<Option<String>, String> {
        let name = ctx.name().to_string();
        // The intent comes from the trusted record: so do the stored copy's
        // key id and sealed box.
        let (current, sealed) = ctx.found.trusted().map_or((None, None), |r| {
            (
                r.current.as_ref().map(|c| c.access_key_id.clone()),
                r.sealed.clone(),
            )
        });
        let strangers: Vec<_> = ctx
            .user
            .snapshot
            .keys
            .iter()
            .filter(|k| !intent.before.contains(&k.id))
            .cloned()
            .collect();
        let mut recovered = None;
        for key in strangers {
            let stored = current.as_deref() == Some(key.id.as_str());
            if stored {
                if let Some(sealed) = &sealed {
                    tracing::info!(user = %name, run = %intent.run_id, "re-sending key stored by an interrupted run");
                    out.sealed = Some(sealed.clone());
                    out.report.actions.push(ActionRecord {
                        action: Action::CreateKey,
                        result: Outcome::Done {
                            key_id: Some(key.id.clone()),
                        },
                    });
                    recovered = Some(key.id.clone());
                    continue;
                }
            }
            let ours = !stored && intent.created_under(&key);
            if !ours {
                tracing::warn!(user = %name, key = %key.id, "unexpected key left alone");
                add_note(
                    &mut out.report,
                    format!(
                        "unexpected key {}, not created by keyfleet: left alone",
                        key.id
                    ),
                );
                continue;
            }
            // Created under the intent, never stored, never used: nobody
            // can have it.
            tracing::warn!(user = %name, run = %intent.run_id, "deleting a key whose copy was never stored");
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
            ctx.user.snapshot.keys.retain(|k| k.id != key.id);
        }
        Ok(recovered)
    }

    /// Applies one action for real.
    async fn apply(
        &self,
        job: &Job,
        ctx: &mut Ctx,
        action: &Action,
        out: &mut UserOutcome,
        created: &mut Option<String>,
    ) -> Result<Outcome, AgentError> {
        let iam = &self.clients.iam;
        let name = ctx.name().to_string();
        Ok(match action {
            Action::Notify { .. } => Outcome::Done { key_id: None },
            Action::Delete { key_id } => {
                match iam
                    .delete_access_key()
                    .user_name(&name)
                    .access_key_id(key_id)
                    .send()
                    .await
                {
                    Ok(_) => {
                        ctx.user.snapshot.keys.retain(|k| &k.id != key_id);
                        self.crash_at(FaultPoint::AfterRevoke, &name)?;
                        Outcome::Done { key_id: None }
                    }
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_no_such_entity_exception()) =>
                    {
                        ctx.user.snapshot.keys.retain(|k| &k.id != key_id);
                        Outcome::Skipped {
                            reason: "key already deleted".into(),
                        }
                    }
                    Err(e) => failed(format!("DeleteAccessKey: {}", scan::sdk_message(&e))),
                }
            }
            Action::Deactivate { key_id } => {
                // Recorded first: a deactivation keyfleet cannot remember
                // would let the key be deleted without its recovery window.
                let outcome = self
                    .record_then_switch(ctx, key_id, StatusType::Inactive)
                    .await;
                if matches!(outcome, Outcome::Done { .. }) {
                    self.crash_at(FaultPoint::AfterRevoke, &name)?;
                }
                outcome
            }
            Action::Reactivate { key_id } => {
                // Recorded first: a reactivation keyfleet cannot remember
                // would be undone by the next run without a notice period.
                self.record_then_switch(ctx, key_id, StatusType::Active)
                    .await
            }
            Action::CreateKey => match self.create_key(job, ctx, out).await? {
                Ok(id) => {
                    *created = Some(id.clone());
                    Outcome::Done { key_id: Some(id) }
                }
                Err(e) => failed(e),
            },
        })
    }

    /// Records the deactivation (`Inactive`) or the reactivation (`Active`)
    /// of `key_id` in the protected record, then sets the key's status. If
    /// it cannot be recorded, the status is not changed.
    async fn record_then_switch(&self, ctx: &mut Ctx, key_id: &str, status: StatusType) -> Outcome {
        let name = ctx.name().to_string();
        let what = if status == StatusType::Active {
            "reactivat"
        } else {
            "deactivat"
        };
        let Some(mut record) = ctx.found.writable(&self.account_id, &name) else {
            return failed(format!(
                "not {what}ed: the {what}ion cannot be recorded, secret {} was not created by keyfleet",
                record::secret_name(&name)
            ));
        };
        let Some(key) = ctx
            .user
            .snapshot
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .cloned()
        else {
            return failed(format!("UpdateAccessKey: unknown key {key_id}"));
        };
        if status == StatusType::Active {
            record.record_reactivation(&key, now_utc());
        } else {
            record.record_deactivation(&key, now_utc());
        }
        if let Err(e) = self.save(ctx, record).await {
            return failed(format!("not {what}ed: {e}"));
        }
        match self
            .clients
            .iam
            .update_access_key()
            .user_name(&name)
            .access_key_id(key_id)
            .status(status)
            .send()
            .await
        {
            Ok(_) => Outcome::Done { key_id: None },
            Err(e) => failed(format!("UpdateAccessKey: {}", scan::sdk_message(&e))),
        }
    }

    /// Intent, create, seal, store. The outer error is an injected crash;
    /// the inner one a failure reported on the user.
    async fn create_key(
        &self,
        job: &Job,
        ctx: &mut Ctx,
        out: &mut UserOutcome,
    ) -> Result<Result<String, String>, AgentError> {
        let iam = &self.clients.iam;
        let name = ctx.name().to_string();
        let Some(mut record) = ctx.found.writable(&self.account_id, &name) else {
            return Ok(Err(format!(
                "secret {} was not created by keyfleet",
                record::secret_name(&name)
            )));
        };
        // The keys that exist now (after any deletion to make room).
        let before = ctx
            .user
            .snapshot
            .keys
            .iter()
            .map(|k| k.id.clone())
            .collect();
        let intent = Intent {
            run_id: job.run_id.clone(),
            at: now_utc(),
            before,
        };
        record.intent = Some(intent.clone());
        if let Err(e) = self.save(ctx, record).await {
            return Ok(Err(format!(
                "rotation intent not recorded, no key created: {e}"
            )));
        }
        self.crash_at(FaultPoint::AfterIntent, &name)?;

        let response = match iam.create_access_key().user_name(&name).send().await {
            Ok(_) if self.faults.fires(FaultPoint::CreateResponseLost, &name) => {
                Err("injected fault: the response was lost".to_string())
            }
            Ok(o) => Ok(o),
            Err(e) => Err(scan::sdk_message(&e)),
        };
        let created = match response {
            Ok(o) => o,
            Err(e) => return Ok(Err(self.resolve_unknown_create(ctx, &intent, &e).await)),
        };
        let Some(key) = created.access_key() else {
            return Ok(Err(self
                .resolve_unknown_create(ctx, &intent, "no key in the response")
                .await));
        };
        let cred = Credential {
            account_id: self.account_id.clone(),
            user_name: name.clone(),
            access_key_id: key.access_key_id().to_string(),
            secret_access_key: Secret::new(key.secret_access_key()),
            created: key.create_date().map(scan::to_time).unwrap_or_else(now_utc),
        };
        self.crash_at(FaultPoint::AfterCreate, &name)?;

        let sealed = match self.store_new_key(job, ctx, &cred).await {
            Ok(s) => s,
            Err(e) => {
                // The key exists but its copy could not be stored: nobody
                // could ever receive it. Delete it now; if even that fails,
                // keep the intent so the next run's reconciliation does.
                let undo = iam
                    .delete_access_key()
                    .user_name(&name)
                    .access_key_id(&cred.access_key_id)
                    .send()
                    .await;
                ctx.keep_intent |= undo.is_err();
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
        self.crash_at(FaultPoint::AfterStore, &name)?;
        out.sealed = Some(sealed);
        Ok(Ok(cred.access_key_id))
    }

    /// `CreateAccessKey` errored: IAM may have created the key anyway. List
    /// the keys again and delete any created under the intent (its secret
    /// is gone). Returns the message for the report.
    async fn resolve_unknown_create(&self, ctx: &mut Ctx, intent: &Intent, error: &str) -> String {
        let iam = &self.clients.iam;
        let name = ctx.name().to_string();
        let keys = match scan::list_keys(iam, &name).await {
            Ok(k) => k,
            Err(e) => {
                ctx.keep_intent = true;
                return format!(
                    "CreateAccessKey: {error}; the keys could not be listed again ({e}): the next run removes any key created anyway"
                );
            }
        };
        let orphans: Vec<String> = keys
            .iter()
            .filter(|k| intent.created_under(k))
            .map(|k| k.id.clone())
            .collect();
        if orphans.is_empty() {
            return format!("CreateAccessKey: {error}; no key was created");
        }
        let mut deleted = Vec::new();
        for id in &orphans {
            match iam
                .delete_access_key()
                .user_name(&name)
                .access_key_id(id)
                .send()
                .await
            {
                Ok(_) => deleted.push(id.clone()),
                Err(e) => {
                    tracing::warn!(user = %name, key = %id, error = %scan::sdk_message(&e), "could not delete an undeliverable key");
                    ctx.keep_intent = true;
                }
            }
        }
        ctx.user.snapshot.keys = keys
            .into_iter()
            .filter(|k| !deleted.contains(&k.id))
            .collect();
        if deleted.len() == orphans.len() {
            format!(
                "CreateAccessKey: {error}; IAM had created key {} anyway, nobody received it: it was deleted",
                deleted.join(", ")
            )
        } else {
            format!(
                "CreateAccessKey: {error}; IAM had created key(s) {} anyway: the next run deletes them",
                orphans.join(", ")
            )
        }
    }

    /// Seals the new key for the coordinator and stores it in the record
    /// (with the plain key for Secrets Manager delivery). The intent stays.
    async fn store_new_key(
        &self,
        job: &Job,
        ctx: &mut Ctx,
        cred: &Credential,
    ) -> Result<SealedCredential, String> {
        let sealed = keyfleet_protocol::seal::seal(&self.config.coordinator_key, cred)
            .map_err(|e| e.to_string())?;
        let mut record = ctx
            .found
            .writable(&self.account_id, &cred.user_name)
            .ok_or("the record is not keyfleet's")?;
        let mut history: Vec<String> = record
            .current
            .iter()
            .map(|c| c.access_key_id.clone())
            .chain(record.history.clone())
            .filter(|id| id != &cred.access_key_id)
            .collect();
        history.truncate(20);
        record.history = history;
        record.current = Some(CurrentKey {
            access_key_id: cred.access_key_id.clone(),
            created: cred.created.format(&Rfc3339).unwrap_or_default(),
            secret_access_key: job
                .policy
                .delivery
                .by_secrets_manager()
                .then(|| cred.secret_access_key.clone()),
        });
        record.sealed = Some(sealed.clone());
        self.save(ctx, record).await.map_err(|e| e.to_string())?;
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
