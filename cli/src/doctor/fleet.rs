//! The agents: the StackSet that rolls them out, and what each member
//! account holds.

use super::central::{Deployed, Org};
use super::resources::admits_only;
use super::{Check, Ctx};
use futures::stream::{self, StreamExt};
use keyfleet_protocol::aws_error::describe;
use std::collections::{BTreeMap, BTreeSet};

/// The accounts a run serves: the organization's active accounts but the
/// management account (a service-managed StackSet never deploys there)
/// and those the coordinator excludes, by id or by OU (nested OUs
/// included).
/// `None` when the organization could not be listed (see `organization`).
/// Read once, for the StackSet's coverage and the member accounts.
pub type Served = Result<Option<BTreeSet<String>>, String>;

/// The accounts a run serves (see above).
pub async fn served(d: &Deployed, org: Option<&Org>) -> Served {
    let Some(org) = org else {
        return Ok(None);
    };
    let Some(accounts) = &org.accounts else {
        return Ok(None);
    };
    let list = |name: &str| -> Vec<String> {
        d.var(name)
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let mut excluded: BTreeSet<String> = list("KEYFLEET_EXCLUDE_ACCOUNTS").into_iter().collect();
    let client = aws_sdk_organizations::Client::new(&org.sdk);
    let mut ous = list("KEYFLEET_EXCLUDE_OUS");
    while let Some(ou) = ous.pop() {
        let mut accounts = client
            .list_accounts_for_parent()
            .parent_id(&ou)
            .into_paginator()
            .send();
        while let Some(page) = accounts.next().await {
            let page = page.map_err(|e| format!("ListAccountsForParent {ou}: {}", describe(&e)))?;
            excluded.extend(
                page.accounts()
                    .iter()
                    .filter_map(|a| a.id().map(str::to_string)),
            );
        }
        // The calls the org reader role may make, as the coordinator.
        let mut children = client
            .list_organizational_units_for_parent()
            .parent_id(&ou)
            .into_paginator()
            .send();
        while let Some(page) = children.next().await {
            let page = page
                .map_err(|e| format!("ListOrganizationalUnitsForParent {ou}: {}", describe(&e)))?;
            ous.extend(
                page.organizational_units()
                    .iter()
                    .filter_map(|c| c.id().map(str::to_string)),
            );
        }
    }
    Ok(Some(
        accounts
            .iter()
            .filter(|(id, status)| {
                status == "ACTIVE" && *id != org.management && !excluded.contains(id)
            })
            .map(|(id, _)| id.clone())
            .collect(),
    ))
}

/// The agent StackSet: auto-deployment on, a `CURRENT` instance in every
/// account a run serves, and the key the agents seal to still in the
/// coordinator's key ring.
/// Returns the key id the StackSet gives the agents, when it could read it.
pub async fn stack_set(
    ctx: &Ctx<'_>,
    d: &Deployed,
    served: &Served,
    checks: &mut Vec<Check>,
) -> Option<String> {
    const NAME: &str = "agent StackSet";
    const KEY: &str = "agents' key";
    let name = crate::keygen::DEFAULT_STACK_SET;
    let cfn = aws_sdk_cloudformation::Client::new(ctx.sdk);
    let set = match cfn
        .describe_stack_set()
        .stack_set_name(name)
        .set_call_as(ctx.call_as.clone())
        .send()
        .await
    {
        Ok(s) => match s.stack_set {
            Some(set) => set,
            None => {
                checks.push(Check::fail(
                    NAME,
                    format!("{name}: no StackSet described"),
                    "Deploy it (terraform apply of the example's agent StackSet).",
                ));
                return None;
            }
        },
        Err(e) => {
            let text = describe(&e);
            checks.push(if text.contains("StackSetNotFound") || text.contains("AccessDenied") {
                // A service-managed StackSet lives in the management account
                // (or is run by a delegated administrator), not where the
                // coordinator is.
                Check::warn(
                    NAME,
                    format!("{name} is not visible as this identity ({text}): the agents are not checked"),
                    "Run doctor in the management account, or as the StackSet's delegated administrator with --call-as DELEGATED_ADMIN, to check them.",
                )
            } else {
                Check::error(NAME, &format!("DescribeStackSet {name}"), &text)
            });
            return None;
        }
    };
    let auto = set
        .auto_deployment()
        .and_then(|a| a.enabled())
        .unwrap_or(false);
    let mut instances: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut pages = cfn
        .list_stack_instances()
        .stack_set_name(name)
        .set_call_as(ctx.call_as.clone())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => {
                for i in p.summaries() {
                    instances.insert(
                        i.account().unwrap_or_default().to_string(),
                        (
                            i.status()
                                .map(|s| s.as_str().to_string())
                                .unwrap_or_default(),
                            i.status_reason().unwrap_or_default().to_string(),
                        ),
                    );
                }
            }
            Err(e) => {
                checks.push(Check::error(
                    NAME,
                    &format!("ListStackInstances {name}"),
                    &describe(&e),
                ));
                return None;
            }
        }
    }
    let served = match served {
        Ok(s) => s.as_ref(),
        Err(e) => {
            checks.push(Check::error(NAME, "the organization's OUs", e));
            return None;
        }
    };
    let uncovered: Vec<&String> = served
        .into_iter()
        .flatten()
        .filter(|a| !instances.contains_key(*a))
        .collect();
    let not_current: Vec<String> = instances
        .iter()
        .filter(|(_, (status, _))| status != "CURRENT")
        .map(|(a, (status, reason))| {
            if reason.is_empty() {
                format!("{a} {status}")
            } else {
                format!("{a} {status} ({reason})")
            }
        })
        .collect();
    checks.push(if !auto {
        Check::fail(
            NAME,
            format!("{name} does not deploy to new accounts (auto-deployment off)"),
            format!("aws cloudformation update-stack-set --stack-set-name {name} --use-previous-template --auto-deployment Enabled=true,RetainStacksOnAccountRemoval=false (or apply the example's StackSet again)"),
        )
    } else if !uncovered.is_empty() {
        Check::fail(
            NAME,
            format!(
                "no agent in {} account(s) a run serves: {}",
                uncovered.len(),
                uncovered.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
            ),
            format!("Add the accounts' OU to the StackSet's targets (the Terraform variable organizational_unit_ids), or exclude them ([org] exclude_accounts / exclude_ous); then: aws cloudformation create-stack-instances --stack-set-name {name} ..."),
        )
    } else if !not_current.is_empty() {
        Check::fail(
            NAME,
            format!("instances not CURRENT: {}", not_current.join("; ")),
            format!("Fix the reason shown, then: aws cloudformation update-stack-instances --stack-set-name {name} --deployment-targets OrganizationalUnitIds=... --regions <region>"),
        )
    } else {
        Check::pass(
            NAME,
            format!(
                "{name}: auto-deployment on, {} instance(s), all CURRENT{}",
                instances.len(),
                if served.is_some() { ", every served account covered" } else { "" }
            ),
        )
    });
    // The key the agents seal new keys to, against the coordinator's ring.
    let Some(key_id) = set
        .parameters()
        .iter()
        .find(|p| p.parameter_key() == Some("CoordinatorKeyId"))
        .and_then(|p| p.parameter_value())
        .map(str::to_string)
    else {
        checks.push(Check::fail(
            KEY,
            format!(
                "{name} has no CoordinatorKeyId parameter: it is not keyfleet's agent template"
            ),
            "Deploy the agent StackSet of the Terraform example (terraform/templates/agent.yaml).",
        ));
        return None;
    };
    let Some(secret) = d.var("KEYFLEET_PRIVATE_KEY_SECRET_ARN") else {
        checks.push(Check::fail(
            KEY,
            "the coordinator names no key ring (KEYFLEET_PRIVATE_KEY_SECRET_ARN)",
            "Apply the coordinator module again (terraform apply).",
        ));
        return Some(key_id);
    };
    let ring = match aws_sdk_secretsmanager::Client::new(ctx.sdk)
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
    {
        Ok(v) => v.secret_string().map(keyfleet_protocol::KeyRing::parse),
        Err(e) => {
            let text = describe(&e);
            checks.push(if text.contains("AccessDenied") {
                Check::warn(
                    KEY,
                    format!("the key ring {secret} is not readable here ({text}): the agents' key {key_id} not checked"),
                    "Run doctor as one of the module's private_key_readers to check it.",
                )
            } else {
                Check::error(KEY, &format!("GetSecretValue {secret}"), &text)
            });
            return Some(key_id);
        }
    };
    checks.push(match ring {
        Some(Ok(ring)) if ring.ids().contains(&key_id) => Check::pass(
            KEY,
            format!("the agents seal to {key_id}, which the key ring holds"),
        ),
        Some(Ok(ring)) => Check::fail(
            KEY,
            format!(
                "the agents seal to {key_id}, which the key ring does not hold (it holds {}): their new keys cannot be opened",
                ring.ids().join(", ")
            ),
            format!("Put a key the ring holds into terraform.tfvars (coordinator_key_id and its public key; `keyfleet keygen --secret-id {secret}` makes one) and apply."),
        ),
        _ => Check::fail(
            KEY,
            format!("the key ring {secret} is empty or does not parse"),
            format!("keyfleet keygen --secret-id {secret}"),
        ),
    });
    Some(key_id)
}

/// Per account a run serves (several at once): the jobs queue there, only
/// the coordinator allowed to send to it, and the agent function running
/// the StackSet's current settings (the key it seals to, `key_id`, and
/// the coordinator's results queue).
pub async fn accounts(
    ctx: &Ctx<'_>,
    d: &Deployed,
    served: &Served,
    key_id: Option<&str>,
    checks: &mut Vec<Check>,
) {
    const NAME: &str = "member accounts";
    let served = match served {
        Ok(Some(s)) => s,
        Ok(None) => {
            checks.push(Check::warn(
                NAME,
                "not checked: the organization could not be listed as this identity",
                "Run doctor with credentials that may list the organization (see the organization check).",
            ));
            return;
        }
        Err(e) => {
            checks.push(Check::error(NAME, "the organization's OUs", e));
            return;
        }
    };
    let role = ctx
        .cfg
        .org
        .agent_role
        .clone()
        .unwrap_or_else(|| "OrganizationAccountAccessRole".into());
    let looks: Vec<_> = served
        .iter()
        .map(|account| one_account(ctx, d, account, &role, key_id))
        .collect();
    let outcomes: Vec<Result<(), Problem>> =
        stream::iter(looks).buffer_unordered(8).collect().await;
    let mut problems = Vec::new();
    let mut unreachable = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(()) => {}
            Err(Problem::Found(p)) => problems.push(p),
            Err(Problem::Unreachable(a)) => unreachable.push(a),
        }
    }
    let listed = |items: &[String]| {
        let shown: Vec<&str> = items.iter().take(10).map(String::as_str).collect();
        match items.len() {
            n if n > 10 => format!("{}; and {} more", shown.join("; "), n - 10),
            _ => shown.join("; "),
        }
    };
    checks.push(if !problems.is_empty() {
        Check::fail(
            NAME,
            listed(&problems),
            "Update the accounts' stack instances (aws cloudformation update-stack-instances --stack-set-name keyfleet-agent ...), which restores the agent template's queue, policy and function.",
        )
    } else if !unreachable.is_empty() {
        Check::warn(
            NAME,
            format!(
                "{} of {} account(s) not reachable as this identity through [org] agent_role `{role}`: {}",
                unreachable.len(),
                served.len(),
                listed(&unreachable)
            ),
            "Set [org] agent_role to a role you may assume in every member account (reading is enough: sqs:GetQueueUrl, sqs:GetQueueAttributes, lambda:GetFunction).",
        )
    } else if problems.is_empty() {
        Check::pass(
            NAME,
            format!(
                "{} account(s): the jobs queue admits only the coordinator, the agent runs the StackSet's settings",
                served.len()
            ),
        )
    } else {
        unreachable!("problems is not empty in the first branch")
    });
}

/// What one account showed.
enum Problem {
    /// Something to fix there.
    Found(String),
    /// Doctor could not look (the role was refused): the account.
    Unreachable(String),
}

/// The last two segments of a queue URL (`<account>/<name>`), whatever
/// the host: an agent's results queue URL names the coordinator's queue.
fn queue_path(url: &str) -> String {
    let parts: Vec<&str> = url.trim_end_matches('/').rsplit('/').take(2).collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/")
}

async fn one_account(
    ctx: &Ctx<'_>,
    d: &Deployed,
    account: &str,
    role: &str,
    key_id: Option<&str>,
) -> Result<(), Problem> {
    let sdk = crate::aws::assume(ctx.sdk, account, role)
        .await
        .map_err(|_| Problem::Unreachable(account.to_string()))?;
    look_into(d, account, key_id, &sdk).await.map_err(|p| {
        // Refused a look (the role may not read there): not a finding.
        if crate::errors::cause_of(&p) == crate::errors::Cause::AccessDenied {
            Problem::Unreachable(account.to_string())
        } else {
            Problem::Found(p)
        }
    })
}

async fn look_into(
    d: &Deployed,
    account: &str,
    key_id: Option<&str>,
    sdk: &aws_config::SdkConfig,
) -> Result<(), String> {
    let sdk = sdk.clone();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = sqs
        .get_queue_url()
        .queue_name("keyfleet-jobs")
        .send()
        .await
        .map_err(|e| format!("{account}: no jobs queue ({})", describe(&e)))?
        .queue_url
        .unwrap_or_default();
    let policy = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::Policy)
        .send()
        .await
        .map_err(|e| format!("{account}: the jobs queue's policy ({})", describe(&e)))?
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::Policy)
                .cloned()
        })
        .and_then(|p| serde_json::from_str(&p).ok())
        .unwrap_or(serde_json::Value::Null);
    admits_only(&policy, &d.role_arn)
        .map_err(|why| format!("{account}: the jobs queue's policy: {why}"))?;
    let agent = aws_sdk_lambda::Client::new(&sdk)
        .get_function()
        .function_name("keyfleet-agent")
        .send()
        .await
        .map_err(|e| format!("{account}: no agent function ({})", describe(&e)))?;
    let env = agent
        .configuration()
        .and_then(|c| c.environment())
        .and_then(|e| e.variables());
    let var = |name: &str| {
        env.and_then(|v| v.get(name))
            .map(String::as_str)
            .unwrap_or("")
    };
    if let Some(key_id) = key_id {
        let sealing = var("KEYFLEET_COORDINATOR_KEY_ID");
        if sealing != key_id {
            return Err(format!(
                "{account}: the agent seals to `{sealing}`, the StackSet says {key_id} (its stack instance is behind)"
            ));
        }
    }
    if let Some(results) = d.var("KEYFLEET_RESULTS_QUEUE_URL") {
        let sends_to = var("KEYFLEET_RESULTS_QUEUE_URL");
        if queue_path(sends_to) != queue_path(results) {
            return Err(format!(
                "{account}: the agent sends its results to `{sends_to}`, not the coordinator's {results}"
            ));
        }
    }
    Ok(())
}
