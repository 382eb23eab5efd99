//! Reading an account's users and keys with as few IAM calls as possible.
//!
//! The cheap path costs a fixed number of calls whatever the number of users:
//! GenerateCredentialReport + GetCredentialReport (every user's key status,
//! creation and last use in one CSV) and GetAccountAuthorizationDetails
//! (users with paths and tags, 100 per page). Key ids are not in the report,
//! so ListAccessKeys and GetAccessKeyLastUsed are called only for the users
//! the rules say something is due for ([`refresh_user`]); that second read
//! is also the truth the executor acts on, which matters because AWS serves
//! a cached credential report for up to four hours.
//!
//! When the report cannot be had (permission missing, generation stuck) the
//! scan falls back to ListUsers + ListUserTags + ListAccessKeys +
//! GetAccessKeyLastUsed per user, and says so in the result. Every list call
//! paginates.
//!
//! The credential report also says, per user, whether an MFA device is
//! active and whether a console password is enabled; the scan carries both
//! to the result for the report's hygiene findings. The per-user fallback
//! leaves them unknown (`None`) rather than spend two more IAM calls per
//! user (ListMFADevices, GetLoginProfile) on a path that exists for when
//! IAM is already hard to read.

use crate::rules::UserSnapshot;
use aws_sdk_iam::types::{EntityType, ReportStateType, StatusType};
use aws_sdk_iam::Client as Iam;
use keyfleet_protocol::{KeyState, KeyStatus, ScanMode};
use std::collections::HashMap;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A scan failure that stops the whole account (a per-user failure is
/// reported on the user instead).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("IAM {op} failed: {message}")]
    Iam { op: &'static str, message: String },
    #[error("credential report is malformed: {0}")]
    Report(String),
    /// AWS was still building the report after every poll (see
    /// [`ReportPolling`]); the scan falls back to reading user by user.
    #[error("credential report still in progress after {attempts} GenerateCredentialReport calls")]
    ReportNotReady { attempts: u32 },
}

/// Formats an SDK error with its service code, without request bodies.
pub fn sdk_message<E, R>(e: &aws_sdk_iam::error::SdkError<E, R>) -> String
where
    E: aws_sdk_iam::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_iam::error::ProvideErrorMetadata;
    match e.code() {
        Some(code) => format!("{code}: {}", e.message().unwrap_or("")),
        None => aws_sdk_iam::error::DisplayErrorContext(e).to_string(),
    }
}

fn iam_err<E, R>(op: &'static str) -> impl Fn(aws_sdk_iam::error::SdkError<E, R>) -> ScanError
where
    E: aws_sdk_iam::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| ScanError::Iam {
        op,
        message: sdk_message(&e),
    }
}

/// A user as scanned: what the rules need, plus where the data came from.
#[derive(Debug, Clone)]
pub struct ScannedUser {
    pub snapshot: UserSnapshot,
    pub arn: String,
    /// True when `snapshot.keys` came from ListAccessKeys (ids known).
    pub keys_exact: bool,
    /// Set when this user could not be read (fallback scan): the user is
    /// reported failed, the others go on.
    pub error: Option<String>,
    /// False when the credential report had no row for the user (created
    /// after the report, which AWS caches for up to four hours, or a name
    /// the report's unquoted CSV cannot carry, such as one with a comma):
    /// its keys must be read directly.
    pub in_report: bool,
    /// The credential report's `mfa_active`; `None` when unknown (per-user
    /// scan, or no row for the user).
    pub mfa_active: Option<bool>,
    /// The credential report's `password_enabled`; `None` when unknown.
    pub password_enabled: Option<bool>,
}

/// One user's row of the credential report: keys (ids unknown) and the two
/// credential facts the report's findings need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialReportRow {
    pub keys: Vec<KeyState>,
    /// `mfa_active`: `None` unless the cell reads `true` or `false`.
    pub mfa_active: Option<bool>,
    /// `password_enabled`: `None` unless the cell reads `true` or `false`
    /// (AWS writes `not_supported` for the root account, which the parser
    /// skips anyway).
    pub password_enabled: Option<bool>,
}

/// The whole account.
#[derive(Debug, Clone)]
pub struct AccountScan {
    pub mode: ScanMode,
    pub users: Vec<ScannedUser>,
}

pub fn to_time(dt: &aws_smithy_types::DateTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(dt.as_nanos()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Scans the account: report path first, per-user fallback if needed.
pub async fn scan_account(iam: &Iam, polling: &ReportPolling) -> Result<AccountScan, ScanError> {
    match credential_report(iam, polling).await {
        Ok(report) => {
            let users = authorization_details(iam).await?;
            let users = users
                .into_iter()
                .map(|(snapshot, arn)| {
                    let row = report.get(&snapshot.user_name).cloned();
                    let in_report = row.is_some();
                    let row = row.unwrap_or_default();
                    ScannedUser {
                        error: None,
                        in_report,
                        mfa_active: row.mfa_active,
                        password_enabled: row.password_enabled,
                        snapshot: UserSnapshot {
                            keys: row.keys,
                            ..snapshot
                        },
                        arn,
                        keys_exact: false,
                    }
                })
                .collect();
            Ok(AccountScan {
                mode: ScanMode::CredentialReport,
                users,
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "credential report unavailable; scanning user by user");
            let users = per_user_scan(iam).await?;
            Ok(AccountScan {
                mode: ScanMode::PerUser,
                users,
            })
        }
    }
}

/// The account alias, for owner emails. Only asked when some user has an
/// action or notice, so a quiet account costs no extra call.
pub async fn account_alias(iam: &Iam) -> Result<Option<String>, ScanError> {
    let out = iam
        .list_account_aliases()
        .send()
        .await
        .map_err(iam_err("ListAccountAliases"))?;
    Ok(out.account_aliases().first().cloned())
}

/// How the scan waits for AWS to build the credential report.
///
/// AWS builds it asynchronously (GenerateCredentialReport answers `STARTED`,
/// then `INPROGRESS`, until it answers `COMPLETE`), usually within seconds.
/// The default polls 12 times, waiting 250 ms and doubling up to 4 s (about
/// 32 s in all), then gives up and scans user by user: a report that slow
/// is not worth more of the Lambda's time. Tests of the give-up path
/// shorten the waits with [`crate::Agent::with_report_polling`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportPolling {
    /// GenerateCredentialReport calls before giving up (at least one is
    /// made).
    pub attempts: u32,
    /// The wait after the first answer that is not `COMPLETE`.
    pub first_delay: Duration,
    /// The longest wait: each further wait doubles the previous one up to
    /// this.
    pub max_delay: Duration,
}

impl Default for ReportPolling {
    fn default() -> Self {
        ReportPolling {
            attempts: 12,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
        }
    }
}

/// Generates (polling while AWS builds it) and reads the credential report.
async fn credential_report(
    iam: &Iam,
    polling: &ReportPolling,
) -> Result<HashMap<String, CredentialReportRow>, ScanError> {
    let attempts = polling.attempts.max(1);
    let mut delay = polling.first_delay;
    let mut attempt = 1;
    loop {
        let out = iam
            .generate_credential_report()
            .send()
            .await
            .map_err(iam_err("GenerateCredentialReport"))?;
        if out.state() == Some(&ReportStateType::Complete) {
            break;
        }
        if attempt >= attempts {
            return Err(ScanError::ReportNotReady { attempts });
        }
        // AWS builds the report asynchronously; this is its documented
        // polling protocol, not test synchronisation.
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(polling.max_delay);
        attempt += 1;
    }
    let out = iam
        .get_credential_report()
        .send()
        .await
        .map_err(iam_err("GetCredentialReport"))?;
    let content = out
        .content()
        .ok_or_else(|| ScanError::Report("empty report".into()))?;
    parse_credential_report(content.as_ref())
}

fn parse_date(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if s.is_empty() || s == "N/A" || s == "not_supported" || s == "no_information" {
        return None;
    }
    OffsetDateTime::parse(s, &Rfc3339).ok().or_else(|| {
        // AWS writes `2026-01-02T03:04:05+00:00`; accept a missing offset too.
        OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339).ok()
    })
}

/// A credential report flag: `true`/`false` (any case); anything else
/// (`not_supported`, `N/A`, empty, a missing column) is unknown.
fn parse_flag(s: Option<&str>) -> Option<bool> {
    match s.map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("true") => Some(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn opt_field(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|v| !v.is_empty() && *v != "N/A" && *v != "no_information")
        .map(str::to_string)
}

/// Parses the credential report CSV into each user's row: keys (ids
/// unknown), MFA and console password. The root account's row is skipped:
/// keyfleet manages IAM users, and the root user is not one.
pub fn parse_credential_report(
    bytes: &[u8],
) -> Result<HashMap<String, CredentialReportRow>, ScanError> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let headers = rdr
        .headers()
        .map_err(|e| ScanError::Report(e.to_string()))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let user_col = col("user").ok_or_else(|| ScanError::Report("no `user` column".into()))?;
    let mut out = HashMap::new();
    for row in rdr.records() {
        let row = row.map_err(|e| ScanError::Report(e.to_string()))?;
        let user = row.get(user_col).unwrap_or("").to_string();
        if user.is_empty() || user == "<root_account>" {
            continue;
        }
        let cell = |name: &str| col(name).and_then(|i| row.get(i));
        let mut keys = Vec::new();
        for n in 1..=2 {
            let get = |suffix: &str| cell(&format!("access_key_{n}_{suffix}"));
            let Some(created) = get("last_rotated").and_then(parse_date) else {
                continue;
            };
            let active = parse_flag(get("active")) == Some(true);
            keys.push(KeyState {
                id: String::new(),
                status: if active {
                    KeyStatus::Active
                } else {
                    KeyStatus::Inactive
                },
                created,
                last_used: get("last_used_date").and_then(parse_date),
                last_used_service: opt_field(get("last_used_service")),
                last_used_region: opt_field(get("last_used_region")),
            });
        }
        out.insert(
            user,
            CredentialReportRow {
                keys,
                mfa_active: parse_flag(cell("mfa_active")),
                password_enabled: parse_flag(cell("password_enabled")),
            },
        );
    }
    Ok(out)
}

fn tags_of(tags: &[aws_sdk_iam::types::Tag]) -> Vec<(String, String)> {
    tags.iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

/// Users with paths and tags, all pages.
async fn authorization_details(iam: &Iam) -> Result<Vec<(UserSnapshot, String)>, ScanError> {
    let mut pages = iam
        .get_account_authorization_details()
        .filter(EntityType::User)
        .into_paginator()
        .send();
    let mut users = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(iam_err("GetAccountAuthorizationDetails"))?;
        for u in page.user_detail_list() {
            users.push((
                UserSnapshot {
                    user_name: u.user_name().unwrap_or_default().to_string(),
                    path: u.path().unwrap_or("/").to_string(),
                    tags: tags_of(u.tags()),
                    keys: Vec::new(),
                    deactivated: Vec::new(),
                    reactivated: Vec::new(),
                    deliveries: Vec::new(),
                    handed_over: Vec::new(),
                },
                u.arn().unwrap_or_default().to_string(),
            ));
        }
    }
    Ok(users)
}

/// Fallback: every user with ListUsers, then tags and keys per user.
async fn per_user_scan(iam: &Iam) -> Result<Vec<ScannedUser>, ScanError> {
    let mut pages = iam.list_users().into_paginator().send();
    let mut users = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(iam_err("ListUsers"))?;
        for u in page.users() {
            users.push((
                u.user_name().to_string(),
                u.path().to_string(),
                u.arn().to_string(),
            ));
        }
    }
    let mut out = Vec::with_capacity(users.len());
    for (name, path, arn) in users {
        // One unreadable user (deleted meanwhile, a denied call) is reported
        // on that user; the others are still scanned.
        let read = async {
            let mut tags = Vec::new();
            let mut tp = iam
                .list_user_tags()
                .user_name(&name)
                .into_paginator()
                .send();
            while let Some(page) = tp.next().await {
                let page = page.map_err(iam_err("ListUserTags"))?;
                tags.extend(tags_of(page.tags()));
            }
            let keys = list_keys(iam, &name).await?;
            Ok::<_, ScanError>((tags, keys))
        };
        let (tags, keys, error) = match read.await {
            Ok((tags, keys)) => (tags, keys, None),
            Err(e) => (Vec::new(), Vec::new(), Some(e.to_string())),
        };
        out.push(ScannedUser {
            snapshot: UserSnapshot {
                user_name: name,
                path,
                tags,
                keys,
                deactivated: Vec::new(),
                reactivated: Vec::new(),
                deliveries: Vec::new(),
                handed_over: Vec::new(),
            },
            arn,
            keys_exact: true,
            in_report: true,
            // Not read: see the module documentation.
            mfa_active: None,
            password_enabled: None,
            error,
        });
    }
    Ok(out)
}

/// The user's keys with ids and last use, straight from IAM.
pub async fn list_keys(iam: &Iam, user: &str) -> Result<Vec<KeyState>, ScanError> {
    let mut pages = iam
        .list_access_keys()
        .user_name(user)
        .into_paginator()
        .send();
    let mut keys = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(iam_err("ListAccessKeys"))?;
        for k in page.access_key_metadata() {
            let Some(id) = k.access_key_id() else {
                continue;
            };
            keys.push(KeyState {
                id: id.to_string(),
                status: if k.status() == Some(&StatusType::Active) {
                    KeyStatus::Active
                } else {
                    KeyStatus::Inactive
                },
                created: k
                    .create_date()
                    .map(to_time)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                last_used: None,
                last_used_service: None,
                last_used_region: None,
            });
        }
    }
    for k in &mut keys {
        let out = iam
            .get_access_key_last_used()
            .access_key_id(&k.id)
            .send()
            .await
            .map_err(iam_err("GetAccessKeyLastUsed"))?;
        if let Some(lu) = out.access_key_last_used() {
            k.last_used = lu.last_used_date().map(to_time);
            k.last_used_service = opt_field(Some(lu.service_name()));
            k.last_used_region = opt_field(Some(lu.region()));
        }
    }
    keys.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    Ok(keys)
}

/// Replaces a report-based snapshot's keys with IAM's exact view.
pub async fn refresh_user(iam: &Iam, user: &mut ScannedUser) -> Result<(), ScanError> {
    if !user.keys_exact {
        user.snapshot.keys = list_keys(iam, &user.snapshot.user_name).await?;
        user.keys_exact = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aws_credential_report_format() {
        let csv = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated\n\
<root_account>,arn:aws:iam::111122223333:root,2020-01-01T00:00:00+00:00,not_supported,no_information,not_supported,not_supported,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n\
alice+ci@x,arn:aws:iam::111122223333:user/eng/alice+ci@x,2020-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,true,2026-01-01T00:00:00+00:00,2026-02-01T10:00:00+00:00,eu-west-1,s3,false,2025-06-01T00:00:00+00:00,N/A,N/A,N/A,false,N/A,false,N/A\n\
bob,arn:aws:iam::111122223333:user/bob,2020-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n";
        let r = parse_credential_report(csv.as_bytes()).unwrap();
        assert!(!r.contains_key("<root_account>"));
        assert!(r["bob"].keys.is_empty());
        assert_eq!(
            (r["bob"].mfa_active, r["bob"].password_enabled),
            (Some(false), Some(false))
        );
        let a = &r["alice+ci@x"].keys;
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].status, KeyStatus::Active);
        assert_eq!(a[0].last_used_service.as_deref(), Some("s3"));
        assert_eq!(a[0].last_used_region.as_deref(), Some("eu-west-1"));
        assert_eq!(a[1].status, KeyStatus::Inactive);
        assert_eq!(a[1].last_used, None);
    }

    /// AWS's header, as in `parses_aws_credential_report_format`.
    const HEADER: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated";

    /// A user row with the given `password_enabled` and `mfa_active` cells
    /// and one active key.
    fn row(user: &str, password_enabled: &str, mfa_active: &str) -> String {
        format!(
            "{user},arn:aws:iam::111122223333:user/{user},2020-01-01T00:00:00+00:00,{password_enabled},N/A,N/A,N/A,{mfa_active},true,2026-01-01T00:00:00+00:00,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A"
        )
    }

    #[test]
    fn reads_mfa_and_console_password_per_user() {
        let csv = [
            HEADER.to_string(),
            "<root_account>,arn:aws:iam::111122223333:root,2020-01-01T00:00:00+00:00,not_supported,2026-01-01T00:00:00+00:00,not_supported,not_supported,true,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A".to_string(),
            row("person", "true", "false"),
            row("guarded", "true", "true"),
            row("workload", "false", "false"),
            row("shouty", "TRUE", "False"),
            row("odd", "not_supported", "N/A"),
            row("blank", "", ""),
        ]
        .join("\n");
        let r = parse_credential_report(csv.as_bytes()).unwrap();
        assert!(!r.contains_key("<root_account>"), "root is no IAM user");
        let flags = |u: &str| (r[u].password_enabled, r[u].mfa_active);
        assert_eq!(flags("person"), (Some(true), Some(false)));
        assert_eq!(flags("guarded"), (Some(true), Some(true)));
        assert_eq!(flags("workload"), (Some(false), Some(false)));
        assert_eq!(flags("shouty"), (Some(true), Some(false)));
        assert_eq!(flags("odd"), (None, None), "not `false`: unknown");
        assert_eq!(flags("blank"), (None, None));
        // The keys are read as before.
        assert_eq!(r["person"].keys.len(), 1);
        assert_eq!(r["person"].keys[0].status, KeyStatus::Active);
    }

    #[test]
    fn a_report_without_the_columns_or_with_short_rows_leaves_them_unknown() {
        let no_columns = "user,access_key_1_active,access_key_1_last_rotated\n\
                          alice,true,2026-01-01T00:00:00+00:00\n";
        let r = parse_credential_report(no_columns.as_bytes()).unwrap();
        assert_eq!(r["alice"].keys.len(), 1);
        assert_eq!(
            (r["alice"].mfa_active, r["alice"].password_enabled),
            (None, None)
        );

        // A row cut short before `mfa_active` (the reader is flexible).
        let short = format!(
            "{HEADER}\nbob,arn:aws:iam::111122223333:user/bob,2020-01-01T00:00:00+00:00,true\n"
        );
        let r = parse_credential_report(short.as_bytes()).unwrap();
        assert_eq!(
            (r["bob"].password_enabled, r["bob"].mfa_active),
            (Some(true), None)
        );
        assert!(r["bob"].keys.is_empty());
    }

    #[test]
    fn malformed_report_is_an_error_not_a_panic() {
        assert!(parse_credential_report(b"foo,bar\n1,2\n").is_err());
        assert!(parse_credential_report(b"").is_err());
    }
}
