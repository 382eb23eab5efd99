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
//! **Retries.** A job delivered again (its first attempt stopped, or its
//! result was lost on the way) has the same run id. Every switch and
//! deletion is recorded, with its run and the owner's notice, before IAM
//! is called, and the new key is stored with its run, so the retry knows
//! what its first attempt did ([`UserRecord::earlier_attempt`]): it plans
//! from the keys as that attempt found them, reports what it did as done,
//! with the very notice that went with it (the coordinator's ledger drops
//! it if it was sent already, and sends it if the result was lost), and
//! applies only the rest. Without this, a retried reactivation would find
//! its key active and refuse, a retried deactivation or deletion would
//! find nothing to do, and the owner would never be told.
//!
//! The rules decide; the executor applies their actions in order, stops a
//! user at the first failure (the rest is reported skipped) and never
//! overrides a verdict except to report what actually happened.

use crate::fault::FaultPoint;
use crate::record::{self, CurrentKey, Intent, Loaded, RunMark, UserRecord};
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
                for k in job
                    .undelivered
                    .iter()
                    .filter(|k| user.keys.iter().any(|key| key.id == **k))
                {
                    user.deliveries.retain(|(id, _)| id != k);
                    user.deliveries.push((k.clone(), None));
                }
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

    /// `retry`: the run took the account's lease before (an earlier
    /// attempt may have done part of the job): the record is read whatever
    /// the keys look like now.
    pub(crate) async fn process_user(
        &self,
        job: &Job,
        now: OffsetDateTime,
        mut user: ScannedUser,
        retry: bool,
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
        // So is a retried emergency rotation: its keys may be as its first
        // attempt left them, which the record explains.
        let deferred = |verdict| UserPlan {
            verdict,
            email: rules::owner_email(&user.snapshot.tags, &job.policy),
            actions: Vec::new(),
            exempt: false,
            note: None,
        };
        let first = if reactivation {
            deferred(Verdict::Reactivated)
        } else {
            match self.plan(job, &user.snapshot, now) {
                Ok(p) => p,
                Err(_) if retry && emergency => deferred(Verdict::Rotated),
                Err(e) => return Ok(self.user_failed(out, e)),
            }
        };
        out.report.email = first.email.clone();
        out.report.verdict = first.verdict;
        out.report.note = first.note.clone();
        let keys = &user.snapshot.keys;
        let record_matters = retry
            || targeted
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
        let touched = found.trusted().is_some_and(|r| r.touched_by(&job.run_id));
        if first.actions.is_empty() && user.in_report && !targeted && intent.is_none() && !touched {
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
        // Record times later than now count as now; written back so that
        // they stay there (see `UserRecord::clamp_to`).
        if let Some(mut r) = ctx.found.trusted().cloned() {
            if !job.dry_run && r.clamp_to(&ctx.user.snapshot.keys, now) {
                tracing::warn!(user = %ctx.name(), "record times later than now, written back as now");
                if let Err(e) = self.save(&mut ctx, r).await {
                    return Ok(self.user_failed(out, e));
                }
            }
        }

        // Where the delivery of the user's new keys stands (see "Delivery-
        // confirmed deactivation" in the rules): noted in the record, so
        // that a key found delivered counts its old key's notice period
        // from the first run that knew it. A dry run notes it for its plan
        // only.
        if matches!(job.mode, JobMode::Scheduled) {
            if let Some(mut r) = ctx.found.trusted().cloned() {
                let undelivered: Vec<&str> = job.undelivered.iter().map(String::as_str).collect();
                if r.observe_deliveries(&ctx.user.snapshot.keys, &undelivered, now, &job.run_id) {
                    if job.dry_run {
                        ctx.found = Loaded::Trusted(Box::new(r));
                    } else if let Err(e) = self.save(&mut ctx, r).await {
                        return Ok(self.user_failed(out, e));
                    }
                }
            }
        }

        let mut recovered: Option<String> = None;
        let mut created_here: Option<String> = None;
        if let Some(intent) = intent {
            match self.reconcile(job, &mut ctx, &intent, &mut out).await {
                Ok(r) => recovered = r,
                Err(e) => return Ok(self.user_failed(out, e)),
            }
            if intent.run_id == job.run_id {
                created_here.clone_from(&recovered);
            }
        }
        // The key an earlier attempt of this run created and stored, also
        // once its intent was cleared (its result was sent): sent again
        // like a recovered one.
        if let Some(r) = ctx.found.trusted() {
            if let Some(id) = r.created_by(&job.run_id) {
                if ctx.user.snapshot.keys.iter().any(|k| k.id == id) {
                    if recovered.is_none() {
                        out.sealed = r.sealed.clone();
                        recovered = Some(id.to_string());
                    }
                    created_here = Some(id.to_string());
                }
            }
        }
        if let Some(id) = &created_here {
            // Reported where the plan creates it (below), as the first
            // attempt did.
            out.report.actions.retain(|a| {
                a.action != Action::CreateKey
                    || a.result
                        != Outcome::Done {
                            key_id: Some(id.clone()),
                        }
            });
        }
        // Planned from the keys as this run first found them (see
        // "Retries" in the module doc); without an earlier attempt, the
        // keys as they are.
        let earlier = match ctx.found.trusted() {
            Some(r) => r.earlier_attempt(&job.run_id, &ctx.user.snapshot.keys),
            None => record::EarlierAttempt {
                done: Vec::new(),
                keys_before: ctx.user.snapshot.keys.clone(),
            },
        };
        let mut planned = ctx.user.snapshot.clone();
        planned.keys = earlier.keys_before.clone();
        planned
            .keys
            .retain(|k| created_here.as_deref() != Some(k.id.as_str()));
        if let Some(r) = ctx.found.trusted() {
            planned.deactivated = r.deactivations(&planned.keys, now, &job.run_id);
            planned.reactivated = r.reactivations(&planned.keys, now, &job.run_id);
            planned.deliveries = r
                .deliveries(&planned.keys, now)
                .into_iter()
                .map(|(id, at)| (id, Some(at)))
                .collect();
        }

        let plan = match self.plan(job, &planned, now) {
            Ok(p) => p,
            Err(e) => return Ok(self.user_failed(out, e)),
        };
        out.report.email = plan.email.clone();
        if let Some(note) = plan.note.clone() {
            add_note(&mut out.report, note);
        }
        if let Some(note) = rules::reactivation_note(&planned, &job.policy, now) {
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

        let steps = resume(plan.actions, &earlier.done, created_here.as_deref());
        let mut created: Option<String> = recovered;
        let mut failed_at: Option<String> = None;
        for (i, step) in steps.iter().enumerate() {
            let action = match step {
                Step::Replay(done) => {
                    // Done by an earlier attempt of this run: a fact, and
                    // reported as one whatever happens now.
                    tracing::info!(user = %ctx.name(), action = done.action.kind(), "done by an earlier attempt of this run");
                    out.report.actions.push(done.clone());
                    continue;
                }
                Step::Apply(action) => fill_replacement(action.clone(), created.as_deref()),
            };
            if let Some(err) = &failed_at {
                out.report.actions.push(ActionRecord {
                    action,
                    result: Outcome::Skipped {
                        reason: format!("an earlier action failed: {err}"),
                    },
                });
                continue;
            }
            // The notice that goes with the action, recorded with it.
            let notice = match steps.get(i + 1) {
                Some(Step::Apply(Action::Notify { notice })) if goes_with(&action, notice) => {
                    Some(notice)
                }
                _ => None,
            };
            let result = if job.dry_run {
                Outcome::Planned
            } else {
                let mark = RunMark {
                    run_id: &job.run_id,
                    notice,
                };
                self.apply(job, &mut ctx, &action, mark, &mut out, &mut created)
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

    /// Applies one action for real. `mark` (the run, and the notice that
    /// goes with the action) is recorded with a switch or a deletion.
    async fn apply(
        &self,
        job: &Job,
        ctx: &mut Ctx,
        action: &Action,
        mark: RunMark<'_>,
        out: &mut UserOutcome,
        created: &mut Option<String>,
    ) -> Result<Outcome, AgentError> {
        let iam = &self.clients.iam;
        let name = ctx.name().to_string();
        Ok(match action {
            Action::Notify { .. } => Outcome::Done { key_id: None },
            Action::Delete { key_id } => {
                // Recorded first: a retry of this run must be able to
                // report the deletion and its notice.
                if let Err(e) = self.record_deletion(ctx, key_id, mark).await {
                    return Ok(failed(format!(
                        "not deleted: the deletion cannot be recorded: {e}"
                    )));
                }
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
                    .record_then_switch(ctx, key_id, StatusType::Inactive, mark)
                    .await;
                if matches!(outcome, Outcome::Done { .. }) {
                    self.crash_at(FaultPoint::AfterRevoke, &name)?;
                }
                outcome
            }
            Action::Reactivate { key_id } => {
                // Recorded first: a reactivation keyfleet cannot remember
                // would be undone by the next run without a notice period.
                self.record_then_switch(ctx, key_id, StatusType::Active, mark)
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

    /// Records that `mark`'s run deletes `key_id` (with the owner's
    /// notice). A secret that is not keyfleet's cannot hold it: the
    /// deletion goes ahead unrecorded (as it did before deletions were
    /// recorded; only a retry's report misses it then). A user without a
    /// record gets one for this: a Secrets Manager secret, $0.40 a month
    /// (see the README's cost section).
    async fn record_deletion(
        &self,
        ctx: &mut Ctx,
        key_id: &str,
        mark: RunMark<'_>,
    ) -> Result<(), record::RecordError> {
        let Some(key) = ctx.user.snapshot.keys.iter().find(|k| k.id == key_id) else {
            // Not among the user's keys: IAM answers NoSuchEntity.
            return Ok(());
        };
        let Some(mut record) = ctx.found.writable(&self.account_id, ctx.name()) else {
            return Ok(());
        };
        record.record_deletion(key, now_utc(), mark);
        self.save(ctx, record).await
    }

    /// Records the deactivation (`Inactive`) or the reactivation (`Active`)
    /// of `key_id` by `mark`'s run in the protected record, then sets the
    /// key's status. If it cannot be recorded, the status is not changed.
    async fn record_then_switch(
        &self,
        ctx: &mut Ctx,
        key_id: &str,
        status: StatusType,
        mark: RunMark<'_>,
    ) -> Outcome {
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
            record.record_reactivation(&key, now_utc(), mark);
        } else {
            record.record_deactivation(&key, now_utc(), mark);
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
            run_id: Some(job.run_id.clone()),
        });
        record.sealed = Some(sealed.clone());
        self.save(ctx, record).await.map_err(|e| e.to_string())?;
        Ok(sealed)
    }
}

/// One step of a user's plan as this attempt runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// To apply now.
    Apply(Action),
    /// Done by an earlier attempt of this run (its record says so and IAM
    /// shows it): reported as done, not applied again.
    Replay(ActionRecord),
}

/// True when `notice` is the owner's notice of `action` (the plan puts it
/// right after the action).
fn goes_with(action: &Action, notice: &Notice) -> bool {
    let same = |key_id: &str| notice.key_id() == key_id;
    match action {
        Action::Deactivate { key_id } => {
            same(key_id) && matches!(notice, Notice::Deactivated { .. })
        }
        Action::Reactivate { key_id } => {
            same(key_id) && matches!(notice, Notice::Reactivated { .. })
        }
        Action::Delete { key_id } => {
            same(key_id)
                && matches!(
                    notice,
                    Notice::Deleted { .. } | Notice::UnusedDeleted { .. }
                )
        }
        Action::CreateKey | Action::Notify { .. } => false,
    }
}

/// The plan as this attempt runs it (see "Retries" in the module doc):
/// an action an earlier attempt of the run already did (`done`, oldest
/// first, with the notice recorded with it) is replayed, its recorded
/// notice replacing the one planned now (a reactivation's names the end
/// of the grace the first attempt announced); the key it created
/// (`created`) is reported, not created again. What it did that the plan
/// no longer holds is still reported. Without an earlier attempt every
/// action is applied.
fn resume(
    actions: Vec<Action>,
    done: &[(Action, Option<Notice>)],
    created: Option<&str>,
) -> Vec<Step> {
    let as_done = |action: Action, key_id: Option<&str>| {
        Step::Replay(ActionRecord {
            action,
            result: Outcome::Done {
                key_id: key_id.map(str::to_string),
            },
        })
    };
    let replay = |steps: &mut Vec<Step>, (action, notice): &(Action, Option<Notice>)| {
        steps.push(as_done(action.clone(), None));
        if let Some(notice) = notice {
            let notice = notice.clone();
            steps.push(as_done(Action::Notify { notice }, None));
        }
    };
    let mut left: Vec<&(Action, Option<Notice>)> = done.iter().collect();
    let mut steps = Vec::new();
    let mut creation = created;
    let mut actions = actions.into_iter().peekable();
    while let Some(action) = actions.next() {
        if action == Action::CreateKey {
            if let Some(id) = creation.take() {
                steps.push(as_done(action, Some(id)));
                continue;
            }
        }
        let Some(at) = left.iter().position(|(a, _)| *a == action) else {
            steps.push(Step::Apply(action));
            continue;
        };
        let earlier = left.remove(at);
        if earlier.1.is_some() {
            if let Some(Action::Notify { notice }) = actions.peek() {
                if goes_with(&action, notice) {
                    actions.next();
                }
            }
        }
        replay(&mut steps, earlier);
    }
    if let Some(id) = creation {
        steps.insert(0, as_done(Action::CreateKey, Some(id)));
    }
    for earlier in left {
        replay(&mut steps, earlier);
    }
    steps
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

    fn deactivated(key_id: &str, replacement: Option<&str>) -> Notice {
        Notice::Deactivated {
            key_id: key_id.into(),
            replacement: replacement.map(str::to_string),
        }
    }

    fn replayed(action: Action, key_id: Option<&str>) -> Step {
        Step::Replay(ActionRecord {
            action,
            result: Outcome::Done {
                key_id: key_id.map(str::to_string),
            },
        })
    }

    #[test]
    fn without_an_earlier_attempt_every_action_is_applied() {
        let plan = vec![
            Action::CreateKey,
            Action::Deactivate { key_id: "K".into() },
            Action::Notify {
                notice: deactivated("K", None),
            },
        ];
        let steps = resume(plan.clone(), &[], None);
        assert_eq!(steps, plan.into_iter().map(Step::Apply).collect::<Vec<_>>());
    }

    /// What the earlier attempt did is replayed where the plan has it, with
    /// the notice it recorded instead of the one planned now; the rest is
    /// applied; what the plan no longer holds is still reported.
    #[test]
    fn a_retry_replays_what_its_first_attempt_did_with_the_recorded_notice() {
        let deactivate = Action::Deactivate { key_id: "K".into() };
        let delete = Action::Delete { key_id: "J".into() };
        let plan = vec![
            Action::CreateKey,
            deactivate.clone(),
            Action::Notify {
                notice: deactivated("K", Some("planned-now")),
            },
        ];
        let done = vec![
            (deactivate.clone(), Some(deactivated("K", None))),
            (delete.clone(), Some(Notice::Deleted { key_id: "J".into() })),
        ];
        assert_eq!(
            resume(plan, &done, Some("NEW")),
            vec![
                replayed(Action::CreateKey, Some("NEW")),
                replayed(deactivate, None),
                replayed(
                    Action::Notify {
                        notice: deactivated("K", None)
                    },
                    None
                ),
                replayed(delete, None),
                replayed(
                    Action::Notify {
                        notice: Notice::Deleted { key_id: "J".into() }
                    },
                    None
                ),
            ]
        );
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
