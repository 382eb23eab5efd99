//! The rotation rules: what happens to one IAM user's access keys.
//!
//! [`plan_user`] turns a user's keys and tags and the [`Policy`] into an
//! ordered list of [`Action`]s and a [`Verdict`]. It is a pure function of its
//! inputs (no clock, no I/O): the same snapshot at the same instant gives the
//! same plan, which is what makes a dry run, `keyfleet plan` and a real run
//! agree. [`plan_emergency`] is the security team's "rotate this user now".
//! [`simulate`] applies a plan to a list of keys the way IAM would; the dry-run
//! predictor uses it to show the keys after a run, and the tests use it to
//! check the invariants.
//!
//! # The rules
//!
//! Keys are taken oldest first (creation time, then id). `age` is the time
//! since creation, `idle` the time since the last use (or since creation for a
//! key never used). Every threshold comes from the policy. Each rule is one
//! named function below (`older_of_two_active`, `hard_limit`,
//! `replacement`, `unused`, `inactive_expired`) with its own table
//! test; the planner composes them.
//!
//! - An exempt user gets nothing; a user without keys gets nothing.
//! - An inactive key is deleted once its deletion date has passed (see
//!   "Deletion date" below; it is `created + delete_after` in the ordinary
//!   case), and, when keyfleet deactivated it, no sooner than the recovery
//!   window (`delete_after - deactivate_after`) after that deactivation, as
//!   recorded in the protected per-user record. Owner notice: `Deleted`.
//! - **Never deactivate and delete one key in one run.** A key this plan
//!   deactivates stays inactive, and can be switched back on, until a later
//!   run; a key found inactive without a record keeps the deletion date
//!   alone. The one exception is an emergency rotation that names one of two
//!   active keys (below).
//! - An active key idle for `unused_delete_after` is deleted and not
//!   replaced, directly, without a deactivation first (the seed behaviour,
//!   kept: nobody uses it). Owner notice: `UnusedDeleted`.
//! - A user's only active key gets a replacement at `rotate_after`, if the new
//!   key can be delivered (Secrets Manager delivery, or email delivery and an
//!   email tag); an inactive key is deleted first to make room. Owner notice:
//!   `DeactivationScheduled` for the old key (the executor fills in the new
//!   key's id). Undeliverable: nothing is created and the user is reported
//!   `Unreachable`; the inactive key is not deleted just to make room.
//! - With two active keys, the older one is deactivated on its deactivation
//!   date, `max(old.created + deactivate_after, replacement.created +
//!   notice_period)`. **The notice period is never cut short**: whatever the
//!   old key's age (a first deployment finds keys of 125 days), its
//!   replacement gets the whole `deactivate_after - rotate_after` before the
//!   old key is switched off. Before that date the owner is reminded
//!   (`DeactivationScheduled`). On or after it, a key used after its
//!   replacement was created is left alone and the owner is told where it
//!   was last used (`StillInUse`); otherwise it is deactivated
//!   (`Deactivated`).
//! - Hard limit: an active key reaching `max_key_age` is deactivated even if
//!   in use (unless the limit is `never`), but only once its replacement has
//!   had the notice period. The policy setting
//!   `deactivate_at_max_age_without_notice` (off by default) deactivates it
//!   in the run that finds it instead, right after creating the
//!   replacement.
//! - Clean-up mode (first run only): inactive keys past their deletion date are
//!   deleted, and active keys past `deactivate_after` of users without an email
//!   tag are deactivated (unless mid-switch, below); silently, no new keys,
//!   nothing else. Clean-up never deletes an active key.
//!
//! Invariants no policy can break, each checked by a property test: never more
//! than two keys; every deletion comes before the new key; a key used after
//! its replacement was created is not deactivated before `max_key_age`; no
//! key is created that cannot be delivered; every deactivation and deletion is
//! followed by a notice about that key (except in clean-up mode, which is
//! silent); re-planning after the plan was applied (its deactivations
//! recorded) finds nothing left to do; never deactivate and delete one key in
//! one run; and, on a day-by-day timeline, every deactivation of an owned key
//! by a scheduled run comes at least one notice period after a
//! `DeactivationScheduled` notice for that key. The named exceptions to that
//! last one: unused-key deletion (a deletion of a key nobody uses), an
//! unreachable user at the hard limit (nobody to notify), clean-up mode
//! (silent), emergency rotation (an explicit order), immediate enforcement
//! (`deactivate_at_max_age_without_notice`), and a pair of keys that
//! predates keyfleet's first run (its notice period counts from the younger
//! key's creation).
//!
//! # Delivery-confirmed deactivation
//!
//! An old key is never switched off before its replacement reached the
//! owner. The job carries, for the account, the new keys whose delivery the
//! coordinator tracks (`Job::deliveries`, from its ledger: zip and password
//! both sent). While the younger key of an active pair awaits delivery, the
//! older key is neither deactivated nor deleted, whatever its age (the hard
//! limit waits too), an inactive older key is not deleted, a key that
//! itself awaits delivery is neither replaced again, switched off nor
//! deleted as unused (nobody could use it yet), and no
//! reminder is sent (its date is unknown); the user's row says which key is awaited
//! (verdict `PendingDeactivation`). Once delivered, the pair rule counts the
//! replacement from its delivery instead of its creation, so the owner
//! always has the whole notice period with the key in hand. The coordinator
//! alerts, by name, a replacement still undelivered after the policy's
//! interval. Property test: no deactivation or deletion of a key whose
//! replacement awaits delivery, for any policy and keys.
//!
//! # Decisions where the design is silent
//!
//! **A plan runs the rules to a fixed point.** One rule can make another due
//! at the same instant: deactivating a key that is already past its deletion
//! date makes it due for deletion, and deactivating the older of two keys
//! leaves the younger one alone and perhaps due for its own replacement. The
//! plan applies the rules until nothing more is due, so that a job delivered
//! twice changes nothing the second time and a dry run shows everything the
//! run will do, rather than leaving half of it to the next run. The actions
//! are then laid out in one canonical order: keys that end up deleted (oldest
//! first, each preceded by its deactivation when this plan deactivated it),
//! then the new key, then the deactivation of keys that remain, then reminders
//! about the pair that remains. Deleting comes before creating so IAM's limit
//! of two keys is never hit, and the key being replaced is revoked only after
//! the new one exists (the secret is stored before anything is revoked).
//!
//! **A key that was never used is not replaced.** Between `rotate_after` and
//! `unused_delete_after` a never-used key is left as it is (verdict
//! `Compliant`), and it is deleted as unused later. Issuing a fresh credential
//! for one nobody uses only doubles what can leak; an owner who starts using
//! the key in time gets the ordinary rotation. A key used at least once, even
//! long ago, is rotated normally until it crosses `unused_delete_after`.
//!
//! **Deletion date of an inactive key.** It is the latest of:
//! `created + delete_after`; the last use plus the recovery window
//! (`delete_after - deactivate_after`); and, when a younger active key (its
//! replacement) exists, `replacement.created + delete_after - rotate_after`.
//! The second term matters for keys deactivated while in use (the hard limit,
//! or clean-up): IAM records no deactivation time, but an inactive key cannot
//! be used, so its last use is a lower bound of its deactivation, and a key
//! that was in use when it was switched off stays recoverable for the whole
//! window instead of being deleted in the same run. The third term mirrors the
//! deactivation date (a late replacement shifts the deletion as it shifts the
//! deactivation) and keeps the old key inactive, not deleted, in the run that
//! creates its replacement and deactivates it at once (hard limit), which
//! would otherwise need a deletion after the creation. A key that must go to
//! make room for a new key is deleted whatever its deletion date (two keys is
//! IAM's limit), except one keyfleet deactivated in this run or within the
//! recovery window: then the replacement waits for a later run. Operators who want a recovery window after every hard-limit
//! deactivation can also set `delete_after` above `max_key_age`.
//!
//! **The hard limit is hard, for every user, but never a lock-out.** A key
//! reaching `max_key_age` is deactivated even when the owner is unreachable
//! (verdict `Deactivated`, which outranks `Unreachable`): an old credential
//! nobody can be told about is the case the limit exists for. It is
//! deactivated, never deleted in that run: someone can switch it back on
//! during the recovery window. For a deliverable user whose only active key
//! reaches the limit, the replacement is created and the old key is
//! deactivated a full notice period later (the owner is never left without a
//! key, nor without time to switch); a never-used key at the limit is
//! deactivated without a replacement.
//!
//! **"Used after its replacement was created" is taken literally**: the last
//! use is strictly later than the replacement's creation. An owner who used
//! the old key even once after the new one arrived keeps it until
//! `max_key_age` and is told where it was used (`StillInUse`). Anything laxer
//! (say, "used in the last few days") would switch off keys that may still be
//! in use, which the design forbids.
//!
//! **A younger active key past `rotate_after` waits.** With two active keys no
//! third can be made; the younger key is rotated once the older one is gone.
//! An inactive key next to an active key that is not due for rotation simply
//! waits for its own deletion date.
//!
//! **Reminders repeat.** `DeactivationScheduled` and `StillInUse` are part of
//! every plan while they hold, so `plan` always says what is pending; sending
//! each notice once is the job of the coordinator's notification ledger.
//!
//! **Verdict priority**, when several things happen to one user:
//! `Rotated > Deactivated > StillInUse > Unreachable > Cleaned >
//! PendingDeactivation > Compliant` ([`VERDICT_PRIORITY`]). What changes or
//! endangers a key in use comes first; `Unreachable` outranks routine
//! deletions and reminders because it is the one that needs a person (someone
//! must add an email tag) and would otherwise hide behind `Cleaned`.
//!
//! **A replacement is a younger active key.** An inactive key cannot be
//! switched to, so it protects nothing: the invariant about keys used after
//! their replacement was created looks at younger active keys only.
//!
//! **Clean-up mode** uses the same deletion date as a scheduled run. "Users
//! without an email tag" means without a usable email address, whatever the
//! delivery: clean-up removes old keys of users nobody can be told about.
//! A pair whose older key was used after the younger one was created is left
//! whole (below the hard limit): deactivating the younger key would leave the
//! older one without a replacement, and a second delivery of the job would
//! then deactivate that one too. Clean-up does nothing else: no unused-key
//! deletion, no hard limit for users with an email (the next scheduled run
//! applies those, with notices). A key deactivated by clean-up that is already past its deletion date is
//! deleted in the same plan (fixed point, above). Its verdict only describes
//! what clean-up did (`Deactivated`, `Cleaned` or `Compliant`).
//!
//! **Emergency rotation** is an explicit order for one named user, so it
//! ignores the exempt tag and the clean-up flag. A user without keys gets none
//! (an emergency replaces credentials, it does not grant new ones). It never
//! deactivates or deletes an active key nobody named: a user with two active
//! keys needs the key to replace (`key_id`), which is then deactivated and
//! deleted to make room (the one exception to "never deactivate and delete
//! one key in one run"); the other key is not touched. The replaced key stays
//! active unless `deactivate_old` (default false in the CLI, the Lambda's
//! manual event and the API). An unreachable user gets no key, but with
//! `deactivate_old` the named (or only) active key is still deactivated:
//! containing a leaked key comes before keeping a service running.
//!
//! **Reactivation** ([`plan_reactivation`]) is the security team's way
//! back when a deactivation broke an application: only a key keyfleet
//! deactivated (the protected record says so) and has not deleted, and
//! only when that deactivation is the key's latest: a key switched back on
//! and then deactivated by hand (no keyfleet deactivation recorded after
//! the reactivation) stays off. It is
//! recorded in the protected record, and the key then has a grace of one
//! notice period (`deactivate_after - rotate_after`) from the
//! reactivation: no rule deactivates it (not the pair rule, not the hard
//! limit, not clean-up) and it is not deleted as unused before then, and
//! the reminders name the end of the grace as its deactivation date. After
//! the grace the ordinary rules apply: a key still not used after its
//! replacement was created is deactivated again (with its notice), and
//! deleted no sooner than the recovery window after that. The grace is
//! bounded, so the hard limit is delayed by at most one notice period, and
//! only by an explicit order. A key switched back on outside keyfleet (no
//! record of a reactivation) gets no grace: the next run deactivates it
//! again, with a notice.
//!
//! **Tags.** The email tag key is matched exactly, its value trimmed; it must
//! pass the one deliverability rule of `keyfleet_protocol::address` (one
//! bare address of an internet domain, and in the policy's `owner_domains`
//! when that allow-list is set), which the coordinator applies again before
//! mailing, so a key is never created for an owner the coordinator would
//! refuse; such a user is `Unreachable` and the report row says why. The
//! exempt tag key is matched exactly, its value trimmed and compared
//! ignoring ASCII case. No other tag means anything to keyfleet: in
//! particular no tag can cause a deletion.
//!
//! **Clock skew.** A last use later than `now` counts as `now`; a key created
//! later than `now` counts as created `now`; so does a deactivation or a
//! reactivation the protected record dates later than `now` (a record can
//! be forged: a reactivation "in year 9999" must not keep a key active for
//! ever, and grants one notice period of grace from `now` at most).
//!
//! **Key ids.** Actions name keys by id. A snapshot read from the credential
//! report has no ids; when its plan is not empty, the ids must be read and the
//! user planned again before anything is executed.

use keyfleet_protocol::{Action, Duration, KeyState, KeyStatus, Limit, Notice, Policy, Verdict};
use std::cmp::Ordering;
use std::fmt;
use time::{OffsetDateTime, PrimitiveDateTime};

/// IAM allows at most two access keys per user.
pub const MAX_KEYS: usize = 2;

/// Verdicts a plan can end in, most important first. [`plan_user`] reports
/// the first one that applies.
pub const VERDICT_PRIORITY: [Verdict; 7] = [
    Verdict::Rotated,
    Verdict::Deactivated,
    Verdict::StillInUse,
    Verdict::Unreachable,
    Verdict::Cleaned,
    Verdict::PendingDeactivation,
    Verdict::Compliant,
];

/// One IAM user as the scan saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserSnapshot {
    pub user_name: String,
    pub path: String,
    pub tags: Vec<(String, String)>,
    /// In any order; the rules sort them oldest first.
    pub keys: Vec<KeyState>,
    /// Keys keyfleet deactivated, and when, from the protected per-user
    /// record (`crate::record`). Empty when there is no trusted record.
    pub deactivated: Vec<(String, OffsetDateTime)>,
    /// Keys the security team reactivated, and when, from the same record
    /// (see [`plan_reactivation`]).
    pub reactivated: Vec<(String, OffsetDateTime)>,
    /// This user's new keys whose delivery the coordinator tracks (from the
    /// job): `None` while a key awaits delivery, else when it was delivered
    /// (see "Delivery-confirmed deactivation" in the module doc).
    pub deliveries: Vec<(String, Option<OffsetDateTime>)>,
}

/// What the rules decided for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPlan {
    pub verdict: Verdict,
    /// The owner's address from the email tag, if usable.
    pub email: Option<String>,
    /// In the order the executor must apply them.
    pub actions: Vec<Action>,
    pub exempt: bool,
    /// Why the user is unreachable, or which replacement is awaited (for
    /// the report row), when it is.
    pub note: Option<String>,
}

impl UserPlan {
    /// True when the plan changes IAM (anything but notices).
    pub fn mutates_iam(&self) -> bool {
        self.actions.iter().any(Action::mutates_iam)
    }
}

/// The owner's email address under the one deliverability rule of
/// `keyfleet_protocol::address` (the coordinator applies the same rule).
pub fn owner_email(tags: &[(String, String)], policy: &Policy) -> Option<String> {
    policy.owner_email(tags).ok()
}

/// Why a new key could not reach the user's owner, for the report row.
fn unreachable_note(tags: &[(String, String)], policy: &Policy) -> String {
    match policy.owner_email(tags) {
        Err(e) => format!("no new key: {e}"),
        Ok(_) => "no new key: the owner cannot be reached".into(),
    }
}

/// True when the user carries the exempt tag: exact key, value trimmed and
/// compared ignoring ASCII case.
pub fn is_exempt(tags: &[(String, String)], policy: &Policy) -> bool {
    tags.iter().any(|(k, v)| {
        *k == policy.exempt_tag.key
            && v.trim()
                .eq_ignore_ascii_case(policy.exempt_tag.value.trim())
    })
}

/// True when a new key can reach its owner.
pub fn is_deliverable(policy: &Policy, email: Option<&str>) -> bool {
    policy.delivery.by_secrets_manager() || (policy.delivery.by_email() && email.is_some())
}

/// Plans one user's scheduled run (or clean-up, with `policy.cleanup`).
///
/// Deterministic: same inputs, same plan (this is what makes dry-run == run).
pub fn plan_user(user: &UserSnapshot, policy: &Policy, now: OffsetDateTime) -> UserPlan {
    let email = owner_email(&user.tags, policy);
    let exempt = is_exempt(&user.tags, policy);
    let done = |verdict, actions, awaited: Vec<(String, String)>| UserPlan {
        note: if verdict == Verdict::Unreachable {
            Some(unreachable_note(&user.tags, policy))
        } else {
            awaiting_note(&awaited)
        },
        verdict,
        email: email.clone(),
        actions,
        exempt,
    };
    if exempt {
        return done(Verdict::Exempt, Vec::new(), Vec::new());
    }
    if user.keys.is_empty() {
        return done(Verdict::NoKeys, Vec::new(), Vec::new());
    }
    let rules = Rules { policy, now };
    let deliverable = is_deliverable(policy, email.as_deref());
    let mut planner = Planner::new(
        rules,
        &user.keys,
        &user.deactivated,
        &user.reactivated,
        deliverable,
    );
    planner.deliveries = &user.deliveries;
    let (verdict, actions, awaited) = if policy.cleanup {
        planner.run(|p| p.cleanup_step(email.is_none()));
        planner.finish(false)
    } else {
        planner.run(Planner::step);
        planner.finish(true)
    };
    done(verdict, actions, awaited)
}

/// The report row of a user whose old key waits for its replacement's
/// delivery: (old key, replacement) pairs.
fn awaiting_note(awaited: &[(String, String)]) -> Option<String> {
    let said: Vec<String> = awaited
        .iter()
        .map(|(old, new)| {
            format!(
                "waiting for delivery of {new}: {old} stays active until one notice period after its replacement reaches the owner"
            )
        })
        .collect();
    (!said.is_empty()).then(|| said.join("; "))
}

/// Why an emergency rotation was refused. Each names the user's keys, so
/// the operator can name the one to replace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmergencyError {
    #[error(
        "user `{user}` has two active access keys ({}); name the one to replace \
         (--key KEY_ID, or \"key_id\" in the event): keyfleet never deactivates \
         or deletes an active key nobody named",
        .active.join(", ")
    )]
    NeedsKeyId { user: String, active: Vec<String> },
    #[error("user `{user}` has no access key `{key_id}` (its keys: {})", .keys.join(", "))]
    UnknownKey {
        user: String,
        key_id: String,
        keys: Vec<String>,
    },
    #[error("access key `{key_id}` of user `{user}` is already inactive; nothing to replace")]
    NotActive { user: String, key_id: String },
}

/// Emergency rotation of one user: a new key now, replacing `key_id` (or
/// the only active key).
///
/// - An inactive key is deleted first when IAM's limit of two keys needs
///   room. With two active keys the named key is deactivated and deleted to
///   make room: the one exception to "never deactivate and delete one key
///   in one run", since the security team named that key. Without a name a
///   user with two active keys is refused ([`EmergencyError::NeedsKeyId`]).
/// - The replaced key stays active (with a `DeactivationScheduled` notice)
///   unless `deactivate_old`, which deactivates it at once.
/// - An unreachable user gets no key; with `deactivate_old` the named (or
///   only) active key is still deactivated: containing a leaked key comes
///   before keeping a service running.
pub fn plan_emergency(
    user: &UserSnapshot,
    policy: &Policy,
    now: OffsetDateTime,
    deactivate_old: bool,
    key_id: Option<&str>,
) -> Result<UserPlan, EmergencyError> {
    let email = owner_email(&user.tags, policy);
    let exempt = is_exempt(&user.tags, policy);
    let rules = Rules { policy, now };
    let mut keys = user.keys.clone();
    keys.sort_by(|a, b| rules.order(a, b));
    let active: Vec<String> = keys
        .iter()
        .filter(|k| k.status == KeyStatus::Active)
        .map(|k| k.id.clone())
        .collect();
    let target: Option<String> = match key_id {
        Some(id) => match keys.iter().find(|k| k.id == id) {
            None => {
                return Err(EmergencyError::UnknownKey {
                    user: user.user_name.clone(),
                    key_id: id.to_string(),
                    keys: keys.iter().map(|k| k.id.clone()).collect(),
                })
            }
            Some(k) if k.status == KeyStatus::Inactive => {
                return Err(EmergencyError::NotActive {
                    user: user.user_name.clone(),
                    key_id: id.to_string(),
                })
            }
            Some(k) => Some(k.id.clone()),
        },
        None if active.len() >= 2 => {
            return Err(EmergencyError::NeedsKeyId {
                user: user.user_name.clone(),
                active,
            })
        }
        None => active.first().cloned(),
    };
    let mut actions = Vec::new();
    let deactivate = |actions: &mut Vec<Action>, id: &str| {
        actions.push(Action::Deactivate {
            key_id: id.to_string(),
        });
        actions.push(Action::Notify {
            notice: Notice::Deactivated {
                key_id: id.to_string(),
                replacement: None,
            },
        });
    };
    let deliverable = is_deliverable(policy, email.as_deref());
    let verdict = if keys.is_empty() {
        Verdict::NoKeys
    } else if !deliverable {
        if let Some(t) = target.as_deref().filter(|_| deactivate_old) {
            deactivate(&mut actions, t);
            Verdict::Deactivated
        } else {
            Verdict::Unreachable
        }
    } else {
        while keys.len() >= MAX_KEYS {
            // An inactive key if there is one, else the named active key.
            let victim = keys
                .iter()
                .position(|k| k.status == KeyStatus::Inactive)
                .or_else(|| keys.iter().position(|k| Some(&k.id) == target.as_ref()))
                .unwrap_or(0);
            let key = keys.remove(victim);
            if key.status == KeyStatus::Active {
                deactivate(&mut actions, &key.id);
            }
            actions.push(Action::Delete {
                key_id: key.id.clone(),
            });
            actions.push(Action::Notify {
                notice: Notice::Deleted { key_id: key.id },
            });
        }
        actions.push(Action::CreateKey);
        if let Some(key) = keys.iter().find(|k| Some(&k.id) == target.as_ref()) {
            if deactivate_old {
                deactivate(&mut actions, &key.id);
            } else {
                actions.push(Action::Notify {
                    notice: Notice::DeactivationScheduled {
                        key_id: key.id.clone(),
                        on: rules.deactivation_date(key, now),
                        replacement: None,
                    },
                });
            }
        }
        Verdict::Rotated
    };
    Ok(UserPlan {
        note: (verdict == Verdict::Unreachable).then(|| unreachable_note(&user.tags, policy)),
        verdict,
        email,
        actions,
        exempt,
    })
}

/// Why a reactivation was refused. Each names the key and says why, so the
/// security team knows what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReactivateError {
    #[error(
        "user `{user}` has no access key `{key_id}` (its keys: {}): a deleted key cannot be reactivated",
        .keys.join(", ")
    )]
    NoSuchKey {
        user: String,
        key_id: String,
        keys: Vec<String>,
    },
    #[error("access key `{key_id}` of user `{user}` is active; nothing to reactivate")]
    Active { user: String, key_id: String },
    #[error(
        "access key `{key_id}` of user `{user}` was not deactivated by keyfleet (no record of it); \
         keyfleet only switches back on what it switched off"
    )]
    NotDeactivatedByKeyfleet { user: String, key_id: String },
    #[error(
        "access key `{key_id}` of user `{user}` was switched back on by the security team on {reactivated} \
         and deactivated since outside keyfleet (keyfleet recorded no deactivation after that); \
         keyfleet only switches back on a key whose latest deactivation was its own"
    )]
    DeactivatedOutsideKeyfleet {
        user: String,
        key_id: String,
        reactivated: OffsetDateTime,
    },
}

/// The security team's "switch this key back on" (an application broke
/// when keyfleet deactivated it).
///
/// Only a key keyfleet deactivated (its protected record says so), last
/// (`switched_off_by_keyfleet`), and has not deleted. The plan is the
/// reactivation and a notice to the owner
/// naming the date the key will be deactivated again: a fresh notice
/// period (`deactivate_after - rotate_after`) from now. Until then no rule
/// deactivates or deletes it ([`Planner`]'s grace, see the module doc);
/// once deactivated again, it gets the usual recovery window before it is
/// deleted, since that deactivation is recorded like any other. Like an
/// emergency rotation it is an explicit order for one named user, so the
/// exempt tag does not apply.
pub fn plan_reactivation(
    user: &UserSnapshot,
    policy: &Policy,
    now: OffsetDateTime,
    key_id: &str,
) -> Result<UserPlan, ReactivateError> {
    let err_user = || user.user_name.clone();
    let Some(key) = user.keys.iter().find(|k| k.id == key_id) else {
        return Err(ReactivateError::NoSuchKey {
            user: err_user(),
            key_id: key_id.to_string(),
            keys: user.keys.iter().map(|k| k.id.clone()).collect(),
        });
    };
    if key.status == KeyStatus::Active {
        return Err(ReactivateError::Active {
            user: err_user(),
            key_id: key_id.to_string(),
        });
    }
    switched_off_by_keyfleet(user, key_id)?;
    let until = plus(now, policy.notice_period());
    Ok(UserPlan {
        verdict: Verdict::Reactivated,
        email: owner_email(&user.tags, policy),
        actions: vec![
            Action::Reactivate {
                key_id: key_id.to_string(),
            },
            Action::Notify {
                notice: Notice::Reactivated {
                    key_id: key_id.to_string(),
                    until,
                },
            },
        ],
        exempt: is_exempt(&user.tags, policy),
        note: None,
    })
}

/// The rule of reactivation: keyfleet switches back on only a key whose
/// latest deactivation was its own. The record says when keyfleet
/// deactivated the (inactive) key and when the security team last
/// reactivated it; a reactivation at or after keyfleet's latest
/// deactivation means the key was switched off again since by someone
/// else (by hand, outside keyfleet), and that person's decision is not
/// keyfleet's to undo. (A tie cannot be ordered: refused.)
fn switched_off_by_keyfleet(user: &UserSnapshot, key_id: &str) -> Result<(), ReactivateError> {
    let latest = |events: &[(String, OffsetDateTime)]| {
        events
            .iter()
            .filter(|(id, _)| id == key_id)
            .map(|(_, at)| *at)
            .max()
    };
    let Some(deactivated) = latest(&user.deactivated) else {
        return Err(ReactivateError::NotDeactivatedByKeyfleet {
            user: user.user_name.clone(),
            key_id: key_id.to_string(),
        });
    };
    match latest(&user.reactivated) {
        Some(reactivated) if reactivated >= deactivated => {
            Err(ReactivateError::DeactivatedOutsideKeyfleet {
                user: user.user_name.clone(),
                key_id: key_id.to_string(),
                reactivated,
            })
        }
        _ => Ok(()),
    }
}

/// The report row's note for a key in its reactivation grace: which key
/// the security team switched back on, when, and until when it stays
/// active, so the reports after the reactivation show it (the owner's
/// reminders say the same date). The agent adds it to the row of a user
/// whose protected record it reads: a pair of keys, or a key whose grace
/// holds back what the rules would do; a lone key with nothing due costs no
/// record read and gets no note.
pub fn reactivation_note(
    user: &UserSnapshot,
    policy: &Policy,
    now: OffsetDateTime,
) -> Option<String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let notes: Vec<String> = user
        .keys
        .iter()
        .filter_map(|k| {
            let (at, until) = grace(&user.reactivated, k, policy, now)?;
            Some(format!(
                "key {} reactivated by the security team on {}; kept active until {}",
                k.id,
                at.format(&fmt).unwrap_or_default(),
                until.format(&fmt).unwrap_or_default()
            ))
        })
        .collect();
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// `key`'s reactivation grace while it lasts: when the security team
/// switched the active key back on, and the end, one notice period later
/// (see [`plan_reactivation`]); `None` for a key not reactivated, inactive,
/// or past it.
fn grace(
    reactivated: &[(String, OffsetDateTime)],
    key: &KeyState,
    policy: &Policy,
    now: OffsetDateTime,
) -> Option<(OffsetDateTime, OffsetDateTime)> {
    if key.status != KeyStatus::Active {
        return None;
    }
    reactivated
        .iter()
        .filter(|(id, _)| *id == key.id)
        .map(|(_, at)| {
            // A record time later than now counts as now ("Clock skew").
            let at = (*at).min(now);
            (at, plus(at, policy.notice_period()))
        })
        .max_by_key(|(_, until)| *until)
        .filter(|(_, until)| *until > now)
}

/// Why [`simulate`] rejected a plan: the rule it would break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    /// More than [`MAX_KEYS`] keys: in the input (`action` is `None`) or
    /// after the `CreateKey` at index `action`.
    TooManyKeys { action: Option<usize>, count: usize },
    /// The action at index `action` names a key the user does not have.
    UnknownKey { action: usize, key_id: String },
    /// The action at index `action` names an id that several keys share.
    AmbiguousKey { action: usize, key_id: String },
    /// The action at index `action` deactivates a key that is not active.
    AlreadyInactive { action: usize, key_id: String },
    /// The action at index `action` reactivates a key that is active.
    AlreadyActive { action: usize, key_id: String },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::TooManyKeys {
                action: None,
                count,
            } => write!(
                f,
                "the user has {count} access keys; IAM allows at most {MAX_KEYS}"
            ),
            SimError::TooManyKeys {
                action: Some(i),
                count,
            } => write!(
                f,
                "action {i}: creating a key would give the user {count} access keys; \
                 IAM allows at most {MAX_KEYS} (delete before create)"
            ),
            SimError::UnknownKey { action, key_id } => {
                write!(f, "action {action}: unknown access key `{key_id}`")
            }
            SimError::AmbiguousKey { action, key_id } => write!(
                f,
                "action {action}: access key id `{key_id}` is held by more than one key"
            ),
            SimError::AlreadyInactive { action, key_id } => write!(
                f,
                "action {action}: access key `{key_id}` is already inactive"
            ),
            SimError::AlreadyActive { action, key_id } => write!(
                f,
                "action {action}: access key `{key_id}` is already active"
            ),
        }
    }
}

impl std::error::Error for SimError {}

/// Applies `actions` to `keys` as IAM would, without I/O.
///
/// `CreateKey` adds an active key created at `now` with a synthetic id
/// (`NEW0`, `NEW1`, ... skipping ids already in use); `Deactivate` and
/// `Delete` act on ids; `Notify` changes nothing. Keys keep their input order,
/// new keys are appended. Fails, naming the rule, on more than two keys, an
/// unknown or ambiguous id, or the deactivation of an inactive key.
pub fn simulate(
    keys: &[KeyState],
    actions: &[Action],
    now: OffsetDateTime,
) -> Result<Vec<KeyState>, SimError> {
    if keys.len() > MAX_KEYS {
        return Err(SimError::TooManyKeys {
            action: None,
            count: keys.len(),
        });
    }
    let mut out = keys.to_vec();
    let find = |out: &[KeyState], action: usize, key_id: &str| {
        let mut hits = out.iter().enumerate().filter(|(_, k)| k.id == key_id);
        match (hits.next(), hits.next()) {
            (Some((i, _)), None) => Ok(i),
            (None, _) => Err(SimError::UnknownKey {
                action,
                key_id: key_id.to_string(),
            }),
            (Some(_), Some(_)) => Err(SimError::AmbiguousKey {
                action,
                key_id: key_id.to_string(),
            }),
        }
    };
    for (i, action) in actions.iter().enumerate() {
        match action {
            Action::CreateKey => {
                if out.len() >= MAX_KEYS {
                    return Err(SimError::TooManyKeys {
                        action: Some(i),
                        count: out.len() + 1,
                    });
                }
                let id = (0..)
                    .map(|n| format!("NEW{n}"))
                    .find(|id| out.iter().all(|k| k.id != *id))
                    .unwrap_or_default();
                out.push(KeyState {
                    id,
                    status: KeyStatus::Active,
                    created: now,
                    last_used: None,
                    last_used_service: None,
                    last_used_region: None,
                });
            }
            Action::Deactivate { key_id } => {
                let at = find(&out, i, key_id)?;
                if out[at].status == KeyStatus::Inactive {
                    return Err(SimError::AlreadyInactive {
                        action: i,
                        key_id: key_id.clone(),
                    });
                }
                out[at].status = KeyStatus::Inactive;
            }
            Action::Delete { key_id } => {
                let at = find(&out, i, key_id)?;
                out.remove(at);
            }
            Action::Reactivate { key_id } => {
                let at = find(&out, i, key_id)?;
                if out[at].status == KeyStatus::Active {
                    return Err(SimError::AlreadyActive {
                        action: i,
                        key_id: key_id.clone(),
                    });
                }
                out[at].status = KeyStatus::Active;
            }
            Action::Notify { .. } => {}
        }
    }
    Ok(out)
}

/// The policy's thresholds applied at one instant.
#[derive(Clone, Copy)]
struct Rules<'a> {
    policy: &'a Policy,
    now: OffsetDateTime,
}

impl Rules<'_> {
    /// Creation time, with a future one counted as `now`.
    fn created(&self, key: &KeyState) -> OffsetDateTime {
        key.created.min(self.now)
    }

    /// Oldest first: creation time, then id.
    fn order(&self, a: &KeyState, b: &KeyState) -> Ordering {
        (self.created(a), &a.id).cmp(&(self.created(b), &b.id))
    }

    /// Time from `t` to now, zero if `t` is in the future.
    fn since(&self, t: OffsetDateTime) -> Duration {
        u64::try_from((self.now - t).whole_seconds()).map_or(Duration::ZERO, Duration::from_secs)
    }

    fn age(&self, key: &KeyState) -> Duration {
        self.since(self.created(key))
    }

    /// Last use, with a future one counted as `now`.
    fn last_use(&self, key: &KeyState) -> Option<OffsetDateTime> {
        key.last_used.map(|t| t.min(self.now))
    }

    /// Time since the last use, or since creation for a key never used.
    fn idle(&self, key: &KeyState) -> Duration {
        let created = self.created(key);
        self.since(self.last_use(key).map_or(created, |u| u.max(created)))
    }

    fn hard_limit(&self, key: &KeyState) -> bool {
        self.policy.max_key_age.reached(self.age(key))
    }

    /// A key used at least once and old enough to be replaced.
    fn rotation_due(&self, key: &KeyState) -> bool {
        key.last_used.is_some() && self.age(key) >= self.policy.rotate_after
    }

    /// `old` was used after `replacement` was created.
    fn used_after(&self, old: &KeyState, replacement: &KeyState) -> bool {
        self.last_use(old)
            .is_some_and(|u| u > self.created(replacement))
    }

    /// `now` has reached [`Rules::deactivation_date`]: the old key is
    /// `deactivate_after` old (or at the hard limit) and its replacement has
    /// had the whole notice period, unless the policy asks for immediate
    /// enforcement at the hard limit.
    fn deactivation_due(&self, old: &KeyState, replacement: &KeyState) -> bool {
        let immediate = self.policy.deactivate_at_max_age_without_notice && self.hard_limit(old);
        (self.age(old) >= self.policy.deactivate_after || self.hard_limit(old))
            && (self.age(replacement) >= self.policy.notice_period() || immediate)
    }

    /// `max(old + deactivate_after, replacement + notice)`; with immediate
    /// enforcement capped by `old + max_key_age`.
    fn deactivation_date(
        &self,
        old: &KeyState,
        replacement_created: OffsetDateTime,
    ) -> OffsetDateTime {
        let created = self.created(old);
        let date = plus(created, self.policy.deactivate_after).max(plus(
            replacement_created.min(self.now),
            self.policy.notice_period(),
        ));
        match self.policy.max_key_age {
            Limit::After(max) if self.policy.deactivate_at_max_age_without_notice => {
                date.min(plus(created, max))
            }
            _ => date,
        }
    }

    /// The recovery window of a deactivated key: `delete_after -
    /// deactivate_after`.
    fn recovery_window(&self) -> Duration {
        self.policy
            .delete_after
            .saturating_sub(self.policy.deactivate_after)
    }

    /// keyfleet recorded deactivating the key less than the recovery window
    /// ago: it may not be deleted yet, not even to make room.
    ///
    /// Even with no recovery window, not at the instant of the deactivation:
    /// a job delivered twice must not delete what the first delivery
    /// deactivated.
    fn recently_deactivated(&self, recorded: Option<OffsetDateTime>) -> bool {
        let window = self.recovery_window().max(Duration::from_secs(1));
        recorded.is_some_and(|at| self.since(at) < window)
    }
}

// ---------------------------------------------------------------------------
// The rules, one named function each. The planner composes them; each has
// its own table test in `tests.rs` named after the seed case it covers.

/// What happens to the older of two active keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pair {
    /// Not due yet: the owner is reminded of the date.
    Scheduled { on: OffsetDateTime },
    /// Due, but used after its replacement was created and below the hard
    /// limit: left active, the owner is told where it is used.
    StillInUse,
    /// Due: deactivated.
    Deactivate,
    /// The replacement has not reached its owner yet: the older key stays
    /// active, whatever its age (the hard limit waits too).
    AwaitingDelivery,
}

/// Where a new key's delivery stands (see [`Planner::delivery`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Delivery {
    Awaiting,
    /// Delivered, or not tracked: the key as the rules see it.
    Known(KeyState),
}

/// Seed case "two active, one nearing expiry -> notice, then deactivate the
/// oldest at deactivate_after". Never before the replacement has had the
/// whole notice period (unless immediate enforcement at the hard limit);
/// never while in use after the replacement was created, until the hard
/// limit.
fn older_of_two_active(
    r: &Rules,
    old: &KeyState,
    new: &KeyState,
    grace: Option<OffsetDateTime>,
) -> Pair {
    if let Some(until) = grace {
        Pair::Scheduled {
            on: r.deactivation_date(old, new.created).max(until),
        }
    } else if !r.deactivation_due(old, new) {
        Pair::Scheduled {
            on: r.deactivation_date(old, new.created),
        }
    } else if r.used_after(old, new) && !r.hard_limit(old) {
        Pair::StillInUse
    } else {
        Pair::Deactivate
    }
}

/// What happens to a user's only active key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Single {
    /// Create its replacement (the old key is deactivated later, by
    /// `older_of_two_active`).
    Replace,
    /// Deactivate it without a replacement (hard limit; `unreachable` when
    /// a replacement was wanted but cannot be delivered).
    DeactivateAlone { unreachable: bool },
    /// A replacement is due but cannot be delivered: nothing happens.
    Unreachable,
}

/// The hard limit: a key at `max_key_age` is replaced when it is in use and
/// its owner reachable (and deactivated a notice period later); otherwise
/// (never used, or nobody to deliver a new key to) it is deactivated alone,
/// and deleted no sooner than the recovery window later.
fn hard_limit(r: &Rules, key: &KeyState, deliverable: bool) -> Option<Single> {
    if !r.hard_limit(key) {
        return None;
    }
    let used = key.last_used.is_some();
    Some(if deliverable && used {
        Single::Replace
    } else {
        Single::DeactivateAlone { unreachable: used }
    })
}

/// Seed case "one key nearing expiry -> new key": a used key at
/// `rotate_after` gets a replacement when it can be delivered.
fn replacement(r: &Rules, key: &KeyState, deliverable: bool) -> Option<Single> {
    if !r.rotation_due(key) {
        None
    } else if deliverable {
        Some(Single::Replace)
    } else {
        Some(Single::Unreachable)
    }
}

/// Seed case "unused -> delete and notify": an active key idle for
/// `unused_delete_after` is deleted outright (no deactivation first; the
/// seed behaviour, kept: nobody uses it).
fn unused(r: &Rules, key: &KeyState) -> bool {
    key.status == KeyStatus::Active && r.idle(key) >= r.policy.unused_delete_after
}

/// Seed cases "two keys, older/younger inactive -> delete": an inactive key
/// past its deletion date (module doc), and, when keyfleet deactivated it,
/// at least the recovery window after that deactivation.
fn inactive_expired(
    r: &Rules,
    key: &KeyState,
    replacement: Option<&KeyState>,
    recorded: Option<OffsetDateTime>,
) -> bool {
    let p = r.policy;
    key.status == KeyStatus::Inactive
        && r.age(key) >= p.delete_after
        && r.idle(key) >= r.recovery_window()
        && replacement.is_none_or(|k| r.age(k) >= p.delete_after.saturating_sub(p.rotate_after))
        && !r.recently_deactivated(recorded)
}

/// `t + d`, saturating at the largest date `time` can represent.
fn plus(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    t.checked_add(d.to_time())
        .unwrap_or_else(|| PrimitiveDateTime::MAX.assume_utc())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Removal {
    /// Inactive past its deletion date.
    Expired,
    /// Active and not used for `unused_delete_after`.
    Unused,
    /// Inactive, deleted to make room for a new key.
    Room,
}

/// A key during planning.
#[derive(Clone, Debug)]
struct Live {
    key: KeyState,
    /// Created by this plan (its id is a placeholder for the executor's).
    new: bool,
    /// Deactivated by this plan, with the replacement to name in the notice.
    deactivated: Option<Option<String>>,
}

/// Applies the rules to a working copy of the keys until nothing is due.
struct Planner<'a> {
    rules: Rules<'a>,
    /// From the protected record: when keyfleet deactivated which key.
    recorded: &'a [(String, OffsetDateTime)],
    /// From the protected record: when the security team reactivated which
    /// key.
    reactivated: &'a [(String, OffsetDateTime)],
    deliverable: bool,
    /// From the job: the delivery of this user's new keys (see
    /// [`UserSnapshot::deliveries`]).
    deliveries: &'a [(String, Option<OffsetDateTime>)],
    /// Oldest first.
    live: Vec<Live>,
    deleted: Vec<(Live, Removal)>,
    created: bool,
    unreachable: bool,
}

impl<'a> Planner<'a> {
    fn new(
        rules: Rules<'a>,
        keys: &[KeyState],
        recorded: &'a [(String, OffsetDateTime)],
        reactivated: &'a [(String, OffsetDateTime)],
        deliverable: bool,
    ) -> Self {
        let mut sorted = keys.to_vec();
        sorted.sort_by(|a, b| rules.order(a, b));
        let live = sorted
            .into_iter()
            .map(|key| Live {
                key,
                new: false,
                deactivated: None,
            })
            .collect();
        Planner {
            rules,
            recorded,
            reactivated,
            deliverable,
            deliveries: &[],
            live,
            deleted: Vec::new(),
            created: false,
            unreachable: false,
        }
    }

    /// Repeats `step` until it changes nothing. Each change removes a key,
    /// deactivates one, or creates the only new key, so this ends quickly;
    /// the bound is a safety net.
    fn run(&mut self, step: impl Fn(&mut Self) -> bool) {
        for _ in 0..16 {
            if !step(self) {
                return;
            }
        }
    }

    fn active(&self) -> Vec<usize> {
        (0..self.live.len())
            .filter(|&i| self.live[i].key.status == KeyStatus::Active)
            .collect()
    }

    /// The youngest active key younger than the key at `at`.
    fn replacement(&self, at: usize) -> Option<&KeyState> {
        self.live[at + 1..]
            .iter()
            .rev()
            .map(|l| &l.key)
            .find(|k| k.status == KeyStatus::Active)
    }

    /// The id to name in a notice: none for a key this plan creates.
    fn notice_id(live: &Live) -> Option<String> {
        (!live.new).then(|| live.key.id.clone())
    }

    fn remove(&mut self, mut doomed: Vec<(usize, Removal)>) -> bool {
        doomed.sort_by_key(|&(i, _)| std::cmp::Reverse(i));
        let any = !doomed.is_empty();
        for (i, why) in doomed {
            let live = self.live.remove(i);
            self.deleted.push((live, why));
        }
        any
    }

    fn deactivate(&mut self, at: usize, replacement: Option<String>) {
        let live = &mut self.live[at];
        live.key.status = KeyStatus::Inactive;
        live.deactivated = Some(replacement);
    }

    /// When keyfleet recorded deactivating `key_id`, if it did.
    fn recorded(&self, key_id: &str) -> Option<OffsetDateTime> {
        self.recorded
            .iter()
            .filter(|(id, _)| id == key_id)
            .map(|(_, at)| (*at).min(self.rules.now))
            .max()
    }

    /// Where the delivery of `key` stands: `Awaiting` while the coordinator
    /// has not delivered it, else the key as the pair rule must see it, its
    /// creation moved to its delivery (the owner's notice period starts when
    /// the owner has the key).
    fn delivery(&self, key: &KeyState) -> Delivery {
        match self.deliveries.iter().find(|(id, _)| *id == key.id) {
            Some((_, None)) => Delivery::Awaiting,
            Some((_, Some(at))) if *at > key.created => Delivery::Known(KeyState {
                created: *at,
                ..key.clone()
            }),
            _ => Delivery::Known(key.clone()),
        }
    }

    /// [`older_of_two_active`] with the replacement's delivery applied.
    fn pair(&self, old: &KeyState, new: &KeyState) -> Pair {
        match self.delivery(new) {
            Delivery::Awaiting => Pair::AwaitingDelivery,
            Delivery::Known(new) => older_of_two_active(&self.rules, old, &new, self.grace(old)),
        }
    }

    /// The end of a reactivated key's grace, while it lasts: the security
    /// team switched it back on less than a notice period ago, so no rule
    /// deactivates or deletes it before then (see [`plan_reactivation`]).
    fn grace(&self, key: &KeyState) -> Option<OffsetDateTime> {
        grace(self.reactivated, key, self.rules.policy, self.rules.now).map(|(_, until)| until)
    }

    /// The key may be deleted in this run: it was not deactivated by this
    /// plan (never deactivate and delete one key in one run) and keyfleet
    /// did not deactivate it less than the recovery window ago.
    fn deletable(&self, at: usize) -> bool {
        let live = &self.live[at];
        live.deactivated.is_none() && !self.rules.recently_deactivated(self.recorded(&live.key.id))
    }

    /// Inactive keys past their deletion date, oldest first.
    fn expired(&self) -> Vec<(usize, Removal)> {
        (0..self.live.len())
            .filter(|&i| self.live[i].deactivated.is_none())
            .filter(|&i| {
                inactive_expired(
                    &self.rules,
                    &self.live[i].key,
                    self.replacement(i),
                    self.recorded(&self.live[i].key.id),
                )
            })
            // Not while its replacement awaits delivery: the owner may
            // still need it switched back on.
            .filter(|&i| {
                self.replacement(i)
                    .is_none_or(|k| self.delivery(k) != Delivery::Awaiting)
            })
            .map(|i| (i, Removal::Expired))
            .collect()
    }

    /// One round of the scheduled rules; true if it changed anything.
    fn step(&mut self) -> bool {
        let r = self.rules;
        // Deletions first: they make room and never depend on a new key.
        let mut doomed = self.expired();
        doomed.extend(
            (0..self.live.len())
                .filter(|&i| {
                    unused(&r, &self.live[i].key)
                        && self.grace(&self.live[i].key).is_none()
                        // Unused because its owner does not have it yet.
                        && self.delivery(&self.live[i].key) != Delivery::Awaiting
                        && self
                            .replacement(i)
                            .is_none_or(|k| self.delivery(k) != Delivery::Awaiting)
                })
                .map(|i| (i, Removal::Unused)),
        );
        if self.remove(doomed) {
            return true;
        }
        // Then the older key of each active pair, on its date.
        let active = self.active();
        let due: Vec<(usize, Option<String>)> = active
            .windows(2)
            .filter(|w| {
                let (old, new) = (&self.live[w[0]].key, &self.live[w[1]].key);
                self.pair(old, new) == Pair::Deactivate
            })
            .map(|w| (w[0], Self::notice_id(&self.live[w[1]])))
            .collect();
        if !due.is_empty() {
            for (at, replacement) in due {
                self.deactivate(at, replacement);
            }
            return true;
        }
        // Then the only active key: the hard limit, or its replacement.
        let &[at] = active.as_slice() else {
            return false;
        };
        let key = &self.live[at].key;
        if self.delivery(key) == Delivery::Awaiting {
            // Its owner does not have it yet: it is neither replaced again
            // nor switched off, and no older key makes room for it.
            return false;
        }
        let decision = hard_limit(&r, key, self.deliverable)
            .filter(|_| self.grace(key).is_none())
            .or_else(|| replacement(&r, key, self.deliverable));
        match decision {
            None => false,
            Some(Single::Unreachable) => {
                self.unreachable = true;
                false
            }
            Some(Single::DeactivateAlone { unreachable }) => {
                self.unreachable |= unreachable;
                self.deactivate(at, None);
                true
            }
            Some(Single::Replace) => {
                // Room for the new key: every other key is inactive here. A
                // key that may not be deleted yet (deactivated by this plan,
                // or recorded as deactivated within the recovery window)
                // makes the replacement wait for a later run.
                let room: Vec<usize> = (0..self.live.len()).filter(|&i| i != at).collect();
                if !room.iter().all(|&i| self.deletable(i)) {
                    return false;
                }
                self.remove(room.into_iter().map(|i| (i, Removal::Room)).collect());
                self.create();
                true
            }
        }
    }

    /// One round of clean-up; true if it changed anything.
    fn cleanup_step(&mut self, no_email: bool) -> bool {
        let doomed = self.expired();
        if self.remove(doomed) {
            return true;
        }
        if !no_email {
            return false;
        }
        let r = self.rules;
        // A pair whose older key is used after the younger one was created
        // is mid-switch: both stay, so the older key keeps its replacement.
        let active = self.active();
        let spared: Vec<usize> = active
            .windows(2)
            .filter(|w| {
                let (old, new) = (&self.live[w[0]].key, &self.live[w[1]].key);
                r.used_after(old, new) && !r.hard_limit(old)
            })
            .flat_map(|w| [w[0], w[1]])
            .collect();
        let over_age: Vec<usize> = active
            .into_iter()
            .filter(|i| !spared.contains(i))
            .filter(|&i| r.age(&self.live[i].key) >= r.policy.deactivate_after)
            .filter(|&i| self.grace(&self.live[i].key).is_none())
            .filter(|&i| {
                self.delivery(&self.live[i].key) != Delivery::Awaiting
                    && self
                        .replacement(i)
                        .is_none_or(|k| self.delivery(k) != Delivery::Awaiting)
            })
            .collect();
        for &at in &over_age {
            self.deactivate(at, None);
        }
        !over_age.is_empty()
    }

    fn create(&mut self) {
        let id = (0..)
            .map(|n| format!("NEW{n}"))
            .find(|id| self.live.iter().all(|l| l.key.id != *id))
            .unwrap_or_default();
        self.live.push(Live {
            key: KeyState {
                id,
                status: KeyStatus::Active,
                created: self.rules.now,
                last_used: None,
                last_used_service: None,
                last_used_region: None,
            },
            new: true,
            deactivated: None,
        });
        self.created = true;
    }

    /// Lays the decisions out in the canonical order (see the module doc)
    /// and picks the verdict. Without `notify` (clean-up) no notices.
    fn finish(mut self, notify: bool) -> (Verdict, Vec<Action>, Vec<(String, String)>) {
        let r = self.rules;
        let mut actions = Vec::new();
        let mut push = |action: Action, notice: Option<Notice>| {
            actions.push(action);
            if let Some(notice) = notice.filter(|_| notify) {
                actions.push(Action::Notify { notice });
            }
        };
        let deactivation = |live: &Live| {
            live.deactivated.clone().map(|replacement| {
                (
                    Action::Deactivate {
                        key_id: live.key.id.clone(),
                    },
                    Notice::Deactivated {
                        key_id: live.key.id.clone(),
                        replacement,
                    },
                )
            })
        };
        self.deleted.sort_by(|a, b| r.order(&a.0.key, &b.0.key));
        for (live, why) in &self.deleted {
            if let Some((action, notice)) = deactivation(live) {
                push(action, Some(notice));
            }
            let key_id = live.key.id.clone();
            let notice = match why {
                Removal::Expired | Removal::Room => Notice::Deleted {
                    key_id: key_id.clone(),
                },
                Removal::Unused => Notice::UnusedDeleted {
                    key_id: key_id.clone(),
                    last_used: live.key.last_used,
                },
            };
            push(Action::Delete { key_id }, Some(notice));
        }
        if self.created {
            push(Action::CreateKey, None);
        }
        for live in &self.live {
            if let Some((action, notice)) = deactivation(live) {
                push(action, Some(notice));
            }
        }
        // What remains: reminders about the active pair, if any.
        let (mut pending, mut still) = (false, false);
        let mut awaited = Vec::new();
        let active = self.active();
        for w in active.windows(2) {
            let (old, new) = (&self.live[w[0]].key, &self.live[w[1]]);
            if self.pair(old, &new.key) == Pair::AwaitingDelivery {
                // No reminder: its date is not known until the owner has
                // the new key. The report row says what is awaited.
                pending = true;
                awaited.push((old.id.clone(), new.key.id.clone()));
            }
        }
        for w in active.windows(2).filter(|_| notify) {
            let (old, new) = (&self.live[w[0]].key, &self.live[w[1]]);
            let replacement = Self::notice_id(new);
            let notice = match self.pair(old, &new.key) {
                Pair::AwaitingDelivery => continue,
                // Due and still active: only a key in use is spared.
                Pair::StillInUse | Pair::Deactivate => {
                    still = true;
                    Notice::StillInUse {
                        key_id: old.id.clone(),
                        last_used: old.last_used,
                        service: old.last_used_service.clone(),
                        region: old.last_used_region.clone(),
                        replacement,
                    }
                }
                Pair::Scheduled { on } => {
                    pending = true;
                    Notice::DeactivationScheduled {
                        key_id: old.id.clone(),
                        on,
                        replacement,
                    }
                }
            };
            actions.push(Action::Notify { notice });
        }
        let deactivated = self
            .deleted
            .iter()
            .map(|(l, _)| l)
            .chain(&self.live)
            .any(|l| l.deactivated.is_some());
        let happened = |v: &Verdict| match v {
            Verdict::Rotated => self.created,
            Verdict::Deactivated => deactivated,
            Verdict::StillInUse => still,
            Verdict::Unreachable => self.unreachable,
            Verdict::Cleaned => !self.deleted.is_empty(),
            Verdict::PendingDeactivation => pending,
            _ => true,
        };
        let verdict = VERDICT_PRIORITY
            .into_iter()
            .find(happened)
            .unwrap_or(Verdict::Compliant);
        (verdict, actions, awaited)
    }
}

#[cfg(test)]
mod tests;
