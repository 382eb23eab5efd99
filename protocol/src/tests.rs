//! Message decoding, validation, and part splitting.

use super::*;
use crate::parts::{reassemble, split, PartsError};
use proptest::prelude::*;
use time::macros::datetime;

pub(crate) fn sample_job() -> Job {
    Job {
        v: VERSION,
        run_id: "2026-11-22T13-00-00Z-ab12".into(),
        account_id: "111122223333".into(),
        token: Token("0123456789abcdef0123456789abcdef".into()),
        issued_at: datetime!(2026-11-22 13:00 UTC),
        deadline: datetime!(2026-11-22 15:00 UTC),
        policy: Policy::default(),
        dry_run: false,
        as_of: None,
        mode: JobMode::Scheduled,
        results_queue_url: "https://sqs.us-east-1.amazonaws.com/999988887777/keyfleet-results"
            .into(),
        undelivered: Vec::new(),
    }
}

fn user(name: &str, pad: usize) -> UserReport {
    UserReport {
        path: "/engineering/ci/".into(),
        email: Some(format!("{name}@example.com{}", "x".repeat(pad))),
        keys: vec![KeyState {
            id: "AKIAAAAAAAAAAAAAAAAA".into(),
            status: KeyStatus::Active,
            created: datetime!(2026-08-01 00:00 UTC),
            last_used: None,
            last_used_service: None,
            last_used_region: None,
        }],
        actions: vec![ActionRecord {
            action: Action::CreateKey,
            result: Outcome::Done {
                key_id: Some("AKIABBBBBBBBBBBBBBBB".into()),
            },
        }],
        ..UserReport::new(name, Verdict::Rotated)
    }
}

pub(crate) fn sample_result(n_users: usize) -> AccountResult {
    AccountResult {
        v: VERSION,
        run_id: "run-1".into(),
        account_id: "111122223333".into(),
        token: Token("0123456789abcdef0123456789abcdef".into()),
        part: 1,
        parts: 1,
        account_alias: Some("prod".into()),
        status: AccountStatus::Ok,
        error: None,
        dry_run: false,
        as_of: datetime!(2026-11-22 13:00 UTC),
        started_at: datetime!(2026-11-22 13:00 UTC),
        finished_at: datetime!(2026-11-22 13:01 UTC),
        scan_mode: ScanMode::CredentialReport,
        api_calls: [("iam:GetCredentialReport".to_string(), 1)].into(),
        users: (0..n_users)
            .map(|i| user(&format!("user{i}"), i % 7))
            .collect(),
        sealed: (0..n_users)
            .step_by(3)
            .map(|i| SealedCredential {
                user_name: format!("user{i}"),
                access_key_id: format!("AKIAB{i:015}"),
                key_id: "kf-0011223344556677".into(),
                enc: "ZW5j".into(),
                ciphertext: "Y3Q=".repeat(40),
            })
            .collect(),
    }
}

#[test]
fn job_round_trips() {
    let job = sample_job();
    let back: Job = decode(&encode(&job)).unwrap();
    assert_eq!(back, job);
    let v: serde_json::Value = serde_json::from_slice(&encode(&job)).unwrap();
    assert_eq!(v["v"], 1);
    assert_eq!(v["policy"]["rotate_after"], "80d");
}

/// A job exactly as coordinators before the deliverability rule, the
/// immediate-enforcement switch and `mode.key_id` sent it. Agents must keep
/// accepting it, and a job that uses none of the new settings must encode
/// to this same shape so that agents not yet updated accept it too.
const JOB_OF_TODAYS_SHAPE: &str = r#"{"v":1,"run_id":"2026-11-22T13-00-00Z-ab12","account_id":"111122223333","token":"0123456789abcdef0123456789abcdef","issued_at":"2026-11-22T13:00:00Z","deadline":"2026-11-22T15:00:00Z","policy":{"rotate_after":"80d","deactivate_after":"90d","delete_after":"100d","unused_delete_after":"90d","max_key_age":"120d","exempt_tag":{"key":"Exempt","value":"True"},"email_tag":"Email","delivery":"email","cleanup":false},"dry_run":false,"as_of":null,"mode":{"kind":"scheduled"},"results_queue_url":"https://sqs.us-east-1.amazonaws.com/999988887777/keyfleet-results"}"#;

#[test]
fn job_of_todays_shape_decodes_and_defaults_encode_to_it() {
    let job: Job = decode(JOB_OF_TODAYS_SHAPE.as_bytes()).unwrap();
    assert_eq!(job, sample_job());
    assert_eq!(
        String::from_utf8(encode(&sample_job())).unwrap(),
        JOB_OF_TODAYS_SHAPE
    );
    let rotate = Job {
        mode: JobMode::Rotate {
            user: "alice".into(),
            deactivate_old: false,
            key_id: None,
        },
        ..sample_job()
    };
    let json = String::from_utf8(encode(&rotate)).unwrap();
    assert!(
        json.contains(r#""mode":{"kind":"rotate","user":"alice","deactivate_old":false}"#),
        "{json}"
    );
}

#[test]
fn unknown_fields_are_rejected_in_job_policy_mode_and_result() {
    let with = |path: &[&str]| {
        let mut v: serde_json::Value = serde_json::from_str(JOB_OF_TODAYS_SHAPE).unwrap();
        // serde ignores extra fields next to a unit variant's tag, so the
        // mode is an emergency rotation (a struct variant) here.
        v["mode"] = serde_json::json!({"kind": "rotate", "user": "alice"});
        let mut at = &mut v;
        for p in path {
            at = &mut at[*p];
        }
        at["surprise"] = serde_json::json!(1);
        serde_json::to_vec(&v).unwrap()
    };
    for path in [&[][..], &["policy"][..], &["mode"][..]] {
        match decode::<Job>(&with(path)) {
            Err(ProtocolError::Field { reason, .. }) => {
                assert!(reason.contains("surprise"), "{path:?}: {reason}")
            }
            other => panic!("{path:?}: {other:?}"),
        }
    }
    let mut r = serde_json::to_value(sample_result(1)).unwrap();
    r["surprise"] = serde_json::json!(1);
    assert!(matches!(
        decode::<AccountResult>(&serde_json::to_vec(&r).unwrap()),
        Err(ProtocolError::Field { .. })
    ));
}

#[test]
fn rotate_key_id_must_look_like_an_access_key_id() {
    let mut job = sample_job();
    job.mode = JobMode::Rotate {
        user: "alice".into(),
        deactivate_old: false,
        key_id: Some("not-a-key".into()),
    };
    let e = decode::<Job>(&encode(&job)).unwrap_err();
    assert!(e.to_string().contains("mode.key_id"), "{e}");
    job.mode = JobMode::Rotate {
        user: "alice".into(),
        deactivate_old: false,
        key_id: Some("AKIAIOSFODNN7EXAMPLE".into()),
    };
    decode::<Job>(&encode(&job)).unwrap();
}

#[test]
fn unknown_version_is_rejected_as_such() {
    let mut v: serde_json::Value = serde_json::from_slice(&encode(&sample_job())).unwrap();
    v["v"] = 2.into();
    let err = decode::<Job>(v.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::UnsupportedVersion {
            found: "2".into(),
            supported: 1
        }
    );
    v.as_object_mut().unwrap().remove("v");
    assert_eq!(
        decode::<Job>(v.to_string().as_bytes()).unwrap_err(),
        ProtocolError::MissingVersion
    );
}

#[test]
fn missing_field_is_named() {
    let mut v: serde_json::Value = serde_json::from_slice(&encode(&sample_job())).unwrap();
    v.as_object_mut().unwrap().remove("run_id");
    match decode::<Job>(v.to_string().as_bytes()).unwrap_err() {
        ProtocolError::Field { field, .. } => assert_eq!(field, "run_id"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn wrong_type_is_named_with_its_path() {
    let mut v: serde_json::Value = serde_json::from_slice(&encode(&sample_job())).unwrap();
    v["policy"]["rotate_after"] = 80.into();
    match decode::<Job>(v.to_string().as_bytes()).unwrap_err() {
        ProtocolError::Field { field, .. } => assert_eq!(field, "policy.rotate_after"),
        other => panic!("unexpected {other:?}"),
    }
    let mut v: serde_json::Value = serde_json::from_slice(&encode(&sample_job())).unwrap();
    v["policy"]["delete_after"] = "ten days".into();
    match decode::<Job>(v.to_string().as_bytes()).unwrap_err() {
        ProtocolError::Field { field, reason } => {
            assert_eq!(field, "policy.delete_after");
            assert!(reason.contains("ten days"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn semantic_errors_are_named() {
    let mut job = sample_job();
    job.account_id = "1234".into();
    assert_eq!(
        decode::<Job>(&encode(&job)).unwrap_err(),
        ProtocolError::Invalid(ValidationError {
            field: "account_id",
            reason: "must be 12 digits".into()
        })
    );
    let mut job = sample_job();
    job.as_of = Some(datetime!(2027-01-01 00:00 UTC));
    assert!(matches!(
        decode::<Job>(&encode(&job)).unwrap_err(),
        ProtocolError::Invalid(ValidationError { field: "as_of", .. })
    ));
    let mut job = sample_job();
    job.policy.delete_after = Duration::from_days(1);
    assert!(matches!(
        decode::<Job>(&encode(&job)).unwrap_err(),
        ProtocolError::Invalid(ValidationError {
            field: "policy",
            ..
        })
    ));
    let mut r = sample_result(1);
    r.part = 3;
    r.parts = 2;
    assert!(matches!(
        decode::<AccountResult>(&encode(&r)).unwrap_err(),
        ProtocolError::Invalid(ValidationError { field: "part", .. })
    ));
}

#[test]
fn garbage_is_rejected_without_panic() {
    assert!(matches!(
        decode::<Job>(b"not json"),
        Err(ProtocolError::NotJson(_))
    ));
    assert_eq!(decode::<Job>(b"[1,2]"), Err(ProtocolError::NotObject));
    assert!(matches!(
        decode::<Job>(br#"{"v":"1"}"#),
        Err(ProtocolError::UnsupportedVersion { .. })
    ));
    assert!(matches!(
        decode::<Job>(br#"{"v":1,"extra":true}"#),
        Err(ProtocolError::Field { .. })
    ));
}

#[test]
fn token_debug_is_redacted_and_hash_matches() {
    let t = Token::generate();
    assert_eq!(t.0.len(), 32);
    assert!(!format!("{t:?}").contains(&t.0));
    assert!(t.matches_hash(&t.sha256()));
    assert!(!Token::generate().matches_hash(&t.sha256()));
}

#[test]
fn small_result_is_one_part() {
    let parts = split(sample_result(3), parts::DEFAULT_MAX_PART_BYTES).unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!((parts[0].part, parts[0].parts), (1, 1));
}

#[test]
fn large_result_splits_under_limit_and_reassembles() {
    let r = sample_result(3000);
    let parts = split(r.clone(), parts::DEFAULT_MAX_PART_BYTES).unwrap();
    assert!(parts.len() > 1, "3000 users must need several parts");
    for p in &parts {
        assert!(encode(p).len() <= parts::DEFAULT_MAX_PART_BYTES);
        for s in &p.sealed {
            assert!(p.users.iter().any(|u| u.user_name == s.user_name));
        }
    }
    let mut shuffled = parts.clone();
    shuffled.reverse();
    shuffled.push(parts[0].clone()); // duplicate delivery
    assert_eq!(reassemble(shuffled).unwrap(), r);
    let missing: Vec<_> = parts.iter().skip(1).cloned().collect();
    assert_eq!(
        reassemble(missing).unwrap_err(),
        PartsError::Missing {
            part: 1,
            parts: parts.len() as u32
        }
    );
}

proptest! {
    #[test]
    fn split_then_reassemble_is_identity(n in 0usize..400, limit in 4_000usize..60_000) {
        let r = sample_result(n);
        let parts = split(r.clone(), limit).unwrap();
        for p in &parts {
            prop_assert!(encode(p).len() <= limit);
        }
        prop_assert_eq!(reassemble(parts).unwrap(), r);
    }

    #[test]
    fn arbitrary_json_never_panics(s in "\\PC{0,200}") {
        let _ = decode::<Job>(s.as_bytes());
        let _ = decode::<AccountResult>(s.as_bytes());
    }
}

/// A result exactly as agents before `mfa_active` and `password_enabled`
/// sent it. Coordinators must keep accepting it (agents update account by
/// account through the StackSet), and a result whose users' credential
/// state is unknown must encode to this same shape, so that coordinators
/// not yet updated read it too.
const RESULT_OF_TODAYS_SHAPE: &str = r#"{"v":1,"run_id":"run-1","account_id":"111122223333","token":"0123456789abcdef0123456789abcdef","part":1,"parts":1,"account_alias":"prod","status":"ok","dry_run":false,"as_of":"2026-11-22T13:00:00Z","started_at":"2026-11-22T13:00:00Z","finished_at":"2026-11-22T13:01:00Z","scan_mode":"credential_report","api_calls":{"iam:GetCredentialReport":1},"users":[{"user_name":"user0","path":"/engineering/ci/","email":"user0@example.com","verdict":"rotated","keys":[{"id":"AKIAAAAAAAAAAAAAAAAA","status":"Active","created":"2026-08-01T00:00:00Z","last_used":null}],"actions":[{"action":"create_key","result":{"outcome":"done","key_id":"AKIABBBBBBBBBBBBBBBB"}}]}],"sealed":[]}"#;

#[test]
fn result_from_an_agent_without_credential_state_still_decodes() {
    let mut expected = sample_result(1);
    expected.sealed.clear();
    let old: AccountResult = decode(RESULT_OF_TODAYS_SHAPE.as_bytes()).unwrap();
    assert_eq!(old, expected);
    assert_eq!(
        (old.users[0].mfa_active, old.users[0].password_enabled),
        (None, None),
        "unknown, not false"
    );
    assert_eq!(
        String::from_utf8(encode(&expected)).unwrap(),
        RESULT_OF_TODAYS_SHAPE,
        "unknown credential state is left out of the message"
    );

    // A new agent's result carries both, and they read back as sent.
    let mut new = expected.clone();
    new.users[0].mfa_active = Some(false);
    new.users[0].password_enabled = Some(true);
    let json = String::from_utf8(encode(&new)).unwrap();
    assert!(
        json.contains(r#""mfa_active":false,"password_enabled":true"#),
        "{json}"
    );
    assert_eq!(decode::<AccountResult>(json.as_bytes()).unwrap(), new);
}
