//! `keyfleet doctor` on a deployment of its own (an emulator of its own,
//! `keyfleet bootstrap` as the demo deploys): the healthy deployment passes
//! every check; then each check's break, one at a time, is named by its
//! check with FAIL (or WARN) and a fix, and mended before the next.

use crate::common::*;
use keyfleet_testkit::Emulator;
use serde_json::Value;

/// `keyfleet doctor --json`: (exit code, the checks by name).
fn doctor(cli: &Cli) -> (i32, Vec<Value>) {
    let out = cli.output(&["doctor", "--json"]);
    let checks: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json: {e}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), checks)
}

fn status_of<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {checks:#?}"))
}

/// Doctor after a break: the check `name` says `status` with a fix, and
/// the exit code says whether a check failed.
fn broken(cli: &Cli, name: &str, status: &str) -> Value {
    let (code, checks) = doctor(cli);
    let check = status_of(&checks, name).clone();
    assert_eq!(check["status"], status, "{name}: {checks:#?}");
    assert!(
        check["fix"].as_str().is_some_and(|f| !f.is_empty()),
        "{name} says what to do: {check}"
    );
    // Exit 3 when any check failed (this one, or an earlier break that
    // is not mended), 0 otherwise: a warning alone never fails doctor.
    let any_failed = checks.iter().any(|c| c["status"] == "FAIL");
    assert_eq!(code, if any_failed { 3 } else { 0 }, "{name}");
    check
}

/// Doctor after a mend: every check passes again.
fn healthy(cli: &Cli, after: &str) {
    let (code, checks) = doctor(cli);
    let failing: Vec<&Value> = checks.iter().filter(|c| c["status"] != "PASS").collect();
    assert!(failing.is_empty(), "after {after}: {failing:#?}");
    assert_eq!(code, 0, "after {after}");
}

/// A queue's URL by name.
async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .expect("GetQueueUrl")
        .queue_url
        .expect("url")
}

/// A queue's policy.
async fn queue_policy(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    use aws_sdk_sqs::types::QueueAttributeName as Q;
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(Q::Policy)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .and_then(|a| a.get(&Q::Policy).cloned())
        .expect("policy")
}

async fn set_queue_policy(sqs: &aws_sdk_sqs::Client, url: &str, policy: String) {
    sqs.set_queue_attributes()
        .queue_url(url)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::Policy, policy)
        .send()
        .await
        .expect("SetQueueAttributes");
}

/// `policy` with a statement `sid` that lets anyone send.
fn opened(policy: &str, sid: &str) -> String {
    let mut open: Value = serde_json::from_str(policy).unwrap();
    open["Statement"].as_array_mut().unwrap().push(serde_json::json!({
        "Sid": sid, "Effect": "Allow", "Principal": "*", "Action": "sqs:SendMessage", "Resource": "*"}));
    open.to_string()
}

/// A function's environment.
async fn function_env(
    lambda: &aws_sdk_lambda::Client,
    name: &str,
) -> std::collections::HashMap<String, String> {
    lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
        .expect("GetFunctionConfiguration")
        .environment
        .and_then(|e| e.variables)
        .expect("variables")
}

async fn set_function_env(
    lambda: &aws_sdk_lambda::Client,
    name: &str,
    vars: std::collections::HashMap<String, String>,
) {
    lambda
        .update_function_configuration()
        .function_name(name)
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .set_variables(Some(vars))
                .build(),
        )
        .send()
        .await
        .expect("UpdateFunctionConfiguration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_healthy_deployment_and_names_each_break() {
    let emu = Emulator::start().expect("an emulator of its own");
    let management = organization_on(&emu).await;
    let member = create_account_on(&emu, "doctor").await;
    let cli = deploy(&emu, &management, "").await;
    let admin = emu.config();

    healthy(&cli, "the deployment");

    // `keyfleet init` from the example's outputs, then doctor on its file.
    let dir = tempfile::tempdir().expect("temp dir");
    let written = dir.path().join("keyfleet.toml");
    let outputs = serde_json::json!({
        "coordinator_function_name": {"sensitive": false, "type": "string", "value": "keyfleet-coordinator"},
        "report_bucket": {"sensitive": false, "type": "string", "value": "keyfleet-reports"},
        "alerts_topic_arn": {"sensitive": false, "type": "string",
                             "value": format!("arn:aws:sns:us-east-1:{management}:keyfleet-alerts")},
        "agent_stack_set_name": {"sensitive": false, "type": "string", "value": "keyfleet-agent"},
    });
    let mut init = std::process::Command::new(env!("CARGO_BIN_EXE_keyfleet"))
        .arg("--config")
        .arg(&written)
        .args([
            "--endpoint-url",
            &cli.endpoint,
            "init",
            "--region",
            "us-east-1",
        ])
        .env_remove("AWS_ACCESS_KEY_ID")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("keyfleet init runs");
    use std::io::Write as _;
    init.stdin
        .take()
        .expect("stdin")
        .write_all(outputs.to_string().as_bytes())
        .expect("outputs written");
    let out = init.wait_with_output().expect("keyfleet init ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("wrote "), "{stdout}");
    assert!(stdout.contains("0 warnings, 0 failed"), "{stdout}");
    let file = std::fs::read_to_string(&written).expect("the file");
    assert!(
        file.contains("function = \"keyfleet-coordinator\""),
        "{file}"
    );
    assert!(
        file.contains("alerts_topic = \"keyfleet-alerts\""),
        "{file}"
    );
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_keyfleet"))
        .arg("--config")
        .arg(&written)
        .args(["init", "--no-doctor"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("keyfleet init runs");
    assert!(!again.status.success(), "never overwrites");
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    let text = cli.run(&["doctor"]);
    assert!(text.contains("0 warnings, 0 failed"), "{text}");
    for name in [
        "identity",
        "coordinator function",
        "coordinator concurrency",
        "organization",
        "schedules",
        "coordinator errors",
        "results queue",
        "dead letters",
        "report bucket",
        "SES sender",
        "SES account",
        "SES configuration set",
        "alerts topic",
        "agent StackSet",
        "agents' key",
        "member accounts",
    ] {
        assert!(text.contains(&format!("PASS  {name} ")), "{name}:\n{text}");
    }

    // Credentials AWS refuses: a deleted key.
    let iam = aws_sdk_iam::Client::new(&admin);
    iam.create_user()
        .user_name("doctor-gone")
        .send()
        .await
        .expect("CreateUser");
    let key = iam
        .create_access_key()
        .user_name("doctor-gone")
        .send()
        .await
        .expect("CreateAccessKey")
        .access_key
        .expect("key");
    iam.delete_access_key()
        .user_name("doctor-gone")
        .access_key_id(key.access_key_id())
        .send()
        .await
        .expect("DeleteAccessKey");
    let out = cli
        .command()
        .env("AWS_ACCESS_KEY_ID", key.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", key.secret_access_key())
        .args(["doctor", "--json"])
        .output()
        .expect("doctor runs");
    let checks: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        status_of(&checks, "identity")["status"],
        "FAIL",
        "{checks:#?}"
    );
    assert!(status_of(&checks, "identity")["saw"]
        .as_str()
        .unwrap()
        .contains("InvalidClientTokenId"));
    assert_eq!(out.status.code(), Some(3));

    // The coordinator's environment does not parse.
    let lambda = aws_sdk_lambda::Client::new(&admin);
    let function = "keyfleet-coordinator";
    let env = function_env(&lambda, function).await;
    let mut bad = env.clone();
    bad.insert("KEYFLEET_POLICY".into(), "{not json".into());
    set_function_env(&lambda, function, bad).await;
    let check = broken(&cli, "coordinator function", "FAIL");
    assert!(
        check["saw"].as_str().unwrap().contains("KEYFLEET_POLICY"),
        "{check}"
    );
    set_function_env(&lambda, function, env).await;
    healthy(&cli, "the environment mended");

    // Reserved concurrency below the results mapping's maximum (5).
    let concurrency = |n: i32| {
        let lambda = lambda.clone();
        async move {
            lambda
                .put_function_concurrency()
                .function_name(function)
                .reserved_concurrent_executions(n)
                .send()
                .await
                .expect("PutFunctionConcurrency");
        }
    };
    concurrency(3).await;
    let check = broken(&cli, "coordinator concurrency", "FAIL");
    assert!(
        check["fix"]
            .as_str()
            .unwrap()
            .contains("reserved_concurrency"),
        "{check}"
    );
    concurrency(10).await;

    // The org reader may no longer list the organization (its policy
    // gone).
    let reader = "keyfleet-org-reader";
    let names = iam
        .list_role_policies()
        .role_name(reader)
        .send()
        .await
        .expect("ListRolePolicies")
        .policy_names;
    let mut kept = Vec::new();
    for name in names {
        let doc = iam
            .get_role_policy()
            .role_name(reader)
            .policy_name(&name)
            .send()
            .await
            .expect("GetRolePolicy")
            .policy_document;
        iam.delete_role_policy()
            .role_name(reader)
            .policy_name(&name)
            .send()
            .await
            .expect("DeleteRolePolicy");
        kept.push((name, urlencoding_decode(&doc)));
    }
    assert!(!kept.is_empty(), "the org reader has its policy inline");
    let check = broken(&cli, "organization", "FAIL");
    assert!(
        check["saw"].as_str().unwrap().contains("AccessDenied"),
        "{check}"
    );
    for (name, doc) in kept {
        iam.put_role_policy()
            .role_name(reader)
            .policy_name(name)
            .policy_document(doc)
            .send()
            .await
            .expect("PutRolePolicy");
    }
    healthy(&cli, "the org reader's policy put back");

    // The sweep's schedule disabled.
    let events = aws_sdk_eventbridge::Client::new(&admin);
    events
        .disable_rule()
        .name("keyfleet-sweep")
        .send()
        .await
        .expect("DisableRule");
    let check = broken(&cli, "schedules", "FAIL");
    assert_eq!(check["fix"], "aws events enable-rule --name keyfleet-sweep");
    events
        .enable_rule()
        .name("keyfleet-sweep")
        .send()
        .await
        .expect("EnableRule");

    // The results queue lets anyone send.
    let sqs = aws_sdk_sqs::Client::new(&admin);
    let results = queue_url(&sqs, "keyfleet-results").await;
    let policy = queue_policy(&sqs, &results).await;
    set_queue_policy(&sqs, &results, opened(&policy, "Anyone")).await;
    let check = broken(&cli, "results queue", "FAIL");
    assert!(
        check["saw"].as_str().unwrap().contains("statement Anyone"),
        "{check}"
    );
    set_queue_policy(&sqs, &results, policy).await;

    // A result in the dead-letter queue.
    let dlq = sqs
        .get_queue_url()
        .queue_name("keyfleet-results-dlq")
        .send()
        .await
        .expect("GetQueueUrl")
        .queue_url
        .expect("url");
    sqs.send_message()
        .queue_url(&dlq)
        .message_body("{}")
        .send()
        .await
        .expect("SendMessage");
    let check = broken(&cli, "dead letters", "WARN");
    assert!(
        check["saw"]
            .as_str()
            .unwrap()
            .contains("1 in keyfleet-results-dlq"),
        "{check}"
    );
    sqs.purge_queue()
        .queue_url(&dlq)
        .send()
        .await
        .expect("PurgeQueue");
    healthy(&cli, "the dead letters read");

    // The report bucket open to public access.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&admin)
            .force_path_style(true)
            .build(),
    );
    let block = s3
        .get_public_access_block()
        .bucket("keyfleet-reports")
        .send()
        .await
        .expect("GetPublicAccessBlock")
        .public_access_block_configuration
        .expect("block");
    s3.delete_public_access_block()
        .bucket("keyfleet-reports")
        .send()
        .await
        .expect("DeletePublicAccessBlock");
    broken(&cli, "report bucket", "FAIL");
    s3.put_public_access_block()
        .bucket("keyfleet-reports")
        .public_access_block_configuration(block)
        .send()
        .await
        .expect("PutPublicAccessBlock");
    // ... then without its TLS-only policy, then without encryption.
    let bucket_policy = s3
        .get_bucket_policy()
        .bucket("keyfleet-reports")
        .send()
        .await
        .expect("GetBucketPolicy")
        .policy
        .expect("policy");
    s3.delete_bucket_policy()
        .bucket("keyfleet-reports")
        .send()
        .await
        .expect("DeleteBucketPolicy");
    let check = broken(&cli, "report bucket", "FAIL");
    assert!(check["saw"].as_str().unwrap().contains("TLS"), "{check}");
    s3.put_bucket_policy()
        .bucket("keyfleet-reports")
        .policy(bucket_policy)
        .send()
        .await
        .expect("PutBucketPolicy");
    let encryption = s3
        .get_bucket_encryption()
        .bucket("keyfleet-reports")
        .send()
        .await
        .expect("GetBucketEncryption")
        .server_side_encryption_configuration
        .expect("encryption");
    s3.delete_bucket_encryption()
        .bucket("keyfleet-reports")
        .send()
        .await
        .expect("DeleteBucketEncryption");
    let check = broken(&cli, "report bucket", "FAIL");
    assert!(
        check["saw"]
            .as_str()
            .unwrap()
            .contains("no default encryption"),
        "{check}"
    );
    s3.put_bucket_encryption()
        .bucket("keyfleet-reports")
        .server_side_encryption_configuration(encryption)
        .send()
        .await
        .expect("PutBucketEncryption");
    healthy(&cli, "the bucket mended");

    // The sender's identity gone, then the configuration set.
    let ses = aws_sdk_sesv2::Client::new(&admin);
    ses.delete_email_identity()
        .email_identity("keyfleet@example.com")
        .send()
        .await
        .expect("DeleteEmailIdentity");
    broken(&cli, "SES sender", "FAIL");
    ses.create_email_identity()
        .email_identity("keyfleet@example.com")
        .send()
        .await
        .expect("CreateEmailIdentity");
    ses.delete_configuration_set()
        .configuration_set_name("keyfleet")
        .send()
        .await
        .expect("DeleteConfigurationSet");
    broken(&cli, "SES configuration set", "FAIL");
    ses.create_configuration_set()
        .configuration_set_name("keyfleet")
        .send()
        .await
        .expect("CreateConfigurationSet");
    healthy(&cli, "SES mended");

    // Nobody subscribed to the alerts.
    let sns = aws_sdk_sns::Client::new(&admin);
    let topic = format!("arn:aws:sns:us-east-1:{management}:keyfleet-alerts");
    let subscriptions = sns
        .list_subscriptions_by_topic()
        .topic_arn(&topic)
        .send()
        .await
        .expect("ListSubscriptionsByTopic");
    for s in subscriptions.subscriptions() {
        sns.unsubscribe()
            .subscription_arn(s.subscription_arn().unwrap_or_default())
            .send()
            .await
            .expect("Unsubscribe");
    }
    broken(&cli, "alerts topic", "FAIL");
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("email")
        .endpoint("sec@example.com")
        .send()
        .await
        .expect("Subscribe");
    healthy(&cli, "the alerts mended");

    // A day's SES quota below what the last run sent.
    cli.run(&["run"]);
    emu.set_ses_quota(Some(0), None, None).expect("quota");
    let check = broken(&cli, "SES account", "WARN");
    assert!(
        check["saw"]
            .as_str()
            .unwrap()
            .contains("below the last run's"),
        "{check}"
    );
    emu.reset_ses_quota(None).expect("quota reset");
    healthy(&cli, "the quota raised");

    // The agents seal to a key the ring does not hold (the StackSet's
    // parameter changed; not put back).
    let cfn = aws_sdk_cloudformation::Client::new(&admin);
    let set = cfn
        .describe_stack_set()
        .stack_set_name("keyfleet-agent")
        .send()
        .await
        .expect("DescribeStackSet")
        .stack_set
        .expect("the StackSet");
    // The StackSet's parameters, `changed` given new values, the others
    // their previous ones.
    let parameters = |changed: &[(&str, &str)]| -> Vec<aws_sdk_cloudformation::types::Parameter> {
        set.parameters()
            .iter()
            .map(|p| {
                let key = p.parameter_key().unwrap_or_default();
                let b = aws_sdk_cloudformation::types::Parameter::builder().parameter_key(key);
                match changed.iter().find(|(k, _)| *k == key) {
                    Some((_, value)) => b.parameter_value(*value),
                    None => b.use_previous_value(true),
                }
                .build()
            })
            .collect()
    };
    let update = |changed: &[(&str, &str)], auto: bool| {
        let (cfn, params) = (cfn.clone(), parameters(changed));
        async move {
            cfn.update_stack_set()
                .stack_set_name("keyfleet-agent")
                .use_previous_template(true)
                .set_parameters(Some(params))
                .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam)
                .auto_deployment(
                    aws_sdk_cloudformation::types::AutoDeployment::builder()
                        .enabled(auto)
                        .retain_stacks_on_account_removal(false)
                        .build(),
                )
                .send()
                .await
                .expect("UpdateStackSet");
        }
    };
    // An instance that failed to update: OUTDATED, with its reason (a key
    // id the template's pattern refuses), then mended.
    let key_now = set
        .parameters()
        .iter()
        .find(|p| p.parameter_key() == Some("CoordinatorKeyId"))
        .and_then(|p| p.parameter_value())
        .expect("the key id")
        .to_string();
    update(&[("CoordinatorKeyId", "not a key id!")], true).await;
    let check = broken(&cli, "agent StackSet", "FAIL");
    assert!(
        check["saw"]
            .as_str()
            .unwrap()
            .contains(&format!("{member} OUTDATED")),
        "{check}"
    );
    update(&[("CoordinatorKeyId", key_now.as_str())], true).await;
    healthy(&cli, "the instance updated");

    update(&[("CoordinatorKeyId", "kf-00000000000000aa")], true).await;
    let check = broken(&cli, "agents' key", "FAIL");
    assert!(
        check["saw"]
            .as_str()
            .unwrap()
            .contains("kf-00000000000000aa"),
        "{check}"
    );

    // Auto-deployment off, and an account that joins meanwhile gets no
    // agent.
    update(&[], false).await;
    let check = broken(&cli, "agent StackSet", "FAIL");
    assert!(
        check["saw"]
            .as_str()
            .unwrap()
            .contains("auto-deployment off"),
        "{check}"
    );
    let joined = create_account_on(&emu, "doctor-late").await;
    update(&[], true).await;
    let check = broken(&cli, "agent StackSet", "FAIL");
    assert!(check["saw"].as_str().unwrap().contains(&joined), "{check}");

    // A failed invocation of the coordinator (a malformed event) is in its
    // log: a warning, with the error.
    let bad = lambda
        .invoke()
        .function_name(function)
        .payload(aws_sdk_lambda::primitives::Blob::new(
            r#"{"action":"no-such-action"}"#,
        ))
        .send()
        .await
        .expect("Invoke");
    assert!(bad.function_error().is_some(), "the event is refused");
    let check = broken(&cli, "coordinator errors", "WARN");
    assert!(
        check["saw"].as_str().unwrap().contains("1 error(s)"),
        "{check}"
    );
    assert!(
        check["fix"]
            .as_str()
            .unwrap()
            .contains("aws logs tail /aws/lambda/keyfleet-coordinator"),
        "{check}"
    );

    // A jobs queue anyone may send to.
    let member_sdk = emu.config_for_account(&member).await.expect("member");
    let member_sqs = aws_sdk_sqs::Client::new(&member_sdk);
    let jobs = queue_url(&member_sqs, "keyfleet-jobs").await;
    let jobs_policy = queue_policy(&member_sqs, &jobs).await;
    set_queue_policy(&member_sqs, &jobs, opened(&jobs_policy, "AnyoneSends")).await;
    let check = broken(&cli, "member accounts", "FAIL");
    assert!(
        check["saw"]
            .as_str()
            .unwrap()
            .contains("statement AnyoneSends"),
        "{check}"
    );
    set_queue_policy(&member_sqs, &jobs, jobs_policy).await;

    // An agent behind its StackSet: it seals to another key than the
    // StackSet gives.
    let agent = aws_sdk_lambda::Client::new(&member_sdk);
    let mut agent_env = function_env(&agent, "keyfleet-agent").await;
    agent_env.insert(
        "KEYFLEET_COORDINATOR_KEY_ID".into(),
        "kf-00000000000000bb".into(),
    );
    set_function_env(&agent, "keyfleet-agent", agent_env).await;
    let check = broken(&cli, "member accounts", "FAIL");
    assert!(
        check["saw"]
            .as_str()
            .unwrap()
            .contains("seals to `kf-00000000000000bb`"),
        "{check}"
    );

    // An account without its agent (last: the function is not put back).
    aws_sdk_lambda::Client::new(&member_sdk)
        .delete_function()
        .function_name("keyfleet-agent")
        .send()
        .await
        .expect("DeleteFunction");
    let check = broken(&cli, "member accounts", "FAIL");
    assert!(check["saw"].as_str().unwrap().contains(&member), "{check}");
    assert!(
        check["saw"].as_str().unwrap().contains("no agent function"),
        "{check}"
    );
}

/// IAM answers a policy document URL-encoded.
fn urlencoding_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}
