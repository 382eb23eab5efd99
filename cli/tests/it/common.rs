//! What the CLI tests share: the `keyfleet` binary run as a subprocess, the
//! emulator's one organization, and a coordinator deployment per test.
//!
//! Tests run concurrently against one emulator, so each one names the
//! accounts it runs on (`--accounts`) and, unless it needs the default
//! names, bootstraps its own coordinator resources (bucket, results queue,
//! alerts topic, key secret). The agent StackSet is one per organization:
//! bootstraps are serialized so two tests never race to create it.

use keyfleet_testkit::Emulator;
use std::path::PathBuf;
use std::process::{Command, Output};

pub fn emu() -> &'static Emulator {
    Emulator::shared().expect("emulator")
}

/// The `keyfleet` binary with one configuration file.
pub struct Cli {
    pub config: PathBuf,
    pub endpoint: String,
    /// Holds the configuration file.
    pub _dir: Option<tempfile::TempDir>,
}

impl Cli {
    /// Runs `keyfleet <args>` and returns what it did.
    pub fn output(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_keyfleet"))
            .arg("--config")
            .arg(&self.config)
            .args(["--endpoint-url", &self.endpoint])
            .args(args)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env("KEYFLEET_LOG", "warn")
            .output()
            .expect("keyfleet runs")
    }

    /// Runs `keyfleet <args>`, which must succeed; returns its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "keyfleet {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs `keyfleet <args>`, which must fail; returns (stdout, stderr).
    pub fn fail(&self, args: &[&str]) -> (String, String) {
        let out = self.output(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success(),
            "keyfleet {args:?} succeeded but must fail:\n{stdout}\n{stderr}"
        );
        (stdout, stderr)
    }

    /// `keyfleet bootstrap`, one at a time across the tests.
    pub async fn bootstrap(&self) -> String {
        static BOOTSTRAP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one_at_a_time = BOOTSTRAP.lock().await;
        self.run(&["bootstrap"])
    }
}

/// A configuration with coordinator resources of its own (unique names)
/// and `extra` TOML appended, bootstrapped.
pub async fn own_coordinator(extra: &str) -> Cli {
    let s = keyfleet_protocol::Token::generate().0[..10].to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("keyfleet.toml");
    std::fs::write(
        &config,
        format!(
            "[mail]\nsender = \"keyfleet-{s}@example.com\"\nsecurity_team = [\"sec-{s}@example.com\"]\n\n\
             [coordinator]\nreport_bucket = \"keyfleet-reports-{s}\"\nresults_queue = \"keyfleet-results-{s}\"\n\
             alerts_topic = \"keyfleet-alerts-{s}\"\nprivate_key_secret = \"keyfleet-coordinator-{s}/private-key\"\n\n\
             {extra}\n"
        ),
    )
    .expect("write config");
    let cli = Cli {
        config,
        endpoint: emu().endpoint().to_string(),
        _dir: Some(dir),
    };
    organization().await;
    cli.bootstrap().await;
    cli
}

/// The organization (created once per emulator) and its management account.
pub async fn organization() -> String {
    static ORG: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    ORG.get_or_init(|| async {
        let org = aws_sdk_organizations::Client::new(&emu().config());
        if let Err(e) = org.create_organization().send().await {
            assert!(
                e.as_service_error()
                    .is_some_and(|s| s.is_already_in_organization_exception()),
                "CreateOrganization: {}",
                aws_sdk_organizations::error::DisplayErrorContext(&e)
            );
        }
        org.describe_organization()
            .send()
            .await
            .expect("DescribeOrganization")
            .organization()
            .and_then(|o| o.master_account_id())
            .expect("management account")
            .to_string()
    })
    .await
    .clone()
}

/// A new member account of the organization; returns its id.
pub async fn create_account(label: &str) -> String {
    organization().await;
    let s = keyfleet_protocol::Token::generate().0[..10].to_string();
    let org = aws_sdk_organizations::Client::new(&emu().config());
    org.create_account()
        .account_name(format!("{label}-{s}"))
        .email(format!("aws+{label}-{s}@example.com"))
        .send()
        .await
        .expect("CreateAccount")
        .create_account_status()
        .and_then(|s| s.account_id())
        .expect("account id")
        .to_string()
}
