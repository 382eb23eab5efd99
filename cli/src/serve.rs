//! `keyfleet serve`: the security team's REST API and dashboard
//! (`keyfleet_api`) on a local port, against any endpoint, with the report
//! bucket and the coordinator function of `[coordinator]` and the keys of
//! `[api]`. The same router the API Lambda runs; only the transport
//! differs (plain HTTP on the listen address: keep it on loopback, or put a
//! TLS proxy in front, which then sends `X-Forwarded-Proto: https` so the
//! session cookie is `Secure`).
//!
//! With `--role-arn` (or `[api] role_arn`) every call is made under that
//! role, as the Lambda makes them under its own: the emulator's IAM
//! enforcement then holds the API to its role's policy. The credentials
//! are refreshed before they expire.
//!
//! **How it authenticates: API keys only**, in `Authorization: Bearer
//! <key>` (or the dashboard's login form), on `/v1`, `/keys/v1` and the
//! browser's routes alike. There is no API Gateway in front to check a
//! SigV4 signature, so serve trusts no IAM principal: the keys secret's
//! `principals` are not read, and a principal exists only as a request
//! extension the API's Lambda builds from API Gateway's request context,
//! never from anything a client sends (see `keyfleet_api::auth`).
//!
//! `keyfleet api-key new` makes a key: the key is printed once, and the
//! entry to configure holds only its hash.

use crate::aws;
use crate::config::Config;
use anyhow::{bail, Context, Result};
use aws_config::SdkConfig;
use keyfleet_api::keys::{self, Scope};
use keyfleet_api::{ApiConfig, AppState, Backend, RateLimit, SecureCookies};
use keyfleet_protocol::invoke::LambdaCoordinator;
use keyfleet_reports::store::RunStore;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// The SDK configuration, under `role` when one is given.
async fn sdk_as(cfg: &Config, role: Option<&str>) -> SdkConfig {
    let sdk = aws::sdk_config(cfg).await;
    let Some(role) = role else {
        return sdk;
    };
    let provider = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name("keyfleet-serve")
        .configure(&sdk)
        .build()
        .await;
    sdk.to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .build()
}

/// The keys of `[api]`, and those of `[api] keys_secret`.
async fn api_keys(cfg: &Config, sdk: &SdkConfig) -> Result<Vec<keyfleet_api::ApiKeyEntry>> {
    let mut entries = cfg.api.keys.clone();
    if let Some(secret) = &cfg.api.keys_secret {
        entries.extend(keys::read_keys_secret(sdk, secret).await?.keys);
    }
    Ok(entries)
}

pub async fn run(
    cfg: &Config,
    path: &Path,
    listen: SocketAddr,
    role_arn: Option<String>,
) -> Result<()> {
    let role = role_arn.or_else(|| cfg.api.role_arn.clone());
    let sdk = sdk_as(cfg, role.as_deref()).await;
    aws::require_credentials(&sdk).await?;
    let keys = api_keys(cfg, &sdk).await?;
    if keys.is_empty() {
        bail!(
            "{}: no API key is configured, so every request would be refused: make one with \
             `keyfleet api-key new --id <who> --scopes read,rotate` and add the entry it prints \
             under [api]",
            path.display()
        );
    }
    let state = AppState::new(
        ApiConfig {
            keys,
            // Keys only: no gateway verifies a signature here (module doc).
            principals: Vec::new(),
            cors_origins: cfg.api.cors_origins.clone(),
            rate_limit: RateLimit {
                per_minute: cfg.api.rate_limit_per_minute,
                burst: cfg.api.rate_limit_burst,
            },
            secure_cookies: SecureCookies::WhenHttps,
            session_key: None,
        },
        Backend {
            store: RunStore::new(
                aws::s3_client(cfg, &sdk),
                cfg.coordinator.report_bucket.clone(),
            ),
            coordinator: Arc::new(LambdaCoordinator::new(
                &sdk,
                cfg.coordinator.function.clone(),
            )),
        },
    )
    .with_context(|| format!("{}: [api]", path.display()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let local = listener.local_addr().context("the listening address")?;
    // What scripts and tests wait for: one line, once bound.
    println!("listening on http://{local}");
    std::io::stdout().flush().ok();
    tracing::info!(
        address = %local,
        bucket = %cfg.coordinator.report_bucket,
        coordinator = %cfg.coordinator.function,
        role = role.as_deref().unwrap_or("-"),
        keys = state.keys().len(),
        "serving the API"
    );
    keyfleet_api::serve(listener, keyfleet_api::router(state))
        .await
        .context("serving the API")
}

/// `keyfleet api-key new`: prints the key once, and the entry to configure.
pub fn new_key(id: &str, scopes: &str) -> Result<()> {
    let scopes = keys::parse_scopes(scopes)?;
    if !keyfleet_protocol::is_key_ring_id(id) {
        bail!("--id `{id}` must be 1-64 of letters, digits, `.`, `_` and `-`");
    }
    let (key, entry) = keys::generate(id, &scopes);
    let scope_list = entry
        .scopes
        .iter()
        .map(|s| format!("\"{}\"", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let json = serde_json::to_string(&entry).expect("an entry serializes");
    println!(
        "API key for `{id}` ({}); shown once, keyfleet keeps only its hash:",
        scope_names(&entry.scopes)
    );
    println!();
    println!("  {key}");
    println!();
    println!("Send it as `Authorization: Bearer <key>`: to /v1/... of `keyfleet serve`, to");
    println!("/keys/v1/... of the deployed API (its /v1 takes SigV4 only), or in the dashboard's");
    println!("login form. Never register it as an API Gateway API key.");
    println!();
    println!("For `keyfleet serve`, add to keyfleet.toml:");
    println!();
    println!("[[api.keys]]");
    println!("id = \"{}\"", entry.id);
    println!("sha256 = \"{}\"", entry.sha256);
    println!("scopes = [{scope_list}]");
    println!();
    println!("For the deployed API, add this entry to the JSON list in its API keys secret:");
    println!();
    println!("{json}");
    Ok(())
}

fn scope_names(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
