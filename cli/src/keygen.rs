//! `keyfleet keygen`: a new coordinator key pair. The private key goes into
//! Secrets Manager; the public key and its id are printed for the agents'
//! StackSet parameters.

use crate::aws;
use crate::config::Config;
use anyhow::{Context, Result};

pub async fn run(cfg: &Config, secret_id: &str) -> Result<()> {
    let sdk = aws::sdk_config(cfg).await;
    aws::require_credentials(&sdk).await?;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let key = keyfleet_protocol::PrivateKey::generate();
    let put = sm
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string(key.to_base64().expose())
        .send()
        .await;
    if put.is_err() {
        sm.create_secret()
            .name(secret_id)
            .secret_string(key.to_base64().expose())
            .send()
            .await
            .with_context(|| format!("storing the private key in {secret_id}"))?;
    }
    let public = key.public_key();
    println!("coordinator_public_key = \"{}\"", public.to_base64());
    println!("coordinator_key_id     = \"{}\"", public.key_id);
    Ok(())
}
