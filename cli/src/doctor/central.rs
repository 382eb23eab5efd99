//! Who runs doctor, the organization through the org reader role, the
//! coordinator function and its schedules.

use super::{Check, Ctx};
use keyfleet_protocol::aws_error::describe;
use std::collections::BTreeMap;

/// The schedules the coordinator module creates (and `keyfleet bootstrap`).
pub const RULES: [&str; 2] = ["keyfleet-start", "keyfleet-sweep"];

/// The deployed coordinator, as its function describes it.
pub struct Deployed {
    pub function: String,
    /// The function's execution role: the only sender the jobs queues
    /// admit.
    pub role_arn: String,
    pub env: BTreeMap<String, String>,
    /// Where failed asynchronous invocations (the schedules') go.
    pub async_dlq_arn: Option<String>,
}

impl Deployed {
    /// A setting of the function's environment, when set.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }
}

/// The organization, as the coordinator lists it.
pub struct Org {
    pub id: String,
    pub management: String,
    /// (account id, status), when doctor could list them.
    pub accounts: Option<Vec<(String, String)>>,
    /// Who listed them (the org reader's session, or the operator's).
    pub sdk: aws_config::SdkConfig,
}

/// `sts:GetCallerIdentity`.
pub async fn identity(ctx: &Ctx<'_>) -> Check {
    const NAME: &str = "identity";
    match aws_sdk_sts::Client::new(ctx.sdk)
        .get_caller_identity()
        .send()
        .await
    {
        Ok(me) => Check::pass(
            NAME,
            format!(
                "{} (account {})",
                me.arn().unwrap_or("?"),
                me.account().unwrap_or("?")
            ),
        ),
        Err(e) => Check::error(NAME, "GetCallerIdentity", &describe(&e)),
    }
}

/// The coordinator function: it exists, its environment parses as the
/// function will parse it, and its reserved concurrency leaves room for
/// the schedules beside the results mapping's maximum.
pub async fn coordinator(ctx: &Ctx<'_>, checks: &mut Vec<Check>) -> Option<Deployed> {
    const NAME: &str = "coordinator function";
    let function = &ctx.cfg.coordinator.function;
    let lambda = aws_sdk_lambda::Client::new(ctx.sdk);
    let found = match lambda.get_function().function_name(function).send().await {
        Ok(f) => f,
        Err(e) => {
            let text = describe(&e);
            checks.push(
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception())
                {
                    Check::fail(
                        NAME,
                        format!("`{function}` does not exist ({text})"),
                        "Set [coordinator] function in keyfleet.toml to the module's output \
                         coordinator_function_name, or deploy it (terraform apply).",
                    )
                } else {
                    Check::error(NAME, &format!("GetFunction {function}"), &text)
                },
            );
            return None;
        }
    };
    let conf = found.configuration();
    let env: BTreeMap<String, String> = conf
        .and_then(|c| c.environment())
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let deployed = Deployed {
        // The name, whether the file gives a name or an ARN: the log
        // group and the schedules' targets are named after it.
        function: conf
            .and_then(|c| c.function_name())
            .unwrap_or(function)
            .to_string(),
        role_arn: conf.and_then(|c| c.role()).unwrap_or_default().to_string(),
        env,
        async_dlq_arn: conf
            .and_then(|c| c.dead_letter_config())
            .and_then(|d| d.target_arn())
            .map(str::to_string),
    };
    // Lambda sets AWS_REGION itself: the function's region.
    let region = found
        .configuration()
        .and_then(|c| c.function_arn())
        .and_then(|arn| arn.split(':').nth(3))
        .unwrap_or(&ctx.cfg.aws.region)
        .to_string();
    let vars = |name: &str| {
        deployed
            .env
            .get(name)
            .cloned()
            .or_else(|| (name == "AWS_REGION").then(|| region.clone()))
    };
    let bucket = deployed.var("KEYFLEET_REPORT_BUCKET").unwrap_or_default();
    match keyfleet_coordinator::config::from_vars(&vars) {
        Ok(_) if bucket != ctx.cfg.coordinator.report_bucket => checks.push(Check::fail(
            NAME,
            format!(
                "keyfleet.toml's report_bucket `{}` is not the coordinator's `{bucket}`: run and report would read the wrong bucket",
                ctx.cfg.coordinator.report_bucket
            ),
            format!("Set [coordinator] report_bucket = \"{bucket}\" in keyfleet.toml (the module's output report_bucket)."),
        )),
        Ok(_) => checks.push(Check::pass(
            NAME,
            format!(
                "`{function}`: {}, {} MB, {} s; its environment parses",
                conf.and_then(|c| c.runtime())
                    .map(|r| r.as_str().to_string())
                    .unwrap_or_else(|| "?".into()),
                conf.and_then(|c| c.memory_size()).unwrap_or(0),
                conf.and_then(|c| c.timeout()).unwrap_or(0)
            ),
        )),
        Err(e) => checks.push(Check::fail(
            NAME,
            format!("`{function}`'s environment does not parse: {e}"),
            "Apply the coordinator module again (terraform apply); its variables set the environment.",
        )),
    }
    checks.push(concurrency(&lambda, function).await);
    Some(deployed)
}

/// Reserved concurrency above the results mapping's maximum: with less,
/// the mapping's invocations are throttled and the schedules can find no
/// room.
async fn concurrency(lambda: &aws_sdk_lambda::Client, function: &str) -> Check {
    const NAME: &str = "coordinator concurrency";
    let reserved = match lambda
        .get_function_concurrency()
        .function_name(function)
        .send()
        .await
    {
        Ok(c) => c.reserved_concurrent_executions(),
        Err(e) => return Check::error(NAME, "GetFunctionConcurrency", &describe(&e)),
    };
    let mut max = None;
    let mut pages = lambda
        .list_event_source_mappings()
        .function_name(function)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => {
                max = max.max(
                    p.event_source_mappings()
                        .iter()
                        .filter_map(|m| m.scaling_config().and_then(|s| s.maximum_concurrency()))
                        .max(),
                )
            }
            Err(e) => return Check::error(NAME, "ListEventSourceMappings", &describe(&e)),
        }
    }
    match (reserved, max) {
        (_, None) => Check::fail(
            NAME,
            "no results queue mapping with a maximum concurrency",
            "Apply the coordinator module again (terraform apply): it creates the results queue's event source mapping.",
        ),
        (None, Some(max)) => Check::warn(
            NAME,
            format!("no reserved concurrency; the results mapping runs up to {max} at once"),
            format!("Set the Terraform variable reserved_concurrency to at least {} (the module's default is 10), so other functions cannot take the coordinator's room.", max + 1),
        ),
        (Some(r), Some(max)) if r <= max => Check::fail(
            NAME,
            format!("reserved concurrency {r} is not above the results mapping's maximum {max}"),
            format!("Set the Terraform variable reserved_concurrency to at least {} (results_max_concurrency plus one for the schedules), or: aws lambda put-function-concurrency --function-name {function} --reserved-concurrent-executions {}", max + 1, max + 1),
        ),
        (Some(r), Some(max)) => Check::pass(
            NAME,
            format!("reserved {r}, above the results mapping's maximum {max}"),
        ),
    }
}

/// The organization: its id (any member may read it), then its accounts
/// through the org reader role the function uses (with its external id),
/// as every run starts. The role trusts only the coordinator's role, so an
/// operator is usually refused it: the accounts are then listed with the
/// operator's own credentials where they may (the management account, a
/// delegated administrator), and the check says the role was not tried.
pub async fn organization(
    ctx: &Ctx<'_>,
    deployed: Option<&Deployed>,
    checks: &mut Vec<Check>,
) -> Option<Org> {
    const NAME: &str = "organization";
    let described = match aws_sdk_organizations::Client::new(ctx.sdk)
        .describe_organization()
        .send()
        .await
    {
        Ok(d) => d,
        Err(e) => {
            checks.push(Check::error(NAME, "DescribeOrganization", &describe(&e)));
            return None;
        }
    };
    let organization = described.organization();
    let id = organization
        .and_then(|o| o.id())
        .unwrap_or_default()
        .to_string();
    let management = organization
        .and_then(|o| o.master_account_id())
        .unwrap_or_default()
        .to_string();
    let role = deployed
        .and_then(|d| d.var("KEYFLEET_ORG_READER_ROLE_ARN"))
        .map(str::to_string)
        .or_else(|| ctx.cfg.org.org_reader_role.clone());
    let external_id = deployed
        .and_then(|d| d.var("KEYFLEET_ORG_READER_EXTERNAL_ID"))
        .map(str::to_string)
        .or_else(|| ctx.cfg.org.org_reader_external_id.clone());
    let mut refused: Option<String> = None;
    let mut sdk = ctx.sdk.clone();
    if let Some(role) = &role {
        let account = role.split(':').nth(4).unwrap_or_default().to_string();
        match crate::aws::assume_with(ctx.sdk, &account, role, external_id.as_deref()).await {
            Ok(session) => sdk = session,
            Err(e) => refused = Some(format!("{e:#}")),
        }
    }
    let listed = list_accounts(&sdk).await;
    let org = |accounts| Org {
        id: id.clone(),
        management: management.clone(),
        accounts,
        sdk: sdk.clone(),
    };
    match (&role, refused, listed) {
        (Some(role), None, Ok(accounts)) => {
            checks.push(Check::pass(
                NAME,
                format!("{}, listed through {role}", summary(&accounts)),
            ));
            Some(org(Some(accounts)))
        }
        (Some(role), None, Err(e)) => {
            checks.push(Check::fail(
                NAME,
                format!("{role} may not list the organization: {e}"),
                "Apply the org-reader module again (terraform apply in the management account): its policy allows organizations:ListAccounts.",
            ));
            Some(org(None))
        }
        (Some(role), Some(why), Ok(accounts)) => {
            checks.push(Check::warn(
                NAME,
                format!(
                    "{}, listed with your own credentials: {role} was not tried ({why})",
                    summary(&accounts)
                ),
                "Nothing to do when runs list the organization (their reports name every account); the role trusts only the coordinator's role.",
            ));
            Some(org(Some(accounts)))
        }
        (Some(role), Some(why), Err(e)) => {
            checks.push(Check::warn(
                NAME,
                format!("{role} was not tried ({why}) and your credentials may not list the organization ({e}): the StackSet's coverage and the member accounts are not checked"),
                "Run doctor with credentials that may list the organization (the management account's, or a delegated administrator's) to check them.",
            ));
            Some(org(None))
        }
        (None, _, Ok(accounts)) => {
            checks.push(Check::pass(NAME, summary(&accounts)));
            Some(org(Some(accounts)))
        }
        (None, _, Err(e)) => {
            checks.push(Check::error(NAME, "ListAccounts", &e));
            Some(org(None))
        }
    }
}

fn summary(accounts: &[(String, String)]) -> String {
    let active = accounts.iter().filter(|(_, s)| s == "ACTIVE").count();
    format!("{} accounts ({active} active)", accounts.len())
}

/// Every account of the organization, with its state.
async fn list_accounts(sdk: &aws_config::SdkConfig) -> Result<Vec<(String, String)>, String> {
    let mut accounts = Vec::new();
    let mut pages = aws_sdk_organizations::Client::new(sdk)
        .list_accounts()
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| format!("ListAccounts: {}", describe(&e)))?;
        accounts.extend(page.accounts().iter().map(|a| {
            (
                a.id().unwrap_or_default().to_string(),
                a.state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            )
        }));
    }
    Ok(accounts)
}

/// The daily run and the hourly sweep are enabled and invoke the function.
pub async fn schedules(ctx: &Ctx<'_>, d: &Deployed, checks: &mut Vec<Check>) {
    const NAME: &str = "schedules";
    let events = aws_sdk_eventbridge::Client::new(ctx.sdk);
    let mut seen = Vec::new();
    for rule in RULES {
        let found = match events.describe_rule().name(rule).send().await {
            Ok(r) => r,
            Err(e) => {
                checks.push(Check::fail(
                    NAME,
                    format!("the rule {rule}: {}", describe(&e)),
                    "Apply the coordinator module again (terraform apply): it creates the keyfleet-start and keyfleet-sweep rules.",
                ));
                return;
            }
        };
        let state = found
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        if state != "ENABLED" {
            checks.push(Check::fail(
                NAME,
                format!(
                    "{rule} is {state}: no {} runs",
                    if rule == RULES[0] {
                        "scheduled"
                    } else {
                        "sweep (finalizing late runs, resending mail)"
                    }
                ),
                format!("aws events enable-rule --name {rule}"),
            ));
            return;
        }
        let targets = match events.list_targets_by_rule().rule(rule).send().await {
            Ok(t) => t,
            Err(e) => {
                checks.push(Check::error(
                    NAME,
                    &format!("ListTargetsByRule {rule}"),
                    &describe(&e),
                ));
                return;
            }
        };
        if !targets.targets().iter().any(|t| {
            t.arn().ends_with(&format!(":function:{}", d.function)) || t.arn() == d.function
        }) {
            checks.push(Check::fail(
                NAME,
                format!("{rule} does not invoke `{}`", d.function),
                "Apply the coordinator module again (terraform apply): it sets the rules' target.",
            ));
            return;
        }
        seen.push(format!(
            "{rule} {}",
            found.schedule_expression().unwrap_or("?")
        ));
    }
    checks.push(Check::pass(NAME, format!("enabled: {}", seen.join(", "))));
}

/// Failed invocations of the coordinator in the last day: the lines its
/// log has at `ERROR` (one per failed invocation, with its error type, and
/// one per failure inside a run that carried on).
pub async fn recent_errors(ctx: &Ctx<'_>, d: &Deployed, checks: &mut Vec<Check>) {
    const NAME: &str = "coordinator errors";
    const MAX_PAGES: usize = 20;
    let logs = aws_sdk_cloudwatchlogs::Client::new(ctx.sdk);
    let group = format!("/aws/lambda/{}", d.function);
    let since = (time::OffsetDateTime::now_utc() - time::Duration::days(1)).unix_timestamp() * 1000;
    let mut errors = 0usize;
    let mut lines = 0usize;
    let mut last: Option<String> = None;
    let mut token: Option<String> = None;
    let mut complete = false;
    for _ in 0..MAX_PAGES {
        let page = match logs
            .filter_log_events()
            .log_group_name(&group)
            .start_time(since)
            .filter_pattern("ERROR")
            .set_next_token(token.take())
            .send()
            .await
        {
            Ok(p) => p,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                checks.push(Check::pass(
                    NAME,
                    format!("no log group {group} yet: never invoked"),
                ));
                return;
            }
            Err(e) => {
                checks.push(Check::error(
                    NAME,
                    &format!("FilterLogEvents {group}"),
                    &describe(&e),
                ));
                return;
            }
        };
        for event in page.events() {
            lines += 1;
            let Some(text) = event.message() else {
                continue;
            };
            let Ok(line) = serde_json::from_str::<serde_json::Value>(text) else {
                continue;
            };
            // The runtime logs a failed invocation too, as a Debug dump:
            // keyfleet's own line (with its error type) counts it once.
            let runtime = line["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("lambda_runtime"));
            if line["level"] == "ERROR" && !runtime {
                errors += 1;
                let fields = &line["fields"];
                let error = fields["error"]
                    .as_str()
                    .or_else(|| fields["message"].as_str())
                    .unwrap_or(text);
                last = Some(
                    match fields["error_type"].as_str() {
                        Some(kind) => format!("{kind}: {error}"),
                        None => error.to_string(),
                    }
                    .chars()
                    .take(240)
                    .collect(),
                );
            }
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            complete = true;
            break;
        }
    }
    checks.push(match last {
        None if !complete => Check::warn(
            NAME,
            format!("no error in the first {MAX_PAGES} pages of the last 24 hours' log ({lines} lines read); the rest not read"),
            format!("aws logs tail {group} --since 24h --filter-pattern ERROR"),
        ),
        None => Check::pass(
            NAME,
            format!("no error in the last 24 hours ({lines} matching log lines read)"),
        ),
        Some(last) => Check::warn(
            NAME,
            format!("{errors} error(s) in the last 24 hours; the last: {last}"),
            format!("aws logs tail {group} --since 24h --filter-pattern ERROR (the alerts topic says why a run failed)"),
        ),
    });
}
