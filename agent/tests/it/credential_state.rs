//! Compliance evidence from the credential report: the agent carries each
//! user's `mfa_active` and `password_enabled` into its result, read from the
//! report it already fetches (no extra IAM call).

use crate::fixture::*;
use keyfleet_protocol::{Policy, ScanMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_and_console_password_reach_the_result() {
    let mut acct = new_account().await;
    acct.populate(&[
        user("person", vec![key(10, true, Some(1))]),
        user("workload", vec![key(10, true, Some(1))]),
    ])
    .await;
    acct.iam
        .create_login_profile()
        .user_name("person")
        .password("Secr3t-Passw0rd!")
        .send()
        .await
        .unwrap();
    let dev = acct
        .iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name("workload-mfa")
        .send()
        .await
        .unwrap();
    let serial = dev
        .virtual_mfa_device()
        .unwrap()
        .serial_number()
        .to_string();
    acct.iam
        .enable_mfa_device()
        .user_name("workload")
        .serial_number(serial)
        .authentication_code1("123456")
        .authentication_code2("654321")
        .send()
        .await
        .unwrap();
    let mut job = acct.job(Policy::default());
    job.dry_run = true;
    let result = deliver(&acct.agent, &job).await.expect("agent run");
    assert_eq!(result.scan_mode, ScanMode::CredentialReport);
    let by = |n: &str| result.users.iter().find(|u| u.user_name == n).unwrap();
    assert_eq!(
        (by("person").mfa_active, by("person").password_enabled),
        (Some(false), Some(true)),
        "a person: console password, no MFA"
    );
    assert_eq!(
        (by("workload").mfa_active, by("workload").password_enabled),
        (Some(true), Some(false))
    );
}
