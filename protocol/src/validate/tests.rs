use super::*;
use crate::parts::{reassemble, split, PartsError};
use crate::tests::{sample_job, sample_result};
use crate::{decode, encode, AccountStatus, ProtocolError};
use proptest::prelude::*;

/// The field a refused result names.
fn refused(r: &AccountResult) -> &'static str {
    match r.validate() {
        Err(e) => e.field,
        Ok(()) => panic!("accepted: {r:?}"),
    }
}

#[test]
fn every_field_of_a_result_is_held_to_the_form_aws_gives_it() {
    let good = sample_result(3);
    good.validate().expect("the sample is valid");
    type Mutation = Box<dyn Fn(&mut AccountResult)>;
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "a user name with a newline",
            Box::new(|r| r.users[0].user_name = "a\nb".into()),
            "users[].user_name",
        ),
        (
            "a user name of 65 characters",
            Box::new(|r| r.users[0].user_name = "u".repeat(65)),
            "users[].user_name",
        ),
        (
            "the same user twice",
            Box::new(|r| r.users[1].user_name = r.users[0].user_name.clone()),
            "users[].user_name",
        ),
        (
            "a path without slashes",
            Box::new(|r| r.users[0].path = "engineering".into()),
            "users[].path",
        ),
        (
            "a path with a space",
            Box::new(|r| r.users[0].path = "/a b/".into()),
            "users[].path",
        ),
        (
            "a key id in lower case",
            Box::new(|r| r.users[0].keys[0].id = "akiaaaaaaaaaaaaaaaaa".into()),
            "users[].keys[].id",
        ),
        (
            "a key id of HTML",
            Box::new(|r| r.users[0].keys[0].id = "<b>AKIA</b>AAAAAAAAAAA".into()),
            "users[].keys[].id",
        ),
        (
            "three keys for one user",
            Box::new(|r| {
                let k = r.users[0].keys[0].clone();
                r.users[0].keys.extend([k.clone(), k]);
            }),
            "users[].keys",
        ),
        (
            "a service of free text",
            Box::new(|r| {
                r.users[0].keys[0].last_used_service = Some("Click here: http://evil".into())
            }),
            "users[].keys[].last_used_service",
        ),
        (
            "a region of free text",
            Box::new(|r| {
                r.users[0].keys[0].last_used_region = Some("us-east-1\nBcc: x@evil.example".into())
            }),
            "users[].keys[].last_used_region",
        ),
        (
            "an action on a bad key id",
            Box::new(|r| {
                r.users[0].actions[0].action = Action::Delete {
                    key_id: "AKIA AAAAAAAAAAAAAAA".into(),
                }
            }),
            "users[].actions[].key_id",
        ),
        (
            "a notice naming a bad service",
            Box::new(|r| {
                r.users[0].actions[0].action = Action::Notify {
                    notice: Notice::StillInUse {
                        key_id: "AKIAAAAAAAAAAAAAAAAA".into(),
                        last_used: None,
                        service: Some("Your account is locked".into()),
                        region: None,
                        replacement: None,
                        used_from: Vec::new(),
                    },
                }
            }),
            "users[].actions[].notice",
        ),
        (
            "a notice naming a bad replacement",
            Box::new(|r| {
                r.users[0].actions[0].action = Action::Notify {
                    notice: Notice::Deactivated {
                        key_id: "AKIAAAAAAAAAAAAAAAAA".into(),
                        replacement: Some("call +1 555".into()),
                    },
                }
            }),
            "users[].actions[].notice",
        ),
        (
            "17 actions for one user",
            Box::new(|r| {
                let a = r.users[0].actions[0].clone();
                r.users[0].actions = vec![a; 17];
            }),
            "users[].actions",
        ),
        (
            "a skip reason of 5000 bytes",
            Box::new(|r| {
                r.users[0].actions[0].result = Outcome::Skipped {
                    reason: "x".repeat(5000),
                }
            }),
            "users[].actions[].result.reason",
        ),
        (
            "an error with a carriage return",
            Box::new(|r| r.users[0].error = Some("a\rb".into())),
            "users[].error",
        ),
        (
            "a note of 5000 bytes",
            Box::new(|r| r.users[0].note = Some("n".repeat(5000))),
            "users[].note",
        ),
        (
            "an email of 300 bytes",
            Box::new(|r| r.users[0].email = Some(format!("{}@example.com", "a".repeat(300)))),
            "users[].email",
        ),
        (
            "an account error with an escape sequence",
            Box::new(|r| r.error = Some("\u{1b}[2J".into())),
            "error",
        ),
        (
            "an alias in upper case",
            Box::new(|r| r.account_alias = Some("Prod".into())),
            "account_alias",
        ),
        (
            "an alias of free text",
            Box::new(|r| r.account_alias = Some("pay now at evil.example".into())),
            "account_alias",
        ),
        (
            "an operation name with a space",
            Box::new(|r| {
                r.api_calls.insert("iam:List Users".into(), 1);
            }),
            "api_calls",
        ),
        (
            "an absurd call count",
            Box::new(|r| {
                r.api_calls.insert("iam:ListUsers".into(), u64::MAX);
            }),
            "api_calls",
        ),
        ("1001 parts", Box::new(|r| r.parts = 1001), "parts"),
        ("part 0", Box::new(|r| r.part = 0), "part"),
        (
            "finished before it started",
            Box::new(|r| r.finished_at = r.started_at - time::Duration::seconds(1)),
            "finished_at",
        ),
        (
            "a sealed credential for a user not in the part",
            Box::new(|r| r.sealed[0].user_name = "stranger".into()),
            "sealed[].user_name",
        ),
        (
            "a sealed credential with a bad key id",
            Box::new(|r| r.sealed[0].access_key_id = "not-a-key".into()),
            "sealed[].access_key_id",
        ),
        (
            "a sealed credential for a bad coordinator key",
            Box::new(|r| r.sealed[0].key_id = "kf/../../x".into()),
            "sealed[].key_id",
        ),
        (
            "a sealed credential of 5000 bytes",
            Box::new(|r| r.sealed[0].ciphertext = "A".repeat(5000)),
            "sealed[].ciphertext",
        ),
        (
            "a key sealed twice",
            Box::new(|r| {
                let s = r.sealed[0].clone();
                r.sealed.push(s);
            }),
            "sealed[].access_key_id",
        ),
        (
            "more sealed keys than users can hold",
            Box::new(|r| {
                r.users.truncate(1);
                let s = r.sealed[0].clone();
                r.sealed = (0..3)
                    .map(|i| {
                        let mut s = s.clone();
                        s.access_key_id = format!("AKIAC{i:015}");
                        s
                    })
                    .collect();
            }),
            "sealed",
        ),
    ];
    // What only informs the report: decoding leaves the value out (or
    // bounds the text) and takes the result, with every sealed key
    // (see crate::degrade). The rest is refused whole, naming the field.
    let informational = |what: &str, field: &str| {
        what == "a notice naming a bad service"
            || [
                "users[].path",
                "users[].keys[].last_used_service",
                "users[].keys[].last_used_region",
                "users[].email",
                "users[].error",
                "users[].note",
                "users[].actions[].result.reason",
                "error",
                "account_alias",
                "api_calls",
            ]
            .contains(&field)
    };
    for (what, mutate, field) in cases {
        let mut r = good.clone();
        mutate(&mut r);
        assert_eq!(refused(&r), field, "{what}");
        match decode::<AccountResult>(&encode(&r)) {
            Ok(taken) if informational(what, field) => {
                assert_eq!(taken.sealed, r.sealed, "{what}");
                taken.validate().expect(what);
            }
            Err(ProtocolError::Invalid(e)) if !informational(what, field) => {
                assert_eq!(e.field, field, "{what}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn a_refusal_never_echoes_more_than_80_characters_of_the_value() {
    let mut r = sample_result(1);
    r.users[0].keys[0].last_used_service = Some(format!("{}\n{}", "s".repeat(500), "secret"));
    let e = r.validate().unwrap_err();
    assert!(e.reason.len() < 200, "{e}");
    assert!(!e.reason.contains('\n'), "{e}");
}

#[test]
fn aws_forms_accept_what_aws_gives() {
    for r in [
        "us-east-1",
        "us-gov-west-1",
        "cn-north-1",
        "eu-central-2",
        "ap-southeast-5",
        "il-central-1",
    ] {
        assert!(is_region(r), "{r}");
    }
    for r in [
        "",
        "us-east",
        "US-EAST-1",
        "us-east-1a",
        "us--1",
        "us-east-123",
        "us-east-1\n",
    ] {
        assert!(!is_region(r), "{r:?}");
    }
    for s in [
        "s3",
        "sts",
        "iam",
        "execute-api",
        "cognito-idp",
        "s3express",
    ] {
        assert!(is_service_name(s), "{s}");
    }
    for s in ["", "S3", "3s", "s3 ", "amazon s3", "s3\n"] {
        assert!(!is_service_name(s), "{s:?}");
    }
    for a in ["prod", "acme-prod-1", "a1b"] {
        assert!(is_account_alias(a), "{a}");
    }
    for a in ["ab", "-prod", "prod-", "pr--od", "Prod", "prod.example"] {
        assert!(!is_account_alias(a), "{a}");
    }
    for p in ["/", "/engineering/", "/a/b-c_d/"] {
        assert!(is_iam_path(p), "{p}");
    }
    for p in ["", "a/", "/a", "/a b/", "/ä/"] {
        assert!(!is_iam_path(p), "{p}");
    }
    assert!(is_secret_access_key(
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    ));
    assert!(!is_secret_access_key(
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE"
    ));
    assert!(!is_secret_access_key(
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE\n"
    ));
}

#[test]
fn bounded_texts_make_an_agents_own_errors_valid() {
    let mut r = sample_result(2);
    r.error = Some(format!("{}\r\u{1b}", "é".repeat(3000)));
    r.users[0].actions[0].result = Outcome::Failed {
        error: "x".repeat(10_000),
    };
    assert!(r.validate().is_err());
    r.bound_texts();
    r.validate().expect("valid once bounded");
    assert!(r.error.as_deref().unwrap().len() <= MAX_TEXT);
}

proptest! {
    #[test]
    fn bound_text_always_gives_bounded_text(s in "\\PC{0,100}|[\\x00-\\x1f]{0,50}", n in 0usize..3000) {
        let long = s.repeat(n / 10 + 1);
        prop_assert!(is_bounded_text(&bound_text(&long)));
    }
}

#[test]
fn a_job_whose_deadline_is_before_its_issue_is_refused() {
    let mut j = sample_job();
    j.deadline = j.issued_at - time::Duration::seconds(1);
    assert_eq!(j.validate().unwrap_err().field, "deadline");
}

#[test]
fn a_message_longer_than_sqs_carries_is_refused_before_parsing() {
    let body = vec![b' '; MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        decode::<AccountResult>(&body),
        Err(ProtocolError::TooLarge(MAX_MESSAGE_BYTES + 1))
    );
    assert_eq!(
        decode::<Job>(&body),
        Err(ProtocolError::TooLarge(MAX_MESSAGE_BYTES + 1))
    );
}

#[test]
fn parts_that_do_not_add_up_are_refused() {
    let r = sample_result(400);
    let parts = split(r, 20_000).unwrap();
    assert!(parts.len() > 2);
    // One user sent in two parts.
    let mut twice = parts.clone();
    let u = twice[0].users[0].clone();
    twice[1].users.push(u.clone());
    assert_eq!(
        reassemble(twice).unwrap_err(),
        PartsError::DuplicateUser(u.user_name)
    );
    // Parts that disagree on the account's status.
    let mut status = parts.clone();
    status[1].status = AccountStatus::Failed;
    assert_eq!(
        reassemble(status).unwrap_err(),
        PartsError::Inconsistent("status")
    );
    // The same part twice with different content.
    let mut conflict = parts.clone();
    let mut other = conflict[0].clone();
    other.users.pop();
    conflict.push(other);
    assert_eq!(reassemble(conflict).unwrap_err(), PartsError::Conflict(1));
    // A part number beyond the count the others announce.
    let mut count = parts.clone();
    count[0].parts += 1;
    assert_eq!(
        reassemble(count).unwrap_err(),
        PartsError::Inconsistent("parts")
    );
}

proptest! {
    /// Both decoders over arbitrary bytes: an error, never a panic.
    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode::<Job>(&bytes);
        let _ = decode::<AccountResult>(&bytes);
    }

    /// Valid messages with one byte changed, cut short or with bytes
    /// spliced in: an error naming what is wrong, or a message that is
    /// itself valid. Never a panic.
    #[test]
    fn decoders_never_panic_on_damaged_messages(
        which in 0usize..2,
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        how in 0usize..3,
    ) {
        let mut body = if which == 0 { encode(&sample_job()) } else { encode(&sample_result(3)) };
        let i = at.index(body.len());
        match how {
            0 => body[i] = byte,
            1 => body.truncate(i),
            _ => body.insert(i, byte),
        }
        if let Ok(j) = decode::<Job>(&body) {
            prop_assert!(j.validate().is_ok());
        }
        if let Ok(r) = decode::<AccountResult>(&body) {
            prop_assert!(r.validate().is_ok());
        }
    }
}
