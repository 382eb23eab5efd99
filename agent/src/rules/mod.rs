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
//! named function with its own table test: `replacement`, `hard_limit`,
//! `older_of_two_active` and `cutover` in `rules/rotation.rs` (an active key
//! is replaced, then switched off), `unused` and `inactive_expired` in
//! `rules/deletion.rs` (a key goes); the planner (`rules/planner.rs`)
//! composes them to a fixed point.
//!
//! # Where the code is
//!
//! - this module: the types a plan is made of and [`plan_user`], the
//!   scheduled run;
//! - `thresholds`: the policy's thresholds at one instant (`Rules`), which
//!   every rule reads;
//! - `rotation`, `deletion`: the rules, one named function each;
//! - `planner`: applies the rules to a working copy of the keys until
//!   nothing is due, then lays the actions out in order;
//! - `emergency`: [`plan_emergency`], the security team's "rotate now";
//! - `reactivation`: [`plan_reactivation`], its "switch this key back on",
//!   and the grace that follows;
//! - `simulate`: [`simulate`], a plan applied to keys as IAM would;
//! - `tests.rs`: the table tests, the exhaustive oracle, the timeline and
//!   the properties.
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
//! - **Cutover by evidence** (policy `cutover_on_use`, on by default):
//!   before that date, once the replacement has been used after its
//!   creation and the older key has not been used since, the older key is
//!   deactivated in the run that sees it (`Deactivated`, the same notice),
//!   provided it is at least `rotate_after` old (a rotation, not two young
//!   keys an owner made by hand). A reactivation's grace and a replacement
//!   awaiting delivery hold it back like every other deactivation; a key
//!   used after its replacement was created never goes by evidence (it
//!   keeps the date, then `StillInUse`, until the hard limit). Switched
//!   off, every pair keeps its date.
//! - **The handover read** (Secrets Manager delivery): the owner's program
//!   fetches the new key from the user's delivery secret with the old key
//!   (`keyfleet credential-process`), which IAM shows as a use of the old
//!   key after its replacement was created. When IAM's last use is that
//!   read, a day ago, and CloudTrail shows nothing else but the same
//!   program (`UserSnapshot::handed_over`, filled by the agent:
//!   `crate::handover`), the old key counts as not used after
//!   its replacement, here and in every invariant below, so the cutover
//!   and the date apply as to a key nobody uses.
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
//! (`deactivate_at_max_age_without_notice`), a pair of keys that
//! predates keyfleet's first run (its notice period counts from the younger
//! key's creation), and cutover by evidence (the owner has switched: the
//! key goes after a notice, not a notice period after it).
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
//! **Cutover by evidence, in detail.** "Used" and "since" are the pair
//! rule's comparisons (`Rules::used_after`: strictly later, a time later
//! than `now` counted as `now`), so the evidence is exactly the complement
//! of what spares a key in use: a last use of the old key at the very
//! instant the replacement was created is not "since", a use of the
//! replacement at its creation instant (or one IAM dates in the future of
//! a key created now) is no evidence. When the coordinator tracks the
//! replacement's delivery, both count from the delivery, as the pair rule
//! does: the owner could switch only once they had the key, and an old
//! key used while the new one was on its way says nothing about the
//! switch. The rule changes when the key is deactivated, nothing else: the
//! notice is the same `Deactivated`, and the key is deleted as any key
//! keyfleet deactivated (its deletion date, never in the same run, the
//! recovery window after), which in the ordinary case is the day it would
//! have been deleted after a deactivation on the date. The evidence is
//! what IAM reports when the run reads it (the executor acts on a fresh
//! GetAccessKeyLastUsed, not on the cached credential report): a use IAM
//! has not recorded yet cannot spare the key, and the way back is a
//! reactivation. Precedence, first match wins: replacement awaiting
//! delivery (nothing), reactivation grace (the grace's date), cutover
//! (before the date), then the date rule (`StillInUse` below the hard
//! limit, else `Deactivated`).
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

mod deletion;
mod emergency;
mod planner;
mod reactivation;
mod rotation;
mod simulate;
mod thresholds;

pub use emergency::{plan_emergency, EmergencyError};
pub use reactivation::{plan_reactivation, reactivation_note, ReactivateError};
pub use simulate::{simulate, SimError};

use keyfleet_protocol::{Action, KeyState, Policy, Verdict};
use planner::Planner;
use thresholds::Rules;
use time::OffsetDateTime;

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
    /// Older keys of a pair that IAM shows used after their replacement was
    /// created, where CloudTrail shows those uses were only the owner's
    /// read of the user's own delivery secret, fetching the replacement
    /// (`crate::handover`): for the rules they are not used after it.
    pub handed_over: Vec<String>,
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
    let rules = Rules {
        policy,
        now,
        handed_over: &user.handed_over,
    };
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

#[cfg(test)]
mod tests;
