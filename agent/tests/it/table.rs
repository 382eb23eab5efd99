//! The account's table (`keyfleet_agent::table`): trusted only with
//! keyfleet's policy, writes that survive a lost response, and the upgrade
//! from the releases that kept records and the lease in Secrets Manager.

use crate::fixture::*;
use keyfleet_agent::record::legacy::{self, Found};
use keyfleet_agent::record::UserRecord;
use keyfleet_agent::{handle_message, lease, table, AgentError, JobOutcome};
use keyfleet_protocol::{AccountStatus, Delivery, Policy, Verdict};

async fn table_arn(acct: &TestAccount) -> String {
    format!(
        "arn:aws:dynamodb:us-east-1:{}:table/{}",
        acct.account_id,
        table::TABLE_NAME
    )
}

/// A table that is missing, has no policy, or has a policy that is not
/// keyfleet's: the account fails with the reason in its result, and
/// nothing is read from the table or done in IAM.
#[tokio::test]
async fn a_table_that_is_not_keyfleets_fails_the_account_and_changes_nothing() {
    let mut cases = Vec::new();
    for how in ["missing", "no policy", "foreign policy"] {
        let mut acct = new_account().await;
        acct.populate(&[user("due", vec![key(85, true, Some(1))])])
            .await;
        let arn = table_arn(&acct).await;
        match how {
            "missing" => {
                acct.ddb
                    .delete_table()
                    .table_name(table::TABLE_NAME)
                    .send()
                    .await
                    .unwrap();
            }
            "no policy" => {
                acct.ddb
                    .delete_resource_policy()
                    .resource_arn(&arn)
                    .send()
                    .await
                    .unwrap();
            }
            _ => {
                // keyfleet's policy without the statement that keeps the
                // items to the agent.
                let mut p = table::table_policy(&acct.account_id);
                p["Statement"].as_array_mut().unwrap().remove(0);
                acct.ddb
                    .put_resource_policy()
                    .resource_arn(&arn)
                    .policy(p.to_string())
                    .send()
                    .await
                    .unwrap();
            }
        }
        cases.push((how, acct));
    }
    for (how, acct) in &cases {
        let result = deliver(&acct.agent, &acct.job(Policy::default()))
            .await
            .unwrap_or_else(|e| panic!("{how}: {e}"));
        assert_eq!(result.status, AccountStatus::Failed, "{how}");
        let error = result.error.clone().unwrap_or_default();
        let expected = match *how {
            "missing" => "does not exist",
            "no policy" => "has no resource policy",
            _ => "not keyfleet's",
        };
        assert!(error.contains(expected), "{how}: {error}");
        assert!(result.users.is_empty() && result.sealed.is_empty(), "{how}");
        assert_eq!(acct.keys("due").await.len(), 1, "{how}: IAM untouched");
        assert!(
            !result.api_calls.keys().any(|c| c.starts_with("iam:")),
            "{how}: {:?}",
            result.api_calls
        );
    }
}

/// The table's policy as AWS may give it back (one-element lists as
/// strings, another order) is still keyfleet's.
#[tokio::test]
async fn the_policy_is_compared_by_meaning_not_by_spelling() {
    let mut acct = new_account().await;
    acct.populate(&[user("due", vec![key(85, true, Some(1))])])
        .await;
    let mut p = table::table_policy(&acct.account_id);
    for s in p["Statement"].as_array_mut().unwrap() {
        s["Action"].as_array_mut().unwrap().reverse();
    }
    p["Statement"][0]["Condition"]["StringNotLike"]["aws:PrincipalArn"] =
        serde_json::json!([format!(
            "arn:aws:iam::{}:role/keyfleet-agent*",
            acct.account_id
        )]);
    acct.ddb
        .put_resource_policy()
        .resource_arn(table_arn(&acct).await)
        .policy(serde_json::to_string_pretty(&p).unwrap())
        .send()
        .await
        .unwrap();
    let result = deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    assert_eq!(result.status, AccountStatus::Ok, "{:?}", result.error);
    assert_eq!(result.users[0].verdict, Verdict::Rotated);
}

/// The first write of the user's record (the rotation intent) reaches the
/// table, then its response is lost; the SDK sends it again, which meets
/// its own write. The agent recognises it, and the rotation goes on: one
/// key, delivered.
#[tokio::test]
async fn a_record_write_whose_response_was_lost_is_recognised_as_its_own() {
    let mut acct = new_account().await;
    acct.populate(&[user("lost-write", vec![key(85, true, Some(1))])])
        .await;
    let _faults = faults_lock().await;
    emu()
        .set_faults(serde_json::json!({"seed": 1, "rules": [{
            "service": "dynamodb", "action": "PutItem", "kind": "do_then_drop",
            "account": acct.account_id, "match": {"Item": "user/lost-write"},
            "first_attempts": 1
        }]}))
        .unwrap();
    let result = deliver(&acct.agent, &acct.job(Policy::default())).await;
    let injected = emu().faults().unwrap()["injected"].clone();
    emu().clear_faults().unwrap();
    let result = result.unwrap();
    assert!(
        injected.as_u64().unwrap_or(0) >= 1,
        "fault fired: {injected}"
    );
    let u = &result.users[0];
    assert_eq!(u.verdict, Verdict::Rotated, "{u:?}");
    assert_eq!(result.sealed.len(), 1);
    assert_eq!(acct.keys("lost-write").await.len(), 2);
    let record: UserRecord =
        serde_json::from_str(&acct.record_item("lost-write").await.unwrap()).unwrap();
    assert_eq!(
        record.current.map(|c| c.access_key_id),
        Some(result.sealed[0].access_key_id.clone())
    );
}

/// An earlier release's lease secret, held by a run still going: this
/// run gives way and touches nothing; once that lease is spent, the run
/// goes ahead and deletes it.
#[tokio::test]
async fn an_earlier_releases_lease_is_respected_then_deleted() {
    let mut acct = new_account().await;
    acct.populate(&[user("due", vec![key(85, true, Some(1))])])
        .await;
    let held = |expires: time::OffsetDateTime| {
        serde_json::json!({
            "holder": "old-agent", "run_id": "run-of-the-old-release",
            "expires_at": expires.format(&time::format_description::well_known::Rfc3339).unwrap(),
            "released": false, "runs": ["run-of-the-old-release"],
        })
        .to_string()
    };
    let live = time::OffsetDateTime::now_utc() + time::Duration::minutes(10);
    acct.sm
        .create_secret()
        .name(lease::LEGACY_LEASE)
        .secret_string(held(live))
        .send()
        .await
        .unwrap();
    let job = acct.job(Policy::default());
    match handle_message(&acct.agent, serde_json::to_vec(&job).unwrap(), 1).await {
        JobOutcome::Failed(AgentError::Lease(e)) => {
            assert!(e.to_string().contains("run-of-the-old-release"), "{e}")
        }
        other => panic!("the run must give way: {other:?}"),
    }
    assert_eq!(acct.keys("due").await.len(), 1);

    let spent = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    acct.sm
        .put_secret_value()
        .secret_id(lease::LEGACY_LEASE)
        .secret_string(held(spent))
        .send()
        .await
        .unwrap();
    let result = deliver(&acct.agent, &job).await.unwrap();
    assert_eq!(result.users[0].verdict, Verdict::Rotated);
    let gone = acct
        .sm
        .get_secret_value()
        .secret_id(lease::LEGACY_LEASE)
        .send()
        .await;
    assert!(gone.is_err(), "the earlier release's lease is deleted");
}

/// Secret names under `keyfleet/` in the account.
async fn secrets(acct: &TestAccount) -> Vec<String> {
    acct.sm
        .list_secrets()
        .send()
        .await
        .unwrap()
        .secret_list()
        .iter()
        .filter_map(|s| s.name().map(str::to_string))
        .collect()
}

/// An account upgraded in place: an earlier release recorded that it
/// deactivated a user's key (95 days old) a day ago, and kept a record of
/// another user. The first run of this release moves both records into
/// the table and deletes their secrets (email delivery). The deactivated
/// key is then deleted when the earlier record says (deactivation +
/// delete_after - deactivate_after: 9 days from now), not when its age
/// alone would allow (100 days: 5 days from now). Later runs list Secrets
/// Manager no more.
#[tokio::test]
async fn an_earlier_releases_records_move_into_the_table() {
    let mut acct = new_account().await;
    acct.populate(&[
        user("paused", vec![key(95, false, Some(10))]),
        user("quiet", vec![key(20, true, Some(1))]),
    ])
    .await;
    let arn = |u: &str| format!("arn:aws:iam::{}:user/{u}", acct.account_id);
    let paused_key = acct.created["paused"][0].clone();
    let created = acct
        .iam
        .list_access_keys()
        .user_name("paused")
        .send()
        .await
        .unwrap()
        .access_key_metadata()[0]
        .create_date()
        .map(|d| time::OffsetDateTime::from_unix_timestamp(d.secs()).unwrap())
        .unwrap();
    let paused_state = keyfleet_protocol::KeyState {
        id: paused_key.clone(),
        status: keyfleet_protocol::KeyStatus::Inactive,
        created,
        last_used: None,
        last_used_service: None,
        last_used_region: None,
    };
    let mut paused = UserRecord::new(&acct.account_id, "paused");
    paused.record_deactivation(
        &paused_state,
        time::OffsetDateTime::now_utc() - time::Duration::days(1),
        keyfleet_agent::record::RunMark {
            run_id: "run-of-the-old-release",
            notice: None,
        },
    );
    let quiet = UserRecord::new(&acct.account_id, "quiet");
    for (user, record) in [("paused", &paused), ("quiet", &quiet)] {
        legacy::save(&acct.sm, &arn(user), &Found::Absent, record)
            .await
            .expect("an earlier release's record");
    }
    assert_eq!(secrets(&acct).await.len(), 2);

    let first = deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    assert_eq!(first.status, AccountStatus::Ok, "{:?}", first.error);
    assert!(
        secrets(&acct).await.is_empty(),
        "the earlier secrets are gone"
    );
    let moved: UserRecord =
        serde_json::from_str(&acct.record_item("paused").await.expect("moved")).unwrap();
    assert_eq!(moved.deactivated, paused.deactivated);
    assert!(acct.record_item("quiet").await.is_some());
    // Deactivated a day ago: deleted 10 days after that, not before.
    assert_eq!(acct.keys("paused").await, vec![(paused_key.clone(), false)]);
    emu().advance_clock(5.5, Some(&acct.account_id)).unwrap();
    let second = deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    assert_eq!(acct.keys("paused").await.len(), 1, "{:?}", second.users);
    assert!(
        !second.api_calls.contains_key("secretsmanager:ListSecrets"),
        "listed once: {:?}",
        second.api_calls
    );
    emu().advance_clock(4.0, Some(&acct.account_id)).unwrap();
    let third = deliver(&acct.agent, &acct.job(Policy::default()))
        .await
        .unwrap();
    assert!(acct.keys("paused").await.is_empty(), "{:?}", third.users);
    let u = third
        .users
        .iter()
        .find(|u| u.user_name == "paused")
        .unwrap();
    assert_eq!(u.verdict, Verdict::Cleaned, "{u:?}");
}

/// With Secrets Manager delivery the earlier record's secret is the
/// user's delivery secret: rewritten in AWS's conventional shape from the
/// record's current key, which the table's record does not hold.
#[tokio::test]
async fn with_secrets_manager_delivery_the_earlier_secret_becomes_the_delivery_secret() {
    let mut acct = new_account().await;
    acct.populate(&[user("delivered", vec![key(20, true, Some(1))])])
        .await;
    let arn = format!("arn:aws:iam::{}:user/delivered", acct.account_id);
    let id = acct.created["delivered"][0].clone();
    let mut record = UserRecord::new(&acct.account_id, "delivered");
    record.current = Some(keyfleet_agent::record::CurrentKey {
        access_key_id: id.clone(),
        created: "2026-01-01T00:00:00Z".into(),
        secret_access_key: Some(keyfleet_protocol::Secret::new(
            "s3cr3t-of-the-earlier-release",
        )),
        run_id: None,
    });
    legacy::save(&acct.sm, &arn, &Found::Absent, &record)
        .await
        .unwrap();
    let result = deliver(
        &acct.agent,
        &acct.job(Policy {
            delivery: Delivery::SecretsManager,
            ..Policy::default()
        }),
    )
    .await
    .unwrap();
    assert_eq!(result.status, AccountStatus::Ok, "{:?}", result.error);
    let value: serde_json::Value = serde_json::from_str(
        acct.sm
            .get_secret_value()
            .secret_id("keyfleet/delivered")
            .send()
            .await
            .unwrap()
            .secret_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(value["AccessKeyId"], id.as_str());
    assert_eq!(value["SecretAccessKey"], "s3cr3t-of-the-earlier-release");
    assert_eq!(value["UserName"], "delivered");
    let item = acct.record_item("delivered").await.unwrap();
    assert!(item.contains(&id));
    assert!(!item.contains("s3cr3t"), "no secret in the table: {item}");
}

/// With email delivery, a rotation's whole course leaves nothing in
/// Secrets Manager: no record, no lease.
#[tokio::test]
async fn with_email_delivery_secrets_manager_holds_nothing() {
    let mut acct = new_account().await;
    acct.populate(&[
        user("rotating", vec![key(85, true, Some(1))]),
        user("unused", vec![key(95, true, None)]),
    ])
    .await;
    for days in [0.0, 11.0, 11.0] {
        emu().advance_clock(days, Some(&acct.account_id)).unwrap();
        deliver(&acct.agent, &acct.job(Policy::default()))
            .await
            .unwrap();
    }
    assert_eq!(acct.keys("rotating").await.len(), 1, "rotated through");
    assert!(
        secrets(&acct).await.is_empty(),
        "{:?}",
        secrets(&acct).await
    );
}
