//! A run report for tests: four accounts (ok with several verdicts, partial
//! with a failed action, missing, no agent) and one skipped account, built
//! with the protocol's own `aggregate`.
//!
//! Credential state, for the compliance evidence: users have MFA and no
//! console password unless said otherwise. With an active key, hence
//! findings: bob has no MFA, alice a console password, dave both. Without
//! one, hence none: carol (inactive key) and frank (no key) have no MFA
//! and a password. Gina's state is unknown (as from a per-user scan). CIS
//! measure: Payments Prod 3 of 5 active keys within 90 days (60.0%), Data
//! Lake 1 of 3 (33.3%), the others none (n/a), total 4 of 8 (50.0%).

use keyfleet_protocol::messages::{
    AccountResult, AccountStatus, Dispatch, JobMode, ManifestAccount, RunManifest, ScanMode,
    SkippedAccount, Token, UserReport, VERSION,
};
use keyfleet_protocol::plan::{
    Action, ActionRecord, KeyState, KeyStatus, Notice, Outcome, Verdict,
};
use keyfleet_protocol::report::{aggregate, RunReport};
use keyfleet_protocol::Policy;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

pub const RUN_ID: &str = "2026-03-10T0600Z-a1b2c3";
pub const NOW: OffsetDateTime = datetime!(2026-03-10 06:05 UTC);
pub const START: OffsetDateTime = datetime!(2026-03-10 06:00 UTC);

pub fn key(id: &str, status: KeyStatus, age_days: i64, used_days_ago: Option<i64>) -> KeyState {
    KeyState {
        id: id.into(),
        status,
        created: START - Duration::days(age_days),
        last_used: used_days_ago.map(|d| START - Duration::days(d)),
        last_used_service: used_days_ago.map(|_| "s3".into()),
        last_used_region: used_days_ago.map(|_| "eu-west-1".into()),
    }
}

pub fn done(action: Action) -> ActionRecord {
    ActionRecord {
        action,
        result: Outcome::Done { key_id: None },
    }
}

pub fn user(
    name: &str,
    verdict: Verdict,
    keys: Vec<KeyState>,
    actions: Vec<ActionRecord>,
) -> UserReport {
    UserReport {
        email: Some(format!("{name}@example.com")),
        keys,
        actions,
        mfa_active: Some(true),
        password_enabled: Some(false),
        ..UserReport::new(name, verdict)
    }
}

/// Sets a user's credential state (MFA, console password) in `r`.
fn credentials(r: &mut AccountResult, user: &str, mfa: Option<bool>, password: Option<bool>) {
    for u in r.users.iter_mut().filter(|u| u.user_name == user) {
        u.mfa_active = mfa;
        u.password_enabled = password;
    }
}

fn result(
    account_id: &str,
    alias: &str,
    status: AccountStatus,
    users: Vec<UserReport>,
) -> AccountResult {
    AccountResult {
        v: VERSION,
        run_id: RUN_ID.into(),
        account_id: account_id.into(),
        token: Token("0123456789abcdef0123456789abcdef".into()),
        part: 1,
        parts: 1,
        account_alias: Some(alias.into()),
        status,
        error: None,
        dry_run: false,
        as_of: START,
        started_at: START,
        finished_at: START + Duration::minutes(1),
        scan_mode: ScanMode::CredentialReport,
        api_calls: [
            ("iam:GenerateCredentialReport".to_string(), 2),
            ("iam:CreateAccessKey".to_string(), 1),
            ("secretsmanager:PutSecretValue".to_string(), 1),
        ]
        .into_iter()
        .collect(),
        users,
        sealed: vec![],
    }
}

fn account(id: &str, name: &str, dispatch: Dispatch) -> ManifestAccount {
    ManifestAccount {
        account_id: id.into(),
        name: name.into(),
        token_sha256: "00".repeat(32),
        dispatch,
    }
}

pub fn manifest() -> RunManifest {
    RunManifest {
        v: VERSION,
        run_id: RUN_ID.into(),
        created_at: START,
        deadline: START + Duration::hours(1),
        policy: Policy::default(),
        dry_run: false,
        mode: JobMode::Scheduled,
        accounts: vec![
            account("111111111111", "Payments Prod", Dispatch::Sent),
            account("222222222222", "Data Lake", Dispatch::Sent),
            account("333333333333", "Sandbox", Dispatch::Sent),
            account("444444444444", "Legacy", Dispatch::NoAgent),
        ],
        skipped: vec![SkippedAccount {
            account_id: "555555555555".into(),
            name: "Security Tooling".into(),
            reason: "excluded OU ou-abcd-12345678".into(),
        }],
    }
}

pub fn results() -> Vec<AccountResult> {
    use KeyStatus::{Active, Inactive};
    let mut ok = result(
        "111111111111",
        "payments-prod",
        AccountStatus::Ok,
        vec![
            user(
                "alice",
                Verdict::Rotated,
                vec![key("AKIAALICEOLD0000WXYZ", Active, 85, Some(1))],
                vec![
                    ActionRecord {
                        action: Action::CreateKey,
                        result: Outcome::Done {
                            key_id: Some("AKIAALICENEW0000ABCD".into()),
                        },
                    },
                    done(Action::Notify {
                        notice: Notice::DeactivationScheduled {
                            key_id: "AKIAALICEOLD0000WXYZ".into(),
                            on: START + Duration::days(5),
                            replacement: Some("AKIAALICENEW0000ABCD".into()),
                        },
                    }),
                ],
            ),
            user(
                "bob",
                Verdict::Compliant,
                vec![key("AKIABOB0000000000001", Active, 10, Some(0))],
                vec![],
            ),
            user(
                "carol",
                Verdict::Cleaned,
                vec![key("AKIACAROL00000000001", Inactive, 105, Some(120))],
                vec![
                    done(Action::Delete {
                        key_id: "AKIACAROL00000000001".into(),
                    }),
                    done(Action::Notify {
                        notice: Notice::Deleted {
                            key_id: "AKIACAROL00000000001".into(),
                        },
                    }),
                ],
            ),
            user(
                "dave",
                Verdict::StillInUse,
                vec![
                    key("AKIADAVEOLD000000001", Active, 95, Some(0)),
                    key("AKIADAVENEW000000002", Active, 15, Some(2)),
                ],
                vec![done(Action::Notify {
                    notice: Notice::StillInUse {
                        key_id: "AKIADAVEOLD000000001".into(),
                        last_used: Some(START),
                        service: Some("s3".into()),
                        region: Some("eu-west-1".into()),
                        replacement: Some("AKIADAVENEW000000002".into()),
                        used_from: Vec::new(),
                    },
                })],
            ),
            user(
                "erin",
                Verdict::Exempt,
                vec![key("AKIAERIN000000000001", Active, 200, Some(3))],
                vec![],
            ),
            UserReport {
                path: "/service/".into(),
                email: None,
                ..user("frank", Verdict::NoKeys, vec![], vec![])
            },
        ],
    );
    let mut partial = result(
        "222222222222",
        "data-lake",
        AccountStatus::Partial,
        vec![
            UserReport {
                error: Some("CreateAccessKey failed: LimitExceeded: Cannot exceed quota for AccessKeysPerUser: 2".into()),
                ..user(
                    "gina",
                    Verdict::Failed,
                    vec![key("AKIAGINA000000000001", Active, 92, Some(1))],
                    vec![ActionRecord {
                        action: Action::CreateKey,
                        result: Outcome::Failed {
                            error: "LimitExceeded: Cannot exceed quota for AccessKeysPerUser: 2".into(),
                        },
                    }],
                )
            },
            user(
                "hank",
                Verdict::Deactivated,
                vec![
                    key("AKIAHANKOLD000000001", Active, 91, Some(20)),
                    key("AKIAHANKNEW000000002", Active, 11, Some(1)),
                ],
                vec![
                    done(Action::Deactivate {
                        key_id: "AKIAHANKOLD000000001".into(),
                    }),
                    done(Action::Notify {
                        notice: Notice::Deactivated {
                            key_id: "AKIAHANKOLD000000001".into(),
                            replacement: Some("AKIAHANKNEW000000002".into()),
                        },
                    }),
                ],
            ),
        ],
    );
    partial.error = Some("1 of 2 users failed".into());
    credentials(&mut ok, "alice", Some(true), Some(true));
    credentials(&mut ok, "bob", Some(false), Some(false));
    credentials(&mut ok, "carol", Some(false), Some(true));
    credentials(&mut ok, "dave", Some(false), Some(true));
    credentials(&mut ok, "frank", Some(false), Some(true));
    credentials(&mut partial, "gina", None, None);
    vec![ok, partial]
}

pub fn report() -> RunReport {
    aggregate(&manifest(), &results(), NOW)
}

/// A large organization's report, for the split HTML report and its
/// bounds: `accounts` accounts of `users` users each, one key each of ages
/// spread over 0 to 119 days, every fifth user without MFA and every
/// seventh failed.
pub fn large_report(accounts: usize, users: usize) -> RunReport {
    use KeyStatus::Active;
    let ids: Vec<String> = (0..accounts)
        .map(|i| format!("{:012}", 100_000_000_000 + i))
        .collect();
    let mut m = manifest();
    m.skipped.clear();
    m.accounts = ids
        .iter()
        .enumerate()
        .map(|(i, id)| account(id, &format!("Account {i}"), Dispatch::Sent))
        .collect();
    let results: Vec<AccountResult> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let list = (0..users)
                .map(|u| {
                    let name = format!("user-{i}-{u}");
                    let k = key(
                        &format!("AKIA{:016}", i * users + u),
                        Active,
                        ((i + u) % 120) as i64,
                        Some(1),
                    );
                    let mut r = user(&name, Verdict::Compliant, vec![k], vec![]);
                    if u % 5 == 0 {
                        r.mfa_active = Some(false);
                    }
                    if u % 7 == 0 {
                        r.verdict = Verdict::Failed;
                        r.error = Some("ListAccessKeys failed: Throttling".into());
                    }
                    r
                })
                .collect();
            result(id, &format!("acct-{i}"), AccountStatus::Partial, list)
        })
        .collect();
    aggregate(&m, &results, NOW)
}
