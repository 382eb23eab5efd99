//! Aggregation's compliance evidence: the CIS key-rotation measure and the
//! two credential-report findings.

use super::*;
use crate::messages::{
    AccountResult, AccountStatus, Dispatch, ManifestAccount, RunManifest, ScanMode, Token, VERSION,
};
use crate::plan::{KeyState, KeyStatus, Verdict};
use proptest::prelude::*;
use time::macros::datetime;
use time::Duration;

const AS_OF: OffsetDateTime = datetime!(2026-03-10 06:00 UTC);
const FINALIZED: OffsetDateTime = datetime!(2026-03-10 07:00 UTC);

fn key(status: KeyStatus, age: Duration) -> KeyState {
    KeyState {
        id: String::new(),
        status,
        created: AS_OF - age,
        last_used: None,
        last_used_service: None,
        last_used_region: None,
    }
}

fn active(days: i64) -> KeyState {
    key(KeyStatus::Active, Duration::days(days))
}

fn inactive(days: i64) -> KeyState {
    key(KeyStatus::Inactive, Duration::days(days))
}

fn user(
    name: &str,
    keys: Vec<KeyState>,
    mfa_active: Option<bool>,
    password_enabled: Option<bool>,
) -> UserReport {
    UserReport {
        keys,
        mfa_active,
        password_enabled,
        ..UserReport::new(name, Verdict::Compliant)
    }
}

fn manifest(accounts: &[(&str, Dispatch)]) -> RunManifest {
    RunManifest {
        v: VERSION,
        run_id: "run-1".into(),
        created_at: AS_OF,
        deadline: AS_OF + Duration::hours(1),
        policy: Policy::default(),
        dry_run: false,
        mode: JobMode::Scheduled,
        accounts: accounts
            .iter()
            .map(|(id, dispatch)| ManifestAccount {
                account_id: (*id).into(),
                name: String::new(),
                token_sha256: "00".repeat(32),
                dispatch: dispatch.clone(),
            })
            .collect(),
        skipped: vec![],
    }
}

fn result(account_id: &str, as_of: OffsetDateTime, users: Vec<UserReport>) -> AccountResult {
    AccountResult {
        v: VERSION,
        run_id: "run-1".into(),
        account_id: account_id.into(),
        token: Token::stored(),
        part: 1,
        parts: 1,
        account_alias: None,
        status: AccountStatus::Ok,
        error: None,
        dry_run: false,
        as_of,
        started_at: as_of,
        finished_at: as_of,
        scan_mode: ScanMode::CredentialReport,
        api_calls: BTreeMap::new(),
        users,
        sealed: vec![],
    }
}

/// One account that reported `users` at [`AS_OF`].
fn one_account(users: Vec<UserReport>) -> RunReport {
    aggregate(
        &manifest(&[("111111111111", Dispatch::Sent)]),
        &[result("111111111111", AS_OF, users)],
        FINALIZED,
    )
}

fn measure(report: &RunReport) -> Compliance {
    report.compliance.as_ref().unwrap().total
}

fn c(active_keys: u64, active_keys_within_90d: u64) -> Compliance {
    Compliance {
        active_keys,
        active_keys_within_90d,
    }
}

#[test]
fn the_cis_threshold_is_ninety_whole_days_not_the_policy() {
    assert_eq!(CIS_KEY_ROTATION_DAYS, 90);
    // The policy deactivates at 90d by default; the measure must not move
    // with it.
    let mut m = manifest(&[("111111111111", Dispatch::Sent)]);
    m.policy = Policy {
        rotate_after: crate::Duration::from_days(170),
        deactivate_after: crate::Duration::from_days(180),
        delete_after: crate::Duration::from_days(190),
        ..Policy::default()
    };
    let users = vec![user("a", vec![active(120), active(10)], None, None)];
    let r = aggregate(&m, &[result("111111111111", AS_OF, users)], FINALIZED);
    assert_eq!(measure(&r), c(2, 1));
}

#[test]
fn a_key_is_within_through_its_ninetieth_day() {
    let cases = [
        (Duration::days(0), true),
        (Duration::days(89), true),
        (Duration::days(90), true),
        // Still 90 whole days old, as the histogram and the CSV show it.
        (Duration::days(91) - Duration::seconds(1), true),
        (Duration::days(91), false),
        (Duration::days(400), false),
        // Dated after the scan (clock skew): 0 days old, not an error.
        (-Duration::days(2), true),
    ];
    for (age, within) in cases {
        let r = one_account(vec![user(
            "a",
            vec![key(KeyStatus::Active, age)],
            None,
            None,
        )]);
        assert_eq!(measure(&r), c(1, within as u64), "age {age}");
    }
}

#[test]
fn inactive_keys_neither_help_nor_hurt() {
    let r = one_account(vec![
        user("a", vec![inactive(300), active(10)], None, None),
        user("b", vec![inactive(5)], None, None),
    ]);
    assert_eq!(measure(&r), c(1, 1));
    assert_eq!(r.accounts[0].compliance, Some(c(1, 1)));
}

#[test]
fn an_account_without_active_keys_has_no_share() {
    let r = one_account(vec![
        user("a", vec![inactive(300)], None, None),
        user("b", vec![], None, None),
    ]);
    let a = r.accounts[0].compliance.unwrap();
    assert_eq!(a, c(0, 0));
    assert_eq!(a.percent(), None);
    assert_eq!(a.per_mille(), None);
    assert_eq!(a.percent_text(), "n/a");
}

#[test]
fn keys_are_aged_at_each_accounts_own_scan_time() {
    // The same key, 85 days old when account 1 read it, is 95 days old
    // when account 2 read it ten days later (a `plan --as-of` or a late
    // agent); each is measured at its own `as_of`, not the finalize time.
    let created = AS_OF - Duration::days(85);
    let k = KeyState {
        created,
        ..active(0)
    };
    let u = || vec![user("a", vec![k.clone()], None, None)];
    let m = manifest(&[
        ("111111111111", Dispatch::Sent),
        ("222222222222", Dispatch::Sent),
    ]);
    let r = aggregate(
        &m,
        &[
            result("111111111111", AS_OF, u()),
            result("222222222222", AS_OF + Duration::days(10), u()),
        ],
        AS_OF + Duration::days(200),
    );
    let by_id = |id: &str| {
        r.accounts
            .iter()
            .find(|a| a.account_id == id)
            .unwrap()
            .compliance
    };
    assert_eq!(by_id("111111111111"), Some(c(1, 1)));
    assert_eq!(by_id("222222222222"), Some(c(1, 0)));
    assert_eq!(measure(&r), c(2, 1));
    assert_eq!(measure(&r).percent_text(), "50.0%");
}

#[test]
fn accounts_that_did_not_report_have_no_share_and_do_not_dilute_the_total() {
    let m = manifest(&[
        ("111111111111", Dispatch::Sent),
        ("222222222222", Dispatch::Sent),
        ("333333333333", Dispatch::NoAgent),
        (
            "444444444444",
            Dispatch::Failed {
                error: "AccessDenied".into(),
            },
        ),
    ]);
    let r = aggregate(
        &m,
        &[result(
            "111111111111",
            AS_OF,
            vec![user("a", vec![active(100), active(1)], None, None)],
        )],
        FINALIZED,
    );
    for a in &r.accounts {
        if a.account_id == "111111111111" {
            assert_eq!(a.compliance, Some(c(2, 1)));
        } else {
            assert_eq!(a.compliance, Some(c(0, 0)), "{}", a.account_id);
            assert_eq!(a.compliance.unwrap().percent_text(), "n/a");
        }
    }
    assert_eq!(measure(&r), c(2, 1));
}

#[test]
fn exempt_users_keys_count() {
    let mut erin = user("erin", vec![active(200)], None, None);
    erin.verdict = Verdict::Exempt;
    let r = one_account(vec![erin, user("bob", vec![active(3)], None, None)]);
    assert_eq!(measure(&r), c(2, 1));
}

#[test]
fn the_share_rounds_down_so_one_stale_key_never_reads_100_percent() {
    let cases: [(u64, u64, Option<u64>, &str); 9] = [
        (0, 0, None, "n/a"),
        (1, 1, Some(1000), "100.0%"),
        (1, 0, Some(0), "0.0%"),
        (3, 1, Some(333), "33.3%"),
        (3, 2, Some(666), "66.6%"),
        (8, 7, Some(875), "87.5%"),
        (2000, 1999, Some(999), "99.9%"),
        (100_000, 99_999, Some(999), "99.9%"),
        (u64::MAX, u64::MAX - 1, Some(999), "99.9%"),
    ];
    for (active_keys, within, pm, text) in cases {
        let m = c(active_keys, within);
        assert_eq!(m.per_mille(), pm, "{m:?}");
        assert_eq!(m.percent_text(), text, "{m:?}");
        assert_eq!(m.percent().is_some(), active_keys > 0);
    }
    assert_eq!(c(8, 7).percent(), Some(87.5));
    // A stored report with impossible counts renders, not panics.
    assert_eq!(c(2, 5).percent_text(), "100.0%");
}

#[test]
fn users_with_an_active_key_and_no_mfa_are_listed() {
    let r = one_account(vec![
        user("no-mfa", vec![active(10)], Some(false), Some(false)),
        user("mfa", vec![active(10)], Some(true), Some(false)),
        // Nothing that works today: not a finding.
        user(
            "inactive-only",
            vec![inactive(10)],
            Some(false),
            Some(false),
        ),
        user("no-keys", vec![], Some(false), Some(false)),
        // Unknown is not "off".
        user("unknown", vec![active(10)], None, Some(false)),
    ]);
    let s = r.compliance.unwrap();
    let names: Vec<&str> = s
        .keys_without_mfa
        .iter()
        .map(|u| u.user_name.as_str())
        .collect();
    assert_eq!(names, ["no-mfa"]);
    assert_eq!(s.keys_without_mfa[0].account_id, "111111111111");
    assert!(s.console_users_with_keys.is_empty());
    assert_eq!(s.credential_state_unknown, 1);
}

#[test]
fn users_with_a_console_password_and_an_active_key_are_listed() {
    let r = one_account(vec![
        user(
            "person",
            vec![inactive(200), active(10)],
            Some(true),
            Some(true),
        ),
        user("workload", vec![active(10)], Some(true), Some(false)),
        user("console-only", vec![], Some(true), Some(true)),
        user("old-person", vec![inactive(10)], Some(false), Some(true)),
        // Both findings at once.
        user("both", vec![active(100)], Some(false), Some(true)),
        user("unknown", vec![active(10)], Some(true), None),
    ]);
    let s = r.compliance.unwrap();
    let names = |l: &[UserRef]| l.iter().map(|u| u.user_name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&s.console_users_with_keys), ["person", "both"]);
    assert_eq!(names(&s.keys_without_mfa), ["both"]);
    assert_eq!(s.credential_state_unknown, 1);
}

#[test]
fn a_per_user_scan_finds_nothing_but_says_how_much_it_could_not_see() {
    // The per-user scan reads no credential report: every state is unknown.
    let r = one_account(vec![
        user("a", vec![active(10)], None, None),
        user("b", vec![active(100), inactive(3)], None, None),
        user("c", vec![inactive(3)], None, None),
    ]);
    let s = r.compliance.unwrap();
    assert!(s.keys_without_mfa.is_empty() && s.console_users_with_keys.is_empty());
    assert_eq!(s.credential_state_unknown, 2, "users with an active key");
    assert_eq!(s.total, c(2, 1));
}

#[test]
fn findings_follow_the_report_order() {
    // Failures first, then by account id, as everywhere in the report.
    let m = manifest(&[
        ("111111111111", Dispatch::Sent),
        ("222222222222", Dispatch::Sent),
    ]);
    let mut partial = result(
        "222222222222",
        AS_OF,
        vec![user("z", vec![active(1)], Some(false), Some(true))],
    );
    partial.status = AccountStatus::Partial;
    let r = aggregate(
        &m,
        &[
            result(
                "111111111111",
                AS_OF,
                vec![
                    user("b", vec![active(1)], Some(false), Some(true)),
                    user("a", vec![active(1)], Some(false), Some(true)),
                ],
            ),
            partial,
        ],
        FINALIZED,
    );
    let s = r.compliance.unwrap();
    let refs: Vec<(&str, &str)> = s
        .keys_without_mfa
        .iter()
        .map(|u| (u.account_id.as_str(), u.user_name.as_str()))
        .collect();
    assert_eq!(
        refs,
        [
            ("222222222222", "z"),
            ("111111111111", "b"),
            ("111111111111", "a")
        ]
    );
    assert_eq!(s.console_users_with_keys, s.keys_without_mfa);
}

#[test]
fn a_report_stored_before_the_evidence_reads_back_as_not_recorded() {
    let report = one_account(vec![user("a", vec![active(10)], Some(false), Some(true))]);
    let mut value = serde_json::to_value(&report).unwrap();
    value.as_object_mut().unwrap().remove("compliance");
    for a in value["accounts"].as_array_mut().unwrap() {
        a.as_object_mut().unwrap().remove("compliance");
        for u in a["users"].as_array_mut().unwrap() {
            let u = u.as_object_mut().unwrap();
            u.remove("mfa_active");
            u.remove("password_enabled");
        }
    }
    let old: RunReport = serde_json::from_value(value).unwrap();
    assert_eq!(old.compliance, None);
    assert_eq!(old.accounts[0].compliance, None);
    assert_eq!(old.accounts[0].users[0].mfa_active, None);
    assert_eq!(old.totals, report.totals, "everything else as stored");
    // And a new report round-trips with its evidence.
    let back: RunReport = serde_json::from_slice(&serde_json::to_vec(&report).unwrap()).unwrap();
    assert_eq!(back, report);
}

fn arb_key() -> impl Strategy<Value = KeyState> {
    (any::<bool>(), -3i64..400, 0i64..86_400).prop_map(|(is_active, days, secs)| {
        key(
            if is_active {
                KeyStatus::Active
            } else {
                KeyStatus::Inactive
            },
            Duration::days(days) + Duration::seconds(secs),
        )
    })
}

fn arb_user(i: usize) -> impl Strategy<Value = UserReport> {
    (
        proptest::collection::vec(arb_key(), 0..=2),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(move |(keys, mfa, password)| user(&format!("user{i}"), keys, mfa, password))
}

fn arb_account() -> impl Strategy<Value = (Option<i64>, Vec<UserReport>)> {
    (
        // `None`: the account did not report; else the days its scan ran
        // after the run's start.
        proptest::option::of(0i64..30),
        (0usize..6).prop_flat_map(|n| (0..n).map(arb_user).collect::<Vec<_>>()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the fleet: the total is the sum of the accounts, each
    /// account's measure is the plain count over its active keys, the
    /// share exists exactly when there are active keys and reads 100%
    /// only when every one is within, and each finding lists exactly the
    /// users it describes, once, in report order.
    #[test]
    fn evidence_agrees_with_the_keys_and_users(accounts in proptest::collection::vec(arb_account(), 0..5)) {
        let ids: Vec<String> = (0..accounts.len()).map(|i| format!("{:012}", i + 1)).collect();
        let m = manifest(&ids.iter().map(|id| (id.as_str(), Dispatch::Sent)).collect::<Vec<_>>());
        let results: Vec<AccountResult> = accounts
            .iter()
            .zip(&ids)
            .filter_map(|((scan, users), id)| {
                scan.map(|d| result(id, AS_OF + Duration::days(d), users.clone()))
            })
            .collect();
        let r = aggregate(&m, &results, FINALIZED);
        let s = r.compliance.clone().unwrap();

        let mut sum = Compliance::default();
        let mut without_mfa = Vec::new();
        let mut console = Vec::new();
        let mut unknown = 0;
        for a in &r.accounts {
            let got = a.compliance.unwrap();
            let as_of = results
                .iter()
                .find(|x| x.account_id == a.account_id)
                .map(|x| x.as_of)
                .unwrap_or(FINALIZED);
            let keys: Vec<&KeyState> = a
                .users
                .iter()
                .flat_map(|u| &u.keys)
                .filter(|k| k.status == KeyStatus::Active)
                .collect();
            let within = keys
                .iter()
                .filter(|k| (as_of - k.created) < Duration::days(91))
                .count() as u64;
            prop_assert_eq!(got, c(keys.len() as u64, within));
            prop_assert!(got.active_keys_within_90d <= got.active_keys);
            prop_assert_eq!(got.percent().is_some(), got.active_keys > 0);
            if let Some(p) = got.percent() {
                prop_assert!((0.0..=100.0).contains(&p));
            }
            prop_assert_eq!(
                got.percent_text() == "100.0%",
                got.active_keys > 0 && got.active_keys_within_90d == got.active_keys
            );
            sum.active_keys += got.active_keys;
            sum.active_keys_within_90d += got.active_keys_within_90d;
            for u in &a.users {
                let working = u.keys.iter().any(|k| k.status == KeyStatus::Active);
                let named = (a.account_id.clone(), u.user_name.clone());
                if working && u.mfa_active == Some(false) {
                    without_mfa.push(named.clone());
                }
                if working && u.password_enabled == Some(true) {
                    console.push(named);
                }
                if working && (u.mfa_active.is_none() || u.password_enabled.is_none()) {
                    unknown += 1;
                }
            }
        }
        prop_assert_eq!(s.total, sum);
        prop_assert_eq!(s.total.active_keys, r.totals.active_keys);
        let pairs = |l: &[UserRef]| l.iter().map(|u| (u.account_id.clone(), u.user_name.clone())).collect::<Vec<_>>();
        prop_assert_eq!(pairs(&s.keys_without_mfa), without_mfa);
        prop_assert_eq!(pairs(&s.console_users_with_keys), console);
        prop_assert_eq!(s.credential_state_unknown, unknown);

        let back: RunReport = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        prop_assert_eq!(back, r);
    }

    /// Rounding down: the shown share never exceeds the exact one, and is
    /// less than a tenth of a percent below it.
    #[test]
    fn percent_text_rounds_down_by_less_than_a_tenth(active_keys in 1u64..1_000_000, within_seed in any::<u64>()) {
        let m = c(active_keys, within_seed % (active_keys + 1));
        let exact = m.percent().unwrap();
        let shown = m.per_mille().unwrap() as f64 / 10.0;
        prop_assert!(shown <= exact + 1e-9);
        prop_assert!(exact - shown < 0.1 + 1e-9);
        prop_assert_eq!(m.percent_text(), format!("{shown:.1}%"));
    }

    /// One result at a time, in any order: the summary is the report
    /// without its users, the handed-back sections are the report's
    /// accounts with their users, and each capped list is the first
    /// [`LISTED_USERS`] of the whole list in report order, with the whole
    /// count beside it.
    #[test]
    fn streamed_aggregation_is_the_report_without_its_users(
        accounts in proptest::collection::vec(
            (proptest::option::of(0i64..30), 0usize..80, any::<u64>()),
            0..6,
        ),
        order_seed in any::<u64>(),
    ) {
        let ids: Vec<String> = (0..accounts.len()).map(|i| format!("{:012}", i + 1)).collect();
        let m = manifest(&ids.iter().map(|id| (id.as_str(), Dispatch::Sent)).collect::<Vec<_>>());
        let mut results: Vec<AccountResult> = accounts
            .iter()
            .zip(&ids)
            .filter_map(|((scan, n, bits), id)| {
                let users = (0..*n)
                    .map(|i| {
                        let b = bits.rotate_left(i as u32);
                        UserReport {
                            error: (b & 4 != 0).then(|| "boom".to_string()),
                            ..user(
                                &format!("user{i}"),
                                vec![active((b % 200) as i64)],
                                Some(b & 1 == 0),
                                Some(b & 2 == 0),
                            )
                        }
                    })
                    .collect();
                scan.map(|d| {
                    let mut r = result(id, AS_OF + Duration::days(d), users);
                    if bits % 3 == 0 {
                        r.status = AccountStatus::Partial;
                    }
                    r
                })
            })
            .collect();
        let whole = aggregate(&m, &results, FINALIZED);

        // Shuffle deterministically from the seed.
        let mut x = order_seed | 1;
        for i in (1..results.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            results.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut agg = Aggregator::new(&m, FINALIZED);
        let mut sections = Vec::new();
        for r in results {
            sections.push(agg.add(r).expect("an account of the manifest"));
        }
        let summary = agg.finish();
        for a in &summary.accounts {
            prop_assert!(a.users.is_empty());
            let full = whole.accounts.iter().find(|w| w.account_id == a.account_id).unwrap();
            prop_assert_eq!(a.figures(), AccountFigures::of(&full.users));
            prop_assert_eq!(a.figures.unwrap().users, full.users.len() as u64);
            if let Some(s) = sections.iter().find(|s| s.account_id == a.account_id) {
                prop_assert_eq!(s, full);
            }
        }
        let mut refilled = summary.clone();
        for a in &mut refilled.accounts {
            a.users = whole.accounts.iter().find(|w| w.account_id == a.account_id).unwrap().users.clone();
        }
        prop_assert_eq!(&refilled, &whole);

        let in_order = |keep: &dyn Fn(&UserReport) -> bool| -> Vec<(String, String)> {
            whole.accounts.iter()
                .flat_map(|a| a.users.iter().filter(|u| keep(u)).map(move |u| (a.account_id.clone(), u.user_name.clone())))
                .collect()
        };
        let s = summary.compliance.clone().unwrap();
        let pairs = |l: &[UserRef]| l.iter().map(|u| (u.account_id.clone(), u.user_name.clone())).collect::<Vec<_>>();
        let no_mfa = in_order(&keys_without_mfa);
        prop_assert_eq!(s.keys_without_mfa_count(), no_mfa.len() as u64);
        prop_assert_eq!(pairs(&s.keys_without_mfa), no_mfa.into_iter().take(LISTED_USERS).collect::<Vec<_>>());
        let console = in_order(&console_user_with_keys);
        prop_assert_eq!(s.console_users_with_keys_count(), console.len() as u64);
        prop_assert_eq!(pairs(&s.console_users_with_keys), console.into_iter().take(LISTED_USERS).collect::<Vec<_>>());
        let failed = in_order(&needs_attention);
        prop_assert_eq!(summary.failed_users.count, failed.len() as u64);
        let first: Vec<(String, String)> = summary.failed_users.first.iter().map(|f| (f.account_id.clone(), f.user.user_name.clone())).collect();
        prop_assert_eq!(first, failed.into_iter().take(LISTED_USERS).collect::<Vec<_>>());
    }
}
