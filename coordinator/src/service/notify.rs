//! Notify: everything the coordinator sends to people. Owner emails (the new
//! key, its password, the notices) go out exactly once through one helper,
//! "claim in the store, send, release the claim on failure", which the
//! finalize marker of the summary email uses too; refused owner addresses
//! are recorded and alerted once; SES and SNS are called only from here.

use super::{Coordinator, CoordinatorError};
use crate::mail::{self, MailContext, NewKeyInfo};
use crate::store::{self, Put};
use crate::zipbox;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
use futures::stream::{self, StreamExt};
use keyfleet_protocol::{AccountResult, Action, Notice, Outcome, RunManifest};
use std::future::Future;
use time::OffsetDateTime;

/// The ledger claim of a new key's zip email: the run that sent it and the
/// zip's password, sealed to the coordinator (see `deliver_key`).
#[derive(serde::Serialize, serde::Deserialize)]
struct ZipClaim {
    run_id: String,
    password: keyfleet_protocol::SealedSecret,
}

/// What [`Coordinator::send_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// This call claimed the key and the send succeeded.
    Sent,
    /// The key was claimed already: nothing was sent.
    AlreadyClaimed,
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

/// The notices of a key that a reactivation lets go out once more.
const RESTARTED_BY_REACTIVATION: [&str; 3] =
    ["deactivation_scheduled", "deactivated", "still_in_use"];

/// The ledger entry's last segment for a notice: its kind, and for a
/// reactivation also the end of its grace, so that each reactivation of a
/// key is told once (a key can be reactivated more than once).
fn notice_ledger_kind(notice: &Notice) -> String {
    match notice {
        Notice::Reactivated { until, .. } => format!("reactivated-{}", until.unix_timestamp()),
        other => other.kind().to_string(),
    }
}

impl Coordinator {
    /// Sends the owners of one account their emails, each exactly once.
    /// Users are independent, so several are served at once; one user's
    /// emails keep their order (key file, password, notices).
    pub(super) async fn notify_owners(
        &self,
        manifest: &RunManifest,
        result: &AccountResult,
    ) -> Result<(), CoordinatorError> {
        if result.dry_run {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        // The futures are built before they are streamed: a closure over
        // `&UserReport` inside the stream would make this future's `Send`
        // bound unprovable (rustc's higher-ranked lifetime inference), and
        // the in-process runner needs it `Send`.
        let sends: Vec<_> = result
            .users
            .iter()
            .map(|user| self.notify_user(manifest, result, user, now))
            .collect();
        let outcomes: Vec<Result<(), CoordinatorError>> =
            stream::iter(sends).buffer_unordered(8).collect().await;
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
                self.deliver_key(manifest, &ctx, user, result, sealed)
                    .await?;
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
                &notice_ledger_kind(notice),
            );
            if let Notice::Reactivated { key_id, .. } = notice {
                // The key's story starts again: the reminders of its fresh
                // notice period and its second deactivation must reach the
                // owner, not be dropped as duplicates of the first ones.
                // Released before this notice is claimed (releasing twice is
                // harmless), so a coordinator stopped between the two
                // leaves nothing claimed that should have been released.
                for kind in RESTARTED_BY_REACTIVATION {
                    self.store
                        .delete(&store::ledger_key(
                            &result.account_id,
                            &user.user_name,
                            key_id,
                            kind,
                        ))
                        .await?;
                }
            }
            let send = async {
                match mail::notice_email(&ctx, notice) {
                    Ok(m) => self.send_email(&m).await,
                    Err(e) => {
                        // A bad address never fixes itself: log, keep the claim.
                        tracing::error!(user = %user.user_name, error = %e, "notice not sendable");
                        Ok(())
                    }
                }
            };
            self.send_once(
                &ledger,
                manifest.run_id.clone().into_bytes(),
                "text/plain",
                send,
            )
            .await?;
        }
        Ok(())
    }

    /// Claims `key` (a create-if-absent put of `claim`), then runs `send`
    /// only if this call made the claim. A failed send releases the claim
    /// (deletes `key`) so a retry sends it; a claim already held means it
    /// was sent (or is being sent) elsewhere, and nothing is done.
    pub(super) async fn send_once(
        &self,
        key: &str,
        claim: Vec<u8>,
        content_type: &str,
        send: impl Future<Output = Result<(), CoordinatorError>>,
    ) -> Result<Sent, CoordinatorError> {
        if !self.claim(key, claim, content_type).await? {
            return Ok(Sent::AlreadyClaimed);
        }
        self.release_on_failure(key, send.await).await?;
        Ok(Sent::Sent)
    }

    /// The first half of [`Coordinator::send_once`]: `true` when this call
    /// created `key`, `false` when it already existed.
    pub(super) async fn claim(
        &self,
        key: &str,
        claim: Vec<u8>,
        content_type: &str,
    ) -> Result<bool, CoordinatorError> {
        Ok(self.store.put_new(key, claim, content_type).await? == Put::Created)
    }

    /// The second half of [`Coordinator::send_once`]: when `sent` failed,
    /// releases the claim on `key` so the retry sends it, and returns the
    /// send's error.
    pub(super) async fn release_on_failure(
        &self,
        key: &str,
        sent: Result<(), CoordinatorError>,
    ) -> Result<(), CoordinatorError> {
        if let Err(e) = sent {
            self.store.delete(key).await?;
            return Err(e);
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
        if !self
            .claim(&key, text.clone().into_bytes(), "text/plain")
            .await?
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

    /// A new key's two emails, each exactly once: the zip, then its
    /// password, under two ledger entries. The password is random (from the
    /// OS generator) and is kept, sealed to the coordinator's own current
    /// key and bound to the ledger entry, in the zip's claim: when the
    /// password email fails after the zip went out, the retry opens it from
    /// there and sends the password of that zip; the zip is never sent
    /// twice with two passwords, and no password is stored in plain text. A
    /// box that cannot be opened (sealed to a key the ring does not hold, or
    /// forged) is recorded and alerted once: retrying cannot open it.
    async fn deliver_key(
        &self,
        manifest: &RunManifest,
        ctx: &MailContext,
        user: &keyfleet_protocol::UserReport,
        result: &AccountResult,
        sealed: &keyfleet_protocol::SealedCredential,
    ) -> Result<(), CoordinatorError> {
        let mail_err = |m: String| CoordinatorError::Mail {
            user: user.user_name.clone(),
            message: m,
        };
        let ring = self.ring_for(&sealed.key_id).await;
        let cred = match ring.open(&result.account_id, sealed) {
            Ok(cred) => cred,
            Err(e) => return self.refuse_box(manifest, result, user, sealed, &e).await,
        };
        let ledger = |kind| {
            store::ledger_key(
                &result.account_id,
                &user.user_name,
                &sealed.access_key_id,
                kind,
            )
        };
        let zip_ledger = ledger("new_key");
        let password = match self.kept_password(&ring, &zip_ledger).await? {
            Some(p) => p,
            None => zipbox::generate_password(),
        };
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
        let claim = ZipClaim {
            run_id: manifest.run_id.clone(),
            password: keyfleet_protocol::seal::seal_secret(
                &ring.current().public_key(),
                &zip_ledger,
                &password,
            )
            .map_err(|e| mail_err(e.to_string()))?,
        };
        let claim = serde_json::to_vec(&claim).expect("a plain struct serializes");
        let sent = self
            .send_once(&zip_ledger, claim, "application/json", self.send_email(&m1))
            .await?;
        // The zip went out earlier (another delivery of this result): its
        // claim holds the password it was sent with.
        let password = match sent {
            Sent::Sent => password,
            Sent::AlreadyClaimed => self
                .kept_password(&ring, &zip_ledger)
                .await?
                .unwrap_or(password),
        };
        let m2 = mail::password_email(ctx, &cred.access_key_id, &password)
            .map_err(|e| mail_err(e.to_string()))?;
        self.send_once(
            &ledger("new_key_password"),
            manifest.run_id.clone().into_bytes(),
            "text/plain",
            self.send_email(&m2),
        )
        .await?;
        tracing::info!(account = %result.account_id, user = %user.user_name, key = %mail::short_key(&cred.access_key_id), "new key delivered by email");
        Ok(())
    }

    /// The password a zip was sent with, from its ledger claim; `None` when
    /// no zip was sent yet, or the claim keeps no password this ring opens
    /// (a claim written before passwords were kept: the password email then
    /// carries a new password, which the log says).
    async fn kept_password(
        &self,
        ring: &keyfleet_protocol::KeyRing,
        zip_ledger: &str,
    ) -> Result<Option<keyfleet_protocol::Secret>, CoordinatorError> {
        let Some(bytes) = self.store.get(zip_ledger).await? else {
            return Ok(None);
        };
        let Ok(claim) = serde_json::from_slice::<ZipClaim>(&bytes) else {
            tracing::warn!(ledger = %zip_ledger, "zip claim keeps no password");
            return Ok(None);
        };
        let opened = ring
            .key(&claim.password.key_id)
            .and_then(|k| keyfleet_protocol::seal::open_secret(k, zip_ledger, &claim.password));
        match opened {
            Ok(p) => Ok(Some(p)),
            Err(e) => {
                tracing::error!(ledger = %zip_ledger, error = %e, "the zip's kept password does not open");
                Ok(None)
            }
        }
    }

    /// A new key whose box does not open: nothing is sent (the key stays
    /// in IAM as the agent created it, active), the refusal is recorded
    /// once per key in the ledger and alerted once.
    async fn refuse_box(
        &self,
        manifest: &RunManifest,
        result: &AccountResult,
        user: &keyfleet_protocol::UserReport,
        sealed: &keyfleet_protocol::SealedCredential,
        why: &keyfleet_protocol::SealError,
    ) -> Result<(), CoordinatorError> {
        let key = store::ledger_key(
            &result.account_id,
            &user.user_name,
            &sealed.access_key_id,
            "new_key_refused",
        );
        if !self
            .claim(&key, why.to_string().into_bytes(), "text/plain")
            .await?
        {
            return Ok(());
        }
        tracing::error!(run_id = %manifest.run_id, account = %result.account_id, user = %user.user_name, key = %mail::short_key(&sealed.access_key_id), reason = %why, "new key not delivered: its box does not open");
        self.alert(
            &format!("keyfleet run {}: new key not delivered", manifest.run_id),
            &format!(
                "Run {}, account {}, user {}: the new key {} was not emailed: {why}. The key is in IAM; if its key was retired too early, add it back to the ring, or rotate the user again.",
                manifest.run_id, result.account_id, user.user_name, sealed.access_key_id
            ),
        )
        .await;
        Ok(())
    }

    pub(super) async fn send_email(&self, m: &mail::Email) -> Result<(), CoordinatorError> {
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

    pub(super) async fn alert(&self, subject: &str, message: &str) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// The ledger kinds a reactivation releases are the kinds of the
    /// deactivation's notices, by name: renaming a kind cannot quietly
    /// stop the release.
    #[test]
    fn a_reactivation_releases_the_kinds_of_the_deactivation_notices() {
        let key_id = "AKIAIOSFODNN7EXAMPLE".to_string();
        let notices = [
            Notice::DeactivationScheduled {
                key_id: key_id.clone(),
                on: datetime!(2026-01-01 0:00 UTC),
                replacement: None,
            },
            Notice::Deactivated {
                key_id: key_id.clone(),
                replacement: None,
            },
            Notice::StillInUse {
                key_id: key_id.clone(),
                last_used: None,
                service: None,
                region: None,
                replacement: None,
            },
        ];
        let kinds: Vec<String> = notices.iter().map(notice_ledger_kind).collect();
        assert_eq!(kinds, RESTARTED_BY_REACTIVATION);
        let reactivated = Notice::Reactivated {
            key_id,
            until: datetime!(2026-01-11 0:00 UTC),
        };
        assert_eq!(notice_ledger_kind(&reactivated), "reactivated-1768089600");
    }
}
