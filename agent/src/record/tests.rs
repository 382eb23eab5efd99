use super::*;

#[test]
fn every_iam_user_name_maps_to_a_valid_distinct_secret_name() {
    let sm_ok = |n: &str| {
        n.len() <= 512
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
    };
    let names = [
        "alice",
        "a,b",
        "a,,b",
        "a.b@c",
        "x+y=z",
        "_-",
        ",",
        &"w".repeat(64),
        &",".repeat(64),
    ];
    let mut seen = std::collections::HashSet::new();
    for n in names {
        assert!(keyfleet_protocol::is_user_name(n), "{n}");
        let s = secret_name(n);
        assert!(sm_ok(&s), "{n} -> {s}");
        assert!(seen.insert(s.clone()), "collision at {s}");
    }
    assert_eq!(secret_name("a,b"), "keyfleet/a/b");
    assert_eq!(secret_name("alice"), "keyfleet/alice");
}

#[test]
fn resource_policy_lets_only_the_agent_write_and_only_owner_and_agent_read() {
    let p = resource_policy("111122223333", "arn:aws:iam::111122223333:user/bob");
    let st = p["Statement"].as_array().unwrap();
    let writes = st.iter().find(|s| s["Sid"] == "OnlyAgentWrites").unwrap();
    assert_eq!(writes["Effect"], "Deny");
    assert_eq!(writes["Principal"], "*");
    let actions: Vec<&str> = writes["Action"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for a in [
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecret",
        "secretsmanager:DeleteSecret",
        "secretsmanager:PutResourcePolicy",
        "secretsmanager:DeleteResourcePolicy",
    ] {
        assert!(actions.contains(&a), "{a} not denied to others");
    }
    assert_eq!(
        writes["Condition"]["StringNotLike"]["aws:PrincipalArn"],
        "arn:aws:iam::111122223333:role/keyfleet-agent*"
    );
    let reads = st
        .iter()
        .find(|s| s["Sid"] == "OnlyOwnerAndAgentRead")
        .unwrap();
    assert_eq!(reads["Effect"], "Deny");
    assert_eq!(reads["Action"], "secretsmanager:GetSecretValue");
    assert_eq!(
        reads["Condition"]["StringNotLike"]["aws:PrincipalArn"],
        serde_json::json!([
            "arn:aws:iam::111122223333:user/bob",
            "arn:aws:iam::111122223333:role/keyfleet-agent*"
        ])
    );
    // No statement allows anyone but the owner anything.
    for s in st.iter().filter(|s| s["Effect"] == "Allow") {
        assert_eq!(s["Principal"]["AWS"], "arn:aws:iam::111122223333:user/bob");
    }
}

/// A forged record can hold any time and any age: none overflows, and
/// none is later than now (a future one counts as now).
#[test]
fn extreme_record_times_are_clamped_to_now_and_never_overflow() {
    let now = time::macros::datetime!(2030-06-01 12:00 UTC);
    let key = KeyState {
        id: "AKIAK".into(),
        status: keyfleet_protocol::KeyStatus::Active,
        created: now - time::Duration::days(95),
        last_used: None,
        last_used_service: None,
        last_used_region: None,
    };
    let year_9999 = time::macros::datetime!(9999-12-31 23:59:59 UTC);
    let to_9999 = (year_9999 - key.created).whole_seconds();
    for (age_secs, want) in [
        (to_9999, now),
        (i64::MAX, now),
        (i64::MIN, PrimitiveDateTime::MIN.assume_utc()),
        (-1, key.created - time::Duration::seconds(1)),
        (3600, key.created + time::Duration::hours(1)),
    ] {
        let r = UserRecord {
            reactivated: vec![KeyEvent {
                key_id: "AKIAK".into(),
                at: year_9999,
                age_secs,
                run_id: None,
                notice: None,
            }],
            ..UserRecord::new("111122223333", "bob")
        };
        assert_eq!(
            r.reactivations(std::slice::from_ref(&key), now, "run"),
            vec![("AKIAK".to_string(), want)],
            "{age_secs}"
        );
    }
    // Written back as now, they stay where they are on later runs.
    let mut r = UserRecord {
        reactivated: vec![KeyEvent {
            key_id: "AKIAK".into(),
            at: year_9999,
            age_secs: i64::MAX,
            run_id: None,
            notice: None,
        }],
        ..UserRecord::new("111122223333", "bob")
    };
    assert!(r.clamp_to(std::slice::from_ref(&key), now));
    assert!(!r.clamp_to(std::slice::from_ref(&key), now));
    let later = now + time::Duration::days(30);
    assert_eq!(
        r.reactivations(std::slice::from_ref(&key), later, "run"),
        vec![("AKIAK".to_string(), now)]
    );
    // An intent at the earliest date the record's format can carry.
    let intent: Intent =
        serde_json::from_str(r#"{"run_id":"x","at":"0000-01-01T00:00:00+23:59","before":[]}"#)
            .unwrap();
    assert!(!intent.created_under(&KeyState {
        last_used: Some(now),
        ..key.clone()
    }));
    assert!(intent.created_under(&key));
}

#[test]
fn version_one_records_without_intent_read_and_deactivations_stay_bounded() {
    let old = r#"{"v":1,"account_id":"111122223333","user_name":"bob","current":{"access_key_id":"AKIAOLD","created":"2026-01-01T00:00:00Z"},"history":[],"sealed":null,"deactivated":[{"key_id":"AKIAOLD","at":"2026-01-02T00:00:00Z","age_secs":86400}]}"#;
    let mut r: UserRecord = serde_json::from_str(old).unwrap();
    assert_eq!(r.intent, None);
    // Entries written before runs were recorded belong to no run.
    assert_eq!(r.deactivated[0].run_id, None);
    assert!(!r.touched_by("run-1"));
    let off = KeyState {
        id: "AKIAOLD".into(),
        status: keyfleet_protocol::KeyStatus::Inactive,
        created: time::macros::datetime!(2026-01-01 00:00 UTC),
        last_used: None,
        last_used_service: None,
        last_used_region: None,
    };
    assert!(r.earlier_attempt("run-1", &[off]).done.is_empty());
    let key = |i: usize| KeyState {
        id: format!("AKIA{i}"),
        status: keyfleet_protocol::KeyStatus::Inactive,
        created: OffsetDateTime::UNIX_EPOCH,
        last_used: None,
        last_used_service: None,
        last_used_region: None,
    };
    for i in 0..20 {
        r.record_deactivation(
            &key(i),
            OffsetDateTime::UNIX_EPOCH + time::Duration::days(3),
            RunMark {
                run_id: "run-1",
                notice: None,
            },
        );
    }
    // The time is anchored to the key's creation (emulator clock).
    let mut aged = key(19);
    aged.created -= time::Duration::days(10);
    assert_eq!(
        r.deactivations(&[aged.clone()], OffsetDateTime::now_utc(), "run-2"),
        vec![("AKIA19".to_string(), aged.created + time::Duration::days(3))]
    );
    assert_eq!(r.deactivated.len(), MAX_DEACTIVATIONS);
    assert_eq!(r.deactivated[0].key_id, "AKIA19");
}
