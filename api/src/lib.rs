//! keyfleet's REST API and dashboard for the central security team.
//!
//! One axum [`Router`] ([`router`]) serves both: the Lambda behind API
//! Gateway runs it ([`lambda::run`], the `keyfleet-api` binary), and
//! `keyfleet serve` runs it on a local port. It reads the report bucket
//! and starts runs through the coordinator; it has no IAM access to member
//! accounts and never sees a secret.
//!
//! # Decisions
//!
//! - **Which run a read shows.** Key reads (`/v1/accounts/{a}/users/{u}/keys`)
//!   and the export use the newest finalized, non-dry-run *scheduled* run
//!   (`JobMode::Scheduled`): the picture of the whole organization. An
//!   emergency rotation or a reactivation is a one-user run: it is listed
//!   under `/v1/runs` (and readable there) but does not replace the
//!   organization's picture. Every read answer names its run: the
//!   `X-Keyfleet-Run-Id` and `X-Keyfleet-Run-Time` (its `finalized_at`)
//!   headers, and `run_id` with the run's times in JSON bodies.
//! - **Keys as of the end of the run**: the report's keys (as the agent
//!   found them) with the run's `Done` actions applied, see [`inventory`].
//! - **The reactivation check** is stricter about freshness: it reads the
//!   newest real run that holds the user, a one-user run included, since
//!   an emergency rotation that deactivated the old key is exactly what a
//!   reactivation undoes. Unknown account or user, or a key that run never
//!   saw: 404; a key it deleted, or one that is active: 409.
//! - **Actions** invoke the coordinator Lambda with the same
//!   [`keyfleet_protocol::command::Command`] the command line sends, one
//!   attempt (see [`invoke`]), and answer 202 `{"run_id": ...}` with a
//!   `Location` of the run; the run's report says how it went.
//! - **Authentication** ([`auth`] has the decision and its reason): behind
//!   API Gateway, `/v1` is SigV4 (`AWS_IAM`) and the caller's IAM principal
//!   gets the scopes the keys secret lists for it ([`principals`]); API
//!   keys, stored as SHA-256 hashes with `read` and `rotate` scopes
//!   ([`keys`]), travel in `Authorization: Bearer` to the same operations
//!   under `/keys/v1`, and to the browser's routes. API Gateway holds no
//!   credential at all: no API Gateway API key, no usage plan key. Browser
//!   sessions are signed cookies that hold no key ([`auth`]); rate limits
//!   per key id or principal ([`limit`]).
//! - **Three doors.** `/v1/...` for IAM principals (SigV4 at the gateway),
//!   `/keys/v1/...`, the same operations, for API keys; both take no
//!   cookie. The browser's routes are outside both and take the session
//!   cookie or a Bearer key: the dashboard `/`, a run's stored reports
//!   (`/runs/{run_id}/report.{html,json,csv}`, and the HTML report's page
//!   of each account, `/runs/{run_id}/accounts/<account>.html`) and the
//!   key inventory (`/export.csv`, `/export.json`, the content of
//!   `/v1/export`). The dashboard links only to those.
//! - **Errors** are RFC 9457 problem details ([`problem`]). No answer
//!   echoes what could be a secret pasted into a URL: `instance` is the
//!   route's template with only account ids, key ids and run ids of the
//!   coordinator's form filled in, and a 404 names the kind of thing not
//!   found, never a user name it did not find (see [`problem`]).
//! - **Reading the bucket**: what was read of a finalized report is kept
//!   for the life of the process (reports never change), and runs are
//!   read newest first only as far as an answer needs; the S3 requests a
//!   call costs are bounded in
//!   [`keyfleet_reports::read::finalized`].
//! - **OpenAPI**: the route table ([`routes::ROUTES`]) is the one source of
//!   both the router and `/openapi.json` ([`openapi`]); a test holds the
//!   document against the router.
//! - **CORS**: only for the configured origins; none by default, and then no
//!   CORS header at all ([`middleware`]).
//! - **The dashboard** (`/`) is server-rendered HTML without script:
//!   filters are a plain GET form ([`dashboard`]).

pub mod auth;
pub mod dashboard;
pub mod ids;
pub mod inventory;
pub mod invoke;
pub mod keys;
pub mod lambda;
pub mod limit;
pub mod middleware;
pub mod openapi;
pub mod principals;
pub mod problem;
pub mod routes;

pub use auth::Caller;
pub use invoke::{Coordinator, InvokeError, LambdaCoordinator};
pub use keys::{ApiKeyEntry, KeySet, Scope};
pub use limit::{Clock, ManualClock, RateLimit, SystemClock};
pub use principals::{PrincipalEntry, PrincipalSet};
pub use problem::Problem;
pub use routes::router;

use axum::http::HeaderValue;
use keyfleet_reports::store::RunStore;
use std::sync::Arc;

/// Whether the session cookie gets `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecureCookies {
    /// Always (Lambda behind API Gateway: HTTPS only).
    Always,
    /// When the request came over HTTPS (`X-Forwarded-Proto: https`);
    /// `keyfleet serve` on a loopback port speaks plain HTTP.
    #[default]
    WhenHttps,
}

/// What the API is configured with.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// The keys it accepts (hashes only).
    pub keys: Vec<ApiKeyEntry>,
    /// The IAM principals it accepts on a SigV4-signed request, and their
    /// scopes. Only a [`auth::SigV4Principal`] is looked up here, which
    /// only the Lambda layer makes (from API Gateway's request context):
    /// `keyfleet serve` leaves this empty.
    pub principals: Vec<PrincipalEntry>,
    /// Origins allowed to call it from a browser script
    /// (`https://host[:port]`); empty: no CORS headers at all.
    pub cors_origins: Vec<String>,
    pub rate_limit: RateLimit,
    pub secure_cookies: SecureCookies,
    /// Signs the session cookies; drawn at random when not given (then a
    /// session is good only in this process).
    pub session_key: Option<[u8; 32]>,
}

/// A configuration the API cannot start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Keys(#[from] keys::KeyError),
    #[error("CORS origin `{0}` must be scheme://host[:port], without a path")]
    Origin(String),
}

/// What the API talks to: the report bucket and the coordinator.
#[derive(Clone)]
pub struct Backend {
    pub store: RunStore,
    pub coordinator: Arc<dyn Coordinator>,
}

/// Everything a request needs, built once per process.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    keys: KeySet,
    principals: PrincipalSet,
    limiter: limit::Limiter,
    clock: Arc<dyn Clock>,
    data: keyfleet_reports::read::finalized::ReportData,
    coordinator: Arc<dyn Coordinator>,
    cors_origins: Vec<HeaderValue>,
    secure_cookies: SecureCookies,
    session_key: [u8; 32],
    /// The report bucket, for the objects [`AppState::data`] has no reader
    /// for (an account's page of the HTML report).
    store: RunStore,
    // Kept for rebuilding in tests.
    #[cfg(test)]
    config: ApiConfig,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("keys", &self.inner.keys.len())
            .field("principals", &self.inner.principals.len())
            .field("data", &self.inner.data)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The state with the system clock.
    pub fn new(config: ApiConfig, backend: Backend) -> Result<AppState, ConfigError> {
        AppState::with_clock(config, backend, Arc::new(SystemClock))
    }

    /// The state with a given clock (tests advance a [`ManualClock`]).
    pub fn with_clock(
        config: ApiConfig,
        backend: Backend,
        clock: Arc<dyn Clock>,
    ) -> Result<AppState, ConfigError> {
        let keys = KeySet::new(config.keys.clone())?;
        let principals = PrincipalSet::new(config.principals.clone())?;
        let cors_origins = config
            .cors_origins
            .iter()
            .map(|o| parse_origin(o).ok_or_else(|| ConfigError::Origin(o.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        let session_key = config.session_key.unwrap_or_else(rand::random);
        Ok(AppState {
            inner: Arc::new(Inner {
                keys,
                principals,
                limiter: limit::Limiter::new(config.rate_limit, clock.clone()),
                clock,
                data: keyfleet_reports::read::finalized::ReportData::new(backend.store.clone()),
                coordinator: backend.coordinator,
                cors_origins,
                secure_cookies: config.secure_cookies,
                session_key,
                store: backend.store,
                #[cfg(test)]
                config,
            }),
        })
    }

    pub fn keys(&self) -> &KeySet {
        &self.inner.keys
    }
    pub fn principals(&self) -> &PrincipalSet {
        &self.inner.principals
    }
    pub(crate) fn limiter(&self) -> &limit::Limiter {
        &self.inner.limiter
    }
    pub fn clock(&self) -> &dyn Clock {
        self.inner.clock.as_ref()
    }
    pub fn data(&self) -> &keyfleet_reports::read::finalized::ReportData {
        &self.inner.data
    }
    /// The report bucket itself; reads of finalized reports go through
    /// [`AppState::data`].
    pub(crate) fn store(&self) -> &RunStore {
        &self.inner.store
    }
    pub fn coordinator(&self) -> &dyn Coordinator {
        self.inner.coordinator.as_ref()
    }
    pub(crate) fn cors_origins(&self) -> &[HeaderValue] {
        &self.inner.cors_origins
    }
    pub(crate) fn secure_cookies(&self) -> SecureCookies {
        self.inner.secure_cookies
    }
    pub(crate) fn session_key(&self) -> &[u8; 32] {
        &self.inner.session_key
    }

    /// The same state with other keys and the same session key.
    #[cfg(test)]
    pub(crate) fn with_keys_for_test(&self, keys: Vec<ApiKeyEntry>) -> AppState {
        let config = ApiConfig {
            keys,
            session_key: Some(self.inner.session_key),
            ..self.inner.config.clone()
        };
        AppState::with_clock(
            config,
            Backend {
                store: self.inner.store.clone(),
                coordinator: self.inner.coordinator.clone(),
            },
            self.inner.clock.clone(),
        )
        .expect("valid test keys")
    }
}

/// `scheme://host[:port]`, as browsers send `Origin`.
fn parse_origin(o: &str) -> Option<HeaderValue> {
    let o = o.trim().trim_end_matches('/');
    let (scheme, rest) = o.split_once("://")?;
    let ok = matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
        && rest.is_ascii();
    ok.then(|| HeaderValue::from_str(o).ok()).flatten()
}

/// Serves `app` on `listener` until the process ends (`keyfleet serve`).
pub async fn serve(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
    axum::serve(listener, app).await
}

#[cfg(test)]
pub(crate) fn test_state(
    keys: Vec<ApiKeyEntry>,
    limit: RateLimit,
    clock: Arc<dyn Clock>,
) -> AppState {
    test_state_with_principals(keys, Vec::new(), limit, clock)
}

#[cfg(test)]
pub(crate) fn test_state_with_principals(
    keys: Vec<ApiKeyEntry>,
    principals: Vec<PrincipalEntry>,
    limit: RateLimit,
    clock: Arc<dyn Clock>,
) -> AppState {
    struct Nobody;
    impl Coordinator for Nobody {
        fn invoke<'a>(
            &'a self,
            _: &'a keyfleet_protocol::command::Command,
        ) -> futures::future::BoxFuture<'a, Result<serde_json::Value, InvokeError>> {
            Box::pin(async { Err(InvokeError::NotFound("none".into())) })
        }
    }
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .build(),
    );
    AppState::with_clock(
        ApiConfig {
            keys,
            principals,
            rate_limit: limit,
            ..Default::default()
        },
        Backend {
            store: RunStore::new(s3, "unused"),
            coordinator: Arc::new(Nobody),
        },
        clock,
    )
    .expect("valid test state")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for ok in [
            "https://sec.example.com",
            "http://127.0.0.1:3000",
            "https://a.b/",
        ] {
            assert!(parse_origin(ok).is_some(), "{ok}");
        }
        for bad in [
            "sec.example.com",
            "https://a.b/path",
            "ftp://a.b",
            "https://",
            "*",
        ] {
            assert!(parse_origin(bad).is_none(), "{bad}");
        }
    }
}
