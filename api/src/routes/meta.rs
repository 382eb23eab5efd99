//! The routes that read nothing: liveness and the OpenAPI document.

use crate::middleware::json;
use axum::response::Response;
use serde_json::json;

pub(super) async fn health() -> Response {
    json(&json!({"status": "ok"}))
}

pub(super) async fn openapi_json() -> Response {
    json(crate::openapi::document())
}
