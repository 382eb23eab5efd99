//! API Gateway REST proxy events through the Lambda's handler, by
//! `lambda_http`'s own request and response conversion.

use crate::fixture::*;
use crate::world::{Options, World};
use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent, Service};
use serde_json::{json, Value};

fn event(method: &str, path: &str, query: Value, headers: Value) -> LambdaRequest {
    event_with_body(method, path, query, headers, None)
}

fn event_with_body(
    method: &str,
    path: &str,
    query: Value,
    headers: Value,
    body: Option<&str>,
) -> LambdaRequest {
    let mut h = json!({
        "Host": "abc123.execute-api.us-east-1.amazonaws.com",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Port": "443",
    });
    for (k, v) in headers.as_object().unwrap() {
        h[k] = v.clone();
    }
    let multi: serde_json::Map<String, Value> = h
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), json!([v])))
        .collect();
    serde_json::from_value(json!({
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": h,
        "multiValueHeaders": multi,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": null,
        "pathParameters": {"proxy": path.trim_start_matches('/')},
        "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012",
            "resourceId": "us4z18",
            "stage": "prod",
            "requestId": "41b45ea3-70b5-11e6-b7bd-69b5aaebc7d9",
            "identity": {"sourceIp": "192.0.2.1", "userAgent": "curl/8"},
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "apiId": "abc123",
            "path": format!("/prod{path}"),
        },
        "body": body,
        "isBase64Encoded": false,
    }))
    .expect("an API Gateway REST proxy event")
}

async fn handle(w: &World, ev: LambdaRequest) -> Value {
    let mut svc = lambda_http::Adapter::from(keyfleet_api::lambda::app(w.state.clone()));
    let resp = svc
        .call(LambdaEvent::new(ev, Context::default()))
        .await
        .expect("the handler answers");
    let v = serde_json::to_value(resp).unwrap();
    let body = v["body"].as_str().unwrap_or_default();
    for k in w.keys() {
        assert!(!body.contains(k), "an answer holds an API key");
    }
    v
}

#[tokio::test]
async fn a_rest_api_event_is_routed_without_its_stage() {
    let w = World::new(Options::default()).await;
    let v = handle(
        &w,
        event(
            "GET",
            "/v1/runs",
            json!({"limit": "1"}),
            json!({"x-api-key": w.reader}),
        ),
    )
    .await;
    assert_eq!(v["statusCode"], 200, "{v}");
    let body: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["runs"].as_array().unwrap().len(), 1);
    assert_eq!(body["runs"][0]["run_id"], ROTATION);

    let v = handle(&w, event("GET", "/v1/export", Value::Null, json!({}))).await;
    assert_eq!(v["statusCode"], 401, "{v}");
    let body: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["instance"], "/v1/export");

    let uri = format!("/v1/accounts/{PROD}/users/bob/keys/{BOB_DELETED}/reactivate");
    let v = handle(
        &w,
        event("POST", &uri, Value::Null, json!({"x-api-key": w.admin})),
    )
    .await;
    assert_eq!(v["statusCode"], 409, "{v}");
}

#[tokio::test]
async fn pages_behind_a_stage_link_within_it() {
    let w = World::new(Options::default()).await;
    let v = handle(
        &w,
        event(
            "GET",
            "/",
            json!({"account": SANDBOX}),
            json!({"x-api-key": w.reader}),
        ),
    )
    .await;
    assert_eq!(v["statusCode"], 200, "{v}");
    let page = v["body"].as_str().unwrap();
    assert!(
        page.contains(&format!("href=\"/prod/runs/{LATEST}/report.json\"")),
        "{page}"
    );
    assert!(page.contains("href=\"/prod/export.csv\""), "{page}");
    assert!(!page.contains("/v1"), "a link under /v1: {page}");
    assert!(page.contains("action=\"/prod/\""));
    assert!(page.contains("dave") && !page.contains(">alice<"));
    // The login form posts within the stage too; over API Gateway's HTTPS
    // the cookie is Secure, and the browser goes on to the stage's root.
    let v = handle(&w, event("GET", "/", Value::Null, json!({}))).await;
    assert_eq!(v["statusCode"], 401);
    assert!(v["body"]
        .as_str()
        .unwrap()
        .contains("action=\"/prod/login\""));
    let form = format!("api_key={}", w.reader);
    let v = handle(
        &w,
        event_with_body(
            "POST",
            "/login",
            Value::Null,
            json!({"Content-Type": "application/x-www-form-urlencoded"}),
            Some(&form),
        ),
    )
    .await;
    assert_eq!(v["statusCode"], 303, "{v}");
    let headers = v["multiValueHeaders"].to_string() + &v["headers"].to_string();
    assert!(
        headers.contains("Secure") && headers.contains("HttpOnly"),
        "{headers}"
    );
    assert!(headers.contains("/prod/"), "{headers}");

    // With that cookie alone the browser reads the routes outside /v1 (API
    // Gateway lets them through without its key); /v1 wants the header.
    let set = v["multiValueHeaders"]["set-cookie"][0]
        .as_str()
        .or(v["headers"]["set-cookie"].as_str())
        .unwrap_or_else(|| panic!("no set-cookie: {v}"));
    let cookie = set.split(';').next().unwrap().to_string();
    for path in [
        format!("/runs/{LATEST}/report.json"),
        format!("/runs/{LATEST}/report.csv"),
        "/export.csv".to_string(),
        "/export.json".to_string(),
    ] {
        let v = handle(
            &w,
            event("GET", &path, Value::Null, json!({"Cookie": cookie})),
        )
        .await;
        assert_eq!(v["statusCode"], 200, "{path}: {v}");
    }
    let v = handle(
        &w,
        event("GET", "/v1/export", Value::Null, json!({"Cookie": cookie})),
    )
    .await;
    assert_eq!(v["statusCode"], 401, "{v}");
}
