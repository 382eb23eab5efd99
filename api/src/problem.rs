//! Errors as RFC 9457 problem details (`application/problem+json`, with
//! `type`, `title`, `status`, `detail` and `instance`).
//!
//! `type` is `about:blank` (the status says it all, and `title` is the
//! status's reason phrase) except where a client may want to tell two
//! causes of one status apart: the two conflicts of a reactivation
//! ([`KEY_DELETED`], [`KEY_ACTIVE`]). `instance` is the request's route
//! ([`instance`], below).
//!
//! A handler returns a [`Problem`]; its response carries the problem as an
//! extension, and the router's outermost layer writes the body with the
//! `instance` (see [`crate::middleware`]). That layer also turns a bare
//! error response (axum's 404 and 405, a body over the size limit) into a
//! problem, so every error the API answers has this shape.
//!
//! `detail` is written for the caller and never carries an internal error
//! text: an S3 or Lambda failure is logged in full with an error id, and the
//! caller gets a 502 naming that id.
//!
//! # What an answer may echo of the request
//!
//! Someone who pastes a secret into a URL (a secret access key, 40 of the
//! base64 alphabet, or a credentials zip's password, 24 of letters, digits
//! and `-_.+=`) must not get it back in an answer, where a proxy, a log or
//! a screen share would keep it. Neither can be told apart from an IAM
//! user name (both fit its alphabet), a secret without `/` or `+` or a
//! password without `.+=` is a well-formed run id as well, and anything
//! at all may sit where a malformed value was. So:
//!
//! - `instance` is the route's template (`/v1/accounts/{account}/users/{user}/keys`),
//!   never the raw path, with only the identifiers whose form no secret has
//!   filled in: an account id (12 digits), an access key id (`AKIA`/`ASIA`
//!   and 16 upper case letters or digits, 20 characters) and a run id of
//!   the coordinator's form (`20260301T000000Z-a1b2c3`), see
//!   [`crate::ids::echoable`]. A path no route matches keeps only the
//!   segments that are literal parts of some route; every other segment is
//!   `{segment}`.
//! - A `detail` names the kind of thing not found ("no such user in account
//!   111122223333 in run ..."), never an unvalidated value: account ids,
//!   key ids and run ids only when echoable as above, a user name only when
//!   the run answering holds that user (then it is a user's name, not
//!   something pasted: the 409s and the 404 of an unknown key of a known
//!   user), and a malformed value never ([`crate::ids`]).
//! - The same goes for the request log ([`crate::middleware::finish`] logs
//!   `instance`, not the path) and headers: the ones that name a run or a
//!   file name only ever carry a run id read from a stored report or given
//!   by the coordinator.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// `type` of a 409: the key was deleted, there is nothing to switch on.
pub const KEY_DELETED: &str = "urn:keyfleet:problem:key-deleted";
/// `type` of a 409: the key is active already.
pub const KEY_ACTIVE: &str = "urn:keyfleet:problem:key-active";

/// The media type of a problem.
pub const MEDIA_TYPE: &str = "application/problem+json";

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// `Retry-After` seconds (429).
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            instance: None,
            retry_after: None,
        }
    }

    pub fn with_type(mut self, kind: &str) -> Problem {
        self.kind = kind.to_string();
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn conflict(kind: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, detail).with_type(kind)
    }
    pub fn too_many_requests(retry_after: u64) -> Problem {
        let mut p = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("rate limit of this API key reached: retry in {retry_after} s"),
        );
        p.retry_after = Some(retry_after);
        p
    }
    /// A 502 for a failure of S3 or the coordinator: the error is logged
    /// with a fresh error id, and only the id reaches the caller.
    pub fn bad_gateway(what: &str, error: &dyn std::fmt::Display) -> Problem {
        let id = hex::encode(rand::random::<[u8; 6]>());
        tracing::error!(error_id = %id, error = %error, "{what} failed");
        Problem::new(
            StatusCode::BAD_GATEWAY,
            format!("{what} failed; the API's log has the cause under error id {id}"),
        )
    }

    /// The problem a bare error status stands for.
    pub fn from_status(status: StatusCode) -> Problem {
        let detail = match status {
            StatusCode::NOT_FOUND => "no such resource: see /openapi.json for the routes",
            StatusCode::METHOD_NOT_ALLOWED => {
                "this method is not allowed here: the Allow header lists those that are"
            }
            StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported media type",
            _ => status.canonical_reason().unwrap_or("error"),
        };
        Problem::new(status, detail)
    }

    /// The finished response: JSON body with `instance`.
    pub fn to_response(&self, instance: Option<&str>) -> Response {
        let mut p = self.clone();
        if p.instance.is_none() {
            p.instance = instance.map(str::to_string);
        }
        let body = serde_json::to_vec(&p).expect("a problem serializes");
        let mut resp = (p.status(), body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
        if let Some(s) = p.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if p.status == 401 {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(crate::auth::WWW_AUTHENTICATE),
            );
        }
        resp
    }
}

/// What a problem's `instance` (and the request log) says of a request:
/// the template of the `route` it matched, with the segments of `path`
/// that fill an echoable parameter ([`crate::ids::echoable`]) put in; for
/// a path no route matched, the path with every segment that is not a
/// literal part of some route replaced by `{segment}`. See the module doc
/// for why the raw path never shows.
pub fn instance(route: Option<&str>, path: &str) -> String {
    let given: Vec<&str> = path.split('/').collect();
    match route {
        Some(route) => {
            let template: Vec<&str> = route.split('/').collect();
            if template.len() != given.len() {
                return route.to_string();
            }
            template
                .iter()
                .zip(&given)
                .map(
                    |(t, g)| match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                        Some(param) if crate::ids::echoable(param, g) => *g,
                        _ => *t,
                    },
                )
                .collect::<Vec<_>>()
                .join("/")
        }
        None => given
            .iter()
            .map(|g| {
                let literal = g.is_empty()
                    || crate::routes::ROUTES
                        .iter()
                        .any(|r| r.path.split('/').any(|t| t == *g && !t.starts_with('{')));
                if literal {
                    *g
                } else {
                    "{segment}"
                }
            })
            .collect::<Vec<_>>()
            .join("/"),
    }
}

/// Marks a response whose body the outer layer writes.
#[derive(Debug, Clone)]
pub(crate) struct Pending(pub Problem);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        // Written now without `instance`; the router's outer layer
        // rewrites it with the request's path.
        let mut resp = self.to_response(None);
        resp.extensions_mut().insert(Pending(self));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_rfc_9457_json() {
        let p = Problem::not_found("no such user in 111122223333");
        let resp = p.to_response(Some("/v1/x"));
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], MEDIA_TYPE);
        let v = serde_json::to_value(Problem {
            instance: Some("/v1/x".into()),
            ..p
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "about:blank",
                "title": "Not Found",
                "status": 404,
                "detail": "no such user in 111122223333",
                "instance": "/v1/x"
            })
        );
    }

    #[test]
    fn conflicts_name_their_cause_and_429_says_when_to_retry() {
        let p = Problem::conflict(KEY_DELETED, "deleted");
        assert_eq!((p.status, p.kind.as_str()), (409, KEY_DELETED));
        let resp = Problem::too_many_requests(7).to_response(None);
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
        let resp = Problem::unauthorized("no key").to_response(None);
        assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    #[test]
    fn a_gateway_failure_tells_the_id_and_not_the_cause() {
        let p = Problem::bad_gateway(
            "reading the report bucket",
            &"AccessDenied for arn:aws:sts::111122223333:assumed-role/x, secret=hunter2",
        );
        assert_eq!(p.status, 502);
        assert!(p.detail.contains("error id"), "{}", p.detail);
        assert!(!p.detail.contains("hunter2") && !p.detail.contains("arn:"));
    }

    #[test]
    fn instance_is_the_route_with_only_echoable_identifiers() {
        let route = "/v1/accounts/{account}/users/{user}/keys/{key_id}/reactivate";
        assert_eq!(
            instance(
                Some(route),
                "/v1/accounts/111122223333/users/alice/keys/AKIAIOSFODNN7EXAMPLE/reactivate"
            ),
            "/v1/accounts/111122223333/users/{user}/keys/AKIAIOSFODNN7EXAMPLE/reactivate"
        );
        let secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY12";
        assert_eq!(
            instance(
                Some(route),
                &format!("/v1/accounts/{secret}/users/{secret}/keys/{secret}/reactivate")
            ),
            route
        );
        assert_eq!(
            instance(Some("/v1/runs/{run_id}"), &format!("/v1/runs/{secret}")),
            "/v1/runs/{run_id}"
        );
        assert_eq!(
            instance(
                Some("/v1/runs/{run_id}"),
                "/v1/runs/20260301T000000Z-a1b2c3"
            ),
            "/v1/runs/20260301T000000Z-a1b2c3"
        );
        assert_eq!(
            instance(None, "/v1/runs/wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            "/v1/runs/{segment}/{segment}/{segment}"
        );
        assert_eq!(instance(None, "/"), "/");
        assert_eq!(instance(None, "/v2/"), "/{segment}/");
    }

    #[test]
    fn bare_statuses_become_problems() {
        let p = Problem::from_status(StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!((p.status, p.title.as_str()), (405, "Method Not Allowed"));
    }
}
