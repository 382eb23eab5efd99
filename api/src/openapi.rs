//! `/openapi.json`: an OpenAPI 3.1 document written from the route table
//! ([`crate::routes::ROUTES`]), so the document and the router cannot name
//! different routes, methods or statuses. The schemas of the bodies are
//! written here by hand, next to the types they describe.
//!
//! Each `/v1` operation is in the document twice, as the router mounts it
//! ([`crate::routes::mounted`]): at `/v1/...` for SigV4-signed requests of
//! IAM principals (`sigv4`, what API Gateway lets through there), and at
//! `/keys/v1/...`, operation id suffixed `WithKey`, for API keys
//! (`bearer`). Client generators thus see which credential each path
//! takes; see [`crate::auth`] for why there are two.

use crate::auth::Access;
use crate::routes::{mounted, In, Route, Ty, KEYS_PREFIX};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// The document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn ty(t: Ty) -> Value {
    match t {
        Ty::Str => json!({"type": "string"}),
        Ty::Pattern(p) => json!({"type": "string", "pattern": p}),
        Ty::Int { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        Ty::OneOf(v) => json!({"type": "string", "enum": v}),
    }
}

/// `r` as mounted at `path` (its own, or its twin under [`KEYS_PREFIX`]).
fn operation(r: &Route, path: &str) -> Value {
    let twin = path != r.path;
    let mut op = Map::new();
    let id = if twin {
        format!("{}WithKey", r.operation_id)
    } else {
        r.operation_id.to_string()
    };
    op.insert("operationId".into(), json!(id));
    op.insert("summary".into(), json!(r.summary));
    if let Access::Api(_) = r.access {
        let how = if twin {
            format!(
                "For API keys: `Authorization: Bearer <key>`. The same operation as `{}`, which behind API Gateway takes SigV4-signed requests only.",
                r.path
            )
        } else {
            format!(
                "Behind API Gateway: SigV4-signed requests only (authorization AWS_IAM); the signer's IAM principal, or its role, must be in the keys secret's principals with the scope. API keys use `{KEYS_PREFIX}{}`. `keyfleet serve` (no gateway) takes only API keys, here too.",
                r.path
            )
        };
        op.insert("description".into(), json!(how));
    }
    let params: Vec<Value> = r
        .params
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "in": match p.location { In::Path => "path", In::Query => "query" },
                "required": p.location == In::Path,
                "description": p.description,
                "schema": ty(p.ty),
            })
        })
        .collect();
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some(b) = r.body {
        op.insert(
            "requestBody".into(),
            json!({
                "required": false,
                "content": { b.media: { "schema": schema_ref(b.schema, b.media) } },
            }),
        );
    }
    let security = match r.access {
        Access::Public => json!([]),
        Access::Api(s) if twin => json!([{ "bearer": [s.as_str()] }]),
        Access::Api(s) => json!([{ "sigv4": [s.as_str()] }, { "bearer": [s.as_str()] }]),
        Access::KeyOrSession(s) => json!([{ "bearer": [s.as_str()] }, { "session": [s.as_str()] }]),
    };
    op.insert("security".into(), security);
    if let Some(s) = r.access.scope() {
        op.insert("x-keyfleet-scope".into(), json!(s.as_str()));
    }
    let mut responses = Map::new();
    for resp in r.responses {
        let mut o = Map::new();
        o.insert("description".into(), json!(resp.description));
        if !resp.content.is_empty() {
            let content: Map<String, Value> = resp
                .content
                .iter()
                .map(|c| {
                    (
                        c.media.to_string(),
                        json!({ "schema": schema_ref(c.schema, c.media) }),
                    )
                })
                .collect();
            o.insert("content".into(), Value::Object(content));
        }
        if !resp.headers.is_empty() {
            let headers: Map<String, Value> = resp
                .headers
                .iter()
                .map(|h| {
                    (
                        h.to_string(),
                        json!({ "$ref": format!("#/components/headers/{h}") }),
                    )
                })
                .collect();
            o.insert("headers".into(), Value::Object(headers));
        }
        responses.insert(resp.status.to_string(), Value::Object(o));
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

fn schema_ref(name: Option<&str>, media: &str) -> Value {
    match name {
        Some(n) => json!({ "$ref": format!("#/components/schemas/{n}") }),
        None if media.ends_with("json") => json!({ "type": "object" }),
        None => json!({ "type": "string" }),
    }
}

fn build() -> Value {
    let mut paths = Map::new();
    for (path, r) in mounted() {
        let op = operation(r, &path);
        let entry = paths
            .entry(path)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(r.verb.as_str().to_string(), op);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "keyfleet API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The security team's API over keyfleet's reports: runs, keys as of the end of the latest scheduled run, the key inventory, emergency rotation and reactivation. Reads name their run (X-Keyfleet-Run-Id, X-Keyfleet-Run-Time). Errors are RFC 9457 problem details. No answer ever holds a secret.",
        },
        "paths": paths,
        "components": components(),
    })
}

fn components() -> Value {
    let time = json!({"type": "string", "format": "date-time"});
    let time_or_null = json!({"type": ["string", "null"], "format": "date-time"});
    let text_or_null = json!({"type": ["string", "null"]});
    json!({
        "securitySchemes": {
            "sigv4": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "x-amazon-apigateway-authtype": "awsSigv4",
                "description": "A request signed with AWS Signature Version 4 (service execute-api) by an IAM principal, checked by API Gateway (authorization AWS_IAM); the function gives the principal the scopes the keys secret's principals list for it, or for its role (an assumed-role session). An unlisted principal gets 403.",
            },
            "bearer": {
                "type": "http", "scheme": "bearer",
                "description": "An API key (`kfk_...`) with the operation's scope (read or rotate): `Authorization: Bearer <key>`. Never registered in API Gateway; x-api-key is not read.",
            },
            "session": {
                "type": "apiKey", "in": "cookie", "name": "keyfleet_session",
                "description": "The dashboard's signed session cookie, from POST /login: only the browser's GET routes outside /v1 (/, /runs/{run_id}/report.{html,json,csv}, /export.csv, /export.json). No /v1 or /keys/v1 route takes it.",
            },
        },
        "headers": {
            "X-Keyfleet-Run-Id": { "description": "The run the answer comes from.", "schema": {"type": "string"} },
            "X-Keyfleet-Run-Time": { "description": "That run's finalized_at.", "schema": time },
            "Retry-After": { "description": "Seconds until the rate limit lets a request through.", "schema": {"type": "integer"} },
            "Location": { "description": "Where to go next (the started run, or the dashboard).", "schema": {"type": "string"} },
            "Set-Cookie": { "description": "The session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS).", "schema": {"type": "string"} },
            "WWW-Authenticate": { "description": "The API key scheme (Bearer).", "schema": {"type": "string"} },
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "description": "RFC 9457 problem details.",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "instance": {
                        "type": "string",
                        "description": "The route the request matched, e.g. /v1/accounts/111122223333/users/{user}/keys: account ids, access key ids and run ids of the coordinator's form as given, every other parameter as its placeholder. Never the raw path, which may hold a pasted secret; for a path no route matches, its unknown segments are {segment}.",
                    },
                },
            },
            "Health": { "type": "object", "properties": { "status": {"const": "ok"} } },
            "RunStarted": {
                "type": "object", "required": ["run_id"],
                "properties": { "run_id": {"type": "string"} },
            },
            "RotateRequest": {
                "type": "object", "additionalProperties": false,
                "properties": {
                    "key_id": {"type": "string", "pattern": "^(AKIA|ASIA)[A-Z0-9]{16}$", "description": "The key to replace; needed when the user has two active keys."},
                    "deactivate_old": {"type": "boolean", "default": false, "description": "Deactivate the replaced key at once."},
                },
            },
            "LoginForm": {
                "type": "object", "required": ["api_key"],
                "properties": { "api_key": {"type": "string"} },
            },
            "RunSummary": {
                "type": "object",
                "required": ["run_id", "created_at", "finalized_at", "dry_run", "mode", "complete", "problems", "totals", "compliance"],
                "properties": {
                    "run_id": {"type": "string"},
                    "created_at": time,
                    "finalized_at": time,
                    "dry_run": {"type": "boolean"},
                    "mode": {"type": "object", "description": "{\"kind\": \"scheduled\"}, {\"kind\": \"rotate\", \"user\", ...} or {\"kind\": \"reactivate\", \"user\", \"key_id\"}."},
                    "complete": {"type": "boolean"},
                    "problems": {"type": "boolean"},
                    "totals": {"type": "object", "description": "The report's totals (accounts by state, users, keys, active keys, verdicts, actions)."},
                    "compliance": { "$ref": "#/components/schemas/Compliance" },
                },
            },
            "Compliance": {
                "type": "object",
                "description": "CIS AWS Foundations key rotation: active keys at most 90 days old, as the run found them.",
                "properties": {
                    "active_keys": {"type": "integer"},
                    "active_keys_within_90d": {"type": "integer"},
                    "percent": {"type": ["number", "null"]},
                    "percent_text": {"type": "string"},
                    "recorded": {"type": "boolean", "description": "false: the report predates the figure, recomputed from its keys."},
                },
            },
            "RunList": {
                "type": "object", "required": ["runs"],
                "properties": { "runs": { "type": "array", "items": { "$ref": "#/components/schemas/RunSummary" } } },
            },
            "RunReport": {
                "type": "object",
                "description": "The consolidated report, as stored (reports/<run_id>/report.json).",
                "required": ["run_id", "created_at", "finalized_at", "accounts", "totals"],
            },
            "KeyView": {
                "type": "object",
                "properties": {
                    "key_id": {"type": "string"},
                    "status": {"enum": ["Active", "Inactive"]},
                    "created": time,
                    "age_days": {"type": "integer"},
                    "last_used": time_or_null,
                    "last_used_service": text_or_null,
                    "last_used_region": text_or_null,
                    "used_from": {
                        "type": "array",
                        "description": "where the key was used from since its replacement was created (CloudTrail), when the run found it still in use; absent otherwise",
                        "items": {
                            "type": "object",
                            "properties": {
                                "source_ip": {"type": "string"},
                                "user_agent": {"type": "string"},
                                "service": {"type": "string"},
                                "region": {"type": "string"},
                                "last_seen": time,
                                "calls": {"type": "integer"},
                            },
                        },
                    },
                },
            },
            "SecretLocation": {
                "type": "object",
                "properties": {
                    "kept_in": {"enum": ["secrets_manager", "none"]},
                    "account_id": {"type": "string"},
                    "secret_name": {"type": "string"},
                    "emailed": {"type": "boolean"},
                    "description": {"type": "string"},
                },
            },
            "UserKeys": {
                "type": "object",
                "properties": {
                    "run_id": {"type": "string"},
                    "run_created_at": time,
                    "run_finalized_at": time,
                    "as_of": time,
                    "account_id": {"type": "string"},
                    "account_name": {"type": "string"},
                    "user_name": {"type": "string"},
                    "path": {"type": "string"},
                    "verdict": {"type": "string"},
                    "keys": { "type": "array", "items": { "$ref": "#/components/schemas/KeyView" } },
                    "current_secret": { "$ref": "#/components/schemas/SecretLocation" },
                },
            },
            "ExportRow": {
                "type": "object",
                "properties": {
                    "account_id": {"type": "string"},
                    "account_name": {"type": "string"},
                    "user_name": {"type": "string"},
                    "path": {"type": "string"},
                    "key_id": {"type": "string"},
                    "status": {"enum": ["Active", "Inactive"]},
                    "created": time,
                    "age_days": {"type": "integer"},
                    "last_used": time_or_null,
                    "last_used_service": text_or_null,
                    "last_used_region": text_or_null,
                    "verdict": {"type": "string"},
                },
            },
            "Export": {
                "type": "object",
                "properties": {
                    "run_id": {"type": "string"},
                    "run_created_at": time,
                    "run_finalized_at": time,
                    "keys": { "type": "array", "items": { "$ref": "#/components/schemas/ExportRow" } },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::ROUTES;

    /// Every `$ref` points at a component that exists.
    #[test]
    fn every_reference_resolves() {
        fn walk(v: &Value, doc: &Value, seen: &mut usize) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        let ptr = r.trim_start_matches('#');
                        assert!(doc.pointer(ptr).is_some(), "{r} does not resolve");
                        *seen += 1;
                    }
                    m.values().for_each(|x| walk(x, doc, seen));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, doc, seen)),
                _ => {}
            }
        }
        let doc = document();
        let mut seen = 0;
        walk(doc, doc, &mut seen);
        assert!(seen > 20, "{seen}");
    }

    #[test]
    fn path_parameters_are_the_templates_names() {
        for r in ROUTES {
            let names: Vec<&str> = r
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            let params: Vec<&str> = r
                .params
                .iter()
                .filter(|p| p.location == In::Path)
                .map(|p| p.name)
                .collect();
            assert_eq!(names, params, "{}", r.path);
            assert!(
                r.responses.iter().any(|s| s.status < 400),
                "{} has no success",
                r.path
            );
            if r.access.scope().is_some() {
                for s in [401, 403, 429] {
                    assert!(
                        r.responses.iter().any(|x| x.status == s),
                        "{} lacks {s}",
                        r.path
                    );
                }
            }
        }
        let ids: std::collections::BTreeSet<_> = ROUTES.iter().map(|r| r.operation_id).collect();
        assert_eq!(ids.len(), ROUTES.len(), "operation ids are unique");
        // Twins included, as the document has them.
        let doc = document();
        let mut all = std::collections::BTreeSet::new();
        for (path, r) in mounted() {
            let id = doc["paths"][&path][r.verb.as_str()]["operationId"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(all.insert(id), "{path}: duplicate operation id");
        }
    }

    #[test]
    fn v1_is_sigv4_or_bearer_and_its_twin_bearer_only() {
        let doc = document();
        let schemes = |path: &str, verb: &str| -> Vec<String> {
            doc["paths"][path][verb]["security"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|s| s.as_object().unwrap().keys().cloned())
                .collect()
        };
        let mut twins = 0;
        for r in ROUTES.iter().filter(|r| crate::routes::is_api_path(r.path)) {
            assert_eq!(schemes(r.path, r.verb.as_str()), ["sigv4", "bearer"]);
            let twin = format!("{KEYS_PREFIX}{}", r.path);
            assert_eq!(schemes(&twin, r.verb.as_str()), ["bearer"]);
            twins += 1;
        }
        assert_eq!(twins, 6);
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert!(doc["components"]["securitySchemes"]["apiKey"].is_null());
    }
}
