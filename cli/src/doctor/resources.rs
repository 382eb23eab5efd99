//! The coordinator's resources: the results queue and the dead letters,
//! the report bucket, SES and the alerts topic.

use super::central::{Deployed, Org};
use super::{Check, Ctx};
use aws_sdk_sqs::types::QueueAttributeName;
use keyfleet_protocol::aws_error::describe;
use serde_json::Value;

/// A policy's statements (one, or a list).
pub fn statements(policy: &Value) -> Vec<&Value> {
    match &policy["Statement"] {
        Value::Array(list) => list.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    }
}

/// The values of a string or a list of strings.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(list) => list
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The values a statement's condition `op` gives `key`.
fn condition(statement: &Value, op: &str, key: &str) -> Vec<String> {
    strings(&statement["Condition"][op][key])
}

/// Whether the statement allows sending a message: an action that covers
/// `sqs:SendMessage` (IAM compares actions without case), or a
/// `NotAction` (which allows all it does not name).
fn allows_send(statement: &Value) -> bool {
    if statement["Effect"] != "Allow" {
        return false;
    }
    if !statement["NotAction"].is_null() {
        return !strings(&statement["NotAction"])
            .iter()
            .any(|a| covers_send(&a.to_ascii_lowercase()));
    }
    strings(&statement["Action"])
        .iter()
        .any(|a| covers_send(&a.to_ascii_lowercase()))
}

/// Whether an action pattern (lowercased) covers `sqs:sendmessage`.
fn covers_send(action: &str) -> bool {
    matches!(action, "*" | "sqs:*" | "sqs:sendmessage")
        || action
            .strip_suffix('*')
            .is_some_and(|prefix| "sqs:sendmessage".starts_with(prefix))
}

fn sid(statement: &Value) -> String {
    statement["Sid"]
        .as_str()
        .map(|s| format!("statement {s}"))
        .unwrap_or_else(|| "a statement without a Sid".into())
}

/// Whether the results queue's policy lets only the organization's
/// `keyfleet-agent*` roles send: every statement that allows sending
/// requires both (`aws:PrincipalOrgID` equal to the organization,
/// `aws:PrincipalArn` like `...:role/keyfleet-agent*`), and one exists.
pub fn admits_only_agents(policy: &Value, org_id: &str) -> Result<(), String> {
    let allows: Vec<&Value> = statements(policy)
        .into_iter()
        .filter(|s| allows_send(s))
        .collect();
    if allows.is_empty() {
        return Err("no statement lets the agents send".into());
    }
    for s in allows {
        let org = condition(s, "StringEquals", "aws:PrincipalOrgID");
        let arns = condition(s, "ArnLike", "aws:PrincipalArn");
        if org.is_empty() || org.iter().any(|o| o != org_id) {
            return Err(format!(
                "{} allows sending without requiring the organization {org_id}",
                sid(s)
            ));
        }
        if arns.is_empty() || arns.iter().any(|a| !a.ends_with(":role/keyfleet-agent*")) {
            return Err(format!(
                "{} allows sending without requiring a keyfleet-agent* role",
                sid(s)
            ));
        }
    }
    Ok(())
}

/// Whether a jobs queue's policy lets only `role_arn` (the coordinator's
/// role) send: every statement that allows sending requires it.
pub fn admits_only(policy: &Value, role_arn: &str) -> Result<(), String> {
    let allows: Vec<&Value> = statements(policy)
        .into_iter()
        .filter(|s| allows_send(s))
        .collect();
    if allows.is_empty() {
        return Err("no statement lets the coordinator send".into());
    }
    for s in allows {
        let arns = condition(s, "ArnEquals", "aws:PrincipalArn");
        if arns.is_empty() || arns.iter().any(|a| a != role_arn) {
            return Err(format!("{} allows senders other than {role_arn}", sid(s)));
        }
    }
    Ok(())
}

/// The results queue: there, with its DLQ and a policy admitting only the
/// organization's agents; then the dead letters waiting in its DLQ and in
/// the function's.
pub async fn results_queue(
    ctx: &Ctx<'_>,
    d: &Deployed,
    org: Option<&Org>,
    checks: &mut Vec<Check>,
) {
    const NAME: &str = "results queue";
    let sqs = aws_sdk_sqs::Client::new(ctx.sdk);
    let Some(url) = d.var("KEYFLEET_RESULTS_QUEUE_URL") else {
        checks.push(Check::fail(
            NAME,
            "the coordinator names no results queue (KEYFLEET_RESULTS_QUEUE_URL)",
            "Apply the coordinator module again (terraform apply).",
        ));
        return;
    };
    let attrs = match sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
    {
        Ok(a) => a.attributes.unwrap_or_default(),
        Err(e) => {
            checks.push(Check::error(
                NAME,
                &format!("GetQueueAttributes {url}"),
                &describe(&e),
            ));
            return;
        }
    };
    let redrive: Option<Value> = attrs
        .get(&QueueAttributeName::RedrivePolicy)
        .and_then(|r| serde_json::from_str(r).ok());
    let dlq_arn = redrive
        .as_ref()
        .and_then(|r| r["deadLetterTargetArn"].as_str())
        .map(str::to_string);
    let policy: Value = attrs
        .get(&QueueAttributeName::Policy)
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or(Value::Null);
    let verdict = match org {
        Some(o) => admits_only_agents(&policy, &o.id),
        None => Ok(()),
    };
    checks.push(match (&dlq_arn, verdict) {
        (None, _) => Check::fail(
            NAME,
            format!("{url} has no dead-letter queue: a result refused three times is lost"),
            "Apply the coordinator module again (terraform apply): it sets the redrive policy.",
        ),
        (_, Err(why)) => Check::fail(
            NAME,
            format!("its policy: {why}"),
            "Apply the coordinator module again (terraform apply): its results queue policy admits only the organization's keyfleet-agent* roles.",
        ),
        (Some(dlq), Ok(())) => Check::pass(
            NAME,
            format!(
                "{url}: dead letters to {}, {}",
                dlq.rsplit(':').next().unwrap_or(dlq),
                if org.is_some() {
                    "only the organization's keyfleet-agent* roles may send"
                } else {
                    "its policy not checked (no organization)"
                }
            ),
        ),
    });
    dead_letters(&sqs, [dlq_arn, d.async_dlq_arn.clone()], checks).await;
}

/// Messages waiting in the dead-letter queues: results refused three
/// times, schedules' invocations that failed.
async fn dead_letters(
    sqs: &aws_sdk_sqs::Client,
    arns: [Option<String>; 2],
    checks: &mut Vec<Check>,
) {
    const NAME: &str = "dead letters";
    let mut waiting = Vec::new();
    let mut looked = Vec::new();
    for arn in arns.into_iter().flatten() {
        let (Some(name), Some(account)) = (arn.rsplit(':').next(), arn.split(':').nth(4)) else {
            continue;
        };
        let url = match sqs
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
        {
            Ok(u) => u.queue_url.unwrap_or_default(),
            Err(e) => {
                checks.push(Check::error(
                    NAME,
                    &format!("GetQueueUrl {name}"),
                    &describe(&e),
                ));
                return;
            }
        };
        let n = match sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
        {
            Ok(a) => a
                .attributes()
                .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0),
            Err(e) => {
                checks.push(Check::error(
                    NAME,
                    &format!("GetQueueAttributes {name}"),
                    &describe(&e),
                ));
                return;
            }
        };
        looked.push(name.to_string());
        if n > 0 {
            let age = oldest_age(sqs, &url).await;
            waiting.push((name.to_string(), url, n, age));
        }
    }
    checks.push(match waiting.as_slice() {
        [] => Check::pass(NAME, format!("none in {}", looked.join(", "))),
        list => Check::warn(
            NAME,
            list.iter()
                .map(|(name, _, n, age)| match age {
                    Some(h) => format!("{n} in {name}, the oldest {h} hour(s) old"),
                    None => format!("{n} in {name}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
            format!(
                "Read them (aws sqs receive-message --queue-url {}); the alerts topic said why each was refused.",
                list[0].1
            ),
        ),
    });
}

/// How old, in whole hours, the oldest of the first messages of `url` is:
/// a peek that leaves them visible (visibility 0; their receive count
/// grows by one, which a dead-letter queue does not act on).
async fn oldest_age(sqs: &aws_sdk_sqs::Client, url: &str) -> Option<i64> {
    let got = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .message_system_attribute_names(
            aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp,
        )
        .send()
        .await
        .ok()?;
    let oldest = got
        .messages()
        .iter()
        .filter_map(|m| {
            m.attributes()?
                .get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp)?
                .parse::<i64>()
                .ok()
        })
        .min()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    Some((now - oldest).max(0) / 3_600_000)
}

/// The report bucket: encrypted at rest, reachable over TLS only, public
/// access blocked.
pub async fn bucket(ctx: &Ctx<'_>, d: &Deployed, checks: &mut Vec<Check>) {
    const NAME: &str = "report bucket";
    let bucket = d
        .var("KEYFLEET_REPORT_BUCKET")
        .unwrap_or(&ctx.cfg.coordinator.report_bucket)
        .to_string();
    let s3 = crate::aws::s3_client(ctx.cfg, ctx.sdk);
    let fix = "Apply the coordinator module again (terraform apply): it sets the bucket's encryption, its TLS-only policy and its public access block.";
    let encryption = match s3.get_bucket_encryption().bucket(&bucket).send().await {
        Ok(e) => e
            .server_side_encryption_configuration()
            .and_then(|c| c.rules().first())
            .and_then(|r| r.apply_server_side_encryption_by_default())
            .map(|d| d.sse_algorithm().as_str().to_string()),
        Err(e) if describe(&e).contains("ServerSideEncryptionConfigurationNotFound") => None,
        Err(e) => {
            checks.push(Check::error(
                NAME,
                &format!("GetBucketEncryption {bucket}"),
                &describe(&e),
            ));
            return;
        }
    };
    let Some(encryption) = encryption else {
        checks.push(Check::fail(
            NAME,
            format!("{bucket} has no default encryption"),
            fix,
        ));
        return;
    };
    let blocked = match s3.get_public_access_block().bucket(&bucket).send().await {
        Ok(p) => p.public_access_block_configuration().is_some_and(|c| {
            c.block_public_acls() == Some(true)
                && c.ignore_public_acls() == Some(true)
                && c.block_public_policy() == Some(true)
                && c.restrict_public_buckets() == Some(true)
        }),
        Err(e) if describe(&e).contains("NoSuchPublicAccessBlockConfiguration") => false,
        Err(e) => {
            checks.push(Check::error(
                NAME,
                &format!("GetPublicAccessBlock {bucket}"),
                &describe(&e),
            ));
            return;
        }
    };
    if !blocked {
        checks.push(Check::fail(
            NAME,
            format!("{bucket} does not block all public access"),
            fix,
        ));
        return;
    }
    let policy: Value = match s3.get_bucket_policy().bucket(&bucket).send().await {
        Ok(p) => p
            .policy()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(Value::Null),
        Err(e) if describe(&e).contains("NoSuchBucketPolicy") => Value::Null,
        Err(e) => {
            checks.push(Check::error(
                NAME,
                &format!("GetBucketPolicy {bucket}"),
                &describe(&e),
            ));
            return;
        }
    };
    let tls_only = statements(&policy)
        .iter()
        .any(|s| s["Effect"] == "Deny" && condition(s, "Bool", "aws:SecureTransport") == ["false"]);
    if !tls_only {
        checks.push(Check::fail(
            NAME,
            format!("{bucket}'s policy does not refuse requests without TLS"),
            fix,
        ));
        return;
    }
    checks.push(Check::pass(
        NAME,
        format!("{bucket}: encrypted ({encryption}), TLS only, public access blocked"),
    ));
}

/// SES: the sender verified, out of the sandbox, a day's quota for the
/// last run's mail, the configuration set there.
pub async fn mail(ctx: &Ctx<'_>, d: &Deployed, checks: &mut Vec<Check>) {
    let ses = aws_sdk_sesv2::Client::new(ctx.sdk);
    let sender = d
        .var("KEYFLEET_SENDER")
        .unwrap_or(&ctx.cfg.mail.sender)
        .to_string();
    let address = sender
        .rsplit_once('<')
        .map(|(_, a)| a.trim_end_matches('>'))
        .unwrap_or(&sender)
        .trim()
        .to_string();
    let domain = address.rsplit('@').next().unwrap_or_default().to_string();
    const SENDER: &str = "SES sender";
    let mut verified = None;
    for identity in [&address, &domain] {
        match ses
            .get_email_identity()
            .email_identity(identity)
            .send()
            .await
        {
            Ok(i) if i.verified_for_sending_status() => {
                verified = Some(identity.clone());
                break;
            }
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_not_found_exception()) => {}
            Err(e) => {
                checks.push(Check::error(
                    SENDER,
                    &format!("GetEmailIdentity {identity}"),
                    &describe(&e),
                ));
                return;
            }
        }
    }
    checks.push(match verified {
        Some(i) => Check::pass(SENDER, format!("{address} may send (identity {i} verified)")),
        None => Check::fail(
            SENDER,
            format!("neither {address} nor {domain} is a verified SES identity: nothing is mailed"),
            "Verify the domain (publish the DKIM records of the module's output ses_dkim_tokens) or the address (the link SES mails), in the SES console: Configuration > Identities.",
        ),
    });
    match ses.get_account().send().await {
        Ok(a) => {
            let quota = a.send_quota().map(|q| q.max24_hour_send()).unwrap_or(0.0);
            let needed = last_run_mail(ctx).await;
            checks.push(ses_account(a.production_access_enabled(), quota, needed));
        }
        Err(e) => checks.push(Check::error(SES_ACCOUNT, "GetAccount", &describe(&e))),
    }
    if let Some(set) = d.var("KEYFLEET_SES_CONFIGURATION_SET") {
        const SET: &str = "SES configuration set";
        let mut found = false;
        let mut token: Option<String> = None;
        loop {
            match ses
                .list_configuration_sets()
                .set_next_token(token.take())
                .send()
                .await
            {
                Ok(page) => {
                    found |= page.configuration_sets().iter().any(|s| s == set);
                    token = page.next_token().map(str::to_string);
                    if found || token.is_none() {
                        break;
                    }
                }
                Err(e) => {
                    checks.push(Check::error(SET, "ListConfigurationSets", &describe(&e)));
                    return;
                }
            }
        }
        checks.push(if found {
            Check::pass(SET, format!("{set} exists"))
        } else {
            Check::fail(
                SET,
                format!("{set} does not exist: SES refuses every email naming it"),
                "Apply the coordinator module again (terraform apply), or unset its ses_configuration_set.",
            )
        });
    }
}

const SES_ACCOUNT: &str = "SES account";

/// The SES account's verdict: out of the sandbox, and a day's quota
/// (`-1`: SES's unlimited) for what the last run sent (`needed`).
pub fn ses_account(production: bool, quota: f64, needed: Option<u64>) -> Check {
    if !production {
        return Check::warn(
            SES_ACCOUNT,
            format!("in the SES sandbox: only verified recipients, {quota:.0} emails a day"),
            "Request production access: SES console > Account dashboard > Request production access (or aws sesv2 put-account-details).",
        );
    }
    if quota >= 0.0 && needed.is_some_and(|n| n as f64 > quota) {
        return Check::warn(
            SES_ACCOUNT,
            format!(
                "a day's quota of {quota:.0} emails is below the last run's {} (it waits for the next day)",
                needed.unwrap_or(0)
            ),
            "Ask AWS for a higher sending quota: Service Quotas > Amazon SES > Sending quota.",
        );
    }
    Check::pass(
        SES_ACCOUNT,
        format!(
            "production access, {} emails a day{}",
            if quota < 0.0 {
                "unlimited".to_string()
            } else {
                format!("{quota:.0}")
            },
            needed
                .map(|n| format!(" (the last run sent about {n})"))
                .unwrap_or_default()
        ),
    )
}

/// About how many emails the last finalized run sent at most: two per
/// key created (zip, password) and one per other action (an upper bound
/// on the digests), and the summary. `None` without a report.
async fn last_run_mail(ctx: &Ctx<'_>) -> Option<u64> {
    let deployment = crate::deployed::Deployment::new(ctx.cfg, ctx.sdk);
    let report = deployment.reports().report("latest").await.ok()??;
    let by_kind = &report.totals.actions_by_kind;
    let created = by_kind.get("create").copied().unwrap_or(0);
    let others: u64 = by_kind
        .iter()
        .filter(|(k, _)| k.as_str() != "create" && k.as_str() != "notify")
        .map(|(_, n)| *n)
        .sum();
    Some(2 * created + others + 1)
}

/// What doctor shows of a subscription's endpoint: an address or an ARN
/// whole, a URL by its host only (a webhook's path often holds its key).
fn shown_endpoint(endpoint: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => format!(
            "{scheme}://{}/...",
            rest.split(['/', '?']).next().unwrap_or_default()
        ),
        None => endpoint.to_string(),
    }
}

/// The alerts topic: someone hears of a failed run.
pub async fn alerts(ctx: &Ctx<'_>, d: &Deployed, checks: &mut Vec<Check>) {
    const NAME: &str = "alerts topic";
    let Some(topic) = d.var("KEYFLEET_ALERTS_TOPIC_ARN") else {
        checks.push(Check::fail(
            NAME,
            "the coordinator names no alerts topic (KEYFLEET_ALERTS_TOPIC_ARN): failures are only logged",
            "Apply the coordinator module again (terraform apply).",
        ));
        return;
    };
    let sns = aws_sdk_sns::Client::new(ctx.sdk);
    let mut confirmed = Vec::new();
    let mut pending = 0;
    let mut pages = sns
        .list_subscriptions_by_topic()
        .topic_arn(topic)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => {
                for s in p.subscriptions() {
                    if s.subscription_arn() == Some("PendingConfirmation") {
                        pending += 1;
                    } else {
                        confirmed.push(format!(
                            "{} {}",
                            s.protocol().unwrap_or("?"),
                            shown_endpoint(s.endpoint().unwrap_or("?"))
                        ));
                    }
                }
            }
            Err(e) => {
                checks.push(Check::error(
                    NAME,
                    &format!("ListSubscriptionsByTopic {topic}"),
                    &describe(&e),
                ));
                return;
            }
        }
    }
    checks.push(if confirmed.is_empty() {
        Check::fail(
            NAME,
            format!("{topic} has no confirmed subscription ({pending} pending): nobody hears of a failed run"),
            "Set the Terraform variable alert_subscriptions (e.g. the security team's address) and apply, then confirm the email SNS sends.",
        )
    } else {
        Check::pass(NAME, format!("confirmed: {}", confirmed.join(", ")))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The coordinator module's results queue policy, rendered.
    fn results_policy(org: &str) -> Value {
        let text = include_str!(
            "../../../terraform/modules/coordinator/policies/results-queue.json.tftpl"
        )
        .replace(
            "${queue_arn}",
            "arn:aws:sqs:us-east-1:111122223333:keyfleet-results",
        )
        .replace("${organization_id}", org)
        .replace("${partition}", "aws");
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn the_modules_results_policy_admits_only_the_organizations_agents() {
        let policy = results_policy("o-abc123");
        assert_eq!(admits_only_agents(&policy, "o-abc123"), Ok(()));
        let other = admits_only_agents(&policy, "o-zzz999").unwrap_err();
        assert!(other.contains("AllowOrganizationAgents"), "{other}");
        let mut open = policy.clone();
        open["Statement"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"Sid": "Open", "Effect": "Allow", "Principal": "*", "Action": "sqs:SendMessage", "Resource": "*"}));
        let why = admits_only_agents(&open, "o-abc123").unwrap_err();
        assert!(why.contains("statement Open"), "{why}");
        assert!(admits_only_agents(&Value::Null, "o-abc123").is_err());
    }

    #[test]
    fn a_jobs_queue_admits_only_the_coordinator() {
        let role = "arn:aws:iam::111122223333:role/keyfleet-coordinator";
        let policy = serde_json::json!({"Statement": [
            {"Sid": "AllowCoordinatorSend", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": "sqs:SendMessage", "Condition": {"ArnEquals": {"aws:PrincipalArn": role}}},
            {"Sid": "DenySendFromAnyoneElse", "Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage"}]});
        assert_eq!(admits_only(&policy, role), Ok(()));
        assert!(admits_only(&policy, "arn:aws:iam::111122223333:role/other").is_err());
        let mut open = policy.clone();
        open["Statement"][0]["Condition"] = Value::Null;
        assert!(admits_only(&open, role)
            .unwrap_err()
            .contains("AllowCoordinatorSend"));
    }

    /// The SES sandbox cannot be made in the emulator (it has none): the
    /// verdict is checked here.
    #[test]
    fn the_ses_account_warns_in_the_sandbox_and_below_the_last_runs_mail() {
        use super::super::Status;
        let sandbox = ses_account(false, 200.0, Some(10));
        assert_eq!(sandbox.status, Status::Warn);
        assert!(sandbox.saw.contains("sandbox"), "{}", sandbox.saw);
        assert!(sandbox
            .fix
            .as_deref()
            .unwrap()
            .contains("production access"));
        assert_eq!(ses_account(true, 100.0, Some(250)).status, Status::Warn);
        assert_eq!(ses_account(true, 50_000.0, Some(250)).status, Status::Pass);
        let unlimited = ses_account(true, -1.0, Some(1_000_000));
        assert_eq!(unlimited.status, Status::Pass);
        assert!(unlimited.saw.contains("unlimited"), "{}", unlimited.saw);
        assert_eq!(ses_account(true, 10.0, None).status, Status::Pass);
    }

    #[test]
    fn sending_is_recognised_whatever_the_case_or_the_wildcard() {
        let role = "arn:aws:iam::1:role/keyfleet-coordinator";
        for action in [
            "SQS:SendMessage",
            "sqs:Send*",
            "sqs:*",
            "*",
            "sqs:sendmessage",
        ] {
            let policy = serde_json::json!({"Statement": [
                {"Sid": "Open", "Effect": "Allow", "Principal": "*", "Action": action}]});
            assert!(admits_only(&policy, role).is_err(), "{action}");
        }
        let not_action = serde_json::json!({"Statement": [
            {"Sid": "AllButDelete", "Effect": "Allow", "Principal": "*", "NotAction": "sqs:DeleteQueue"}]});
        assert!(admits_only(&not_action, role)
            .unwrap_err()
            .contains("AllButDelete"));
        let receive = serde_json::json!({"Statement": [
            {"Sid": "Receive", "Effect": "Allow", "Principal": "*", "Action": "sqs:ReceiveMessage"}]});
        assert!(admits_only(&receive, role)
            .unwrap_err()
            .contains("no statement"));
    }

    #[test]
    fn a_webhook_is_shown_by_its_host_only() {
        assert_eq!(
            shown_endpoint("https://events.example.com/integration/SECRETKEY?x=1"),
            "https://events.example.com/..."
        );
        assert_eq!(shown_endpoint("sec@example.com"), "sec@example.com");
    }
}
