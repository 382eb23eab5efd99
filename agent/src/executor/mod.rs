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
//! 3. seal the key to the coordinator; with Secrets Manager delivery put the
//!    plain key in the user's delivery secret (`crate::delivery`); store the
//!    sealed copy in the record;
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
//!
//! **Who owns what.** The executor is its own type, `Executor`: the
//! clients, the account, the coordinator's key, the fault hooks and the
//! time budget of one job, borrowed from the [`Agent`](crate::run::Agent)
//! that runs it (`Agent::executor`). The agent calls it for each user and,
//! once the result is delivered, to clear the intents; the executor never
//! calls back into the agent, and stops a job only for an injected crash
//! ([`Crashed`], which the agent turns into its own error). So
//! `impl Agent` lives with `struct Agent` in [`crate::run`] alone, and the
//! modules depend one way: run on executor, executor on record, rules and
//! scan.
//!
//! The steps of a user are split by job: this module walks a user from its
//! keys to its report (`process_user`); `reconcile` finishes or undoes a
//! rotation a previous run left half-done; `apply` applies one action in
//! the crash-safe order above; `resume` is the pure part of "Retries"
//! (which steps of a plan an earlier attempt already did).

mod apply;
mod reconcile;
mod resume;

use crate::budget::Budget;
use crate::clients::AgentClients;
use crate::fault::{Crashed, Faults};
use crate::record::{self, Loaded, RunMark, UserRecord};
use crate::rules::{self, UserPlan, UserSnapshot};
use crate::scan::{self, ScannedUser};
use keyfleet_protocol::{
    Action, ActionRecord, Job, JobMode, KeyState, KeyStatus, Notice, Outcome, PublicKey,
    SealedCredential, UserReport, Verdict,
};
use resume::{fill_replacement, goes_with, resume, Step};
use time::OffsetDateTime;

/// What happens to a user's intent after the result is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AfterSend {
    /// Nothing to do.
    Nothing,
    /// Clear the intent in this record (last written state).
    ClearIntent {
        record: Box<UserRecord>,
        /// The item version it was written at.
        version: u64,
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

/// One key's CloudTrail events, read once per user and run: by the
/// handover check, then by the places of use of the same key.
struct KeyTrail {
    key_id: String,
    /// The replacement's creation, from which the events were read.
    since: OffsetDateTime,
    read: crate::trail::Read,
}

/// What the executor works with for one job, borrowed from the agent that
/// runs it (see "Who owns what" in the module doc).
pub(crate) struct Executor<'a> {
    /// The account's table, its policy checked (records).
    pub(crate) table: &'a crate::table::Table,
    pub(crate) clients: &'a AgentClients,
    pub(crate) account_id: &'a str,
    /// Seals every new key (from the agent's own configuration).
    pub(crate) coordinator_key: &'a PublicKey,
    pub(crate) faults: &'a Faults,
    pub(crate) budget: &'a Budget,
}

impl Executor<'_> {
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

    /// With Secrets Manager delivery, in a scheduled run: the older active
    /// key of a pair that IAM shows used after its replacement was created,
    /// when CloudTrail shows those uses were only the handover read
    /// ([`crate::handover`]). A lookup that fails leaves the key in use.
    /// Also returns what the lookup read, for [`Self::where_used`].
    async fn handovers(
        &self,
        job: &Job,
        user: &UserSnapshot,
        now: OffsetDateTime,
    ) -> (Vec<String>, Option<KeyTrail>) {
        if !matches!(job.mode, JobMode::Scheduled) || !job.policy.delivery.by_secrets_manager() {
            return (Vec::new(), None);
        }
        let mut active: Vec<&KeyState> = user
            .keys
            .iter()
            .filter(|k| k.status == KeyStatus::Active)
            .collect();
        active.sort_by_key(|k| (k.created, k.id.clone()));
        let [old, new] = active[..] else {
            return (Vec::new(), None);
        };
        if old.last_used.is_none_or(|u| u <= new.created) {
            return (Vec::new(), None);
        }
        let ct = &self.clients.cloudtrail;
        let read = match crate::trail::key_events(ct, &old.id, new.created, None).await {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(user = %user.user_name, key = %old.id, error = %e, "handover not checked: the key counts as in use");
                return (Vec::new(), None);
            }
        };
        let handed = ct.config().region().is_some_and(|region| {
            crate::handover::handed_over(&read, &user.user_name, old, region.as_ref(), now)
        });
        let trail = KeyTrail {
            key_id: old.id.clone(),
            since: new.created,
            read,
        };
        (
            if handed {
                vec![old.id.clone()]
            } else {
                Vec::new()
            },
            Some(trail),
        )
    }

    /// Each "still in use" notice of the plan gets where its key was used
    /// from since its replacement was created ([`crate::where_used`]), from
    /// `read` when the handover check read that key's events already. A
    /// lookup that fails leaves the notice as the rules made it.
    async fn where_used(&self, user: &UserSnapshot, plan: &mut UserPlan, read: Option<KeyTrail>) {
        let mut read = read;
        for action in &mut plan.actions {
            let Action::Notify {
                notice:
                    Notice::StillInUse {
                        key_id,
                        replacement,
                        used_from,
                        ..
                    },
            } = action
            else {
                continue;
            };
            let since = user
                .keys
                .iter()
                .filter(|k| {
                    Some(&k.id) == replacement.as_ref()
                        || (replacement.is_none() && k.id != *key_id)
                })
                .map(|k| k.created)
                .max();
            let (Some(since), Some(key)) = (since, user.keys.iter().find(|k| k.id == *key_id))
            else {
                continue;
            };
            let own = read
                .take_if(|t| t.key_id == *key_id && t.since == since)
                .map(|t| t.read);
            match crate::where_used::look_up(&self.clients.cloudtrail, key, since, own).await {
                Ok(sites) => *used_from = sites,
                Err(e) => {
                    tracing::warn!(user = %user.user_name, key = %key_id, error = %e, "where the key is used was not looked up");
                }
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
    ) -> Result<UserOutcome, Crashed> {
        let emergency = matches!(job.mode, JobMode::Rotate { .. });
        // A reactivation is planned from the protected record (only a key
        // keyfleet deactivated may be switched back on): no plan before it
        // is read.
        let reactivation = matches!(job.mode, JobMode::Reactivate { .. });
        let targeted = emergency || reactivation;
        let mut out = UserOutcome {
            report: UserReport {
                path: user.snapshot.path.clone(),
                keys: user.snapshot.keys.clone(),
                mfa_active: user.mfa_active,
                password_enabled: user.password_enabled,
                ..UserReport::new(user.snapshot.user_name.clone(), Verdict::Compliant)
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
        // From here on the user costs IAM and DynamoDB calls: start
        // it only while the invocation has time to finish it and send the
        // result (see `crate::budget`).
        if !self.budget.may_start() {
            return Ok(self.user_deferred(out));
        }
        let found = match record::load(self.table, self.account_id, &user.snapshot.user_name).await
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
                        let version = match &ctx.found {
                            Loaded::Trusted(_, v) => *v,
                            _ => 0,
                        };
                        ctx.found = Loaded::Trusted(Box::new(r), version);
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

        let (handed_over, read) = self.handovers(job, &planned, now).await;
        planned.handed_over = handed_over;
        let mut plan = match self.plan(job, &planned, now) {
            Ok(p) => p,
            Err(e) => return Ok(self.user_failed(out, e)),
        };
        self.where_used(&planned, &mut plan, read).await;
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
        // A key that could not be delivered is not created: with Secrets
        // Manager delivery, a secret at the user's name that is not
        // keyfleet's stops it here, as an untrusted record does.
        // (A read: a dry run checks too, so that its plan is the run's.)
        if plan.actions.contains(&Action::CreateKey) && job.policy.delivery.by_secrets_manager() {
            if let Err(reason) = crate::delivery::check(
                &self.clients.secrets,
                self.account_id,
                &ctx.user.arn,
                ctx.name(),
            )
            .await
            {
                out.report.verdict = Verdict::Unreachable;
                add_note(&mut out.report, format!("no new key: {reason}"));
                self.finish(&mut ctx, &mut out);
                return Ok(out);
            }
        }
        if let (true, Loaded::Untrusted { reason }) =
            (plan.actions.contains(&Action::CreateKey), &ctx.found)
        {
            // No key can be stored for this user: create nothing at all.
            out.report.verdict = Verdict::Unreachable;
            add_note(
                &mut out.report,
                format!(
                    "no new key: its record in table {} is not keyfleet's ({reason})",
                    crate::table::TABLE_NAME
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
        if let Loaded::Trusted(r, version) = &ctx.found {
            if r.intent.is_some() && !ctx.keep_intent {
                out.after_send = AfterSend::ClearIntent {
                    record: r.clone(),
                    version: *version,
                };
            }
        }
    }

    /// Writes the record and remembers it as the current state.
    async fn save(&self, ctx: &mut Ctx, record: UserRecord) -> Result<(), record::RecordError> {
        ctx.found = record::save(self.table, &ctx.found, &record).await?;
        Ok(())
    }

    /// Clears the intents of the users whose result was delivered, in as
    /// few requests as the table allows ([`crate::table::Table::put_many`]).
    pub(crate) async fn clear_intents(&self, records: Vec<(Box<UserRecord>, u64)>) {
        let items: Vec<(String, String, Option<u64>)> = records
            .into_iter()
            .map(|(mut record, version)| {
                record.intent = None;
                let (pk, body) = record::item(&record);
                (pk, body, Some(version))
            })
            .collect();
        for ((pk, _, _), written) in items.iter().zip(self.table.put_many(&items).await) {
            if !matches!(written, Ok(crate::table::Written::At(_))) {
                // Harmless: the next run sees the intent, finds the key
                // stored and sends its sealed copy again (deduplicated).
                tracing::warn!(item = %pk, outcome = ?written, "could not clear rotation intent");
            }
        }
    }
}

#[cfg(test)]
mod tests;
