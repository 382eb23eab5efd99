//! One action applied for real, in the crash-safe order of the module doc
//! of [`crate::executor`]: every switch and deletion is recorded before IAM
//! is called, and a new key is created under an intent, sealed and stored
//! before anything is revoked.

use super::{failed, Ctx, Executor, UserOutcome};
use crate::fault::{Crashed, FaultPoint};
use crate::record::{self, CurrentKey, Intent, RunMark};
use crate::scan;
use aws_sdk_iam::types::StatusType;
use keyfleet_protocol::{Action, Credential, Job, Outcome, SealedCredential, Secret};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

impl Executor<'_> {
    /// Applies one action for real. `mark` (the run, and the notice that
    /// goes with the action) is recorded with a switch or a deletion.
    pub(super) async fn apply(
        &self,
        job: &Job,
        ctx: &mut Ctx,
        action: &Action,
        mark: RunMark<'_>,
        out: &mut UserOutcome,
        created: &mut Option<String>,
    ) -> Result<Outcome, Crashed> {
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
                        self.faults.crash_at(FaultPoint::AfterRevoke, &name)?;
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
                    self.faults.crash_at(FaultPoint::AfterRevoke, &name)?;
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
    /// record gets one for this: an item of the account's table.
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
        let Some(mut record) = ctx.found.writable(self.account_id, ctx.name()) else {
            return Ok(());
        };
        record.record_deletion(key, OffsetDateTime::now_utc(), mark);
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
        let Some(mut record) = ctx.found.writable(self.account_id, &name) else {
            return failed(format!(
                "not {what}ed: the {what}ion cannot be recorded, the user's record in table {} is not keyfleet's",
                crate::table::TABLE_NAME
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
            record.record_reactivation(&key, OffsetDateTime::now_utc(), mark);
        } else {
            record.record_deactivation(&key, OffsetDateTime::now_utc(), mark);
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
    ) -> Result<Result<String, String>, Crashed> {
        let iam = &self.clients.iam;
        let name = ctx.name().to_string();
        let Some(mut record) = ctx.found.writable(self.account_id, &name) else {
            return Ok(Err(format!(
                "the user's record in table {} is not keyfleet's",
                crate::table::TABLE_NAME
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
            at: OffsetDateTime::now_utc(),
            before,
        };
        record.intent = Some(intent.clone());
        if let Err(e) = self.save(ctx, record).await {
            return Ok(Err(format!(
                "rotation intent not recorded, no key created: {e}"
            )));
        }
        self.faults.crash_at(FaultPoint::AfterIntent, &name)?;

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
            account_id: self.account_id.to_string(),
            user_name: name.clone(),
            access_key_id: key.access_key_id().to_string(),
            secret_access_key: Secret::new(key.secret_access_key()),
            created: key
                .create_date()
                .map(scan::to_time)
                .unwrap_or_else(OffsetDateTime::now_utc),
        };
        self.faults.crash_at(FaultPoint::AfterCreate, &name)?;

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
        self.faults.crash_at(FaultPoint::AfterStore, &name)?;
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

    /// Seals the new key for the coordinator, puts the plain key in the
    /// user's delivery secret with Secrets Manager delivery
    /// ([`crate::delivery`]), and records the key (never its secret) in
    /// the user's record. The intent stays.
    async fn store_new_key(
        &self,
        job: &Job,
        ctx: &mut Ctx,
        cred: &Credential,
    ) -> Result<SealedCredential, String> {
        let sealed =
            keyfleet_protocol::seal::seal(self.coordinator_key, cred).map_err(|e| e.to_string())?;
        let mut record = ctx
            .found
            .writable(self.account_id, &cred.user_name)
            .ok_or("the record is not keyfleet's")?;
        if job.policy.delivery.by_secrets_manager() {
            crate::delivery::store(&self.clients.secrets, &ctx.user.arn, cred).await?;
        }
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
            secret_access_key: None,
            run_id: Some(job.run_id.clone()),
        });
        record.sealed = Some(sealed.clone());
        self.save(ctx, record).await.map_err(|e| e.to_string())?;
        Ok(sealed)
    }
}
