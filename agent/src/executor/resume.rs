//! The pure part of "Retries" (module doc of [`crate::executor`]): which
//! steps of a plan an earlier attempt of the same run already did, and the
//! new key's id filled into the notice planned before the key existed.

use keyfleet_protocol::{Action, ActionRecord, Notice, Outcome};

/// One step of a user's plan as this attempt runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// To apply now.
    Apply(Action),
    /// Done by an earlier attempt of this run (its record says so and IAM
    /// shows it): reported as done, not applied again.
    Replay(ActionRecord),
}

/// True when `notice` is the owner's notice of `action` (the plan puts it
/// right after the action).
pub(super) fn goes_with(action: &Action, notice: &Notice) -> bool {
    let same = |key_id: &str| notice.key_id() == key_id;
    match action {
        Action::Deactivate { key_id } => {
            same(key_id) && matches!(notice, Notice::Deactivated { .. })
        }
        Action::Reactivate { key_id } => {
            same(key_id) && matches!(notice, Notice::Reactivated { .. })
        }
        Action::Delete { key_id } => {
            same(key_id)
                && matches!(
                    notice,
                    Notice::Deleted { .. } | Notice::UnusedDeleted { .. }
                )
        }
        Action::CreateKey | Action::Notify { .. } => false,
    }
}

/// The plan as this attempt runs it (see "Retries" in the module doc):
/// an action an earlier attempt of the run already did (`done`, oldest
/// first, with the notice recorded with it) is replayed, its recorded
/// notice replacing the one planned now (a reactivation's names the end
/// of the grace the first attempt announced); the key it created
/// (`created`) is reported, not created again. What it did that the plan
/// no longer holds is still reported. Without an earlier attempt every
/// action is applied.
pub(super) fn resume(
    actions: Vec<Action>,
    done: &[(Action, Option<Notice>)],
    created: Option<&str>,
) -> Vec<Step> {
    let as_done = |action: Action, key_id: Option<&str>| {
        Step::Replay(ActionRecord {
            action,
            result: Outcome::Done {
                key_id: key_id.map(str::to_string),
            },
        })
    };
    let replay = |steps: &mut Vec<Step>, (action, notice): &(Action, Option<Notice>)| {
        steps.push(as_done(action.clone(), None));
        if let Some(notice) = notice {
            let notice = notice.clone();
            steps.push(as_done(Action::Notify { notice }, None));
        }
    };
    let mut left: Vec<&(Action, Option<Notice>)> = done.iter().collect();
    let mut steps = Vec::new();
    let mut creation = created;
    let mut actions = actions.into_iter().peekable();
    while let Some(action) = actions.next() {
        if action == Action::CreateKey {
            if let Some(id) = creation.take() {
                steps.push(as_done(action, Some(id)));
                continue;
            }
        }
        let Some(at) = left.iter().position(|(a, _)| *a == action) else {
            steps.push(Step::Apply(action));
            continue;
        };
        let earlier = left.remove(at);
        if earlier.1.is_some() {
            if let Some(Action::Notify { notice }) = actions.peek() {
                if goes_with(&action, notice) {
                    actions.next();
                }
            }
        }
        replay(&mut steps, earlier);
    }
    if let Some(id) = creation {
        steps.insert(0, as_done(Action::CreateKey, Some(id)));
    }
    for earlier in left {
        replay(&mut steps, earlier);
    }
    steps
}

/// A notice planned before the key existed names the new key once created.
pub(super) fn fill_replacement(action: Action, created: Option<&str>) -> Action {
    match (action, created) {
        (
            Action::Notify {
                notice:
                    Notice::DeactivationScheduled {
                        key_id,
                        on,
                        replacement: None,
                    },
            },
            Some(new),
        ) => Action::Notify {
            notice: Notice::DeactivationScheduled {
                key_id,
                on,
                replacement: Some(new.to_string()),
            },
        },
        (a, _) => a,
    }
}
