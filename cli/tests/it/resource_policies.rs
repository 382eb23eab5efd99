//! The resource policies keyfleet deploys refuse whom they should, with the
//! emulator's policy engine deciding: an administrator of a member account
//! can neither write nor delete the users' protected records (items of the
//! table `keyfleet-records`, written by the deployed agent), nor change,
//! delete or re-policy the table; nor read, write, delete or re-policy a
//! user's delivery secret (`keyfleet/<user>`, as the agent writes it with
//! Secrets Manager delivery); and nobody but the coordinator's role reads
//! the coordinator's private key. Each refusal is shown to be the
//! statement's own: the same caller gets through once that statement is
//! widened to admit it, and the deployed policy is put back.
//!
//! An organization's SCP is AWS's decision too: one denying
//! `iam:DeleteAccessKey` in one OU fails that account's deletions, named in
//! the report, and leaves the other accounts alone.
//!
//! The callers are `intruder-*` roles with `Allow *`: enforcement is turned
//! on for them too ([`keyfleet_testkit::Emulator::enforce_iam_also_for`]);
//! no other test uses such names.

use crate::common::*;
use aws_config::SdkConfig;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use keyfleet_testkit::seed::{self, key, user};

const INTRUDER: &str = "intruder-admin";

/// A session of an `intruder-admin` role with `Allow *` in `account`: an
/// administrator of that account.
async fn administrator_of(account: &str) -> SdkConfig {
    emu()
        .enforce_iam_also_for(&["intruder-*"])
        .expect("enforcement for intruder roles");
    let admin = emu()
        .config_for_account(account)
        .await
        .expect("the account's test kit");
    let iam = aws_sdk_iam::Client::new(&admin);
    let trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
        "Action": "sts:AssumeRole"}]});
    if let Err(e) = iam
        .create_role()
        .role_name(INTRUDER)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
    {
        assert!(
            e.as_service_error()
                .is_some_and(|s| s.is_entity_already_exists_exception()),
            "CreateRole: {e:?}"
        );
    }
    let everything = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "*", "Resource": "*"}]});
    iam.put_role_policy()
        .role_name(INTRUDER)
        .policy_name("administrator")
        .policy_document(everything.to_string())
        .send()
        .await
        .expect("PutRolePolicy");
    let creds = aws_sdk_sts::Client::new(&admin)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/{INTRUDER}"))
        .role_session_name("intruder")
        .send()
        .await
        .expect("AssumeRole intruder-admin")
        .credentials
        .expect("credentials");
    admin
        .to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    creds.access_key_id,
                    creds.secret_access_key,
                    Some(creds.session_token),
                    None,
                    "intruder",
                ),
            ),
        )
        .build()
}

/// The call failed with the service's AccessDeniedException (Secrets
/// Manager, DynamoDB), by an explicit deny of the resource policy; returns
/// the message.
fn refused<T, E: ProvideErrorMetadata + std::fmt::Debug>(
    what: &str,
    r: Result<T, aws_sdk_secretsmanager::error::SdkError<E>>,
) -> String {
    match r {
        Ok(_) => panic!("{what} was allowed"),
        Err(e) => {
            let code = e.code().unwrap_or_default().to_string();
            let message = e.message().unwrap_or_default().to_string();
            assert_eq!(code, "AccessDeniedException", "{what}: {e:?}");
            assert!(
                message.ends_with("with an explicit deny in a resource-based policy"),
                "{what}: {message}"
            );
            message
        }
    }
}

/// The secret's policy with `extra` added to the `aws:PrincipalArn` values
/// of the statement `sid`'s condition: the statement widened to admit it.
fn widened(policy: &str, sid: &str, extra: &str) -> String {
    let mut doc: serde_json::Value = serde_json::from_str(policy).expect("policy JSON");
    let statement = doc["Statement"]
        .as_array_mut()
        .expect("statements")
        .iter_mut()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("no statement {sid} in {policy}"));
    let condition = statement["Condition"]
        .as_object_mut()
        .expect("a condition")
        .values_mut()
        .next()
        .expect("one operator");
    let values = &mut condition["aws:PrincipalArn"];
    let mut list: Vec<serde_json::Value> = match values.take() {
        serde_json::Value::Array(a) => a,
        v => vec![v],
    };
    list.push(extra.into());
    *values = serde_json::Value::Array(list);
    doc.to_string()
}

async fn resource_policy(sm: &aws_sdk_secretsmanager::Client, secret: &str) -> String {
    sm.get_resource_policy()
        .secret_id(secret)
        .send()
        .await
        .expect("GetResourcePolicy")
        .resource_policy
        .expect("a resource policy")
}

async fn put_policy(sm: &aws_sdk_secretsmanager::Client, secret: &str, policy: &str) {
    sm.put_resource_policy()
        .secret_id(secret)
        .resource_policy(policy)
        .send()
        .await
        .expect("PutResourcePolicy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_administrator_cannot_write_the_records_or_change_their_table() {
    use aws_sdk_dynamodb::types::{AttributeValue, PointInTimeRecoverySpecification};
    let cli = deployment().await;
    let account = create_account("cli-record").await;
    let iam = iam_of(&account).await;
    seed::populate(
        emu(),
        &iam,
        &account,
        &[user("record-owner", vec![key(85, true, Some(1))])],
    )
    .await
    .expect("seed");
    // The deployed agent rotates the key and keeps the user's record.
    let out = cli.run(&["run", "--accounts", &account]);
    let report = cli.report(&run_id_in(&out));
    assert_eq!(
        report["accounts"][0]["users"][0]["verdict"], "rotated",
        "{report}"
    );
    let table = keyfleet_agent::table::TABLE_NAME;
    let arn = format!("arn:aws:dynamodb:us-east-1:{account}:table/{table}");
    let admin =
        aws_sdk_dynamodb::Client::new(&emu().config_for_account(&account).await.expect("test kit"));
    let deployed = admin
        .get_resource_policy()
        .resource_arn(&arn)
        .send()
        .await
        .expect("GetResourcePolicy")
        .policy
        .expect("the table's policy");
    // The policy the StackSet template deploys is the one the agent
    // trusts.
    assert_eq!(
        keyfleet_agent::table::canonical(&serde_json::from_str(&deployed).unwrap()),
        keyfleet_agent::table::canonical(&keyfleet_agent::table::table_policy(&account)),
        "the template's table policy is agent::table::table_policy"
    );
    let pk = AttributeValue::S(keyfleet_agent::record::item_key("record-owner"));
    let body = admin
        .get_item()
        .table_name(table)
        .key("pk", pk.clone())
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the user's record");
    let intruder_arn = format!("arn:aws:iam::{account}:role/{INTRUDER}");
    let ddb = aws_sdk_dynamodb::Client::new(&administrator_of(&account).await);

    // OnlyTheAgentWritesItems, for the item writes.
    refused(
        "PutItem",
        ddb.put_item()
            .table_name(table)
            .set_item(Some(body.clone()))
            .send()
            .await,
    );
    refused(
        "UpdateItem",
        ddb.update_item()
            .table_name(table)
            .key("pk", pk.clone())
            .update_expression("SET #b = :b")
            .expression_attribute_names("#b", "body")
            .expression_attribute_values(":b", AttributeValue::S("{}".into()))
            .send()
            .await,
    );
    refused(
        "DeleteItem",
        ddb.delete_item()
            .table_name(table)
            .key("pk", pk.clone())
            .send()
            .await,
    );
    // A transaction's puts are PutItems: the agent clears its intents so.
    refused(
        "TransactWriteItems",
        ddb.transact_write_items()
            .transact_items(
                aws_sdk_dynamodb::types::TransactWriteItem::builder()
                    .put(
                        aws_sdk_dynamodb::types::Put::builder()
                            .table_name(table)
                            .set_item(Some(body.clone()))
                            .build()
                            .expect("a put"),
                    )
                    .build(),
            )
            .send()
            .await,
    );
    // OnlyTheStackChangesTheTable, for the table and its policy.
    refused(
        "UpdateContinuousBackups",
        ddb.update_continuous_backups()
            .table_name(table)
            .point_in_time_recovery_specification(
                PointInTimeRecoverySpecification::builder()
                    .point_in_time_recovery_enabled(false)
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
    );
    refused(
        "PutResourcePolicy",
        ddb.put_resource_policy()
            .resource_arn(&arn)
            .policy(widened(&deployed, "OnlyTheAgentWritesItems", &intruder_arn))
            .send()
            .await,
    );
    refused(
        "DeleteResourcePolicy",
        ddb.delete_resource_policy().resource_arn(&arn).send().await,
    );
    refused(
        "DeleteTable",
        ddb.delete_table().table_name(table).send().await,
    );

    // Each Deny widened to admit the administrator lets the same calls
    // through: the refusals were the statements', not an accident.
    let wide = widened(
        &widened(&deployed, "OnlyTheAgentWritesItems", &intruder_arn),
        "OnlyTheStackChangesTheTable",
        &intruder_arn,
    );
    admin
        .put_resource_policy()
        .resource_arn(&arn)
        .policy(&wide)
        .send()
        .await
        .expect("widened");
    ddb.put_item()
        .table_name(table)
        .set_item(Some(body.clone()))
        .send()
        .await
        .expect("PutItem (the record as it was) once the statement admits the administrator");
    ddb.put_resource_policy()
        .resource_arn(&arn)
        .policy(&deployed)
        .send()
        .await
        .expect("PutResourcePolicy (the deployed one) once the statement admits the administrator");
    refused(
        "PutItem, restored",
        ddb.put_item()
            .table_name(table)
            .set_item(Some(body))
            .send()
            .await,
    );

    // The restored table is still keyfleet's own: the next run trusts it.
    let out = cli.run(&["run", "--accounts", &account]);
    let report = cli.report(&run_id_in(&out));
    let user = &report["accounts"][0]["users"][0];
    assert!(user["note"].is_null(), "{user}");
    assert_eq!(report["accounts"][0]["state"], "ok", "{report}");
}

/// A delivery secret as the agent writes it with Secrets Manager delivery
/// (`keyfleet_agent::delivery`): only the user and the agent read it, and
/// nobody but the agent writes, deletes or re-polices it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_administrator_cannot_read_write_delete_or_repolicy_a_delivery_secret() {
    deployment().await;
    let account = create_account("cli-delivery").await;
    let iam = iam_of(&account).await;
    seed::populate(
        emu(),
        &iam,
        &account,
        &[user("secret-owner", vec![key(20, true, Some(1))])],
    )
    .await
    .expect("seed");
    let kit = emu().config_for_account(&account).await.expect("test kit");
    let admin = aws_sdk_secretsmanager::Client::new(&kit);
    let user_arn = format!("arn:aws:iam::{account}:user/secret-owner");
    keyfleet_agent::delivery::store(
        &admin,
        &user_arn,
        &keyfleet_protocol::Credential {
            account_id: account.clone(),
            user_name: "secret-owner".into(),
            access_key_id: "AKIAEXAMPLEDELIVERY1".into(),
            secret_access_key: keyfleet_protocol::Secret::new("not-a-real-secret-key"),
            created: time::OffsetDateTime::now_utc(),
        },
    )
    .await
    .expect("the delivery secret, as the agent writes it");
    let secret = "keyfleet/secret-owner";
    let deployed = resource_policy(&admin, secret).await;
    let intruder_arn = format!("arn:aws:iam::{account}:role/{INTRUDER}");
    let sm = aws_sdk_secretsmanager::Client::new(&administrator_of(&account).await);

    // OnlyOwnerAndAgentRead.
    refused(
        "GetSecretValue",
        sm.get_secret_value().secret_id(secret).send().await,
    );
    // OnlyAgentWrites, for each action it names.
    refused(
        "PutSecretValue",
        sm.put_secret_value()
            .secret_id(secret)
            .secret_string("{}")
            .send()
            .await,
    );
    refused(
        "UpdateSecret",
        sm.update_secret()
            .secret_id(secret)
            .description("mine")
            .send()
            .await,
    );
    refused(
        "DeleteSecret",
        sm.delete_secret()
            .secret_id(secret)
            .force_delete_without_recovery(true)
            .send()
            .await,
    );
    refused(
        "PutResourcePolicy",
        sm.put_resource_policy()
            .secret_id(secret)
            .resource_policy(widened(&deployed, "OnlyAgentWrites", &intruder_arn))
            .send()
            .await,
    );
    refused(
        "DeleteResourcePolicy",
        sm.delete_resource_policy().secret_id(secret).send().await,
    );
    assert_eq!(resource_policy(&admin, secret).await, deployed);

    // Each Deny widened to admit the administrator lets the same calls
    // through: the refusals were the statements', not an accident.
    let wide_read = widened(&deployed, "OnlyOwnerAndAgentRead", &intruder_arn);
    put_policy(
        &admin,
        secret,
        &widened(&wide_read, "OnlyAgentWrites", &intruder_arn),
    )
    .await;
    sm.get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .expect("GetSecretValue once OnlyOwnerAndAgentRead admits the administrator");
    // The widened write lets it put the deployed policy back itself.
    sm.put_resource_policy()
        .secret_id(secret)
        .resource_policy(&deployed)
        .send()
        .await
        .expect("PutResourcePolicy once OnlyAgentWrites admits the administrator");
    assert_eq!(resource_policy(&admin, secret).await, deployed);
    refused(
        "GetSecretValue, restored",
        sm.get_secret_value().secret_id(secret).send().await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_coordinator_reads_the_private_key() {
    deployment().await;
    let provisioning = keyfleet_testkit::DEFAULT_ACCOUNT;
    let secret = "keyfleet-coordinator/private-key";
    let admin = aws_sdk_secretsmanager::Client::new(&emu().config());
    let deployed = resource_policy(&admin, secret).await;
    let sm = aws_sdk_secretsmanager::Client::new(&administrator_of(provisioning).await);
    // DenyReadExceptCoordinator: an administrator of the provisioning
    // account itself is refused.
    refused(
        "GetSecretValue",
        sm.get_secret_value().secret_id(secret).send().await,
    );
    // The coordinator's role reads it (its cold starts load the ring).
    let decisions = emu().iam_decisions().expect("decisions");
    assert!(
        decisions.iter().any(|d| d.role == "keyfleet-coordinator"
            && d.action == "secretsmanager:GetSecretValue"
            && d.resource
                .contains(":secret:keyfleet-coordinator/private-key")
            && d.decision == "ALLOWED"),
        "the coordinator read its key under the policy"
    );
    // Widened to admit the administrator, the same call goes through.
    let intruder_arn = format!("arn:aws:iam::{provisioning}:role/{INTRUDER}");
    put_policy(
        &admin,
        secret,
        &widened(&deployed, "DenyReadExceptCoordinator", &intruder_arn),
    )
    .await;
    let read = sm.get_secret_value().secret_id(secret).send().await;
    put_policy(&admin, secret, &deployed).await;
    read.expect("GetSecretValue once DenyReadExceptCoordinator admits the administrator");
    refused(
        "GetSecretValue, restored",
        sm.get_secret_value().secret_id(secret).send().await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_scp_denying_key_deletion_in_one_ou_fails_only_that_accounts_deletions() {
    use aws_sdk_organizations::types::PolicyType;
    let cli = deployment().await;
    let org = aws_sdk_organizations::Client::new(&emu().config());
    let root = org.list_roots().send().await.expect("ListRoots").roots()[0]
        .id()
        .expect("root id")
        .to_string();
    let ou = org
        .create_organizational_unit()
        .parent_id(&root)
        .name("no-key-deletion")
        .send()
        .await
        .expect("CreateOrganizationalUnit")
        .organizational_unit()
        .and_then(|o| o.id().map(str::to_string))
        .expect("OU id");
    let locked = create_account("cli-scp-locked").await;
    let free = create_account("cli-scp-free").await;
    org.move_account()
        .account_id(&locked)
        .source_parent_id(&root)
        .destination_parent_id(&ou)
        .send()
        .await
        .expect("MoveAccount");
    if let Err(e) = org
        .enable_policy_type()
        .root_id(&root)
        .policy_type(PolicyType::ServiceControlPolicy)
        .send()
        .await
    {
        assert!(
            e.as_service_error()
                .is_some_and(|s| s.is_policy_type_already_enabled_exception()),
            "EnablePolicyType: {e:?}"
        );
    }
    let deny = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "NoKeyDeletion", "Effect": "Deny", "Action": "iam:DeleteAccessKey", "Resource": "*"}]});
    let scp = org
        .create_policy()
        .name("no-key-deletion")
        .description("test: keys are never deleted in this OU")
        .r#type(PolicyType::ServiceControlPolicy)
        .content(deny.to_string())
        .send()
        .await
        .expect("CreatePolicy")
        .policy()
        .and_then(|p| p.policy_summary())
        .and_then(|s| s.id().map(str::to_string))
        .expect("policy id");
    org.attach_policy()
        .policy_id(&scp)
        .target_id(&ou)
        .send()
        .await
        .expect("AttachPolicy");
    assert!(org
        .list_policies_for_target()
        .target_id(&ou)
        .filter(PolicyType::ServiceControlPolicy)
        .send()
        .await
        .expect("ListPoliciesForTarget")
        .policies()
        .iter()
        .any(|p| p.id() == Some(scp.as_str())));

    // In each account, a key never used in 95 days: due for deletion.
    for (account, name) in [(&locked, "scp-locked-user"), (&free, "scp-free-user")] {
        seed::populate(
            emu(),
            &iam_of(account).await,
            account,
            &[user(name, vec![key(95, true, None)])],
        )
        .await
        .expect("seed");
    }
    let out = cli.output(&["run", "--accounts", &format!("{locked},{free}")]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    // The locked account is partial: the run says so in its exit code.
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&locked) && stderr.contains("partial"),
        "{stderr}"
    );
    let report = cli.report(&run_id_in(&format!("{stdout}\n{stderr}")));
    let account = |id: &str| {
        report["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .find(|a| a["account_id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {report}"))
            .clone()
    };
    let deletions = |a: &serde_json::Value| -> Vec<serde_json::Value> {
        a["users"][0]["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .filter(|x| x["action"] == "delete")
            .cloned()
            .collect()
    };

    let l = account(&locked);
    assert_eq!(l["state"], "partial", "{l}");
    let d = deletions(&l);
    assert_eq!(d.len(), 1, "{l}");
    assert_eq!(d[0]["result"]["outcome"], "failed", "{l}");
    let error = d[0]["result"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("AccessDenied")
            && error.contains("iam:DeleteAccessKey")
            && error.contains("with an explicit deny in a service control policy"),
        "the failed deletion names the SCP: {error}"
    );
    assert_eq!(
        seed::keys(&iam_of(&locked).await, "scp-locked-user")
            .await
            .expect("keys")
            .len(),
        1,
        "the key is still there"
    );

    let f = account(&free);
    assert_eq!(f["state"], "ok", "{f}");
    assert_eq!(deletions(&f)[0]["result"]["outcome"], "done", "{f}");
    assert!(
        seed::keys(&iam_of(&free).await, "scp-free-user")
            .await
            .expect("keys")
            .is_empty(),
        "the other account's deletion happened"
    );
    // Taking the SCP off lets the next run delete the key.
    org.detach_policy()
        .policy_id(&scp)
        .target_id(&ou)
        .send()
        .await
        .expect("DetachPolicy");
    let out = cli.run(&["run", "--accounts", &locked]);
    let report = cli.report(&run_id_in(&out));
    assert_eq!(report["accounts"][0]["state"], "ok", "{report}");
}
