//! The upgrade in place, through the CLI: an account that ran the earlier
//! release (records and lease in Secrets Manager) goes on with this one,
//! and its rotation timeline continues to the deletion, each owner notice
//! sent once.
//!
//! **What stands for the earlier release.** Building the earlier
//! release's binaries inside the suite is too slow, so its *state* is built
//! instead, faithfully: on day 81 this release's deployed agent rotates the
//! key; then the account is made what the earlier release left after that
//! same rotation. The user's record (the very record the agent just wrote,
//! whose content the earlier release wrote alike) becomes the secret
//! `keyfleet/<user>` as the earlier release created it
//! (`keyfleet_agent::record::legacy::save`: its description, user tag and
//! resource policy); the account's lease becomes the secret
//! `keyfleet-lease`, created held and then released as the earlier
//! release's lease did (a `keyfleet-next` version made current from the
//! version read); and the records table holds nothing (the earlier release
//! had no table: the stack update that brings this release creates it
//! empty). The test checks that state before going on.
//!
//! Days 91 and 101 are this release's ordinary runs (`keyfleet run`, the
//! deployed coordinator and agent): the first moves the record into the
//! table, deletes both secrets (email delivery) and deactivates the old
//! key from the moved record; the second deletes the old key.
//!
//! Secrets Manager delivery is not run here: the deployed coordinator's
//! policy (delivery included) is one for the whole shared deployment, so
//! one account cannot switch to it (agent/tests/it/table.rs covers the
//! delivery secret's rewrite against the agent).

use crate::common::{create_account, deployment, emu, iam_of, Cli};
use crate::mails::{about, header, kinds_for};
use aws_sdk_dynamodb::types::AttributeValue;
use keyfleet_agent::lease::{LEASE_KEY, LEGACY_LEASE};
use keyfleet_agent::record::legacy::{self, Found};
use keyfleet_agent::record::{self, Loaded, UserRecord};
use keyfleet_agent::table::{self, Table, TABLE_NAME};
use keyfleet_protocol::report::{AccountState, RunReport};
use keyfleet_protocol::{Action, Outcome, UserReport, Verdict};
use keyfleet_testkit::seed::{self, key, user};
use time::format_description::well_known::Rfc3339;

const USER: &str = "upgraded";
const OWNER_MAIL: &str = "owner-upgraded@example.com";

/// `keyfleet run --json --accounts <account>`: the run's report, every
/// action of it done, and the user's row.
fn run(cli: &Cli, account: &str, step: &str) -> (RunReport, UserReport) {
    let report: RunReport =
        serde_json::from_str(&cli.run(&["run", "--json", "--accounts", account]))
            .expect("report JSON on stdout");
    let acct = report
        .accounts
        .iter()
        .find(|a| a.account_id == account)
        .unwrap_or_else(|| panic!("{step}: account not in the report"));
    assert_eq!(acct.state, AccountState::Ok, "{step}: {:?}", acct.error);
    let row = acct
        .users
        .iter()
        .find(|u| u.user_name == USER)
        .unwrap_or_else(|| panic!("{step}: {USER} not in the report"))
        .clone();
    assert!(
        row.actions
            .iter()
            .all(|a| matches!(a.result, Outcome::Done { .. })),
        "{step}: {:?}",
        row.actions
    );
    (report, row)
}

/// The account as the test kit reaches it (its role is not held to
/// keyfleet's resource policies: it plays the earlier release's agent).
struct Account {
    id: String,
    sm: aws_sdk_secretsmanager::Client,
    ddb: aws_sdk_dynamodb::Client,
    /// The records table, its policy checked as the agent checks it.
    table: Table,
    user_arn: String,
}

impl Account {
    async fn new(id: &str, iam: &aws_sdk_iam::Client) -> Account {
        let cfg = emu().config_for_account(id).await.expect("test kit");
        let ddb = aws_sdk_dynamodb::Client::new(&cfg);
        let table = table::open(&ddb, keyfleet_testkit::REGION, id)
            .await
            .expect("the deployed records table, keyfleet's");
        let user_arn = iam
            .get_user()
            .user_name(USER)
            .send()
            .await
            .expect("GetUser")
            .user()
            .expect("user")
            .arn()
            .to_string();
        Account {
            id: id.to_string(),
            sm: aws_sdk_secretsmanager::Client::new(&cfg),
            ddb,
            table,
            user_arn,
        }
    }

    /// keyfleet's secrets in the account: records (`keyfleet/...`) and
    /// the earlier lease.
    async fn secrets(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut pages = self.sm.list_secrets().into_paginator().send();
        while let Some(page) = pages.next().await {
            names.extend(
                page.expect("ListSecrets")
                    .secret_list()
                    .iter()
                    .filter_map(|s| s.name())
                    .filter(|n| n.starts_with("keyfleet/") || *n == LEGACY_LEASE)
                    .map(str::to_string),
            );
        }
        names.sort();
        names
    }

    /// The primary keys of every item of the records table.
    async fn items(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .ddb
            .scan()
            .table_name(TABLE_NAME)
            .consistent_read(true)
            .send()
            .await
            .expect("Scan")
            .items()
            .iter()
            .filter_map(|i| i.get("pk").and_then(|v| v.as_s().ok()).cloned())
            .collect();
        keys.sort();
        keys
    }

    async fn record(&self) -> Loaded {
        record::load(&self.table, &self.id, USER)
            .await
            .expect("the user's record read")
    }

    async fn delete_item(&self, pk: &str) {
        self.ddb
            .delete_item()
            .table_name(TABLE_NAME)
            .key("pk", AttributeValue::S(pk.to_string()))
            .send()
            .await
            .expect("DeleteItem");
    }

    /// Makes the account what the earlier release left after the rotation
    /// of run `run_id` (see the module documentation); returns the
    /// user's record as the earlier release kept it.
    async fn as_the_earlier_release_left_it(&self, run_id: &str) -> UserRecord {
        let Loaded::Trusted(written, _) = self.record().await else {
            panic!("the day-81 run left no record of {USER}");
        };
        let written = *written;
        legacy::save(&self.sm, &self.user_arn, &Found::Absent, &written)
            .await
            .expect("the earlier release's record secret");
        self.delete_item(&record::item_key(USER)).await;
        self.delete_item(LEASE_KEY).await;
        self.earlier_lease(run_id).await;
        written
    }

    /// The earlier release's lease as it stood after its run `run_id`:
    /// `CreateSecret` took it (held for the run), then the release put a
    /// `keyfleet-next` version and moved `AWSCURRENT` to it from the
    /// version taken (`git show edfc92a^:agent/src/lease.rs`).
    async fn earlier_lease(&self, run_id: &str) {
        let value = |expires_at: time::OffsetDateTime, released: bool| {
            serde_json::json!({
                "holder": "agent-of-the-earlier-release",
                "run_id": run_id,
                "expires_at": expires_at.format(&Rfc3339).unwrap(),
                "released": released,
                "runs": [run_id],
            })
            .to_string()
        };
        let now = time::OffsetDateTime::now_utc();
        let taken = self
            .sm
            .create_secret()
            .name(LEGACY_LEASE)
            .description("keyfleet: one run at a time in this account")
            .secret_string(value(now + time::Duration::minutes(15), false))
            .send()
            .await
            .expect("CreateSecret keyfleet-lease")
            .version_id()
            .expect("version")
            .to_string();
        let released = self
            .sm
            .put_secret_value()
            .secret_id(LEGACY_LEASE)
            .secret_string(value(time::OffsetDateTime::now_utc(), true))
            .version_stages("keyfleet-next")
            .send()
            .await
            .expect("PutSecretValue keyfleet-lease")
            .version_id()
            .expect("version")
            .to_string();
        self.sm
            .update_secret_version_stage()
            .secret_id(LEGACY_LEASE)
            .version_stage("AWSCURRENT")
            .move_to_version_id(released)
            .remove_from_version_id(taken)
            .send()
            .await
            .expect("UpdateSecretVersionStage keyfleet-lease");
    }
}

/// The owner's emails about `account`, in order: (kind, text).
fn owner_emails(account: &str) -> Vec<(String, String)> {
    emu()
        .outbox()
        .expect("outbox")
        .iter()
        .filter(|m| m.destinations.iter().any(|d| d == OWNER_MAIL) && about(&m.raw, account))
        .map(|m| {
            let text = mail_parser::MessageParser::default()
                .parse(m.raw.as_bytes())
                .expect("MIME parses")
                .body_text(0)
                .expect("a text body")
                .to_string();
            (header(&m.raw, "X-Keyfleet-Kind"), text)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_account_goes_on_to_deletion_with_each_notice_once() {
    let cli = deployment().await;
    let emu = emu();
    let account = create_account("upgrade").await;
    let iam = iam_of(&account).await;
    let seeded = seed::populate(
        emu,
        &iam,
        &account,
        &[user(USER, vec![key(81, true, Some(1))])],
    )
    .await
    .expect("seed");
    let k1 = seeded[USER][0].clone();
    let acct = Account::new(&account, &iam).await;
    let kinds = || kinds_for(&emu.outbox().expect("outbox"), &account, OWNER_MAIL);
    let count = |kinds: &[String], k: &str| kinds.iter().filter(|x| *x == k).count();

    // Day 81: the key is rotated, the new key mailed (zip and password);
    // the key-file email tells when the old key goes, so no notice of its
    // own goes out.
    let (rotation, row) = run(cli, &account, "day 81");
    assert_eq!(row.verdict, Verdict::Rotated, "{row:?}");
    let keys = seed::keys(&iam, USER).await.expect("keys");
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], (k1.clone(), true));
    let k2 = keys[1].0.clone();
    let day81 = kinds();
    assert_eq!(day81, ["new_key", "password"], "day 81");
    let key_file = owner_emails(&account)
        .into_iter()
        .find(|(kind, _)| kind == "new_key")
        .expect("the key-file email")
        .1;
    assert!(
        key_file.contains(&format!("Your old access key {k1} will be deactivated on")),
        "the key-file email tells the deactivation date: {key_file}"
    );

    // The account as the earlier release left it after that rotation.
    let earlier = acct.as_the_earlier_release_left_it(&rotation.run_id).await;
    assert_eq!(
        earlier.current.as_ref().map(|c| c.access_key_id.as_str()),
        Some(k2.as_str()),
        "the record names the new key"
    );
    assert!(earlier.sealed.is_some(), "and holds its sealed copy");
    assert_eq!(
        acct.secrets().await,
        vec![LEGACY_LEASE.to_string(), legacy::secret_name(USER)],
        "the earlier release's record and lease secrets"
    );
    assert_eq!(
        legacy::load(&acct.sm, &account, USER, &acct.user_arn)
            .await
            .expect("the earlier record read"),
        Found::Trusted(Box::new(earlier.clone())),
        "the earlier release trusts its record"
    );
    let described = acct
        .sm
        .describe_secret()
        .secret_id(legacy::secret_name(USER))
        .send()
        .await
        .expect("DescribeSecret");
    assert_eq!(
        described.description(),
        Some("Access key record managed by keyfleet"),
        "keyfleet's description"
    );
    assert!(
        described
            .tags()
            .iter()
            .any(|t| t.key() == Some("keyfleet:user") && t.value() == Some(USER)),
        "keyfleet's user tag: {described:?}"
    );
    let policy = acct
        .sm
        .get_resource_policy()
        .secret_id(legacy::secret_name(USER))
        .send()
        .await
        .expect("GetResourcePolicy")
        .resource_policy
        .expect("a policy");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&policy).unwrap(),
        record::resource_policy(&account, &acct.user_arn),
        "keyfleet's record policy"
    );
    let lease: serde_json::Value = serde_json::from_str(
        acct.sm
            .get_secret_value()
            .secret_id(LEGACY_LEASE)
            .send()
            .await
            .expect("the earlier lease")
            .secret_string()
            .expect("text"),
    )
    .unwrap();
    assert_eq!(lease["released"], true, "{lease}");
    assert!(acct.items().await.is_empty(), "the table holds nothing yet");

    // Day 91: the owner switched to the new key; the first run of this
    // release moves the record and deactivates the old key.
    emu.advance_clock(10.0, Some(&account)).unwrap();
    let switched = (time::OffsetDateTime::now_utc() - time::Duration::days(2))
        .format(&Rfc3339)
        .unwrap();
    emu.mark_key_used(&account, &k2, Some(&switched), "s3", "eu-west-1")
        .unwrap();
    let (deactivation, row) = run(cli, &account, "day 91");
    assert_eq!(row.verdict, Verdict::Deactivated, "{row:?}");
    assert_eq!(
        seed::keys(&iam, USER).await.expect("keys"),
        vec![(k1.clone(), false), (k2.clone(), true)]
    );
    let Loaded::Trusted(moved, _) = acct.record().await else {
        panic!("the record is not a trusted item of the table");
    };
    assert_eq!(
        (&moved.current, &moved.sealed, &moved.history),
        (&earlier.current, &earlier.sealed, &earlier.history),
        "the table's record is the earlier one, moved"
    );
    assert_eq!(
        moved.deactivated.first().map(|d| (&d.key_id, &d.run_id)),
        Some((&k1, &Some(deactivation.run_id.clone()))),
        "with the deactivation recorded on it"
    );
    assert_eq!(
        acct.secrets().await,
        Vec::<String>::new(),
        "the earlier record and lease are gone from Secrets Manager"
    );
    let (lease, _) = acct
        .table
        .get(LEASE_KEY)
        .await
        .expect("GetItem")
        .expect("the lease item");
    let lease: serde_json::Value = serde_json::from_str(&lease).unwrap();
    assert_eq!(
        lease["migrated"], true,
        "nothing of the earlier release is left: {lease}"
    );
    let sent = kinds();
    assert_eq!(count(&sent, "deactivated"), 1, "day 91: {sent:?}");

    // Day 101: the old key is deleted, the recovery window after its
    // deactivation.
    emu.advance_clock(10.0, Some(&account)).unwrap();
    let (_, row) = run(cli, &account, "day 101");
    assert!(
        row.actions
            .iter()
            .any(|a| matches!(&a.action, Action::Delete { key_id } if *key_id == k1)),
        "day 101: {row:?}"
    );
    assert_eq!(
        seed::keys(&iam, USER).await.expect("keys"),
        vec![(k2.clone(), true)]
    );
    let sent = kinds();
    assert_eq!(count(&sent, "deleted"), 1, "day 101: {sent:?}");

    // Every owner email of the timeline went out exactly once: the key
    // file (which tells the deactivation date), its password, the
    // deactivation and the deletion. Secrets
    // Manager holds nothing of keyfleet's in the account.
    let mut sent = kinds();
    sent.sort();
    assert_eq!(
        sent,
        ["deactivated", "deleted", "new_key", "password"],
        "each email once"
    );
    assert_eq!(acct.secrets().await, Vec::<String>::new());
    assert_eq!(
        acct.items().await,
        vec![LEASE_KEY.to_string(), record::item_key(USER)]
    );
}
