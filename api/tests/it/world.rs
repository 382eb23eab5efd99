//! A test's world: its own report bucket in the emulator holding the
//! fixture's runs, API keys of each kind, IAM principals of each kind
//! ([`AUDITORS`], [`RESPONDERS`]), a manual clock, and the router over
//! them, called in process with `tower::ServiceExt::oneshot`. An API key
//! travels as `Authorization: Bearer`; a SigV4 principal as the request
//! extension the Lambda layer makes from API Gateway's request context
//! ([`World::call_signed`]; `crate::lambda` goes through real events).
//!
//! Every call goes through [`World::call`], which also checks what every
//! test should hold: the status is one the OpenAPI document lists for the
//! route the router matched, and no answer (headers or body) holds an API
//! key or a value of [`crate::echo::PASTED`] (secrets someone might paste
//! into a URL).

use crate::fixture;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{from_fn, Next};
use axum::response::Response;
use axum::Router;
use futures::future::BoxFuture;
use keyfleet_api::auth::SigV4Principal;
use keyfleet_api::keys::{self, Scope};
use keyfleet_api::{
    router, ApiConfig, AppState, Backend, Coordinator, InvokeError, LambdaCoordinator, ManualClock,
    PrincipalEntry, RateLimit,
};
use keyfleet_protocol::command::Command;
use keyfleet_protocol::report::RunReport;
use keyfleet_reports::render;
use keyfleet_reports::store::{self, RunStore};
use keyfleet_testkit::Emulator;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

/// A coordinator that records what it is asked and answers as told.
#[derive(Default)]
pub struct FakeCoordinator {
    pub commands: Mutex<Vec<Command>>,
    pub answer: Mutex<Option<Result<Value, (String, String)>>>,
}

impl Coordinator for FakeCoordinator {
    fn invoke<'a>(&'a self, cmd: &'a Command) -> BoxFuture<'a, Result<Value, InvokeError>> {
        self.commands.lock().unwrap().push(cmd.clone());
        let answer = self.answer.lock().unwrap().clone();
        Box::pin(async move {
            match answer {
                None => Ok(
                    json!({"run_id": "20260305T000000Z-ffffff", "accounts": 1, "skipped": 0, "dry_run": false}),
                ),
                Some(Ok(v)) => Ok(v),
                Some(Err((kind, message))) => Err(InvokeError::Function { kind, message }),
            }
        })
    }
}

pub enum Coord {
    Fake,
    /// The emulator's Lambda, with a function that does not exist.
    MissingLambda,
}

/// A role the keys secret lists with `read` (as a path-less ARN, as API
/// Gateway's assumed-role session ARNs carry no path).
pub const AUDITORS: &str = "arn:aws:iam::111122223333:role/audit/SecurityAuditors";
/// A role listed with `read` and `rotate`.
pub const RESPONDERS: &str = "arn:aws:iam::111122223333:role/KeyfleetResponders";

/// An assumed-role session of `role` (a role ARN without path).
pub fn session_of(role_name: &str, session: &str) -> String {
    format!("arn:aws:sts::111122223333:assumed-role/{role_name}/{session}")
}

pub struct Options {
    pub rate_limit: RateLimit,
    pub cors_origins: Vec<String>,
    pub coordinator: Coord,
    pub reports: Vec<RunReport>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rate_limit: RateLimit {
                per_minute: 6000,
                burst: 1000,
            },
            cors_origins: vec![],
            coordinator: Coord::Fake,
            reports: vec![
                fixture::latest(),
                fixture::earlier(),
                fixture::dry(),
                fixture::rotation(),
            ],
        }
    }
}

pub struct World {
    pub app: Router,
    pub state: AppState,
    pub clock: ManualClock,
    /// read
    pub reader: String,
    /// read + rotate
    pub admin: String,
    /// rotate only
    pub rotator: String,
    pub fake: Arc<FakeCoordinator>,
    #[allow(dead_code)]
    pub bucket: String,
    /// What [`World::restart`] builds a fresh process from.
    store: RunStore,
    entries: Vec<keyfleet_api::ApiKeyEntry>,
    principals: Vec<PrincipalEntry>,
    coordinator: Arc<dyn Coordinator>,
    cors_origins: Vec<String>,
    rate_limit: RateLimit,
}

/// What a call answered.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub route: Option<String>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// A problem with this status.
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.text()
        );
        let p = self.json();
        assert_eq!(p["status"], status);
        for field in ["type", "title", "detail", "instance"] {
            assert!(p[field].is_string(), "no {field} in {p}");
        }
        p
    }
}

pub fn s3(emu: &Emulator) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&emu.config())
            .force_path_style(true)
            .build(),
    )
}

/// Where [`put_report`] keeps an account's section.
fn section_key(r: &RunReport, a: &keyfleet_protocol::report::AccountReport) -> String {
    store::users_key(&r.run_id, "fixture", &a.account_id)
}

/// `report.json` (and the finalize marker) as [`put_report`] writes it:
/// the summary, byte for byte.
pub fn stored_json(r: &RunReport) -> Vec<u8> {
    render::to_json(&r.without_users(|a| section_key(r, a)))
}

/// Writes a finalized run as the coordinator does: each account's
/// section with its users, the summary (report schema 2) as the finalize
/// marker and `report.json`, the CSV, the JSON Lines and the HTML.
pub async fn put_report(store: &RunStore, r: &RunReport) {
    let id = &r.run_id;
    let section = |a: &keyfleet_protocol::report::AccountReport| section_key(r, a);
    for a in r.accounts.iter().filter(|a| !a.users.is_empty()) {
        store
            .put(
                &section(a),
                serde_json::to_vec(a).unwrap(),
                "application/json",
            )
            .await
            .unwrap();
    }
    let summary = stored_json(r);
    store
        .put(
            &store::report_key(id, "json"),
            summary.clone(),
            "application/json",
        )
        .await
        .unwrap();
    store
        .put(&store::report_key(id, "csv"), render::to_csv(r), "text/csv")
        .await
        .unwrap();
    let jsonl: Vec<u8> = r
        .accounts
        .iter()
        .flat_map(|a| render::jsonl_account(r, a))
        .collect();
    store
        .put(
            &store::report_key(id, "jsonl"),
            jsonl,
            "application/x-ndjson",
        )
        .await
        .unwrap();
    // A large run's HTML report is a summary and a page per account.
    if render::html::is_split(r) {
        for a in &r.accounts {
            store
                .put(
                    &store::account_page_key(id, &a.account_id),
                    render::account_page(r, a).into_bytes(),
                    "text/html",
                )
                .await
                .unwrap();
        }
    }
    store
        .put(
            &store::report_key(id, "html"),
            render::to_html(r).into_bytes(),
            "text/html",
        )
        .await
        .unwrap();
    store
        .put(&store::final_key(id), summary, "application/json")
        .await
        .unwrap();
}

fn build(
    entries: &[keyfleet_api::ApiKeyEntry],
    principals: &[PrincipalEntry],
    cors_origins: &[String],
    rate_limit: RateLimit,
    store: &RunStore,
    coordinator: &Arc<dyn Coordinator>,
    clock: &ManualClock,
) -> (AppState, Router) {
    let state = AppState::with_clock(
        ApiConfig {
            keys: entries.to_vec(),
            principals: principals.to_vec(),
            cors_origins: cors_origins.to_vec(),
            rate_limit,
            ..Default::default()
        },
        Backend {
            store: store.clone(),
            coordinator: coordinator.clone(),
        },
        Arc::new(clock.clone()),
    )
    .unwrap();
    let app = router(state.clone()).layer(from_fn(record_route));
    (state, app)
}

async fn record_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let mut resp = next.run(req).await;
    if let Some(r) = route {
        resp.extensions_mut().insert(RouteSeen(r));
    }
    resp
}

#[derive(Clone)]
struct RouteSeen(String);

impl World {
    pub async fn new(opts: Options) -> World {
        let emu = Emulator::shared().expect("the emulator harness starts");
        let s3 = s3(emu);
        let bucket = format!("kf-api-{:08x}", rand::random::<u32>());
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let store = RunStore::new(s3, &bucket);
        for r in &opts.reports {
            put_report(&store, r).await;
        }
        // A run still waiting for its results: a manifest, no report.
        store
            .put(
                &store::manifest_key(fixture::RUNNING),
                b"{\"v\":1}".to_vec(),
                "application/json",
            )
            .await
            .unwrap();
        let (reader, er) = keys::generate("reader", &[Scope::Read]);
        let (admin, ea) = keys::generate("admin", &[Scope::Read, Scope::Rotate]);
        let (rotator, eo) = keys::generate("rotator", &[Scope::Rotate]);
        let fake = Arc::new(FakeCoordinator::default());
        let coordinator: Arc<dyn Coordinator> = match opts.coordinator {
            Coord::Fake => fake.clone(),
            Coord::MissingLambda => Arc::new(LambdaCoordinator::new(
                &emu.config(),
                format!("keyfleet-coordinator-absent-{:08x}", rand::random::<u32>()),
            )),
        };
        let clock = ManualClock::new();
        let entries = vec![er, ea, eo];
        let principals = vec![
            PrincipalEntry {
                arn: AUDITORS.into(),
                scopes: vec![Scope::Read],
            },
            PrincipalEntry {
                arn: RESPONDERS.into(),
                scopes: vec![Scope::Read, Scope::Rotate],
            },
        ];
        let (state, app) = build(
            &entries,
            &principals,
            &opts.cors_origins,
            opts.rate_limit,
            &store,
            &coordinator,
            &clock,
        );
        World {
            app,
            state,
            clock,
            reader,
            admin,
            rotator,
            fake,
            bucket,
            store,
            entries,
            principals,
            coordinator,
            cors_origins: opts.cors_origins,
            rate_limit: opts.rate_limit,
        }
    }

    /// The API as a new process would start over the same bucket, keys
    /// and coordinator: nothing kept in memory (a Lambda cold start).
    #[allow(dead_code)]
    pub fn restart(&mut self) {
        let (state, app) = build(
            &self.entries,
            &self.principals,
            &self.cors_origins,
            self.rate_limit,
            &self.store,
            &self.coordinator,
            &self.clock,
        );
        self.state = state;
        self.app = app;
    }

    /// The report bucket, to put what a test needs beside the fixture's
    /// runs.
    pub fn store(&self) -> &RunStore {
        &self.store
    }

    pub fn keys(&self) -> [&str; 3] {
        [&self.reader, &self.admin, &self.rotator]
    }

    /// Sends a request through the router (see the module doc).
    pub async fn send(&self, req: axum::http::Request<Body>) -> Answer {
        send_checked(&self.app, req, &self.keys()).await
    }

    pub async fn get(&self, uri: &str, key: Option<&str>) -> Answer {
        self.call(Method::GET, uri, key, &[], Body::empty()).await
    }

    /// Logs in through the form with `key`: the `Cookie` header value of
    /// the session (`keyfleet_session=...`).
    pub async fn login(&self, key: &str) -> String {
        let a = self
            .call(
                Method::POST,
                "/login",
                None,
                &[("content-type", "application/x-www-form-urlencoded")],
                Body::from(format!("api_key={}", key.replace('+', "%2B"))),
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
        let set = a.header("set-cookie").expect("a session cookie");
        set.split(';').next().unwrap().to_string()
    }

    /// A GET with a session cookie and no API key.
    pub async fn get_with_cookie(&self, uri: &str, cookie: &str) -> Answer {
        self.call(Method::GET, uri, None, &[("cookie", cookie)], Body::empty())
            .await
    }

    pub async fn post(&self, uri: &str, key: Option<&str>, body: &str) -> Answer {
        self.call(
            Method::POST,
            uri,
            key,
            &[("content-type", "application/json")],
            Body::from(body.to_string()),
        )
        .await
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Answer {
        let mut req = axum::http::Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(body).unwrap()).await
    }

    /// A request as API Gateway hands it on after checking a SigV4
    /// signature by `principal` (its `userArn`), with no API key.
    pub async fn call_signed(
        &self,
        method: Method,
        uri: &str,
        principal: &str,
        body: Body,
    ) -> Answer {
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        req.extensions_mut()
            .insert(SigV4Principal(principal.to_string()));
        self.send(req).await
    }
}

/// One request, checked against the document and for leaked keys.
pub async fn send_checked(app: &Router, req: axum::http::Request<Body>, keys: &[&str]) -> Answer {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let resp = app.clone().oneshot(req).await.unwrap();
    let route = resp.extensions().get::<RouteSeen>().map(|r| r.0.clone());
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    let answer = Answer {
        status,
        headers,
        body,
        route,
    };
    let text = answer.text();
    for k in keys {
        assert!(!text.contains(k), "an answer holds an API key: {text}");
        for (name, v) in answer.headers.iter() {
            assert!(
                !v.to_str().unwrap_or_default().contains(k),
                "header {name} holds an API key"
            );
        }
    }
    for pasted in crate::echo::PASTED {
        for piece in crate::echo::pieces(pasted) {
            assert!(
                !text.contains(piece),
                "{method} {uri}: the answer ({status}) echoes `{piece}` of a pasted secret: {text}"
            );
            for (name, v) in answer.headers.iter() {
                assert!(
                    !v.to_str().unwrap_or_default().contains(piece),
                    "{method} {uri}: header {name} echoes `{piece}` of a pasted secret: {v:?}"
                );
            }
        }
    }
    // Cache-Control and nosniff on everything.
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    match &answer.route {
        Some(route) => {
            let doc = keyfleet_api::openapi::document();
            let op = &doc["paths"][route][method.as_str().to_ascii_lowercase()];
            if op.is_object() {
                assert!(
                    op["responses"][status.as_str()].is_object(),
                    "{method} {route} answered {status}, which the document does not list: {text}"
                );
            } else {
                // A method the route does not have (or a CORS preflight).
                assert!(
                    status == StatusCode::METHOD_NOT_ALLOWED
                        || (method == Method::OPTIONS && status == StatusCode::NO_CONTENT),
                    "{method} {route} answered {status}"
                );
            }
        }
        None => assert!(
            matches!(status.as_u16(), 404 | 405)
                || (method == Method::OPTIONS && status == StatusCode::NO_CONTENT),
            "an unrouted request answered {status}"
        ),
    }
    answer
}
