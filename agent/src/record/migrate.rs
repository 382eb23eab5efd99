//! Upgrade in place: the records of earlier releases move into the table.
//!
//! An account that ran an earlier release holds a secret `keyfleet/<user>`
//! per user it ever rotated ([`super::legacy`]). The first run of this
//! release that takes the lease lists them (`ListSecrets`, names under
//! `keyfleet/`, paginated) and, for each user the scan found:
//!
//! - a trusted record is written into the table when the table has none
//!   for the user yet (a conditional write: a record the table already
//!   holds is newer and stays), without any secret access key;
//! - then the secret goes: deleted at once (no recovery window, nothing in
//!   it is needed any more) with email delivery; with Secrets Manager
//!   delivery (or both) it is the user's delivery secret, rewritten in the
//!   conventional shape from the record's current key
//!   ([`crate::delivery`]);
//! - a half-made record (its creation stopped before its policy) held
//!   nothing keyfleet needs and is deleted likewise (email delivery);
//! - a secret that is not keyfleet's is left alone (logged).
//!
//! A crash half-way is harmless: the next run lists what is left and
//! finishes (a record already in the table is not written again). Once a
//! listing finds nothing left to move, the lease remembers it
//! ([`crate::lease::Lease::migrated`]) and later runs skip the listing.
//! A secret whose user the scan did not find (the user was deleted) is
//! left for the next run that sees the user, i.e. for ever: its user is
//! gone, and so is the $0.40 a month once the operator deletes it.

use super::legacy::{self, Found};
use super::{item_key, UserRecord};
use crate::table::{Table, Written};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use aws_sdk_secretsmanager::Client as Sm;
use keyfleet_protocol::{Credential, Secret};

/// What a migration pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// Records written into the table.
    pub moved: usize,
    /// Secrets deleted or rewritten as delivery secrets.
    pub retired: usize,
    /// Secrets left in place: not keyfleet's, or of users not scanned.
    pub left: usize,
}

impl Migrated {
    /// Nothing of keyfleet's is left to move.
    pub fn done(&self) -> bool {
        self.left == 0
    }
}

/// Moves the account's earlier records into the table (see the module
/// documentation). `users` are the scanned users' names and ARNs;
/// `by_secrets_manager` whether the policy delivers keys through Secrets
/// Manager. Errors stop the pass (the next run resumes it).
pub async fn migrate(
    table: &Table,
    sm: &Sm,
    account_id: &str,
    users: &[(String, String)],
    by_secrets_manager: bool,
) -> Result<Migrated, String> {
    let mut names = Vec::new();
    let mut pages = sm
        .list_secrets()
        .filters(
            Filter::builder()
                .key(FilterNameStringType::Name)
                .values("keyfleet/")
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| format!("ListSecrets: {}", legacy::sm_message(&e)))?;
        names.extend(
            page.secret_list()
                .iter()
                .filter_map(|s| s.name().map(str::to_string)),
        );
    }
    let mut done = Migrated::default();
    for name in names {
        let Some((user, arn)) = users.iter().find(|(u, _)| legacy::secret_name(u) == name) else {
            done.left += 1;
            continue;
        };
        let found = legacy::load(sm, account_id, user, arn)
            .await
            .map_err(|e| e.to_string())?;
        match found {
            Found::Trusted(record) => {
                move_record(table, &record).await?;
                done.moved += 1;
                retire(sm, &name, arn, &record, by_secrets_manager).await?;
                done.retired += 1;
            }
            Found::HalfMade if !by_secrets_manager => {
                delete(sm, &name).await?;
                done.retired += 1;
            }
            // With Secrets Manager delivery the next key completes it.
            Found::HalfMade => {}
            Found::Absent => {}
            Found::Untrusted { reason } => {
                // Only a delivery secret keyfleet already rewrote reads as
                // "not a keyfleet record" with keyfleet's policy: it is the
                // user's delivery secret, not a record.
                if by_secrets_manager && reason.contains("content") {
                    continue;
                }
                tracing::warn!(secret = %name, reason = %reason, "a secret under keyfleet/ that is not keyfleet's record; left alone");
                done.left += 1;
            }
        }
    }
    Ok(done)
}

/// Writes the record into the table unless the table has one already.
async fn move_record(table: &Table, record: &UserRecord) -> Result<(), String> {
    let mut stored = record.clone();
    if let Some(c) = &mut stored.current {
        c.secret_access_key = None;
    }
    let body = serde_json::to_string(&stored).expect("the record always serializes");
    match table
        .put(&item_key(&record.user_name), &body, None)
        .await
        .map_err(|e| e.to_string())?
    {
        // Written now, or already there from an earlier pass or a newer run.
        Written::At(_) | Written::Conflict => Ok(()),
    }
}

/// Deletes the earlier record's secret, or rewrites it as the user's
/// delivery secret.
async fn retire(
    sm: &Sm,
    name: &str,
    user_arn: &str,
    record: &UserRecord,
    by_secrets_manager: bool,
) -> Result<(), String> {
    if !by_secrets_manager {
        return delete(sm, name).await;
    }
    let Some(current) = &record.current else {
        return Ok(());
    };
    let Some(secret) = &current.secret_access_key else {
        return Ok(());
    };
    let created = time::OffsetDateTime::parse(
        &current.created,
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let cred = Credential {
        account_id: record.account_id.clone(),
        user_name: record.user_name.clone(),
        access_key_id: current.access_key_id.clone(),
        secret_access_key: Secret::new(secret.expose()),
        created,
    };
    crate::delivery::store(sm, user_arn, &cred).await
}

async fn delete(sm: &Sm, name: &str) -> Result<(), String> {
    legacy::delete(sm, name)
        .await
        .map_err(|e| format!("DeleteSecret {name}: {e}"))
}
