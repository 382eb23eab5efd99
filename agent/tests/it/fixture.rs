//! Building accounts with users and keys of chosen ages in the emulator.
//!
//! Key ages come from the harness clock: keys are created oldest first and
//! the account's clock is advanced between the groups, so that at the end
//! every key has the age its group names.

use keyfleet_agent::{
    handle_message, Agent, AgentClients, AgentConfig, AgentError, JobOutcome, Rejected,
};
use keyfleet_protocol::{
    AccountResult, Job, JobMode, Policy, PrivateKey, SealedCredential, Token, VERSION,
};
use keyfleet_testkit::{Emulator, DEFAULT_ACCOUNT};
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

pub fn emu() -> &'static Emulator {
    Emulator::shared().expect("emulator harness starts")
}

pub use keyfleet_testkit::seed::{key, user, Created, KeySpec, UserSpec};

/// Fault rules are global to the emulator (one per test binary) and each
/// `set_faults` replaces them all: one test of this binary at a time sets
/// them, holding this lock until it has cleared them.
pub async fn faults_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static FAULTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    FAULTS.lock().await
}

/// An emulated member account with an agent and a results queue.
pub struct TestAccount {
    pub account_id: String,
    pub iam: aws_sdk_iam::Client,
    pub sm: aws_sdk_secretsmanager::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub sqs_central: aws_sdk_sqs::Client,
    pub results_queue_url: String,
    pub coordinator: PrivateKey,
    pub agent: Agent,
    pub created: Created,
}

pub async fn new_account() -> TestAccount {
    let emu = emu();
    let account_id = Emulator::new_account_id();
    let cfg = emu
        .config_for_account(&account_id)
        .await
        .expect("assume role");
    let central = emu.config_for_account(DEFAULT_ACCOUNT).await.unwrap();
    let sqs_central = aws_sdk_sqs::Client::new(&central);
    let q = sqs_central
        .create_queue()
        .queue_name(format!("keyfleet-results-{account_id}"))
        .send()
        .await
        .expect("create results queue");
    let ddb = aws_sdk_dynamodb::Client::new(&cfg);
    create_table(&ddb, &account_id).await;
    let coordinator = PrivateKey::generate();
    let agent = Agent::new(
        AgentClients::new(&cfg),
        AgentConfig {
            coordinator_key: coordinator.public_key(),
            max_part_bytes: keyfleet_protocol::parts::DEFAULT_MAX_PART_BYTES,
            results_queue_url: None,
        },
        account_id.clone(),
    );
    TestAccount {
        iam: aws_sdk_iam::Client::new(&cfg),
        sm: aws_sdk_secretsmanager::Client::new(&cfg),
        ddb,
        sqs_central,
        results_queue_url: q.queue_url().unwrap().to_string(),
        coordinator,
        agent,
        account_id,
        created: Created::new(),
    }
}

/// The account's keyfleet table as the agent's StackSet template creates
/// it, with keyfleet's resource policy.
pub async fn create_table(ddb: &aws_sdk_dynamodb::Client, account_id: &str) {
    keyfleet_testkit::seed::records_table(
        ddb,
        keyfleet_agent::table::TABLE_NAME,
        &keyfleet_agent::table::table_policy(account_id),
    )
    .await
    .expect("the keyfleet table");
}

impl TestAccount {
    /// The body of `user`'s record item in the table, if any.
    pub async fn record_item(&self, user: &str) -> Option<String> {
        use aws_sdk_dynamodb::types::AttributeValue;
        self.ddb
            .get_item()
            .table_name(keyfleet_agent::table::TABLE_NAME)
            .key(
                "pk",
                AttributeValue::S(keyfleet_agent::record::item_key(user)),
            )
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem")
            .item()
            .and_then(|i| i.get("body"))
            .and_then(|b| b.as_s().ok())
            .cloned()
    }

    /// Writes `body` as `user`'s record item, as only a principal the
    /// table's policy lets write could (the agent role): a forged record
    /// keyfleet would trust if its content is a record of this account
    /// and user.
    pub async fn forge_item(&self, user: &str, body: &str) {
        use aws_sdk_dynamodb::types::AttributeValue;
        self.ddb
            .put_item()
            .table_name(keyfleet_agent::table::TABLE_NAME)
            .item(
                "pk",
                AttributeValue::S(keyfleet_agent::record::item_key(user)),
            )
            .item("body", AttributeValue::S(body.to_string()))
            .item("v", AttributeValue::N("1".into()))
            .send()
            .await
            .expect("PutItem");
    }

    /// The account's table, opened as the agent opens it.
    pub async fn table(&self) -> keyfleet_agent::table::Table {
        keyfleet_agent::table::open(&self.ddb, "us-east-1", &self.account_id)
            .await
            .expect("the keyfleet table opens")
    }

    pub fn job(&self, policy: Policy) -> Job {
        let now = OffsetDateTime::now_utc();
        Job {
            v: VERSION,
            run_id: format!("run-{}", rand_suffix()),
            account_id: self.account_id.clone(),
            token: Token::generate(),
            issued_at: now,
            deadline: now + Duration::hours(1),
            policy,
            dry_run: false,
            as_of: None,
            mode: JobMode::Scheduled,
            results_queue_url: self.results_queue_url.clone(),
            undelivered: Vec::new(),
        }
    }

    /// Creates the users and their keys (see `keyfleet_testkit::seed`).
    pub async fn populate(&mut self, users: &[UserSpec]) {
        self.created = keyfleet_testkit::seed::populate(emu(), &self.iam, &self.account_id, users)
            .await
            .expect("seed account");
    }

    /// The user's keys in IAM now: (id, active), oldest first.
    pub async fn keys(&self, user: &str) -> Vec<(String, bool)> {
        keyfleet_testkit::seed::keys(&self.iam, user)
            .await
            .expect("ListAccessKeys")
    }

    /// Every result message now on the results queue (reassembled).
    pub async fn drain_results(&self) -> Vec<AccountResult> {
        let mut parts: Vec<AccountResult> = Vec::new();
        loop {
            let out = self
                .sqs_central
                .receive_message()
                .queue_url(&self.results_queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let msgs = out.messages();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                parts.push(
                    keyfleet_protocol::decode(m.body().unwrap().as_bytes()).expect("valid result"),
                );
                self.sqs_central
                    .delete_message()
                    .queue_url(&self.results_queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        let mut by_run: BTreeMap<String, Vec<AccountResult>> = BTreeMap::new();
        for p in parts {
            by_run.entry(p.run_id.clone()).or_default().push(p);
        }
        by_run
            .into_values()
            .map(|ps| keyfleet_protocol::parts::reassemble(ps).expect("parts complete"))
            .collect()
    }

    /// Opens a sealed credential and returns its secret access key.
    pub fn open(&self, s: &SealedCredential) -> String {
        keyfleet_protocol::seal::open(&self.coordinator, &self.account_id, s)
            .expect("sealed credential opens")
            .secret_access_key
            .expose()
            .to_string()
    }
}

/// Delivers `job` to `agent` as the jobs queue does the first time: the
/// body the coordinator sends (`keyfleet_protocol::encode`), through the
/// agent's one per-message function, so decoding and validation run as in
/// production. The job's whole result once it ran and the result was sent;
/// the error that stopped it otherwise (a job for another account is
/// refused with the agent's error).
pub async fn deliver(agent: &Agent, job: &Job) -> Result<AccountResult, AgentError> {
    deliver_as(agent, job, 1).await
}

/// [`deliver`], as SQS delivers the same message again (its first attempt
/// stopped, or its result was lost): receive count 2.
pub async fn redeliver(agent: &Agent, job: &Job) -> Result<AccountResult, AgentError> {
    deliver_as(agent, job, 2).await
}

async fn deliver_as(
    agent: &Agent,
    job: &Job,
    receive_count: u32,
) -> Result<AccountResult, AgentError> {
    let body = String::from_utf8(keyfleet_protocol::encode(job)).expect("JSON is UTF-8");
    match handle_message(agent, body, receive_count).await {
        JobOutcome::Done(result) => Ok(*result),
        JobOutcome::Failed(e) | JobOutcome::Rejected(Rejected::NotForThisAgent(e)) => Err(e),
        other => panic!("a test's job must reach the agent: {other:?}"),
    }
}

pub fn rand_suffix() -> String {
    keyfleet_protocol::Token::generate().0[..10].to_string()
}
