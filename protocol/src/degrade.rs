//! Results degrade, they never vanish.
//!
//! A result carries two kinds of fields. Some make it usable: the envelope
//! (version, run, account, token, parts), the user names, the key ids the
//! actions and notices name, and the sealed credentials; a result whose
//! usable fields break a rule is refused whole ([`crate::Validate`]). The
//! others only inform the report: a key's last-used service and region, a
//! notice's service and region, the user's IAM path, the account alias,
//! the per-operation call counts, the free texts. AWS decides what it
//! writes in those (a new region name, a service namespace of a new shape,
//! `not_supported`), so a value the rules do not expect there is no reason
//! to refuse a result that may hold new keys for their owners: refusing it
//! would lose every key of the account, every run.
//!
//! [`AccountResult::degrade`] leaves each such value out (an unexpected
//! path becomes `/`, a count of an unknown operation is dropped) and says
//! so in a note on that user; free texts are bounded. The agent degrades
//! its own result before sealing and sending it, so it never sends what the
//! coordinator would refuse, and the coordinator degrades every result it
//! decodes, so an agent of another version cannot lose keys this way
//! either.

use crate::messages::{AccountResult, UserReport};
use crate::plan::{Action, Notice};
use crate::validate::{
    bound_text, is_account_alias, is_bounded_text, is_iam_path, is_region, is_service_name, shown,
    MAX_API_OPERATIONS, MAX_CALLS_PER_OPERATION, MAX_TEXT,
};

/// Leaves out every informational value that breaks its rule (see the
/// module doc), noting it on the user it belongs to, and bounds the
/// free texts. Returns how many values were left out. The fields a
/// result is used by are never touched: [`crate::Validate`] still
/// refuses a result whose envelope, names, key ids or sealed
/// credentials are wrong.
pub(crate) fn degrade_result(result: &mut AccountResult) -> usize {
    result.bound_texts();
    let mut dropped = 0;
    if result
        .account_alias
        .as_deref()
        .is_some_and(|a| !is_account_alias(a))
    {
        result.account_alias = None;
        dropped += 1;
    }
    let before = result.api_calls.len();
    result.api_calls.retain(|op, n| {
        (1..=64).contains(&op.len())
            && op.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':')
            && *n <= MAX_CALLS_PER_OPERATION
    });
    while result.api_calls.len() > MAX_API_OPERATIONS {
        result.api_calls.pop_last();
    }
    dropped += before - result.api_calls.len();
    for user in &mut result.users {
        dropped += degrade_user(user);
    }
    dropped
}

/// One user's informational values; the notes say what was left out.
fn degrade_user(user: &mut UserReport) -> usize {
    let mut notes = Vec::new();
    if !is_iam_path(&user.path) {
        notes.push(format!("path `{}` is not an IAM path", shown(&user.path)));
        user.path = "/".into();
    }
    for key in &mut user.keys {
        let which = if key.id.is_empty() {
            "a key".to_string()
        } else {
            format!("key {}", shown(&key.id))
        };
        if let Some(s) = key.last_used_service.take_if(|s| !is_service_name(s)) {
            notes.push(format!(
                "last-used service `{}` of {which} is not an AWS service name",
                shown(&s)
            ));
        }
        if let Some(r) = key.last_used_region.take_if(|r| !is_region(r)) {
            notes.push(format!(
                "last-used region `{}` of {which} is not an AWS region name",
                shown(&r)
            ));
        }
    }
    for action in &mut user.actions {
        if let Action::Notify {
            notice:
                Notice::StillInUse {
                    service,
                    region,
                    used_from,
                    ..
                },
        } = &mut action.action
        {
            used_from.retain(|site| match crate::validate::use_site_rule(site) {
                Ok(()) => true,
                Err(why) => {
                    notes.push(format!("a place of use of the notice: {why}"));
                    false
                }
            });
            if used_from.len() > crate::plan::MAX_USE_SITES {
                notes.push(format!(
                    "the notice's places of use beyond the first {}",
                    crate::plan::MAX_USE_SITES
                ));
                used_from.truncate(crate::plan::MAX_USE_SITES);
            }
            if let Some(s) = service.take_if(|s| !is_service_name(s)) {
                notes.push(format!(
                    "the notice's service `{}` is not an AWS service name",
                    shown(&s)
                ));
            }
            if let Some(r) = region.take_if(|r| !is_region(r)) {
                notes.push(format!(
                    "the notice's region `{}` is not an AWS region name",
                    shown(&r)
                ));
            }
        }
    }
    if user
        .email
        .as_deref()
        .is_some_and(|e| e.len() > 254 || !is_bounded_text(e))
    {
        notes.push("the owner address is longer than 254 bytes or holds control characters".into());
        user.email = None;
    }
    let dropped = notes.len();
    if dropped > 0 {
        let said = format!("left out of the report: {}", notes.join("; "));
        let note = match user.note.take() {
            Some(n) => format!("{n}; {said}"),
            None => said,
        };
        user.note = Some(bound_text(&note));
        debug_assert!(user.note.as_deref().is_some_and(|n| n.len() <= MAX_TEXT));
    }
    dropped
}

#[cfg(test)]
mod tests;
