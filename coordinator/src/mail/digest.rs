//! The digest: every notice of one run for one owner in one email.
//!
//! An owner hears from keyfleet at most three times a run: the new key's
//! zip, its password (two emails, so one intercepted message does not hold
//! the key), and one digest with everything else the run did or will do to
//! their keys, across all their users and accounts: a key still in use
//! after its replacement, a deactivation coming, a reactivation's reprieve,
//! a key deactivated or deleted. A deactivation that the new key's email
//! already announced is not repeated here (see `notify`).
//!
//! Items come in the order the owner should act: first what needs them
//! (still in use, to be deactivated, reactivated; the soonest date first),
//! then what was done, for their records. Each item says its next step and
//! when, so that an owner who reads one email knows the whole schedule.
//!
//! The digest carries `X-Keyfleet-Kind: digest`, and two headers for mail
//! filters: `X-Keyfleet-Account` lists its accounts, `X-Keyfleet-Notices`
//! its items as `<account>/<kind>`, in the digest's order (both folded, one
//! entry a line, so that an owner of many keys never gets an over-long
//! header line).

use super::{
    account_label, check_address, datetime_utc, finish, header_token, message_id, notice_text,
    sender_address, Email, MailContext, MailError, FOOTER,
};
use keyfleet_protocol::plan::Notice;
use keyfleet_protocol::{Limit, Policy};
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;
use mail_builder::MessageBuilder;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use time::OffsetDateTime;

/// One notice of a digest, with what the owner needs to read it on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestItem {
    pub account_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_alias: Option<String>,
    pub user_name: String,
    pub notice: Notice,
    /// When the key's next step is due (see [`next_step`]); `None` when
    /// nothing more will happen to it, or the date is not known.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_step: Option<OffsetDateTime>,
}

/// Who gets a digest, from whom, and for which run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestContext {
    pub sender: String,
    /// The owner's address.
    pub to: String,
    pub now: OffsetDateTime,
    pub run_id: String,
    /// See [`MailContext::cutover_on_use`].
    pub cutover_on_use: bool,
}

/// When the next step of a notice's key is due under `policy`:
/// - a deactivation scheduled: its date;
/// - a reactivation: the end of its reprieve;
/// - a key still in use: the maximum key age, when the policy has one;
/// - a key deactivated now: its deletion, `delete_after` from its creation
///   or, when it was deactivated later than `deactivate_after`, the same
///   recovery window after now (the rules' "deletion date");
/// - a key deleted: none.
pub fn next_step(
    policy: &Policy,
    notice: &Notice,
    created: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    match notice {
        Notice::DeactivationScheduled { on, .. } => Some(*on),
        Notice::Reactivated { until, .. } => Some(*until),
        Notice::StillInUse { .. } => match policy.max_key_age {
            Limit::After(age) => created.map(|c| c + age.to_time()),
            Limit::Never => None,
        },
        Notice::Deactivated { .. } => {
            let window = policy
                .delete_after
                .saturating_sub(policy.deactivate_after)
                .to_time();
            let after_now = now + window;
            Some(created.map_or(after_now, |c| {
                (c + policy.delete_after.to_time()).max(after_now)
            }))
        }
        Notice::Deleted { .. } | Notice::UnusedDeleted { .. } => None,
    }
}

/// Where a notice stands in the order the owner should act: lower first.
fn urgency(notice: &Notice) -> u8 {
    match notice {
        Notice::StillInUse { .. } => 0,
        Notice::DeactivationScheduled { .. } => 1,
        Notice::Reactivated { .. } => 2,
        Notice::Deactivated { .. } => 3,
        Notice::Deleted { .. } => 4,
        Notice::UnusedDeleted { .. } => 5,
    }
}

/// Whether the owner has something to do about the notice's key.
fn needs_action(notice: &Notice) -> bool {
    urgency(notice) <= 2
}

/// Puts `items` in the order the owner should act: by urgency, then the
/// soonest next step (none last), then account, user and key, so that
/// the order never depends on the order results came in.
pub fn order(items: &mut [DigestItem]) {
    items.sort_by(|a, b| {
        urgency(&a.notice)
            .cmp(&urgency(&b.notice))
            .then_with(|| match (a.next_step, b.next_step) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then_with(|| a.account_id.cmp(&b.account_id))
            .then_with(|| a.user_name.cmp(&b.user_name))
            .then_with(|| a.notice.key_id().cmp(b.notice.key_id()))
    });
}

/// The line that tells an item's next step.
fn next_step_line(item: &DigestItem) -> String {
    let at = item.next_step.map(datetime_utc);
    match (&item.notice, at) {
        (Notice::StillInUse { .. }, Some(at)) => {
            format!("Next step: deactivated on {at} at the latest (the maximum key age).")
        }
        (Notice::StillInUse { .. }, None) => {
            "Next step: it stays active until nothing but its replacement uses it.".to_string()
        }
        (Notice::DeactivationScheduled { .. }, Some(at)) => format!("Next step: deactivated on {at}."),
        (Notice::Reactivated { .. }, Some(at)) => format!("Next step: deactivated again on {at}."),
        (Notice::Deactivated { .. }, Some(at)) => format!(
            "Next step: deleted at keyfleet's first run on or after {at}; until then it\ncan be reactivated."
        ),
        _ => "Next step: none; nothing more happens to this key.".to_string(),
    }
}

/// A count of one kind of item, for the subject.
fn kind_phrase(notice: &Notice) -> &'static str {
    match notice {
        Notice::StillInUse { .. } => "still in use",
        Notice::DeactivationScheduled { .. } => "to be deactivated",
        Notice::Reactivated { .. } => "reactivated",
        Notice::Deactivated { .. } => "deactivated",
        Notice::Deleted { .. } | Notice::UnusedDeleted { .. } => "deleted",
    }
}

/// The digest of `items` (at least one) for the owner `ctx.to`, items in
/// the order [`order`] gives.
pub fn digest_email(ctx: &DigestContext, items: &[DigestItem]) -> Result<Email, MailError> {
    if items.is_empty() {
        return Err(MailError::EmptyDigest);
    }
    let mut items = items.to_vec();
    order(&mut items);
    let item_ctx = |item: &DigestItem| MailContext {
        sender: ctx.sender.clone(),
        account_id: item.account_id.clone(),
        account_alias: item.account_alias.clone(),
        user_name: item.user_name.clone(),
        to: ctx.to.clone(),
        now: ctx.now,
        run_id: ctx.run_id.clone(),
        cutover_on_use: ctx.cutover_on_use,
    };
    let texts: Vec<(String, String)> = items
        .iter()
        .map(|i| notice_text(&item_ctx(i), &i.notice))
        .collect();
    let action = items.iter().any(|i| needs_action(&i.notice));
    let subject = if let [(headline, _)] = texts.as_slice() {
        format!("[keyfleet] {headline}")
    } else {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        for i in &items {
            let phrase = kind_phrase(&i.notice);
            match counts.iter_mut().find(|(p, _)| *p == phrase) {
                Some((_, n)) => *n += 1,
                None => counts.push((phrase, 1)),
            }
        }
        let counts: Vec<String> = counts.iter().map(|(p, n)| format!("{n} {p}")).collect();
        format!(
            "[keyfleet] {}{} of your access keys: {}",
            if action {
                "Action needed on "
            } else {
                "News on "
            },
            items.len(),
            counts.join(", ")
        )
    };
    let accounts: BTreeMap<&str, Option<&str>> = items
        .iter()
        .map(|i| (i.account_id.as_str(), i.account_alias.as_deref()))
        .collect();
    let mut body = String::from("Hello,\n\n");
    let _ = writeln!(
        body,
        "keyfleet's run {run} has news about {n} of your access {keys} in {where_}.",
        run = ctx.run_id,
        n = items.len(),
        keys = if items.len() == 1 { "key" } else { "keys" },
        where_ = match accounts.len() {
            1 => {
                let (id, alias) = accounts.iter().next().expect("one account");
                format!("AWS account {}", account_label(id, *alias))
            }
            n => format!("{n} AWS accounts"),
        },
    );
    if action {
        body.push_str("What needs you comes first, the soonest date first.\n");
    }
    let mut section = None;
    for (n, (item, (headline, text))) in items.iter().zip(&texts).enumerate() {
        let this = needs_action(&item.notice);
        if section != Some(this) {
            section = Some(this);
            body.push_str(if this {
                "\n== Action needed ==\n"
            } else {
                "\n== Done, for your records ==\n"
            });
        }
        let _ = write!(
            body,
            "\n{}. {headline}\n\n{text}\n\n{}\n",
            n + 1,
            next_step_line(item)
        );
    }
    let _ = write!(body, "\nRun {run}.\n{FOOTER}\n", run = ctx.run_id);

    let from = sender_address(&ctx.sender)?;
    check_address("recipient", &ctx.to)?;
    let folded = |entries: Vec<String>| Raw::new(entries.join(",\r\n "));
    let builder = MessageBuilder::new()
        .from(from)
        .to(Address::from(ctx.to.as_str()))
        .subject(subject.clone())
        .date(ctx.now.unix_timestamp())
        .message_id(message_id(&ctx.sender, &ctx.run_id, "digest"))
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .header("X-Keyfleet-Run", Raw::new(header_token(&ctx.run_id)))
        .header(
            "X-Keyfleet-Account",
            folded(accounts.keys().map(|a| header_token(a)).collect()),
        )
        .header("X-Keyfleet-Kind", Raw::new("digest"))
        .header(
            "X-Keyfleet-Notices",
            folded(
                items
                    .iter()
                    .map(|i| format!("{}/{}", header_token(&i.account_id), i.notice.kind()))
                    .collect(),
            ),
        )
        .text_body(body);
    finish(builder, vec![ctx.to.clone()], subject)
}
