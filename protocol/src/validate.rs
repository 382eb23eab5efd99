//! What serde cannot check: the protocol's rules on every field that
//! crosses a trust boundary.
//!
//! A result comes from a member account, and a member account may be
//! compromised: it holds a valid job token for its own account and can put
//! anything into the result it sends. Everything the coordinator takes from
//! a result ends up in an S3 report, an HTML page, a CSV file or an email
//! sent from the organization's trusted address, so every field is held to
//! the form AWS itself gives it (user names, key ids, paths, service and
//! region names, account aliases), every free text (errors, notes, reasons)
//! to a bounded length without control characters, and every list to a
//! bounded count. A message whose envelope, names, key ids or sealed
//! credentials break a rule is refused whole, with the field named. A value
//! that only informs the report (a last-used service or region, a path, an
//! alias, a call count, a free text) is left out with a note instead, before
//! these checks run ([`crate::degrade`]): a result that may hold new keys
//! is never lost to a value AWS chose to write differently.
//!
//! What is checked elsewhere, with more context than one message has:
//! the token against the run's manifest (intake), the owner addresses
//! against the run's policy and its domain allow-list (notify, per user, so
//! one bad `Email` tag refuses that owner and not the account), the parts of
//! one result against each other ([`crate::parts::reassemble`]), and a
//! sealed credential's content against its public fields
//! ([`crate::seal::open`]).

use crate::messages::{AccountResult, Job, JobMode, RunManifest, UserReport, VERSION};
use crate::plan::{Action, ActionRecord, KeyState, Notice, Outcome};
use crate::seal::SealedCredential;
use crate::{Token, ValidationError};
use std::collections::BTreeSet;

/// Checks serde cannot express.
pub trait Validate {
    fn validate(&self) -> Result<(), ValidationError>;
    /// Leaves out what only informs and breaks its rule, before
    /// [`Validate::validate`] judges the rest (see [`crate::degrade`]).
    /// Nothing by default: a job or a manifest has no such field.
    fn degrade_informational(&mut self) {}
}

/// The largest message SQS carries (256 KiB). Anything longer cannot have
/// come through a queue and is refused before it is parsed.
pub const MAX_MESSAGE_BYTES: usize = 262_144;
/// Parts of one result. An account at IAM's quota of 5,000 users fits in a
/// few dozen parts of 240 KiB.
pub const MAX_PARTS: u32 = 1_000;
/// Users in one part: IAM's quota of users per account.
pub const MAX_USERS: usize = 5_000;
/// Access keys of one user: IAM allows two.
pub const MAX_KEYS_PER_USER: usize = 2;
/// Actions the rules can plan for one user (two keys, each at most
/// create, deactivate, delete and two notices) with room to spare.
pub const MAX_ACTIONS_PER_USER: usize = 16;
/// Distinct operations in `api_calls`.
pub const MAX_API_OPERATIONS: usize = 100;
/// Calls of one operation in one run: far more than 5,000 users need.
pub const MAX_CALLS_PER_OPERATION: u64 = 10_000_000;
/// Errors, notes and skip reasons.
pub const MAX_TEXT: usize = 4_096;
/// HPKE fields of a sealed credential (base64).
pub const MAX_SEALED_FIELD: usize = 4_096;

/// 12 ASCII digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Access key ids: 16-128 of `[A-Z0-9]` (AWS's `AKIA...`).
pub fn is_access_key_id(s: &str) -> bool {
    (16..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Run ids are used in S3 keys: `[A-Za-z0-9-_]{1,64}`.
pub fn is_run_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// IAM user names: 1-64 of `[\w+=,.@-]`.
pub fn is_user_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@-_".contains(&b))
}

/// IAM paths: `/` alone, or `/`-delimited printable ASCII, at most 512.
pub fn is_iam_path(s: &str) -> bool {
    (1..=512).contains(&s.len())
        && s.starts_with('/')
        && s.ends_with('/')
        && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// IAM account aliases: 3-63 of `[a-z0-9-]`, not starting or ending with
/// a hyphen, no two hyphens in a row.
pub fn is_account_alias(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// AWS service namespaces as IAM reports a key's last use (`s3`, `sts`,
/// `execute-api`): 1-64 of `[a-z0-9-]`, starting with a letter.
pub fn is_service_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// AWS region names (`us-east-1`, `us-gov-west-1`, `cn-north-1`): lowercase
/// words joined by hyphens, ending in a number, at most 32 characters.
pub fn is_region(s: &str) -> bool {
    let words: Vec<&str> = s.split('-').collect();
    s.len() <= 32
        && words.len() >= 3
        && words[..words.len() - 1]
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && words
            .last()
            .is_some_and(|w| !w.is_empty() && w.len() <= 2 && w.bytes().all(|b| b.is_ascii_digit()))
}

/// The coordinator's key ids: 1-64 of `[A-Za-z0-9._-]`.
pub fn is_key_ring_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// An AWS secret access key: 40 of the base64 alphabet.
pub fn is_secret_access_key(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'+')
}

/// Free text from the other side: bounded, no control characters but
/// newlines and tabs (so it cannot forge lines in a log, a CSV file or a
/// mail header).
/// The rule of one place of use: an IP address or an AWS service's name as
/// the source, a bounded one-line user agent, a service and a region.
pub fn use_site_rule(site: &crate::plan::UseSite) -> Result<(), String> {
    let source_ok = site.source_ip.parse::<std::net::IpAddr>().is_ok()
        || ((1..=128).contains(&site.source_ip.len())
            && site
                .source_ip
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_ ".contains(&b)));
    if !source_ok {
        return Err(format!(
            "source `{}` is neither an IP address nor a service name",
            shown(&site.source_ip)
        ));
    }
    // Printable ASCII only: whoever holds the key writes it, and it is shown
    // to the owner (no control, bidirectional or line-separator characters).
    if site.user_agent.len() > crate::plan::MAX_USER_AGENT
        || !site.user_agent.bytes().all(|b| (0x20..=0x7e).contains(&b))
    {
        return Err(format!(
            "user agent `{}` is not one bounded line of printable ASCII",
            shown(&site.user_agent)
        ));
    }
    if !is_service_name(&site.service) {
        return Err(format!(
            "service `{}` is not an AWS service name",
            shown(&site.service)
        ));
    }
    if !is_region(&site.region) {
        return Err(format!(
            "region `{}` is not an AWS region name",
            shown(&site.region)
        ));
    }
    Ok(())
}

pub fn is_bounded_text(s: &str) -> bool {
    s.len() <= MAX_TEXT && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
}

/// Makes free text fit [`is_bounded_text`]: control characters other than
/// newlines and tabs become spaces, and the text is cut (on a character
/// boundary) to [`MAX_TEXT`] bytes. The agent passes its own error texts
/// through this, so an AWS error message of unusual shape never gets a
/// genuine result refused.
pub fn bound_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_TEXT));
    for c in s.chars() {
        let c = if c.is_control() && c != '\n' && c != '\t' {
            ' '
        } else {
            c
        };
        if out.len() + c.len_utf8() > MAX_TEXT {
            break;
        }
        out.push(c);
    }
    out
}

/// Passes every free text of the result through [`bound_text`].
pub(crate) fn bound_result_texts(result: &mut AccountResult) {
    let fix = |t: &mut Option<String>| {
        if let Some(s) = t {
            *s = bound_text(s);
        }
    };
    fix(&mut result.error);
    for u in &mut result.users {
        fix(&mut u.error);
        fix(&mut u.note);
        for a in &mut u.actions {
            match &mut a.result {
                Outcome::Skipped { reason: s } | Outcome::Failed { error: s } => *s = bound_text(s),
                Outcome::Planned | Outcome::Done { .. } => {}
            }
        }
    }
}

fn check(ok: bool, field: &'static str, reason: impl Into<String>) -> Result<(), ValidationError> {
    if ok {
        Ok(())
    } else {
        Err(ValidationError {
            field,
            reason: reason.into(),
        })
    }
}

fn check_common(
    v: u32,
    run_id: &str,
    account_id: &str,
    token: &Token,
) -> Result<(), ValidationError> {
    check(v == VERSION, "v", format!("must be {VERSION}"))?;
    check(is_run_id(run_id), "run_id", "must be 1-64 of [A-Za-z0-9-_]")?;
    check(is_account_id(account_id), "account_id", "must be 12 digits")?;
    check(token.is_well_formed(), "token", "must be 32 hex characters")
}

fn check_key_id(k: &str, field: &'static str) -> Result<(), ValidationError> {
    check(
        is_access_key_id(k),
        field,
        format!(
            "`{}` is not an access key id (16-128 of [A-Z0-9])",
            shown(k)
        ),
    )
}

fn check_text(s: &str, field: &'static str) -> Result<(), ValidationError> {
    check(
        is_bounded_text(s),
        field,
        format!("longer than {MAX_TEXT} bytes or holds control characters"),
    )
}

/// A value as an error message shows it: escaped and cut to 80 characters,
/// so a refused field never floods a log or smuggles a line into it.
pub(crate) fn shown(s: &str) -> String {
    one_line(s, 80)
}

/// `s` on one line (control characters, newlines included, escaped) and
/// cut to `max` characters of the original, with `…` when cut. Every text
/// a rejection carries passes through this: it reaches logs and the
/// security team's alerts, and its content may be the sender's choice.
pub fn one_line(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .collect::<String>()
        .escape_debug()
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

impl Validate for Job {
    fn validate(&self) -> Result<(), ValidationError> {
        check_common(self.v, &self.run_id, &self.account_id, &self.token)?;
        self.policy.validate().map_err(|e| ValidationError {
            field: "policy",
            reason: e.to_string(),
        })?;
        check(
            self.as_of.is_none() || self.dry_run,
            "as_of",
            "only allowed with dry_run",
        )?;
        check(
            self.issued_at <= self.deadline,
            "deadline",
            "must not be before issued_at",
        )?;
        check(
            self.results_queue_url.starts_with("https://")
                || self.results_queue_url.starts_with("http://"),
            "results_queue_url",
            "must be an http(s) SQS queue URL",
        )?;
        match &self.mode {
            JobMode::Scheduled => {}
            JobMode::Rotate { user, key_id, .. } => {
                check(is_user_name(user), "mode.user", "not a valid IAM user name")?;
                if let Some(k) = key_id {
                    check_key_id(k, "mode.key_id")?;
                }
            }
            JobMode::Reactivate { user, key_id } => {
                check(is_user_name(user), "mode.user", "not a valid IAM user name")?;
                check_key_id(key_id, "mode.key_id")?;
                check(
                    !self.dry_run,
                    "dry_run",
                    "a reactivation is never a dry run",
                )?;
            }
        }
        check(
            self.undelivered.len() <= MAX_USERS * MAX_KEYS_PER_USER,
            "undelivered",
            format!(
                "more than {} keys (IAM's users per account times keys per user)",
                MAX_USERS * MAX_KEYS_PER_USER
            ),
        )?;
        for k in &self.undelivered {
            check_key_id(k, "undelivered[]")?;
        }
        Ok(())
    }
}

impl Validate for AccountResult {
    fn degrade_informational(&mut self) {
        self.degrade();
    }

    fn validate(&self) -> Result<(), ValidationError> {
        check_common(self.v, &self.run_id, &self.account_id, &self.token)?;
        check(
            (1..=MAX_PARTS).contains(&self.parts),
            "parts",
            format!("must be between 1 and {MAX_PARTS}"),
        )?;
        check(
            self.part >= 1 && self.part <= self.parts,
            "part",
            format!("must be between 1 and parts ({})", self.parts),
        )?;
        if let Some(alias) = &self.account_alias {
            check(
                is_account_alias(alias),
                "account_alias",
                format!("`{}` is not an IAM account alias", shown(alias)),
            )?;
        }
        if let Some(e) = &self.error {
            check_text(e, "error")?;
        }
        check(
            self.started_at <= self.finished_at,
            "finished_at",
            "must not be before started_at",
        )?;
        check(
            self.api_calls.len() <= MAX_API_OPERATIONS,
            "api_calls",
            format!("more than {MAX_API_OPERATIONS} operations"),
        )?;
        for (op, n) in &self.api_calls {
            check(
                (1..=64).contains(&op.len())
                    && op.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':'),
                "api_calls",
                format!("`{}` is not an operation name", shown(op)),
            )?;
            check(
                *n <= MAX_CALLS_PER_OPERATION,
                "api_calls",
                format!("{n} calls of {op}: more than {MAX_CALLS_PER_OPERATION}"),
            )?;
        }
        check(
            self.users.len() <= MAX_USERS,
            "users",
            format!("more than {MAX_USERS} users in one part"),
        )?;
        let mut names = BTreeSet::new();
        for u in &self.users {
            check_user(u)?;
            check(
                names.insert(u.user_name.as_str()),
                "users[].user_name",
                format!("`{}` appears twice", u.user_name),
            )?;
        }
        check(
            self.sealed.len() <= self.users.len() * MAX_KEYS_PER_USER,
            "sealed",
            "more sealed credentials than the users in this part can hold keys",
        )?;
        let mut sealed_keys = BTreeSet::new();
        for s in &self.sealed {
            check_sealed(s)?;
            check(
                names.contains(s.user_name.as_str()),
                "sealed[].user_name",
                format!(
                    "`{}` has a sealed credential but no entry in this part",
                    s.user_name
                ),
            )?;
            check(
                sealed_keys.insert(s.access_key_id.as_str()),
                "sealed[].access_key_id",
                format!("`{}` is sealed twice", s.access_key_id),
            )?;
        }
        Ok(())
    }
}

fn check_user(u: &UserReport) -> Result<(), ValidationError> {
    check(
        is_user_name(&u.user_name),
        "users[].user_name",
        format!("`{}` is not a valid IAM user name", shown(&u.user_name)),
    )?;
    check(
        is_iam_path(&u.path),
        "users[].path",
        format!("`{}` is not an IAM path", shown(&u.path)),
    )?;
    if let Some(e) = &u.email {
        // The deliverability rule itself is the policy's, applied per user
        // when mailing (a bad tag refuses that owner, not the account);
        // here only what no address can be.
        check(
            e.len() <= 254 && is_bounded_text(e),
            "users[].email",
            "longer than 254 bytes or holds control characters",
        )?;
    }
    if let Some(e) = &u.error {
        check_text(e, "users[].error")?;
    }
    if let Some(n) = &u.note {
        check_text(n, "users[].note")?;
    }
    check(
        u.keys.len() <= MAX_KEYS_PER_USER,
        "users[].keys",
        format!("more than {MAX_KEYS_PER_USER} keys (IAM's limit)"),
    )?;
    for k in &u.keys {
        check_key(k)?;
    }
    check(
        u.actions.len() <= MAX_ACTIONS_PER_USER,
        "users[].actions",
        format!("more than {MAX_ACTIONS_PER_USER} actions for one user"),
    )?;
    for a in &u.actions {
        check_action(a)?;
    }
    Ok(())
}

fn check_key(k: &KeyState) -> Result<(), ValidationError> {
    // Empty when the agent did not read the id: the credential report has
    // no key ids, and they are read only for users something is due for.
    if !k.id.is_empty() {
        check_key_id(&k.id, "users[].keys[].id")?;
    }
    if let Some(s) = &k.last_used_service {
        check(
            is_service_name(s),
            "users[].keys[].last_used_service",
            format!("`{}` is not an AWS service name", shown(s)),
        )?;
    }
    if let Some(r) = &k.last_used_region {
        check(
            is_region(r),
            "users[].keys[].last_used_region",
            format!("`{}` is not an AWS region name", shown(r)),
        )?;
    }
    Ok(())
}

fn check_action(a: &ActionRecord) -> Result<(), ValidationError> {
    match &a.action {
        Action::CreateKey => {}
        Action::Deactivate { key_id }
        | Action::Delete { key_id }
        | Action::Reactivate { key_id } => check_key_id(key_id, "users[].actions[].key_id")?,
        Action::Notify { notice } => check_notice(notice)?,
    }
    match &a.result {
        Outcome::Planned => {}
        Outcome::Done { key_id } => {
            if let Some(k) = key_id {
                check_key_id(k, "users[].actions[].result.key_id")?;
            }
        }
        Outcome::Skipped { reason } => check_text(reason, "users[].actions[].result.reason")?,
        Outcome::Failed { error } => check_text(error, "users[].actions[].result.error")?,
    }
    Ok(())
}

fn check_notice(n: &Notice) -> Result<(), ValidationError> {
    const FIELD: &str = "users[].actions[].notice";
    check_key_id(n.key_id(), FIELD)?;
    let replacement = match n {
        Notice::DeactivationScheduled { replacement, .. }
        | Notice::Deactivated { replacement, .. } => replacement.as_deref(),
        Notice::StillInUse {
            service,
            region,
            replacement,
            used_from,
            ..
        } => {
            if let Some(s) = service {
                check(
                    is_service_name(s),
                    FIELD,
                    format!("service `{}` is not an AWS service name", shown(s)),
                )?;
            }
            if let Some(r) = region {
                check(
                    is_region(r),
                    FIELD,
                    format!("region `{}` is not an AWS region name", shown(r)),
                )?;
            }
            check(
                used_from.len() <= crate::plan::MAX_USE_SITES,
                FIELD,
                format!("more than {} places of use", crate::plan::MAX_USE_SITES),
            )?;
            for site in used_from {
                if let Err(why) = use_site_rule(site) {
                    check(false, FIELD, why)?;
                }
            }
            replacement.as_deref()
        }
        Notice::Deleted { .. } | Notice::UnusedDeleted { .. } | Notice::Reactivated { .. } => None,
    };
    if let Some(k) = replacement {
        check_key_id(k, FIELD)?;
    }
    Ok(())
}

fn check_sealed(s: &SealedCredential) -> Result<(), ValidationError> {
    check(
        is_user_name(&s.user_name),
        "sealed[].user_name",
        format!("`{}` is not a valid IAM user name", shown(&s.user_name)),
    )?;
    check_key_id(&s.access_key_id, "sealed[].access_key_id")?;
    check(
        is_key_ring_id(&s.key_id),
        "sealed[].key_id",
        format!("`{}` is not a coordinator key id", shown(&s.key_id)),
    )?;
    check(
        !s.enc.is_empty() && s.enc.len() <= MAX_SEALED_FIELD,
        "sealed[].enc",
        format!("empty or longer than {MAX_SEALED_FIELD} bytes"),
    )?;
    check(
        !s.ciphertext.is_empty() && s.ciphertext.len() <= MAX_SEALED_FIELD,
        "sealed[].ciphertext",
        format!("empty or longer than {MAX_SEALED_FIELD} bytes"),
    )
}

impl Validate for RunManifest {
    fn validate(&self) -> Result<(), ValidationError> {
        check(self.v == VERSION, "v", format!("must be {VERSION}"))?;
        check(
            is_run_id(&self.run_id),
            "run_id",
            "must be 1-64 of [A-Za-z0-9-_]",
        )?;
        for a in &self.accounts {
            check(
                is_account_id(&a.account_id),
                "accounts[].account_id",
                "must be 12 digits",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
