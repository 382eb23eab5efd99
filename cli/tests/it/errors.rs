//! Errors a person can act on: every operator command, failing for each of
//! the causes an operator meets on day one (no credentials, expired
//! credentials, an unreachable endpoint, access denied, a missing resource,
//! throttling), prints at most two lines: what failed, with AWS's error
//! code or "could not reach", then what to do. No `Debug` dump of an SDK
//! error, no backtrace though `RUST_BACKTRACE=1` is set, no SDK warnings.

use crate::common::*;
use std::process::Command;

/// How a cell's command is made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    NoCredentials,
    Expired,
    Unreachable,
    Denied,
    Missing,
    Throttled,
}

const CAUSES: [Cause; 6] = [
    Cause::NoCredentials,
    Cause::Expired,
    Cause::Unreachable,
    Cause::Denied,
    Cause::Missing,
    Cause::Throttled,
];

/// The words of line 1 that name the cause, and of line 2 that say what
/// to do.
fn expected(cause: Cause) -> (&'static [&'static str], &'static str) {
    match cause {
        Cause::NoCredentials => (
            &["no AWS credentials found"],
            "run `aws sso login`; against an emulator",
        ),
        Cause::Expired => (&["ExpiredToken"], "have expired"),
        Cause::Unreachable => (
            &["could not reach the endpoint"],
            "check the network and the endpoint: http://127.0.0.1:9",
        ),
        Cause::Denied => (&["AccessDenied"], "Deploy to AWS"),
        Cause::Missing => (
            &[
                "does not exist",
                "NoSuchBucket",
                "ResourceNotFoundException",
            ],
            "against the deployment (`terraform output`)",
        ),
        Cause::Throttled => (
            &[
                "TooManyRequestsException",
                "SlowDown",
                "ThrottlingException",
            ],
            "throttling",
        ),
    }
}

/// The commands, with the names they act on (`{s}`: this test's suffix).
fn commands(account: &str) -> Vec<(&'static str, Vec<String>)> {
    let v = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    vec![
        ("run", v(&["run"])),
        ("plan", v(&["plan"])),
        (
            "rotate",
            v(&["rotate", "--account", account, "--user", "nobody"]),
        ),
        (
            "reactivate",
            v(&[
                "reactivate",
                "--account",
                account,
                "--user",
                "nobody",
                "--key",
                "AKIAIOSFODNN7EXAMPLE",
            ]),
        ),
        ("report", v(&["report"])),
        ("keygen", v(&["keygen", "--secret-id", "{secret}"])),
        (
            "retire-key",
            v(&[
                "retire-key",
                "kf-0000000000000000",
                "--secret-id",
                "{secret}",
            ]),
        ),
    ]
}

/// What a cell runs against.
struct Setting {
    endpoint: Option<String>,
    env: Vec<(String, String)>,
    secret: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_fails_in_two_lines_that_say_what_and_what_to_do() {
    let cli = deployment().await;
    let emu = emu();
    let _faults = faults_lock().await;
    let s = format!("{:08x}", rand_suffix());
    let admin = emu.config();
    // Who is denied: an IAM user of the deployment's account without a
    // policy (the emulator's policy engine decides users' calls).
    let iam = aws_sdk_iam::Client::new(&admin);
    let user = format!("keyfleet-errors-{s}");
    iam.create_user()
        .user_name(&user)
        .send()
        .await
        .expect("CreateUser");
    let key = iam
        .create_access_key()
        .user_name(&user)
        .send()
        .await
        .expect("CreateAccessKey")
        .access_key
        .expect("a key");
    // Whose credentials expire: a session of a role that may do anything.
    let role = format!("keyfleet-errors-{s}");
    let account = aws_sdk_sts::Client::new(&admin)
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity")
        .account
        .expect("account");
    iam.create_role()
        .role_name(&role)
        .assume_role_policy_document(format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{account}:root"}},"Action":"sts:AssumeRole"}}]}}"#
        ))
        .send()
        .await
        .expect("CreateRole");
    iam.put_role_policy()
        .role_name(&role)
        .policy_name("all")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
        .send()
        .await
        .expect("PutRolePolicy");
    let session = aws_sdk_sts::Client::new(&admin)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/{role}"))
        .role_session_name("expiring")
        .send()
        .await
        .expect("AssumeRole")
        .credentials
        .expect("credentials");
    emu.expire_session(session.access_key_id())
        .expect("the session's time runs out");
    // Throttled: every call naming this test's own function, bucket and
    // secret (nobody else's calls are touched).
    let function = format!("keyfleet-throttled-{s}");
    let bucket = format!("keyfleet-throttled-{s}");
    let secret = format!("keyfleet-throttled/{s}");
    let throttle = |service: &str, key: &str, value: &str| serde_json::json!({"service": service, "kind": "throttle", "match": {key: value}});
    emu.set_faults(serde_json::json!({"seed": 1, "rules": [
        throttle("lambda", "FunctionName", &function),
        throttle("s3", "Bucket", &bucket),
        throttle("secretsmanager", "SecretId", &secret),
    ]}))
    .expect("set faults");

    let member = create_account("cli-errors").await;
    let mut failures = Vec::new();
    for cause in CAUSES {
        let kit = |k: &str, v: &str| (k.to_string(), v.to_string());
        let admin_keys = vec![
            kit("AWS_ACCESS_KEY_ID", "testing"),
            kit("AWS_SECRET_ACCESS_KEY", "testing"),
        ];
        let setting = match cause {
            Cause::NoCredentials => Setting {
                endpoint: None,
                env: Vec::new(),
                secret: format!("keyfleet-errors/{s}"),
            },
            Cause::Expired => Setting {
                endpoint: Some(cli.endpoint.clone()),
                env: vec![
                    kit("AWS_ACCESS_KEY_ID", session.access_key_id()),
                    kit("AWS_SECRET_ACCESS_KEY", session.secret_access_key()),
                    kit("AWS_SESSION_TOKEN", session.session_token()),
                ],
                secret: format!("keyfleet-errors/{s}"),
            },
            Cause::Unreachable => Setting {
                endpoint: Some("http://127.0.0.1:9".into()),
                env: admin_keys.clone(),
                secret: format!("keyfleet-errors/{s}"),
            },
            Cause::Denied => Setting {
                endpoint: Some(cli.endpoint.clone()),
                env: vec![
                    kit("AWS_ACCESS_KEY_ID", key.access_key_id()),
                    kit("AWS_SECRET_ACCESS_KEY", key.secret_access_key()),
                ],
                secret: format!("keyfleet-errors/{s}"),
            },
            Cause::Missing => Setting {
                endpoint: Some(cli.endpoint.clone()),
                env: [
                    admin_keys.clone(),
                    vec![
                        kit(
                            "KEYFLEET_COORDINATOR_FUNCTION",
                            &format!("keyfleet-missing-{s}"),
                        ),
                        kit(
                            "KEYFLEET_COORDINATOR_REPORT_BUCKET",
                            &format!("keyfleet-missing-{s}"),
                        ),
                    ],
                ]
                .concat(),
                secret: format!("keyfleet-missing/{s}"),
            },
            Cause::Throttled => Setting {
                endpoint: Some(cli.endpoint.clone()),
                env: [
                    admin_keys.clone(),
                    vec![
                        kit("KEYFLEET_COORDINATOR_FUNCTION", &function),
                        kit("KEYFLEET_COORDINATOR_REPORT_BUCKET", &bucket),
                    ],
                ]
                .concat(),
                secret: secret.clone(),
            },
        };
        for (name, args) in commands(&member) {
            // `keygen` creates the key ring when it is missing: nothing
            // fails (its missing secret is `retire-key`'s cell).
            if cause == Cause::Missing && name == "keygen" {
                continue;
            }
            let args: Vec<String> = args
                .iter()
                .map(|a| a.replace("{secret}", &setting.secret))
                .collect();
            let home = tempfile::tempdir().expect("temp dir");
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyfleet"));
            cmd.env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", home.path())
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("RUST_BACKTRACE", "1")
                .arg("--config")
                .arg(&cli.config);
            if let Some(url) = &setting.endpoint {
                cmd.args(["--endpoint-url", url]);
            }
            for (k, v) in &setting.env {
                cmd.env(k, v);
            }
            let out = cmd.args(&args).output().expect("keyfleet runs");
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            let (names, todo) = expected(cause);
            let problems: Vec<&str> = [
                (out.status.success(), "it succeeded"),
                (lines.is_empty() || lines.len() > 2, "not one or two lines"),
                (
                    !lines.first().is_some_and(|l| l.starts_with("keyfleet: ")),
                    "line 1 is not `keyfleet: ...`",
                ),
                (
                    !lines
                        .first()
                        .is_some_and(|l| names.iter().any(|n| l.contains(n))),
                    "line 1 does not name the cause",
                ),
                (
                    !lines.get(1).is_some_and(|l| l.contains(todo)),
                    "line 2 does not say what to do",
                ),
                (
                    [
                        "Stack backtrace",
                        "Caused by",
                        "DispatchFailure(",
                        "ProviderError(",
                        "Error {",
                        " WARN ",
                    ]
                    .iter()
                    .any(|d| stderr.contains(d)),
                    "a Debug dump, a backtrace or a warning",
                ),
            ]
            .into_iter()
            .filter_map(|(bad, why)| bad.then_some(why))
            .collect();
            if !problems.is_empty() {
                failures.push(format!("{name} / {cause:?}: {problems:?}\n{stderr}"));
            }
        }
    }
    emu.clear_faults().expect("clear faults");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A suffix of this test's own names.
fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(7)
}
