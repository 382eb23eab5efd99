//! `keyfleet keygen` and `keyfleet retire-key`: the coordinator's key ring
//! (see `keyfleet_protocol::keyring` for the three steps of a rotation).
//!
//! `keygen` adds a new key pair at the front of the ring stored in Secrets
//! Manager (creating the secret on first use) and prints the public key and
//! id for the agents' StackSet; the previous keys stay, so results sealed to
//! them during the roll-out still open. `retire-key` removes one key.
//!
//! Retiring a key an agent still seals to would leave every key that agent
//! creates undeliverable, so `retire-key` first reads the agent StackSet
//! (`--stack-set`, default `keyfleet-agent`): it refuses while the StackSet's
//! `CoordinatorKeyId` parameter still names the key, or while any stack
//! instance is not `CURRENT` (the roll-out has not reached it). `--force`
//! skips that check, for organizations that deploy agents another way.

use crate::aws;
use crate::config::Config;
use anyhow::{anyhow, bail, Context, Result};
use keyfleet_protocol::aws_error::describe;
use keyfleet_protocol::{KeyRing, PrivateKey};

/// The StackSet name Terraform's agent module and `bootstrap` use.
pub const DEFAULT_STACK_SET: &str = "keyfleet-agent";

/// The stored ring, or `None` when the secret does not exist yet.
async fn read_ring(
    sm: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<Option<KeyRing>> {
    match sm.get_secret_value().secret_id(secret_id).send().await {
        Ok(s) => Ok(Some(
            KeyRing::parse(s.secret_string().unwrap_or_default())
                .with_context(|| format!("the key ring in {secret_id}"))?,
        )),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(anyhow!(
            "reading the key ring {secret_id}: {}",
            describe(&e)
        )),
    }
}

async fn write_ring(
    sm: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    ring: &KeyRing,
) -> Result<()> {
    sm.put_secret_value()
        .secret_id(secret_id)
        .secret_string(ring.to_text().expose())
        .send()
        .await
        .map_err(|e| anyhow!("storing the key ring in {secret_id}: {}", describe(&e)))?;
    Ok(())
}

/// `keygen`: a new key at the front of the ring.
pub async fn run(cfg: &Config, secret_id: &str) -> Result<()> {
    let sdk = aws::sdk_config(cfg).await;
    aws::require_credentials(&sdk).await?;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let key = PrivateKey::generate();
    let public = key.public_key();
    let ring = match read_ring(&sm, secret_id).await? {
        Some(mut ring) => {
            ring.add(key)?;
            write_ring(&sm, secret_id, &ring).await?;
            ring
        }
        None => {
            let ring = KeyRing::new(key);
            sm.create_secret()
                .name(secret_id)
                .secret_string(ring.to_text().expose())
                .send()
                .await
                .map_err(|e| anyhow!("storing the key ring in {secret_id}: {}", describe(&e)))?;
            ring
        }
    };
    println!("coordinator_public_key = \"{}\"", public.to_base64());
    println!("coordinator_key_id     = \"{}\"", public.key_id);
    eprintln!(
        "key ring {secret_id}: {} (newest first). Move the agents' StackSet to the new key, then `keyfleet retire-key` the previous one.",
        ring.ids().join(", ")
    );
    Ok(())
}

/// `retire-key`: removes `key_id` from the ring, after checking that no
/// agent seals to it (unless `force`).
pub async fn retire(
    cfg: &Config,
    secret_id: &str,
    key_id: &str,
    stack_set: &str,
    force: bool,
) -> Result<()> {
    let sdk = aws::sdk_config(cfg).await;
    aws::require_credentials(&sdk).await?;
    if !force {
        agents_moved_off(
            &aws_sdk_cloudformation::Client::new(&sdk),
            stack_set,
            key_id,
        )
        .await?;
    }
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let mut ring = read_ring(&sm, secret_id)
        .await?
        .ok_or_else(|| anyhow!("the key ring {secret_id} does not exist: make it with `keyfleet keygen --secret-id {secret_id}`, or check --secret-id"))?;
    ring.retire(key_id)?;
    write_ring(&sm, secret_id, &ring).await?;
    println!(
        "retired {key_id}; key ring {secret_id}: {}",
        ring.ids().join(", ")
    );
    Ok(())
}

/// Refuses while the agent StackSet still deploys `key_id`, or has an
/// instance the last update did not reach.
async fn agents_moved_off(
    cfn: &aws_sdk_cloudformation::Client,
    stack_set: &str,
    key_id: &str,
) -> Result<()> {
    use aws_sdk_cloudformation::types::StackInstanceStatus;
    let described = cfn
        .describe_stack_set()
        .stack_set_name(stack_set)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "reading the agent StackSet {stack_set} (to check no agent still seals to {key_id}; --force skips the check): {}",
                describe(&e)
            )
        })?;
    let deployed = described
        .stack_set()
        .map(|s| s.parameters())
        .unwrap_or_default()
        .iter()
        .find(|p| p.parameter_key() == Some("CoordinatorKeyId"))
        .and_then(|p| p.parameter_value());
    if deployed == Some(key_id) {
        bail!(
            "the agent StackSet {stack_set} still deploys {key_id}: move it to the new key first (CoordinatorPublicKey/CoordinatorKeyId), then retire"
        );
    }
    let mut pages = cfn
        .list_stack_instances()
        .stack_set_name(stack_set)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| anyhow!("listing the instances of {stack_set}: {}", describe(&e)))?;
        for i in page.summaries() {
            if i.status() != Some(&StackInstanceStatus::Current) {
                bail!(
                    "stack instance {} in {} of {stack_set} is {}: its agent may still seal to {key_id}; retire once every instance is CURRENT",
                    i.account().unwrap_or("?"),
                    i.region().unwrap_or("?"),
                    i.status().map(|s| s.as_str()).unwrap_or("unknown")
                );
            }
        }
    }
    Ok(())
}
