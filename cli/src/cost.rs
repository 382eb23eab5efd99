//! What keyfleet costs to run in AWS, in dollars a month: AWS's public
//! list prices (us-east-1, [`PRICES`], each with its pricing page) applied
//! to what a run does, as `keyfleet bench` counts it.
//!
//! **What is counted and what is modelled.** The bench counts every AWS
//! request of two cycles at the emulator (`/_keyfleet/calls`: the agents'
//! in each member account, the coordinator's in the provisioning account),
//! per service and action: a first cycle in which a tenth of the keys are
//! due, and a second, quiet one right after. A month is then 30 quiet runs
//! plus the month's rotations (every user's key once every `rotate_after`,
//! 80 days by default), each costing what the first cycle cost beyond the
//! quiet one per rotated key, twice: the rotation, and the deactivation
//! and deletion that follow it (their IAM calls, record writes, ledger
//! objects and notices; counted as equal to the rotation's, an
//! assumption). A `--local` cycle passes jobs and results in
//! process, so what the deployed system adds is modelled per account and
//! run from the templates: the job's and the result's SQS messages, the
//! Lambda invocations and their duration, and the SQS event-source
//! pollers that Lambda keeps on every jobs queue whether or not a job
//! comes (five long polls of 20 s each, since the agent's mapping sets a
//! maximum concurrency: "this optimization is not available when you
//! enable the maximum concurrency setting",
//! <https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html>).
//!
//! **Left out.** Free tiers (an organization has one, shared); CloudWatch
//! Logs (their volume depends on the log level); data transfer (all
//! traffic stays in one region); taxes. The figures are list prices, to
//! compare designs and sizes, not a quote: AWS changes its prices.

use std::collections::BTreeMap;

/// When the prices below were last compared with AWS's pricing pages.
pub const PRICES_CHECKED: &str = "2026-12-05";

/// One list price.
#[derive(Debug, Clone, Copy)]
pub struct Price {
    pub what: &'static str,
    /// Dollars per `per` units.
    pub usd: f64,
    pub per: f64,
    pub page: &'static str,
}

impl Price {
    fn of(&self, units: f64) -> f64 {
        self.usd * units / self.per
    }
}

const fn price(what: &'static str, usd: f64, per: f64, page: &'static str) -> Price {
    Price {
        what,
        usd,
        per,
        page,
    }
}

const LAMBDA: &str = "https://aws.amazon.com/lambda/pricing/";
const SQS: &str = "https://aws.amazon.com/sqs/pricing/";
const S3: &str = "https://aws.amazon.com/s3/pricing/";
const DYNAMODB: &str = "https://aws.amazon.com/dynamodb/pricing/on-demand/";
const SECRETS: &str = "https://aws.amazon.com/secrets-manager/pricing/";
const SES: &str = "https://aws.amazon.com/ses/pricing/";
const SNS: &str = "https://aws.amazon.com/sns/pricing/";
const KMS: &str = "https://aws.amazon.com/kms/pricing/";
const CLOUDWATCH: &str = "https://aws.amazon.com/cloudwatch/pricing/";

pub const LAMBDA_REQUEST: Price = price("Lambda requests", 0.20, 1e6, LAMBDA);
pub const LAMBDA_GB_S: Price = price("Lambda duration (x86, GB-s)", 0.000_016_666_7, 1.0, LAMBDA);
pub const SQS_REQUEST: Price = price("SQS requests (standard)", 0.40, 1e6, SQS);
pub const S3_WRITE: Price = price("S3 PUT, COPY, POST, LIST requests", 0.005, 1e3, S3);
pub const S3_READ: Price = price("S3 GET and other requests", 0.0004, 1e3, S3);
pub const S3_GB_MONTH: Price = price("S3 Standard storage (GB-month)", 0.023, 1.0, S3);
pub const DDB_WRITE: Price = price("DynamoDB write request units", 0.625, 1e6, DYNAMODB);
pub const DDB_READ: Price = price("DynamoDB read request units", 0.125, 1e6, DYNAMODB);
pub const DDB_GB_MONTH: Price = price("DynamoDB storage (GB-month)", 0.25, 1.0, DYNAMODB);
pub const DDB_PITR_GB_MONTH: Price = price(
    "DynamoDB point-in-time recovery (GB-month)",
    0.20,
    1.0,
    DYNAMODB,
);
pub const SECRET_MONTH: Price = price("Secrets Manager secret (month)", 0.40, 1.0, SECRETS);
pub const SECRETS_CALL: Price = price("Secrets Manager API calls", 0.05, 1e4, SECRETS);
pub const SES_EMAIL: Price = price("SES emails", 0.10, 1e3, SES);
pub const SNS_PUBLISH: Price = price("SNS publishes", 0.50, 1e6, SNS);
pub const KMS_KEY_MONTH: Price = price("KMS customer managed key (month)", 1.00, 1.0, KMS);
pub const KMS_REQUEST: Price = price("KMS requests", 0.03, 1e4, KMS);
pub const ALARM_MONTH: Price = price("CloudWatch standard alarm (month)", 0.10, 1.0, CLOUDWATCH);

/// Every price used, for the README and `keyfleet bench`.
pub const PRICES: &[Price] = &[
    LAMBDA_REQUEST,
    LAMBDA_GB_S,
    SQS_REQUEST,
    S3_WRITE,
    S3_READ,
    S3_GB_MONTH,
    DDB_WRITE,
    DDB_READ,
    DDB_GB_MONTH,
    DDB_PITR_GB_MONTH,
    SECRET_MONTH,
    SECRETS_CALL,
    SES_EMAIL,
    SNS_PUBLISH,
    KMS_KEY_MONTH,
    KMS_REQUEST,
    ALARM_MONTH,
];

/// Requests of one run, by service and action (`s3`, `PutObject`).
pub type Calls = BTreeMap<(String, String), u64>;

/// What the bench counted: a busy cycle, the quiet one after it, and the
/// keys the busy one rotated.
#[derive(Debug, Clone, Default)]
pub struct Counted {
    pub busy: Calls,
    pub quiet: Calls,
    pub rotated: u64,
}

/// Days between two rotations of a user's key (`rotate_after`'s default).
pub const ROTATE_AFTER_DAYS: f64 = 80.0;

impl Counted {
    /// Requests a month, by service and action (see the module
    /// documentation).
    pub fn month(&self, shape: &Shape) -> BTreeMap<(String, String), f64> {
        let users = (shape.accounts * shape.users_per_account) as f64;
        let rotations = users * 30.0 / ROTATE_AFTER_DAYS;
        let mut out: BTreeMap<(String, String), f64> = BTreeMap::new();
        for (k, n) in &self.quiet {
            *out.entry(k.clone()).or_default() += shape.runs_per_month * *n as f64;
        }
        if self.rotated > 0 {
            for (k, extra) in self.per_rotated_key_by_action() {
                *out.entry(k).or_default() += 2.0 * rotations * extra;
            }
        }
        for v in out.values_mut() {
            *v = v.max(0.0);
        }
        out
    }

    /// Requests per rotated key, by service: the busy cycle's beyond the
    /// quiet one's (never below none).
    pub fn per_rotated_key(&self) -> BTreeMap<String, f64> {
        let mut by: BTreeMap<String, f64> = BTreeMap::new();
        for ((service, _), n) in self.per_rotated_key_by_action() {
            *by.entry(service).or_default() += n;
        }
        for v in by.values_mut() {
            *v = v.max(0.0);
        }
        by
    }

    /// Requests per rotated key, by service and action: the busy cycle's
    /// beyond the quiet one's, signed. An action the quiet run makes more
    /// often counts below zero: a rotation can save requests (the quiet run
    /// looks up the last use of the old keys that wait for their
    /// deactivation), and the runs' own variation (two intakes racing to
    /// finalize the run write and delete a few more objects) falls on
    /// either side instead of only adding up.
    pub fn per_rotated_key_by_action(&self) -> BTreeMap<(String, String), f64> {
        let mut keys: Vec<&(String, String)> = self.busy.keys().chain(self.quiet.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|k| {
                let busy = self.busy.get(k).copied().unwrap_or(0) as f64;
                let quiet = self.quiet.get(k).copied().unwrap_or(0) as f64;
                (k.clone(), (busy - quiet) / self.rotated.max(1) as f64)
            })
            .collect()
    }
}

/// Which S3 actions bill as writes (PUT, COPY, POST, LIST); the others as
/// reads, but deletions, which are free.
fn s3_class(action: &str) -> Option<bool> {
    match action {
        "DeleteObject" | "DeleteObjects" | "AbortMultipartUpload" => None,
        "PutObject"
        | "CopyObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "CompleteMultipartUpload"
        | "ListObjects"
        | "ListObjectsV2"
        | "ListBuckets"
        | "ListMultipartUploads" => Some(true),
        _ => Some(false),
    }
}

/// What the organization and the deployment are, for the model.
#[derive(Debug, Clone)]
pub struct Shape {
    pub accounts: u64,
    pub users_per_account: u64,
    /// Scheduled runs a month (the default schedule: daily).
    pub runs_per_month: f64,
    /// Sweeps a month (the default: hourly).
    pub sweeps_per_month: f64,
    /// Agent Lambda memory (GB) and seconds per account and run.
    pub agent_gb: f64,
    pub agent_seconds: f64,
    /// Coordinator Lambda memory (GB) and seconds per run (dispatch,
    /// intake and finalize together).
    pub coordinator_gb: f64,
    pub coordinator_seconds: f64,
    /// Bytes of keyfleet's own state per user that has a record.
    pub record_bytes: f64,
    /// Bytes the report bucket keeps per run, and days runs are kept.
    pub run_bytes: f64,
    pub retention_days: f64,
    /// Users who get their keys through Secrets Manager (a secret each).
    pub secrets_manager_users: u64,
}

impl Shape {
    /// The defaults of the Terraform modules and the agent template for an
    /// organization of `accounts` x `users_per_account`.
    pub fn deployed(accounts: u64, users_per_account: u64) -> Shape {
        Shape {
            accounts,
            users_per_account,
            runs_per_month: 30.0,
            sweeps_per_month: 730.0,
            agent_gb: 0.25,
            agent_seconds: 10.0,
            coordinator_gb: 0.5,
            coordinator_seconds: 60.0,
            record_bytes: 1_000.0,
            run_bytes: 0.0,
            retention_days: 400.0,
            secrets_manager_users: 0,
        }
    }
}

/// One line of the estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// `fixed`, `per account`, `per user` or `per run`: what it grows with.
    pub grows_with: &'static str,
    pub what: String,
    pub quantity: f64,
    pub usd: f64,
}

/// The monthly estimate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Estimate {
    pub lines: Vec<Line>,
}

impl Estimate {
    pub fn total(&self) -> f64 {
        self.lines.iter().map(|l| l.usd).sum()
    }

    /// keyfleet's own state: the records table and the report bucket's
    /// storage and requests, and the Secrets Manager secrets.
    pub fn state(&self) -> f64 {
        self.lines
            .iter()
            .filter(|l| l.what.starts_with("state:"))
            .map(|l| l.usd)
            .sum()
    }

    fn add(&mut self, grows_with: &'static str, what: impl Into<String>, quantity: f64, p: Price) {
        self.lines.push(Line {
            grows_with,
            what: what.into(),
            quantity,
            usd: p.of(quantity),
        });
    }
}

/// A month of keyfleet for `shape`, from the requests counted
/// ([`Counted::month`]) and the modelled rest (see the module
/// documentation).
pub fn monthly(shape: &Shape, counted: &Counted) -> Estimate {
    let runs = shape.runs_per_month;
    let month = counted.month(shape);
    let count = |service: &str, keep: &dyn Fn(&str) -> bool| -> f64 {
        month
            .iter()
            .filter(|((s, a), _)| s == service && keep(a))
            .map(|(_, n)| *n)
            .sum()
    };
    let all = |_: &str| true;
    let mut e = Estimate::default();
    let accounts = shape.accounts as f64;

    // Fixed: the provisioning account's keys, secrets and alarms.
    e.add("fixed", "KMS keys (coordinator, API)", 2.0, KMS_KEY_MONTH);
    e.add(
        "fixed",
        "Secrets Manager: coordinator key ring, API keys",
        2.0,
        SECRET_MONTH,
    );
    e.add(
        "fixed",
        "CloudWatch alarms (coordinator 3, API 2)",
        5.0,
        ALARM_MONTH,
    );
    e.add(
        "fixed",
        "Lambda: hourly sweeps",
        shape.sweeps_per_month,
        LAMBDA_REQUEST,
    );
    e.add(
        "fixed",
        "SQS: event-source pollers on the results queue (5 x 20 s long polls)",
        5.0 * 3.0 * 60.0 * 24.0 * 30.0,
        SQS_REQUEST,
    );

    // Per account: the idle pollers of each jobs queue, the job and its
    // result, the agent's invocation.
    e.add(
        "per account",
        "SQS: event-source pollers on each jobs queue (5 x 20 s long polls)",
        accounts * 5.0 * 3.0 * 60.0 * 24.0 * 30.0,
        SQS_REQUEST,
    );
    e.add(
        "per account",
        "SQS: job sent, result part sent, received and deleted",
        accounts * runs * 4.0,
        SQS_REQUEST,
    );
    e.add(
        "per account",
        "Lambda: agent invocations",
        accounts * runs,
        LAMBDA_REQUEST,
    );
    e.add(
        "per account",
        "Lambda: agent duration (GB-s)",
        accounts * runs * shape.agent_gb * shape.agent_seconds,
        LAMBDA_GB_S,
    );
    e.add(
        "per run",
        "Lambda: coordinator duration (GB-s)",
        runs * shape.coordinator_gb * shape.coordinator_seconds,
        LAMBDA_GB_S,
    );

    // Counted: what the run's calls bill.
    e.add(
        "per run",
        "state: S3 writes and listings (results, ledger, reports)",
        count("s3", &|a| s3_class(a) == Some(true)),
        S3_WRITE,
    );
    e.add(
        "per run",
        "state: S3 reads",
        count("s3", &|a| s3_class(a) == Some(false)),
        S3_READ,
    );
    e.add(
        "per user",
        "state: DynamoDB writes (records, lease)",
        count("dynamodb", &|a| a == "PutItem"),
        DDB_WRITE,
    );
    e.add(
        "per user",
        "state: DynamoDB reads (records, lease, policy)",
        count("dynamodb", &|a| a == "GetItem"),
        DDB_READ,
    );
    e.add(
        "per run",
        "Secrets Manager API calls",
        count("secretsmanager", &all),
        SECRETS_CALL,
    );
    e.add(
        "per user",
        "SES emails",
        count("ses", &|a| a.starts_with("Send")) + count("sesv2", &|a| a == "SendEmail"),
        SES_EMAIL,
    );
    e.add(
        "per run",
        "SNS publishes",
        count("sns", &|a| a == "Publish"),
        SNS_PUBLISH,
    );
    e.add(
        "per run",
        "KMS requests (counted where callers make them)",
        count("kms", &all),
        KMS_REQUEST,
    );

    // Storage.
    let users = accounts * shape.users_per_account as f64;
    let table_gb = users * shape.record_bytes / 1e9;
    e.add(
        "per user",
        "state: DynamoDB storage (a record per user)",
        table_gb,
        DDB_GB_MONTH,
    );
    e.add(
        "per user",
        "state: DynamoDB point-in-time recovery",
        table_gb,
        DDB_PITR_GB_MONTH,
    );
    e.add(
        "per run",
        "state: S3 storage (runs kept)",
        shape.run_bytes * runs * shape.retention_days / 30.0 / 1e9,
        S3_GB_MONTH,
    );
    e.add(
        "per user",
        "state: Secrets Manager delivery secrets",
        shape.secrets_manager_users as f64,
        SECRET_MONTH,
    );
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(list: &[(&str, &str, u64)]) -> Calls {
        list.iter()
            .map(|(s, a, n)| ((s.to_string(), a.to_string()), *n))
            .collect()
    }

    #[test]
    fn each_price_names_its_page_and_a_positive_price() {
        for p in PRICES {
            assert!(p.page.starts_with("https://aws.amazon.com/"), "{}", p.what);
            assert!(p.usd > 0.0 && p.per > 0.0, "{}", p.what);
        }
    }

    #[test]
    fn s3_requests_bill_by_class_and_deletions_are_free() {
        let shape = Shape {
            runs_per_month: 1.0,
            ..Shape::deployed(1, 1)
        };
        let quiet = calls(&[
            ("s3", "PutObject", 1000),
            ("s3", "GetObject", 1000),
            ("s3", "DeleteObject", 1000),
        ]);
        let e = monthly(
            &shape,
            &Counted {
                busy: quiet.clone(),
                quiet,
                rotated: 0,
            },
        );
        let line = |w: &str| e.lines.iter().find(|l| l.what.contains(w)).unwrap().usd;
        assert!((line("S3 writes") - 0.005).abs() < 1e-12);
        assert!((line("S3 reads") - 0.0004).abs() < 1e-12);
    }

    #[test]
    fn the_estimate_adds_up_and_grows_with_the_organization() {
        let c = Counted {
            busy: calls(&[("dynamodb", "PutItem", 100), ("iam", "ListAccessKeys", 100)]),
            quiet: calls(&[("dynamodb", "PutItem", 10)]),
            rotated: 10,
        };
        let small = monthly(&Shape::deployed(10, 50), &c);
        let large = monthly(&Shape::deployed(500, 100), &c);
        let sum: f64 = small.lines.iter().map(|l| l.usd).sum();
        assert!((small.total() - sum).abs() < 1e-9);
        assert!(large.total() > small.total());
        // IAM is free: no line for it.
        assert!(!small.lines.iter().any(|l| l.what.contains("IAM")));
        // A Secrets Manager delivery secret is $0.40 a month.
        let sm = monthly(
            &Shape {
                secrets_manager_users: 10,
                ..Shape::deployed(1, 10)
            },
            &Counted::default(),
        );
        let secrets = sm
            .lines
            .iter()
            .find(|l| l.what.contains("delivery secrets"))
            .unwrap();
        assert!((secrets.usd - 4.0).abs() < 1e-9);
    }

    #[test]
    fn calls_per_rotated_key_are_the_busy_runs_beyond_the_quiet_ones() {
        let c = Counted {
            busy: calls(&[
                ("iam", "CreateAccessKey", 10),
                ("iam", "ListAccessKeys", 25),
                ("s3", "PutObject", 5),
            ]),
            quiet: calls(&[("iam", "ListAccessKeys", 5)]),
            rotated: 10,
        };
        let per = c.per_rotated_key();
        assert_eq!(per["iam"], 3.0);
        assert_eq!(per["s3"], 0.5);
        // A month: 30 quiet runs, and each of the month's rotations
        // (users x 30 / 80) twice the busy run's extra per key.
        let shape = Shape::deployed(1, 80);
        let m = c.month(&shape);
        let key = |s: &str, a: &str| m[&(s.to_string(), a.to_string())];
        let expected = 30.0 * 5.0 + 2.0 * 30.0 * 20.0 / 10.0;
        assert!((key("iam", "ListAccessKeys") - expected).abs() < 1e-9);
        assert!((key("iam", "CreateAccessKey") - 2.0 * 30.0 * 10.0 / 10.0).abs() < 1e-9);
    }

    #[test]
    fn an_action_the_quiet_run_makes_more_often_counts_against_its_service() {
        let c = Counted {
            busy: calls(&[
                ("iam", "CreateAccessKey", 10),
                ("iam", "GetAccessKeyLastUsed", 8),
                ("s3", "GetObject", 3),
            ]),
            quiet: calls(&[("iam", "GetAccessKeyLastUsed", 10), ("s3", "GetObject", 9)]),
            rotated: 10,
        };
        let by_action = c.per_rotated_key_by_action();
        assert_eq!(
            by_action[&("iam".to_string(), "GetAccessKeyLastUsed".to_string())],
            -0.2
        );
        let per = c.per_rotated_key();
        assert!((per["iam"] - 0.8).abs() < 1e-9);
        // A service the busy run uses less is none, not below.
        assert_eq!(per["s3"], 0.0);
        let m = c.month(&Shape::deployed(1, 80));
        assert!(m.values().all(|n| *n >= 0.0));
    }
}
