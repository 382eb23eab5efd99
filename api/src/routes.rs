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
//! `/runs/{run_id}/report.{html,json,csv}`, `/export.csv`, `/export.json`)
//! take the session cookie or a Bearer key ([`Access::KeyOrSession`]) and
//! refuse with HTML pages (the login form for a 401).

pub use crate::auth::KEYS_PREFIX;
use crate::auth::{self, Access, Caller, Denied, SigV4Principal, Via};
use crate::data::DataError;
use crate::ids;
use crate::inventory::{self, rfc3339, KeyView, Lookup, Reactivation};
use crate::invoke::{self, InvokeError};
use crate::keys::Scope;
use crate::middleware::{self, csv, html, json};
use crate::problem::{self, Problem};
use crate::{dashboard, AppState, SecureCookies};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FormRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Extension, Form, Router};
use keyfleet_coordinator::lambda::Command;
use keyfleet_coordinator::render;
use keyfleet_protocol::report::RunReport;
use serde::Deserialize;
use serde_json::json;

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

/// An HTTP method of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
        }
    }
    pub fn method(self) -> axum::http::Method {
        match self {
            Verb::Get => axum::http::Method::GET,
            Verb::Post => axum::http::Method::POST,
        }
    }
    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
        }
    }
}

/// A parameter's type, for the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str,
    Pattern(&'static str),
    Int { min: i64, max: i64 },
    OneOf(&'static [&'static str]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    pub location: In,
    pub description: &'static str,
    pub ty: Ty,
}

/// A request or response body: media type and schema component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Content {
    pub media: &'static str,
    /// A schema in `components.schemas`; `None` for text (CSV, HTML).
    pub schema: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resp {
    pub status: u16,
    pub description: &'static str,
    pub content: &'static [Content],
    /// Headers in `components.headers`.
    pub headers: &'static [&'static str],
}

/// The operations, each with its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Health,
    OpenApi,
    Dashboard,
    Login,
    Logout,
    ListRuns,
    GetRun,
    RunHtml,
    RunJson,
    RunCsv,
    UserKeys,
    Rotate,
    Reactivate,
    Export,
    ExportCsv,
    ExportJson,
}

/// One operation of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub verb: Verb,
    pub path: &'static str,
    pub op: Op,
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub access: Access,
    /// Refusals answered as HTML pages (the login page for a 401).
    pub html: bool,
    pub params: &'static [Param],
    pub body: Option<Content>,
    pub responses: &'static [Resp],
}

const JSON: &str = "application/json";
const CSV: &str = "text/csv";
const HTML: &str = "text/html";

const PROBLEM: &[Content] = &[Content {
    media: problem::MEDIA_TYPE,
    schema: Some("Problem"),
}];
const HTML_PAGE: &[Content] = &[Content {
    media: HTML,
    schema: None,
}];

const fn problem(status: u16, description: &'static str) -> Resp {
    Resp {
        status,
        description,
        content: PROBLEM,
        headers: &[],
    }
}
const fn page(status: u16, description: &'static str) -> Resp {
    Resp {
        status,
        description,
        content: HTML_PAGE,
        headers: &[],
    }
}

const R400: Resp = problem(400, "A malformed identifier or parameter.");
const R401: Resp = Resp {
    headers: &["WWW-Authenticate"],
    ..problem(401, "No credential this route takes (a SigV4 signature API Gateway checked, or `Authorization: Bearer <key>`), or not a valid API key.")
};
const R403: Resp = problem(
    403,
    "The API key or IAM principal lacks the scope, or the keys secret lists no such principal.",
);
const R409: Resp = problem(
    409,
    "The key cannot be switched on: deleted (type urn:keyfleet:problem:key-deleted) or active (type urn:keyfleet:problem:key-active).",
);
const R413: Resp = problem(413, "The body is too large.");
const R429: Resp = Resp {
    headers: &["Retry-After"],
    ..problem(429, "Rate limit of the API key or IAM principal reached.")
};
const R502: Resp = problem(
    502,
    "S3 or the coordinator failed; the detail names the error id in the API's log.",
);
// The browser routes' refusals: pages (the login form for a 401).
const B401: Resp = Resp {
    headers: &["WWW-Authenticate"],
    ..page(
        401,
        "The login form: no API key or session, or not a valid one.",
    )
};
const B403: Resp = page(403, "The API key lacks the read scope.");
const B429: Resp = Resp {
    headers: &["Retry-After"],
    ..page(429, "Rate limit of the API key reached.")
};
const R202: Resp = Resp {
    status: 202,
    description: "The coordinator started the run.",
    content: &[Content {
        media: JSON,
        schema: Some("RunStarted"),
    }],
    headers: &["Location"],
};
const RUN_HEADERS: &[&str] = &["X-Keyfleet-Run-Id", "X-Keyfleet-Run-Time"];

const P_ACCOUNT: Param = Param {
    name: "account",
    location: In::Path,
    description: "AWS account id.",
    ty: Ty::Pattern("^[0-9]{12}$"),
};
const P_USER: Param = Param {
    name: "user",
    location: In::Path,
    description: "IAM user name.",
    ty: Ty::Pattern("^[\\w+=,.@-]{1,64}$"),
};
const P_KEY: Param = Param {
    name: "key_id",
    location: In::Path,
    description: "Access key id.",
    ty: Ty::Pattern("^(AKIA|ASIA)[A-Z0-9]{16}$"),
};
const P_RUN: Param = Param {
    name: "run_id",
    location: In::Path,
    description: "Run id.",
    ty: Ty::Pattern("^[A-Za-z0-9_-]{1,64}$"),
};
const P_FORMAT: Param = Param {
    name: "format",
    location: In::Query,
    description: "`csv` or `json`; overrides the Accept header (`text/csv` asks for CSV).",
    ty: Ty::OneOf(&["json", "csv"]),
};

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
        summary: "The dashboard: the latest scheduled run (or `run`), filterable by account, verdict and minimum key age; the compliance trend; every report.",
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
        ],
        body: None,
        responses: &[
            page(200, "The dashboard."),
            page(400, "A filter that is not a run id, an account id, a verdict or a number of days."),
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
        Op::Health => on(filter, health),
        Op::OpenApi => on(filter, openapi_json),
        Op::Dashboard => on(filter, dashboard_page),
        Op::Login => on(filter, login),
        Op::Logout => on(filter, logout),
        Op::ListRuns => on(filter, list_runs),
        Op::GetRun => on(filter, get_run),
        Op::RunHtml => on(filter, run_html),
        Op::RunJson => on(filter, run_json_file),
        Op::RunCsv => on(filter, run_csv_file),
        Op::UserKeys => on(filter, user_keys),
        Op::Rotate => on(filter, rotate),
        Op::Reactivate => on(filter, reactivate),
        Op::Export => on(filter, export),
        Op::ExportCsv => on(filter, export_csv_file),
        Op::ExportJson => on(filter, export_json_file),
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
                dashboard::refusal(&denied, &base)
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

async fn health() -> Response {
    json(&json!({"status": "ok"}))
}

async fn openapi_json() -> Response {
    json(crate::openapi::document())
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<String>,
}

async fn list_runs(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                Problem::bad_request(format!("limit must be a number from 1 to {MAX_LIMIT}"))
            })?,
    };
    // Only the newest `limit` runs are read (see crate::data).
    let summaries = state.data().newest(limit).await.map_err(store_failed)?;
    let runs: Vec<_> = summaries.iter().map(|s| s.as_ref()).collect();
    let resp = json(&json!({"runs": runs}));
    Ok(match summaries.first() {
        Some(s) => label(resp, &s.run_id, s.finalized_at),
        None => resp,
    })
}

async fn get_run(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    q: Result<Query<FormatQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Path(run_id) = path.map_err(path_problem)?;
    let run_id = ids::run(&run_id)?;
    let as_csv = wants_csv(&headers, q)?;
    let report = state
        .data()
        .report(run_id)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| {
            Problem::not_found(format!("no finalized report for {}", run_named(run_id)))
        })?;
    let resp = if as_csv {
        csv(
            render::to_csv(&report),
            &format!("keyfleet-report-{run_id}.csv"),
        )
    } else {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
            render::to_json(&report),
        )
            .into_response()
    };
    Ok(label(resp, &report.run_id, report.finalized_at))
}

/// A rendered report of a run as the coordinator stored it
/// (`reports/<run_id>/report.<ext>`, [`keyfleet_coordinator::store::report_key`]):
/// the run id and the bytes, or a 404 naming `what` is missing.
async fn stored_report(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
    ext: &'static str,
    what: &'static str,
) -> Result<(String, Vec<u8>), Problem> {
    let Path(run_id) = path.map_err(path_problem)?;
    let run_id = ids::run(&run_id)?.to_string();
    let bytes = state
        .data()
        .rendered(&run_id, ext)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| {
            Problem::not_found(format!("no {what} report for {}", run_named(&run_id)))
        })?;
    Ok((run_id, bytes))
}

/// Labels a stored report's answer with its run, when the run's finalized
/// report is readable (its summary, kept since the run list or the
/// dashboard read it, has the two values: no second read of the report).
async fn label_stored(state: &AppState, run_id: &str, resp: Response) -> Response {
    match state.data().summary(run_id).await {
        Ok(Some(s)) => label(resp, &s.run_id, s.finalized_at),
        _ => resp,
    }
}

async fn run_html(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let (run_id, page) = stored_report(&state, path, "html", "HTML").await?;
    let mut resp = html(StatusCode::OK, String::from_utf8_lossy(&page).into_owned());
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(middleware::REPORT_CSP),
    );
    Ok(label_stored(&state, &run_id, resp).await)
}

/// `/runs/{run_id}/report.json`: the browser's copy of the JSON report.
async fn run_json_file(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let (run_id, body) = stored_report(&state, path, "json", "JSON").await?;
    let resp = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
        body,
    )
        .into_response();
    Ok(label_stored(&state, &run_id, resp).await)
}

/// `/runs/{run_id}/report.csv`: the browser's copy of the CSV report.
async fn run_csv_file(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let (run_id, body) = stored_report(&state, path, "csv", "CSV").await?;
    let resp = csv(body, &format!("keyfleet-report-{run_id}.csv"));
    Ok(label_stored(&state, &run_id, resp).await)
}

/// The newest scheduled run, or a 404 saying there is none yet.
async fn latest_scheduled(state: &AppState) -> Result<std::sync::Arc<RunReport>, Problem> {
    state
        .data()
        .latest_scheduled()
        .await
        .map_err(store_failed)?
        .ok_or_else(|| Problem::not_found("no finalized scheduled run yet"))
}

/// The account's section and the user's in `report`, or a 404 that names
/// the account (validated: 12 digits) but not the user (see
/// [`crate::problem`]).
fn lookup<'r>(
    report: &'r RunReport,
    account: &str,
    user: &str,
) -> Result<
    (
        &'r keyfleet_protocol::report::AccountReport,
        &'r keyfleet_protocol::UserReport,
    ),
    Problem,
> {
    match inventory::find_user(report, account, user) {
        Lookup::Found(a, u) => Ok((a, u)),
        Lookup::NoAccount => Err(Problem::not_found(format!(
            "account {account} is not in run {}",
            report.run_id
        ))),
        // The user name may be a pasted secret: not echoed (crate::problem).
        Lookup::NoUser(a) => Err(Problem::not_found(format!(
            "no such user in account {account} in run {}{}",
            report.run_id,
            if a.state.is_problem() {
                format!(" (the account is {} in that run)", a.state.as_str())
            } else {
                String::new()
            }
        ))),
    }
}

async fn user_keys(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, Problem> {
    let Path((account, user)) = path.map_err(path_problem)?;
    let (account, user) = (ids::account(&account)?, ids::user(&user)?);
    let report = state
        .data()
        .latest_scheduled_for(account)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| {
            Problem::not_found(format!(
                "account {account} is missing from every finalized scheduled run: no result of it yet"
            ))
        })?;
    let (a, u) = lookup(&report, account, user)?;
    let created = inventory::account_time(&report, a);
    let mut keys = inventory::keys_after_run(u, created);
    keys.sort_by_key(|k| k.created);
    let keys: Vec<KeyView> = keys
        .iter()
        .map(|k| KeyView::of(k, report.finalized_at))
        .collect();
    let body = json!({
        "run_id": report.run_id,
        "run_created_at": rfc3339(report.created_at),
        "run_finalized_at": rfc3339(report.finalized_at),
        "as_of": rfc3339(report.finalized_at),
        "account_id": a.account_id,
        "account_name": a.name,
        "user_name": u.user_name,
        "path": u.path,
        "verdict": u.verdict.as_str(),
        "keys": keys,
        "current_secret": inventory::secret_location(&report.policy, account, user),
    });
    Ok(label(json(&body), &report.run_id, report.finalized_at))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    deactivate_old: bool,
}

async fn rotate(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    base: Option<Extension<BasePath>>,
    caller: Option<Extension<Caller>>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let Path((account, user)) = path.map_err(path_problem)?;
    let (account, user) = (ids::account(&account)?, ids::user(&user)?);
    let body = body.map_err(|e| Problem::new(e.status(), e.body_text()))?;
    let req: RotateBody = if body.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            Problem::bad_request(format!(
                "the body must be {{\"key_id\": \"AKIA...\", \"deactivate_old\": false}} (both optional): {e}"
            ))
        })?
    };
    if let Some(k) = &req.key_id {
        ids::key_id(k)?;
    }
    let cmd = Command::Rotate {
        account: account.to_string(),
        user: user.to_string(),
        deactivate_old: req.deactivate_old,
        key_id: req.key_id,
    };
    start(&state, door(matched), base, caller, cmd).await
}

async fn reactivate(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    base: Option<Extension<BasePath>>,
    caller: Option<Extension<Caller>>,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Response, Problem> {
    let Path((account, user, key_id)) = path.map_err(path_problem)?;
    let (account, user, key_id) = (
        ids::account(&account)?,
        ids::user(&user)?,
        ids::key_id(&key_id)?,
    );
    let report = state
        .data()
        .latest_for_user(account, user)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| Problem::not_found("no finalized run yet"))?;
    let (a, u) = lookup(&report, account, user)?;
    let run = &report.run_id;
    match inventory::reactivation(u, key_id, inventory::account_time(&report, a)) {
        Reactivation::Possible => {}
        Reactivation::Deleted => {
            return Err(Problem::conflict(
                problem::KEY_DELETED,
                format!("key {key_id} of {user} was deleted in run {run}: there is nothing to switch back on"),
            ))
        }
        Reactivation::Active => {
            return Err(Problem::conflict(
                problem::KEY_ACTIVE,
                format!("key {key_id} of {user} is active as of run {run}: there is nothing to reactivate"),
            ))
        }
        Reactivation::NeverSeen => {
            return Err(Problem::not_found(format!(
                "run {run} shows no key {key_id} for {user} in account {account}"
            )))
        }
    }
    let cmd = Command::Reactivate {
        account: account.to_string(),
        user: user.to_string(),
        key_id: key_id.to_string(),
    };
    start(&state, door(matched), base, caller, cmd).await
}

/// The door a request came in by: [`KEYS_PREFIX`] for the API key
/// clients' twin of `/v1`, else nothing. The started run's `Location` keeps
/// it, so a key client is not sent to a `/v1` that wants a signature.
fn door(matched: Option<MatchedPath>) -> &'static str {
    match matched {
        Some(m) if m.as_str().starts_with(&format!("{KEYS_PREFIX}/")) => KEYS_PREFIX,
        _ => "",
    }
}

/// Invokes the coordinator and answers 202 with the run id.
async fn start(
    state: &AppState,
    door: &str,
    base: Option<Extension<BasePath>>,
    caller: Option<Extension<Caller>>,
    cmd: Command,
) -> Result<Response, Problem> {
    let base = base.map(|Extension(b)| b.0).unwrap_or_default();
    let caller_id = caller.map(|Extension(c)| c.id).unwrap_or_default();
    let action = serde_json::to_value(&cmd)
        .ok()
        .and_then(|v| v.get("action").and_then(|a| a.as_str()).map(str::to_string))
        .unwrap_or_default();
    tracing::info!(caller = %caller_id, action = %action, command = ?cmd, "starting a run for the caller");
    let answer = state
        .coordinator()
        .invoke(&cmd)
        .await
        .map_err(invoke_problem)?;
    let run_id = invoke::run_id_of(&answer).map_err(invoke_problem)?;
    tracing::info!(caller = %caller_id, action = %action, run_id = %run_id, "run started");
    let mut resp = (StatusCode::ACCEPTED, json(&json!({"run_id": run_id}))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{base}{door}/v1/runs/{run_id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

fn invoke_problem(e: InvokeError) -> Problem {
    match &e {
        InvokeError::Function { kind, .. } if kind == "keyfleet.NoAccountSelected" => {
            tracing::warn!(error = %e, "the coordinator selected no account");
            Problem::not_found(
                "the coordinator selected no account: the account is not an active member of the \
                 organization, or keyfleet excludes it (the run is recorded in /v1/runs)",
            )
        }
        InvokeError::NoAnswer { .. } => {
            let p = Problem::bad_gateway("invoking the coordinator", &e);
            Problem {
                detail: format!(
                    "{}; it may have started a run all the same: look in /v1/runs before asking again",
                    p.detail
                ),
                ..p
            }
        }
        _ => Problem::bad_gateway("invoking the coordinator", &e),
    }
}

async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<FormatQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let as_csv = wants_csv(&headers, q)?;
    export_as(&state, as_csv).await
}

async fn export_csv_file(State(state): State<AppState>) -> Result<Response, Problem> {
    export_as(&state, true).await
}

async fn export_json_file(State(state): State<AppState>) -> Result<Response, Problem> {
    export_as(&state, false).await
}

/// The inventory of the latest scheduled run (`/v1/export`, and the
/// browser's `/export.csv` and `/export.json`).
async fn export_as(state: &AppState, as_csv: bool) -> Result<Response, Problem> {
    let report = latest_scheduled(state).await?;
    let rows = inventory::export_rows(&report);
    let resp = if as_csv {
        csv(
            inventory::export_csv(&rows),
            &format!("keyfleet-keys-{}.csv", report.run_id),
        )
    } else {
        json(&json!({
            "run_id": report.run_id,
            "run_created_at": rfc3339(report.created_at),
            "run_finalized_at": rfc3339(report.finalized_at),
            "keys": rows,
        }))
    };
    Ok(label(resp, &report.run_id, report.finalized_at))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DashboardQuery {
    /// Show this finalized run instead of the newest scheduled one.
    pub run: Option<String>,
    pub account: Option<String>,
    pub verdict: Option<String>,
    pub min_age: Option<String>,
}

async fn dashboard_page(
    State(state): State<AppState>,
    base: Option<Extension<BasePath>>,
    q: Result<Query<DashboardQuery>, QueryRejection>,
) -> Response {
    let base = base.map(|Extension(b)| b.0).unwrap_or_default();
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return dashboard::error_page(StatusCode::BAD_REQUEST, &e.body_text(), &base),
    };
    let filter = match dashboard::Filter::parse(&q) {
        Ok(f) => f,
        Err(why) => return dashboard::error_page(StatusCode::BAD_REQUEST, &why, &base),
    };
    let summaries = match state.data().summaries().await {
        Ok(s) => s,
        Err(e) => {
            let p = store_failed(e);
            return dashboard::error_page(p.status(), &p.detail, &base);
        }
    };
    let shown = match &filter.run {
        Some(id) => summaries.iter().find(|s| s.run_id == *id),
        None => summaries.iter().find(|s| s.is_scheduled()),
    };
    if let (Some(id), None) = (&filter.run, shown) {
        return dashboard::error_page(
            StatusCode::NOT_FOUND,
            &format!("no finalized report for {}", run_named(id)),
            &base,
        );
    }
    let latest = match shown {
        Some(s) => match state.data().report(&s.run_id).await {
            Ok(r) => r,
            Err(e) => {
                let p = store_failed(e);
                return dashboard::error_page(p.status(), &p.detail, &base);
            }
        },
        None => None,
    };
    let page = dashboard::render(&dashboard::View {
        base: &base,
        latest: latest.as_deref(),
        runs: &summaries,
        filter: &filter,
    });
    let resp = html(StatusCode::OK, page);
    match latest {
        Some(r) => label(resp, &r.run_id, r.finalized_at),
        None => resp,
    }
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    api_key: String,
}

fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.secure_cookies() == SecureCookies::Always || auth::is_https(headers)
}

async fn login(
    State(state): State<AppState>,
    base: Option<Extension<BasePath>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let base = base.map(|Extension(b)| b.0).unwrap_or_default();
    let Ok(Form(form)) = form else {
        return dashboard::login_page(
            StatusCode::BAD_REQUEST,
            Some("the form has no API key"),
            &base,
        );
    };
    let Some(entry) = state.keys().verify(form.api_key.trim()) else {
        return dashboard::refusal(&Denied::Invalid, &base);
    };
    let caller = Caller {
        id: entry.id.clone(),
        via: Via::Key,
    };
    let mut resp = match auth::admit(&state, entry, Scope::Read) {
        Err(denied) => dashboard::refusal(&denied, &base),
        Ok(()) => {
            let expires = state.clock().unix_seconds() + auth::SESSION_SECONDS;
            let cookie = auth::sign_session(state.session_key(), entry, expires);
            let mut r = StatusCode::SEE_OTHER.into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                auth::session_set_cookie(&cookie, secure(&state, &headers)),
            );
            r.headers_mut().insert(header::LOCATION, location(&base));
            r
        }
    };
    resp.extensions_mut().insert(caller);
    resp
}

fn location(base: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{base}/")).unwrap_or(HeaderValue::from_static("/"))
}

async fn logout(
    State(state): State<AppState>,
    base: Option<Extension<BasePath>>,
    headers: HeaderMap,
) -> Response {
    let base = base.map(|Extension(b)| b.0).unwrap_or_default();
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        auth::session_clear_cookie(secure(&state, &headers)),
    );
    r.headers_mut().insert(header::LOCATION, location(&base));
    r
}
