//! The fleet the tests run against: a coordinator in the management /
//! provisioning account (123456789012) with its own bucket, results queue,
//! alerts topic and SES sender, and member accounts created through
//! Organizations, each with users and keys of chosen ages and, when it has an
//! agent, its own `keyfleet-jobs` queue.
//!
//! An agent "runs" the way its Lambda would: it receives the job from its
//! account's queue with that account's credentials and hands the message to
//! the agent's per-message function, which sends the result to the
//! coordinator's results queue. The coordinator consumes that queue like its
//! SQS trigger would: receive, `intake` (its per-message function), delete.

use aws_config::SdkConfig;
use aws_sdk_organizations::types::OrganizationFeatureSet;
use aws_sdk_sqs::types::QueueAttributeName;
use keyfleet_agent::{handle_message, Agent, AgentClients, AgentConfig, JobOutcome};
use keyfleet_coordinator::{Coordinator, CoordinatorClients, CoordinatorConfig, Intake, KeySource};
use keyfleet_protocol::{AccountResult, Job, KeyRing, Policy, PrivateKey, PublicKey, Token};
use keyfleet_testkit::seed::{self, key, user, UserSpec};
use keyfleet_testkit::{Emulator, SentEmail, REGION};
use mail_parser::{MessageParser, MimeHeaders};
use std::collections::BTreeMap;
use std::time::{Duration as StdDuration, Instant};
use tokio::sync::OnceCell;

/// The member accounts' jobs queue name.
pub const JOBS_QUEUE: &str = "keyfleet-jobs";

pub fn emu() -> &'static Emulator {
    Emulator::shared().expect("emulator harness starts")
}

/// Fault rules are global to the emulator (one per test binary) and each
/// `set_faults` replaces them all: one test of this binary at a time sets
/// them, holding this lock until it has cleared them.
pub async fn faults_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static FAULTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    FAULTS.lock().await
}

/// A short random lowercase suffix for unique names.
pub fn suffix() -> String {
    Token::generate().0[..10].to_ascii_lowercase()
}

fn org_client() -> aws_sdk_organizations::Client {
    aws_sdk_organizations::Client::new(&emu().config())
}

static ROOT: OnceCell<String> = OnceCell::const_new();

/// The organization's root id. The organization is created once per
/// emulator (it is global to the emulator process, so every test shares it).
pub async fn org_root() -> String {
    ROOT.get_or_init(|| async {
        let org = org_client();
        if let Err(e) = org
            .create_organization()
            .feature_set(OrganizationFeatureSet::All)
            .send()
            .await
        {
            let already = e
                .as_service_error()
                .is_some_and(|s| s.is_already_in_organization_exception());
            assert!(
                already,
                "CreateOrganization: {}",
                aws_sdk_organizations::error::DisplayErrorContext(&e)
            );
        }
        let roots = org.list_roots().send().await.expect("ListRoots");
        roots.roots()[0].id().expect("root id").to_string()
    })
    .await
    .clone()
}

/// Creates an OU under `parent` and returns its id.
pub async fn create_ou(parent: &str, name: &str) -> String {
    let out = org_client()
        .create_organizational_unit()
        .parent_id(parent)
        .name(name)
        .send()
        .await
        .expect("CreateOrganizationalUnit");
    out.organizational_unit()
        .and_then(|o| o.id())
        .expect("OU id")
        .to_string()
}

/// The owner address the seeding tags a user with.
pub fn owner_address(user: &str) -> String {
    seed::user(user, vec![])
        .email
        .expect("seeded users have an email")
}

/// A member account of the organization.
pub struct Member {
    pub id: String,
    pub name: String,
    pub iam: aws_sdk_iam::Client,
    pub sqs: aws_sdk_sqs::Client,
    cfg: SdkConfig,
    /// The account's `keyfleet-jobs` queue, when it has an agent.
    pub jobs_queue_url: Option<String>,
    /// Key ids per user, oldest first, as created by [`Member::populate`].
    pub created: BTreeMap<String, Vec<String>>,
}

/// Creates an account in the organization (under the root).
pub async fn create_member(label: &str) -> Member {
    org_root().await;
    let name = format!("{label}-{}", suffix());
    let out = org_client()
        .create_account()
        .account_name(&name)
        .email(format!("{name}@example.com"))
        .send()
        .await
        .expect("CreateAccount");
    let id = out
        .create_account_status()
        .and_then(|s| s.account_id())
        .expect("account id")
        .to_string();
    let cfg = emu()
        .config_for_account(&id)
        .await
        .expect("assume role in the member account");
    Member {
        iam: aws_sdk_iam::Client::new(&cfg),
        sqs: aws_sdk_sqs::Client::new(&cfg),
        cfg,
        id,
        name,
        jobs_queue_url: None,
        created: BTreeMap::new(),
    }
}

impl Member {
    /// Deploys the agent's queue (`keyfleet-jobs`) in the account.
    pub async fn deploy_agent(&mut self) {
        let q = self
            .sqs
            .create_queue()
            .queue_name(JOBS_QUEUE)
            .send()
            .await
            .expect("create keyfleet-jobs");
        self.jobs_queue_url = Some(q.queue_url().expect("queue url").to_string());
        // The agent's records table, as the agent's template creates it.
        keyfleet_testkit::seed::records_table(
            &aws_sdk_dynamodb::Client::new(&self.cfg),
            keyfleet_agent::table::TABLE_NAME,
            &keyfleet_agent::table::table_policy(&self.id),
        )
        .await
        .expect("the agent's records table");
    }

    /// Moves the account from the root into `ou`.
    pub async fn move_to(&self, ou: &str) {
        org_client()
            .move_account()
            .account_id(&self.id)
            .source_parent_id(org_root().await)
            .destination_parent_id(ou)
            .send()
            .await
            .expect("MoveAccount");
    }

    /// Closes the account (Organizations then lists it as SUSPENDED).
    pub async fn close(&self) {
        org_client()
            .close_account()
            .account_id(&self.id)
            .send()
            .await
            .expect("CloseAccount");
    }

    /// Creates the users and their keys with the ages and last use their
    /// specs name (see `keyfleet_testkit::seed`).
    pub async fn populate(&mut self, users: &[UserSpec]) {
        self.created = seed::populate(emu(), &self.iam, &self.id, users)
            .await
            .expect("seed the account");
    }

    /// The user's keys in IAM now: (id, active), oldest first.
    pub async fn keys(&self, user: &str) -> Vec<(String, bool)> {
        seed::keys(&self.iam, user).await.expect("ListAccessKeys")
    }

    /// Every job message now visible on the account's queue (received, so
    /// invisible afterwards), with its receipt handle.
    pub async fn receive_jobs(&self) -> Vec<(Job, String)> {
        let url = self
            .jobs_queue_url
            .as_deref()
            .expect("account has an agent");
        let mut jobs = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("ReceiveMessage on keyfleet-jobs");
            if out.messages().is_empty() {
                return jobs;
            }
            for m in out.messages() {
                let job: Job = keyfleet_protocol::decode(m.body().expect("body").as_bytes())
                    .expect("a valid job");
                jobs.push((job, m.receipt_handle().expect("receipt").to_string()));
            }
        }
    }

    /// The agent of this account, as its Lambda runs: takes the one job
    /// message waiting on its queue through the agent's per-message
    /// function (which sends the result to the job's results queue) and
    /// deletes the message. Returns the job and the whole result.
    pub async fn run_agent(&self, coordinator_key: &PublicKey) -> (Job, AccountResult) {
        let url = self
            .jobs_queue_url
            .as_deref()
            .expect("account has an agent");
        let out = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .send()
            .await
            .expect("ReceiveMessage on keyfleet-jobs");
        assert_eq!(
            out.messages().len(),
            1,
            "exactly one job on the queue of account {}",
            self.id
        );
        let m = &out.messages()[0];
        let receive_count = m
            .attributes()
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let agent = Agent::new(
            AgentClients::new(&self.cfg),
            AgentConfig {
                coordinator_key: coordinator_key.clone(),
                max_part_bytes: keyfleet_protocol::parts::DEFAULT_MAX_PART_BYTES,
                results_queue_url: None,
            },
            self.id.clone(),
        );
        let body = m.body().expect("body");
        let result = match handle_message(&agent, body, receive_count).await {
            JobOutcome::Done(result) => *result,
            other => panic!("the agent did not complete the job: {other:?}"),
        };
        let job: Job = keyfleet_protocol::decode(body.as_bytes()).expect("a valid job");
        assert_eq!(job.account_id, self.id);
        self.sqs
            .delete_message()
            .queue_url(url)
            .receipt_handle(m.receipt_handle().expect("receipt"))
            .send()
            .await
            .expect("DeleteMessage on keyfleet-jobs");
        (job, result)
    }
}

/// Options of a coordinator deployment under test.
#[derive(Debug, Clone)]
pub struct Setup {
    pub exclude_accounts: Vec<String>,
    pub exclude_ous: Vec<String>,
    pub deadline: time::Duration,
    /// The largest CSV report the summary email attaches.
    pub summary_attach_max_bytes: usize,
    /// The account whose SES the coordinator sends with (its sender
    /// identity is created there); `None`: the default account. A test that
    /// sets an SES quota uses an account of its own, so that the quota and
    /// the emulator's SES clock are its alone.
    pub ses_account: Option<String>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            exclude_accounts: Vec::new(),
            exclude_ous: Vec::new(),
            deadline: time::Duration::hours(1),
            summary_attach_max_bytes:
                keyfleet_coordinator::config::DEFAULT_SUMMARY_ATTACH_MAX_BYTES,
            ses_account: None,
        }
    }
}

/// A coordinator deployment in the default account, with every resource
/// its own.
pub struct Central {
    pub coordinator: Coordinator,
    /// A copy of the coordinator's private key, to open sealed credentials.
    pub key: PrivateKey,
    pub public_key: PublicKey,
    pub sqs: aws_sdk_sqs::Client,
    pub results_queue_url: String,
    /// An SQS queue subscribed to the alerts topic.
    pub alerts_queue_url: String,
    pub sender: String,
    pub security_team: String,
    /// What the coordinator was built from, to build it again with another
    /// key ring.
    config: CoordinatorConfig,
    clients: CoordinatorClients,
    ring: String,
}

impl Central {
    /// The key rotation's first step, `keygen`: a new key at the front of
    /// the ring; the coordinator is built again on the same resources.
    /// `key`/`public_key` become the new key's; the previous public key is
    /// returned (what agents not yet updated still seal to).
    pub fn add_key(&mut self) -> PublicKey {
        let previous = self.public_key.clone();
        let mut ring = KeyRing::parse(&self.ring).expect("ring");
        let key = PrivateKey::generate();
        self.key = PrivateKey::from_base64(key.to_base64().expose()).expect("key copy");
        self.public_key = key.public_key();
        ring.add(key).expect("a new key");
        self.rebuild(ring);
        previous
    }

    /// The last step, `retire-key`: the ring without `key_id`.
    pub fn retire_key(&mut self, key_id: &str) {
        let mut ring = KeyRing::parse(&self.ring).expect("ring");
        ring.retire(key_id).expect("retire");
        self.rebuild(ring);
    }

    /// The ring as the deployed coordinator has it: stored in a Secrets
    /// Manager secret it reads again when a box names a key it does not
    /// hold. Returns the secret's name.
    pub async fn store_ring(&mut self) -> String {
        let name = format!("keyfleet-ring-{}", suffix());
        let sm = aws_sdk_secretsmanager::Client::new(&emu().config());
        sm.create_secret()
            .name(&name)
            .secret_string(&self.ring)
            .send()
            .await
            .expect("CreateSecret");
        self.coordinator = self.coordinator.clone().with_key_source(KeySource {
            client: sm,
            secret_id: name.clone(),
        });
        name
    }

    fn rebuild(&mut self, ring: KeyRing) {
        self.ring = ring.to_text().expose().to_string();
        self.coordinator = Coordinator::new(self.config.clone(), self.clients.clone(), ring);
    }

    pub async fn new(setup: Setup) -> Central {
        let emu = emu();
        let s = suffix();
        let cfg = emu.config();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&cfg)
                .force_path_style(true)
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::new(&cfg);
        let ses = match &setup.ses_account {
            Some(account) => aws_sdk_sesv2::Client::new(
                &emu.config_for_account(account)
                    .await
                    .expect("the SES account's credentials"),
            ),
            None => aws_sdk_sesv2::Client::new(&cfg),
        };
        let sns = aws_sdk_sns::Client::new(&cfg);
        let org = aws_sdk_organizations::Client::new(&cfg);

        let bucket = format!("keyfleet-it-{s}");
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("CreateBucket");
        let create_queue = |name: String| {
            let sqs = sqs.clone();
            async move {
                sqs.create_queue()
                    .queue_name(&name)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("create queue {name}: {e:?}"))
                    .queue_url()
                    .expect("url")
                    .to_string()
            }
        };
        let results_queue_url = create_queue(format!("keyfleet-results-{s}")).await;
        let alerts_queue_url = create_queue(format!("keyfleet-alerts-{s}")).await;
        let alerts_queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&alerts_queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("queue arn");
        let topic_arn = sns
            .create_topic()
            .name(format!("keyfleet-alerts-{s}"))
            .send()
            .await
            .expect("CreateTopic")
            .topic_arn()
            .expect("topic arn")
            .to_string();
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(alerts_queue_arn)
            .send()
            .await
            .expect("Subscribe");
        let sender = format!("keyfleet-{s}@example.com");
        ses.create_email_identity()
            .email_identity(&sender)
            .send()
            .await
            .expect("CreateEmailIdentity");
        let security_team = format!("security-{s}@example.com");

        let key = PrivateKey::generate();
        let copy = PrivateKey::from_base64(key.to_base64().expose()).expect("key copy");
        let public_key = key.public_key();
        let config = CoordinatorConfig {
            region: REGION.to_string(),
            report_bucket: bucket.clone(),
            results_queue_url: results_queue_url.clone(),
            alerts_topic_arn: Some(topic_arn),
            sender: sender.clone(),
            security_team: vec![security_team.clone()],
            ses_configuration_set: None,
            exclude_accounts: setup.exclude_accounts,
            exclude_ous: setup.exclude_ous,
            policy: Policy::default(),
            jobs_queue_name: JOBS_QUEUE.to_string(),
            deadline: setup.deadline,
            mail_attempts: 3,
            summary_attach_max_bytes: setup.summary_attach_max_bytes,
            mail_senders: 1,
        };
        let clients = CoordinatorClients {
            s3,
            sqs: sqs.clone(),
            ses,
            sns,
            org,
        };
        Central {
            ring: key.to_base64().expose().to_string(),
            coordinator: Coordinator::new(config.clone(), clients.clone(), KeyRing::new(key)),
            config,
            clients,
            key: copy,
            public_key,
            sqs,
            results_queue_url,
            alerts_queue_url,
            sender,
            security_team,
        }
    }

    /// Starts a real run on exactly `accounts`; returns its id.
    pub async fn start_run_on(&self, accounts: &[&str]) -> String {
        self.coordinator
            .start_run(keyfleet_coordinator::RunRequest {
                accounts: Some(accounts.iter().map(|a| a.to_string()).collect()),
                ..Default::default()
            })
            .await
            .expect("start run")
            .run_id
    }

    /// Result messages now on the results queue: (body, receipt handle).
    /// They stay on the queue (invisible for the visibility timeout) until
    /// deleted with [`Central::delete_result`].
    pub async fn receive_results(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        loop {
            let page = self
                .sqs
                .receive_message()
                .queue_url(&self.results_queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("ReceiveMessage on the results queue");
            if page.messages().is_empty() {
                return out;
            }
            for m in page.messages() {
                out.push((
                    m.body().expect("body").to_string(),
                    m.receipt_handle().expect("receipt").to_string(),
                ));
            }
        }
    }

    pub async fn delete_result(&self, receipt: &str) {
        self.sqs
            .delete_message()
            .queue_url(&self.results_queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .expect("DeleteMessage on the results queue");
    }

    /// The coordinator's results trigger: receive, intake, delete, until a
    /// message finalizes the run. Returns what intake said of each message.
    pub async fn intake_until_finalized(&self) -> Vec<Intake> {
        let deadline = Instant::now() + StdDuration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let page = self
                .sqs
                .receive_message()
                .queue_url(&self.results_queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("ReceiveMessage on the results queue");
            for m in page.messages() {
                let intake = self
                    .coordinator
                    .intake(m.body().expect("body"), 1)
                    .await
                    .expect("intake succeeds");
                self.delete_result(m.receipt_handle().expect("receipt"))
                    .await;
                let done = matches!(
                    intake,
                    Intake::Accepted {
                        finalized: true,
                        ..
                    }
                );
                seen.push(intake);
                if done {
                    return seen;
                }
            }
            assert!(
                Instant::now() < deadline,
                "run not finalized within 60 s; intake so far: {seen:?}"
            );
        }
    }

    /// The report bucket's S3 client (the coordinator's).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        self.clients.s3.clone()
    }

    /// The report bucket.
    pub fn bucket(&self) -> String {
        self.coordinator.store().bucket().to_string()
    }

    /// An object of the report bucket.
    pub async fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.coordinator.store().get(key).await.expect("GetObject")
    }

    /// Waits until at least `n` alerts arrived on the queue subscribed to
    /// the alerts topic, and returns (and consumes) every alert not returned
    /// before, as (subject, message). Alerts are published before the coordinator call returns,
    /// so the deadline only guards against a hang.
    pub async fn alerts(&self, n: usize) -> Vec<(String, String)> {
        let deadline = Instant::now() + StdDuration::from_secs(10);
        let mut got = Vec::new();
        loop {
            let page = self
                .sqs
                .receive_message()
                .queue_url(&self.alerts_queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("ReceiveMessage on the alerts queue");
            for m in page.messages() {
                let env: serde_json::Value =
                    serde_json::from_str(m.body().expect("body")).expect("SNS envelope");
                got.push((
                    env["Subject"].as_str().unwrap_or_default().to_string(),
                    env["Message"].as_str().unwrap_or_default().to_string(),
                ));
                self.sqs
                    .delete_message()
                    .queue_url(&self.alerts_queue_url)
                    .receipt_handle(m.receipt_handle().expect("receipt"))
                    .send()
                    .await
                    .expect("DeleteMessage on the alerts queue");
            }
            if page.messages().is_empty() && (got.len() >= n || Instant::now() > deadline) {
                return got;
            }
        }
    }
}

/// An email from the harness outbox, parsed.
#[derive(Debug, Clone)]
pub struct Mail {
    pub run: String,
    pub kind: String,
    pub account: String,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    /// (file name, bytes).
    pub attachments: Vec<(String, Vec<u8>)>,
    /// A digest's items, `<account>/<kind>` in its order
    /// (`X-Keyfleet-Notices`).
    pub notices: Vec<String>,
}

impl Mail {
    /// What the email tells: its kind, or a digest's notice kinds in order.
    pub fn tells(&self) -> Vec<String> {
        if self.kind != "digest" {
            return vec![self.kind.clone()];
        }
        self.notices
            .iter()
            .map(|n| n.split_once('/').map_or(n.as_str(), |(_, k)| k).to_string())
            .collect()
    }

    /// Whether the email tells a notice of `kind` (or is of that kind).
    pub fn tells_of(&self, kind: &str) -> bool {
        self.tells().iter().any(|k| k == kind)
    }
}

fn parse(m: &SentEmail) -> Mail {
    let msg = MessageParser::default()
        .parse(m.raw.as_bytes())
        .expect("outbox message parses as MIME");
    let header = |name: &str| {
        msg.header_raw(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    Mail {
        run: header("X-Keyfleet-Run"),
        kind: header("X-Keyfleet-Kind"),
        account: header("X-Keyfleet-Account"),
        from: m.source.clone(),
        to: m.destinations.clone(),
        subject: msg.subject().unwrap_or_default().to_string(),
        text: msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
        attachments: msg
            .attachments()
            .map(|a| {
                (
                    a.attachment_name().unwrap_or_default().to_string(),
                    a.contents().to_vec(),
                )
            })
            .collect(),
        notices: header("X-Keyfleet-Notices")
            .split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect(),
    }
}

/// Every email SES accepted for `run_id`, in order.
pub fn emails_of_run(run_id: &str) -> Vec<Mail> {
    emu()
        .outbox()
        .expect("outbox")
        .iter()
        .filter(|m| m.raw.contains(run_id))
        .map(parse)
        .filter(|m| m.run == run_id)
        .collect()
}

/// Every email SES accepted for `to`, in order.
pub fn emails_to(to: &str) -> Vec<Mail> {
    emu()
        .outbox()
        .expect("outbox")
        .iter()
        .filter(|m| m.destinations.iter().any(|d| d == to))
        .map(parse)
        .collect()
}

/// A normal account's users: one due for rotation, one whose second key
/// makes it pending deactivation, one with an unused key, one compliant,
/// one without keys and one without an email tag.
pub struct NormalUsers {
    pub rotate: String,
    pub pending: String,
    pub unused: String,
    pub compliant: String,
    pub no_keys: String,
    pub no_email: String,
}

impl NormalUsers {
    pub fn new() -> Self {
        let s = suffix();
        NormalUsers {
            rotate: format!("rotate-{s}"),
            pending: format!("pending-{s}"),
            unused: format!("unused-{s}"),
            compliant: format!("compliant-{s}"),
            no_keys: format!("nokeys-{s}"),
            no_email: format!("noemail-{s}"),
        }
    }

    pub fn specs(&self) -> Vec<UserSpec> {
        vec![
            user(&self.rotate, vec![key(85, true, Some(2))]),
            user(
                &self.pending,
                vec![key(85, true, Some(1)), key(5, true, Some(1))],
            ),
            user(&self.unused, vec![key(95, true, None)]),
            user(&self.compliant, vec![key(50, true, Some(1))]),
            user(&self.no_keys, vec![]),
            UserSpec {
                email: None,
                ..user(&self.no_email, vec![key(85, true, Some(1))])
            },
        ]
    }
}

/// A member account with an agent and [`NormalUsers`].
pub async fn normal_member(label: &str) -> (Member, NormalUsers) {
    let mut m = create_member(label).await;
    m.deploy_agent().await;
    let users = NormalUsers::new();
    m.populate(&users.specs()).await;
    (m, users)
}
