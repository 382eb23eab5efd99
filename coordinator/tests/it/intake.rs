//! Intake takes genuine results and refuses forged or broken ones without
//! touching anything; a duplicate delivery is dropped and mails nobody.

use crate::fleet::*;
use keyfleet_coordinator::{Intake, Rejection, RunRequest};
use keyfleet_protocol::Token;

/// `body` with top-level fields replaced.
fn forge(body: &str, fields: &[(&str, serde_json::Value)]) -> String {
    let mut v: serde_json::Value = serde_json::from_str(body).expect("JSON result");
    for (k, val) in fields {
        v[*k] = val.clone();
    }
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_accepts_genuine_results_and_rejects_forged_ones() {
    let (a, _) = normal_member("intake-a").await;
    let (b, _) = normal_member("intake-b").await;
    let stranger = create_member("intake-stranger").await;
    let central = Central::new(Setup::default()).await;
    let manifest = central
        .coordinator
        .start_run(RunRequest {
            accounts: Some(vec![a.id.clone(), b.id.clone()]),
            ..RunRequest::default()
        })
        .await
        .expect("start run");
    let run_id = manifest.run_id.clone();
    a.run_agent(&central.public_key).await;
    b.run_agent(&central.public_key).await;

    let mut results = central.receive_results().await;
    assert_eq!(results.len(), 2, "one result per agent");
    results.sort_by_key(|(body, _)| body.contains(&format!("\"account_id\":\"{}\"", b.id)));
    let (body_a, receipt_a) = results[0].clone();
    let (body_b, receipt_b) = results[1].clone();
    assert!(body_a.contains(&a.id) && body_b.contains(&b.id));
    let token_b: serde_json::Value =
        serde_json::from_str::<serde_json::Value>(&body_b).expect("JSON")["token"].clone();

    let rejected = |why: Rejection| Intake::Rejected(why);
    let cases: Vec<(&str, String, Intake)> = vec![
        (
            "a fresh token",
            forge(&body_a, &[("token", Token::generate().0.into())]),
            rejected(Rejection::BadToken {
                run: run_id.clone(),
                account: a.id.clone(),
            }),
        ),
        (
            "account B's genuine token on account A's result",
            forge(&body_a, &[("token", token_b.clone())]),
            rejected(Rejection::BadToken {
                run: run_id.clone(),
                account: a.id.clone(),
            }),
        ),
        (
            "an account the run sent no job to",
            forge(
                &body_b,
                &[
                    ("account_id", stranger.id.clone().into()),
                    ("token", token_b),
                ],
            ),
            rejected(Rejection::UnknownAccount {
                run: run_id.clone(),
                account: stranger.id.clone(),
            }),
        ),
        (
            "an unknown run",
            forge(&body_a, &[("run_id", "20200101T000000Z-nosuch".into())]),
            rejected(Rejection::UnknownRun("20200101T000000Z-nosuch".into())),
        ),
    ];
    for (what, body, expected) in cases {
        let got = central
            .coordinator
            .intake(&body, 1)
            .await
            .unwrap_or_else(|e| panic!("intake of {what} must not fail: {e}"));
        assert_eq!(got, expected, "{what}");
    }
    for (what, body) in [
        ("not JSON", "this is not a result".to_string()),
        ("an empty object", "{}".to_string()),
        ("an unknown version", forge(&body_a, &[("v", 99.into())])),
        (
            "a missing field",
            forge(&body_a, &[("status", serde_json::Value::Null)]),
        ),
        (
            "a bad account id",
            forge(&body_a, &[("account_id", "12345".into())]),
        ),
    ] {
        let got = central
            .coordinator
            .intake(&body, 1)
            .await
            .unwrap_or_else(|e| panic!("intake of {what} must not fail: {e}"));
        assert!(
            matches!(got, Intake::Rejected(Rejection::Malformed(_))),
            "{what}: {got:?}"
        );
    }

    // Nothing was stored, mailed or finalized by the rejected messages.
    let store = central.coordinator.store();
    assert!(
        store
            .list(&format!("runs/{run_id}/results/"))
            .await
            .expect("list")
            .is_empty(),
        "a rejected message stored a result"
    );
    assert!(
        store
            .list("runs/20200101T000000Z-nosuch/")
            .await
            .expect("list")
            .is_empty(),
        "a result for an unknown run was stored"
    );
    assert!(central
        .object(&format!("runs/{run_id}/report.json"))
        .await
        .is_none());
    assert!(emails_of_run(&run_id).is_empty(), "emails before intake");
    // Each rejection is alerted.
    let alerts = central.alerts(9).await;
    assert_eq!(alerts.len(), 9, "{alerts:?}");
    assert!(alerts
        .iter()
        .all(|(subject, _)| subject == "keyfleet: result rejected"));

    // The genuine results still go through.
    let got_a = central
        .coordinator
        .intake(&body_a, 1)
        .await
        .expect("intake A");
    assert_eq!(
        got_a,
        Intake::Accepted {
            run_id: run_id.clone(),
            account_id: a.id.clone(),
            account_complete: true,
            finalized: false,
        }
    );
    central.delete_result(&receipt_a).await;
    let after_a = emails_of_run(&run_id);
    assert!(
        !after_a.is_empty() && after_a.iter().all(|m| m.account == a.id),
        "owner emails of account A only: {after_a:?}"
    );
    let got_b = central
        .coordinator
        .intake(&body_b, 1)
        .await
        .expect("intake B");
    assert_eq!(
        got_b,
        Intake::Accepted {
            run_id: run_id.clone(),
            account_id: b.id.clone(),
            account_complete: true,
            finalized: true,
        }
    );
    central.delete_result(&receipt_b).await;
    let report = central
        .coordinator
        .report(&run_id)
        .await
        .expect("report")
        .expect("finalized");
    assert_eq!(report.totals.accounts_ok, 2);
    assert!(!report.has_problems());

    // No object of the run holds a job token: the bucket's readers must not
    // be able to forge a result (the manifest keeps only the hashes).
    for body in [&body_a, &body_b] {
        let token: serde_json::Value = serde_json::from_str(body).expect("JSON");
        let token = token["token"].as_str().expect("token").to_string();
        for key in store.list(&format!("runs/{run_id}/")).await.expect("list") {
            let object = store.get(&key).await.expect("get").expect("object");
            assert!(
                !String::from_utf8_lossy(&object).contains(&token),
                "{key} holds a job token"
            );
        }
    }

    // A duplicate delivery (SQS redelivers, or the agent resends) is
    // dropped: no second email of any kind.
    let before = emails_of_run(&run_id).len();
    for (body, account) in [(&body_a, &a.id), (&body_b, &b.id)] {
        let got = central
            .coordinator
            .intake(body, 1)
            .await
            .expect("duplicate");
        assert_eq!(
            got,
            Intake::Duplicate {
                run_id: run_id.clone(),
                account_id: account.clone(),
            }
        );
    }
    assert_eq!(emails_of_run(&run_id).len(), before, "a duplicate mailed");
    assert_eq!(central.alerts(0).await, vec![], "no alert for duplicates");
}

/// Sets the `email` of the user named `user` in a result body.
fn with_owner(body: &str, user: &str, email: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(body).expect("JSON result");
    let u = v["users"]
        .as_array_mut()
        .expect("users")
        .iter_mut()
        .find(|u| u["user_name"] == user)
        .unwrap_or_else(|| panic!("user {user} in the result"));
    u["email"] = email.into();
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_address_the_rule_refuses_is_reported_and_alerted_not_retried() {
    let (member, users) = normal_member("intake-owner-rule").await;
    let central = Central::new(Setup::default()).await;
    // The run's policy (from its manifest) allows owners at example.com only.
    let policy = keyfleet_protocol::Policy {
        owner_domains: vec!["example.com".into()],
        ..keyfleet_protocol::Policy::default()
    };
    let run_id = central
        .coordinator
        .start_run(RunRequest {
            accounts: Some(vec![member.id.clone()]),
            policy: Some(policy),
            ..RunRequest::default()
        })
        .await
        .expect("start run")
        .run_id;
    member.run_agent(&central.public_key).await;
    let (body, receipt) = central
        .receive_results()
        .await
        .pop()
        .expect("the agent's result");
    // A result naming owners the rule refuses: one not an internet address
    // (the user who got a new key), one outside the allow-list (the user
    // whose unused key was deleted, with a notice).
    let undeliverable = "owner@corp";
    let foreign = "owner@elsewhere.org";
    let forged = with_owner(&body, &users.rotate, undeliverable);
    let forged = with_owner(&forged, &users.unused, foreign);

    let intake = central
        .coordinator
        .intake(&forged, 1)
        .await
        .expect("a refused owner address is not an error to retry");
    assert_eq!(
        intake,
        Intake::Accepted {
            run_id: run_id.clone(),
            account_id: member.id.clone(),
            account_complete: true,
            finalized: true,
        }
    );
    central.delete_result(&receipt).await;
    assert!(
        emails_to(undeliverable).is_empty(),
        "mailed {undeliverable}"
    );
    assert!(emails_to(foreign).is_empty(), "mailed {foreign}");
    assert!(
        !emails_to(&owner_address(&users.pending)).is_empty(),
        "the other owners are still mailed"
    );

    // One alert per refused owner, naming the user and why.
    let alerts = central.alerts(2).await;
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    for (user, why) in [(&users.rotate, "no dot"), (&users.unused, "owner_domains")] {
        assert!(
            alerts
                .iter()
                .any(|(s, m)| s.contains("owner address not deliverable")
                    && m.contains(user.as_str())
                    && m.contains(why)),
            "{user}: {alerts:?}"
        );
    }

    // The report's row of each user says it, and why.
    let report = central
        .coordinator
        .report(&run_id)
        .await
        .expect("report")
        .expect("finalized");
    let row = |name: &str| {
        report.accounts[0]
            .users
            .iter()
            .find(|u| u.user_name == name)
            .unwrap_or_else(|| panic!("{name} in the report"))
            .clone()
    };
    let rotate = row(&users.rotate);
    let error = rotate.error.clone().unwrap_or_default();
    assert!(
        error.contains("owner address not deliverable") && error.contains("no dot"),
        "{rotate:?}"
    );
    let unused = row(&users.unused);
    let error = unused.error.clone().unwrap_or_default();
    assert!(
        error.contains("owner address not deliverable") && error.contains("owner_domains"),
        "{unused:?}"
    );
    assert_eq!(row(&users.pending).error, None);

    // Delivered again (SQS redelivery): still no retry, no second alert.
    let again = central
        .coordinator
        .intake(&forged, 1)
        .await
        .expect("duplicate");
    assert!(matches!(again, Intake::Duplicate { .. }), "{again:?}");
    assert_eq!(central.alerts(0).await, vec![], "alerted once per owner");
}

/// The coordinator's side of the bad-input corpus. How each ends: refused
/// by name, dropped (the message is deleted: none of them can succeed on a
/// later delivery) and alerted on the SNS topic; nothing stored, nothing
/// mailed; the genuine result still goes through afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_result_is_refused_by_name_and_alerted() {
    let (member, _) = normal_member("intake-corpus").await;
    let stranger = create_member("intake-corpus-stranger").await;
    let central = Central::new(Setup::default()).await;
    let start = || {
        central.coordinator.start_run(RunRequest {
            accounts: Some(vec![member.id.clone()]),
            ..RunRequest::default()
        })
    };
    let run_id = start().await.expect("start run").run_id;
    member.run_agent(&central.public_key).await;
    let (body, receipt) = central.receive_results().await.pop().expect("result");
    // A second run for the same account: the first run's result replayed
    // into it carries the wrong token.
    let next_run = start().await.expect("second run").run_id;

    let malformed = |named: &'static str| {
        move |got: &Intake| match got {
            Intake::Rejected(Rejection::Malformed(why)) => why.contains(named),
            _ => false,
        }
    };
    // Padded with a field no result has (an over-long free text would only
    // be cut to size: results degrade, see keyfleet_protocol::degrade).
    let padded = |len: usize| {
        let shape = forge(&body, &[("padding", "".into())]);
        let pad = len - shape.len();
        forge(&body, &[("padding", "e".repeat(pad).into())])
    };
    let at_limit = padded(keyfleet_protocol::MAX_MESSAGE_BYTES);
    assert_eq!(at_limit.len(), keyfleet_protocol::MAX_MESSAGE_BYTES);
    // Two parts of one attempt (an earlier one than the genuine result's,
    // so it is tried first)
    // that name the same users.
    let started: time::OffsetDateTime = {
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        time::OffsetDateTime::parse(
            v["started_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let earlier = (started - time::Duration::seconds(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let half = |part: u32| {
        forge(
            &body,
            &[
                ("part", part.into()),
                ("parts", 2.into()),
                ("started_at", earlier.clone().into()),
            ],
        )
    };
    let (part1, part2) = (half(1), half(2));

    type Check = Box<dyn Fn(&Intake) -> bool>;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        (
            "truncated JSON",
            body.as_bytes()[..body.len() / 2].to_vec(),
            Box::new(malformed("not JSON")),
        ),
        (
            "a wrong type",
            forge(&body, &[("part", "1".into())]).into_bytes(),
            Box::new(malformed("part")),
        ),
        (
            "an unknown version",
            forge(&body, &[("v", 2.into())]).into_bytes(),
            Box::new(malformed("unsupported protocol version 2")),
        ),
        (
            "a body of exactly SQS's limit",
            at_limit.into_bytes(),
            Box::new(malformed("unknown field `padding`")),
        ),
        (
            "a body longer than SQS carries",
            padded(keyfleet_protocol::MAX_MESSAGE_BYTES + 1).into_bytes(),
            Box::new(malformed("more than SQS carries")),
        ),
        (
            "non-UTF-8 bytes",
            b"{\"v\":1,\"run_id\":\"\xff\xfe\"}".to_vec(),
            Box::new(malformed("not JSON")),
        ),
        (
            "a key id of HTML",
            body.replacen("\"id\":\"AKIA", "\"id\":\"<b>AKIA", 1)
                .into_bytes(),
            Box::new(malformed("users[].keys[].id")),
        ),
        (
            "an account id of free text",
            forge(&body, &[("account_id", "pay now at evil.example".into())]).into_bytes(),
            Box::new(malformed("account_id")),
        ),
        (
            "a wrong token",
            forge(&body, &[("token", Token::generate().0.into())]).into_bytes(),
            Box::new(|g: &Intake| matches!(g, Intake::Rejected(Rejection::BadToken { .. }))),
        ),
        (
            "a result for another account",
            forge(&body, &[("account_id", stranger.id.clone().into())]).into_bytes(),
            Box::new(|g: &Intake| matches!(g, Intake::Rejected(Rejection::UnknownAccount { .. }))),
        ),
        (
            "a result replayed into a later run",
            forge(&body, &[("run_id", next_run.clone().into())]).into_bytes(),
            Box::new(|g: &Intake| matches!(g, Intake::Rejected(Rejection::BadToken { .. }))),
        ),
    ];
    let n = cases.len();
    for (what, bytes, check) in cases {
        let got = central
            .coordinator
            .intake(&bytes, 1)
            .await
            .unwrap_or_else(|e| panic!("intake of {what} must not fail: {e}"));
        assert!(check(&got), "{what}: {got:?}");
    }
    let store = central.coordinator.store();
    assert!(
        store
            .list(&format!("runs/{run_id}/results/"))
            .await
            .expect("list")
            .is_empty(),
        "a refused message stored a result"
    );
    assert!(
        emails_of_run(&run_id).is_empty(),
        "a refused message mailed"
    );
    let alerts = central.alerts(n).await;
    assert_eq!(alerts.len(), n, "one alert per refusal: {alerts:?}");

    // Parts that do not add up: the first is taken (it may be genuine),
    // the second shows they cannot both be, and is refused.
    let got = central.coordinator.intake(&part1, 1).await.expect("part 1");
    assert!(
        matches!(
            got,
            Intake::Accepted {
                account_complete: false,
                ..
            }
        ),
        "{got:?}"
    );
    let got = central.coordinator.intake(&part2, 1).await.expect("part 2");
    match &got {
        Intake::Rejected(Rejection::PartsDoNotFit { reason, .. }) => {
            assert!(reason.contains("more than one part"), "{reason}")
        }
        other => panic!("parts that name one user twice: {other:?}"),
    }
    assert!(
        emails_of_run(&run_id).is_empty(),
        "parts that do not fit mailed"
    );
    let alerts = central.alerts(1).await;
    assert!(alerts[0].1.contains("do not fit together"), "{alerts:?}");

    // The genuine result, delivered twice (a duplicated part), is taken once.
    let got = central.coordinator.intake(&body, 1).await.expect("genuine");
    assert!(
        matches!(
            got,
            Intake::Accepted {
                account_complete: true,
                ..
            }
        ),
        "{got:?}"
    );
    let mailed = emails_of_run(&run_id).len();
    assert!(mailed > 0, "the genuine result is mailed");
    let got = central.coordinator.intake(&body, 1).await.expect("again");
    assert!(matches!(got, Intake::Duplicate { .. }), "{got:?}");
    assert_eq!(emails_of_run(&run_id).len(), mailed, "a duplicate mailed");
    central.delete_result(&receipt).await;
}

/// A job delivered twice (the agent's first invocation sent its result,
/// then died before deleting the job) gives two complete results of one
/// account. The second rotated a user the first left alone (here: exempt
/// then, as a user deferred for lack of time would be): its new key must
/// reach its owner as surely as the first's, each zip and password once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_of_a_retried_job_has_its_new_keys_delivered() {
    use keyfleet_testkit::seed::{key, user, UserSpec};
    let s = suffix();
    let (first_user, later_user) = (format!("first-{s}"), format!("later-{s}"));
    let mut member = create_member("attempts").await;
    member.deploy_agent().await;
    member
        .populate(&[
            user(&first_user, vec![key(85, true, Some(2))]),
            UserSpec {
                exempt: true,
                ..user(&later_user, vec![key(85, true, Some(2))])
            },
        ])
        .await;
    // An account that never answers keeps the run open: both results are
    // taken in before any finalize.
    let mut silent = create_member("attempts-silent").await;
    silent.deploy_agent().await;
    let central = Central::new(Setup::default()).await;
    let run_id = central.start_run_on(&[&member.id, &silent.id]).await;

    let (job, first) = member.run_agent(&central.public_key).await;
    // SQS delivers the job again; meanwhile the user is no longer exempt.
    member
        .sqs
        .send_message()
        .queue_url(member.jobs_queue_url.as_deref().expect("queue"))
        .message_body(String::from_utf8(keyfleet_protocol::encode(&job)).expect("utf-8"))
        .send()
        .await
        .expect("SendMessage");
    member
        .iam
        .untag_user()
        .user_name(&later_user)
        .tag_keys("Exempt")
        .send()
        .await
        .expect("UntagUser");
    let (_, second) = member.run_agent(&central.public_key).await;
    assert!(first.started_at < second.started_at, "two attempts");
    let sealed_for =
        |r: &keyfleet_protocol::AccountResult, u: &str| r.sealed.iter().any(|s| s.user_name == u);
    assert!(sealed_for(&first, &first_user) && !sealed_for(&first, &later_user));
    assert!(sealed_for(&second, &later_user));

    // Taken in as they were sent: the first attempt's result first.
    let mut results = central.receive_results().await;
    assert_eq!(results.len(), 2, "one result per attempt");
    let started = |body: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
        v["started_at"].as_str().expect("started_at").to_string()
    };
    results.sort_by_key(|(body, _)| {
        time::OffsetDateTime::parse(
            &started(body),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("time")
    });
    for (body, receipt) in &results {
        let got = central.coordinator.intake(body, 1).await.expect("intake");
        assert!(
            matches!(
                got,
                Intake::Accepted {
                    account_complete: true,
                    ..
                }
            ),
            "{got:?}"
        );
        central.delete_result(receipt).await;
    }
    // Delivered again: nothing sent twice.
    for (body, _) in &results {
        central.coordinator.intake(body, 2).await.expect("again");
    }

    let mails = emails_of_run(&run_id);
    for u in [&first_user, &later_user] {
        let owner = owner_address(u);
        let count = |kind: &str| {
            mails
                .iter()
                .filter(|m| m.to == [owner.clone()] && m.kind == kind)
                .count()
        };
        assert_eq!(
            (count("new_key"), count("password")),
            (1, 1),
            "{u}: one zip and one password"
        );
        let zip = mails
            .iter()
            .find(|m| m.to == [owner.clone()] && m.kind == "new_key")
            .expect("zip");
        let password = mails
            .iter()
            .find(|m| m.to == [owner.clone()] && m.kind == "password")
            .expect("password");
        let (name, bytes) = &zip.attachments[0];
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write zip");
        let out = crate::emails::check_zip(&path, &crate::emails::password_from(&password.text));
        assert!(
            out.status.success(),
            "{u}: the password opens the zip: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
