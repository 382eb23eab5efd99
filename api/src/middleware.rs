//! The layers around every route, outermost first:
//!
//! 1. [`finish`]: writes problem bodies with the request's route as
//!    `instance` ([`crate::problem::instance`]; never the raw path, which
//!    may hold a pasted secret), and turns bare error statuses, such as
//!    axum's 404 and 405, into problems; then logs the request: method,
//!    that same `instance`, status, the caller (a key's id, or an IAM
//!    principal's ARN as API Gateway verified it), time taken. Never a
//!    header value, so never a key, a signature or a session cookie, and
//!    never the raw path.
//! 2. [`headers`]: `Cache-Control: no-store` (answers hold account data),
//!    `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
//!    and a Content-Security-Policy on HTML that allows no script, no
//!    frame and forms to this origin only.
//! 3. [`cors`]: for an `Origin` on the configured allow-list, the CORS
//!    headers (and the answer to a preflight); for any other origin, or
//!    with no list configured, nothing.
//!
//! Each route then checks its caller ([`crate::auth`]) in its own layer,
//! set from the route table.

use crate::auth::Caller;
use crate::problem::{Pending, Problem, MEDIA_TYPE};
use crate::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;

/// The CSP of the dashboard and the login page.
pub const DASHBOARD_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The CSP of a stored HTML report (self-contained, inline CSS and SVG).
pub const REPORT_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; sandbox";

pub async fn finish(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    // The router's layers run once a route is matched, so its template is
    // known here (not for the fallback: no route matched).
    let path = crate::problem::instance(
        req.extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
        req.uri().path(),
    );
    let started = Instant::now();
    let mut resp = next.run(req).await;
    let problem = match resp.extensions_mut().remove::<Pending>() {
        Some(Pending(p)) => Some(p),
        None if (resp.status().is_client_error() || resp.status().is_server_error())
            && !resp.headers().contains_key(header::CONTENT_TYPE) =>
        {
            Some(Problem::from_status(resp.status()))
        }
        None => None,
    };
    if let Some(mut p) = problem {
        p.instance.get_or_insert_with(|| path.clone());
        let fresh = p.to_response(None);
        let (parts, body) = fresh.into_parts();
        *resp.body_mut() = body;
        *resp.status_mut() = parts.status;
        resp.headers_mut().remove(header::CONTENT_LENGTH);
        for (name, value) in parts.headers.iter() {
            resp.headers_mut().insert(name.clone(), value.clone());
        }
    }
    let status = resp.status().as_u16();
    let caller = resp
        .extensions()
        .get::<Caller>()
        .map(|c| c.id.clone())
        .unwrap_or_else(|| "-".into());
    let ms = started.elapsed().as_millis() as u64;
    if status >= 500 {
        tracing::warn!(caller = %caller, method = %method, path = %path, status, ms, "request");
    } else {
        tracing::info!(caller = %caller, method = %method, path = %path, status, ms, "request");
    }
    resp
}

pub async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let html = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html && !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DASHBOARD_CSP),
        );
    }
    if html {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    resp
}

/// Headers a script on an allowed origin may read.
const EXPOSED: &str = "x-keyfleet-run-id, x-keyfleet-run-time, retry-after, location";

pub async fn cors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| state.cors_origins().iter().any(|a| a == *o))
        .cloned();
    let Some(origin) = origin else {
        return next.run(req).await;
    };
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut resp = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, accept"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        r
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.append(header::VARY, HeaderValue::from_static("origin"));
    if !preflight {
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED),
        );
    }
    resp
}

/// A JSON answer.
pub fn json(value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(value).expect("answers serialize");
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// A CSV answer, offered as a download named `filename`.
pub fn csv(body: Vec<u8>, filename: &str) -> Response {
    let mut resp = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        )],
        body,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// An HTML answer.
pub fn html(status: StatusCode, markup: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        Body::from(markup),
    )
        .into_response()
}

/// The media type problems are written in (re-exported for tests).
pub const PROBLEM: &str = MEDIA_TYPE;
