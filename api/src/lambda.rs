//! The API's Lambda process behind API Gateway: configuration and clients
//! are built once at init, then every event goes through the router
//! ([`crate::router`]) by `lambda_http`'s request conversion.
//!
//! Environment:
//!
//! - `KEYFLEET_REPORT_BUCKET`: the report bucket (read only);
//! - `KEYFLEET_COORDINATOR_FUNCTION`: the coordinator Lambda (name or ARN);
//! - `KEYFLEET_API_KEYS_SECRET`: the Secrets Manager secret saying who may
//!   call: IAM principals and API keys' entries with their scopes (JSON, see
//!   [`crate::keys::parse_keys_document`]);
//! - `KEYFLEET_CORS_ORIGINS`: comma-separated allowed origins (optional);
//! - `KEYFLEET_RATE_LIMIT_PER_MINUTE`, `KEYFLEET_RATE_LIMIT_BURST`
//!   (optional; defaults in [`crate::RateLimit`]). The stage's throttling
//!   limits all callers together in front of this.
//!
//! A REST API's events carry the stage in the path (`/prod/v1/runs`):
//! [`strip_stage`] routes on the path without it and hands the stage to the
//! pages as their [`BasePath`], so the dashboard's links keep it.
//!
//! **The caller's IAM principal.** `/v1` is an `AWS_IAM` method at the
//! gateway: API Gateway checks the SigV4 signature and writes the signer's
//! ARN into the event's request context (`requestContext.identity.userArn`,
//! an assumed-role session's ARN for a role). [`sigv4_principal`] copies
//! that, and only that, into a [`SigV4Principal`] request extension, which
//! the routes' guard maps to scopes ([`crate::auth`]). The request
//! context is written by API Gateway, not by the client: on a method with
//! authorization `NONE` (the dashboard, `/keys/v1`) `userArn` is null, so
//! no header or body can make a principal. Whoever may invoke the function
//! directly (`lambda:InvokeFunction` on `keyfleet-api`) can write any event
//! and so any principal; only API Gateway's own resource-based permission
//! and the account's administrators hold that.
//!
//! Logs are JSON; as in the coordinator, the runtime's own event logging
//! stays at `info` whatever `RUST_LOG` says, because at `trace` it logs
//! each raw event, and an API event carries the caller's `Authorization`
//! header (a Bearer key on `/keys/v1` and the browser's routes).

use crate::auth::SigV4Principal;
use crate::invoke::LambdaCoordinator;
use crate::keys::read_keys_secret;
use crate::routes::BasePath;
use crate::{ApiConfig, AppState, Backend, RateLimit, SecureCookies};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use keyfleet_reports::store::RunStore;
use lambda_http::request::RequestContext;
use std::sync::Arc;

fn env(name: &str) -> Result<String, String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("environment variable {name} is not set"))
}

fn env_u32(name: &str, default: u32) -> Result<u32, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{name} must be a whole number from 1")),
        _ => Ok(default),
    }
}

/// Moves API Gateway's stage from the path to a [`BasePath`].
pub async fn strip_stage(mut req: Request, next: Next) -> Response {
    let stage = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV1(c)) => c.stage.clone(),
        Some(RequestContext::ApiGatewayV2(c)) => c.stage.clone(),
        _ => None,
    };
    if let Some(stage) = stage.filter(|s| !s.is_empty() && s != "$default") {
        let prefix = format!("/{stage}");
        let path = req.uri().path();
        let rest = match path.strip_prefix(&prefix) {
            Some("") => Some("/".to_string()),
            Some(r) if r.starts_with('/') => Some(r.to_string()),
            _ => None,
        };
        if let Some(rest) = rest {
            let pq = match req.uri().query() {
                Some(q) => format!("{rest}?{q}"),
                None => rest,
            };
            let mut parts = req.uri().clone().into_parts();
            if let Ok(p) = pq.parse() {
                parts.path_and_query = Some(p);
                if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                    req.extensions_mut().insert(BasePath(prefix));
                }
            }
        }
    }
    next.run(req).await
}

/// The signer of a request API Gateway authorized with `AWS_IAM` (see the
/// module doc): its REST API request context's `identity.userArn`.
pub fn principal_of(ctx: &RequestContext) -> Option<SigV4Principal> {
    match ctx {
        RequestContext::ApiGatewayV1(c) => c
            .identity
            .user_arn
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| SigV4Principal(a.to_string())),
        // Only the REST API is deployed; another event source carries no
        // principal this API trusts.
        _ => None,
    }
}

/// Puts the request's [`SigV4Principal`], if API Gateway verified one,
/// into its extensions; removes any other first.
pub async fn sigv4_principal(mut req: Request, next: Next) -> Response {
    let principal = req
        .extensions()
        .get::<RequestContext>()
        .and_then(principal_of);
    req.extensions_mut().remove::<SigV4Principal>();
    if let Some(p) = principal {
        req.extensions_mut().insert(p);
    }
    next.run(req).await
}

/// The router as the Lambda serves it: [`crate::router`] behind
/// [`strip_stage`] and [`sigv4_principal`].
pub fn app(state: AppState) -> axum::Router {
    // Outside the router, so that it routes the path without the stage.
    axum::Router::new()
        .fallback_service(crate::router(state))
        .layer(axum::middleware::from_fn(sigv4_principal))
        .layer(axum::middleware::from_fn(strip_stage))
}

/// The API's Lambda process.
pub async fn run() -> Result<(), lambda_http::Error> {
    use aws_config::BehaviorVersion;
    keyfleet_lambda::logs::init_json_logs();
    let bucket = env("KEYFLEET_REPORT_BUCKET")?;
    let function = env("KEYFLEET_COORDINATOR_FUNCTION")?;
    let secret = env("KEYFLEET_API_KEYS_SECRET")?;
    let cors_origins: Vec<String> = std::env::var("KEYFLEET_CORS_ORIGINS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let defaults = RateLimit::default();
    let rate_limit = RateLimit {
        per_minute: env_u32("KEYFLEET_RATE_LIMIT_PER_MINUTE", defaults.per_minute)?,
        burst: env_u32("KEYFLEET_RATE_LIMIT_BURST", defaults.burst)?,
    };
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let doc = read_keys_secret(&sdk, &secret).await.map_err(|e| {
        use std::error::Error;
        match e.source() {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        }
    })?;
    // Against an emulator (AWS_ENDPOINT_URL set) S3 is addressed path-style.
    let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some();
    let s3 = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(path_style)
        .build();
    let state = AppState::new(
        ApiConfig {
            keys: doc.keys,
            principals: doc.principals,
            cors_origins,
            rate_limit,
            secure_cookies: SecureCookies::Always,
            session_key: doc.session_key,
        },
        Backend {
            store: RunStore::new(aws_sdk_s3::Client::from_conf(s3), bucket),
            coordinator: Arc::new(LambdaCoordinator::new(&sdk, function)),
        },
    )?;
    if state.keys().is_empty() && state.principals().is_empty() {
        tracing::warn!(secret = %secret, "no API key and no IAM principal is configured: every request but /healthz is refused");
    }
    // Boxed: the runtime's future is deep (see the coordinator's).
    Box::pin(lambda_http::run(app(state))).await
}
