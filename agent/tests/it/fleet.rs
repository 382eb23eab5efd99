//! A 250+ user account covering every seed case, one agent run, then IAM
//! state and the result checked user by user; a second delivery of the same
//! job changes nothing and reports what the first did; the scan of a quiet account costs O(pages).

use crate::fixture::*;
use keyfleet_protocol::{predictable, Action, Notice, Outcome, Policy, Verdict};
use std::collections::BTreeMap;

/// What one kind of user should end as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Old key kept active, a new active key added.
    Rotated,
    /// The inactive key (index) deleted, a new key added, the active kept.
    DeleteInactiveThenRotate(usize),
    /// Nothing changes in IAM; a deactivation notice is sent.
    NoticeOnly,
    /// The oldest key deactivated; the other untouched.
    DeactivateOldest,
    /// Nothing changes; a still-in-use notice is sent.
    StillInUse,
    /// The key (index) deleted, nothing created.
    Deleted(usize),
    /// Nothing changes and no action at all.
    Untouched(Verdict),
}

struct Kind {
    name: &'static str,
    spec: fn(String) -> UserSpec,
    expect: Expect,
}

fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            name: "seed-one-key-nearing-expiry",
            spec: |n| user(n, vec![key(85, true, Some(2))]),
            expect: Expect::Rotated,
        },
        Kind {
            name: "seed-two-keys-older-inactive",
            spec: |n| user(n, vec![key(95, false, Some(40)), key(85, true, Some(1))]),
            expect: Expect::DeleteInactiveThenRotate(0),
        },
        Kind {
            name: "seed-two-keys-younger-inactive",
            spec: |n| user(n, vec![key(85, true, Some(1)), key(50, false, None)]),
            expect: Expect::DeleteInactiveThenRotate(1),
        },
        Kind {
            name: "seed-two-active-one-nearing-expiry",
            spec: |n| user(n, vec![key(85, true, Some(1)), key(5, true, Some(1))]),
            expect: Expect::NoticeOnly,
        },
        Kind {
            name: "two-active-old-past-deactivate-unused-since-replacement",
            spec: |n| user(n, vec![key(105, true, Some(20)), key(15, true, Some(1))]),
            expect: Expect::DeactivateOldest,
        },
        Kind {
            name: "old-key-used-after-replacement",
            spec: |n| user(n, vec![key(95, true, Some(1)), key(15, true, Some(1))]),
            expect: Expect::StillInUse,
        },
        Kind {
            name: "hard-limit-even-if-used",
            spec: |n| user(n, vec![key(125, true, Some(1)), key(15, true, Some(1))]),
            expect: Expect::DeactivateOldest,
        },
        Kind {
            // The hard limit never cuts the replacement's notice period.
            name: "hard-limit-waits-for-the-notice-period",
            spec: |n| user(n, vec![key(125, true, Some(1)), key(5, true, Some(1))]),
            expect: Expect::NoticeOnly,
        },
        Kind {
            name: "seed-unused-key",
            spec: |n| user(n, vec![key(95, true, None)]),
            expect: Expect::Deleted(0),
        },
        Kind {
            name: "inactive-past-delete-after",
            spec: |n| user(n, vec![key(105, false, Some(50)), key(50, true, Some(1))]),
            expect: Expect::Deleted(0),
        },
        Kind {
            name: "exempt",
            spec: |n| UserSpec {
                exempt: true,
                ..user(n, vec![key(125, true, Some(1))])
            },
            expect: Expect::Untouched(Verdict::Exempt),
        },
        Kind {
            name: "no-email",
            spec: |n| UserSpec {
                email: None,
                ..user(n, vec![key(85, true, Some(1))])
            },
            expect: Expect::Untouched(Verdict::Unreachable),
        },
        Kind {
            name: "compliant",
            spec: |n| user(n, vec![key(50, true, Some(1))]),
            expect: Expect::Untouched(Verdict::Compliant),
        },
        Kind {
            name: "no-keys",
            spec: |n| user(n, vec![]),
            expect: Expect::Untouched(Verdict::NoKeys),
        },
        Kind {
            name: "special+chars=ok,x.y@z",
            spec: |n| UserSpec {
                path: "/engineering/ci/".into(),
                ..user(n, vec![key(85, true, Some(1))])
            },
            expect: Expect::Rotated,
        },
    ]
}

fn notices(actions: &[keyfleet_protocol::ActionRecord]) -> Vec<&Notice> {
    actions
        .iter()
        .filter_map(|a| match &a.action {
            Action::Notify { notice } => Some(notice),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_account_run_then_second_delivery_changes_nothing() {
    let mut acct = new_account().await;
    let kinds = kinds();
    let mut specs = Vec::new();
    let mut kind_of: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..19 {
        for (k, kind) in kinds.iter().enumerate() {
            let name = format!("{}-{i:02}", kind.name);
            kind_of.insert(name.clone(), k);
            specs.push((kind.spec)(name));
        }
    }
    assert!(specs.len() >= 250, "{} users", specs.len());
    acct.populate(&specs).await;

    let job = acct.job(Policy::default());
    let result = deliver(&acct.agent, &job).await.expect("agent run");
    assert_eq!(result.users.len(), specs.len());
    assert_eq!(
        result.status,
        keyfleet_protocol::AccountStatus::Ok,
        "{:?}",
        result.error
    );
    let sealed: BTreeMap<&str, &keyfleet_protocol::SealedCredential> = result
        .sealed
        .iter()
        .map(|s| (s.user_name.as_str(), s))
        .collect();

    let mut by_user: BTreeMap<&str, &keyfleet_protocol::UserReport> = BTreeMap::new();
    for u in &result.users {
        by_user.insert(&u.user_name, u);
    }
    let mut after: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    for spec in &specs {
        let name = spec.name.as_str();
        let kind = &kinds[kind_of[name]];
        let before = &acct.created[name];
        let now = acct.keys(name).await;
        let report = by_user[name];
        let ids: Vec<&str> = now.iter().map(|(id, _)| id.as_str()).collect();
        let ctx = format!("user {name}: before {before:?}, after {now:?}, report {report:?}");
        match kind.expect {
            Expect::Rotated | Expect::DeleteInactiveThenRotate(_) => {
                let kept: Vec<&String> = match kind.expect {
                    Expect::DeleteInactiveThenRotate(i) => {
                        assert!(!ids.contains(&before[i].as_str()), "{ctx}");
                        before
                            .iter()
                            .enumerate()
                            .filter(|(j, _)| *j != i)
                            .map(|(_, k)| k)
                            .collect()
                    }
                    _ => before.iter().collect(),
                };
                assert_eq!(now.len(), 2, "{ctx}");
                assert!(kept.iter().all(|k| ids.contains(&k.as_str())), "{ctx}");
                let new = now
                    .iter()
                    .find(|(id, _)| !before.contains(id))
                    .expect("new key");
                assert!(new.1, "new key active: {ctx}");
                assert_eq!(report.verdict, Verdict::Rotated, "{ctx}");
                let s = sealed
                    .get(name)
                    .expect("sealed credential for rotated user");
                assert_eq!(s.access_key_id, new.0, "{ctx}");
                assert_eq!(acct.open(s).len(), 40, "secret opens: {ctx}");
                // Delete comes before create.
                let kinds_seq: Vec<&str> = report.actions.iter().map(|a| a.action.kind()).collect();
                if let Expect::DeleteInactiveThenRotate(_) = kind.expect {
                    let d = kinds_seq
                        .iter()
                        .position(|k| *k == "delete")
                        .expect("delete");
                    let c = kinds_seq
                        .iter()
                        .position(|k| *k == "create")
                        .expect("create");
                    assert!(d < c, "{ctx}");
                }
                assert!(
                    notices(&report.actions).iter().any(|n| matches!(n,
                    Notice::DeactivationScheduled { replacement: Some(r), .. } if *r == new.0)),
                    "{ctx}"
                );
            }
            Expect::NoticeOnly => {
                assert_eq!(
                    ids,
                    before.iter().map(String::as_str).collect::<Vec<_>>(),
                    "{ctx}"
                );
                assert!(now.iter().all(|(_, a)| *a), "{ctx}");
                assert_eq!(report.verdict, Verdict::PendingDeactivation, "{ctx}");
                assert!(
                    matches!(
                        notices(&report.actions)[..],
                        [Notice::DeactivationScheduled { .. }]
                    ),
                    "{ctx}"
                );
            }
            Expect::DeactivateOldest => {
                assert_eq!(
                    now,
                    vec![(before[0].clone(), false), (before[1].clone(), true)],
                    "{ctx}"
                );
                assert_eq!(report.verdict, Verdict::Deactivated, "{ctx}");
                assert!(
                    notices(&report.actions).iter().any(
                        |n| matches!(n, Notice::Deactivated { key_id, .. } if *key_id == before[0])
                    ),
                    "{ctx}"
                );
            }
            Expect::StillInUse => {
                assert!(now.iter().all(|(_, a)| *a), "{ctx}");
                assert_eq!(report.verdict, Verdict::StillInUse, "{ctx}");
                match notices(&report.actions)[..] {
                    [Notice::StillInUse {
                        key_id,
                        service,
                        region,
                        ..
                    }] => {
                        assert_eq!(key_id, &before[0]);
                        assert_eq!(service.as_deref(), Some("s3"));
                        assert_eq!(region.as_deref(), Some("eu-west-1"));
                    }
                    _ => panic!("{ctx}"),
                }
            }
            Expect::Deleted(i) => {
                assert!(!ids.contains(&before[i].as_str()), "{ctx}");
                assert_eq!(now.len(), before.len() - 1, "{ctx}");
                assert!(!sealed.contains_key(name), "{ctx}");
                assert_eq!(report.verdict, Verdict::Cleaned, "{ctx}");
                assert!(
                    notices(&report.actions)
                        .iter()
                        .any(|n| n.key_id() == before[i]),
                    "{ctx}"
                );
            }
            Expect::Untouched(v) => {
                assert_eq!(
                    ids,
                    before.iter().map(String::as_str).collect::<Vec<_>>(),
                    "{ctx}"
                );
                assert_eq!(report.verdict, v, "{ctx}");
                assert!(
                    report.actions.iter().all(|a| !a.action.mutates_iam()),
                    "{ctx}"
                );
                assert!(!sealed.contains_key(name), "{ctx}");
            }
        }
        for a in &report.actions {
            assert!(matches!(a.result, Outcome::Done { .. }), "{ctx}");
        }
        if spec.path != "/" {
            assert_eq!(report.path, spec.path, "{ctx}");
        }
        after.insert(name.to_string(), now);
    }
    // The result reached the results queue, whole.
    let delivered = acct.drain_results().await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0], result);

    // Second delivery of the same job: IAM unchanged, nothing created. It
    // reports what the first delivery did, with the same notices and the
    // same new keys (the coordinator's ledger drops the duplicates), as a
    // retry after a lost result must.
    let again = redeliver(&acct.agent, &job).await.expect("second run");
    let new_keys = |r: &keyfleet_protocol::AccountResult| {
        let mut ids: Vec<String> = r.sealed.iter().map(|s| s.access_key_id.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(new_keys(&again), new_keys(&result), "no key twice");
    for u in &again.users {
        let first = result
            .users
            .iter()
            .find(|f| f.user_name == u.user_name)
            .expect("same users");
        assert_eq!(
            predictable(&u.actions),
            predictable(&first.actions),
            "second delivery reports {}",
            u.user_name
        );
        assert_eq!(u.verdict, first.verdict, "{}", u.user_name);
        for a in &u.actions {
            assert!(
                matches!(a.result, Outcome::Done { .. }),
                "{}: {a:?}",
                u.user_name
            );
        }
    }
    for spec in &specs {
        assert_eq!(
            acct.keys(&spec.name).await,
            after[&spec.name],
            "user {}",
            spec.name
        );
    }
}

#[tokio::test]
async fn quiet_account_scan_costs_pages_not_users() {
    let mut acct = new_account().await;
    let specs: Vec<UserSpec> = (0..260)
        .map(|i| user(format!("quiet-{i:03}"), vec![key(10, true, Some(1))]))
        .collect();
    acct.populate(&specs).await;
    let result = deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    assert!(result.users.iter().all(|u| u.verdict == Verdict::Compliant));
    let calls = &result.api_calls;
    let pages = 260usize.div_ceil(100) as u64;
    assert_eq!(
        calls.get("iam:GetAccountAuthorizationDetails"),
        Some(&pages),
        "{calls:?}"
    );
    assert_eq!(calls.get("iam:GetCredentialReport"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("iam:ListAccessKeys"), None, "{calls:?}");
    assert_eq!(calls.get("iam:GetAccessKeyLastUsed"), None, "{calls:?}");
    // 3 fixed (generate, poll, get) + one per page, whatever the users.
    assert!(result.iam_calls() <= 3 + pages, "{calls:?}");
    assert_eq!(calls.get("iam:ListAccountAliases"), None, "{calls:?}");
}

#[tokio::test]
async fn dry_run_changes_nothing_and_predicts_the_real_run() {
    let mut acct = new_account().await;
    let specs: Vec<UserSpec> = kinds()
        .iter()
        .map(|k| (k.spec)(format!("dry-{}", k.name)))
        .collect();
    acct.populate(&specs).await;
    let mut before = BTreeMap::new();
    for s in &specs {
        before.insert(s.name.clone(), acct.keys(&s.name).await);
    }
    let mut job = acct.job(Policy::default());
    job.dry_run = true;
    let plan = deliver(&acct.agent, &job).await.unwrap();
    assert!(plan.sealed.is_empty());
    for s in &specs {
        assert_eq!(
            acct.keys(&s.name).await,
            before[&s.name],
            "dry run changed {}",
            s.name
        );
    }
    job.dry_run = false;
    let real = deliver(&acct.agent, &job).await.unwrap();
    for (p, r) in plan.users.iter().zip(&real.users) {
        assert_eq!(p.user_name, r.user_name);
        assert_eq!(p.verdict, r.verdict, "{}", p.user_name);
        assert_eq!(
            predictable(&p.actions),
            predictable(&r.actions),
            "{}",
            p.user_name
        );
        assert!(p.actions.iter().all(|a| a.result == Outcome::Planned));
    }
}
