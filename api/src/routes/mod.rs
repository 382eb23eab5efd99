//! The route table, and the router and handlers built from it.
//!
//! [`ROUTES`] lists every operation once: method, path, who may call it,
//! its parameters, body and responses. [`router`] mounts each entry's
//! handler behind a guard for its [`Access`]; [`crate::openapi::document`]
//! writes `/openapi.json` from the same table. The test suite holds the
//! two together: every documented operation is routed, every other method
//! on its path is a 405, and every status a test sees is documented.
//!
//! Who may call ([`crate::auth`]): the API's routes, `/v1/*`, take a SigV4
//! principal or a Bearer key and no cookie ([`Access::Api`]); [`router`]
//! mounts each of them a second time under [`KEYS_PREFIX`] (`/keys/v1/*`),
//! the door API Gateway leaves to the function for API key clients, since
//! its `/v1` takes SigV4 only. The table lists each operation once; the
//! document gives the `/v1` path items a second server for the twin
//! ([`crate::openapi`]). The browser's routes outside `/v1` (`/`,
//! `/runs/{run_id}/report.{html,json,csv}`, an account's page of the HTML
//! report `/runs/{run_id}/accounts/{account_page}`, `/export.csv`,
//! `/export.json`) take the session cookie or a Bearer key
//! ([`Access::KeyOrSession`]) and refuse with HTML pages (the login form
//! for a 401).
//!
//! A path parameter is a whole segment (axum's router takes no suffix
//! after one), so the account page's `<account id>.html` is one parameter,
//! `account_page`, which [`ids::account_page`] takes apart.
//!
//! The table's types and the responses and parameters its entries share
//! are in `model`; the handlers are one module per resource: `meta`
//! (health, this document), `runs`, `users` (a user's keys), `actions`
//! (rotate, reactivate), `export`, `dashboard` (the handler of `/`, the
//! page is [`crate::dashboard`]) and `session` (login, logout).

mod actions;
mod dashboard;
mod export;
mod meta;
mod model;
mod runs;
mod session;
mod users;

pub use crate::auth::KEYS_PREFIX;
pub(crate) use dashboard::DashboardQuery;
pub use model::{Content, In, Op, Param, Resp, Route, Ty, Verb};

use crate::auth::{self, Access, Caller, Denied, SigV4Principal, Via};
use crate::ids;
use crate::inventory::rfc3339;
use crate::keys::Scope;
use crate::middleware;
use crate::problem::Problem;
use crate::AppState;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodRouter};
use axum::Router;
use keyfleet_reports::read::finalized::DataError;
use model::{
    page, problem, B401, B403, B429, CSV, HTML_PAGE, JSON, JSONL, P_ACCOUNT, P_ACCOUNT_PAGE,
    P_FORMAT, P_KEY, P_RUN, P_USER, R202, R400, R401, R403, R409, R413, R429, R502, RUN_HEADERS,
};
use serde::Deserialize;

/// The largest request body (the rotate body is a few dozen bytes).
pub const BODY_LIMIT: usize = 16 * 1024;
/// `/v1/runs` lists this many runs unless `?limit=` says otherwise.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// The header naming the run an answer comes from.
pub const RUN_ID_HEADER: &str = "x-keyfleet-run-id";
/// The header with that run's `finalized_at`.
pub const RUN_TIME_HEADER: &str = "x-keyfleet-run-time";

/// Where the API is mounted, when not at `/` (API Gateway's stage, see
/// [`crate::lambda`]): links in HTML pages start with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BasePath(pub String);

/// Every operation of the API.
pub const ROUTES: &[Route] = &[
    Route {
        verb: Verb::Get,
        path: "/healthz",
        op: Op::Health,
        operation_id: "health",
        summary: "Liveness: answers without reading anything.",
        access: Access::Public,
        html: false,
        params: &[],
        body: None,
        responses: &[Resp {
            status: 200,
            description: "Alive.",
            content: &[Content {
                media: JSON,
                schema: Some("Health"),
            }],
            headers: &[],
        }],
    },
    Route {
        verb: Verb::Get,
        path: "/openapi.json",
        op: Op::OpenApi,
        operation_id: "openapi",
        summary: "This document.",
        access: Access::Public,
        html: false,
        params: &[],
        body: None,
        responses: &[Resp {
            status: 200,
            description: "The OpenAPI 3.1 document.",
            content: &[Content {
                media: JSON,
                schema: None,
            }],
            headers: &[],
        }],
    },
    Route {
        verb: Verb::Get,
        path: "/",
        op: Op::Dashboard,
        operation_id: "dashboard",
        summary: "The dashboard: the latest scheduled run (or `run`), its users filterable by account, verdict and minimum key age and shown a page at a time; the compliance trend; every report.",
        access: Access::KeyOrSession(Scope::Read),
        html: true,
        params: &[
            Param {
                name: "run",
                location: In::Query,
                description: "Show this finalized run instead of the newest scheduled one (empty: that one).",
                ty: Ty::Str,
            },
            Param {
                name: "account",
                location: In::Query,
                description: "Only this account (12 digits; empty: all).",
                ty: Ty::Str,
            },
            Param {
                name: "verdict",
                location: In::Query,
                description: "Only users with this verdict (empty: all).",
                ty: Ty::Str,
            },
            Param {
                name: "min_age",
                location: In::Query,
                description: "Only users whose oldest key is at least this many days old (empty: all).",
                ty: Ty::Str,
            },
            Param {
                name: "page",
                location: In::Query,
                description: "The page of the users table, from 1 (empty: the first); a page holds at most 100 users. A page past the last shows none and links back to the last.",
                ty: Ty::Str,
            },
        ],
        body: None,
        responses: &[
            page(200, "The dashboard."),
            page(400, "A filter that is not a run id, an account id, a verdict, a number of days or a page number from 1."),
            B401,
            B403,
            page(404, "The run asked for (`run`) is not a finalized run."),
            B429,
            page(502, "The report bucket could not be read."),
        ],
    },
    Route {
        verb: Verb::Post,
        path: "/login",
        op: Op::Login,
        operation_id: "login",
        summary: "Browser login: takes an API key with the read scope from a form and sets a session cookie (signed, HttpOnly, SameSite=Strict) that holds no key.",
        access: Access::Public,
        html: true,
        params: &[],
        body: Some(Content {
            media: "application/x-www-form-urlencoded",
            schema: Some("LoginForm"),
        }),
        responses: &[
            Resp {
                status: 303,
                description: "Logged in: on to the dashboard.",
                content: &[],
                headers: &["Location", "Set-Cookie"],
            },
            page(400, "The form has no api_key."),
            page(401, "Not a valid API key: the login form again."),
            B403,
            B429,
        ],
    },
    Route {
        verb: Verb::Post,
        path: "/logout",
        op: Op::Logout,
        operation_id: "logout",
        summary: "Ends the browser session (clears the cookie).",
        access: Access::Public,
        html: true,
        params: &[],
        body: None,
        responses: &[Resp {
            status: 303,
            description: "Logged out: on to the login page.",
            content: &[],
            headers: &["Location", "Set-Cookie"],
        }],
    },
    Route {
        verb: Verb::Get,
        path: "/v1/runs",
        op: Op::ListRuns,
        operation_id: "listRuns",
        summary: "Finalized runs, newest first: scheduled, one-user (rotate, reactivate) and dry runs.",
        access: Access::Api(Scope::Read),
        html: false,
        params: &[Param {
            name: "limit",
            location: In::Query,
            description: "At most this many runs (default 100, at most 1000).",
            ty: Ty::Int { min: 1, max: 1000 },
        }],
        body: None,
        responses: &[
            Resp {
                status: 200,
                description: "The runs; the headers name the newest.",
                content: &[Content {
                    media: JSON,
                    schema: Some("RunList"),
                }],
                headers: RUN_HEADERS,
            },
            R400,
            R401,
            R403,
            R429,
            R502,
        ],
    },
    Route {
        verb: Verb::Get,
        path: "/v1/runs/{run_id}",
        op: Op::GetRun,
        operation_id: "getRun",
        summary: "A run's consolidated report: JSON, or the CSV report with Accept: text/csv.",
        access: Access::Api(Scope::Read),
        html: false,
        params: &[P_RUN, P_FORMAT],
        body: None,
        responses: &[
            Resp {
                status: 200,
                description: "The report.",
                content: &[
                    Content {
                        media: JSON,
                        schema: Some("RunReport"),
                    },
                    Content {
                        media: CSV,
                        schema: None,
                    },
                ],
                headers: RUN_HEADERS,
            },
            R400,
            R401,
            R403,
            problem(404, "No finalized run with this id."),
            R429,
            R502,
        ],
    },
    Route {
        verb: Verb::Get,
        path: "/runs/{run_id}/report.html",
        op: Op::RunHtml,
        operation_id: "getRunHtml",
        summary: "A run's stored HTML report (self-contained, no script).",
        access: Access::KeyOrSession(Scope::Read),
        html: true,
        params: &[P_RUN],
        body: None,
        responses: &[
            Resp {
                status: 200,
                description: "The HTML report.",
                content: HTML_PAGE,
                headers: RUN_HEADERS,
            },
            R400,
            B401,
            B403,
            problem(404, "No HTML report for this run."),
            B429,
            R502,
        ],
    },
    Route {
        verb: Verb::Get,
        path: "/runs/{run_id}/accounts/{account_page}",
        op: Op::RunAccountHtml,
        operation_id: "getRunAccountHtml",
        summary: "One account's page of a run's stored HTML report (reports/<run_id>/accounts/<account>.html; the report's summary page links to it as accounts/<account>.html). Self-contained, no script.",
        access: Access::KeyOrSession(Scope::Read),
        html: true,
        params: &[P_RUN, P_ACCOUNT_PAGE],
        body: None,
        responses: &[
            Resp {
                status: 200,
                description: "The account's page.",
                content: HTML_PAGE,
                headers: RUN_HEADERS,
            },
            R400,
            B401,
            B403,
            problem(404, "No HTML page of this account in this run."),
            B429,
            R502,
        ],
    },
    Route {
        verb: Verb::Get,
        path: "/runs/{run_id}/report.json",
        op: Op::RunJson,
        operation_id: "getRunJsonFile",
        summary: "For the browser (session cookie or Bearer key, outside /v1): a run's stored JSON report (reports/<run_id>/report.json). API clients use /v1/runs/{run_id}.",
        access: Access::KeyOrSession(Scope::Read),
        html: true,
        params: &[P_RUN],
        body: None,
        responses: &[
            Resp {
                status: 200,
                description: "The JSON report.",
                content: &[Content {
                    media: JSON,
                    schema: Some("RunReport"),
                }],
                headers: RUN_HEADERS,
            },
            R400,
            B401,
            B403,
            problem(404, "No JSON report for this run."),
            B429,
            R502,
        ],
    },
    Route {
        verb: Verb::Get,
        path: "/runs/{run_id}/report.csv",
        op: Op::RunCsv,
        operation_id: "getRunCsvFile",
        summary: "For the browser (session cookie or Bearer key, outside /v1): a run's stored CSV report (reports/<run_id>/report.csv), as a download. API clients use /v1/runs/{run_id}?format=csv.",
        access: Access::KeyOrSession(Scope::Read),
        html: true,
        params: &[P_RUN],
        body: None,
        responses: &[
            Resp {
                status: 200,
                description: "The CSV report.",
                content: &[Content {
                    media: CSV,
                    schema: None,
                }],
                headers: RUN_HEADERS,
            },
            R400,
            B401,
            B403,
            problem(404, "No CSV report for this run."),
            B429,
            R502,
        ],
    },
    Route {
        verb: Verb::Get,
        path: "/runs/{run_id}/report.jsonl",
        op: Op::RunJsonl,
        operation_id: "getRunJsonlFile",
        summary: "For the browser (session cookie or Bearer key, outside /v1): a run's users as JSON Lines (reports/<run_id>/report.jsonl), one line per user with its run and account, as a download.",
        access: Access::KeyOrSession(Scope::Read),
        html: true,
        params: &[P_RUN],
        body: None,
        responses: &[
            Resp {
                status: 200,
                description: "One JSON object per line, one line per user.",
                content: &[Content {
                    media: JSONL,
                    schema: None,
                }],
                headers: RUN_HEADERS,
            },
            R400,
            B401,
            B403,
            problem(404, "No JSON Lines report for this run (a run finalized before they were written has none)."),
            B429,
            R502,
        ],
    },
    Route {
        verb: Verb::Get,
        path: "/v1/accounts/{account}/users/{user}/keys",
        op: Op::UserKeys,
        operation_id: "getUserKeys",
        summary: "A user's access keys as of the end of the latest scheduled run, and where the current secret is kept. Never a secret.",
        access: Access::Api(Scope::Read),
        html: false,
        params: &[P_ACCOUNT, P_USER],
        body: None,
        responses: &[
            Resp {
                status: 200,
                description: "The keys.",
                content: &[Content {
                    media: JSON,
                    schema: Some("UserKeys"),
                }],
                headers: RUN_HEADERS,
            },
            R400,
            R401,
            R403,
            problem(404, "No scheduled run yet, or the account or user is not in it."),
            R429,
            R502,
        ],
    },
    Route {
        verb: Verb::Post,
        path: "/v1/accounts/{account}/users/{user}/rotate",
        op: Op::Rotate,
        operation_id: "rotateUser",
        summary: "Emergency rotation of one user: a new key now (the old one stays active unless deactivate_old).",
        access: Access::Api(Scope::Rotate),
        html: false,
        params: &[P_ACCOUNT, P_USER],
        body: Some(Content {
            media: JSON,
            schema: Some("RotateRequest"),
        }),
        responses: &[
            R202,
            R400,
            R401,
            R403,
            problem(404, "The coordinator selected no account: not an active member account, or excluded."),
            R413,
            R429,
            R502,
        ],
    },
    Route {
        verb: Verb::Post,
        path: "/v1/accounts/{account}/users/{user}/keys/{key_id}/reactivate",
        op: Op::Reactivate,
        operation_id: "reactivateKey",
        summary: "Switch a key keyfleet deactivated back on (checked against the newest run that holds the user).",
        access: Access::Api(Scope::Rotate),
        html: false,
        params: &[P_ACCOUNT, P_USER, P_KEY],
        body: None,
        responses: &[
            R202,
            R400,
            R401,
            R403,
            problem(404, "Unknown account, user or key."),
            R409,
            R429,
            R502,
        ],
    },
    Route {
        verb: Verb::Get,
        path: "/v1/export",
        op: Op::Export,
        operation_id: "exportKeys",
        summary: "The organization's key inventory as of the end of the latest scheduled run: one row per key, JSON or CSV. Never a secret.",
        access: Access::Api(Scope::Read),
        html: false,
        params: &[P_FORMAT],
        body: None,
        responses: &[
            Resp {
                status: 200,
                description: "The inventory.",
                content: &[
                    Content {
                        media: JSON,
                        schema: Some("Export"),
                    },
                    Content {
                        media: CSV,
                        schema: None,
                    },
                ],
                headers: RUN_HEADERS,
            },
            R400,
            R401,
            R403,
            problem(404, "No finalized scheduled run yet."),
            R429,
            R502,
        ],
    },
    Route {
        verb: Verb::Get,
        path: "/export.csv",
        op: Op::ExportCsv,
        operation_id: "exportKeysCsvFile",
        summary: "For the browser (session cookie or Bearer key, outside /v1): the key inventory of /v1/export as CSV, a download. Never a secret.",
        access: Access::KeyOrSession(Scope::Read),
        html: true,
        params: &[],
        body: None,
        responses: &[
            Resp {
                status: 200,
                description: "The inventory.",
                content: &[Content {
                    media: CSV,
                    schema: None,
                }],
                headers: RUN_HEADERS,
            },
            B401,
            B403,
            problem(404, "No finalized scheduled run yet."),
            B429,
            R502,
        ],
    },
    Route {
        verb: Verb::Get,
        path: "/export.json",
        op: Op::ExportJson,
        operation_id: "exportKeysJsonFile",
        summary: "For the browser (session cookie or Bearer key, outside /v1): the key inventory of /v1/export as JSON. Never a secret.",
        access: Access::KeyOrSession(Scope::Read),
        html: true,
        params: &[],
        body: None,
        responses: &[
            Resp {
                status: 200,
                description: "The inventory.",
                content: &[Content {
                    media: JSON,
                    schema: Some("Export"),
                }],
                headers: RUN_HEADERS,
            },
            B401,
            B403,
            problem(404, "No finalized scheduled run yet."),
            B429,
            R502,
        ],
    },
];

fn endpoint(r: &Route) -> MethodRouter<AppState> {
    let filter = r.verb.filter();
    match r.op {
        Op::Health => on(filter, meta::health),
        Op::OpenApi => on(filter, meta::openapi_json),
        Op::Dashboard => on(filter, dashboard::dashboard_page),
        Op::Login => on(filter, session::login),
        Op::Logout => on(filter, session::logout),
        Op::ListRuns => on(filter, runs::list_runs),
        Op::GetRun => on(filter, runs::get_run),
        Op::RunHtml => on(filter, runs::run_html),
        Op::RunAccountHtml => on(filter, runs::run_account_html),
        Op::RunJson => on(filter, runs::run_json_file),
        Op::RunCsv => on(filter, runs::run_csv_file),
        Op::RunJsonl => on(filter, runs::run_jsonl_file),
        Op::UserKeys => on(filter, users::user_keys),
        Op::Rotate => on(filter, actions::rotate),
        Op::Reactivate => on(filter, actions::reactivate),
        Op::Export => on(filter, export::export),
        Op::ExportCsv => on(filter, export::export_csv_file),
        Op::ExportJson => on(filter, export::export_json_file),
    }
}

/// Whether `path` is one of the API's (under `/v1`), which [`router`]
/// mounts under [`KEYS_PREFIX`] too.
pub fn is_api_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// Every route as [`router`] mounts it: `(path, route)`, the `/v1` ones a
/// second time under [`KEYS_PREFIX`].
pub fn mounted() -> Vec<(String, &'static Route)> {
    let mut out: Vec<(String, &'static Route)> =
        ROUTES.iter().map(|r| (r.path.to_string(), r)).collect();
    out.extend(
        ROUTES
            .iter()
            .filter(|r| is_api_path(r.path))
            .map(|r| (format!("{KEYS_PREFIX}{}", r.path), r)),
    );
    out
}

/// The routes of [`ROUTES`] that `pick` keeps, each behind its guard.
fn mount(state: &AppState, pick: impl Fn(&Route) -> bool) -> Router<AppState> {
    let mut paths: Vec<(&'static str, MethodRouter<AppState>)> = Vec::new();
    for r in ROUTES.iter().filter(|r| pick(r)) {
        let (access, html) = (r.access, r.html);
        let mr = endpoint(r).route_layer(from_fn_with_state(
            state.clone(),
            move |s: State<AppState>, req: Request, next: Next| guard(s, access, html, req, next),
        ));
        match paths.iter_mut().find(|(p, _)| *p == r.path) {
            Some((_, existing)) => *existing = std::mem::take(existing).merge(mr),
            None => paths.push((r.path, mr)),
        }
    }
    let mut app = Router::new();
    for (path, mr) in paths {
        app = app.route(path, mr);
    }
    app
}

/// The API: every route of [`ROUTES`] behind its guard, the `/v1` ones
/// also under [`KEYS_PREFIX`], and the layers of [`crate::middleware`].
pub fn router(state: AppState) -> Router {
    mount(&state, |_| true)
        .nest(KEYS_PREFIX, mount(&state, |r| is_api_path(r.path)))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn_with_state(state.clone(), middleware::cors))
        .layer(from_fn(middleware::headers))
        .layer(from_fn(middleware::finish))
        .with_state(state)
}

async fn guard(
    State(state): State<AppState>,
    access: Access,
    html_refusal: bool,
    mut req: Request,
    next: Next,
) -> Response {
    let principal = req.extensions().get::<SigV4Principal>().cloned();
    match auth::authorize(&state, req.headers(), principal.as_ref(), access) {
        Ok(caller) => {
            if let Some(c) = &caller {
                req.extensions_mut().insert(c.clone());
            }
            let mut resp = next.run(req).await;
            if let Some(c) = caller {
                resp.extensions_mut().insert(c);
            }
            resp
        }
        Err(denied) => {
            let mut resp = if html_refusal {
                let base = base_of(&req);
                crate::dashboard::refusal(&denied, &base)
            } else {
                denied.problem().into_response()
            };
            if let Some(id) = denied.caller() {
                let via = match &denied {
                    Denied::Unlisted { .. } => Via::Principal,
                    Denied::Forbidden { via, .. } => *via,
                    _ => Via::Key,
                };
                resp.extensions_mut().insert(Caller {
                    id: id.to_string(),
                    via,
                });
            }
            resp
        }
    }
}

fn base_of(req: &Request) -> String {
    req.extensions()
        .get::<BasePath>()
        .map(|b| b.0.clone())
        .unwrap_or_default()
}

async fn not_found() -> Problem {
    Problem::from_status(StatusCode::NOT_FOUND)
}

fn store_failed(e: DataError) -> Problem {
    Problem::bad_gateway("reading the report bucket", &e)
}

/// Names the run an answer comes from.
fn label(mut resp: Response, run_id: &str, finalized_at: time::OffsetDateTime) -> Response {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(run_id) {
        h.insert(RUN_ID_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&rfc3339(finalized_at)) {
        h.insert(RUN_TIME_HEADER, v);
    }
    resp
}

/// A path axum could not take apart (for a `String` parameter: percent-
/// encoded bytes that are not UTF-8). Its own text may quote the value,
/// which may be a pasted secret, so it is neither shown nor logged.
fn path_problem(_: PathRejection) -> Problem {
    Problem::bad_request(
        "a path parameter could not be decoded (percent-encoded bytes must be UTF-8)",
    )
}

/// A run as a 404 may name it: by id when the id cannot be a secret
/// ([`ids::echoable`]), else as "this run id".
fn run_named(run_id: &str) -> String {
    if ids::echoable("run_id", run_id) {
        format!("run {run_id}")
    } else {
        "this run id".to_string()
    }
}

#[derive(Debug, Default, Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

/// CSV when `?format=csv`, or when the Accept header asks for `text/csv`
/// and no format is given.
fn wants_csv(
    headers: &HeaderMap,
    q: Result<Query<FormatQuery>, QueryRejection>,
) -> Result<bool, Problem> {
    let Query(q) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    match q.format.as_deref() {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(Problem::bad_request(format!(
            "format `{}` is neither json nor csv",
            other.chars().take(16).collect::<String>()
        ))),
        None => Ok(headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("text/csv"))),
    }
}
