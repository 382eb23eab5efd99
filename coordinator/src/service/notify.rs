//! Notify: everything the coordinator sends to people. Owner emails (the new
//! key, its password) go out exactly once through one helper, "claim in the
//! store, send, release the claim on failure", which the finalize marker of
//! the summary email uses too; the notices of a result are queued for the
//! owner's digest of the run (see `digests`), which the same ledger keeps to
//! once per notice; refused owner addresses are recorded and alerted once;
//! SES and SNS are called only from here and from `digests`.

use super::{Coordinator, CoordinatorError};
use crate::mail::digest::{self, DigestItem};
use crate::mail::{self, MailContext, NewKeyInfo};
use crate::zipbox;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
use futures::stream::{self, StreamExt};
use keyfleet_protocol::{AccountResult, Action, Notice, Outcome, RunManifest};
use keyfleet_reports::store::{self, Put};
use std::future::Future;
use time::OffsetDateTime;

/// An owner's address and the notices of one result for them, for the
/// run's digest.
type OwnerNotices = (String, Vec<DigestItem>);

/// The ledger claim of a new key's zip email (see `deliver_key`).
#[derive(serde::Serialize, serde::Deserialize)]
struct ZipClaim {
    run_id: String,
    /// The zip's password, sealed to the coordinator, in claims written
    /// before the password had its own ledger entry: read (never written)
    /// so that the password of such a zip is the one sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<keyfleet_protocol::SealedSecret>,
    /// `false` while the claimer is sending the zip, `true` once SES took
    /// it: only a confirmed zip's password may go out, since a zip whose
    /// send fails is released and sent again later. Claims written before
    /// the field stand for a sent zip (their claimer released them on
    /// failure, and the field's absence cannot tell more).
    #[serde(default = "claim_predates_confirmation")]
    sent: bool,
}

fn claim_predates_confirmation() -> bool {
    true
}

/// A zip claim's body.
fn claim_body(run_id: &str, sent: bool) -> Vec<u8> {
    serde_json::to_vec(&ZipClaim {
        run_id: run_id.to_string(),
        password: None,
        sent,
    })
    .expect("a plain struct serializes")
}

/// What an entry that may keep a zip's password holds.
enum Kept {
    Password(keyfleet_protocol::Secret),
    /// A delivery marker written without a password.
    Empty,
    /// Nothing: removed since it was found.
    Gone,
}

/// Whether the new keys of a run under `policy` are tracked until they
/// reach their owners (see `deliveries`): those of a mail-only delivery.
/// A copy in the delivery secret is delivered already.
fn tracks_delivery(policy: &keyfleet_protocol::Policy) -> bool {
    policy.delivery.by_email() && !policy.delivery.by_secrets_manager()
}

/// The ledger kinds of a new key: its zip email, its password email, and
/// the zip's password itself (sealed; no email).
const ZIP_KIND: &str = "new_key";
const PASSWORD_EMAIL_KIND: &str = "new_key_password";
const ZIP_PASSWORD_KIND: &str = "new_key_zip_password";

/// Why a new key's zip password could not be had. Never holds the
/// password.
#[derive(Debug, thiserror::Error)]
enum ZipPasswordError {
    /// The run store (or another infrastructure call) failed: retried as is.
    #[error(transparent)]
    Store(#[from] CoordinatorError),
    /// Sealing it, or opening the kept one, failed.
    #[error(transparent)]
    Seal(#[from] keyfleet_protocol::SealError),
    #[error("the kept password is unreadable: {0}")]
    Unreadable(String),
    #[error("the kept password vanished after it was stored")]
    Vanished,
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

/// The error to report of several sends, if any failed: a key ring that
/// could not be read comes first, since it is the one the caller retries
/// the message for (see [`CoordinatorError::KeyRing`]); otherwise the first.
pub(super) fn first_error(
    outcomes: impl IntoIterator<Item = Result<(), CoordinatorError>>,
) -> Result<(), CoordinatorError> {
    let mut first = None;
    for e in outcomes.into_iter().filter_map(Result::err) {
        if matches!(e, CoordinatorError::KeyRing { .. }) {
            return Err(e);
        }
        first.get_or_insert(e);
    }
    first.map_or(Ok(()), Err)
}

/// The notices of a key that a reactivation lets go out once more.
const RESTARTED_BY_REACTIVATION: [&str; 3] =
    ["deactivation_scheduled", "deactivated", "still_in_use"];

/// The ledger entry's last segment for a notice: its kind, and for a
/// reactivation also the end of its grace, so that each reactivation of a
/// key is told once (a key can be reactivated more than once).
pub(super) fn notice_ledger_kind(notice: &Notice) -> String {
    match notice {
        Notice::Reactivated { until, .. } => format!("reactivated-{}", until.unix_timestamp()),
        other => other.kind().to_string(),
    }
}

impl Coordinator {
    /// Sends the owners of one account their new keys, each exactly once,
    /// and queues every other notice for the owner's digest of the run
    /// (one stored part per owner and result, see `digests`). Users are
    /// independent, so several are served at once.
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
        let outcomes: Vec<Result<Option<OwnerNotices>, CoordinatorError>> =
            stream::iter(sends).buffer_unordered(8).collect().await;
        let mut queued: Vec<OwnerNotices> = Vec::new();
        let mut errors = Vec::new();
        for outcome in outcomes {
            match outcome {
                Ok(Some((to, items))) => {
                    match queued
                        .iter_mut()
                        .find(|(o, _)| super::digests::same_owner(o, &to))
                    {
                        Some((_, all)) => all.extend(items),
                        None => queued.push((to, items)),
                    }
                }
                Ok(None) => {}
                Err(e) => errors.push(Err(e)),
            }
        }
        errors.push(
            self.queue_digests(&manifest.run_id, &result.account_id, queued)
                .await,
        );
        first_error(errors)
    }

    /// The owners of every attempt of one account's job (see
    /// [`Coordinator::account_attempts`]), earliest first, so that a later
    /// attempt's notices come after an earlier one's. A key in two attempts
    /// (the retry found the first attempt's key and sealed it again) is
    /// mailed once: the ledger is per access key. One attempt's failure does
    /// not keep the others' mail back.
    pub(super) async fn notify_attempts(
        &self,
        manifest: &RunManifest,
        attempts: &[AccountResult],
    ) -> Result<(), CoordinatorError> {
        let mut outcomes = Vec::with_capacity(attempts.len());
        for result in attempts {
            outcomes.push(self.notify_owners(manifest, result).await);
        }
        first_error(outcomes)
    }

    async fn notify_user(
        &self,
        manifest: &RunManifest,
        result: &AccountResult,
        user: &keyfleet_protocol::UserReport,
        now: OffsetDateTime,
    ) -> Result<Option<OwnerNotices>, CoordinatorError> {
        // Every new key of a mail-only delivery is tracked until its owner
        // has it, whatever happens next (no address, a refused address, a
        // box that cannot be opened): its old key waits for it (see
        // `deliveries`). A key that is emailed gets its marker from
        // `deliver_key`, with its zip's password, before any mail.
        let sealed: Vec<_> = result
            .sealed
            .iter()
            .filter(|s| s.user_name == user.user_name)
            .collect();
        let refusal = user
            .email
            .as_ref()
            .and_then(|_| mail::owner_refusal(&manifest.policy, result, user));
        let emailed =
            user.email.is_some() && refusal.is_none() && manifest.policy.delivery.by_email();
        if tracks_delivery(&manifest.policy) && !emailed {
            for s in &sealed {
                self.mark_undelivered(&result.account_id, &user.user_name, &s.access_key_id)
                    .await?;
            }
        }
        let Some(to) = user.email.clone() else {
            return Ok(None);
        };
        if let Some(why) = refusal {
            self.refuse_owner(manifest, result, user, &why).await?;
            return Ok(None);
        }
        let ctx = MailContext {
            sender: self.config.sender.clone(),
            account_id: result.account_id.clone(),
            account_alias: result.account_alias.clone(),
            user_name: user.user_name.clone(),
            to,
            now,
            run_id: result.run_id.clone(),
            cutover_on_use: manifest.policy.cutover_on_use,
        };
        // The old keys whose deactivation date a new key's zip email tells.
        let mut told: Vec<&str> = Vec::new();
        if emailed {
            for s in &sealed {
                if self.deliver_key(manifest, &ctx, user, result, s).await? {
                    told.extend(user.actions.iter().filter_map(|a| match &a.action {
                        Action::Notify {
                            notice: Notice::DeactivationScheduled { key_id, .. },
                        } => Some(key_id.as_str()),
                        _ => None,
                    }));
                }
            }
        }
        let mut items = Vec::new();
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
            if matches!(notice, Notice::DeactivationScheduled { key_id, .. } if told.contains(&key_id.as_str()))
            {
                // Told in the new key's email (see `mail::new_key_email`):
                // claimed, not sent, so that the next runs' reminders of the
                // same date are not sent either.
                self.claim(&ledger, manifest.run_id.clone().into_bytes(), "text/plain")
                    .await?;
                continue;
            }
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
            let created = user
                .keys
                .iter()
                .find(|k| k.id == notice.key_id())
                .map(|k| k.created);
            items.push(DigestItem {
                account_id: result.account_id.clone(),
                account_alias: result.account_alias.clone(),
                user_name: user.user_name.clone(),
                notice: notice.clone(),
                next_step: digest::next_step(&manifest.policy, notice, created, now),
            });
        }
        Ok((!items.is_empty()).then_some((ctx.to, items)))
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
    pub(super) async fn release_on_failure<T>(
        &self,
        key: &str,
        sent: Result<T, CoordinatorError>,
    ) -> Result<T, CoordinatorError> {
        match sent {
            Ok(t) => Ok(t),
            Err(e) => {
                self.store.delete(key).await?;
                Err(e)
            }
        }
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
    /// password, under two ledger entries. Returns whether the zip email
    /// is out or on its way (claimed): it tells the owner when the old key
    /// is deactivated, so that notice is not sent apart.
    ///
    /// The password is random (from the OS generator), chosen once per key
    /// and kept sealed to the coordinator's current key, bound to the
    /// object that keeps it: every zip built for the key, by any delivery,
    /// the sweep included, has that password, so a zip sent again after a
    /// failure and the password email always match, and no password is
    /// stored in plain text. It is kept with a create-if-absent put (of two
    /// deliveries choosing at once, both use the one stored first) in the
    /// key's undelivered marker when the key is tracked (mail-only
    /// delivery, see `deliveries`): the marker lives exactly as long as a
    /// zip of the key may still be sent, and is removed once both emails
    /// are out. Otherwise (and behind a marker written empty, by a
    /// refusal or an earlier release) in a ledger entry of its own. Put
    /// first, read only when it was there: the usual delivery reads
    /// nothing.
    ///
    /// The password email goes out only once the zip is known sent: by the
    /// delivery that sent the zip, right after, whose claim of the password
    /// email says so; or by a later one that finds the zip's claim
    /// confirmed, which a delivery writes when the password cannot follow
    /// its zip at once. A delivery that finds the zip claimed, neither
    /// confirmed nor followed by its password (another is sending it, or
    /// was stopped while sending) sends nothing and fails, so the sweep
    /// comes back to it; an owner never gets the password of a zip that
    /// never came.
    ///
    /// A box that cannot be opened (sealed to a key the ring does not
    /// hold, or forged) is recorded and alerted once: retrying cannot open
    /// it. A key ring that cannot be read is an error, retried.
    async fn deliver_key(
        &self,
        manifest: &RunManifest,
        ctx: &MailContext,
        user: &keyfleet_protocol::UserReport,
        result: &AccountResult,
        sealed: &keyfleet_protocol::SealedCredential,
    ) -> Result<bool, CoordinatorError> {
        let account = &result.account_id;
        let tracked = tracks_delivery(&manifest.policy);
        let mail_err = |m: String| CoordinatorError::Mail {
            user: user.user_name.clone(),
            message: m,
        };
        let ring = match self.ring_for(&sealed.key_id).await {
            Ok(ring) => ring,
            Err(e) => {
                if tracked {
                    self.mark_undelivered(account, &user.user_name, &sealed.access_key_id)
                        .await?;
                }
                return Err(e);
            }
        };
        let cred = match ring.open(account, sealed) {
            Ok(cred) => cred,
            Err(e) => {
                if tracked {
                    self.mark_undelivered(account, &user.user_name, &sealed.access_key_id)
                        .await?;
                }
                self.refuse_box(manifest, result, user, sealed, &e).await?;
                return Ok(false);
            }
        };
        let ledger =
            |kind| store::ledger_key(account, &user.user_name, &sealed.access_key_id, kind);
        let zip_ledger = ledger(ZIP_KIND);
        let password_ledger = ledger(PASSWORD_EMAIL_KIND);
        let short = mail::short_key(&cred.access_key_id);
        let mut entries = Vec::with_capacity(2);
        if tracked {
            entries.push(store::undelivered_key(
                account,
                &user.user_name,
                &sealed.access_key_id,
            ));
        }
        entries.push(ledger(ZIP_PASSWORD_KIND));
        let password = self
            .zip_password(&ring, &entries)
            .await
            .map_err(|e| match e {
                ZipPasswordError::Store(e) => e,
                other => mail_err(format!("the zip password of key {short}: {other}")),
            })?;
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
        let claim = |sent| claim_body(&manifest.run_id, sent);
        if self
            .claim(&zip_ledger, claim(false), "application/json")
            .await?
        {
            // Room is kept for the password too: an owner is not left with
            // a zip and no password until the quota has room again.
            let sent = self
                .send_email_keeping(&m1, self.config.security_team.len() + 1)
                .await;
            self.release_on_failure(&zip_ledger, sent).await?;
            // SES took the zip: the password follows, and its claim says
            // the zip went out. Should the password not follow now, the
            // zip's claim is confirmed for the delivery that retries it.
            let m2 = mail::password_email(ctx, &cred.access_key_id, &password)
                .map_err(|e| mail_err(e.to_string()))?;
            let password_sent = self
                .send_once(
                    &password_ledger,
                    manifest.run_id.clone().into_bytes(),
                    "text/plain",
                    self.send_email(&m2),
                )
                .await;
            if let Err(e) = password_sent {
                if let Err(c) = self
                    .store
                    .put(&zip_ledger, claim(true), "application/json")
                    .await
                {
                    tracing::error!(ledger = %zip_ledger, error = %c, "the zip's confirmation was not written; its password waits for a confirmation that will not come");
                }
                return Err(e);
            }
        } else {
            let found = self.zip_claim(&zip_ledger).await?;
            if !found.as_ref().is_some_and(|c| c.sent) {
                if self.store.exists(&password_ledger).await? {
                    // Its sender sent the password too.
                    self.mark_delivered(account, &user.user_name, &cred.access_key_id)
                        .await?;
                    return Ok(true);
                }
                return Err(mail_err(format!(
                    "the zip of key {short} is claimed by another delivery and not confirmed sent; its password waits for it"
                )));
            }
            // A zip claimed before passwords were kept apart holds its own
            // password: that is the one the owner needs.
            let password = match found.and_then(|c| c.password) {
                Some(kept) => match ring
                    .key(&kept.key_id)
                    .and_then(|k| keyfleet_protocol::seal::open_secret(k, &zip_ledger, &kept))
                {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(ledger = %zip_ledger, error = %e, "the zip's kept password does not open");
                        password
                    }
                },
                None => password,
            };
            let m2 = mail::password_email(ctx, &cred.access_key_id, &password)
                .map_err(|e| mail_err(e.to_string()))?;
            self.send_once(
                &password_ledger,
                manifest.run_id.clone().into_bytes(),
                "text/plain",
                self.send_email(&m2),
            )
            .await?;
        }
        tracing::info!(account = %account, user = %user.user_name, key = %short, "new key delivered by email");
        self.mark_delivered(account, &user.user_name, &cred.access_key_id)
            .await?;
        Ok(true)
    }

    /// The zip claimed under `zip_ledger`, if it still is (a claim
    /// released meanwhile is not). A claim that is no `ZipClaim` (the run
    /// id alone) predates kept passwords and confirmation: it stands for a
    /// sent zip.
    async fn zip_claim(&self, zip_ledger: &str) -> Result<Option<ZipClaim>, CoordinatorError> {
        let Some(bytes) = self.store.get(zip_ledger).await? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_slice::<ZipClaim>(&bytes).unwrap_or(
            ZipClaim {
                run_id: String::new(),
                password: None,
                sent: true,
            },
        )))
    }

    /// The password of a key's zip, kept sealed under the first of
    /// `entries` that keeps one: a fresh one is put there if none is (a
    /// create-if-absent put); an entry that is there but empty (a marker
    /// written without it) passes to the next. The last entry is a ledger
    /// entry, only ever written with a password.
    async fn zip_password(
        &self,
        ring: &keyfleet_protocol::KeyRing,
        entries: &[String],
    ) -> Result<keyfleet_protocol::Secret, ZipPasswordError> {
        for entry in entries {
            let password = zipbox::generate_password();
            let sealed = keyfleet_protocol::seal::seal_secret(
                &ring.current().public_key(),
                entry,
                &password,
            )?;
            let body = serde_json::to_vec(&sealed).expect("a plain struct serializes");
            if self.claim(entry, body, "application/json").await? {
                return Ok(password);
            }
            // Another delivery stored one first: that is the key's password.
            match self.kept_password(ring, entry).await? {
                Kept::Password(p) => return Ok(p),
                Kept::Empty => continue,
                Kept::Gone => return Err(ZipPasswordError::Vanished),
            }
        }
        Err(ZipPasswordError::Vanished)
    }

    /// The password kept under `entry`. One that does not open (sealed to
    /// a key the ring no longer holds) is an error: a zip may have gone
    /// out with it, and a new password would not open it.
    async fn kept_password(
        &self,
        ring: &keyfleet_protocol::KeyRing,
        entry: &str,
    ) -> Result<Kept, ZipPasswordError> {
        let Some(bytes) = self
            .store
            .get(entry)
            .await
            .map_err(CoordinatorError::from)?
        else {
            return Ok(Kept::Gone);
        };
        if bytes.is_empty() {
            return Ok(Kept::Empty);
        }
        let sealed: keyfleet_protocol::SealedSecret = serde_json::from_slice(&bytes)
            .map_err(|e| ZipPasswordError::Unreadable(e.to_string()))?;
        let opened = ring
            .key(&sealed.key_id)
            .and_then(|k| keyfleet_protocol::seal::open_secret(k, entry, &sealed))?;
        Ok(Kept::Password(opened))
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

    /// Sends an owner's email, keeping room in the day's SES quota for the
    /// security team's summary (see [`super::pacing`]).
    pub(super) async fn send_email(&self, m: &mail::Email) -> Result<(), CoordinatorError> {
        self.send_email_keeping(m, self.config.security_team.len())
            .await
    }

    /// Sends `m` once SES's quota has room for it and `reserve` more
    /// recipients; a send the quota has no room for, or that SES refuses
    /// for its rate or its day, is [`CoordinatorError::MailDeferred`].
    pub(super) async fn send_email_keeping(
        &self,
        m: &mail::Email,
        reserve: usize,
    ) -> Result<(), CoordinatorError> {
        let to = m.to.join(",");
        self.pacer
            .admit(&self.clients.ses, &to, m.to.len(), reserve)
            .await?;
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
            .map_err(|e| {
                use aws_sdk_sesv2::error::ProvideErrorMetadata;
                if super::pacing::is_quota_refusal(e.code(), e.message()) {
                    CoordinatorError::MailDeferred {
                        to: to.clone(),
                        reason: format!("SES refused it for its quota ({})", ses_message(&e)),
                    }
                } else {
                    CoordinatorError::Ses {
                        to: to.clone(),
                        message: ses_message(&e),
                    }
                }
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
                used_from: Vec::new(),
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
