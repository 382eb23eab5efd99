//! The model of the route table: what [`super::ROUTES`] says of each
//! operation (method, parameters, bodies, responses), which the router
//! mounts and [`crate::openapi`] writes out, and the responses and
//! parameters the table's entries share.

use crate::auth::Access;
use crate::problem;
use axum::routing::MethodFilter;

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
    pub(super) fn filter(self) -> MethodFilter {
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
    RunAccountHtml,
    RunJson,
    RunCsv,
    RunJsonl,
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

pub(super) const JSON: &str = "application/json";
pub(super) const CSV: &str = "text/csv";
pub(super) const JSONL: &str = "application/x-ndjson";
const HTML: &str = "text/html";

const PROBLEM: &[Content] = &[Content {
    media: problem::MEDIA_TYPE,
    schema: Some("Problem"),
}];
pub(super) const HTML_PAGE: &[Content] = &[Content {
    media: HTML,
    schema: None,
}];

pub(super) const fn problem(status: u16, description: &'static str) -> Resp {
    Resp {
        status,
        description,
        content: PROBLEM,
        headers: &[],
    }
}
pub(super) const fn page(status: u16, description: &'static str) -> Resp {
    Resp {
        status,
        description,
        content: HTML_PAGE,
        headers: &[],
    }
}

pub(super) const R400: Resp = problem(400, "A malformed identifier or parameter.");
pub(super) const R401: Resp = Resp {
    headers: &["WWW-Authenticate"],
    ..problem(401, "No credential this route takes (a SigV4 signature API Gateway checked, or `Authorization: Bearer <key>`), or not a valid API key.")
};
pub(super) const R403: Resp = problem(
    403,
    "The API key or IAM principal lacks the scope, or the keys secret lists no such principal.",
);
pub(super) const R409: Resp = problem(
    409,
    "The key cannot be switched on: deleted (type urn:keyfleet:problem:key-deleted) or active (type urn:keyfleet:problem:key-active).",
);
pub(super) const R413: Resp = problem(413, "The body is too large.");
pub(super) const R429: Resp = Resp {
    headers: &["Retry-After"],
    ..problem(429, "Rate limit of the API key or IAM principal reached.")
};
pub(super) const R502: Resp = problem(
    502,
    "S3 or the coordinator failed; the detail names the error id in the API's log.",
);
// The browser routes' refusals: pages (the login form for a 401).
pub(super) const B401: Resp = Resp {
    headers: &["WWW-Authenticate"],
    ..page(
        401,
        "The login form: no API key or session, or not a valid one.",
    )
};
pub(super) const B403: Resp = page(403, "The API key lacks the read scope.");
pub(super) const B429: Resp = Resp {
    headers: &["Retry-After"],
    ..page(429, "Rate limit of the API key reached.")
};
pub(super) const R202: Resp = Resp {
    status: 202,
    description: "The coordinator started the run.",
    content: &[Content {
        media: JSON,
        schema: Some("RunStarted"),
    }],
    headers: &["Location"],
};
pub(super) const RUN_HEADERS: &[&str] = &["X-Keyfleet-Run-Id", "X-Keyfleet-Run-Time"];

pub(super) const P_ACCOUNT: Param = Param {
    name: "account",
    location: In::Path,
    description: "AWS account id.",
    ty: Ty::Pattern("^[0-9]{12}$"),
};
pub(super) const P_USER: Param = Param {
    name: "user",
    location: In::Path,
    description: "IAM user name.",
    ty: Ty::Pattern("^[\\w+=,.@-]{1,64}$"),
};
pub(super) const P_KEY: Param = Param {
    name: "key_id",
    location: In::Path,
    description: "Access key id.",
    ty: Ty::Pattern("^(AKIA|ASIA)[A-Z0-9]{16}$"),
};
pub(super) const P_RUN: Param = Param {
    name: "run_id",
    location: In::Path,
    description: "Run id.",
    ty: Ty::Pattern("^[A-Za-z0-9_-]{1,64}$"),
};
/// The last segment of an account's page of a run's HTML report: the
/// router takes a parameter only as a whole segment, so the id and its
/// `.html` are one parameter ([`crate::ids::account_page`]).
pub(super) const P_ACCOUNT_PAGE: Param = Param {
    name: "account_page",
    location: In::Path,
    description: "AWS account id and `.html` (`111122223333.html`).",
    ty: Ty::Pattern("^[0-9]{12}\\.html$"),
};
pub(super) const P_FORMAT: Param = Param {
    name: "format",
    location: In::Query,
    description: "`csv` or `json`; overrides the Accept header (`text/csv` asks for CSV).",
    ty: Ty::OneOf(&["json", "csv"]),
};
