//! AWS clients for one account, built once and passed in.
//!
//! Every client carries a [`CallCounter`] interceptor, so the agent reports
//! exactly how many calls it made (the scan's cost is an explicit target:
//! O(pages), not O(users)), and adaptive retry tuned for IAM's low request
//! rate limits: throttled calls back off and retry a bounded number of times
//! rather than failing a user.

use aws_config::retry::RetryConfig;
use aws_config::SdkConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counts request attempts per `service:Operation`.
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl CallCounter {
    /// Current totals.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Calls made since `before` (a previous snapshot).
    pub fn since(&self, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        self.snapshot()
            .into_iter()
            .filter_map(|(k, v)| {
                let d = v - before.get(&k).copied().unwrap_or(0);
                (d > 0).then_some((k, d))
            })
            .collect()
    }

    fn interceptor(&self, prefix: &'static str) -> CountCalls {
        CountCalls {
            prefix,
            counts: self.counts.clone(),
        }
    }
}

#[derive(Debug)]
struct CountCalls {
    prefix: &'static str,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "keyfleet.CountCalls"
    }

    fn read_before_attempt(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_else(|| "unknown".into());
        if let Ok(mut m) = self.counts.lock() {
            *m.entry(format!("{}:{op}", self.prefix)).or_default() += 1;
        }
        Ok(())
    }
}

/// The clients an agent needs in its own account.
#[derive(Debug, Clone)]
pub struct AgentClients {
    pub iam: aws_sdk_iam::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    /// The account's keyfleet table ([`crate::table`]).
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// Event history: whether an old key's last uses were only its owner
    /// fetching the new key ([`crate::handover`]).
    pub cloudtrail: aws_sdk_cloudtrail::Client,
    pub calls: CallCounter,
}

/// Adaptive retry, bounded: IAM throttles at a few requests per second per
/// account, so a full rotation of a large account must slow down, not fail.
pub fn retry_config() -> RetryConfig {
    RetryConfig::adaptive()
        .with_max_attempts(6)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(10))
}

impl AgentClients {
    /// Builds the clients from an SDK config for the member account.
    pub fn new(config: &SdkConfig) -> Self {
        let calls = CallCounter::default();
        let iam = aws_sdk_iam::config::Builder::from(config)
            .retry_config(retry_config())
            .interceptor(calls.interceptor("iam"))
            .build();
        let secrets = aws_sdk_secretsmanager::config::Builder::from(config)
            .retry_config(retry_config())
            .interceptor(calls.interceptor("secretsmanager"))
            .build();
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(config)
            .retry_config(retry_config())
            .interceptor(calls.interceptor("dynamodb"))
            .build();
        let sqs = aws_sdk_sqs::config::Builder::from(config)
            .retry_config(retry_config())
            .interceptor(calls.interceptor("sqs"))
            .build();
        let cloudtrail = aws_sdk_cloudtrail::config::Builder::from(config)
            .retry_config(retry_config())
            .interceptor(calls.interceptor("cloudtrail"))
            .build();
        AgentClients {
            cloudtrail: aws_sdk_cloudtrail::Client::from_conf(cloudtrail),
            iam: aws_sdk_iam::Client::from_conf(iam),
            secrets: aws_sdk_secretsmanager::Client::from_conf(secrets),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
            sqs: aws_sdk_sqs::Client::from_conf(sqs),
            calls,
        }
    }
}
