//! What the rules decide, as data: key snapshots, actions, notices, verdicts.
//!
//! These types are on the wire (an AccountResult lists every user's keys,
//! actions and verdict) and in the report, so they live here rather than in
//! the agent. The rules themselves are in `keyfleet-agent::rules`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// IAM access key status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
pub enum KeyStatus {
    Active,
    Inactive,
}

/// One access key as the agent saw it. Never holds the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// Access key id (public). May be empty when only the credential report
    /// was read and no action was due, since the report has no key ids.
    pub id: String,
    pub status: KeyStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_used: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_region: Option<String>,
}

/// One place a key was used from, from its CloudTrail events: a distinct
/// source IP, user agent, service and region, with the last time seen and
/// the number of calls. Informational (see `crate::degrade`): a site that
/// breaks its rule is left out, not the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct UseSite {
    /// CloudTrail's `sourceIPAddress`: an IP address, or the name of the
    /// AWS service that called on the key's behalf.
    pub source_ip: String,
    pub user_agent: String,
    /// The service called (`s3` for `s3.amazonaws.com`).
    pub service: String,
    pub region: String,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    pub calls: u32,
}

/// At most this many sites per notice, the most recently seen.
pub const MAX_USE_SITES: usize = 10;
/// A user agent is cut to this many characters, each printable ASCII.
pub const MAX_USER_AGENT: usize = 256;

impl UseSite {
    /// One line for an email or a CSV cell; the user agent quoted, since
    /// whoever holds the key chooses it.
    pub fn describe(&self) -> String {
        format!(
            "{} \"{}\" {} {}, {} call{}, last {}",
            self.source_ip,
            self.user_agent,
            self.service,
            self.region,
            self.calls,
            if self.calls == 1 { "" } else { "s" },
            self.last_seen
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        )
    }
}

/// Why the owner is told something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// The key will be deactivated on `on`; switch to `replacement`.
    DeactivationScheduled {
        key_id: String,
        #[serde(with = "time::serde::rfc3339")]
        on: OffsetDateTime,
        #[serde(default)]
        replacement: Option<String>,
    },
    /// The key was deactivated.
    Deactivated {
        key_id: String,
        #[serde(default)]
        replacement: Option<String>,
    },
    /// An inactive key was deleted.
    Deleted { key_id: String },
    /// A key unused for too long was deleted (not replaced).
    UnusedDeleted {
        key_id: String,
        #[serde(with = "time::serde::rfc3339::option", default)]
        last_used: Option<OffsetDateTime>,
    },
    /// The old key is still in use after its replacement was created, so it
    /// was not deactivated; `service`/`region` say where it was last used
    /// (IAM), `used_from` from where it was used since its replacement was
    /// created (CloudTrail), when the agent could look.
    StillInUse {
        key_id: String,
        #[serde(with = "time::serde::rfc3339::option", default)]
        last_used: Option<OffsetDateTime>,
        #[serde(default)]
        service: Option<String>,
        #[serde(default)]
        region: Option<String>,
        #[serde(default)]
        replacement: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        used_from: Vec<UseSite>,
    },
    /// The security team switched the key back on (it had been
    /// deactivated by keyfleet); it stays active until `until`, a fresh
    /// notice period, and is then deactivated again unless the owner has
    /// switched by then.
    Reactivated {
        key_id: String,
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
    },
}

impl Notice {
    /// The key the notice is about.
    pub fn key_id(&self) -> &str {
        match self {
            Notice::DeactivationScheduled { key_id, .. }
            | Notice::Deactivated { key_id, .. }
            | Notice::Deleted { key_id }
            | Notice::UnusedDeleted { key_id, .. }
            | Notice::StillInUse { key_id, .. }
            | Notice::Reactivated { key_id, .. } => key_id,
        }
    }
    /// Short stable name, used in ledgers, reports and subjects.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::DeactivationScheduled { .. } => "deactivation_scheduled",
            Notice::Deactivated { .. } => "deactivated",
            Notice::Deleted { .. } => "deleted",
            Notice::UnusedDeleted { .. } => "unused_deleted",
            Notice::StillInUse { .. } => "still_in_use",
            Notice::Reactivated { .. } => "reactivated",
        }
    }
}

/// One step of a user's plan. The executor applies them in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create a new access key (delivered to the owner).
    CreateKey,
    /// Set a key Inactive.
    Deactivate { key_id: String },
    /// Delete a key.
    Delete { key_id: String },
    /// Set a key keyfleet deactivated back to Active (the security team's
    /// order, `JobMode::Reactivate`).
    Reactivate { key_id: String },
    /// Tell the owner.
    Notify { notice: Notice },
}

impl Action {
    /// Short stable name for counting and display.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::CreateKey => "create",
            Action::Deactivate { .. } => "deactivate",
            Action::Delete { .. } => "delete",
            Action::Reactivate { .. } => "reactivate",
            Action::Notify { .. } => "notify",
        }
    }
    /// True for actions that change IAM.
    pub fn mutates_iam(&self) -> bool {
        !matches!(self, Action::Notify { .. })
    }
}

/// The one-word state of a user after the run, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing due.
    Compliant,
    /// User carries the exempt tag; skipped.
    Exempt,
    /// User has no access keys.
    NoKeys,
    /// A new key was created (or would be, in a dry run).
    Rotated,
    /// A replacement exists; the old key will be deactivated later.
    PendingDeactivation,
    /// An old key was deactivated.
    Deactivated,
    /// Keys were deleted (inactive past `delete_after`, or unused).
    Cleaned,
    /// The old key is still in use after its replacement was created.
    StillInUse,
    /// A rotation is due but the new key could not be delivered (no email
    /// tag and no Secrets Manager delivery): nothing was created.
    Unreachable,
    /// An action failed; see the user's error.
    Failed,
    /// Something was due, but the agent's time ran short before it started
    /// this user (see the agent's `budget`): nothing was done; the next run
    /// picks it up. The note says what was due.
    Deferred,
    /// A key keyfleet had deactivated was switched back on by the security
    /// team (`JobMode::Reactivate`).
    Reactivated,
}

impl Verdict {
    pub const ALL: [Verdict; 12] = [
        Verdict::Compliant,
        Verdict::Exempt,
        Verdict::NoKeys,
        Verdict::Rotated,
        Verdict::PendingDeactivation,
        Verdict::Deactivated,
        Verdict::Cleaned,
        Verdict::StillInUse,
        Verdict::Unreachable,
        Verdict::Failed,
        Verdict::Deferred,
        Verdict::Reactivated,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Compliant => "compliant",
            Verdict::Exempt => "exempt",
            Verdict::NoKeys => "no_keys",
            Verdict::Rotated => "rotated",
            Verdict::PendingDeactivation => "pending_deactivation",
            Verdict::Deactivated => "deactivated",
            Verdict::Cleaned => "cleaned",
            Verdict::StillInUse => "still_in_use",
            Verdict::Unreachable => "unreachable",
            Verdict::Failed => "failed",
            Verdict::Deferred => "deferred",
            Verdict::Reactivated => "reactivated",
        }
    }
}

/// What happened to a planned action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Dry run: not applied.
    Planned,
    /// Applied. `key_id` is the new key's id for a CreateKey.
    Done {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_id: Option<String>,
    },
    /// Not applied because the state had already changed (idempotent re-run).
    Skipped { reason: String },
    /// Applied and failed. The message never contains a secret.
    Failed { error: String },
}

/// An action with its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    #[serde(flatten)]
    pub action: Action,
    pub result: Outcome,
}

/// The part of a user's actions that a dry run can predict exactly, for
/// comparing a plan with the run that follows it: a new key's id is unknown
/// beforehand, and when the plan creates a key, the old key's announced
/// deactivation date counts from that creation (the owner always gets the
/// full notice period). Everything else must match to the letter.
pub fn predictable(actions: &[ActionRecord]) -> Vec<Action> {
    let creates = actions.iter().any(|a| a.action == Action::CreateKey);
    actions
        .iter()
        .map(|a| match &a.action {
            Action::Notify {
                notice: Notice::DeactivationScheduled { key_id, on, .. },
            } => Action::Notify {
                notice: Notice::DeactivationScheduled {
                    key_id: key_id.clone(),
                    on: if creates {
                        OffsetDateTime::UNIX_EPOCH
                    } else {
                        *on
                    },
                    replacement: None,
                },
            },
            other => other.clone(),
        })
        .collect()
}
