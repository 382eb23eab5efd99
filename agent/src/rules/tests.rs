//! Tests of the rotation rules: the seed cases by name, an exhaustive table
//! against an independent oracle, a day-by-day timeline, and properties over
//! arbitrary valid policies.

use super::deletion::{inactive_expired, unused};
use super::rotation::{cutover, hard_limit, older_of_two_active, replacement, Pair, Single};
use super::*;
use keyfleet_protocol::{Delivery, Duration, KeyStatus, Limit, Notice};
use proptest::prelude::*;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2030-06-01 12:00 UTC);
const EMAIL: &str = "owner@example.com";

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

/// A key `age` days old, last used `used_ago` days ago (if ever).
fn key(id: &str, status: KeyStatus, age: i64, used_ago: Option<i64>) -> KeyState {
    KeyState {
        id: id.into(),
        status,
        created: NOW - days(age),
        last_used: used_ago.map(|d| NOW - days(d)),
        last_used_service: used_ago.map(|_| "s3".into()),
        last_used_region: used_ago.map(|_| "eu-west-1".into()),
    }
}

fn active(id: &str, age: i64, used_ago: Option<i64>) -> KeyState {
    key(id, KeyStatus::Active, age, used_ago)
}

fn inactive(id: &str, age: i64, used_ago: Option<i64>) -> KeyState {
    key(id, KeyStatus::Inactive, age, used_ago)
}

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn user(keys: Vec<KeyState>, tag_pairs: &[(&str, &str)]) -> UserSnapshot {
    UserSnapshot {
        user_name: "alice".into(),
        path: "/".into(),
        tags: tags(tag_pairs),
        keys,
        deactivated: vec![],
        reactivated: Vec::new(),
        deliveries: Vec::new(),
        handed_over: Vec::new(),
    }
}

fn owned(keys: Vec<KeyState>) -> UserSnapshot {
    user(keys, &[("Email", EMAIL)])
}

fn plan_at(u: &UserSnapshot, now: OffsetDateTime) -> UserPlan {
    plan_user(u, &Policy::default(), now)
}

fn plan(u: &UserSnapshot) -> UserPlan {
    plan_at(u, NOW)
}

fn notify(notice: Notice) -> Action {
    Action::Notify { notice }
}

fn delete(id: &str) -> Action {
    Action::Delete { key_id: id.into() }
}

fn deactivate(id: &str) -> Action {
    Action::Deactivate { key_id: id.into() }
}

fn deleted(id: &str) -> Action {
    notify(Notice::Deleted { key_id: id.into() })
}

fn deactivated(id: &str, replacement: Option<&str>) -> Action {
    notify(Notice::Deactivated {
        key_id: id.into(),
        replacement: replacement.map(Into::into),
    })
}

fn scheduled(id: &str, on: OffsetDateTime, replacement: Option<&str>) -> Action {
    notify(Notice::DeactivationScheduled {
        key_id: id.into(),
        on,
        replacement: replacement.map(Into::into),
    })
}

/// Applies a plan and checks that re-planning at the same instant changes
/// nothing more.
fn apply(u: &UserSnapshot, p: &UserPlan, policy: &Policy, now: OffsetDateTime) -> UserSnapshot {
    let after = applied(u, &p.actions, now);
    let again = plan_user(&after, policy, now);
    assert!(!again.mutates_iam(), "not idempotent: {again:?}");
    after
}

/// The user after `actions`, as the executor leaves it: keys as IAM has
/// them, and keyfleet's deactivations written to the protected record.
fn applied(u: &UserSnapshot, actions: &[Action], now: OffsetDateTime) -> UserSnapshot {
    let keys = simulate(&u.keys, actions, now).expect("plan applies");
    let mut deactivated = u.deactivated.clone();
    for a in actions {
        if let Action::Deactivate { key_id } = a {
            deactivated.retain(|(id, _)| id != key_id);
            deactivated.push((key_id.clone(), now));
        }
    }
    UserSnapshot {
        keys,
        deactivated,
        ..u.clone()
    }
}

// ---------------------------------------------------------------------------
// Seed cases and named scenarios.

#[test]
fn seed_one_key_nearing_expiry_creates_new_key() {
    let a = active("AKIAOLD", 80, Some(1));
    let p = plan(&owned(vec![a.clone()]));
    assert_eq!(p.verdict, Verdict::Rotated);
    assert_eq!(
        p.actions,
        vec![
            Action::CreateKey,
            scheduled("AKIAOLD", a.created + days(90), None)
        ]
    );
    assert_eq!(p.email.as_deref(), Some(EMAIL));
    // A day late, the owner still gets the full notice period.
    let p = plan(&owned(vec![active("AKIAOLD", 81, Some(1))]));
    assert_eq!(
        p.actions,
        vec![
            Action::CreateKey,
            scheduled("AKIAOLD", NOW + days(10), None)
        ]
    );
    // A day early, nothing is due.
    let p = plan(&owned(vec![active("AKIAOLD", 79, Some(1))]));
    assert_eq!((p.verdict, p.actions), (Verdict::Compliant, vec![]));
}

#[test]
fn seed_two_keys_older_inactive_deletes_older_creates_new() {
    let young = active("AKIAYOUNG", 82, Some(1));
    let u = owned(vec![young, inactive("AKIAOLD", 95, Some(40))]);
    let p = plan(&u);
    assert_eq!(p.verdict, Verdict::Rotated);
    assert_eq!(
        p.actions,
        vec![
            delete("AKIAOLD"),
            deleted("AKIAOLD"),
            Action::CreateKey,
            scheduled("AKIAYOUNG", NOW + days(10), None),
        ]
    );
    apply(&u, &p, &Policy::default(), NOW);
}

#[test]
fn seed_two_keys_younger_inactive_deletes_younger_creates_new() {
    let u = owned(vec![
        active("AKIAOLD", 85, Some(1)),
        inactive("AKIAYOUNG", 30, None),
    ]);
    let p = plan(&u);
    assert_eq!(p.verdict, Verdict::Rotated);
    assert_eq!(
        p.actions,
        vec![
            delete("AKIAYOUNG"),
            deleted("AKIAYOUNG"),
            Action::CreateKey,
            scheduled("AKIAOLD", NOW + days(10), None),
        ]
    );
    apply(&u, &p, &Policy::default(), NOW);
}

#[test]
fn seed_two_active_one_nearing_expiry_notice_then_deactivate_oldest() {
    // The old key was last used before the new key existed; the new key
    // has not been used yet, so nothing shows the owner switched (see
    // `cutover_*` for what happens when it has).
    let old = active("AKIAOLD", 85, Some(6));
    let new = active("AKIANEW", 5, None);
    let u = owned(vec![old.clone(), new]);
    let on = old.created + days(90);
    let p = plan(&u);
    assert_eq!(p.verdict, Verdict::PendingDeactivation);
    assert_eq!(p.actions, vec![scheduled("AKIAOLD", on, Some("AKIANEW"))]);
    // Still a notice one second before the date.
    let p = plan_at(&u, on - time::Duration::seconds(1));
    assert_eq!(p.verdict, Verdict::PendingDeactivation);
    // On the date (old key 90 days old): deactivated, the oldest only.
    let p = plan_at(&u, on);
    assert_eq!(p.verdict, Verdict::Deactivated);
    assert_eq!(
        p.actions,
        vec![
            deactivate("AKIAOLD"),
            deactivated("AKIAOLD", Some("AKIANEW"))
        ]
    );
    let u = apply(&u, &p, &Policy::default(), on);
    // Deleted once it is 100 days old.
    let p = plan_at(&u, old.created + days(100) - time::Duration::seconds(1));
    assert_eq!((p.verdict, p.actions), (Verdict::Compliant, vec![]));
    let p = plan_at(&u, old.created + days(100));
    assert_eq!(p.verdict, Verdict::Cleaned);
    assert_eq!(p.actions, vec![delete("AKIAOLD"), deleted("AKIAOLD")]);
}

#[test]
fn seed_unused_key_deleted_and_notified() {
    let p = plan(&owned(vec![active("AKIAIDLE", 90, None)]));
    assert_eq!(p.verdict, Verdict::Cleaned);
    assert_eq!(
        p.actions,
        vec![
            delete("AKIAIDLE"),
            notify(Notice::UnusedDeleted {
                key_id: "AKIAIDLE".into(),
                last_used: None
            }),
        ]
    );
    // Used once, long ago: deleted too, and not replaced.
    let k = active("AKIAIDLE", 110, Some(91));
    let p = plan(&owned(vec![k.clone()]));
    assert_eq!(
        p.actions,
        vec![
            delete("AKIAIDLE"),
            notify(Notice::UnusedDeleted {
                key_id: "AKIAIDLE".into(),
                last_used: k.last_used
            }),
        ]
    );
    // An unused old key next to a working one goes alone.
    let p = plan(&owned(vec![
        active("AKIAIDLE", 95, Some(92)),
        active("AKIAWORK", 15, Some(1)),
    ]));
    assert_eq!(p.verdict, Verdict::Cleaned);
    assert_eq!(p.actions.len(), 2);
    assert_eq!(p.actions[0], delete("AKIAIDLE"));
}

#[test]
fn never_used_key_is_not_replaced_before_it_is_deleted() {
    let p = plan(&owned(vec![active("AKIANEVER", 85, None)]));
    assert_eq!((p.verdict, p.actions), (Verdict::Compliant, vec![]));
}

#[test]
fn exempt_user_gets_nothing_even_with_ancient_keys() {
    let keys = vec![active("AKIAA", 900, Some(1)), inactive("AKIAB", 800, None)];
    for value in ["True", "true", " TRUE "] {
        let p = plan(&user(keys.clone(), &[("Exempt", value), ("Email", EMAIL)]));
        assert_eq!((p.verdict, p.exempt), (Verdict::Exempt, true), "{value}");
        assert!(p.actions.is_empty());
        assert_eq!(p.email.as_deref(), Some(EMAIL));
    }
    for (k, v) in [("Exempt", "False"), ("exempt", "True"), ("Exempt", "yes")] {
        let p = plan(&user(keys.clone(), &[(k, v), ("Email", EMAIL)]));
        assert!(!p.exempt, "{k}={v}");
        assert_ne!(p.verdict, Verdict::Exempt);
    }
    // Exempt takes precedence over "no keys".
    let p = plan(&user(vec![], &[("Exempt", "True")]));
    assert_eq!(p.verdict, Verdict::Exempt);
    let p = plan(&owned(vec![]));
    assert_eq!((p.verdict, p.actions), (Verdict::NoKeys, vec![]));
}

#[test]
fn user_without_email_is_unreachable_and_gets_no_key() {
    for tag_pairs in [&[][..], &[("Email", "nobody")][..], &[("email", EMAIL)][..]] {
        let p = plan(&user(vec![active("AKIAOLD", 85, Some(1))], tag_pairs));
        assert_eq!(
            (p.verdict, &p.actions, &p.email),
            (Verdict::Unreachable, &vec![], &None),
            "{tag_pairs:?}"
        );
        // The inactive key is not deleted just to make room.
        let p = plan(&user(
            vec![
                active("AKIAOLD", 85, Some(1)),
                inactive("AKIAYOUNG", 20, None),
            ],
            tag_pairs,
        ));
        assert_eq!((p.verdict, p.actions), (Verdict::Unreachable, vec![]));
    }
    // Unreachable outranks routine deletions.
    let p = plan(&user(
        vec![
            active("AKIAOLD", 85, Some(1)),
            inactive("AKIAGONE", 105, None),
        ],
        &[],
    ));
    assert_eq!(p.verdict, Verdict::Unreachable);
    assert_eq!(p.actions, vec![delete("AKIAGONE"), deleted("AKIAGONE")]);
}

#[test]
fn secrets_manager_delivery_needs_no_email() {
    let policy = Policy {
        delivery: Delivery::SecretsManager,
        ..Policy::default()
    };
    let p = plan_user(
        &user(vec![active("AKIAOLD", 85, Some(1))], &[]),
        &policy,
        NOW,
    );
    assert_eq!(p.verdict, Verdict::Rotated);
    assert_eq!(p.actions[0], Action::CreateKey);
    let both = Policy {
        delivery: Delivery::Both,
        ..Policy::default()
    };
    let p = plan_user(&user(vec![active("AKIAOLD", 85, Some(1))], &[]), &both, NOW);
    assert_eq!(p.verdict, Verdict::Rotated);
}

#[test]
fn still_in_use_then_hard_limit() {
    // Replacement created when the old key was 80 days old; the old key was
    // used since (yesterday).
    let old = active("AKIAOLD", 95, Some(1));
    let new = active("AKIANEW", 15, Some(3));
    let u = owned(vec![new, old.clone()]);
    let still = notify(Notice::StillInUse {
        key_id: "AKIAOLD".into(),
        last_used: old.last_used,
        service: Some("s3".into()),
        region: Some("eu-west-1".into()),
        replacement: Some("AKIANEW".into()),
        used_from: Vec::new(),
    });
    let p = plan(&u);
    assert_eq!(
        (p.verdict, p.actions),
        (Verdict::StillInUse, vec![still.clone()])
    );
    let p = plan_at(&u, old.created + days(120) - time::Duration::seconds(1));
    assert_eq!((p.verdict, p.actions), (Verdict::StillInUse, vec![still]));
    // At the hard limit it goes, in use or not. Used the day before, it stays
    // recoverable (inactive) for the recovery window after that use.
    let at = old.created + days(120);
    let mut old = old;
    old.last_used = Some(at - days(1));
    let u = owned(vec![u.keys[0].clone(), old.clone()]);
    let p = plan_at(&u, at);
    assert_eq!(p.verdict, Verdict::Deactivated);
    assert_eq!(
        p.actions,
        vec![
            deactivate("AKIAOLD"),
            deactivated("AKIAOLD", Some("AKIANEW"))
        ]
    );
    let u = apply(&u, &p, &Policy::default(), at);
    let recoverable_until = at + days(10);
    let p = plan_at(&u, recoverable_until - time::Duration::seconds(1));
    assert!(p.actions.is_empty());
    let p = plan_at(&u, recoverable_until);
    assert_eq!(p.actions, vec![delete("AKIAOLD"), deleted("AKIAOLD")]);
}

#[test]
fn late_replacement_keeps_full_notice_period() {
    // The rotation came late (old key already 95 days old).
    let old = active("AKIAOLD", 95, Some(1));
    let u = owned(vec![old.clone()]);
    let p = plan(&u);
    assert_eq!(
        p.actions,
        vec![
            Action::CreateKey,
            scheduled("AKIAOLD", NOW + days(10), None)
        ]
    );
    let u = apply(&u, &p, &Policy::default(), NOW);
    // Owner switched immediately: the old key goes after the full notice.
    let p = plan_at(&u, NOW + days(10) - time::Duration::seconds(1));
    assert_eq!(
        p.actions,
        vec![scheduled("AKIAOLD", NOW + days(10), Some("NEW0"))]
    );
    let p = plan_at(&u, NOW + days(10));
    assert_eq!(
        p.actions,
        vec![deactivate("AKIAOLD"), deactivated("AKIAOLD", Some("NEW0"))]
    );
    // Deletion is shifted the same way: 20 days after the replacement.
    let u = apply(&u, &p, &Policy::default(), NOW + days(10));
    assert!(plan_at(&u, NOW + days(20) - time::Duration::seconds(1))
        .actions
        .is_empty());
    assert_eq!(
        plan_at(&u, NOW + days(20)).actions,
        vec![delete("AKIAOLD"), deleted("AKIAOLD")]
    );
    // The hard limit does not cut the notice period short.
    let old = active("AKIAOLD", 115, Some(1));
    let p = plan(&owned(vec![old.clone()]));
    assert_eq!(
        p.actions,
        vec![
            Action::CreateKey,
            scheduled("AKIAOLD", NOW + days(10), None)
        ]
    );
}

#[test]
fn late_replacement_of_an_existing_pair_keeps_full_notice_period() {
    // The second key appeared when the first was 88 days old; not used
    // yet (no cutover).
    let old = active("AKIAOLD", 90, Some(3));
    let new = active("AKIANEW", 2, None);
    let p = plan(&owned(vec![old.clone(), new.clone()]));
    assert_eq!(
        p.actions,
        vec![scheduled(
            "AKIAOLD",
            new.created + days(10),
            Some("AKIANEW")
        )]
    );
}

#[test]
fn hard_limit_deactivates_keys_of_unreachable_users() {
    // Recently used: deactivated, kept for the recovery window.
    let p = plan(&user(vec![active("AKIAOLD", 120, Some(1))], &[]));
    assert_eq!(p.verdict, Verdict::Deactivated);
    assert_eq!(
        p.actions,
        vec![deactivate("AKIAOLD"), deactivated("AKIAOLD", None)]
    );
    // Switched off: no hard limit at all.
    let never = Policy {
        max_key_age: Limit::Never,
        ..Policy::default()
    };
    let p = plan_user(
        &user(vec![active("AKIAOLD", 900, Some(1))], &[]),
        &never,
        NOW,
    );
    assert_eq!((p.verdict, p.actions), (Verdict::Unreachable, vec![]));
}

/// Issue: a user without an email tag whose only active key is 125 days
/// old and was used 11 days ago lost the key in one run (deactivated and
/// deleted at once).
#[test]
fn unowned_key_past_the_hard_limit_is_deactivated_not_deleted() {
    let u = user(vec![active("AKIAOLD", 125, Some(11))], &[]);
    let p = plan(&u);
    assert_eq!(p.verdict, Verdict::Deactivated);
    assert_eq!(
        p.actions,
        vec![deactivate("AKIAOLD"), deactivated("AKIAOLD", None)]
    );
    // keyfleet records the deactivation; the key stays recoverable for the
    // whole window (delete_after - deactivate_after) after it.
    let mut u = apply(&u, &p, &Policy::default(), NOW);
    u.deactivated = vec![("AKIAOLD".into(), NOW)];
    assert!(plan_at(&u, NOW + days(10) - time::Duration::seconds(1))
        .actions
        .is_empty());
    assert_eq!(
        plan_at(&u, NOW + days(10)).actions,
        vec![delete("AKIAOLD"), deleted("AKIAOLD")]
    );
    // Even a key unused for 50 days is not deleted in the run that
    // deactivates it.
    let p = plan(&user(vec![active("AKIAOLD", 125, Some(50))], &[]));
    assert!(!p.actions.contains(&delete("AKIAOLD")), "{:?}", p.actions);
}

/// Issue: on first deployment a key in use past `max_key_age` (125 days,
/// used yesterday) got a replacement and was deactivated in the same run.
#[test]
fn first_deployment_key_past_max_age_keeps_full_notice_period() {
    let u = owned(vec![active("AKIAOLD", 125, Some(1))]);
    let p = plan(&u);
    assert_eq!(p.verdict, Verdict::Rotated);
    assert_eq!(
        p.actions,
        vec![
            Action::CreateKey,
            scheduled("AKIAOLD", NOW + days(10), None)
        ]
    );
    let u = apply(&u, &p, &Policy::default(), NOW);
    assert!(!plan_at(&u, NOW + days(10) - time::Duration::seconds(1)).mutates_iam());
    assert_eq!(
        plan_at(&u, NOW + days(10)).actions,
        vec![deactivate("AKIAOLD"), deactivated("AKIAOLD", Some("NEW0"))]
    );
    // With an inactive key in the way, it makes room first.
    let u = owned(vec![
        active("AKIAOLD", 125, Some(1)),
        inactive("AKIAX", 30, None),
    ]);
    let p = plan(&u);
    assert_eq!(
        p.actions,
        vec![
            delete("AKIAX"),
            deleted("AKIAX"),
            Action::CreateKey,
            scheduled("AKIAOLD", NOW + days(10), None)
        ]
    );
    // Only the explicit setting enforces the hard limit at once.
    let immediate = Policy {
        deactivate_at_max_age_without_notice: true,
        ..Policy::default()
    };
    let p = plan_user(
        &owned(vec![active("AKIAOLD", 125, Some(1))]),
        &immediate,
        NOW,
    );
    assert_eq!(
        p.actions,
        vec![
            Action::CreateKey,
            deactivate("AKIAOLD"),
            deactivated("AKIAOLD", None)
        ]
    );
}

/// A key keyfleet deactivated recently is not deleted, not even to make
/// room for a new key.
#[test]
fn recorded_deactivation_delays_deletion_and_room() {
    let mut u = owned(vec![
        inactive("AKIAOFF", 200, Some(40)),
        active("AKIAON", 85, Some(1)),
    ]);
    // Without a record: deleted to make room, key rotated.
    let p = plan(&u);
    assert_eq!(p.actions[..2], [delete("AKIAOFF"), deleted("AKIAOFF")]);
    // Recorded as deactivated 3 days ago: it stays, the rotation waits.
    u.deactivated = vec![("AKIAOFF".into(), NOW - days(3))];
    let p = plan(&u);
    assert!(!p.mutates_iam(), "{:?}", p.actions);
    u.deactivated = vec![("AKIAOFF".into(), NOW - days(10))];
    assert!(plan(&u).actions.contains(&Action::CreateKey));
}

#[test]
fn deactivation_cascades_into_rotation_of_the_younger_key() {
    // Both keys old; the older one is due and unused since the younger one
    // appeared, and the younger one is past rotate_after itself.
    let u = owned(vec![
        active("AKIAA", 95, Some(88)),
        active("AKIAB", 85, Some(1)),
    ]);
    let p = plan(&u);
    assert_eq!(
        p.actions,
        vec![deactivate("AKIAA"), deactivated("AKIAA", Some("AKIAB"))]
    );
    assert_eq!(p.verdict, Verdict::Deactivated);
    // The younger key's rotation waits until the deactivated key may go:
    // never deactivate and delete one key in one run.
    let u = apply(&u, &p, &Policy::default(), NOW);
    let p = plan_at(&u, NOW + days(10));
    assert_eq!(
        p.actions,
        vec![
            delete("AKIAA"),
            deleted("AKIAA"),
            Action::CreateKey,
            scheduled("AKIAB", NOW + days(20), None),
        ]
    );
}

#[test]
fn cleanup_mode_is_silent_and_creates_nothing() {
    let policy = Policy {
        cleanup: true,
        ..Policy::default()
    };
    let keys = vec![
        active("AKIAOLD", 95, Some(1)),
        inactive("AKIAGONE", 105, Some(60)),
    ];
    // No email: the inactive key goes, the over-age active key is switched
    // off; recently used, it stays recoverable.
    let u = user(keys.clone(), &[]);
    let p = plan_user(&u, &policy, NOW);
    assert_eq!(p.verdict, Verdict::Deactivated);
    assert_eq!(p.actions, vec![delete("AKIAGONE"), deactivate("AKIAOLD")]);
    apply(&u, &p, &policy, NOW);
    // With an email: only the deletion; rotation waits for a scheduled run.
    let p = plan_user(&user(keys, &[("Email", EMAIL)]), &policy, NOW);
    assert_eq!(
        (p.verdict, p.actions),
        (Verdict::Cleaned, vec![delete("AKIAGONE")])
    );
    // An over-age key used after its replacement was created is kept.
    let u = user(
        vec![active("AKIAOLD", 95, Some(1)), active("AKIANEW", 10, None)],
        &[],
    );
    let p = plan_user(&u, &policy, NOW);
    assert_eq!((p.verdict, p.actions), (Verdict::Compliant, vec![]));
    // Over age and idle long enough: switched off, never deleted in the
    // same run (clean-up never deletes an active key).
    let u = user(vec![active("AKIAOLD", 130, Some(40))], &[]);
    let p = plan_user(&u, &policy, NOW);
    assert_eq!(p.actions, vec![deactivate("AKIAOLD")]);
    // Unused keys and rotation are left to scheduled runs.
    let u = user(vec![active("AKIAIDLE", 85, None)], &[("Email", EMAIL)]);
    assert!(plan_user(&u, &policy, NOW).actions.is_empty());
}

#[test]
fn verdict_priority_is_as_documented() {
    assert_eq!(VERDICT_PRIORITY[0], Verdict::Rotated);
    assert_eq!(VERDICT_PRIORITY.last(), Some(&Verdict::Compliant));
    // Rotated outranks the deletion that made room.
    let p = plan(&owned(vec![
        active("AKIAOLD", 85, Some(1)),
        inactive("AKIAX", 20, None),
    ]));
    assert_eq!(p.verdict, Verdict::Rotated);
    // Deactivated outranks Unreachable (hard limit, no email).
    let p = plan(&user(vec![active("AKIAOLD", 130, Some(1))], &[]));
    assert_eq!(p.verdict, Verdict::Deactivated);
}

#[test]
fn email_tag_must_be_one_address() {
    let policy = Policy::default();
    let email = |v: &str| owner_email(&tags(&[("Email", v)]), &policy);
    assert_eq!(email(" a.b@example.com "), Some("a.b@example.com".into()));
    for bad in [
        "",
        "nobody",
        "@example.com",
        "a@",
        "a@b@c",
        "a b@example.com",
        "a@example.com,b@example.com",
        "a@example.com;b@example.com",
    ] {
        assert_eq!(email(bad), None, "{bad:?}");
    }
    // The key is case-sensitive and configurable.
    assert_eq!(owner_email(&tags(&[("EMAIL", EMAIL)]), &policy), None);
    let custom = Policy {
        email_tag: "owner".into(),
        ..Policy::default()
    };
    assert_eq!(
        owner_email(&tags(&[("owner", EMAIL)]), &custom).as_deref(),
        Some(EMAIL)
    );
}

#[test]
fn future_timestamps_count_as_now() {
    // A last use in the future (clock skew) is a use now.
    let mut k = active("AKIAOLD", 85, None);
    k.last_used = Some(NOW + days(3));
    let p = plan(&owned(vec![k]));
    assert_eq!(p.verdict, Verdict::Rotated);
    // A key created in the future is brand new.
    let k = active("AKIAFUT", -5, Some(0));
    let p = plan(&owned(vec![k]));
    assert_eq!((p.verdict, p.actions), (Verdict::Compliant, vec![]));
}

#[test]
fn huge_thresholds_do_not_overflow_dates() {
    let policy = Policy {
        deactivate_after: "99999999d".parse().unwrap(),
        delete_after: "99999999d".parse().unwrap(),
        max_key_age: Limit::Never,
        ..Policy::default()
    };
    policy.validate().unwrap();
    let p = plan_user(&owned(vec![active("AKIAOLD", 85, Some(1))]), &policy, NOW);
    assert_eq!(p.verdict, Verdict::Rotated);
}

// ---------------------------------------------------------------------------
// Emergency rotation.

#[test]
fn emergency_rotates_and_optionally_deactivates_at_once() {
    let policy = Policy::default();
    let old = active("AKIAOLD", 10, Some(1));
    let u = owned(vec![old.clone()]);
    let p = plan_emergency(&u, &policy, NOW, false, None).unwrap();
    assert_eq!(p.verdict, Verdict::Rotated);
    assert_eq!(
        p.actions,
        vec![
            Action::CreateKey,
            scheduled("AKIAOLD", old.created + days(90), None)
        ]
    );
    let p = plan_emergency(&u, &policy, NOW, true, None).unwrap();
    assert_eq!(
        p.actions,
        vec![
            Action::CreateKey,
            deactivate("AKIAOLD"),
            deactivated("AKIAOLD", None)
        ]
    );
    // Makes room by deleting the inactive key, whichever it is.
    let u = owned(vec![old.clone(), inactive("AKIAX", 5, None)]);
    let p = plan_emergency(&u, &policy, NOW, true, None).unwrap();
    assert_eq!(
        p.actions,
        vec![
            delete("AKIAX"),
            deleted("AKIAX"),
            Action::CreateKey,
            deactivate("AKIAOLD"),
            deactivated("AKIAOLD", None)
        ]
    );
    // Two active keys: refused unless the key to replace is named; the
    // error lists both keys.
    let u = owned(vec![active("AKIAB", 5, Some(1)), old]);
    let e = plan_emergency(&u, &policy, NOW, false, None).unwrap_err();
    assert!(matches!(e, EmergencyError::NeedsKeyId { .. }), "{e}");
    assert!(
        e.to_string().contains("AKIAOLD") && e.to_string().contains("AKIAB"),
        "{e}"
    );
    assert!(matches!(
        plan_emergency(&u, &policy, NOW, false, Some("AKIANOPE")),
        Err(EmergencyError::UnknownKey { .. })
    ));
    // Named: that key is switched off and deleted (the one exception), the
    // other one is not touched.
    let p = plan_emergency(&u, &policy, NOW, false, Some("AKIAOLD")).unwrap();
    assert_eq!(
        p.actions,
        vec![
            deactivate("AKIAOLD"),
            deactivated("AKIAOLD", None),
            delete("AKIAOLD"),
            deleted("AKIAOLD"),
            Action::CreateKey,
        ]
    );
    simulate(&u.keys, &p.actions, NOW).unwrap();
    let p = plan_emergency(&u, &policy, NOW, true, Some("AKIAB")).unwrap();
    assert_eq!(
        p.actions,
        vec![
            deactivate("AKIAB"),
            deactivated("AKIAB", None),
            delete("AKIAB"),
            deleted("AKIAB"),
            Action::CreateKey,
        ]
    );
}

#[test]
fn emergency_for_unreachable_or_keyless_users_creates_nothing() {
    let policy = Policy::default();
    let u = user(vec![active("AKIAOLD", 10, Some(1))], &[]);
    let p = plan_emergency(&u, &policy, NOW, false, None).unwrap();
    assert_eq!((p.verdict, p.actions), (Verdict::Unreachable, vec![]));
    let p = plan_emergency(&u, &policy, NOW, true, None).unwrap();
    assert_eq!(p.verdict, Verdict::Deactivated);
    assert_eq!(
        p.actions,
        vec![deactivate("AKIAOLD"), deactivated("AKIAOLD", None)]
    );
    let p = plan_emergency(&owned(vec![]), &policy, NOW, true, None).unwrap();
    assert_eq!((p.verdict, p.actions), (Verdict::NoKeys, vec![]));
    // The exempt tag does not stop an explicit order.
    let u = user(
        vec![active("AKIAOLD", 10, Some(1))],
        &[("Email", EMAIL), ("Exempt", "True")],
    );
    let p = plan_emergency(&u, &policy, NOW, true, None).unwrap();
    assert_eq!((p.verdict, p.exempt), (Verdict::Rotated, true));
}

// ---------------------------------------------------------------------------
// simulate.

#[test]
fn simulate_applies_actions_like_iam() {
    let keys = vec![active("AKIAA", 10, None), inactive("AKIAB", 5, None)];
    let out = simulate(
        &keys,
        &[
            delete("AKIAB"),
            deleted("AKIAB"),
            Action::CreateKey,
            deactivate("AKIAA"),
        ],
        NOW,
    )
    .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].status, KeyStatus::Inactive);
    assert_eq!(
        (out[1].id.as_str(), out[1].status, out[1].created),
        ("NEW0", KeyStatus::Active, NOW)
    );
    // Synthetic ids skip ids in use.
    let out = simulate(&[active("NEW0", 1, None)], &[Action::CreateKey], NOW).unwrap();
    assert_eq!(out[1].id, "NEW1");
}

#[test]
fn simulate_names_the_broken_rule() {
    let keys = vec![active("AKIAA", 10, None), inactive("AKIAB", 5, None)];
    let e = simulate(&keys, &[Action::CreateKey], NOW).unwrap_err();
    assert_eq!(
        e,
        SimError::TooManyKeys {
            action: Some(0),
            count: 3
        }
    );
    assert!(e.to_string().contains("at most 2"), "{e}");
    let e = simulate(&keys, &[delete("AKIAZ")], NOW).unwrap_err();
    assert!(matches!(e, SimError::UnknownKey { action: 0, .. }), "{e}");
    assert!(e.to_string().contains("AKIAZ"));
    let e = simulate(&keys, &[deactivate("AKIAB")], NOW).unwrap_err();
    assert!(matches!(e, SimError::AlreadyInactive { .. }), "{e}");
    let e = simulate(&keys, &[delete("AKIAA"), delete("AKIAA")], NOW).unwrap_err();
    assert!(matches!(e, SimError::UnknownKey { action: 1, .. }), "{e}");
    let twins = vec![active("", 10, None), active("", 5, None)];
    let e = simulate(&twins, &[delete("")], NOW).unwrap_err();
    assert!(matches!(e, SimError::AmbiguousKey { .. }), "{e}");
    let three = vec![keys[0].clone(), keys[1].clone(), active("AKIAC", 1, None)];
    let e = simulate(&three, &[], NOW).unwrap_err();
    assert_eq!(
        e,
        SimError::TooManyKeys {
            action: None,
            count: 3
        }
    );
    assert!(!e.to_string().is_empty());
}

// ---------------------------------------------------------------------------
// A timeline: one user, a run every day for 250 days.

/// Runs the rules daily at noon under the default policy. Each morning the
/// owner uses the newest active key that is at least `switch_after` days
/// old (or the older one). Returns (day, action kind, key) for every IAM
/// change.
fn timeline(switch_after: i64, total_days: i64) -> Vec<(i64, &'static str, String)> {
    timeline_with(&Policy::default(), switch_after, total_days)
}

/// [`timeline`] under `policy`.
fn timeline_with(
    policy: &Policy,
    switch_after: i64,
    total_days: i64,
) -> Vec<(i64, &'static str, String)> {
    let start = datetime!(2030-01-01 12:00 UTC);
    let mut u = owned(vec![KeyState {
        id: "K0".into(),
        status: KeyStatus::Active,
        created: start,
        last_used: None,
        last_used_service: None,
        last_used_region: None,
    }]);
    let mut events = Vec::new();
    let mut serial = 0;
    for day in 1..=total_days {
        let noon = start + days(day);
        let morning = noon - time::Duration::hours(3);
        let mut actives: Vec<usize> = (0..u.keys.len())
            .filter(|&i| u.keys[i].status == KeyStatus::Active)
            .collect();
        actives.sort_by_key(|&i| u.keys[i].created);
        let pick = actives
            .iter()
            .rev()
            .find(|&&i| morning - u.keys[i].created >= days(switch_after))
            .or(actives.first())
            .copied();
        let Some(i) = pick else {
            panic!("day {day}: the owner has no active key: {u:?}");
        };
        u.keys[i].last_used = Some(morning);
        let p = plan_user(&u, policy, noon);
        let mut after = applied(&u, &p.actions, noon);
        for a in &p.actions {
            match a {
                Action::CreateKey => events.push((day, "create", String::new())),
                Action::Deactivate { key_id } => events.push((day, "deactivate", key_id.clone())),
                Action::Delete { key_id } => events.push((day, "delete", key_id.clone())),
                Action::Reactivate { key_id } => events.push((day, "reactivate", key_id.clone())),
                Action::Notify { .. } => {}
            }
        }
        for k in after.keys.iter_mut().filter(|k| k.id.starts_with("NEW")) {
            serial += 1;
            k.id = format!("K{serial}");
        }
        u = after;
        assert!(u.keys.len() <= MAX_KEYS);
        assert!(!plan_user(&u, policy, noon).mutates_iam(), "day {day}");
    }
    events
}

/// The owner switches to each new key the morning after it arrives: the
/// run that sees it (day 81) cuts over, the old key is not kept active for
/// the rest of the notice period; its deletion date does not move.
#[test]
fn timeline_prompt_owner_rotates_every_80_days() {
    let ev = |day, kind, id: &str| (day, kind, id.to_string());
    assert_eq!(
        timeline(0, 250),
        vec![
            ev(80, "create", ""),
            ev(81, "deactivate", "K0"),
            ev(100, "delete", "K0"),
            ev(160, "create", ""),
            ev(161, "deactivate", "K1"),
            ev(180, "delete", "K1"),
            ev(240, "create", ""),
            ev(241, "deactivate", "K2"),
        ]
    );
}

/// Cutover switched off: the same owner, today's fixed schedule (the old
/// key goes on day 90 of its life).
#[test]
fn timeline_without_cutover_the_old_key_goes_on_its_date() {
    let ev = |day, kind, id: &str| (day, kind, id.to_string());
    assert_eq!(
        timeline_with(&no_cutover(), 0, 250),
        vec![
            ev(80, "create", ""),
            ev(90, "deactivate", "K0"),
            ev(100, "delete", "K0"),
            ev(160, "create", ""),
            ev(170, "deactivate", "K1"),
            ev(180, "delete", "K1"),
            ev(240, "create", ""),
            ev(250, "deactivate", "K2"),
        ]
    );
}

#[test]
fn timeline_slow_owner_keeps_old_key_until_hard_limit() {
    // Uses the old key for three more days: it is still in use after the
    // replacement appeared, so it survives until 120 days; it is deleted
    // the recovery window after its deactivation, never in the same run.
    // No cutover either: the old key was used after the new one arrived.
    let ev = |day, kind, id: &str| (day, kind, id.to_string());
    let want = vec![
        ev(80, "create", ""),
        ev(120, "deactivate", "K0"),
        ev(130, "delete", "K0"),
        ev(160, "create", ""),
        ev(200, "deactivate", "K1"),
    ];
    assert_eq!(timeline(3, 200), want);
    assert_eq!(timeline_with(&no_cutover(), 3, 200), want);
}

// ---------------------------------------------------------------------------
// The exhaustive table: every combination of 0, 1 or 2 keys x status x age
// band x last use x email x exempt, for several policies, in scheduled and
// clean-up mode, checked against an oracle written as a case analysis.

#[derive(Clone, Copy, Debug)]
enum Use {
    Never,
    Recently,
    LongAgo,
    AfterReplacement,
}

const USES: [Use; 4] = [
    Use::Never,
    Use::Recently,
    Use::LongAgo,
    Use::AfterReplacement,
];

#[derive(Default)]
struct Expected {
    deleted: Vec<(KeyState, bool)>,
    deactivated: Vec<(KeyState, Option<String>)>,
    created: bool,
    reminders: Vec<Notice>,
    unreachable: bool,
}

/// The rules restated per situation (how many keys, which are active),
/// with plain second arithmetic.
struct Oracle<'a> {
    p: &'a Policy,
    now: OffsetDateTime,
    /// Keys whose uses after their replacement were the handover read.
    handed_over: &'a [String],
    deliverable: bool,
}

impl Oracle<'_> {
    fn secs(d: Duration) -> i64 {
        i64::try_from(d.as_secs()).unwrap()
    }
    fn created(&self, k: &KeyState) -> OffsetDateTime {
        if k.created > self.now {
            self.now
        } else {
            k.created
        }
    }
    fn age(&self, k: &KeyState) -> i64 {
        (self.now - self.created(k)).whole_seconds()
    }
    fn idle(&self, k: &KeyState) -> i64 {
        let last = match k.last_used {
            Some(u) if u > self.now => self.now,
            Some(u) if u > self.created(k) => u,
            _ => self.created(k),
        };
        (self.now - last).whole_seconds()
    }
    fn hard(&self, k: &KeyState) -> bool {
        match self.p.max_key_age {
            Limit::Never => false,
            Limit::After(m) => self.age(k) >= Self::secs(m),
        }
    }
    fn unused(&self, k: &KeyState) -> bool {
        self.idle(k) >= Self::secs(self.p.unused_delete_after)
    }
    fn used_after(&self, k: &KeyState, r: &KeyState) -> bool {
        match k.last_used {
            Some(_) if self.handed_over.contains(&k.id) => false,
            Some(u) => std::cmp::min(u, self.now) > self.created(r),
            None => false,
        }
    }
    /// Inactive `k` past its deletion date; `r` its active replacement.
    fn expired(&self, k: &KeyState, r: Option<&KeyState>) -> bool {
        let (rot, deact, del) = (
            Self::secs(self.p.rotate_after),
            Self::secs(self.p.deactivate_after),
            Self::secs(self.p.delete_after),
        );
        self.age(k) >= del
            && self.idle(k) >= del - deact
            && r.map(|r| self.age(r) >= del - rot).unwrap_or(true)
    }
    fn date(&self, old: &KeyState, repl_created: OffsetDateTime) -> OffsetDateTime {
        let a = self.created(old) + self.p.deactivate_after.to_time();
        let b = repl_created + self.p.notice_period().to_time();
        let date = if a > b { a } else { b };
        match self.p.max_key_age {
            Limit::After(m)
                if self.p.deactivate_at_max_age_without_notice
                    && self.created(old) + m.to_time() < date =>
            {
                self.created(old) + m.to_time()
            }
            _ => date,
        }
    }
    fn off(k: &KeyState) -> KeyState {
        KeyState {
            status: KeyStatus::Inactive,
            ..k.clone()
        }
    }

    fn scheduled(&self, keys: &[KeyState]) -> Expected {
        let mut e = Expected::default();
        let is_active = |k: &KeyState| k.status == KeyStatus::Active;
        match keys {
            [] => {}
            [k] if !is_active(k) => {
                if self.expired(k, None) {
                    e.deleted.push((k.clone(), false));
                }
            }
            [k] => {
                if self.unused(k) {
                    e.deleted.push((k.clone(), true));
                } else {
                    self.only_active(&mut e, k, None);
                }
            }
            [o, y] => match (is_active(o), is_active(y)) {
                (false, false) => {
                    for k in [o, y] {
                        if self.expired(k, None) {
                            e.deleted.push((k.clone(), false));
                        }
                    }
                }
                (true, false) => {
                    if self.unused(o) {
                        e.deleted.push((o.clone(), true));
                        if self.expired(y, None) {
                            e.deleted.push((y.clone(), false));
                        }
                    } else if self.expired(y, None) {
                        e.deleted.push((y.clone(), false));
                        self.only_active(&mut e, o, None);
                    } else {
                        self.only_active(&mut e, o, Some((y, true)));
                    }
                }
                (false, true) => {
                    if self.unused(y) {
                        e.deleted.push((y.clone(), true));
                        if self.expired(o, None) {
                            e.deleted.push((o.clone(), false));
                        }
                    } else if self.expired(o, Some(y)) {
                        e.deleted.push((o.clone(), false));
                        self.only_active(&mut e, y, None);
                    } else {
                        self.only_active(&mut e, y, Some((o, true)));
                    }
                }
                (true, true) => match (self.unused(o), self.unused(y)) {
                    (true, true) => {
                        e.deleted.push((o.clone(), true));
                        e.deleted.push((y.clone(), true));
                    }
                    (true, false) => {
                        e.deleted.push((o.clone(), true));
                        self.only_active(&mut e, y, None);
                    }
                    (false, true) => {
                        e.deleted.push((y.clone(), true));
                        self.only_active(&mut e, o, None);
                    }
                    (false, false) => self.both_active(&mut e, o, y),
                },
            },
            _ => unreachable!("the table has at most two keys"),
        }
        e
    }

    /// `a` is the only active key, not unused; `other` an inactive key that
    /// is not (yet) past its deletion date, and whether this run may delete
    /// it (not when this run deactivated it).
    fn only_active(&self, e: &mut Expected, a: &KeyState, other: Option<(&KeyState, bool)>) {
        let used = a.last_used.is_some();
        let rotation_due = used && self.age(a) >= Self::secs(self.p.rotate_after);
        if self.hard(a) && !(self.deliverable && used) {
            e.unreachable |= used;
            e.deactivated.push((a.clone(), None));
            // Its replacement is gone: the other key may be due now.
            if let Some((o, true)) = other.filter(|(o, _)| self.expired(o, None)) {
                e.deleted.push((o.clone(), false));
            }
        } else if self.hard(a) || rotation_due {
            if !self.deliverable {
                e.unreachable = true;
                return;
            }
            match other {
                Some((_, false)) => return, // no room yet: wait
                Some((o, true)) => e.deleted.push((o.clone(), false)),
                None => {}
            }
            e.created = true;
            if self.hard(a) && self.p.deactivate_at_max_age_without_notice {
                e.deactivated.push((a.clone(), None));
            } else {
                e.reminders.push(Notice::DeactivationScheduled {
                    key_id: a.id.clone(),
                    on: self.date(a, self.now),
                    replacement: None,
                });
            }
        }
    }

    /// Cutover by evidence: a rotation in progress (`o` at `rotate_after`)
    /// whose replacement was used after its creation while `o` was not.
    fn cutover(&self, o: &KeyState, y: &KeyState) -> bool {
        self.p.cutover_on_use
            && self.age(o) >= Self::secs(self.p.rotate_after)
            && self.used_after(y, y)
            && !self.used_after(o, y)
    }

    fn both_active(&self, e: &mut Expected, o: &KeyState, y: &KeyState) {
        let immediate = self.p.deactivate_at_max_age_without_notice && self.hard(o);
        let due = (self.hard(o) || self.age(o) >= Self::secs(self.p.deactivate_after))
            && (immediate || self.age(y) >= Self::secs(self.p.notice_period()));
        if !due && self.cutover(o, y) {
            e.deactivated.push((o.clone(), Some(y.id.clone())));
            self.only_active(e, y, Some((&Self::off(o), false)));
        } else if !due {
            e.reminders.push(Notice::DeactivationScheduled {
                key_id: o.id.clone(),
                on: self.date(o, self.created(y)),
                replacement: Some(y.id.clone()),
            });
        } else if self.used_after(o, y) && !self.hard(o) {
            e.reminders.push(Notice::StillInUse {
                key_id: o.id.clone(),
                last_used: o.last_used,
                service: o.last_used_service.clone(),
                region: o.last_used_region.clone(),
                replacement: Some(y.id.clone()),
                used_from: Vec::new(),
            });
        } else {
            e.deactivated.push((o.clone(), Some(y.id.clone())));
            // Never deleted in the run that deactivates it.
            self.only_active(e, y, Some((&Self::off(o), false)));
        }
    }

    /// Clean-up in closed form: which keys end inactive, then which of the
    /// inactive ones are past their deletion date.
    fn cleanup(&self, keys: &[KeyState], no_email: bool) -> Expected {
        let mut e = Expected::default();
        let mut end = keys.to_vec();
        let is_active = |k: &KeyState| k.status == KeyStatus::Active;
        let mid_switch = match keys {
            [o, y] => is_active(o) && is_active(y) && self.used_after(o, y) && !self.hard(o),
            _ => false,
        };
        for (i, k) in keys.iter().enumerate() {
            let protected = mid_switch;
            if no_email
                && k.status == KeyStatus::Active
                && self.age(k) >= Self::secs(self.p.deactivate_after)
                && !protected
            {
                e.deactivated.push((k.clone(), None));
                end[i].status = KeyStatus::Inactive;
            }
        }
        for (i, k) in end.iter().enumerate() {
            let repl = end[i + 1..].iter().rfind(|r| r.status == KeyStatus::Active);
            let deactivated_now = e.deactivated.iter().any(|(d, _)| d.id == k.id);
            if k.status == KeyStatus::Inactive && !deactivated_now && self.expired(k, repl) {
                e.deleted.push((k.clone(), false));
            }
        }
        e
    }
}

impl Expected {
    fn render(mut self, notify: bool) -> (Verdict, Vec<Action>) {
        let mut out = Vec::new();
        let note = |out: &mut Vec<Action>, n: Notice| {
            if notify {
                out.push(Action::Notify { notice: n });
            }
        };
        self.deleted.sort_by_key(|(k, _)| (k.created, k.id.clone()));
        let deactivation = |id: &str| {
            self.deactivated
                .iter()
                .find(|(k, _)| k.id == id)
                .map(|(_, r)| r.clone())
        };
        for (k, unused) in &self.deleted {
            if let Some(replacement) = deactivation(&k.id) {
                out.push(deactivate(&k.id));
                note(
                    &mut out,
                    Notice::Deactivated {
                        key_id: k.id.clone(),
                        replacement,
                    },
                );
            }
            out.push(delete(&k.id));
            note(
                &mut out,
                if *unused {
                    Notice::UnusedDeleted {
                        key_id: k.id.clone(),
                        last_used: k.last_used,
                    }
                } else {
                    Notice::Deleted {
                        key_id: k.id.clone(),
                    }
                },
            );
        }
        if self.created {
            out.push(Action::CreateKey);
        }
        for (k, replacement) in &self.deactivated {
            if self.deleted.iter().all(|(d, _)| d.id != k.id) {
                out.push(deactivate(&k.id));
                note(
                    &mut out,
                    Notice::Deactivated {
                        key_id: k.id.clone(),
                        replacement: replacement.clone(),
                    },
                );
            }
        }
        if notify {
            for n in &self.reminders {
                note(&mut out, n.clone());
            }
        }
        let has = |kind: &str| notify && self.reminders.iter().any(|n| n.kind() == kind);
        let verdict = if self.created {
            Verdict::Rotated
        } else if !self.deactivated.is_empty() {
            Verdict::Deactivated
        } else if has("still_in_use") {
            Verdict::StillInUse
        } else if self.unreachable {
            Verdict::Unreachable
        } else if !self.deleted.is_empty() {
            Verdict::Cleaned
        } else if has("deactivation_scheduled") {
            Verdict::PendingDeactivation
        } else {
            Verdict::Compliant
        };
        (verdict, out)
    }
}

/// Representative ages for a policy: every threshold exactly, the middle of
/// every band between two thresholds, below the first and past the last.
fn age_bands(p: &Policy) -> (Vec<i64>, i64) {
    let mut t: Vec<i64> = [
        p.rotate_after,
        p.deactivate_after,
        p.delete_after,
        p.unused_delete_after,
    ]
    .iter()
    .map(|d| Oracle::secs(*d))
    .collect();
    if let Limit::After(m) = p.max_key_age {
        t.push(Oracle::secs(m));
    }
    t.sort_unstable();
    t.dedup();
    let gap = t
        .windows(2)
        .map(|w| w[1] - w[0])
        .chain([t[0]])
        .min()
        .unwrap();
    let delta = (gap / 16).max(1);
    let mut ages = vec![t[0] / 2];
    for w in t.windows(2) {
        ages.push(w[0]);
        ages.push((w[0] + w[1]) / 2);
    }
    ages.push(*t.last().unwrap());
    ages.push(t.last().unwrap() + t[0]);
    (ages, delta)
}

fn table_policies() -> Vec<(&'static str, Policy)> {
    let minutes = |m| Duration::from_minutes(m);
    vec![
        ("default", Policy::default()),
        ("default without cutover", no_cutover()),
        (
            "minutes, secrets manager, no hard limit",
            Policy {
                rotate_after: minutes(8),
                deactivate_after: minutes(9),
                delete_after: minutes(10),
                unused_delete_after: minutes(9),
                max_key_age: Limit::Never,
                delivery: Delivery::SecretsManager,
                ..Policy::default()
            },
        ),
        (
            "delete after hard limit, short unused",
            Policy {
                rotate_after: Duration::from_days(30),
                deactivate_after: Duration::from_days(45),
                delete_after: Duration::from_days(200),
                unused_delete_after: Duration::from_days(20),
                max_key_age: Limit::After(Duration::from_days(150)),
                delivery: Delivery::Both,
                ..Policy::default()
            },
        ),
        (
            "immediate enforcement at the hard limit",
            Policy {
                deactivate_at_max_age_without_notice: true,
                ..Policy::default()
            },
        ),
        (
            "immediate enforcement without cutover",
            Policy {
                deactivate_at_max_age_without_notice: true,
                cutover_on_use: false,
                ..Policy::default()
            },
        ),
        (
            "no recovery window, hard limit at deactivation",
            Policy {
                rotate_after: Duration::from_days(10),
                deactivate_after: Duration::from_days(12),
                delete_after: Duration::from_days(12),
                unused_delete_after: Duration::from_days(400),
                max_key_age: Limit::After(Duration::from_days(12)),
                ..Policy::default()
            },
        ),
    ]
}

fn table_key(
    i: usize,
    status: KeyStatus,
    age: i64,
    used: Use,
    other_created: Option<OffsetDateTime>,
    p: &Policy,
    delta: i64,
) -> KeyState {
    let s = time::Duration::seconds;
    let created = NOW - s(age);
    let at_least_created = |t: OffsetDateTime| if t < created { created } else { t };
    let last_used = match used {
        Use::Never => None,
        Use::Recently => Some(at_least_created(NOW - s(delta))),
        Use::LongAgo => Some(at_least_created(
            NOW - s(Oracle::secs(p.unused_delete_after) + delta),
        )),
        Use::AfterReplacement => Some(match other_created {
            Some(o) if o > created => o + s(delta / 2),
            _ => at_least_created(NOW - s(2 * delta)),
        }),
    };
    KeyState {
        id: format!("AKIAK{i}"),
        status,
        created,
        last_used,
        last_used_service: last_used.map(|_| "iam".into()),
        last_used_region: last_used.map(|_| "us-east-1".into()),
    }
}

#[test]
fn exhaustive_table_matches_oracle() {
    let mut checked = 0usize;
    for (name, base) in table_policies() {
        base.validate().unwrap();
        let (ages, delta) = age_bands(&base);
        let mut key_sets: Vec<Vec<(KeyStatus, i64, Use)>> = vec![vec![]];
        let per_key: Vec<(KeyStatus, i64, Use)> = [KeyStatus::Active, KeyStatus::Inactive]
            .into_iter()
            .flat_map(|s| {
                ages.iter()
                    .flat_map(move |&a| USES.into_iter().map(move |u| (s, a, u)))
            })
            .collect();
        for &k in &per_key {
            key_sets.push(vec![k]);
            for &j in &per_key {
                key_sets.push(vec![k, j]);
            }
        }
        for cleanup in [false, true] {
            let policy = Policy {
                cleanup,
                ..base.clone()
            };
            for spec in &key_sets {
                // The second key is a little younger, so equal bands still
                // have an order.
                let ages: Vec<i64> = spec
                    .iter()
                    .enumerate()
                    .map(|(i, &(_, a, _))| a - i as i64 * delta / 4)
                    .collect();
                let created: Vec<OffsetDateTime> = ages
                    .iter()
                    .map(|a| NOW - time::Duration::seconds(*a))
                    .collect();
                let keys: Vec<KeyState> = spec
                    .iter()
                    .enumerate()
                    .map(|(i, &(status, _, used))| {
                        let other = created.get(1 - i.min(1)).filter(|_| spec.len() == 2);
                        table_key(i, status, ages[i], used, other.copied(), &policy, delta)
                    })
                    .collect();
                for email in [true, false] {
                    for exempt in [false, true] {
                        let mut tag_pairs = vec![];
                        if email {
                            tag_pairs.push(("Email", EMAIL));
                        }
                        if exempt {
                            tag_pairs.push(("Exempt", "True"));
                        }
                        let u = user(keys.clone(), &tag_pairs);
                        let label = format!(
                            "policy `{name}`, cleanup {cleanup}, email {email}, exempt {exempt}, keys {spec:?}"
                        );
                        let got = plan_user(&u, &policy, NOW);
                        let want = expected(&u.keys, &u.handed_over, &policy, email, exempt);
                        assert_eq!((got.verdict, &got.actions), (want.0, &want.1), "{label}");
                        assert_eq!(got.exempt, exempt, "{label}");
                        simulate(&u.keys, &got.actions, NOW)
                            .unwrap_or_else(|e| panic!("{label}: {e}"));
                        let again = plan_user(&applied(&u, &got.actions, NOW), &policy, NOW);
                        assert!(!again.mutates_iam(), "{label}: not idempotent");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 100_000, "{checked}");
}

fn expected(
    keys: &[KeyState],
    handed_over: &[String],
    p: &Policy,
    email: bool,
    exempt: bool,
) -> (Verdict, Vec<Action>) {
    if exempt {
        return (Verdict::Exempt, vec![]);
    }
    if keys.is_empty() {
        return (Verdict::NoKeys, vec![]);
    }
    let mut sorted = keys.to_vec();
    sorted.sort_by_key(|k| (k.created, k.id.clone()));
    let oracle = Oracle {
        p,
        now: NOW,
        handed_over,
        deliverable: match p.delivery {
            Delivery::Email => email,
            Delivery::SecretsManager | Delivery::Both => true,
        },
    };
    if p.cleanup {
        oracle.cleanup(&sorted, !email).render(false)
    } else {
        oracle.scheduled(&sorted).render(true)
    }
}

// ---------------------------------------------------------------------------
// Properties over arbitrary valid policies, keys and tags.

/// A valid policy counted in minutes or in days.
fn arb_policy() -> impl Strategy<Value = Policy> {
    (
        prop_oneof![Just(60u64), Just(86_400u64)],
        1u64..100,
        1u64..40,
        0u64..40,
        1u64..200,
        prop::option::of(0u64..120),
        prop_oneof![
            Just(Delivery::Email),
            Just(Delivery::SecretsManager),
            Just(Delivery::Both)
        ],
        prop::bool::weighted(0.25),
        any::<bool>(),
    )
        .prop_map(
            |(unit, rotate, notice, recovery, unused, max, delivery, cleanup, cutover_on_use)| {
                let d = |n: u64| Duration::from_secs(n * unit);
                Policy {
                    rotate_after: d(rotate),
                    deactivate_after: d(rotate + notice),
                    delete_after: d(rotate + notice + recovery),
                    unused_delete_after: d(unused),
                    max_key_age: max.map_or(Limit::Never, |m| Limit::After(d(rotate + notice + m))),
                    delivery,
                    cleanup,
                    cutover_on_use,
                    ..Policy::default()
                }
            },
        )
}

/// Up to two keys aged up to a bit past `horizon` seconds, with any last
/// use: never, after creation, or in the future (clock skew).
fn arb_keys(horizon: i64) -> impl Strategy<Value = Vec<KeyState>> {
    let one = (
        any::<bool>(),
        0i64..horizon + horizon / 3,
        prop_oneof![1 => Just(None), 3 => (0i64..1100).prop_map(Some)],
        prop::option::of(Just("sts")),
    );
    let count = prop_oneof![1 => Just(0usize), 3 => Just(1), 4 => Just(2)];
    (one.clone(), one, count, any::<bool>()).prop_map(|(a, b, count, reverse)| {
        let mut keys: Vec<KeyState> = [a, b]
            .into_iter()
            .take(count)
            .enumerate()
            .map(|(i, (is_active, age, used, svc))| {
                let created = NOW - time::Duration::seconds(age);
                // Per mille of the age after creation; past 1000 is the future.
                let last_used = used.map(|f| created + time::Duration::seconds(age * f / 1000));
                KeyState {
                    id: format!("AKIA{}", ["A", "B"][i]),
                    status: if is_active {
                        KeyStatus::Active
                    } else {
                        KeyStatus::Inactive
                    },
                    created,
                    last_used,
                    last_used_service: svc.map(Into::into),
                    last_used_region: None,
                }
            })
            .collect();
        if reverse {
            keys.reverse();
        }
        keys
    })
}

fn arb_tags() -> impl Strategy<Value = Vec<(String, String)>> {
    (
        prop_oneof![
            Just(None),
            Just(Some(EMAIL)),
            Just(Some("  owner@example.com ")),
            Just(Some("nobody"))
        ],
        prop_oneof![
            6 => Just(None),
            1 => Just(Some("True")),
            1 => Just(Some("tRuE")),
            1 => Just(Some("False"))
        ],
        "[a-z]{0,6}",
    )
        .prop_map(|(email, exempt, other)| {
            let mut t = vec![("Team".to_string(), other)];
            if let Some(e) = email {
                t.push(("Email".into(), e.into()));
            }
            if let Some(x) = exempt {
                t.push(("Exempt".into(), x.into()));
            }
            t
        })
}

fn arb_case() -> impl Strategy<Value = (Policy, UserSnapshot)> {
    arb_policy().prop_flat_map(|policy| {
        let horizon = [
            Some(policy.delete_after),
            Some(policy.unused_delete_after),
            match policy.max_key_age {
                Limit::After(m) => Some(m),
                Limit::Never => None,
            },
        ]
        .into_iter()
        .flatten()
        .map(Oracle::secs)
        .max()
        .unwrap_or(1);
        (Just(policy), arb_keys(horizon), arb_tags()).prop_map(|(policy, keys, tags)| {
            let u = UserSnapshot {
                user_name: "bob".into(),
                path: "/".into(),
                tags,
                keys,
                deactivated: vec![],
                reactivated: Vec::new(),
                deliveries: Vec::new(),
                handed_over: Vec::new(),
            };
            (policy, u)
        })
    })
}

/// Where cutover by evidence decides: two active keys, the older one about
/// `rotate_after` old or more, its replacement younger than two notice
/// periods (so mostly before the date), each last used never, before, at
/// or after the replacement's creation, or in the future (clock skew); the
/// replacement at its creation instant too.
fn arb_switching_case() -> impl Strategy<Value = (Policy, UserSnapshot)> {
    arb_policy().prop_flat_map(|policy| {
        let rotate = Oracle::secs(policy.rotate_after);
        let notice = Oracle::secs(policy.notice_period());
        (
            Just(policy),
            (rotate / 2)..(2 * (rotate + notice) + 1),
            0i64..(2 * notice + 1),
            0u8..5,
            0u8..4,
            0i64..=1000,
            0i64..=1000,
            arb_tags(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(policy, old_age, new_age, old_use, new_use, f, g, tags, reverse, handover)| {
                    let s = time::Duration::seconds;
                    let (old_created, new_created) =
                        (NOW - s(old_age), NOW - s(new_age.min(old_age)));
                    let between = |a: OffsetDateTime, b: OffsetDateTime, permille: i64| {
                        a + s((b - a).whole_seconds() * permille / 1000)
                    };
                    let old_last = match old_use {
                        0 => None,
                        1 => Some(between(old_created, new_created, f)),
                        2 => Some(new_created),
                        3 => Some(between(new_created, NOW, f)),
                        _ => Some(NOW + s(3600)),
                    };
                    let new_last = match new_use {
                        0 => None,
                        1 => Some(new_created),
                        2 => Some(between(new_created, NOW, g)),
                        _ => Some(NOW + s(3600)),
                    };
                    let key = |id: &str, created, last_used: Option<OffsetDateTime>| KeyState {
                        id: id.into(),
                        status: KeyStatus::Active,
                        created,
                        last_used,
                        last_used_service: last_used.map(|_| "sts".into()),
                        last_used_region: None,
                    };
                    let mut keys = vec![
                        key("AKIAA", old_created, old_last),
                        key("AKIAB", new_created, new_last),
                    ];
                    if reverse {
                        keys.reverse();
                    }
                    let u = UserSnapshot {
                        user_name: "carol".into(),
                        path: "/".into(),
                        tags,
                        keys,
                        deactivated: vec![],
                        reactivated: Vec::new(),
                        deliveries: Vec::new(),
                        // What the agent finds in CloudTrail, where it
                        // looks (a use after the replacement) or not.
                        handed_over: if handover {
                            vec!["AKIAA".into()]
                        } else {
                            Vec::new()
                        },
                    };
                    (policy, u)
                },
            )
    })
}

/// [`arb_case`] or, as often, [`arb_switching_case`].
fn arb_any_case() -> BoxedStrategy<(Policy, UserSnapshot)> {
    prop_oneof![arb_case(), arb_switching_case()].boxed()
}

fn older(a: &KeyState, b: &KeyState) -> bool {
    let c = |k: &KeyState| std::cmp::min(k.created, NOW);
    (c(a), &a.id) < (c(b), &b.id)
}

fn reached_max(p: &Policy, k: &KeyState) -> bool {
    let age = (NOW - std::cmp::min(k.created, NOW)).whole_seconds();
    match p.max_key_age {
        Limit::Never => false,
        Limit::After(m) => age >= Oracle::secs(m),
    }
}

fn position(actions: &[Action], f: impl Fn(&Action) -> bool) -> Option<usize> {
    actions.iter().position(f)
}

/// The evidence of a switch, restated from the design: a younger active key
/// was used after its creation, and `key_id` was not used since then (times
/// later than `now` count as `now`).
fn switch_seen(
    keys: &[KeyState],
    handed_over: &[String],
    key_id: &str,
    now: OffsetDateTime,
) -> bool {
    let at = |t: OffsetDateTime| std::cmp::min(t, now);
    let Some(k) = keys.iter().find(|k| k.id == key_id) else {
        return false;
    };
    keys.iter().any(|r| {
        r.status == KeyStatus::Active
            && (at(k.created), &k.id) < (at(r.created), &r.id)
            && r.last_used.is_some_and(|u| at(u) > at(r.created))
            && (k.last_used.is_none_or(|u| at(u) <= at(r.created)) || handed_over.contains(&k.id))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prop_plan_matches_oracle((policy, u) in arb_any_case()) {
        let p = plan_user(&u, &policy, NOW);
        let want = expected(&u.keys, &u.handed_over, &policy, p.email.is_some(), p.exempt);
        prop_assert_eq!((p.verdict, &p.actions), (want.0, &want.1));
    }

    #[test]
    fn prop_plan_applies_and_never_exceeds_two_keys((policy, u) in arb_case()) {
        prop_assert!(policy.validate().is_ok());
        let p = plan_user(&u, &policy, NOW);
        let after = simulate(&u.keys, &p.actions, NOW);
        prop_assert!(after.is_ok(), "{:?}", after);
        prop_assert!(after.unwrap().len() <= MAX_KEYS);
        prop_assert!(p.actions.iter().filter(|a| **a == Action::CreateKey).count() <= 1);
    }

    #[test]
    fn prop_deletes_come_before_create((policy, u) in arb_case()) {
        let p = plan_user(&u, &policy, NOW);
        if let Some(c) = position(&p.actions, |a| *a == Action::CreateKey) {
            prop_assert!(p.actions[c..].iter().all(|a| !matches!(a, Action::Delete { .. })), "{:?}", p.actions);
        }
    }

    /// With cutover by evidence on or off.
    #[test]
    fn prop_key_used_after_its_replacement_is_kept_until_max_age((policy, u) in arb_any_case()) {
        for cutover_on_use in [false, true] {
            let policy = Policy { cutover_on_use, ..policy.clone() };
            let p = plan_user(&u, &policy, NOW);
            for a in &p.actions {
                let Action::Deactivate { key_id } = a else { continue };
                let k = u.keys.iter().find(|k| k.id == *key_id).unwrap();
                let last = k.last_used.map(|t| std::cmp::min(t, NOW));
                // The handover read is not a use (see `handed_over`).
                let used_after_younger = !u.handed_over.contains(&k.id) && u.keys.iter().any(|r| {
                    older(k, r)
                        && r.status == KeyStatus::Active
                        && last.is_some_and(|t| t > std::cmp::min(r.created, NOW))
                });
                prop_assert!(!used_after_younger || reached_max(&policy, k), "{:?}", p.actions);
            }
        }
    }

    /// Switched off, cutover changes nothing: a plan is today's (the oracle
    /// above restates today's rules when the switch is off). Switched on,
    /// it changes a plan only where a run sees a switch, and every key it
    /// deactivates on top of today's plan is one the owner has switched
    /// away from (`switch_seen`), below its date.
    #[test]
    fn prop_cutover_changes_a_plan_only_on_evidence((policy, u) in arb_any_case()) {
        let on = plan_user(&u, &Policy { cutover_on_use: true, ..policy.clone() }, NOW);
        let off_policy = Policy { cutover_on_use: false, ..policy.clone() };
        let off = plan_user(&u, &off_policy, NOW);
        let today = expected(&u.keys, &u.handed_over, &off_policy, off.email.is_some(), off.exempt);
        prop_assert_eq!((off.verdict, &off.actions), (today.0, &today.1));
        let evidence = u.keys.iter().any(|k| k.status == KeyStatus::Active && switch_seen(&u.keys, &u.handed_over, &k.id, NOW));
        if !evidence {
            prop_assert_eq!(&on, &off);
        }
        for a in &on.actions {
            let Action::Deactivate { key_id } = a else { continue };
            if !off.actions.contains(a) {
                prop_assert!(switch_seen(&u.keys, &u.handed_over, key_id, NOW), "{:?} vs {:?}", on.actions, off.actions);
            }
        }
    }

    #[test]
    fn prop_no_key_is_created_that_cannot_be_delivered((policy, u) in arb_case()) {
        let p = plan_user(&u, &policy, NOW);
        let deliverable = policy.delivery.by_secrets_manager()
            || (policy.delivery.by_email() && p.email.is_some());
        if !deliverable {
            prop_assert!(!p.actions.contains(&Action::CreateKey));
        }
        if p.actions.contains(&Action::CreateKey) {
            prop_assert_eq!(p.verdict, Verdict::Rotated);
        }
    }

    #[test]
    fn prop_exempt_users_get_no_actions((policy, u) in arb_case()) {
        let p = plan_user(&u, &policy, NOW);
        let exempt = u.tags.iter().any(|(k, v)| k == "Exempt" && v.eq_ignore_ascii_case("true"));
        prop_assert_eq!(p.exempt, exempt);
        if exempt {
            prop_assert_eq!(p.verdict, Verdict::Exempt);
            prop_assert!(p.actions.is_empty());
        }
    }

    #[test]
    fn prop_plan_is_deterministic_and_ignores_input_order((policy, u) in arb_case()) {
        let p = plan_user(&u, &policy, NOW);
        prop_assert_eq!(&p, &plan_user(&u, &policy, NOW));
        let mut reversed = u.clone();
        reversed.keys.reverse();
        prop_assert_eq!(&p, &plan_user(&reversed, &policy, NOW));
    }

    #[test]
    fn prop_replanning_after_the_plan_changes_nothing((policy, u) in arb_any_case()) {
        let p = plan_user(&u, &policy, NOW);
        let again = plan_user(&applied(&u, &p.actions, NOW), &policy, NOW);
        prop_assert!(!again.mutates_iam(), "{:?} then {:?}", p.actions, again.actions);
    }

    #[test]
    fn prop_cleanup_never_creates_or_notifies((policy, u) in arb_case()) {
        let policy = Policy { cleanup: true, ..policy };
        let p = plan_user(&u, &policy, NOW);
        prop_assert!(p.actions.iter().all(|a| matches!(a, Action::Deactivate { .. } | Action::Delete { .. })), "{:?}", p.actions);
    }

    #[test]
    fn prop_every_change_is_followed_by_a_notice_about_that_key((policy, u) in arb_any_case()) {
        let policy = Policy { cleanup: false, ..policy };
        let p = plan_user(&u, &policy, NOW);
        for (i, a) in p.actions.iter().enumerate() {
            if let Action::Deactivate { key_id } | Action::Delete { key_id } = a {
                let next = p.actions.get(i + 1);
                prop_assert!(
                    matches!(next, Some(Action::Notify { notice }) if notice.key_id() == key_id),
                    "{:?}", p.actions
                );
            }
        }
    }

    #[test]
    fn prop_replaced_key_is_revoked_only_after_the_new_key_exists((policy, u) in arb_case()) {
        let p = plan_user(&u, &policy, NOW);
        let Some(c) = position(&p.actions, |a| *a == Action::CreateKey) else { return Ok(()) };
        // Keys deactivated before the creation are the ones deleted to make
        // room; every key that survives is revoked after it.
        let deleted: Vec<&String> = p.actions.iter().filter_map(|a| match a {
            Action::Delete { key_id } => Some(key_id),
            _ => None,
        }).collect();
        for a in &p.actions[..c] {
            if let Action::Deactivate { key_id } = a {
                prop_assert!(deleted.contains(&key_id), "{:?}", p.actions);
            }
        }
    }

    #[test]
    fn prop_emergency_keeps_the_invariants(
        (policy, u) in arb_case(),
        deactivate_old in any::<bool>(),
        name_key in prop::option::of(0usize..2),
    ) {
        let key_id = name_key.and_then(|i| u.keys.get(i)).map(|k| k.id.clone());
        let active: Vec<&KeyState> = u.keys.iter().filter(|k| k.status == KeyStatus::Active).collect();
        let p = match plan_emergency(&u, &policy, NOW, deactivate_old, key_id.as_deref()) {
            Ok(p) => p,
            Err(EmergencyError::NeedsKeyId { active: listed, .. }) => {
                prop_assert!(key_id.is_none() && active.len() == 2);
                prop_assert_eq!(listed.len(), 2);
                return Ok(());
            }
            Err(EmergencyError::NotActive { key_id: k, .. }) => {
                prop_assert!(u.keys.iter().any(|x| x.id == k && x.status == KeyStatus::Inactive));
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        let after = simulate(&u.keys, &p.actions, NOW);
        prop_assert!(after.is_ok(), "{:?}", after);
        let after = after.unwrap();
        let deliverable = policy.delivery.by_secrets_manager()
            || (policy.delivery.by_email() && p.email.is_some());
        let creates = p.actions.contains(&Action::CreateKey);
        prop_assert_eq!(creates, deliverable && !u.keys.is_empty());
        if let Some(c) = position(&p.actions, |a| *a == Action::CreateKey) {
            prop_assert!(
                p.actions[c..].iter().all(|a| !matches!(a, Action::Delete { .. })),
                "{:?}",
                p.actions
            );
        }
        // Never deactivate or delete an active key nobody named: the only
        // active key touched is the named one (or the only active key).
        let named = key_id.clone().or_else(|| (active.len() == 1).then(|| active[0].id.clone()));
        for a in &p.actions {
            if let Action::Deactivate { key_id: k } | Action::Delete { key_id: k } = a {
                let was_active = u.keys.iter().any(|x| &x.id == k && x.status == KeyStatus::Active);
                prop_assert!(!was_active || Some(k) == named.as_ref(), "{:?} named {:?}", p.actions, named);
            }
        }
        // The named key is deactivated and deleted in one run only when two
        // active keys leave no room (the one exception).
        let both: Vec<&String> = p.actions.iter().filter_map(|a| match a {
            Action::Deactivate { key_id } => Some(key_id),
            _ => None,
        }).filter(|k| p.actions.contains(&Action::Delete { key_id: (*k).clone() })).collect();
        prop_assert!(both.is_empty() || (active.len() == 2 && both == vec![named.as_ref().unwrap()]), "{:?}", p.actions);
        if !deactivate_old {
            for k in &after {
                let before = u.keys.iter().find(|x| x.id == k.id);
                prop_assert!(before.is_none_or(|b| b.status == k.status), "{:?}", p.actions);
            }
        }
    }

    /// Never deactivate and delete one key in one run (scheduled runs and
    /// clean-up; the emergency exception is checked above).
    #[test]
    fn prop_never_deactivate_and_delete_one_key_in_one_run((policy, u) in arb_case()) {
        let p = plan_user(&u, &policy, NOW);
        for a in &p.actions {
            if let Action::Deactivate { key_id } = a {
                prop_assert!(!p.actions.contains(&Action::Delete { key_id: key_id.clone() }), "{:?}", p.actions);
            }
        }
        // Clean-up never deletes an active key.
        if policy.cleanup {
            for a in &p.actions {
                if let Action::Delete { key_id } = a {
                    let k = u.keys.iter().find(|k| &k.id == key_id).unwrap();
                    prop_assert_eq!(k.status, KeyStatus::Inactive);
                }
            }
        }
    }

    /// On a day-by-day timeline of scheduled runs for an owned user, every
    /// deactivation of a key comes at least one notice period after a
    /// `DeactivationScheduled` notice for that key. Exceptions, each outside
    /// this model by construction: unused-key deletion (a deletion, not a
    /// deactivation, of a key nobody uses), an unreachable user at the hard
    /// limit (nobody to notify), clean-up mode (silent, first run), emergency
    /// rotation (an explicit order), immediate enforcement (the policy asks
    /// for it), and a pair of keys that predates keyfleet's first run.
    /// Cutover by evidence (`cutover_on_use`, drawn either way) may come
    /// sooner, still after a notice, and only when the run saw the switch:
    /// the replacement used after its creation, the old key not since.
    #[test]
    fn prop_every_deactivation_comes_a_notice_period_after_its_notice(
        rotate in 5i64..60,
        notice in 1i64..20,
        recovery in 0i64..15,
        max_extra in prop::option::of(0i64..40),
        start_age in 0i64..200,
        switch_after in prop::option::of(0i64..40),
        cutover_on_use in any::<bool>(),
    ) {
        let d = |n: i64| Duration::from_days(n as u64);
        let policy = Policy {
            rotate_after: d(rotate),
            deactivate_after: d(rotate + notice),
            delete_after: d(rotate + notice + recovery),
            unused_delete_after: d(rotate + notice + 200),
            max_key_age: max_extra.map_or(Limit::Never, |m| Limit::After(d(rotate + notice + m))),
            cutover_on_use,
            ..Policy::default()
        };
        let start = datetime!(2030-01-01 12:00 UTC);
        let mut u = owned(vec![KeyState {
            id: "K0".into(),
            status: KeyStatus::Active,
            created: start - days(start_age),
            last_used: Some(start - days(1)),
            last_used_service: None,
            last_used_region: None,
        }]);
        let mut first_notice: std::collections::HashMap<String, OffsetDateTime> = Default::default();
        let mut serial = 0;
        for day in 0..(3 * (rotate + notice + recovery) + 60) {
            let noon = start + days(day);
            // The owner uses the newest key older than `switch_after` days
            // (never switches when None), else the oldest active key.
            let mut actives: Vec<usize> = (0..u.keys.len())
                .filter(|&i| u.keys[i].status == KeyStatus::Active)
                .collect();
            actives.sort_by_key(|&i| u.keys[i].created);
            let pick = actives
                .iter()
                .rev()
                .find(|&&i| switch_after.is_some_and(|s| noon - u.keys[i].created >= days(s)))
                .or(actives.first())
                .copied();
            if let Some(i) = pick {
                u.keys[i].last_used = Some(noon - time::Duration::hours(3));
            }
            let p = plan_user(&u, &policy, noon);
            for a in &p.actions {
                match a {
                    Action::Notify { notice: Notice::DeactivationScheduled { key_id, .. } } => {
                        first_notice.entry(key_id.clone()).or_insert(noon);
                    }
                    Action::Deactivate { key_id } => {
                        let told = first_notice.get(key_id);
                        let switched = cutover_on_use && switch_seen(&u.keys, &u.handed_over, key_id, noon);
                        prop_assert!(
                            told.is_some_and(|t| switched || noon - *t >= days(notice)),
                            "day {}: {} deactivated, notice sent {:?}; {:?}", day, key_id, told, p.actions
                        );
                    }
                    _ => {}
                }
            }
            let mut after = applied(&u, &p.actions, noon);
            for k in after.keys.iter_mut().filter(|k| k.id.starts_with("NEW")) {
                serial += 1;
                k.id = format!("K{serial}");
                // A notice planned before the key existed names it later.
            }
            u = after;
        }
    }
}

// ---------------------------------------------------------------------------
// One table per named rule.

fn rules_at(policy: &Policy) -> Rules<'_> {
    Rules {
        policy,
        now: NOW,
        handed_over: &[],
    }
}

/// Seed case "two active, one nearing expiry -> notice, then deactivate the
/// oldest at deactivate_after" (the schedule: cutover off; see
/// `table_cutover` for the evidence).
#[test]
fn table_older_of_two_active() {
    let p = no_cutover();
    let immediate = Policy {
        deactivate_at_max_age_without_notice: true,
        ..no_cutover()
    };
    let r = rules_at(&p);
    let ri = rules_at(&immediate);
    // (old age, old used days ago, new age, policy) -> decision
    let cases: Vec<(i64, Option<i64>, i64, &Rules, Pair)> = vec![
        (85, Some(20), 5, &r, Pair::Scheduled { on: NOW + days(5) }),
        (95, Some(20), 5, &r, Pair::Scheduled { on: NOW + days(5) }),
        (95, Some(20), 10, &r, Pair::Deactivate),
        (95, Some(1), 10, &r, Pair::StillInUse),
        (125, Some(1), 10, &r, Pair::Deactivate),
        (125, Some(1), 0, &r, Pair::Scheduled { on: NOW + days(10) }),
        (125, Some(1), 0, &ri, Pair::Deactivate),
        (100, Some(1), 0, &ri, Pair::Scheduled { on: NOW + days(10) }),
    ];
    for (old_age, used, new_age, rules, want) in cases {
        let old = active("AKIAOLD", old_age, used);
        let new = active("AKIANEW", new_age, Some(0));
        assert_eq!(
            older_of_two_active(rules, &old, &new, None),
            want,
            "old {old_age}d used {used:?}, new {new_age}d"
        );
    }
}

/// Cutover by evidence: before its date the older key of a rotation goes
/// when its replacement was used after its creation and it was not; the
/// grace, a use after the replacement's creation, the switch, a young pair
/// and a use at the very instant of creation all keep the schedule.
#[test]
fn table_cutover() {
    let on = Policy::default();
    let off = no_cutover();
    let immediate = Policy {
        deactivate_at_max_age_without_notice: true,
        ..Policy::default()
    };
    let (r, r_off, ri) = (rules_at(&on), rules_at(&off), rules_at(&immediate));
    let s = time::Duration::seconds;
    let sched = |d: i64| Pair::Scheduled { on: NOW + days(d) };
    let new_created = NOW - days(2);
    // (case, rules, old age, old last use, new last use, grace) -> decision;
    // the new key is 2 days old throughout.
    type Row<'a> = (
        &'static str,
        &'a Rules<'a>,
        i64,
        Option<OffsetDateTime>,
        Option<OffsetDateTime>,
        Option<OffsetDateTime>,
        Pair,
    );
    let used = Some(NOW - days(1));
    let before = Some(NOW - days(3));
    let cases: Vec<Row> = vec![
        ("switched", &r, 82, before, used, None, Pair::Cutover),
        ("old never used", &r, 82, None, used, None, Pair::Cutover),
        (
            "old used at the creation instant",
            &r,
            82,
            Some(new_created),
            used,
            None,
            Pair::Cutover,
        ),
        (
            "old used after the creation",
            &r,
            82,
            Some(new_created + s(1)),
            used,
            None,
            sched(8),
        ),
        (
            "old used in the future (skew)",
            &r,
            82,
            Some(NOW + days(1)),
            used,
            None,
            sched(8),
        ),
        ("new never used", &r, 82, before, None, None, sched(8)),
        (
            "new used at its creation instant",
            &r,
            82,
            before,
            Some(new_created),
            None,
            sched(8),
        ),
        (
            "new used one second later",
            &r,
            82,
            before,
            Some(new_created + s(1)),
            None,
            Pair::Cutover,
        ),
        ("switch off", &r_off, 82, before, used, None, sched(8)),
        ("not a rotation yet", &r, 79, before, used, None, sched(11)),
        ("at rotate_after", &r, 80, before, used, None, Pair::Cutover),
        ("grace", &r, 95, before, used, Some(NOW + days(9)), sched(9)),
        (
            "hard limit, not due",
            &r,
            125,
            before,
            used,
            None,
            Pair::Cutover,
        ),
        (
            "hard limit, in use",
            &r,
            125,
            Some(NOW),
            used,
            None,
            sched(8),
        ),
        (
            "immediate enforcement",
            &ri,
            125,
            Some(NOW),
            used,
            None,
            Pair::Deactivate,
        ),
    ];
    for (case, rules, old_age, old_used, new_used, grace, want) in cases {
        let old = KeyState {
            last_used: old_used,
            ..active("AKIAOLD", old_age, None)
        };
        let new = KeyState {
            last_used: new_used,
            ..active("AKIANEW", 2, None)
        };
        assert_eq!(
            older_of_two_active(rules, &old, &new, grace),
            want,
            "{case}"
        );
        let evidence = cutover(rules, &old, &new);
        if grace.is_some() {
            assert!(evidence, "{case}: the evidence is there, the grace wins");
        } else {
            assert_eq!(evidence, want == Pair::Cutover, "{case}");
        }
    }
}

/// The hard limit: replaced when in use and reachable, else deactivated
/// alone.
#[test]
fn table_hard_limit() {
    let p = Policy::default();
    let r = rules_at(&p);
    let cases = [
        (119, Some(1), true, None),
        (120, Some(1), true, Some(Single::Replace)),
        (
            120,
            Some(1),
            false,
            Some(Single::DeactivateAlone { unreachable: true }),
        ),
        (
            125,
            None,
            true,
            Some(Single::DeactivateAlone { unreachable: false }),
        ),
    ];
    for (age, used, deliverable, want) in cases {
        let k = active("AKIAK", age, used);
        assert_eq!(
            hard_limit(&r, &k, deliverable),
            want,
            "{age}d {used:?} {deliverable}"
        );
    }
    let never = Policy {
        max_key_age: Limit::Never,
        ..Policy::default()
    };
    assert_eq!(
        hard_limit(&rules_at(&never), &active("K", 900, Some(1)), true),
        None
    );
}

/// Seed case "one key nearing expiry -> new key".
#[test]
fn table_replacement() {
    let p = Policy::default();
    let r = rules_at(&p);
    let cases = [
        (79, Some(1), true, None),
        (80, Some(1), true, Some(Single::Replace)),
        (80, Some(1), false, Some(Single::Unreachable)),
        (85, None, true, None),
    ];
    for (age, used, deliverable, want) in cases {
        let k = active("AKIAK", age, used);
        assert_eq!(
            replacement(&r, &k, deliverable),
            want,
            "{age}d {used:?} {deliverable}"
        );
    }
}

/// Seed case "unused -> delete and notify".
#[test]
fn table_unused() {
    let p = Policy::default();
    let r = rules_at(&p);
    let cases = [
        (active("K", 89, None), false),
        (active("K", 90, None), true),
        (active("K", 200, Some(89)), false),
        (active("K", 200, Some(90)), true),
        (inactive("K", 200, Some(150)), false),
    ];
    for (k, want) in cases {
        assert_eq!(unused(&r, &k), want, "{k:?}");
    }
}

/// Seed cases "two keys, older/younger inactive -> delete".
#[test]
fn table_inactive_expired() {
    let p = Policy::default();
    let r = rules_at(&p);
    let cases: Vec<(KeyState, Option<KeyState>, Option<i64>, bool)> = vec![
        (inactive("K", 99, Some(50)), None, None, false),
        (inactive("K", 100, Some(50)), None, None, true),
        // Used 9 days ago: still inside the recovery window.
        (inactive("K", 100, Some(9)), None, None, false),
        // A replacement younger than delete_after - rotate_after keeps it.
        (
            inactive("K", 100, Some(50)),
            Some(active("R", 19, Some(1))),
            None,
            false,
        ),
        (
            inactive("K", 100, Some(50)),
            Some(active("R", 20, Some(1))),
            None,
            true,
        ),
        // Recorded as deactivated by keyfleet 9 days ago: not yet; 10: yes.
        (inactive("K", 200, Some(50)), None, Some(9), false),
        (inactive("K", 200, Some(50)), None, Some(10), true),
        (active("K", 200, Some(50)), None, None, false),
    ];
    for (k, repl, recorded_ago, want) in cases {
        let recorded = recorded_ago.map(|d| NOW - days(d));
        assert_eq!(
            inactive_expired(&r, &k, repl.as_ref(), recorded),
            want,
            "{k:?} {repl:?} {recorded_ago:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Reactivation: the security team's way back, and the grace it gives.

fn reactivated_notice(id: &str, until: OffsetDateTime) -> Action {
    notify(Notice::Reactivated {
        key_id: id.into(),
        until,
    })
}

/// The timeline the console promises: the older key is deactivated on day
/// 91, reactivated on day 92 and not used afterwards; it stays active until
/// day 102, is deactivated then with a notice, and deleted on day 112; never
/// deactivated and deleted in one run.
#[test]
fn reactivated_key_gets_a_fresh_notice_period_then_the_usual_deletion_delay() {
    let p = Policy::default();
    let day0 = NOW - days(200);
    let at = |d: i64| day0 + days(d);
    // Day 80: the replacement exists; the old key was last used on day 79.
    let old = KeyState {
        created: day0,
        last_used: Some(at(79)),
        ..active("AKIAOLD", 0, Some(0))
    };
    let new = KeyState {
        created: at(80),
        last_used: Some(at(85)),
        ..active("AKIANEW", 0, Some(0))
    };
    let mut u = owned(vec![old, new]);
    // Day 91: deactivated, as the pair rule says.
    let d91 = plan_user(&u, &p, at(91));
    assert_eq!(d91.verdict, Verdict::Deactivated, "{d91:?}");
    u = applied(&u, &d91.actions, at(91));
    // Day 92: the security team reactivates it.
    let r = plan_reactivation(&u, &p, at(92), "AKIAOLD").unwrap();
    assert_eq!(r.verdict, Verdict::Reactivated);
    assert_eq!(
        r.actions,
        vec![
            Action::Reactivate {
                key_id: "AKIAOLD".into()
            },
            reactivated_notice("AKIAOLD", at(102)),
        ]
    );
    u.keys = simulate(&u.keys, &r.actions, at(92)).unwrap();
    u.reactivated = vec![("AKIAOLD".into(), at(92))];
    assert!(reactivation_note(&u, &p, at(92)).is_some_and(|n| n.contains("AKIAOLD")));
    // Days 93..101: active, reminded of day 102, nothing else.
    for d in 93..102 {
        let plan = plan_user(&u, &p, at(d));
        assert_eq!(
            plan.actions,
            vec![scheduled("AKIAOLD", at(102), Some("AKIANEW"))],
            "day {d}"
        );
        assert_eq!(plan.verdict, Verdict::PendingDeactivation, "day {d}");
    }
    assert!(
        reactivation_note(&u, &p, at(101))
            .is_some_and(|n| n.contains("reactivated by the security team")),
        "the reports during the grace say so"
    );
    assert_eq!(
        reactivation_note(&u, &p, at(102)),
        None,
        "the grace is over"
    );
    // Day 102: deactivated again, with its notice; not deleted.
    let d102 = plan_user(&u, &p, at(102));
    assert_eq!(
        d102.actions,
        vec![
            deactivate("AKIAOLD"),
            deactivated("AKIAOLD", Some("AKIANEW"))
        ]
    );
    u = applied(&u, &d102.actions, at(102));
    // Days 103..111: inactive, kept for the recovery window.
    for d in 103..112 {
        let plan = plan_user(&u, &p, at(d));
        assert!(!plan.mutates_iam(), "day {d}: {plan:?}");
    }
    // Day 112: deleted.
    let d112 = plan_user(&u, &p, at(112));
    assert_eq!(d112.actions, vec![delete("AKIAOLD"), deleted("AKIAOLD")]);
}

#[test]
fn reactivation_is_refused_for_a_deleted_an_active_or_a_foreign_key() {
    let p = Policy::default();
    let mut u = owned(vec![
        inactive("AKIAOFF", 95, Some(20)),
        active("AKIAON", 15, Some(1)),
    ]);
    u.deactivated = vec![("AKIAOFF".into(), NOW - days(3))];
    assert!(matches!(
        plan_reactivation(&u, &p, NOW, "AKIAGONE"),
        Err(ReactivateError::NoSuchKey { .. })
    ));
    assert!(matches!(
        plan_reactivation(&u, &p, NOW, "AKIAON"),
        Err(ReactivateError::Active { .. })
    ));
    let mut foreign = u.clone();
    foreign.deactivated.clear();
    let e = plan_reactivation(&foreign, &p, NOW, "AKIAOFF").unwrap_err();
    assert!(matches!(
        e,
        ReactivateError::NotDeactivatedByKeyfleet { .. }
    ));
    assert!(e.to_string().contains("AKIAOFF"), "{e}");
    // The exempt tag does not apply to an explicit order.
    let mut exempt = u.clone();
    exempt.tags.push(("Exempt".into(), "True".into()));
    assert!(plan_reactivation(&exempt, &p, NOW, "AKIAOFF").is_ok());
}

/// Only the latest deactivation counts, and only if it was keyfleet's:
/// keyfleet deactivated the key, the security team switched it back on,
/// and then someone deactivated it by hand (the record shows no keyfleet
/// deactivation since the reactivation). keyfleet must not switch it back
/// on. Once keyfleet deactivates it again, it may.
#[test]
fn reactivation_is_refused_when_the_latest_deactivation_was_not_keyfleets() {
    let p = Policy::default();
    let mut u = owned(vec![
        inactive("AKIAOFF", 95, Some(20)),
        active("AKIAON", 15, Some(1)),
    ]);
    u.deactivated = vec![("AKIAOFF".into(), NOW - days(5))];
    u.reactivated = vec![("AKIAOFF".into(), NOW - days(3))];
    let e = plan_reactivation(&u, &p, NOW, "AKIAOFF").unwrap_err();
    assert!(
        matches!(e, ReactivateError::DeactivatedOutsideKeyfleet { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("AKIAOFF"), "{e}");
    // At the same instant it cannot be told which came last: refused.
    u.deactivated = vec![("AKIAOFF".into(), NOW - days(3))];
    assert!(plan_reactivation(&u, &p, NOW, "AKIAOFF").is_err());
    // keyfleet deactivated it after the reactivation: its own to undo.
    u.deactivated = vec![("AKIAOFF".into(), NOW - days(1))];
    assert!(plan_reactivation(&u, &p, NOW, "AKIAOFF").is_ok());
}

/// Times from the protected record later than now (a forged record) count
/// as now: a reactivation "in year 9999" gives one notice period of grace
/// from now, not an endless one, and a deactivation in the future holds a
/// deletion back as one at `now` does. (The agent writes such a time back
/// as the `now` that first saw it, so it does not move with later runs:
/// `record::UserRecord::clamp_to`.)
#[test]
fn record_times_in_the_future_count_as_now() {
    let p = Policy::default();
    let end = time::PrimitiveDateTime::MAX.assume_utc();
    let mut u = owned(vec![
        active("AKIAOLD", 95, Some(20)),
        active("AKIANEW", 15, Some(1)),
    ]);
    u.reactivated = vec![("AKIAOLD".into(), end)];
    let planned = plan_user(&u, &p, NOW);
    assert_eq!(
        planned.actions,
        vec![scheduled("AKIAOLD", NOW + days(10), Some("AKIANEW"))]
    );
    let note = reactivation_note(&u, &p, NOW).unwrap_or_default();
    assert!(
        note.contains("2030-06-11") && !note.contains("9999"),
        "{note}"
    );

    let mut off = owned(vec![inactive("AKIAOFF", 120, Some(40))]);
    off.deactivated = vec![("AKIAOFF".into(), end)];
    let mut now_off = off.clone();
    now_off.deactivated = vec![("AKIAOFF".into(), NOW)];
    assert_eq!(plan(&off), plan(&now_off));
    assert!(!plan(&off).mutates_iam());
}

/// Within its grace a reactivated key is neither deactivated by the hard
/// limit nor deleted as unused; once the grace is over, both apply again.
#[test]
fn grace_holds_back_the_hard_limit_and_unused_deletion_until_it_ends() {
    let notice = days(10);
    // Past the hard limit, nobody to deliver a replacement to.
    let mut limit = user(vec![active("AKIAOLD", 125, Some(5))], &[]);
    limit.reactivated = vec![("AKIAOLD".into(), NOW - days(1))];
    assert!(!plan(&limit).mutates_iam(), "{:?}", plan(&limit));
    let after = plan_at(&limit, NOW + notice);
    assert_eq!(after.actions[0], deactivate("AKIAOLD"));
    // Unused for 95 days.
    let mut idle = owned(vec![active("AKIAIDLE", 95, Some(95))]);
    idle.reactivated = vec![("AKIAIDLE".into(), NOW - days(2))];
    // Not deleted; being used once and old, it may get a replacement.
    let p_idle = plan(&idle);
    assert!(
        !p_idle.actions.contains(&delete("AKIAIDLE"))
            && !p_idle.actions.contains(&deactivate("AKIAIDLE")),
        "{p_idle:?}"
    );
    assert_eq!(plan_at(&idle, NOW + days(8)).actions[0], delete("AKIAIDLE"));
    // A reactivation recorded for a key that is inactive again gives nothing.
    let mut again = owned(vec![
        inactive("AKIAOFF", 150, Some(60)),
        active("AKIAON", 60, Some(1)),
    ]);
    again.reactivated = vec![("AKIAOFF".into(), NOW - days(1))];
    assert_eq!(plan(&again).actions[0], delete("AKIAOFF"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the policy and the keys: while a reactivated key is in its
    /// grace, no scheduled plan deactivates or deletes it, and a reminder
    /// that names it never names a date before the grace ends.
    #[test]
    fn prop_no_plan_touches_a_reactivated_key_during_its_grace(
        (policy, u) in arb_any_case(),
        which in 0usize..2,
        ago_permille in 0i64..1000,
    ) {
        let Some(k) = u.keys.get(which).filter(|k| k.status == KeyStatus::Active) else {
            return Ok(());
        };
        let grace = time::Duration::seconds(Oracle::secs(policy.notice_period()));
        let at = NOW - grace * (ago_permille as f64 / 1000.0);
        let mut u2 = u.clone();
        u2.reactivated = vec![(k.id.clone(), at)];
        // Cutover by evidence on or off: the grace wins either way.
        for cutover_on_use in [false, true] {
            let policy = Policy { cutover_on_use, ..policy.clone() };
            let p = plan_user(&u2, &policy, NOW);
            for a in &p.actions {
                match a {
                    Action::Deactivate { key_id } | Action::Delete { key_id } => {
                        prop_assert_ne!(key_id, &k.id, "{:?}", p.actions)
                    }
                    Action::Notify { notice: Notice::DeactivationScheduled { key_id, on, .. } } if *key_id == k.id => {
                        prop_assert!(*on >= at + grace, "{:?}", p.actions)
                    }
                    _ => {}
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Delivery-confirmed deactivation.

/// An owned pair: the old key 95 days old, last used 15 days ago (before
/// its replacement), the replacement 12 days old and not used yet; due for
/// deactivation by the pair rule.
fn due_pair(deliveries: Vec<(String, Option<OffsetDateTime>)>) -> UserSnapshot {
    UserSnapshot {
        deliveries,
        ..owned(vec![active("OLD", 95, Some(15)), active("NEW", 12, None)])
    }
}

#[test]
fn a_due_pair_is_deactivated_when_its_replacement_is_not_tracked() {
    let p = plan(&due_pair(vec![]));
    assert!(p.actions.contains(&deactivate("OLD")), "{:?}", p.actions);
}

#[test]
fn a_replacement_awaiting_delivery_keeps_the_old_key_active() {
    let p = plan(&due_pair(vec![("NEW".into(), None)]));
    assert_eq!(
        p.actions,
        vec![],
        "no deactivation, no reminder with an unknown date"
    );
    assert_eq!(p.verdict, Verdict::PendingDeactivation);
    let note = p.note.expect("the row says what is awaited");
    assert!(
        note.starts_with("waiting for delivery of NEW: OLD stays active"),
        "{note}"
    );
}

#[test]
fn the_hard_limit_waits_for_the_delivery_too() {
    let policy = Policy {
        max_key_age: Limit::After(keyfleet_protocol::Duration::from_days(100)),
        ..Policy::default()
    };
    let u = UserSnapshot {
        deliveries: vec![("NEW".into(), None)],
        ..owned(vec![
            active("OLD", 400, Some(1)),
            active("NEW", 30, Some(1)),
        ])
    };
    let p = plan_user(&u, &policy, NOW);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::Deactivate { .. } | Action::Delete { .. })),
        "{:?}",
        p.actions
    );
}

#[test]
fn an_inactive_old_key_is_not_deleted_while_its_replacement_awaits_delivery() {
    let keys = vec![inactive("OLD", 130, Some(40)), active("NEW", 40, None)];
    let tracked = UserSnapshot {
        deliveries: vec![("NEW".into(), None)],
        ..owned(keys.clone())
    };
    assert!(plan(&owned(keys)).actions.contains(&delete("OLD")));
    assert!(!plan(&tracked).actions.contains(&delete("OLD")));
}

#[test]
fn the_notice_period_counts_from_the_delivery() {
    // Delivered 3 days ago: the old key goes 10 days (the notice period)
    // after that, not 10 days after the key was created.
    let delivered = NOW - days(3);
    let u = due_pair(vec![("NEW".into(), Some(delivered))]);
    let p = plan(&u);
    assert_eq!(
        p.actions,
        vec![scheduled("OLD", delivered + days(10), Some("NEW"))]
    );
    assert_eq!(p.verdict, Verdict::PendingDeactivation);
    let later = plan_at(&u, delivered + days(10));
    assert!(
        later.actions.contains(&deactivate("OLD")),
        "{:?}",
        later.actions
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the policy and the keys: no key is deactivated or deleted
    /// while a younger active key (its replacement) awaits delivery.
    #[test]
    fn prop_no_deactivation_or_deletion_while_the_replacement_awaits_delivery(
        (policy, mut u) in arb_any_case(),
        awaited in proptest::collection::vec(any::<bool>(), 2),
    ) {
        let mut active: Vec<&KeyState> = u.keys.iter().filter(|k| k.status == KeyStatus::Active).collect();
        active.sort_by(|a, b| (a.created.min(NOW), &a.id).cmp(&(b.created.min(NOW), &b.id)));
        u.deliveries = active
            .iter()
            .zip(&awaited)
            .filter(|(_, awaited)| **awaited)
            .map(|(k, _)| (k.id.clone(), None))
            .collect();
        // Cutover by evidence on or off: an undelivered replacement's use
        // (IAM may show one) never lets the old key go.
        for cutover_on_use in [false, true] {
            let policy = Policy { cutover_on_use, ..policy.clone() };
            let p = plan_user(&u, &policy, NOW);
            for a in &p.actions {
                let (Action::Deactivate { key_id } | Action::Delete { key_id }) = a else { continue };
                let k = u.keys.iter().find(|k| k.id == *key_id).unwrap();
                let waiting = u.keys.iter().any(|r| {
                    r.status == KeyStatus::Active
                        && older(k, r)
                        && u.deliveries.iter().any(|(id, at)| *id == r.id && at.is_none())
                });
                prop_assert!(!waiting, "{:?} of {} while its replacement awaits delivery: {:?}", a, key_id, u);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Cutover by evidence.

/// The default policy with cutover by evidence switched off: today's fixed
/// schedule for every pair.
fn no_cutover() -> Policy {
    Policy {
        cutover_on_use: false,
        ..Policy::default()
    }
}

/// An owned pair in the notice period: the old key 82 days old, last used
/// `old_used_ago` days ago; its replacement 2 days old, last used
/// `new_used_ago` days ago (if ever). The schedule says day 90 (8 days
/// from now).
fn switching_pair(old_used_ago: i64, new_used_ago: Option<i64>) -> UserSnapshot {
    owned(vec![
        active("OLD", 82, Some(old_used_ago)),
        active("NEW", 2, new_used_ago),
    ])
}

#[test]
fn cutover_new_key_used_and_old_unused_since_deactivates_at_the_next_run() {
    // Old key last used 3 days ago (before the new key existed); the new key
    // used yesterday: the owner switched, the old key goes now, 8 days
    // before its date, with the usual notice.
    let u = switching_pair(3, Some(1));
    let p = plan(&u);
    assert_eq!(p.verdict, Verdict::Deactivated);
    assert_eq!(
        p.actions,
        vec![deactivate("OLD"), deactivated("OLD", Some("NEW"))]
    );
    // Applied, nothing more to do; the key stays inactive (recoverable)
    // until its usual deletion date: day 100 of the old key.
    let after = apply(&u, &p, &Policy::default(), NOW);
    let day100 = u.keys[0].created + days(100);
    assert!(!plan_at(&after, day100 - time::Duration::seconds(1)).mutates_iam());
    assert_eq!(
        plan_at(&after, day100).actions,
        vec![delete("OLD"), deleted("OLD")]
    );
}

#[test]
fn an_old_key_used_after_its_replacement_only_to_fetch_it_goes_like_an_unused_one() {
    // The old key's last use, a day ago, was the owner's program reading the
    // new key from its delivery secret (CloudTrail says so: `handed_over`);
    // the new key was used since. Cutover at the next run, as if the old
    // key had not been used after the new one existed...
    let u = UserSnapshot {
        handed_over: vec!["OLD".into()],
        ..switching_pair(1, Some(1))
    };
    assert_eq!(
        plan(&u).actions,
        vec![deactivate("OLD"), deactivated("OLD", Some("NEW"))]
    );
    // ... and without cutover, deactivated at its date, not StillInUse.
    let on = u.keys[0].created + days(90);
    let p = plan_user(&u, &no_cutover(), on);
    assert_eq!(p.verdict, Verdict::Deactivated, "{:?}", p.actions);
    // The same uses without that evidence: the key is in use.
    let plain = switching_pair(1, Some(1));
    assert_eq!(plan_at(&plain, on).verdict, Verdict::StillInUse);
}

#[test]
fn cutover_waits_while_the_old_key_is_used_after_the_new_one() {
    // Both keys used since the new key was created: today's schedule, then
    // StillInUse at the date.
    let u = switching_pair(1, Some(1));
    let on = u.keys[0].created + days(90);
    assert_eq!(plan(&u).actions, vec![scheduled("OLD", on, Some("NEW"))]);
    let at_date = plan_at(&u, on);
    assert_eq!(at_date.verdict, Verdict::StillInUse);
    assert!(!at_date.mutates_iam(), "{:?}", at_date.actions);
}

#[test]
fn cutover_needs_the_new_key_used() {
    // The new key never used, or "used" only at the instant it was created:
    // no evidence, today's schedule.
    let on = NOW + days(8);
    for u in [switching_pair(3, None), switching_pair(3, Some(2))] {
        let p = plan(&u);
        assert_eq!(p.verdict, Verdict::PendingDeactivation, "{u:?}");
        assert_eq!(p.actions, vec![scheduled("OLD", on, Some("NEW"))]);
    }
}

#[test]
fn cutover_switched_off_keeps_the_schedule() {
    let u = switching_pair(3, Some(1));
    let on = NOW + days(8);
    let p = plan_user(&u, &no_cutover(), NOW);
    assert_eq!(p.verdict, Verdict::PendingDeactivation);
    assert_eq!(p.actions, vec![scheduled("OLD", on, Some("NEW"))]);
    assert!(plan_user(&u, &no_cutover(), on).mutates_iam());
}

#[test]
fn cutover_waits_for_the_replacements_delivery() {
    let u = UserSnapshot {
        deliveries: vec![("NEW".into(), None)],
        ..switching_pair(3, Some(1))
    };
    let p = plan(&u);
    assert!(!p.mutates_iam(), "{:?}", p.actions);
    assert_eq!(p.verdict, Verdict::PendingDeactivation);
    // Delivered: the evidence counts from the delivery. The new key used
    // after it reached the owner, the old key not since: cut over.
    let delivered = NOW - days(1) - time::Duration::hours(1);
    let u = UserSnapshot {
        deliveries: vec![("NEW".into(), Some(delivered))],
        ..switching_pair(3, Some(1))
    };
    assert!(plan(&u).actions.contains(&deactivate("OLD")));
    // Used only before its delivery (as reported): no evidence yet.
    let u = UserSnapshot {
        deliveries: vec![("NEW".into(), Some(NOW - time::Duration::hours(1)))],
        ..switching_pair(3, Some(1))
    };
    assert!(!plan(&u).mutates_iam());
}

#[test]
fn cutover_waits_for_a_reactivation_grace() {
    // The security team switched the old key back on yesterday: it keeps
    // its grace (9 more days) although the owner uses the new key.
    let mut u = owned(vec![
        KeyState {
            created: NOW - days(95),
            last_used: Some(NOW - days(20)),
            ..active("OLD", 0, Some(0))
        },
        active("NEW", 15, Some(1)),
    ]);
    u.reactivated = vec![("OLD".into(), NOW - days(1))];
    let p = plan(&u);
    assert_eq!(
        p.actions,
        vec![scheduled("OLD", NOW + days(9), Some("NEW"))]
    );
    assert!(plan_at(&u, NOW + days(9))
        .actions
        .contains(&deactivate("OLD")));
}
