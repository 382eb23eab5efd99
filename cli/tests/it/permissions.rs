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

/// The actions the Allow statements of a role's inline policies grant.
async fn granted(account: &str, role: &str) -> BTreeSet<String> {
    let iam = iam_of(account).await;
    let names = iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .unwrap_or_else(|e| panic!("ListRolePolicies {role}: {e:?}"));
    let mut actions = BTreeSet::new();
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
        for st in statements.iter().filter(|s| s["Effect"] == "Allow") {
            match &st["Action"] {
                serde_json::Value::String(a) => {
                    actions.insert(a.clone());
                }
                serde_json::Value::Array(a) => {
                    actions.extend(a.iter().filter_map(|x| x.as_str().map(str::to_string)))
                }
                _ => {}
            }
        }
    }
    actions
}

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
    .await
}

/// [`assert_used_matches_granted`] for the given roles (name, account).
pub async fn assert_roles_use_what_they_are_granted(roles: &[(&str, &str)]) {
    let decisions = emu().iam_decisions().expect("decisions");
    let mut report = Vec::new();
    for &(role, account) in roles {
        let mine: Vec<&IamDecision> = decisions
            .iter()
            .filter(|d| d.role == role && d.account == account)
            .collect();
        let denied: Vec<String> = mine
            .iter()
            .filter(|d| d.decision != "ALLOWED")
            .map(|d| format!("{} on {}", d.action, d.resource))
            .collect();
        assert!(
            denied.is_empty(),
            "{role} in {account} was denied calls the code makes: {denied:#?}"
        );
        let used: BTreeSet<String> = mine.iter().map(|d| d.action.clone()).collect();
        let granted = granted(account, role).await;
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
