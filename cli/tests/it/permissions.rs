//! The deployed roles' permissions against the calls the system makes.
//!
//! The emulator enforces the identity policies of keyfleet's roles and logs
//! every decision (role, action, resource). [`assert_used_matches_granted`]
//! compares, per role, the actions the runs used with the actions the
//! role's policy grants, both ways: a call the policy lacks was denied and
//! fails the test; an action granted but never used must be in
//! [`UNUSED_BUT_GRANTED`] with the reason it is kept, or be removed from
//! the policy. The agent's decisions are those of the timeline's own
//! account; the coordinator's and the org reader's include the calls of the
//! tests running at the same time, which can only add used actions: an
//! action a clean timeline does not use is on the list whether or not
//! another test happened to use it first, so the outcome does not depend on
//! their timing. Each entry of the list must still be granted.
//!
//! The comparison goes down to statements, conditions included: the
//! emulator's policy engine names, for each allowed call, the Allow
//! statements that matched it (identity and resource policy), so a
//! statement whose condition never holds, or whose resources never match,
//! fails the test; and each Allow of the deployed queue policies
//! ([`RESOURCE_ALLOWS`]) must have admitted its role's calls.
//!
//! [`removing_a_permission_the_agent_uses_fails_the_run_with_access_denied`]
//! shows the other direction: take one action the agent uses away from its
//! role in one account, and that account's run fails with AccessDenied in
//! the report.

use crate::common::*;
use keyfleet_testkit::seed::{self, key, user};
use keyfleet_testkit::IamDecision;
use std::collections::BTreeSet;

/// Actions a role is granted that a full timeline does not use, each with
/// the reason it stays.
pub const UNUSED_BUT_GRANTED: &[(&str, &str, &str)] = &[
    (
        "keyfleet-agent",
        "cloudtrail:LookupEvents",
        "a key's events: the handover check (Secrets Manager delivery) and where a key still in use \
         is used from; the timeline has no key in use after its replacement (where_used:: and \
         credential_process:: tests run both)",
    ),
    (
        "keyfleet-agent",
        "iam:ListUsers",
        "the per-user fallback scan, when IAM cannot generate the credential report \
         (agent tests cover it; a healthy account never needs it)",
    ),
    (
        "keyfleet-agent",
        "iam:ListUserTags",
        "the per-user fallback scan reads each user's tags (see iam:ListUsers)",
    ),
    (
        "keyfleet-agent",
        "secretsmanager:CreateSecret",
        "the delivery secret, with Secrets Manager delivery only; the timeline delivers by email \
         (agent tests: table::with_secrets_manager_delivery_the_earlier_secret_becomes_the_delivery_secret, \
         safety::a_half_made_delivery_secret_is_completed_and_a_foreign_policy_stays_untrusted)",
    ),
    (
        "keyfleet-agent",
        "secretsmanager:PutSecretValue",
        "the delivery secret's new versions (see secretsmanager:CreateSecret)",
    ),
    (
        "keyfleet-agent",
        "secretsmanager:PutResourcePolicy",
        "the delivery secret's policy (see secretsmanager:CreateSecret)",
    ),
    (
        "keyfleet-agent",
        "secretsmanager:GetResourcePolicy",
        "whether the delivery secret is keyfleet's, before a key is created for it (see \
         secretsmanager:CreateSecret)",
    ),
    (
        "keyfleet-agent",
        "secretsmanager:DescribeSecret",
        "a delivery secret without a policy: keyfleet's own half made, or not keyfleet's (see \
         secretsmanager:CreateSecret)",
    ),
    (
        "keyfleet-agent",
        "secretsmanager:TagResource",
        "the tag of a new delivery secret (see secretsmanager:CreateSecret)",
    ),
    (
        "keyfleet-agent",
        "secretsmanager:DeleteSecret",
        "the upgrade from a release that kept records and the lease in Secrets Manager: their \
         secrets are deleted once moved (agent tests: table::an_earlier_releases_records_move_into_the_table, \
         table::an_earlier_releases_lease_is_respected_then_deleted)",
    ),
    (
        "keyfleet-coordinator",
        "kms:Decrypt",
        "S3, SNS and Secrets Manager use the module's customer key on the coordinator's behalf \
         (SSE-KMS); the emulator encrypts nothing, so nobody calls KMS",
    ),
    (
        "keyfleet-coordinator",
        "kms:GenerateDataKey",
        "as kms:Decrypt: writing SSE-KMS objects, publishing to the encrypted topic",
    ),
    (
        "keyfleet-coordinator",
        "s3:DeleteObject",
        "releases an email's ledger claim when SES refuses the send, so the retry sends it \
         (ses::a_refused_key_email_is_sent_on_the_next_delivery_exactly_once)",
    ),
    (
        "keyfleet-coordinator",
        "sns:Publish",
        "alerts: a failed or missing account, a rejected result, an undeliverable owner, a run \
         that failed (the failure tests publish them; a clean timeline has nothing to alert)",
    ),
    (
        "keyfleet-api",
        "kms:Decrypt",
        "S3 and Secrets Manager decrypt with the customer keys on the API's behalf (SSE-KMS); \
         the emulator encrypts nothing, so nobody calls KMS",
    ),
    (
        "keyfleet-api",
        "logs:CreateLogStream",
        "the API Lambda's own log group; `keyfleet serve` logs to stderr, not CloudWatch",
    ),
    (
        "keyfleet-api",
        "logs:PutLogEvents",
        "as logs:CreateLogStream",
    ),
];

/// Allow statements a full timeline matches with no call although some of
/// their actions are used through other statements, each with the reason
/// the statement stays (role, Sid, why).
pub const UNMATCHED_BUT_KEPT: &[(&str, &str, &str)] = &[
    (
        "keyfleet-agent",
        "DeliverySecrets",
        "the delivery secrets (Secrets Manager delivery) and the earlier release's record secrets \
         (the upgrade); the timeline delivers by email in a fresh account (agent tests cover both: \
         see UNUSED_BUT_GRANTED)",
    ),
    (
    "keyfleet-coordinator",
    "AsyncInvokeDeadLetters",
    "Lambda sends an asynchronous invocation (a schedule's event) that failed every attempt to the \
     function's dead-letter queue with this role; no end-to-end invocation fails twice \
     (tests/emulator/test_lambda_delivery.py::test_enforced_logs_and_dead_letter_queue covers it)",
),
];

/// The Allow statements of a role's inline policies: (Sid, actions).
async fn granted(account: &str, role: &str) -> Vec<(String, Vec<String>)> {
    let iam = iam_of(account).await;
    let names = iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .unwrap_or_else(|e| panic!("ListRolePolicies {role}: {e:?}"));
    let mut out = Vec::new();
    for name in names.policy_names() {
        let doc = iam
            .get_role_policy()
            .role_name(role)
            .policy_name(name)
            .send()
            .await
            .expect("GetRolePolicy")
            .policy_document
            .clone();
        let doc = urlencoding_decode(&doc);
        let v: serde_json::Value = serde_json::from_str(&doc).expect("policy JSON");
        let statements = match &v["Statement"] {
            serde_json::Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        for (i, st) in statements.iter().enumerate() {
            if st["Effect"] != "Allow" {
                continue;
            }
            let sid = st["Sid"]
                .as_str()
                .map_or_else(|| format!("#{}", i + 1), str::to_string);
            out.push((sid, strings(&st["Action"])));
        }
    }
    out
}

/// A policy element that is a string or a list of strings.
fn strings(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(a) => vec![a.clone()],
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

/// The Allow statements of the resource policies keyfleet deploys, by the
/// role whose calls must use them: each must have admitted at least one
/// call, conditions included, or it grants nothing the system needs.
/// [`assert_resource_allows_are_used`] reads the deployed policies, so a new
/// Allow statement fails the test until it is listed here.
pub const RESOURCE_ALLOWS: &[(&str, &str, &str)] = &[
    (
        "keyfleet-coordinator",
        "AllowCoordinatorSend",
        "the jobs queue's policy (agent template): the coordinator sends jobs across accounts",
    ),
    (
        "keyfleet-agent",
        "AllowOrganizationAgents",
        "the results queue's policy: agents of the organization send results across accounts",
    ),
];

/// IAM returns policy documents URL-encoded (RFC 3986).
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
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8 policy")
}

/// Per role, used against granted (see the module doc). `agent_account`
/// is the account whose agent role is compared (every account has its own).
pub async fn assert_used_matches_granted(agent_account: &str, coordinator_account: &str) {
    assert_roles_use_what_they_are_granted(&[
        ("keyfleet-agent", agent_account),
        ("keyfleet-coordinator", coordinator_account),
        ("keyfleet-org-reader", coordinator_account),
    ])
    .await;
    assert_resource_allows_are_used(agent_account, coordinator_account).await;
}

/// The Allow statements of a deployed queue's policy, by Sid.
async fn queue_allows(account: &str, queue: &str) -> Vec<String> {
    let sqs = aws_sdk_sqs::Client::new(
        &emu()
            .config_for_account(account)
            .await
            .expect("the account's admin"),
    );
    let url = sqs
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetQueueUrl {queue}: {e:?}"))
        .queue_url
        .unwrap_or_default();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::Policy)
        .send()
        .await
        .expect("GetQueueAttributes");
    let policy = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::Policy))
        .unwrap_or_else(|| panic!("{queue} in {account} has no policy"));
    let doc: serde_json::Value = serde_json::from_str(policy).expect("policy JSON");
    doc["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .enumerate()
        .filter(|(_, st)| st["Effect"] == "Allow")
        .map(|(i, st)| {
            st["Sid"]
                .as_str()
                .map_or_else(|| format!("#{}", i + 1), str::to_string)
        })
        .collect()
}

/// Each Allow of the deployed queue policies is listed in
/// [`RESOURCE_ALLOWS`] and admitted at least one call of its role.
pub async fn assert_resource_allows_are_used(agent_account: &str, coordinator_account: &str) {
    let mut deployed = queue_allows(agent_account, "keyfleet-jobs").await;
    deployed.extend(queue_allows(coordinator_account, "keyfleet-results").await);
    for sid in &deployed {
        assert!(
            RESOURCE_ALLOWS.iter().any(|(_, s, _)| s == sid),
            "the deployed queue policies allow {sid}, which RESOURCE_ALLOWS does not list"
        );
    }
    let decisions = emu().iam_decisions().expect("decisions");
    for (role, sid, what) in RESOURCE_ALLOWS {
        assert!(
            deployed.iter().any(|d| d == sid),
            "{sid} ({what}) is not deployed"
        );
        let used = decisions.iter().any(|d| {
            d.role == *role
                && d.decision == "ALLOWED"
                && d.allowed_by.iter().any(|a| a == &format!("resource:{sid}"))
        });
        assert!(used, "{sid} ({what}) admitted no call of {role}");
    }
}

/// The session name of a test that calls as one of keyfleet's roles to
/// see a call refused (a grant's negative side): its decisions are not
/// the code's, and are left out here.
pub const REFUSAL_CHECK: &str = "refusal-check";

/// [`assert_used_matches_granted`] for the given roles (name, account).
pub async fn assert_roles_use_what_they_are_granted(roles: &[(&str, &str)]) {
    let decisions = emu().iam_decisions().expect("decisions");
    let mut report = Vec::new();
    for &(role, account) in roles {
        let mine: Vec<&IamDecision> = decisions
            .iter()
            .filter(|d| {
                d.role == role && d.account == account && !d.probe && d.session != REFUSAL_CHECK
            })
            .collect();
        let denied: Vec<String> = mine
            .iter()
            .filter(|d| d.decision != "ALLOWED")
            .map(|d| {
                format!(
                    "{} on {} ({}; {})",
                    d.action, d.resource, d.reason, d.context
                )
            })
            .collect();
        assert!(
            denied.is_empty(),
            "{role} in {account} was denied calls the code makes: {denied:#?}"
        );
        let used: BTreeSet<String> = mine.iter().map(|d| d.action.clone()).collect();
        let statements = granted(account, role).await;
        let granted: BTreeSet<String> = statements.iter().flat_map(|(_, a)| a.clone()).collect();
        let lower: BTreeSet<String> = granted.iter().map(|a| a.to_ascii_lowercase()).collect();
        let beyond: Vec<&String> = used
            .iter()
            .filter(|a| !lower.contains(&a.to_ascii_lowercase()))
            .collect();
        assert!(
            beyond.is_empty(),
            "{role} used actions it is not granted: {beyond:?}"
        );
        let used_lower: BTreeSet<String> = used.iter().map(|a| a.to_ascii_lowercase()).collect();
        let unused: Vec<&String> = granted
            .iter()
            .filter(|a| !used_lower.contains(&a.to_ascii_lowercase()))
            .collect();
        for a in &unused {
            report.push(format!("{role}: {a}"));
        }
        for (r, action, why) in UNUSED_BUT_GRANTED.iter().filter(|(r, ..)| *r == role) {
            assert!(
                lower.contains(&action.to_ascii_lowercase()),
                "UNUSED_BUT_GRANTED names {action} of {r} ({why}), which the role no longer grants: drop the entry"
            );
        }
        let unexplained: Vec<&&String> = unused
            .iter()
            .filter(|a| {
                !UNUSED_BUT_GRANTED
                    .iter()
                    .any(|(r, action, _)| *r == role && action == **a)
            })
            .collect();
        assert!(
            unexplained.is_empty(),
            "{role} is granted {unexplained:?} but the runs never used them: remove them from its policy, \
             or add them to UNUSED_BUT_GRANTED with the reason they stay\nused: {used:#?}"
        );
        // Statement by statement, conditions included: each Allow matched
        // at least one call (the engine names the statements that allowed
        // it), unless every action it grants is a justified unused one.
        // A statement whose condition never held, or whose resources never
        // matched, grants nothing the system uses.
        let matched: BTreeSet<&str> = mine
            .iter()
            .flat_map(|d| d.allowed_by.iter().map(String::as_str))
            .collect();
        let idle: Vec<&String> = statements
            .iter()
            .filter(|(sid, actions)| {
                !matched.contains(format!("identity:{sid}").as_str())
                    && !UNMATCHED_BUT_KEPT
                        .iter()
                        .any(|(r, s, _)| *r == role && s == sid)
                    && !actions.iter().all(|a| {
                        UNUSED_BUT_GRANTED
                            .iter()
                            .any(|(r, action, _)| *r == role && action.eq_ignore_ascii_case(a))
                    })
            })
            .map(|(sid, _)| sid)
            .collect();
        for (_, sid, why) in UNMATCHED_BUT_KEPT.iter().filter(|(r, ..)| *r == role) {
            assert!(
                statements.iter().any(|(s, _)| s == sid),
                "UNMATCHED_BUT_KEPT names {sid} of {role} ({why}), which its policy no longer holds: drop the entry"
            );
        }
        assert!(
            idle.is_empty(),
            "{role}'s statements {idle:?} allowed none of its calls (their conditions or resources never \
             matched): narrow or remove them\nmatched: {matched:#?}"
        );
    }
    eprintln!("granted but unused (justified): {report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_permission_the_agent_uses_fails_the_run_with_access_denied() {
    let cli = deployment().await;
    let account = create_account("cli-denied").await;
    let iam = iam_of(&account).await;
    seed::populate(
        emu(),
        &iam,
        &account,
        &[user("denied-user", vec![key(85, true, Some(1))])],
    )
    .await
    .expect("seed");
    // This account's agent role loses the action its scan starts with.
    let doc = iam
        .get_role_policy()
        .role_name("keyfleet-agent")
        .policy_name("keyfleet-agent")
        .send()
        .await
        .expect("GetRolePolicy keyfleet-agent")
        .policy_document
        .clone();
    let doc = urlencoding_decode(&doc);
    assert!(doc.contains("iam:GetAccountAuthorizationDetails"), "{doc}");
    let doc = doc.replace("\"iam:GetAccountAuthorizationDetails\",", "");
    iam.put_role_policy()
        .role_name("keyfleet-agent")
        .policy_name("keyfleet-agent")
        .policy_document(doc)
        .send()
        .await
        .expect("PutRolePolicy");

    let (stdout, stderr) = cli.fail(&["run", "--accounts", &account]);
    assert!(
        stderr.contains("every selected account failed or is missing"),
        "{stderr}"
    );
    let report = cli.report(&run_id_in(&stderr));
    let error = report["accounts"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("AccessDenied")
            && error.contains("not authorized to perform: iam:GetAccountAuthorizationDetails"),
        "the account's error names the denied call: {error}\n{stdout}"
    );
    assert_eq!(
        seed::keys(&iam, "denied-user").await.expect("keys").len(),
        1,
        "nothing changed"
    );
}
