//! Enumerating the organization: which accounts get a job.
//!
//! The selection itself is a pure function ([`select`]) so its rules are
//! tested directly: only ACTIVE accounts (by the account's `State`: AWS
//! retired the `Status` field on 2026-09-09, so an account without a `State`
//! is not treated as active); excluded account ids and every
//! account anywhere under an excluded OU are left out, each with the reason
//! recorded in the run manifest; an explicit account list (`run --accounts`)
//! narrows the run further, and an id in it that the organization does not
//! list is recorded as skipped too (a typo is never a silent no-op).

use aws_sdk_organizations::types::AccountState;
use aws_sdk_organizations::Client as Org;
use keyfleet_protocol::SkippedAccount;
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAccount {
    pub id: String,
    pub name: String,
    /// Organizations' `State` (`ACTIVE`, `SUSPENDED`, `PENDING_CLOSURE`,
    /// ...); empty when the response carried none.
    pub state: String,
}

impl OrgAccount {
    pub fn is_active(&self) -> bool {
        self.state == AccountState::Active.as_str()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("Organizations {op} failed: {message}")]
pub struct OrgError {
    pub op: &'static str,
    pub message: String,
}

/// "Code: message" when Organizations answered with an error (what an
/// operator can act on, e.g. an AccessDenied naming the missing
/// permission), the whole chain when it could not be asked at all.
fn org_err<E, R>(
    op: &'static str,
) -> impl Fn(aws_sdk_organizations::error::SdkError<E, R>) -> OrgError
where
    E: aws_sdk_organizations::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| {
        use aws_sdk_organizations::error::ProvideErrorMetadata;
        let message = match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            _ => aws_sdk_organizations::error::DisplayErrorContext(&e).to_string(),
        };
        OrgError { op, message }
    }
}

/// Every account of the organization (paginated).
pub async fn list_accounts(org: &Org) -> Result<Vec<OrgAccount>, OrgError> {
    let mut out = Vec::new();
    let mut pages = org.list_accounts().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(org_err("ListAccounts"))?;
        for a in page.accounts() {
            out.push(OrgAccount {
                id: a.id().unwrap_or_default().to_string(),
                name: a.name().unwrap_or_default().to_string(),
                state: a
                    .state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// Every account anywhere under `ou` (walks child OUs, paginated).
pub async fn accounts_under(org: &Org, ou: &str) -> Result<BTreeSet<String>, OrgError> {
    let mut found = BTreeSet::new();
    let mut stack = vec![ou.to_string()];
    while let Some(parent) = stack.pop() {
        let mut pages = org
            .list_accounts_for_parent()
            .parent_id(&parent)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(org_err("ListAccountsForParent"))?;
            found.extend(
                page.accounts()
                    .iter()
                    .filter_map(|a| a.id().map(str::to_string)),
            );
        }
        let mut pages = org
            .list_organizational_units_for_parent()
            .parent_id(&parent)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(org_err("ListOrganizationalUnitsForParent"))?;
            stack.extend(
                page.organizational_units()
                    .iter()
                    .filter_map(|o| o.id().map(str::to_string)),
            );
        }
    }
    Ok(found)
}

/// Splits the organization into the accounts that get a job and the ones
/// left out (with the reason).
pub fn select(
    accounts: &[OrgAccount],
    exclude_ids: &BTreeSet<String>,
    under_excluded_ous: &BTreeSet<String>,
    only: Option<&BTreeSet<String>>,
) -> (Vec<OrgAccount>, Vec<SkippedAccount>) {
    let mut selected = Vec::new();
    let mut skipped = Vec::new();
    for a in accounts {
        let reason = if only.is_some_and(|o| !o.contains(&a.id)) {
            None // not asked for: not part of this run at all
        } else if !a.is_active() {
            Some(match a.state.as_str() {
                "" => "account is not ACTIVE (Organizations reported no state)".to_string(),
                state => format!("account is not ACTIVE (state {state})"),
            })
        } else if exclude_ids.contains(&a.id) {
            Some("excluded by account id".to_string())
        } else if under_excluded_ous.contains(&a.id) {
            Some("under an excluded organizational unit".to_string())
        } else {
            selected.push(a.clone());
            continue;
        };
        if let Some(r) = reason {
            skipped.push(SkippedAccount {
                account_id: a.id.clone(),
                name: a.name.clone(),
                reason: r,
            });
        }
    }
    if let Some(only) = only {
        let listed: BTreeSet<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
        for id in only.iter().filter(|id| !listed.contains(id.as_str())) {
            skipped.push(SkippedAccount {
                account_id: id.clone(),
                name: String::new(),
                reason: "not an account of the organization".to_string(),
            });
        }
    }
    selected.sort_by(|a, b| a.id.cmp(&b.id));
    (selected, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(id: &str, active: bool) -> OrgAccount {
        OrgAccount {
            id: id.into(),
            name: format!("n{id}"),
            state: if active { "ACTIVE" } else { "SUSPENDED" }.into(),
        }
    }

    #[test]
    fn selection_applies_every_rule_and_records_reasons() {
        let accounts = vec![
            acct("111111111111", true),
            acct("222222222222", false),
            acct("333333333333", true),
            acct("444444444444", true),
            acct("555555555555", true),
        ];
        let ex: BTreeSet<String> = ["333333333333".to_string()].into();
        let ou: BTreeSet<String> = ["444444444444".to_string()].into();
        let (sel, skip) = select(&accounts, &ex, &ou, None);
        let ids: Vec<&str> = sel.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["111111111111", "555555555555"]);
        let reasons: Vec<(&str, &str)> = skip
            .iter()
            .map(|s| (s.account_id.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("222222222222", "account is not ACTIVE (state SUSPENDED)"),
                ("333333333333", "excluded by account id"),
                ("444444444444", "under an excluded organizational unit"),
            ]
        );
        // An account listed without a `State` is never taken for active.
        let stateless = OrgAccount {
            state: String::new(),
            ..acct("666666666666", true)
        };
        let (sel, skip) = select(&[stateless], &ex, &ou, None);
        assert!(sel.is_empty());
        assert_eq!(
            skip[0].reason,
            "account is not ACTIVE (Organizations reported no state)"
        );
        let only: BTreeSet<String> =
            ["555555555555".to_string(), "333333333333".to_string()].into();
        let (sel, skip) = select(&accounts, &ex, &ou, Some(&only));
        assert_eq!(sel.len(), 1);
        assert_eq!(
            skip.len(),
            1,
            "only the asked-for excluded account is reported"
        );
        // An asked-for id the organization does not list is named too, so a
        // typo in `--accounts` is not a silent no-op.
        let only: BTreeSet<String> =
            ["555555555555".to_string(), "999999999999".to_string()].into();
        let (sel, skip) = select(&accounts, &ex, &ou, Some(&only));
        assert_eq!(sel.len(), 1);
        assert_eq!(
            skip,
            vec![SkippedAccount {
                account_id: "999999999999".into(),
                name: String::new(),
                reason: "not an account of the organization".into(),
            }]
        );
    }
}
