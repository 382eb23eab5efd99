//! What a report says about keys once its run is over: pure functions over
//! the report model, used by the key reads, the export, the reactivation
//! check, the dashboard and the compliance trend (the report's own CIS
//! figure, see [`compliance`]).
//!
//! **Keys as of the end of a run.** A report lists each user's keys as the
//! agent found them, *before* the run, and the actions it took. The state
//! after the run is those keys with every action whose outcome is `Done`
//! applied in order ([`keys_after_run`]): a delete removes the key, a
//! deactivation makes it Inactive, a reactivation Active again, a creation
//! adds the new key (its id from `Outcome::Done { key_id }`). A planned,
//! skipped or failed action changed nothing. The report keeps no time per
//! account, so a new key's creation time is the run's start
//! ([`account_time`]), as the CSV report's key ages are; ages are whole days
//! at the run's end (`finalized_at`), by the report's own
//! [`report::key_age_days`].
//!
//! A key id may be empty: an agent that read only the credential report
//! (which has no key ids) and had nothing to do for the user reports the
//! key without it.

use keyfleet_protocol::plan::{Action, KeyState, KeyStatus, Notice, Outcome, UseSite, Verdict};
use keyfleet_protocol::report::{self, AccountReport, RunReport};
use keyfleet_protocol::{Policy, UserReport};
use serde::Serialize;
use time::OffsetDateTime;

/// The user's keys after the run's `Done` actions (see the module doc);
/// `created` is when the run created a key.
pub fn keys_after_run(user: &UserReport, created: OffsetDateTime) -> Vec<KeyState> {
    let mut keys = user.keys.clone();
    for rec in &user.actions {
        let Outcome::Done { key_id: new_key } = &rec.result else {
            continue;
        };
        match &rec.action {
            Action::Delete { key_id } => keys.retain(|k| &k.id != key_id),
            Action::Deactivate { key_id } => set_status(&mut keys, key_id, KeyStatus::Inactive),
            Action::Reactivate { key_id } => set_status(&mut keys, key_id, KeyStatus::Active),
            Action::CreateKey => keys.push(KeyState {
                id: new_key.clone().unwrap_or_default(),
                status: KeyStatus::Active,
                created,
                last_used: None,
                last_used_service: None,
                last_used_region: None,
            }),
            Action::Notify { .. } => {}
        }
    }
    keys
}

fn set_status(keys: &mut [KeyState], key_id: &str, status: KeyStatus) {
    for k in keys.iter_mut().filter(|k| k.id == key_id) {
        k.status = status;
    }
}

/// When the run acted in an account: the run's start (the report keeps no
/// per-account time; agents act within minutes of the start).
pub fn account_time(report: &RunReport, _account: &AccountReport) -> OffsetDateTime {
    report.created_at
}

pub fn status_str(s: KeyStatus) -> &'static str {
    match s {
        KeyStatus::Active => "Active",
        KeyStatus::Inactive => "Inactive",
    }
}

/// One key as the API shows it. Never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    pub key_id: String,
    pub status: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    pub age_days: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used: Option<OffsetDateTime>,
    pub last_used_service: Option<String>,
    pub last_used_region: Option<String>,
    /// Where the key was used from since its replacement was created, when
    /// the run told its owner it is still in use (CloudTrail; empty
    /// otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub used_from: Vec<UseSite>,
}

impl KeyView {
    /// `k`, one of `user`'s keys, as of `as_of`.
    pub fn of(user: &UserReport, k: &KeyState, as_of: OffsetDateTime) -> KeyView {
        KeyView {
            key_id: k.id.clone(),
            status: status_str(k.status),
            created: k.created,
            age_days: report::key_age_days(as_of, k.created),
            last_used: k.last_used,
            last_used_service: k.last_used_service.clone(),
            last_used_region: k.last_used_region.clone(),
            used_from: used_from(user, &k.id),
        }
    }
}

/// The places of use the run's still-in-use notice of `key_id` gave.
pub fn used_from(user: &UserReport, key_id: &str) -> Vec<UseSite> {
    user.actions
        .iter()
        .find_map(|a| match &a.action {
            Action::Notify {
                notice:
                    Notice::StillInUse {
                        key_id: k,
                        used_from,
                        ..
                    },
            } if !k.is_empty() && k == key_id => Some(used_from.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Where the secret of a user's current key is kept, by the run's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretLocation {
    /// `secrets_manager`, or `none` when the key went to its owner by
    /// email only.
    pub kept_in: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// `keyfleet/<user>`, each comma of the user name mapped to a slash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Also sent to the owner as an encrypted zip by email.
    pub emailed: bool,
    pub description: String,
}

pub fn secret_location(policy: &Policy, account: &str, user: &str) -> SecretLocation {
    let d = policy.delivery;
    if d.by_secrets_manager() {
        let name = keyfleet_protocol::secret_name(user);
        SecretLocation {
            kept_in: "secrets_manager",
            account_id: Some(account.to_string()),
            description: if d.by_email() {
                format!("Secrets Manager secret {name} in account {account}; also delivered to the owner by email")
            } else {
                format!("Secrets Manager secret {name} in account {account}")
            },
            secret_name: Some(name),
            emailed: d.by_email(),
        }
    } else {
        SecretLocation {
            kept_in: "none",
            account_id: None,
            secret_name: None,
            emailed: true,
            description: "not kept: delivered to the owner by email".into(),
        }
    }
}

/// An account and a user of a report.
pub enum Lookup<'r> {
    NoAccount,
    NoUser(&'r AccountReport),
    Found(&'r AccountReport, &'r UserReport),
}

pub fn find_user<'r>(report: &'r RunReport, account: &str, user: &str) -> Lookup<'r> {
    let Some(a) = report.accounts.iter().find(|a| a.account_id == account) else {
        return Lookup::NoAccount;
    };
    match a.users.iter().find(|u| u.user_name == user) {
        Some(u) => Lookup::Found(a, u),
        None => Lookup::NoUser(a),
    }
}

/// Whether a key can be switched back on, by a report of its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reactivation {
    /// Inactive at the end of the run.
    Possible,
    /// The run deleted it.
    Deleted,
    /// Active at the end of the run: nothing to switch on.
    Active,
    /// Neither before nor after the run.
    NeverSeen,
}

pub fn reactivation(user: &UserReport, key_id: &str, created: OffsetDateTime) -> Reactivation {
    let after = keys_after_run(user, created);
    match after.iter().find(|k| k.id == key_id) {
        Some(k) if k.status == KeyStatus::Inactive => Reactivation::Possible,
        Some(_) => Reactivation::Active,
        None if user.keys.iter().any(|k| k.id == key_id) => Reactivation::Deleted,
        None => Reactivation::NeverSeen,
    }
}

/// One row of the key inventory export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportRow {
    pub account_id: String,
    pub account_name: String,
    pub user_name: String,
    pub path: String,
    pub key_id: String,
    pub status: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    pub age_days: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used: Option<OffsetDateTime>,
    pub last_used_service: Option<String>,
    pub last_used_region: Option<String>,
    pub verdict: &'static str,
}

/// The CSV columns of the export, in order.
pub const EXPORT_COLUMNS: [&str; 12] = [
    "account_id",
    "account_name",
    "user_name",
    "path",
    "key_id",
    "status",
    "created",
    "age_days",
    "last_used",
    "last_used_service",
    "last_used_region",
    "verdict",
];

/// One row per key at the end of the run, accounts and users in report
/// order, each user's keys oldest first.
pub fn export_rows(report: &RunReport) -> Vec<ExportRow> {
    let mut rows = Vec::new();
    for a in &report.accounts {
        let created = account_time(report, a);
        for u in &a.users {
            let mut keys = keys_after_run(u, created);
            keys.sort_by_key(|k| k.created);
            for k in keys {
                rows.push(ExportRow {
                    account_id: a.account_id.clone(),
                    account_name: a.name.clone(),
                    user_name: u.user_name.clone(),
                    path: u.path.clone(),
                    key_id: k.id.clone(),
                    status: status_str(k.status),
                    created: k.created,
                    age_days: report::key_age_days(report.finalized_at, k.created),
                    last_used: k.last_used,
                    last_used_service: k.last_used_service.clone(),
                    last_used_region: k.last_used_region.clone(),
                    verdict: u.verdict.as_str(),
                });
            }
        }
    }
    rows
}

pub(crate) use keyfleet_reports::render::{guard_cell, rfc3339};

/// The export as CSV: UTF-8 byte-order mark, [`EXPORT_COLUMNS`], CRLF.
pub fn export_csv(rows: &[ExportRow]) -> Vec<u8> {
    let mut out = b"\xEF\xBB\xBF".to_vec();
    {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(&mut out);
        // Writing to memory cannot fail.
        w.write_record(EXPORT_COLUMNS).expect("write to memory");
        for r in rows {
            let cells = [
                r.account_id.clone(),
                r.account_name.clone(),
                r.user_name.clone(),
                r.path.clone(),
                r.key_id.clone(),
                r.status.to_string(),
                rfc3339(r.created),
                r.age_days.to_string(),
                r.last_used.map(rfc3339).unwrap_or_default(),
                r.last_used_service.clone().unwrap_or_default(),
                r.last_used_region.clone().unwrap_or_default(),
                r.verdict.to_string(),
            ];
            w.write_record(cells.iter().map(|c| guard_cell(c)))
                .expect("write to memory");
        }
        w.flush().expect("write to memory");
    }
    out
}

pub use keyfleet_reports::read::finalized::{compliance, Compliance};

/// A user's oldest key age at the end of the run, if it has keys.
pub fn oldest_key_age(keys: &[KeyState], as_of: OffsetDateTime) -> Option<u64> {
    keys.iter()
        .map(|k| report::key_age_days(as_of, k.created))
        .max()
}

/// A verdict from its name.
pub fn parse_verdict(s: &str) -> Option<Verdict> {
    Verdict::ALL.into_iter().find(|v| v.as_str() == s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfleet_protocol::Delivery;
    use serde_json::json;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-03-01 00:00 UTC);

    fn user(keys: serde_json::Value, actions: serde_json::Value) -> UserReport {
        serde_json::from_value(json!({
            "user_name": "alice",
            "verdict": "rotated",
            "keys": keys,
            "actions": actions,
        }))
        .unwrap()
    }

    fn key(id: &str, status: &str, created: &str) -> serde_json::Value {
        json!({"id": id, "status": status, "created": created,
               "last_used": "2026-02-27T10:00:00Z", "last_used_service": "s3",
               "last_used_region": "eu-west-1"})
    }

    const OLD: &str = "AKIAOLD0000000000001";
    const OTHER: &str = "AKIAOTHER00000000002";
    const NEW: &str = "AKIANEW0000000000003";

    #[test]
    fn a_rotation_adds_the_new_key_created_at_the_account_time() {
        let u = user(
            json!([key(OLD, "Active", "2025-12-01T00:00:00Z")]),
            json!([
                {"action": "create_key", "result": {"outcome": "done", "key_id": NEW}},
                {"action": "notify", "notice": {"kind": "deactivation_scheduled", "key_id": OLD,
                 "on": "2026-03-11T00:00:00Z"}, "result": {"outcome": "done"}},
            ]),
        );
        let after = keys_after_run(&u, T0);
        assert_eq!(after.len(), 2);
        assert_eq!(
            (after[0].id.as_str(), after[0].status),
            (OLD, KeyStatus::Active)
        );
        assert_eq!(after[1].id, NEW);
        assert_eq!((after[1].status, after[1].created), (KeyStatus::Active, T0));
        assert_eq!(after[1].last_used, None);
    }

    #[test]
    fn delete_removes_deactivate_and_reactivate_switch_the_status() {
        let u = user(
            json!([
                key(OLD, "Inactive", "2025-10-01T00:00:00Z"),
                key(OTHER, "Active", "2025-11-01T00:00:00Z"),
            ]),
            json!([
                {"action": "delete", "key_id": OLD, "result": {"outcome": "done"}},
                {"action": "deactivate", "key_id": OTHER, "result": {"outcome": "done"}},
            ]),
        );
        let after = keys_after_run(&u, T0);
        assert_eq!(after.len(), 1);
        assert_eq!(
            (after[0].id.as_str(), after[0].status),
            (OTHER, KeyStatus::Inactive)
        );
        let u = user(
            json!([key(OLD, "Inactive", "2025-10-01T00:00:00Z")]),
            json!([{"action": "reactivate", "key_id": OLD, "result": {"outcome": "done"}}]),
        );
        assert_eq!(keys_after_run(&u, T0)[0].status, KeyStatus::Active);
    }

    #[test]
    fn only_done_actions_change_keys() {
        let u = user(
            json!([key(OLD, "Active", "2025-10-01T00:00:00Z")]),
            json!([
                {"action": "create_key", "result": {"outcome": "planned"}},
                {"action": "deactivate", "key_id": OLD, "result": {"outcome": "failed", "error": "throttled"}},
                {"action": "delete", "key_id": OLD, "result": {"outcome": "skipped", "reason": "gone"}},
            ]),
        );
        assert_eq!(keys_after_run(&u, T0), u.keys);
    }

    #[test]
    fn reactivation_is_for_inactive_keys_only() {
        let u = user(
            json!([
                key(OLD, "Inactive", "2025-10-01T00:00:00Z"),
                key(OTHER, "Active", "2025-11-01T00:00:00Z"),
            ]),
            json!([{"action": "delete", "key_id": OLD, "result": {"outcome": "done"}}]),
        );
        assert_eq!(reactivation(&u, OLD, T0), Reactivation::Deleted);
        assert_eq!(reactivation(&u, OTHER, T0), Reactivation::Active);
        assert_eq!(reactivation(&u, NEW, T0), Reactivation::NeverSeen);
        let u = user(
            json!([key(OLD, "Active", "2025-10-01T00:00:00Z")]),
            json!([{"action": "deactivate", "key_id": OLD, "result": {"outcome": "done"}}]),
        );
        assert_eq!(reactivation(&u, OLD, T0), Reactivation::Possible);
    }

    #[test]
    fn the_secret_is_where_the_policy_delivers_it() {
        let mut p = Policy::default();
        let l = secret_location(&p, "111122223333", "a,b");
        assert_eq!(l.kept_in, "none");
        assert_eq!(l.description, "not kept: delivered to the owner by email");
        p.delivery = Delivery::SecretsManager;
        let l = secret_location(&p, "111122223333", "a,b");
        assert_eq!(l.secret_name.as_deref(), Some("keyfleet/a/b"));
        assert_eq!(l.account_id.as_deref(), Some("111122223333"));
        assert!(!l.emailed);
        p.delivery = Delivery::Both;
        let l = secret_location(&p, "111122223333", "bob");
        assert_eq!(l.secret_name.as_deref(), Some("keyfleet/bob"));
        assert!(l.emailed && l.description.contains("email"));
    }

    #[test]
    fn ages_are_whole_days_and_never_negative() {
        assert_eq!(
            report::key_age_days(T0, datetime!(2026-02-01 00:00 UTC)),
            28
        );
        assert_eq!(
            report::key_age_days(T0, datetime!(2026-02-28 00:00:01 UTC)),
            0
        );
        assert_eq!(report::key_age_days(T0, datetime!(2026-04-01 00:00 UTC)), 0);
    }

    #[test]
    fn export_cells_that_look_like_formulas_are_quoted() {
        let row = ExportRow {
            account_id: "111122223333".into(),
            account_name: "=HYPERLINK(\"x\")".into(),
            user_name: "+bob".into(),
            path: "/".into(),
            key_id: OLD.into(),
            status: "Active",
            created: T0,
            age_days: 3,
            last_used: None,
            last_used_service: None,
            last_used_region: None,
            verdict: "compliant",
        };
        let csv = String::from_utf8(export_csv(&[row])).unwrap();
        let mut lines = csv.trim_start_matches('\u{feff}').split("\r\n");
        assert_eq!(lines.next().unwrap(), EXPORT_COLUMNS.join(","));
        let line = lines.next().unwrap();
        assert!(line.contains("'+bob"), "{line}");
        assert!(line.contains("\"'=HYPERLINK"), "{line}");
        assert!(
            line.contains("2026-03-01T00:00:00Z,3,,,,compliant"),
            "{line}"
        );
    }
}
