//! Starts keyfleet's AWS emulator harness (moto in server mode plus the few
//! things AWS has and moto lacks, see `tests/emulator/README.md`) and builds
//! SDK configurations that talk to it, as any account of a fake organization.
//!
//! One harness serves a whole test binary (or the CLI demo): it is started
//! on first use and exits by itself when this process ends (the harness
//! watches its parent pid). Tests isolate themselves by using their own
//! account ids ([`Emulator::new_account_id`]) and unique names, never by
//! resetting shared state. Set `KEYFLEET_EMULATOR_URL` to use a harness that
//! is already running.

pub mod seed;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Region every emulated resource lives in.
pub const REGION: &str = "us-east-1";
/// The account moto uses for unsigned-by-role requests: the management /
/// provisioning account of the emulated organization.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// Why the harness could not be started or asked.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("emulator bootstrap failed ({0}); run `bash tests/emulator/bootstrap.sh` to see why")]
    Bootstrap(String),
    #[error("emulator did not start: {0}")]
    Start(String),
    #[error("emulator request {what} failed: {error}")]
    Request { what: String, error: String },
    #[error("could not assume a role in account {account}: {error}")]
    AssumeRole { account: String, error: String },
}

/// A running harness.
pub struct Emulator {
    endpoint: String,
    _child: Mutex<Option<Child>>,
}

/// An email SES accepted, as the harness outbox reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct SentEmail {
    #[serde(default)]
    pub account: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub destinations: Vec<String>,
    /// The raw MIME message.
    pub raw: String,
}

/// One authorization decision of the emulator's IAM enforcement.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct IamDecision {
    /// `ALLOWED` or `DENIED`.
    pub decision: String,
    pub account: String,
    pub role: String,
    #[serde(default)]
    pub session: String,
    pub action: String,
    pub resource: String,
    #[serde(default)]
    pub reason: String,
    /// For an allowed call, the Allow statements that matched it,
    /// conditions included: `identity:<Sid>`, and `resource:<Sid>`,
    /// `kms:<Sid>` or `trust:<Sid>` for the other side (`#<n>` for the
    /// n-th statement when it has no Sid).
    #[serde(default)]
    pub allowed_by: Vec<String>,
    /// A question AWS asks itself on the caller's behalf, not a call the
    /// caller made: may it `s3:ListBucket`, to answer a read of a missing
    /// object with 404 or 403. A refused probe only changes the status.
    #[serde(default)]
    pub probe: bool,
    /// The request context the engine decided with (condition keys).
    #[serde(default)]
    pub context: serde_json::Value,
}

#[derive(Deserialize)]
struct Outbox {
    messages: Vec<SentEmail>,
}

/// The folder holding `harness.py` and `bootstrap.sh`.
pub fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../emulator")
}

static SHARED: OnceLock<Result<Emulator, String>> = OnceLock::new();

impl Emulator {
    /// The process-wide harness, started on first call.
    pub fn shared() -> Result<&'static Emulator, EmulatorError> {
        SHARED
            .get_or_init(|| Emulator::start().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| EmulatorError::Start(e.clone()))
    }

    /// Starts a new harness (or connects to `KEYFLEET_EMULATOR_URL`).
    pub fn start() -> Result<Emulator, EmulatorError> {
        if let Ok(url) = std::env::var("KEYFLEET_EMULATOR_URL") {
            let emu = Emulator {
                endpoint: url.trim_end_matches('/').to_string(),
                _child: Mutex::new(None),
            };
            emu.wait_healthy(Duration::from_secs(30))?;
            return Ok(emu);
        }
        let dir = harness_dir();
        let status = Command::new("bash")
            .arg(dir.join("bootstrap.sh"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .map_err(|e| EmulatorError::Bootstrap(e.to_string()))?;
        if !status.success() {
            return Err(EmulatorError::Bootstrap(format!("exit status {status}")));
        }
        let ready = std::env::temp_dir().join(format!(
            "keyfleet-emulator-{}-{}.port",
            std::process::id(),
            rand::random::<u32>()
        ));
        let child = Command::new(dir.join(".venv/bin/python"))
            .arg(dir.join("harness.py"))
            .args(["--port", "0", "--ready-file"])
            .arg(&ready)
            .args(["--parent-pid", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| EmulatorError::Start(e.to_string()))?;
        let emu = Emulator {
            endpoint: String::new(),
            _child: Mutex::new(Some(child)),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Ok(s) = std::fs::read_to_string(&ready) {
                if let Ok(p) = s.trim().parse::<u16>() {
                    break p;
                }
            }
            if let Some(status) = emu
                ._child
                .lock()
                .expect("child lock")
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(EmulatorError::Start(format!(
                    "harness exited with {status}"
                )));
            }
            if Instant::now() > deadline {
                return Err(EmulatorError::Start("no ready file after 60 s".into()));
            }
            // Waiting for another process to start: poll its ready file.
            std::thread::sleep(Duration::from_millis(50));
        };
        let _ = std::fs::remove_file(&ready);
        let emu = Emulator {
            endpoint: format!("http://127.0.0.1:{port}"),
            _child: emu._child,
        };
        emu.wait_healthy(Duration::from_secs(30))?;
        Ok(emu)
    }

    fn wait_healthy(&self, within: Duration) -> Result<(), EmulatorError> {
        let deadline = Instant::now() + within;
        loop {
            match ureq::get(&format!("{}/_keyfleet/health", self.endpoint)).call() {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(EmulatorError::Start(format!("not healthy: {e}")))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// SDK config for the default (management/provisioning) account.
    pub fn config(&self) -> SdkConfig {
        self.config_with(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "keyfleet-testkit",
        ))
    }

    fn config_with(&self, creds: Credentials) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(creds),
            )
            .build()
    }

    /// SDK config acting as `account`: temporary credentials from
    /// AssumeRole into `arn:aws:iam::<account>:role/keyfleet-testkit`, which
    /// moto maps to that account, as AWS would.
    pub async fn config_for_account(&self, account: &str) -> Result<SdkConfig, EmulatorError> {
        if account == DEFAULT_ACCOUNT {
            return Ok(self.config());
        }
        let sts = aws_sdk_sts::Client::new(&self.config());
        let out = sts
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/keyfleet-testkit"))
            .role_session_name("keyfleet-testkit")
            .send()
            .await
            .map_err(|e| EmulatorError::AssumeRole {
                account: account.to_string(),
                error: format!("{e:?}"),
            })?;
        let c = out.credentials.ok_or_else(|| EmulatorError::AssumeRole {
            account: account.to_string(),
            error: "no credentials in response".into(),
        })?;
        Ok(self.config_with(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            None,
            "keyfleet-testkit-assumed",
        )))
    }

    /// A fresh random account id, so a test owns all state in it.
    pub fn new_account_id() -> String {
        loop {
            let n: u64 = rand::random::<u64>() % 900_000_000_000 + 100_000_000_000;
            let s = n.to_string();
            if s != DEFAULT_ACCOUNT {
                return s;
            }
        }
    }

    /// `DELETE` on a control endpoint.
    fn delete(&self, path: &str) -> Result<(), EmulatorError> {
        ureq::delete(&format!("{}{path}", self.endpoint))
            .call()
            .map_err(|e| EmulatorError::Request {
                what: path.to_string(),
                error: e.to_string(),
            })?;
        Ok(())
    }

    fn post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, EmulatorError> {
        let mut resp = ureq::post(&format!("{}{path}", self.endpoint))
            .send_json(&body)
            .map_err(|e| EmulatorError::Request {
                what: path.to_string(),
                error: e.to_string(),
            })?;
        resp.body_mut().read_json().or(Ok(serde_json::Value::Null))
    }

    /// Replaces the harness's fault rules (`POST /_keyfleet/faults`, see
    /// tests/emulator/README.md, "Faults on demand"): `{"seed": N, "rules":
    /// [...]}`. The rules are global to the harness: scope each rule to the
    /// test's own account and names (`account`, `match`).
    pub fn set_faults(&self, faults: serde_json::Value) -> Result<(), EmulatorError> {
        self.post("/_keyfleet/faults", faults).map(|_| ())
    }

    /// The fault rules with what each matched and injected.
    pub fn faults(&self) -> Result<serde_json::Value, EmulatorError> {
        let mut resp = ureq::get(&format!("{}/_keyfleet/faults", self.endpoint))
            .call()
            .map_err(|e| EmulatorError::Request {
                what: "/_keyfleet/faults".into(),
                error: e.to_string(),
            })?;
        resp.body_mut()
            .read_json()
            .map_err(|e| EmulatorError::Request {
                what: "/_keyfleet/faults".into(),
                error: e.to_string(),
            })
    }

    /// The AWS requests counted since the last reset, by caller account,
    /// service and action (`GET /_keyfleet/calls`, see
    /// tests/emulator/README.md, "Request counter"): `(account, service,
    /// action, count)`.
    pub fn calls(&self) -> Result<Vec<(String, String, String, u64)>, EmulatorError> {
        let v = self.get_json("/_keyfleet/calls")?;
        Ok(v["calls"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        (
                            c["account"].as_str().unwrap_or_default().to_string(),
                            c["service"].as_str().unwrap_or_default().to_string(),
                            c["action"].as_str().unwrap_or_default().to_string(),
                            c["count"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Starts counting requests from zero (`DELETE /_keyfleet/calls`).
    pub fn reset_calls(&self) -> Result<(), EmulatorError> {
        self.delete("/_keyfleet/calls")
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) -> Result<(), EmulatorError> {
        self.delete("/_keyfleet/faults")
    }

    /// Every SQS message sent and every SNS message published that the
    /// emulator accepted since the last clear, consumed or not
    /// (`GET /_keyfleet/messages`, see tests/emulator/README.md, "Message
    /// log"): `{"sqs": [{"queue", "body", "account"}, ...], "sns":
    /// [{"topic", "subject", "message"}, ...]}`. The log is global to the
    /// harness: filter by the test's own accounts, queues and topics.
    pub fn messages(&self) -> Result<serde_json::Value, EmulatorError> {
        let mut resp = ureq::get(&format!("{}/_keyfleet/messages", self.endpoint))
            .call()
            .map_err(|e| EmulatorError::Request {
                what: "/_keyfleet/messages".into(),
                error: e.to_string(),
            })?;
        resp.body_mut()
            .read_json()
            .map_err(|e| EmulatorError::Request {
                what: "/_keyfleet/messages".into(),
                error: e.to_string(),
            })
    }

    /// Empties the message log.
    pub fn clear_messages(&self) -> Result<(), EmulatorError> {
        self.delete("/_keyfleet/messages")
    }

    fn get_json(&self, path: &str) -> Result<serde_json::Value, EmulatorError> {
        let mut resp = ureq::get(&format!("{}{path}", self.endpoint))
            .call()
            .map_err(|e| EmulatorError::Request {
                what: path.to_string(),
                error: e.to_string(),
            })?;
        resp.body_mut()
            .read_json()
            .map_err(|e| EmulatorError::Request {
                what: path.to_string(),
                error: e.to_string(),
            })
    }

    /// Turns the emulator's IAM enforcement for keyfleet's deployed roles
    /// on or off (`POST /_keyfleet/iam/enforce`). It is global to the
    /// harness.
    pub fn enforce_iam(&self, enabled: bool) -> Result<(), EmulatorError> {
        self.post(
            "/_keyfleet/iam/enforce",
            serde_json::json!({ "enabled": enabled }),
        )
        .map(|_| ())
    }

    /// Enforcement on for keyfleet's deployed roles and for the roles named
    /// by `extra` (shell-style patterns, e.g. `intruder-*`): the principals
    /// a negative test plays. Global to the harness, like [`Self::enforce_iam`].
    pub fn enforce_iam_also_for(&self, extra: &[&str]) -> Result<(), EmulatorError> {
        let mut patterns = vec![
            "keyfleet-agent*",
            "keyfleet-coordinator*",
            "keyfleet-org-reader*",
            "keyfleet-api*",
        ];
        patterns.extend_from_slice(extra);
        self.post(
            "/_keyfleet/iam/enforce",
            serde_json::json!({ "enabled": true, "role_name_patterns": patterns }),
        )
        .map(|_| ())
    }

    /// Every authorization decision the enforcement made, in order.
    pub fn iam_decisions(&self) -> Result<Vec<IamDecision>, EmulatorError> {
        #[derive(Deserialize)]
        struct Decisions {
            decisions: Vec<IamDecision>,
        }
        let v = self.get_json("/_keyfleet/iam/decisions")?;
        serde_json::from_value::<Decisions>(v)
            .map(|d| d.decisions)
            .map_err(|e| EmulatorError::Request {
                what: "/_keyfleet/iam/decisions".into(),
                error: e.to_string(),
            })
    }

    /// Fires an EventBridge rule's targets now, as its schedule would
    /// (`POST /_keyfleet/events/fire`): Lambda targets are invoked
    /// asynchronously with the target's input.
    pub fn fire_rule(&self, rule: &str) -> Result<serde_json::Value, EmulatorError> {
        self.post(
            "/_keyfleet/events/fire",
            serde_json::json!({ "rule": rule }),
        )
    }

    /// Makes every in-flight message of a queue visible now (a test need
    /// not wait out a 30-minute visibility timeout).
    pub fn make_visible(&self, queue_url: &str) -> Result<u64, EmulatorError> {
        let v = self.post(
            "/_keyfleet/sqs/visible",
            serde_json::json!({ "queue_url": queue_url }),
        )?;
        Ok(v["made_visible"].as_u64().unwrap_or(0))
    }

    /// The Lambda invocations the emulator ran (newest last).
    pub fn lambda_invocations(&self) -> Result<Vec<serde_json::Value>, EmulatorError> {
        let v = self.get_json("/_keyfleet/lambda/invocations")?;
        Ok(v["invocations"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until the emulator's Lambda work is done in `accounts` (all
    /// accounts when empty): nothing running or waiting to retry, and no
    /// deliverable message on a queue with an event source mapping.
    pub fn settle(&self, accounts: &[&str], timeout_s: u64) -> Result<(), EmulatorError> {
        let mut body = serde_json::json!({ "timeout": timeout_s });
        if !accounts.is_empty() {
            body["accounts"] = serde_json::json!(accounts);
        }
        let v = self.post("/_keyfleet/lambda/settle", body)?;
        if v["settled"].as_bool() == Some(false) {
            return Err(EmulatorError::Request {
                what: "/_keyfleet/lambda/settle".into(),
                error: format!("not settled after {timeout_s}s: {v}"),
            });
        }
        Ok(())
    }

    /// Ages every access key (creation and last use) by `days`, in every
    /// account or only in `account`; the SES send log and the recorded
    /// CloudTrail events of the same accounts age with them (see
    /// `set_ses_quota`, `cloudtrail_events`).
    pub fn advance_clock(&self, days: f64, account: Option<&str>) -> Result<(), EmulatorError> {
        let mut body = serde_json::json!({ "days": days });
        if let Some(a) = account {
            body["account"] = a.into();
        }
        self.post("/_keyfleet/clock/advance", body).map(|_| ())
    }

    /// Sets the SES sending limits of `account`, or of every account with
    /// `None` (`POST /_keyfleet/ses/quota`, see tests/emulator/README.md, "SES
    /// sending quota and send rate"): `max_24_hour_send` recipients in a
    /// rolling 24 hours and `max_send_rate` per second, `None` = unlimited
    /// (the default). A send past them is refused as SES refuses it (v2
    /// `LimitExceededException` / `TooManyRequestsException`) and not sent;
    /// `sesv2 GetAccount` reports the limits (-1 = unlimited) and
    /// `SentLast24Hours`. Time is the emulator's: `advance_clock` passes the
    /// day, and refills the rate.
    pub fn set_ses_quota(
        &self,
        max_24_hour_send: Option<u64>,
        max_send_rate: Option<f64>,
        account: Option<&str>,
    ) -> Result<(), EmulatorError> {
        let mut body = serde_json::json!({
            "max_24_hour_send": max_24_hour_send,
            "max_send_rate": max_send_rate,
        });
        if let Some(a) = account {
            body["account"] = a.into();
        }
        self.post("/_keyfleet/ses/quota", body).map(|_| ())
    }

    /// Makes every account's SES sending unlimited again (`DELETE
    /// /_keyfleet/ses/quota`), or with `Some(account)` drops only that
    /// account's own limits (it then has the all-accounts ones). The send log
    /// stays.
    pub fn reset_ses_quota(&self, account: Option<&str>) -> Result<(), EmulatorError> {
        match account {
            Some(a) => self.delete(&format!("/_keyfleet/ses/quota?account={a}")),
            None => self.delete("/_keyfleet/ses/quota"),
        }
    }

    /// Makes the time of the STS session whose access key is
    /// `access_key_id` (`ASIA...`) run out now (`POST
    /// /_keyfleet/sts/expire`): its requests are refused with
    /// `ExpiredToken` from then on, as AWS refuses expired credentials.
    pub fn expire_session(&self, access_key_id: &str) -> Result<(), EmulatorError> {
        self.post(
            "/_keyfleet/sts/expire",
            serde_json::json!({ "access_key_id": access_key_id }),
        )
        .map(|_| ())
    }

    /// Marks a key as used at `when` (RFC 3339; `None` = now) by `service`
    /// in `region`.
    pub fn mark_key_used(
        &self,
        account: &str,
        access_key_id: &str,
        when: Option<&str>,
        service: &str,
        region: &str,
    ) -> Result<(), EmulatorError> {
        let mut body = serde_json::json!({
            "account": account, "access_key_id": access_key_id,
            "service": service, "region": region,
        });
        if let Some(w) = when {
            body["when"] = w.into();
        }
        self.post("/_keyfleet/iam/key-used", body).map(|_| ())
    }

    /// The CloudTrail events the emulator recorded for `account`, newest
    /// first (`GET /_keyfleet/cloudtrail?account=`, see
    /// tests/emulator/README.md, "CloudTrail event history"): one per AWS
    /// request signed with a key of the account that CloudTrail's Event
    /// history would hold (no data events), each `{"account", "region",
    /// "event_id", "event_time", "event_name", "event_source",
    /// "access_key_id", "username", "identity_type", "source_ip",
    /// "user_agent", "read_only"}` with `event_time` in emulator time (RFC
    /// 3339; `advance_clock` ages it). LookupEvents answers from the same
    /// events.
    pub fn cloudtrail_events(
        &self,
        account: &str,
    ) -> Result<Vec<serde_json::Value>, EmulatorError> {
        let v = self.get_json(&format!("/_keyfleet/cloudtrail?account={account}"))?;
        Ok(v["events"].as_array().cloned().unwrap_or_default())
    }

    /// Records a CloudTrail event as if `access_key_id` had signed a request
    /// from elsewhere (`POST /_keyfleet/cloudtrail/events`), e.g. `{"access_key_id":
    /// "AKIA...", "event_name": "ListBuckets", "service": "s3", "region":
    /// "eu-west-1", "source_ip": "203.0.113.5", "user_agent":
    /// "aws-cli/2.15.0", "when": "2026-01-02T03:04:05Z"}` (`access_key_id`,
    /// `event_name` and `service` or `event_source` required; `when` in
    /// emulator time, default now; `account` default the key's owner).
    /// Answers `{"ok": true, "event_id", "account", "username"}`.
    pub fn record_cloudtrail_event(
        &self,
        event: serde_json::Value,
    ) -> Result<serde_json::Value, EmulatorError> {
        self.post("/_keyfleet/cloudtrail/events", event)
    }

    /// Forgets the recorded CloudTrail events of `account`, or of every
    /// account with `None` (`DELETE /_keyfleet/cloudtrail`).
    pub fn clear_cloudtrail(&self, account: Option<&str>) -> Result<(), EmulatorError> {
        match account {
            Some(a) => self.delete(&format!("/_keyfleet/cloudtrail?account={a}")),
            None => self.delete("/_keyfleet/cloudtrail"),
        }
    }

    /// Throttles CloudTrail LookupEvents of `account` (every account with
    /// `None`) to `rate` per second per region, as AWS does at 2; `None`
    /// turns it off (the default). Measured in emulator time: pass a rate
    /// no real pause refills (e.g. `1.0 / 3600.0`) for a deterministic
    /// `ThrottlingException` on the second lookup, and `advance_clock` to
    /// refill it (`POST /_keyfleet/cloudtrail/throttle`).
    pub fn set_cloudtrail_throttle(
        &self,
        rate: Option<f64>,
        account: Option<&str>,
    ) -> Result<(), EmulatorError> {
        let mut body = serde_json::json!({ "rate": rate });
        if let Some(a) = account {
            body["account"] = a.into();
        }
        self.post("/_keyfleet/cloudtrail/throttle", body)
            .map(|_| ())
    }

    /// Turns LookupEvents throttling off for every account (`DELETE
    /// /_keyfleet/cloudtrail/throttle`).
    pub fn reset_cloudtrail_throttle(&self) -> Result<(), EmulatorError> {
        self.delete("/_keyfleet/cloudtrail/throttle")
    }

    /// Every email SES accepted so far, in order.
    pub fn outbox(&self) -> Result<Vec<SentEmail>, EmulatorError> {
        let mut resp = ureq::get(&format!("{}/_keyfleet/ses/outbox", self.endpoint))
            .call()
            .map_err(|e| EmulatorError::Request {
                what: "outbox".into(),
                error: e.to_string(),
            })?;
        let o: Outbox = resp
            .body_mut()
            .read_json()
            .map_err(|e| EmulatorError::Request {
                what: "outbox".into(),
                error: e.to_string(),
            })?;
        Ok(o.messages)
    }
}
