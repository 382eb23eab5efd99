//! The coordinator's key ring through the command line: `keygen` adds a key
//! and keeps the previous ones, `retire-key` removes a key once no agent
//! seals to it, and refuses (naming why) a key the agent StackSet still
//! deploys, and the ring's last key.

use crate::common::*;
use keyfleet_protocol::KeyRing;

fn key_id_in(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("coordinator_key_id"))
        .and_then(|l| l.split('"').nth(1))
        .unwrap_or_else(|| panic!("no key id in {out}"))
        .to_string()
}

async fn ring(secret: &str) -> Vec<String> {
    let sm = aws_sdk_secretsmanager::Client::new(&emu().config());
    let value = sm
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .expect("GetSecretValue");
    KeyRing::parse(value.secret_string().expect("string"))
        .expect("a key ring")
        .ids()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_adds_to_the_ring_and_retire_key_removes_only_a_key_no_agent_uses() {
    let cli = deployment().await;
    let secret = "keyfleet-ring-e2e";
    let first = key_id_in(&cli.run(&["keygen", "--secret-id", secret]));
    let second = key_id_in(&cli.run(&["keygen", "--secret-id", secret]));
    assert_ne!(first, second);
    assert_eq!(ring(secret).await, vec![second.clone(), first.clone()]);

    // The key the deployed agents seal to is refused while the StackSet
    // names it, before the ring is touched.
    let deployed = aws_sdk_cloudformation::Client::new(&emu().config())
        .describe_stack_set()
        .stack_set_name("keyfleet-agent")
        .send()
        .await
        .expect("DescribeStackSet")
        .stack_set()
        .expect("stack set")
        .parameters()
        .iter()
        .find(|p| p.parameter_key() == Some("CoordinatorKeyId"))
        .and_then(|p| p.parameter_value().map(str::to_string))
        .expect("CoordinatorKeyId");
    let (_, err) = cli.fail(&["retire-key", &deployed, "--secret-id", secret]);
    assert!(err.contains("still deploys"), "{err}");
    assert_eq!(ring(secret).await, vec![second.clone(), first.clone()]);

    // No agent seals to the first key: it goes.
    let out = cli.run(&["retire-key", &first, "--secret-id", secret]);
    assert!(out.contains(&format!("retired {first}")), "{out}");
    assert_eq!(ring(secret).await, vec![second.clone()]);

    // The last key stays, and a key the ring does not hold is named.
    let (_, err) = cli.fail(&["retire-key", &second, "--secret-id", secret]);
    assert!(err.contains("only key"), "{err}");
    let (_, err) = cli.fail(&["retire-key", &first, "--secret-id", secret]);
    assert!(err.contains("holds no key"), "{err}");
    assert_eq!(ring(secret).await, vec![second]);
}
