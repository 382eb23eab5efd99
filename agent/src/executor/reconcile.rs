//! Reconciliation: a rotation a previous run left half-done (its intent
//! is still in the record) is finished or undone (see "Reconciliation" in
//! the module doc of [`crate::executor`]).

use super::{add_note, Ctx, Executor, UserOutcome};
use crate::record::Intent;
use crate::scan;
use keyfleet_protocol::{Action, ActionRecord, Job, Outcome};

impl Executor<'_> {
    /// Finishes or undoes a rotation a previous run left half-done (module
    /// doc). Returns the recovered key id when its sealed copy is sent again.
    pub(super) async fn reconcile(
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
}
