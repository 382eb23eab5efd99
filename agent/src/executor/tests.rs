use super::*;
use keyfleet_protocol::Notice;

fn deactivated(key_id: &str, replacement: Option<&str>) -> Notice {
    Notice::Deactivated {
        key_id: key_id.into(),
        replacement: replacement.map(str::to_string),
    }
}

fn replayed(action: Action, key_id: Option<&str>) -> Step {
    Step::Replay(ActionRecord {
        action,
        result: Outcome::Done {
            key_id: key_id.map(str::to_string),
        },
    })
}

#[test]
fn without_an_earlier_attempt_every_action_is_applied() {
    let plan = vec![
        Action::CreateKey,
        Action::Deactivate { key_id: "K".into() },
        Action::Notify {
            notice: deactivated("K", None),
        },
    ];
    let steps = resume(plan.clone(), &[], None);
    assert_eq!(steps, plan.into_iter().map(Step::Apply).collect::<Vec<_>>());
}

/// What the earlier attempt did is replayed where the plan has it, with
/// the notice it recorded instead of the one planned now; the rest is
/// applied; what the plan no longer holds is still reported.
#[test]
fn a_retry_replays_what_its_first_attempt_did_with_the_recorded_notice() {
    let deactivate = Action::Deactivate { key_id: "K".into() };
    let delete = Action::Delete { key_id: "J".into() };
    let plan = vec![
        Action::CreateKey,
        deactivate.clone(),
        Action::Notify {
            notice: deactivated("K", Some("planned-now")),
        },
    ];
    let done = vec![
        (deactivate.clone(), Some(deactivated("K", None))),
        (delete.clone(), Some(Notice::Deleted { key_id: "J".into() })),
    ];
    assert_eq!(
        resume(plan, &done, Some("NEW")),
        vec![
            replayed(Action::CreateKey, Some("NEW")),
            replayed(deactivate, None),
            replayed(
                Action::Notify {
                    notice: deactivated("K", None)
                },
                None
            ),
            replayed(delete, None),
            replayed(
                Action::Notify {
                    notice: Notice::Deleted { key_id: "J".into() }
                },
                None
            ),
        ]
    );
}

#[test]
fn scheduled_notice_gets_the_new_key_id() {
    let a = Action::Notify {
        notice: Notice::DeactivationScheduled {
            key_id: "OLD".into(),
            on: OffsetDateTime::UNIX_EPOCH,
            replacement: None,
        },
    };
    match fill_replacement(a, Some("NEW")) {
        Action::Notify {
            notice: Notice::DeactivationScheduled { replacement, .. },
        } => assert_eq!(replacement.as_deref(), Some("NEW")),
        other => panic!("{other:?}"),
    }
}
