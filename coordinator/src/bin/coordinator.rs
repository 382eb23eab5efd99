//! Lambda bootstrap for the coordinator: configuration, clients and the
//! private key are loaded once at init; each event goes to the library.

use aws_config::BehaviorVersion;
use keyfleet_coordinator::{lambda, Coordinator, CoordinatorClients};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_current_span(false)
        .without_time()
        .init();
    let config = keyfleet_coordinator::config::from_env()?;
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let org_sdk = match std::env::var("KEYFLEET_ORG_READER_ROLE_ARN") {
        Ok(role) if !role.is_empty() => {
            let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("keyfleet-coordinator")
                .configure(&sdk)
                .build()
                .await;
            sdk.to_builder()
                .credentials_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(provider),
                )
                .build()
        }
        _ => sdk.clone(),
    };
    let secret_arn = std::env::var("KEYFLEET_PRIVATE_KEY_SECRET_ARN")
        .map_err(|_| "environment variable KEYFLEET_PRIVATE_KEY_SECRET_ARN is not set")?;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let key_b64 = sm
        .get_secret_value()
        .secret_id(&secret_arn)
        .send()
        .await?
        .secret_string()
        .unwrap_or_default()
        .to_string();
    let key = keyfleet_protocol::PrivateKey::from_base64(&key_b64)?;
    let clients = CoordinatorClients {
        s3: aws_sdk_s3::Client::new(&sdk),
        sqs: aws_sdk_sqs::Client::new(&sdk),
        ses: aws_sdk_sesv2::Client::new(&sdk),
        sns: aws_sdk_sns::Client::new(&sdk),
        org: aws_sdk_organizations::Client::new(&org_sdk),
    };
    let coordinator = Coordinator::new(config, clients, key);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let c = coordinator.clone();
        async move { lambda::handle(&c, event.payload).await }
    }))
    .await
}
