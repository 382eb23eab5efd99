//! Owner notifications and the security-team summary, as raw MIME messages
//! ready for SES v2 `SendEmail` with `Content.Raw`.
//!
//! Messages are built with `mail-builder` (headers encoded per RFC 2047,
//! attachments in base64, multipart/mixed when something is attached), never
//! by pasting MIME together. Every message carries `Auto-Submitted:
//! auto-generated` (RFC 3834) so auto-responders stay quiet, and
//! `X-Keyfleet-Run` / `X-Keyfleet-Account` / `X-Keyfleet-Kind` headers for
//! filtering.
//!
//! Key delivery is two messages: [`new_key_email`] carries the AES zip,
//! [`password_email`] the password. Only the second holds a secret, in its
//! text body: its [`Email::raw`] must go to SES and nowhere else (no log, no
//! S3). [`Email`]'s `Debug` prints the size of `raw`, not its content.
//!
//! Addresses are checked before use: `mail-builder` writes the address
//! part of a header verbatim, so an unchecked tag value could inject
//! headers. Every address (owner, sender, security team) must pass the
//! protocol's syntax rule ([`keyfleet_protocol::address::check_syntax`]);
//! an owner's address must moreover pass the run's policy
//! ([`Policy::check_owner_address`], with its `owner_domains` allow-list),
//! the very rule the agent applies before it creates a key, so the two sides
//! never disagree about whom keyfleet can mail. [`owner_refusal`] says, from
//! a result, whether an owner who has mail coming is refused, and why.
//!
//! Subjects name the key by its last four characters (`…WXYZ`); bodies show
//! the full access key id, which is not secret (IAM lists it to anyone with
//! `iam:ListAccessKeys`). Dates are UTC.

use crate::zipbox;
use keyfleet_protocol::address::check_syntax;
use keyfleet_protocol::plan::{Action, Notice, Outcome};
use keyfleet_protocol::report::RunReport;
use keyfleet_protocol::{AccountResult, AddressError, Policy, UserReport};
use keyfleet_protocol::{Credential, Secret};
use keyfleet_reports::render::summary::CsvReport;
use keyfleet_reports::render::{self, date_utc, datetime_utc, one_line};
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;
use mail_builder::MessageBuilder;
use rand::TryRngCore;
use std::fmt;
use std::fmt::Write as _;
use time::OffsetDateTime;

/// A message ready to send. `raw` is the complete RFC 5322 message.
#[derive(Clone, PartialEq, Eq)]
pub struct Email {
    pub to: Vec<String>,
    pub subject: String,
    pub raw: Vec<u8>,
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Email")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("raw", &format_args!("<{} bytes>", self.raw.len()))
            .finish()
    }
}

/// Who a notification is about and who gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailContext {
    /// `address@domain` or `Display Name <address@domain>`.
    pub sender: String,
    pub account_id: String,
    pub account_alias: Option<String>,
    pub user_name: String,
    /// The owner's address (the user's `Email` tag).
    pub to: String,
    pub now: OffsetDateTime,
    pub run_id: String,
    /// The run's policy deactivates an old key as soon as only its
    /// replacement is used (`Policy::cutover_on_use`): the dates the
    /// emails give are the latest, not the only ones.
    pub cutover_on_use: bool,
}

/// What an owner is told when an old key may go before its date.
fn cutover_hint(ctx: &MailContext) -> &'static str {
    if ctx.cutover_on_use {
        "Once only the new key is in use, keyfleet deactivates the old one at\n\
         its next run, before that date.\n\n"
    } else {
        ""
    }
}

/// The public half of a new key: what message 1 may say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKeyInfo {
    pub access_key_id: String,
    pub created: OffsetDateTime,
}

impl From<&Credential> for NewKeyInfo {
    fn from(c: &Credential) -> Self {
        NewKeyInfo {
            access_key_id: c.access_key_id.clone(),
            created: c.created,
        }
    }
}

/// Why a message could not be built. Never carries a password or secret.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("{field} address `{address}` is not usable: {reason}")]
    InvalidAddress {
        field: &'static str,
        address: String,
        reason: &'static str,
    },
    #[error("no recipients for the {0}")]
    NoRecipients(&'static str),
    #[error("a digest needs at least one notice")]
    EmptyDigest,
    #[error("building the message failed: {0}")]
    Build(#[from] std::io::Error),
}

/// How to open an AES zip; shared by both delivery messages.
const HOW_TO_OPEN: &str = "\
How to open the zip (it is encrypted with AES-256):
  - Windows: install 7-Zip (https://www.7-zip.org/), right-click the file,
    choose 7-Zip > Extract Here and enter the password.
  - macOS: install Keka (https://www.keka.io/), open the file with Keka and
    enter the password.
  - Linux: run `7z x <file>.zip` (package 7zip or p7zip-full); it asks for
    the password.
  The unzip tools built into Windows Explorer and macOS Finder (Archive
  Utility), and Info-ZIP `unzip`, cannot open AES-encrypted zips: they
  report an error or a wrong password. That is expected; use one of the
  tools above.";

const FOOTER: &str = "\
This message was sent by keyfleet, the automatic access key rotation of your
AWS organization. Questions go to your security team; do not reply with keys
or passwords.";

/// Message 1 of a key delivery: the encrypted zip.
pub fn new_key_email(
    ctx: &MailContext,
    key: &NewKeyInfo,
    zip_name: &str,
    zip_bytes: &[u8],
    deactivate_on: Option<OffsetDateTime>,
    old_key_id: Option<&str>,
) -> Result<Email, MailError> {
    let account = account_label(&ctx.account_id, ctx.account_alias.as_deref());
    let subject = format!(
        "[keyfleet] New access key {} for {} in {account} (1 of 2: key file)",
        short_key(&key.access_key_id),
        ctx.user_name
    );
    let mut body = String::new();
    let _ = write!(
        body,
        "Hello,\n\n\
         keyfleet created a new access key for IAM user {user}\n\
         in AWS account {account}.\n\n\
         \x20 New access key ID: {key}\n\
         \x20 Created:           {created}\n\n\
         The attached file {zip_name}\n\
         holds the key twice:\n\
         \x20 - credentials.csv, in the format the IAM console downloads;\n\
         \x20 - credentials, a profile to add to ~/.aws/credentials.\n\n\
         The zip is encrypted. Its password comes in a second, separate email,\n\
         so that one intercepted message is not enough to read the key.\n\n",
        user = ctx.user_name,
        key = key.access_key_id,
        created = datetime_utc(key.created),
    );
    match (old_key_id, deactivate_on) {
        (Some(old), Some(on)) if on <= ctx.now => {
            let _ = write!(
                body,
                "Your old access key {old} was deactivated on {}. Requests signed\n\
                 with it now fail; use the new key.\n\n",
                date_utc(on)
            );
        }
        (Some(old), Some(on)) => {
            let _ = write!(
                body,
                "Your old access key {old} will be deactivated on {} ({}).\n\
                 Switch every application, script and CI job that uses it to the\n\
                 new key before then.\n\n{}",
                date_utc(on),
                in_days(ctx.now, on),
                cutover_hint(ctx)
            );
        }
        (Some(old), None) => {
            let _ = write!(
                body,
                "Your old access key {old} stays active for now. Switch to the new\n\
                 key soon; you will be told before the old one is deactivated.\n\n"
            );
        }
        (None, Some(on)) => {
            let _ = write!(
                body,
                "Your previous access key will be deactivated on {}. Switch to the\n\
                 new key before then.\n\n",
                date_utc(on)
            );
        }
        (None, None) => {}
    }
    let _ = write!(
        body,
        "{HOW_TO_OPEN}\n\n\
         Once the key is stored safely (a password manager or secrets store),\n\
         delete the zip and both emails.\n\n\
         Run {run}.\n{FOOTER}\n",
        run = ctx.run_id
    );
    let builder = owner_builder(ctx, "new_key", &subject)?
        .text_body(body)
        .attachment("application/zip", zip_name.to_string(), zip_bytes.to_vec());
    finish(builder, vec![ctx.to.clone()], subject)
}

/// Message 2 of a key delivery: the zip's password, sent separately.
pub fn password_email(
    ctx: &MailContext,
    access_key_id: &str,
    password: &Secret,
) -> Result<Email, MailError> {
    let account = account_label(&ctx.account_id, ctx.account_alias.as_deref());
    let zip_name = zipbox::zip_file_name(
        &ctx.account_id,
        ctx.account_alias.as_deref(),
        &ctx.user_name,
    )
    .unwrap_or_else(|_| "the zip".to_string());
    let subject = format!(
        "[keyfleet] Password for the new access key {} of {} in {account} (2 of 2)",
        short_key(access_key_id),
        ctx.user_name
    );
    let body = format!(
        "Hello,\n\n\
         This is the password for the zip file\n\n\
         \x20 {zip_name}\n\n\
         which holds the new access key {access_key_id} of IAM user {user}\n\
         in AWS account {account}. The zip itself came in a separate email.\n\n\
         Password (on its own line below; copy it whole):\n\n\
         {password}\n\n\
         {HOW_TO_OPEN}\n\n\
         Once the key is stored safely, delete the zip and both emails.\n\n\
         Run {run}.\n{FOOTER}\n",
        user = ctx.user_name,
        password = password.expose(),
        run = ctx.run_id,
    );
    let builder = owner_builder(ctx, "password", &subject)?.text_body(body);
    finish(builder, vec![ctx.to.clone()], subject)
}

/// One notice to the key's owner, a template per [`Notice`] variant: its
/// headline (the subject of a digest that holds it alone) and its text. A
/// notice reaches its owner inside the run's digest ([`digest`]).
pub(crate) fn notice_text(ctx: &MailContext, notice: &Notice) -> (String, String) {
    let account = account_label(&ctx.account_id, ctx.account_alias.as_deref());
    let user = &one_line(&ctx.user_name);
    let key = notice.key_id();
    let short = short_key(key);
    let about = format!("Access key {key} of IAM user {user}\nin AWS account {account}");
    let (subject, text) = match notice {
        Notice::DeactivationScheduled {
            on, replacement, ..
        } => {
            let switch = match replacement {
                Some(new) => format!(
                    "Switch every application, script and CI job that uses it to your\n\
                     new access key {new} (sent to you earlier as an encrypted zip,\n\
                     with its password in a separate email) before then."
                ),
                None => "Switch everything that uses it to a new key before then; ask\n\
                         your security team if you have not received one."
                    .to_string(),
            };
            (
                format!(
                    "Access key {short} of {user} in {account} will be deactivated on {}",
                    date_utc(*on)
                ),
                format!(
                    "{about}\nwill be deactivated on {} ({}).\n\n{switch}\n\n{}\
                     Once it is deactivated, requests signed with {key} fail.",
                    datetime_utc(*on),
                    in_days(ctx.now, *on),
                    if replacement.is_some() {
                        cutover_hint(ctx)
                    } else {
                        ""
                    }
                ),
            )
        }
        Notice::Deactivated { replacement, .. } => {
            let use_new = match replacement {
                Some(new) => format!("Use your new access key {new} instead."),
                None => "Ask your security team if you need a new key.".to_string(),
            };
            (
                format!("Access key {short} of {user} in {account} was deactivated"),
                format!(
                    "{about}\nwas deactivated on {}. Requests signed with it now fail.\n\n\
                     {use_new}\n\n\
                     The key stays inactive and is deleted in a later run. If something\n\
                     broke, ask your AWS administrators: until it is deleted, the key can\n\
                     be reactivated.",
                    datetime_utc(ctx.now)
                ),
            )
        }
        Notice::Reactivated { until, .. } => (
            format!("Access key {short} of {user} in {account} was reactivated"),
            format!(
                "{about}\nwas switched back on by your security team on {}: requests\n\
                 signed with it work again.\n\n\
                 This is a reprieve, not a new key: it will be deactivated again on\n\
                 {} ({}) unless everything that uses it has moved to your\n\
                 current key by then. After that it stays inactive for the usual\n\
                 recovery window, then it is deleted.",
                datetime_utc(ctx.now),
                datetime_utc(*until),
                in_days(ctx.now, *until)
            ),
        ),
        Notice::Deleted { .. } => (
            format!("Inactive access key {short} of {user} in {account} was deleted"),
            format!(
                "{about}\nwas inactive and has been deleted on {}. This cannot be undone.\n\n\
                 Nothing to do if you already use your current key.",
                datetime_utc(ctx.now)
            ),
        ),
        Notice::UnusedDeleted { last_used, .. } => {
            let since = match last_used {
                Some(t) => format!("had not been used since {}", datetime_utc(*t)),
                None => "had never been used".to_string(),
            };
            (
                format!("Unused access key {short} of {user} in {account} was deleted"),
                format!(
                    "{about}\nwas deleted on {} because it {since}. It was not replaced.\n\n\
                     If you still need programmatic access, ask your security team for a\n\
                     new key (or better, use a role).",
                    datetime_utc(ctx.now)
                ),
            )
        }
        Notice::StillInUse {
            last_used,
            service,
            region,
            replacement,
            used_from,
            ..
        } => {
            let places = if used_from.is_empty() {
                String::new()
            } else {
                let lines: Vec<String> = used_from
                    .iter()
                    .map(|s| format!("  - {}", s.describe()))
                    .collect();
                format!(
                    "Used since its replacement was created, from (CloudTrail: source IP,\n\
                     user agent, service, region):\n{}\n\n",
                    lines.join("\n")
                )
            };
            let when = last_used
                .map(datetime_utc)
                .unwrap_or_else(|| "recently".to_string());
            let service = service.as_deref().unwrap_or("an unknown service");
            let region = region.as_deref().unwrap_or("an unknown region");
            let new = match replacement {
                Some(new) => format!("your new access key {new}"),
                None => "your new access key".to_string(),
            };
            (
                format!("Action needed: access key {short} of {user} in {account} is still in use"),
                format!(
                    "{about}\nis still in use after its replacement was created, so it was not\n\
                     deactivated.\n\n\
                     \x20 Last used:  {when}\n\
                     \x20 Service:    {service}\n\
                     \x20 Region:     {region}\n\n\
                     {places}\
                     Find what still uses it (CloudTrail events for access key {key}\n\
                     in {region} name the caller) and switch it to {new}.\n\
                     The old key is deactivated anyway once it reaches the maximum key\n\
                     age of your organization's policy."
                ),
            )
        }
    };
    (subject, text)
}

/// The security team's summary of a run, with the CSV report attached: the
/// bodies are the report's ([`render::summary`]), the addressing and
/// headers the coordinator's.
pub fn summary_email(
    sender: &str,
    to: &[String],
    report: &RunReport,
    csv_bytes: &[u8],
    report_url: Option<&str>,
) -> Result<Email, MailError> {
    summary_email_with(
        sender,
        to,
        report,
        CsvReport::Attached(csv_bytes),
        report_url,
    )
}

/// [`summary_email`], with the CSV report attached or linked as `csv` says
/// (finalize links it above the configured size, see
/// `CoordinatorConfig::summary_attach_max_bytes`).
pub fn summary_email_with(
    sender: &str,
    to: &[String],
    report: &RunReport,
    csv: CsvReport<'_>,
    report_url: Option<&str>,
) -> Result<Email, MailError> {
    if to.is_empty() {
        return Err(MailError::NoRecipients("run summary"));
    }
    let from = sender_address(sender)?;
    for addr in to {
        check_address("recipient", addr)?;
    }
    let render::summary::Summary {
        subject,
        text,
        html,
        csv_name,
    } = render::summary::summary(report, csv, report_url, FOOTER);
    let builder = MessageBuilder::new()
        .from(from)
        .to(to
            .iter()
            .map(|a| Address::from(a.clone()))
            .collect::<Vec<_>>())
        .subject(subject.clone())
        .date(report.finalized_at.unix_timestamp())
        .message_id(message_id(sender, &report.run_id, "summary"))
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .header("X-Keyfleet-Run", Raw::new(header_token(&report.run_id)))
        .header("X-Keyfleet-Kind", Raw::new("summary"))
        .text_body(text)
        .html_body(html);
    let builder = match csv {
        CsvReport::Attached(bytes) => builder.attachment("text/csv", csv_name, bytes.to_vec()),
        CsvReport::Linked { .. } => builder,
    };
    finish(builder, to.to_vec(), subject)
}

fn owner_builder<'x>(
    ctx: &'x MailContext,
    kind: &'static str,
    subject: &str,
) -> Result<MessageBuilder<'x>, MailError> {
    let from = sender_address(&ctx.sender)?;
    check_address("recipient", &ctx.to)?;
    Ok(MessageBuilder::new()
        .from(from)
        .to(Address::from(ctx.to.as_str()))
        .subject(subject.to_string())
        .date(ctx.now.unix_timestamp())
        .message_id(message_id(&ctx.sender, &ctx.run_id, kind))
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .header("X-Keyfleet-Run", Raw::new(header_token(&ctx.run_id)))
        .header(
            "X-Keyfleet-Account",
            Raw::new(header_token(&ctx.account_id)),
        )
        .header("X-Keyfleet-Kind", Raw::new(kind)))
}

fn finish(
    builder: MessageBuilder<'_>,
    to: Vec<String>,
    subject: String,
) -> Result<Email, MailError> {
    Ok(Email {
        to,
        subject,
        raw: builder.write_to_vec()?,
    })
}

/// `…WXYZ`: the last four characters of a key id.
pub fn short_key(key_id: &str) -> String {
    let tail: String = {
        let chars: Vec<char> = key_id.chars().collect();
        chars[chars.len().saturating_sub(4)..].iter().collect()
    };
    format!("\u{2026}{tail}")
}

fn account_label(id: &str, alias: Option<&str>) -> String {
    match alias {
        Some(a) if !a.is_empty() => format!("{} ({})", one_line(a), one_line(id)),
        _ => one_line(id),
    }
}

fn in_days(now: OffsetDateTime, on: OffsetDateTime) -> String {
    match (on - now).whole_days() {
        d if d <= 0 => "today".to_string(),
        1 => "in 1 day".to_string(),
        d => format!("in {d} days"),
    }
}

/// Keeps header values to a safe token alphabet (run ids and account ids
/// are validated upstream; this is a second guard against CR/LF).
fn header_token(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `<keyfleet.<run>.<kind>.<random>@<sender domain>>`.
fn message_id(sender: &str, run_id: &str, kind: &str) -> String {
    let mut b = [0u8; 8];
    // Uniqueness only; a failing OS generator leaves zeros, still valid.
    let _ = rand::rngs::OsRng.try_fill_bytes(&mut b);
    let random: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let domain = parse_mailbox(sender)
        .map(|(_, addr)| {
            addr.rsplit('@')
                .next()
                .unwrap_or("keyfleet.invalid")
                .to_string()
        })
        .unwrap_or_else(|| "keyfleet.invalid".to_string());
    format!(
        "keyfleet.{}.{}.{random}@{}",
        header_token(run_id),
        header_token(kind),
        header_token(&domain)
    )
}

/// Splits `Name <addr>` or `addr`.
fn parse_mailbox(s: &str) -> Option<(Option<&str>, &str)> {
    let s = s.trim();
    match (s.rfind('<'), s.ends_with('>')) {
        (Some(lt), true) => {
            let name = s[..lt].trim().trim_matches('"').trim();
            let addr = &s[lt + 1..s.len() - 1];
            Some(((!name.is_empty()).then_some(name), addr))
        }
        (None, false) => Some((None, s)),
        _ => None,
    }
}

fn sender_address(sender: &str) -> Result<Address<'static>, MailError> {
    let invalid = |reason| MailError::InvalidAddress {
        field: "sender",
        address: sender.to_string(),
        reason,
    };
    let (name, addr) = parse_mailbox(sender).ok_or_else(|| invalid("unbalanced angle brackets"))?;
    check_address("sender", addr)?;
    if let Some(name) = name {
        if name.chars().any(|c| c.is_control() || c == '<' || c == '>') {
            return Err(invalid("display name has control characters or brackets"));
        }
    }
    Ok(Address::new_address(
        name.map(str::to_string),
        addr.to_string(),
    ))
}

/// A bare `local@domain` address, checked with the protocol's syntax rule
/// (the one rule for every address keyfleet writes into a header).
pub fn check_address(field: &'static str, addr: &str) -> Result<(), MailError> {
    check_syntax(addr).map_err(|reason| MailError::InvalidAddress {
        field,
        address: addr.escape_debug().to_string(),
        reason,
    })
}

/// Whether the owner of `user` has mail coming from this result: a new
/// key delivered by email, or a notice (done, or planned in a dry run).
pub fn has_mail(policy: &Policy, result: &AccountResult, user: &UserReport) -> bool {
    let new_key = policy.delivery.by_email()
        && (result.sealed.iter().any(|s| s.user_name == user.user_name)
            || user.actions.iter().any(|r| {
                matches!(r.action, Action::CreateKey)
                    && matches!(r.result, Outcome::Done { .. } | Outcome::Planned)
            }));
    let notice = user.actions.iter().any(|r| {
        matches!(r.action, Action::Notify { .. })
            && matches!(r.result, Outcome::Done { .. } | Outcome::Planned)
    });
    new_key || notice
}

/// The report's and the alert's words for a refused owner.
pub fn refusal_text(why: &AddressError) -> String {
    format!("owner address not deliverable, nothing was emailed: {why}")
}

/// Why the owner of `user`, who has mail coming, cannot be mailed under the
/// run's `policy`; `None` when they can (or nothing is to be sent, or the
/// user has no address, which the agent reports itself).
pub fn owner_refusal(
    policy: &Policy,
    result: &AccountResult,
    user: &UserReport,
) -> Option<AddressError> {
    let to = user.email.as_deref()?;
    if !has_mail(policy, result, user) {
        return None;
    }
    policy.check_owner_address(to).err()
}

pub mod digest;

#[cfg(test)]
mod tests;
