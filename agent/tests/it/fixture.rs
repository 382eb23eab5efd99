//! Building accounts with users and keys of chosen ages in the emulator.
//!
//! Key ages come from the harness clock: keys are created oldest first and
//! the account's clock is advanced between the groups, so that at the end
//! every key has the age its group names.

use aws_sdk_iam::types::{StatusType, Tag};
use futures::stream::{self, StreamExt};
use keyfleet_agent::{Agent, AgentClients, AgentConfig};
use keyfleet_protocol::{
    AccountResult, Job, JobMode, Policy, PrivateKey, SealedCredential, Token, VERSION,
};
use keyfleet_testkit::{Emulator, DEFAULT_ACCOUNT};
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

pub fn emu() -> &'static Emulator {
    Emulator::shared().expect("emulator harness starts")
}

/// How a key should look before the run.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub age_days: i64,
    pub active: bool,
    /// Days ago it was last used; `None` = never.
    pub used_days_ago: Option<i64>,
}

pub fn key(age_days: i64, active: bool, used_days_ago: Option<i64>) -> KeySpec {
    KeySpec {
        age_days,
        active,
        used_days_ago,
    }
}

#[derive(Debug, Clone)]
pub struct UserSpec {
    pub name: String,
    pub path: String,
    pub email: bool,
    pub exempt: bool,
    pub keys: Vec<KeySpec>,
}

pub fn user(name: impl Into<String>, keys: Vec<KeySpec>) -> UserSpec {
    let name = name.into();
    UserSpec {
        name,
        path: "/".into(),
        email: true,
        exempt: false,
        keys,
    }
}

/// Key ids per user, oldest first, as created.
pub type Created = BTreeMap<String, Vec<String>>;

/// An emulated member account with an agent and a results queue.
pub struct TestAccount {
    pub account_id: String,
    pub iam: aws_sdk_iam::Client,
    pub sm: aws_sdk_secretsmanager::Client,
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
    let coordinator = PrivateKey::generate();
    let agent = Agent::new(
        AgentClients::new(&cfg),
        AgentConfig {
            coordinator_key: coordinator.public_key(),
            max_part_bytes: keyfleet_protocol::parts::DEFAULT_MAX_PART_BYTES,
        },
        account_id.clone(),
    );
    TestAccount {
        iam: aws_sdk_iam::Client::new(&cfg),
        sm: aws_sdk_secretsmanager::Client::new(&cfg),
        sqs_central,
        results_queue_url: q.queue_url().unwrap().to_string(),
        coordinator,
        agent,
        account_id,
        created: Created::new(),
    }
}

impl TestAccount {
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
        }
    }

    /// Creates the users, then their keys oldest first with the clock
    /// advanced in between, then sets statuses and last use.
    pub async fn populate(&mut self, users: &[UserSpec]) {
        let emu = emu();
        let iam = &self.iam;
        stream::iter(users)
            .for_each_concurrent(16, |u| async move {
                let mut req = iam.create_user().user_name(&u.name).path(&u.path);
                if u.email {
                    req = req.tags(tag(
                        "Email",
                        &format!("owner-{}@example.com", sanitize(&u.name)),
                    ));
                }
                if u.exempt {
                    req = req.tags(tag("Exempt", "True"));
                }
                req.send().await.expect("create user");
            })
            .await;
        let mut ages: Vec<i64> = users
            .iter()
            .flat_map(|u| u.keys.iter().map(|k| k.age_days))
            .collect();
        ages.sort_unstable_by(|a, b| b.cmp(a));
        ages.dedup();
        let mut created: Created = users.iter().map(|u| (u.name.clone(), vec![])).collect();
        for (i, age) in ages.iter().enumerate() {
            let todo: Vec<(String, usize)> = users
                .iter()
                .flat_map(|u| {
                    u.keys
                        .iter()
                        .enumerate()
                        .filter(|(_, k)| k.age_days == *age)
                        .map(|(j, _)| (u.name.clone(), j))
                })
                .collect();
            let ids: Vec<(String, usize, String)> = stream::iter(todo)
                .map(|(name, j)| async move {
                    let out = iam
                        .create_access_key()
                        .user_name(&name)
                        .send()
                        .await
                        .expect("create key");
                    (
                        name,
                        j,
                        out.access_key().unwrap().access_key_id().to_string(),
                    )
                })
                .buffer_unordered(16)
                .collect()
                .await;
            for (name, _, id) in ids {
                created.get_mut(&name).unwrap().push(id);
            }
            let next = ages.get(i + 1).copied().unwrap_or(0);
            emu.advance_clock((age - next) as f64, Some(&self.account_id))
                .expect("advance clock");
        }
        // Keys were pushed oldest first per user, in the order of the spec
        // sorted by age; map them back to the spec order.
        let now = OffsetDateTime::now_utc();
        for u in users {
            let ids = created.get_mut(&u.name).unwrap();
            let mut specs: Vec<&KeySpec> = u.keys.iter().collect();
            specs.sort_by(|a, b| b.age_days.cmp(&a.age_days));
            for (spec, id) in specs.iter().zip(ids.iter()) {
                if !spec.active {
                    self.iam
                        .update_access_key()
                        .user_name(&u.name)
                        .access_key_id(id)
                        .status(StatusType::Inactive)
                        .send()
                        .await
                        .unwrap();
                }
                if let Some(d) = spec.used_days_ago {
                    let when = (now - Duration::days(d))
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap();
                    emu.mark_key_used(&self.account_id, id, Some(&when), "s3", "eu-west-1")
                        .expect("mark used");
                }
            }
        }
        self.created = created;
    }

    /// The user's keys in IAM now: (id, active), oldest first.
    pub async fn keys(&self, user: &str) -> Vec<(String, bool)> {
        let out = self
            .iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .unwrap();
        let mut keys: Vec<_> = out
            .access_key_metadata()
            .iter()
            .map(|k| {
                (
                    k.create_date().map(|d| d.as_nanos()).unwrap_or(0),
                    k.access_key_id().unwrap().to_string(),
                    k.status() == Some(&StatusType::Active),
                )
            })
            .collect();
        keys.sort();
        keys.into_iter().map(|(_, id, a)| (id, a)).collect()
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

pub fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build().unwrap()
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

pub fn rand_suffix() -> String {
    keyfleet_protocol::Token::generate().0[..10].to_string()
}
