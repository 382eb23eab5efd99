use crate::plan::{Action, ActionRecord, Notice, Outcome};
use crate::tests::sample_result;
use crate::{decode, encode, AccountResult, ProtocolError};
use proptest::prelude::*;

/// A result with a still-in-use notice, so every informational field has a
/// place to go wrong.
fn result() -> AccountResult {
    let mut r = sample_result(3);
    r.users[1].actions.push(ActionRecord {
        action: Action::Notify {
            notice: Notice::StillInUse {
                key_id: "AKIAAAAAAAAAAAAAAAAA".into(),
                last_used: None,
                service: Some("s3".into()),
                region: Some("eu-west-1".into()),
                replacement: None,
                used_from: vec![site()],
            },
        },
        result: Outcome::Done { key_id: None },
    });
    r.users[1].keys[0].last_used_service = Some("sts".into());
    r.users[1].keys[0].last_used_region = Some("us-east-1".into());
    r
}

/// The informational fields of [`result`], each set to `value`.
const FIELDS: [&str; 12] = [
    "users[1].keys[0].last_used_service",
    "users[1].keys[0].last_used_region",
    "users[1].actions[1].notice.service",
    "users[1].actions[1].notice.region",
    "users[1].path",
    "users[1].email",
    "account_alias",
    "api_calls key",
    "users[1].actions[1].notice.used_from.source_ip",
    "users[1].actions[1].notice.used_from.user_agent",
    "users[1].actions[1].notice.used_from.service",
    "users[1].actions[1].notice.used_from.region",
];

/// A place of use that keeps its rule.
fn site() -> crate::plan::UseSite {
    crate::plan::UseSite {
        source_ip: "203.0.113.5".into(),
        user_agent: "aws-cli/2.15.0 Python/3.11".into(),
        service: "s3".into(),
        region: "eu-west-1".into(),
        last_seen: time::macros::datetime!(2026-12-01 10:00 UTC),
        calls: 3,
    }
}

fn set(r: &mut AccountResult, field: &str, value: &str) {
    let u = &mut r.users[1];
    match field {
        "users[1].keys[0].last_used_service" => u.keys[0].last_used_service = Some(value.into()),
        "users[1].keys[0].last_used_region" => u.keys[0].last_used_region = Some(value.into()),
        "users[1].actions[1].notice.service" | "users[1].actions[1].notice.region" => {
            let Action::Notify {
                notice:
                    Notice::StillInUse {
                        service, region, ..
                    },
            } = &mut u.actions[1].action
            else {
                unreachable!("the sample's second action is the notice")
            };
            if field.ends_with("service") {
                *service = Some(value.into());
            } else {
                *region = Some(value.into());
            }
        }
        "users[1].path" => u.path = value.into(),
        "users[1].email" => u.email = Some(value.into()),
        "account_alias" => r.account_alias = Some(value.into()),
        "api_calls key" => {
            r.api_calls.insert(value.into(), 1);
        }
        f if f.contains(".used_from.") => {
            let Action::Notify {
                notice: Notice::StillInUse { used_from, .. },
            } = &mut u.actions[1].action
            else {
                unreachable!("the sample's second action is the notice")
            };
            let mut s = site();
            match f.rsplit('.').next() {
                Some("source_ip") => s.source_ip = value.into(),
                Some("user_agent") => s.user_agent = value.into(),
                Some("service") => s.service = value.into(),
                _ => s.region = value.into(),
            }
            used_from.push(s);
        }
        other => unreachable!("{other}"),
    }
}

#[test]
fn an_unexpected_last_used_service_is_left_out_with_a_note_not_the_result() {
    // AWS writes its own values in this column (moto: `not_supported`).
    let mut r = result();
    r.users[1].keys[0].last_used_service = Some("Not Supported".into());
    r.users[1].keys[0].last_used_region = Some("aws-global".into());
    let sealed = r.sealed.clone();
    let got: AccountResult = decode(&encode(&r)).expect("the result is taken");
    assert_eq!(got.sealed, sealed, "every new key is still there");
    let key = &got.users[1].keys[0];
    assert_eq!(
        (&key.last_used_service, &key.last_used_region),
        (&None, &None)
    );
    let note = got.users[1].note.as_deref().unwrap_or_default();
    assert!(
        note.contains("last-used service `Not Supported` of key AKIAAAAAAAAAAAAAAAAA is not an AWS service name")
            && note.contains("last-used region `aws-global`"),
        "{note}"
    );
    assert!(got.users[0].note.is_none() && got.users[2].note.is_none());
}

#[test]
fn what_makes_a_result_usable_is_still_refused_whole() {
    for breaks in [
        |r: &mut AccountResult| r.users[1].user_name = "no spaces".into(),
        |r: &mut AccountResult| r.users[1].keys[0].id = "not-a-key".into(),
        |r: &mut AccountResult| r.account_id = "12".into(),
        |r: &mut AccountResult| r.sealed[0].access_key_id = "x".into(),
    ] {
        let mut r = result();
        breaks(&mut r);
        assert!(matches!(
            decode::<AccountResult>(&encode(&r)),
            Err(ProtocolError::Invalid(_))
        ));
    }
}

#[test]
fn a_degraded_result_passes_the_validator_and_degrading_again_changes_nothing() {
    let mut r = result();
    for (i, field) in FIELDS.iter().enumerate() {
        set(&mut r, field, &format!("bad value\u{1}{i}"));
    }
    assert_eq!(r.degrade(), FIELDS.len());
    crate::Validate::validate(&r).expect("valid once degraded");
    let again = r.clone();
    assert_eq!(r.degrade(), 0);
    assert_eq!(r, again);
    assert_eq!(r.users[1].path, "/");
}

proptest! {
    /// Any one informational field set to arbitrary text (arbitrary bytes,
    /// read as UTF-8 lossily): the result is still taken, with every sealed
    /// key it carries.
    #[test]
    fn any_informational_field_with_any_text_still_delivers_every_sealed_key(
        field in 0..FIELDS.len(),
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut r = result();
        let sealed = r.sealed.clone();
        set(&mut r, FIELDS[field], &String::from_utf8_lossy(&bytes));
        let got = decode::<AccountResult>(&encode(&r));
        prop_assert!(got.is_ok(), "{}: {:?}", FIELDS[field], got.err());
        prop_assert_eq!(got.unwrap().sealed, sealed);
    }
}

#[test]
fn a_rejection_text_is_one_bounded_line() {
    // An unknown field whose name is attacker-chosen: a newline and 10 KB.
    let mut v = serde_json::to_value(sample_result(1)).unwrap();
    let name = format!("evil\nSubject: forged{}", "x".repeat(10_240));
    v[name.as_str()] = serde_json::json!(1);
    let e = decode::<AccountResult>(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    let text = e.to_string();
    assert!(!text.contains('\n') && !text.contains('\r'), "{text:?}");
    assert!(text.len() <= 512, "{} bytes: {}", text.len(), &text[..200]);
    assert!(
        text.contains("evil\\nSubject"),
        "the name is shown, escaped: {text}"
    );
    // An unknown version of any size.
    let mut v = serde_json::to_value(sample_result(1)).unwrap();
    v["v"] = serde_json::json!(format!("2\n{}", "9".repeat(10_240)));
    let text = decode::<AccountResult>(&serde_json::to_vec(&v).unwrap())
        .unwrap_err()
        .to_string();
    assert!(!text.contains('\n') && text.len() <= 512, "{text:?}");
    // An unknown variant.
    let mut v = serde_json::to_value(sample_result(1)).unwrap();
    v["status"] = serde_json::json!(format!("ok\r\n{}", "y".repeat(10_240)));
    let text = decode::<AccountResult>(&serde_json::to_vec(&v).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        !text.contains('\n') && !text.contains('\r') && text.len() <= 512,
        "{text:?}"
    );
}

/// The places of use of the sample's still-in-use notice.
fn places(r: &AccountResult) -> &Vec<crate::plan::UseSite> {
    let Action::Notify {
        notice: Notice::StillInUse { used_from, .. },
    } = &r.users[1].actions[1].action
    else {
        unreachable!("the sample's second action is the notice")
    };
    used_from
}

#[test]
fn a_place_of_use_that_breaks_its_rule_is_left_out_and_the_others_stay() {
    let mut r = result();
    set(
        &mut r,
        "users[1].actions[1].notice.used_from.user_agent",
        "evil\nSubject: forged",
    );
    let got: AccountResult = decode(&encode(&r)).expect("the result is taken");
    let used_from = places(&got);
    assert_eq!(used_from, &vec![site()], "the good place stays");
    let note = got.users[1].note.as_deref().unwrap_or_default();
    assert!(
        note.contains("a place of use of the notice: user agent"),
        "{note}"
    );
    assert!(!note.contains('\n'), "{note}");
    // More than ten places: the first ten stay.
    let mut r = result();
    for _ in 0..15 {
        set(
            &mut r,
            "users[1].actions[1].notice.used_from.region",
            "us-east-1",
        );
    }
    let got: AccountResult = decode(&encode(&r)).expect("the result is taken");
    let used_from = places(&got);
    assert_eq!(used_from.len(), crate::plan::MAX_USE_SITES);
}
