//! `keyfleet credential-process` through the deployed system: a program
//! whose `~/.aws/config` profile names it keeps working through rotation,
//! deactivation and deletion of its key with nobody touching it.
//!
//! The deployment delivers by Secrets Manager, so it is one of its own, on
//! an emulator of its own (the shared one delivers by email). IAM
//! enforcement is on: the emulator refuses an inactive or deleted key as
//! AWS does, and decides the IAM user's own calls with the policy engine,
//! so the user reads its own delivery secret (the secret's `OwnerReads`)
//! and nothing else.

use crate::common::*;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::ProvideCredentials;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use keyfleet_testkit::seed::{self, user};
use keyfleet_testkit::Emulator;
use std::path::Path;

/// A program started with the profile `app` of `config_file`: a fresh SDK
/// configuration (as a new process has), credentials from the profile
/// alone. Returns the key it got and whom STS says it is.
async fn program(emu: &Emulator, config_file: &Path) -> Result<(String, String), String> {
    let files = EnvConfigFiles::builder()
        .with_file(EnvConfigFileKind::Config, config_file)
        .build();
    let provider = ProfileFileCredentialsProvider::builder()
        .profile_files(files)
        .profile_name("app")
        .build();
    let key = provider
        .provide_credentials()
        .await
        .map_err(|e| {
            format!(
                "credentials: {}",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            )
        })?
        .access_key_id()
        .to_string();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(emu.endpoint())
        .credentials_provider(provider)
        .load()
        .await;
    let who = aws_sdk_sts::Client::new(&sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| {
            format!(
                "GetCallerIdentity: {}",
                aws_sdk_sts::error::DisplayErrorContext(&e)
            )
        })?;
    Ok((key, who.arn().unwrap_or_default().to_string()))
}

/// Secrets Manager as the IAM user, with one key.
async fn sm_as(emu: &Emulator, id: &str, secret: &str) -> aws_sdk_secretsmanager::Client {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(emu.endpoint())
        .credentials_provider(aws_credential_types::Credentials::new(
            id, secret, None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_secretsmanager::Client::new(&sdk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_using_credential_process_follows_rotation_deactivation_and_deletion() {
    let emu = Emulator::start().expect("an emulator of its own");
    let management = organization_on(&emu).await;
    let cli = deploy(
        &emu,
        &management,
        "[policy]\ndelivery = \"secrets-manager\"\n",
    )
    .await;
    let account = create_account_on(&emu, "cred-process").await;
    let iam = iam_on(&emu, &account).await;
    let (name, other) = ("app-user", "other-user");
    seed::populate(
        &emu,
        &iam,
        &account,
        &[user(name, vec![]), user(other, vec![])],
    )
    .await
    .expect("seed");
    // Day 0: each user's key, its secret known to the test (the user has
    // it); 85 days later the rotation is due.
    let mut secrets = std::collections::HashMap::new();
    for u in [name, other] {
        let k = iam
            .create_access_key()
            .user_name(u)
            .send()
            .await
            .expect("CreateAccessKey");
        let k = k.access_key().expect("key");
        secrets.insert(
            u,
            (
                k.access_key_id().to_string(),
                k.secret_access_key().to_string(),
            ),
        );
    }
    emu.advance_clock(85.0, Some(&account)).expect("clock");
    let (old, old_secret) = secrets[name].clone();
    // The other user's key is in use too: its rotation is due as well.
    let (other_old, other_secret) = secrets[other].clone();
    emu.mark_key_used(&account, &other_old, None, "s3", "us-east-1")
        .expect("key used");

    // The user stores its current key once.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("keys").join(format!("{name}.json"));
    let process = |extra: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_keyfleet"));
        c.args([
            "--endpoint-url",
            emu.endpoint(),
            "credential-process",
            "--user",
            name,
        ])
        .args(["--region", "us-east-1", "--store"])
        .arg(&store)
        .args(extra)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE");
        c
    };
    let init = process(&["--init"])
        .env("AWS_ACCESS_KEY_ID", &old)
        .env("AWS_SECRET_ACCESS_KEY", &old_secret)
        .output()
        .expect("credential-process --init");
    let init_err = String::from_utf8_lossy(&init.stderr).to_string();
    assert!(init.status.success(), "{init_err}");
    assert!(init_err.contains(&format!("stored {old}")), "{init_err}");
    let stored_at_first = std::fs::read(&store).expect("store");

    // The program's profile, as the README gives it.
    let config_file = dir.path().join("config");
    std::fs::write(
        &config_file,
        format!(
            "[profile app]\ncredential_process = {} --endpoint-url {} credential-process --user {name} --region us-east-1 --store {}\n",
            env!("CARGO_BIN_EXE_keyfleet"),
            emu.endpoint(),
            store.display()
        ),
    )
    .expect("write config");
    let user_arn = format!("arn:aws:iam::{account}:user/{name}");
    let works = |label: &'static str| {
        let emu = &emu;
        let config_file = &config_file;
        let user_arn = &user_arn;
        async move {
            let (key, arn) = program(emu, config_file)
                .await
                .unwrap_or_else(|e| panic!("{label}: the program failed: {e}"));
            assert_eq!(&arn, user_arn, "{label}");
            key
        }
    };
    assert_eq!(
        works("before any rotation").await,
        old,
        "nothing delivered yet: the stored key"
    );
    // Some hours pass before the run. (CloudTrail dates events to the
    // second: a use of the old key in the second its replacement is created
    // may be either side of it, and keeps the key in use.)
    emu.advance_clock(0.25, Some(&account)).expect("clock");

    let run = |label: &'static str| {
        let out = cli.run(&["run", "--accounts", &account]);
        let report = cli.report(&run_id_in(&out));
        assert_eq!(report["accounts"][0]["state"], "ok", "{label}: {report}");
        report
    };
    let keys = |iam: &aws_sdk_iam::Client| {
        let iam = iam.clone();
        async move { seed::keys(&iam, name).await.expect("keys") }
    };

    // Day 85: rotated; the new key is in the user's secret and the program
    // takes it at its next start.
    run("day 85");
    let now = keys(&iam).await;
    assert_eq!(now.len(), 2, "{now:?}");
    let new = now
        .iter()
        .find(|(id, _)| *id != old)
        .expect("new key")
        .0
        .clone();
    assert_eq!(works("after the rotation").await, new);

    // The user reads its own secret and nothing else: not another user's
    // secret, and it cannot write its own.
    let new_secret = {
        let stored: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&store).expect("store")).expect("JSON");
        assert_eq!(
            stored["current"]["AccessKeyId"],
            new.as_str(),
            "{}",
            stored["previous"]
        );
        assert_eq!(stored["previous"]["AccessKeyId"], old.as_str());
        stored["current"]["SecretAccessKey"]
            .as_str()
            .expect("secret")
            .to_string()
    };
    let sm = sm_as(&emu, &new, &new_secret).await;
    let own = sm
        .get_secret_value()
        .secret_id(format!("keyfleet/{name}"))
        .send()
        .await
        .expect("the user reads its own delivery secret");
    assert!(own.secret_string().is_some_and(|s| s.contains(&new)));
    let theirs = sm
        .get_secret_value()
        .secret_id(format!("keyfleet/{other}"))
        .send()
        .await
        .expect_err("another user's secret is not readable");
    assert_eq!(theirs.code(), Some("AccessDeniedException"), "{theirs:?}");
    let write = sm
        .put_secret_value()
        .secret_id(format!("keyfleet/{name}"))
        .secret_string("{}")
        .send()
        .await
        .expect_err("the user does not write its own secret");
    assert_eq!(write.code(), Some("AccessDeniedException"), "{write:?}");

    // The other user's old key: a machine elsewhere (198.51.100.7) calls
    // with it after its replacement was created; then a program fetches
    // the new key with it and uses the new one. IAM's last use of the old
    // key is that fetch, as for app-user, but someone else holds the key.
    emu.record_cloudtrail_event(serde_json::json!({
        "access_key_id": other_old, "event_name": "ListBuckets", "service": "s3",
        "region": "us-east-1", "source_ip": "198.51.100.7", "user_agent": "cron/1.0",
    }))
    .expect("event");
    let fetched = sm_as(&emu, &other_old, &other_secret)
        .await
        .get_secret_value()
        .secret_id(format!("keyfleet/{other}"))
        .send()
        .await
        .expect("the other user reads its own secret");
    let delivered: serde_json::Value =
        serde_json::from_str(fetched.secret_string().expect("value")).expect("JSON");
    let other_new = delivered["AccessKeyId"]
        .as_str()
        .expect("key id")
        .to_string();
    sm_as(
        &emu,
        &other_new,
        delivered["SecretAccessKey"].as_str().expect("secret"),
    )
    .await
    .get_secret_value()
    .secret_id(format!("keyfleet/{other}"))
    .send()
    .await
    .expect("the new key is used");

    // Day 86: the old key's last use was the program fetching the new key
    // (IAM shows it used after its replacement was created, CloudTrail that
    // it was only that read): the owner has switched, so the old key is
    // deactivated at this run, before its date. AWS now refuses it; the
    // program does not notice.
    emu.advance_clock(1.0, Some(&account)).expect("clock");
    let day86 = run("day 86");
    let looked_up = emu
        .iam_decisions()
        .expect("decisions")
        .into_iter()
        .any(|d| {
            d.role == "keyfleet-agent"
                && d.action == "cloudtrail:LookupEvents"
                && d.decision == "ALLOWED"
        });
    assert!(
        looked_up,
        "the agent read the key's events, as its role allows"
    );
    let events: Vec<serde_json::Value> = emu
        .cloudtrail_events(&account)
        .expect("events")
        .into_iter()
        .filter(|e| e.to_string().contains(&old))
        .collect();
    assert_eq!(
        keys(&iam).await,
        vec![(old.clone(), false), (new.clone(), true)],
        "{}\n{events:#?}",
        day86["accounts"][0]["users"]
    );
    assert_eq!(
        seed::keys(&iam, other).await.expect("keys"),
        vec![(other_old.clone(), true), (other_new.clone(), true)],
        "someone else holds {other}'s old key: it stays active"
    );
    let refused = sm_as(&emu, &old, &old_secret)
        .await
        .get_secret_value()
        .secret_id(format!("keyfleet/{name}"))
        .send()
        .await
        .expect_err("an inactive key is refused");
    assert_eq!(
        refused.code(),
        Some("UnrecognizedClientException"),
        "{refused:?}"
    );
    assert_eq!(works("after the deactivation").await, new);

    // Day 110: the old key is deleted; still nothing to do.
    emu.advance_clock(24.0, Some(&account)).expect("clock");
    run("day 110");
    assert_eq!(keys(&iam).await, vec![(new.clone(), true)]);
    assert_eq!(works("after the deletion").await, new);

    // A machine that slept through all of it (its file still holds only the
    // deleted key) is told what to do, and shown no secret.
    std::fs::write(&store, &stored_at_first).expect("an old store");
    let stale = process(&[]).output().expect("credential-process");
    let stderr = String::from_utf8_lossy(&stale.stderr).to_string();
    assert!(!stale.status.success(), "{stderr}");
    assert!(stale.stdout.is_empty(), "nothing for the SDK to take");
    assert!(stderr.contains("AWS refused the stored key"), "{stderr}");
    assert!(stderr.contains("--init"), "{stderr}");
    for secret in [&old_secret, &new_secret] {
        assert!(!stderr.contains(secret.as_str()) && !init_err.contains(secret.as_str()));
    }
}
