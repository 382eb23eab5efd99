//! API Gateway REST proxy events through the Lambda's handler, by
//! `lambda_http`'s own request and response conversion. A `/v1` event
//! carries the signer's ARN in `requestContext.identity.userArn`, as API
//! Gateway writes it for an `AWS_IAM` method; other events carry none.

use crate::fixture::*;
use crate::world::{session_of, Options, World};
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
    event_as(method, path, query, headers, body, None)
}

/// An event of a request API Gateway authorized with SigV4 as `user_arn`.
fn signed(method: &str, path: &str, user_arn: &str, body: Option<&str>) -> LambdaRequest {
    event_as(
        method,
        path,
        Value::Null,
        json!({"Content-Type": "application/json"}),
        body,
        Some(user_arn),
    )
}

fn event_as(
    method: &str,
    path: &str,
    query: Value,
    headers: Value,
    body: Option<&str>,
    user_arn: Option<&str>,
) -> LambdaRequest {
    let mut identity = json!({"sourceIp": "192.0.2.1", "userAgent": "curl/8"});
    if let Some(arn) = user_arn {
        let account = arn.split(':').nth(4).unwrap_or_default();
        identity["userArn"] = json!(arn);
        identity["caller"] = json!("AROAEXAMPLEEXAMPLE:session");
        identity["accountId"] = json!(account);
        identity["accessKey"] = json!("ASIAEXAMPLEEXAMPLE00");
    }
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
            "identity": identity,
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
    let auditor = session_of("SecurityAuditors", "jane");
    let v = handle(
        &w,
        event_as(
            "GET",
            "/v1/runs",
            json!({"limit": "1"}),
            json!({}),
            None,
            Some(&auditor),
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
    let responder = session_of("KeyfleetResponders", "pager");
    let v = handle(&w, signed("POST", &uri, &responder, None)).await;
    assert_eq!(v["statusCode"], 409, "{v}");

    // API keys: the same operations under /keys/v1, with a Bearer key.
    let v = handle(
        &w,
        event(
            "GET",
            "/keys/v1/runs",
            json!({"limit": "1"}),
            json!({"Authorization": format!("Bearer {}", w.reader)}),
        ),
    )
    .await;
    assert_eq!(v["statusCode"], 200, "{v}");
}

/// The principal is API Gateway's `userArn` and nothing else: a listed
/// role's session acts with the role's scopes, a read-only role's cannot
/// rotate, an unlisted principal is 403, and an unsigned event is 401
/// whatever its headers claim.
#[tokio::test]
async fn the_signer_api_gateway_verified_is_mapped_to_its_scopes() {
    let w = World::new(Options::default()).await;
    let rotate = format!("/v1/accounts/{PROD}/users/alice/rotate");
    let auditor = session_of("SecurityAuditors", "jane");
    let v = handle(&w, signed("POST", &rotate, &auditor, Some("{}"))).await;
    assert_eq!(v["statusCode"], 403, "{v}");
    let v = handle(
        &w,
        signed("POST", &rotate, &session_of("Admin", "x"), Some("{}")),
    )
    .await;
    assert_eq!(v["statusCode"], 403, "{v}");
    let v = handle(
        &w,
        event_with_body(
            "POST",
            &rotate,
            Value::Null,
            json!({
                "Content-Type": "application/json",
                "x-amzn-principal-arn": session_of("KeyfleetResponders", "forged"),
                "x-keyfleet-principal": session_of("KeyfleetResponders", "forged"),
            }),
            Some("{}"),
        ),
    )
    .await;
    assert_eq!(v["statusCode"], 401, "{v}");
    assert!(w.fake.commands.lock().unwrap().is_empty());

    let responder = session_of("KeyfleetResponders", "pager");
    let v = handle(&w, signed("POST", &rotate, &responder, Some("{}"))).await;
    assert_eq!(v["statusCode"], 202, "{v}");
    assert_eq!(
        v["multiValueHeaders"]["location"][0], "/prod/v1/runs/20260305T000000Z-ffffff",
        "{v}"
    );
    // A key client's run is at its own door.
    let v = handle(
        &w,
        event_with_body(
            "POST",
            &format!("/keys{rotate}"),
            Value::Null,
            json!({"Authorization": format!("Bearer {}", w.admin), "Content-Type": "application/json"}),
            Some("{}"),
        ),
    )
    .await;
    assert_eq!(v["statusCode"], 202, "{v}");
    assert_eq!(
        v["multiValueHeaders"]["location"][0], "/prod/keys/v1/runs/20260305T000000Z-ffffff",
        "{v}"
    );
    assert_eq!(w.fake.commands.lock().unwrap().len(), 2);
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
            json!({"Authorization": format!("Bearer {}", w.reader)}),
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
    // Gateway lets them through unauthenticated); /v1 wants a signature.
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

/// The users table's page links keep the stage and the filter.
#[tokio::test]
async fn the_users_pages_link_within_the_stage() {
    let w = World::new(Options {
        reports: vec![crowded()],
        ..Default::default()
    })
    .await;
    let bearer = json!({"Authorization": format!("Bearer {}", w.reader)});
    let v = handle(&w, event("GET", "/", Value::Null, bearer.clone())).await;
    assert_eq!(v["statusCode"], 200, "{v}");
    let page = v["body"].as_str().unwrap();
    assert!(page.contains("href=\"/prod/?page=2#users\""), "{page}");
    let v = handle(
        &w,
        event("GET", "/", json!({"account": PROD, "page": "2"}), bearer),
    )
    .await;
    assert_eq!(v["statusCode"], 200, "{v}");
    let page = v["body"].as_str().unwrap();
    assert!(
        page.contains(&format!("href=\"/prod/?account={PROD}&amp;page=1#users\"")),
        "{page}"
    );
}

/// What a read-only auditor could do before: read the gateway's API key
/// value (`aws apigateway get-api-key --include-value`, the keyfleet key
/// itself) and send it. An event without a SigV4 identity that carries that
/// value in `x-api-key` starts nothing.
#[tokio::test]
async fn the_value_api_gateway_stores_does_not_start_a_rotation() {
    let w = World::new(Options::default()).await;
    let uri = format!("/v1/accounts/{PROD}/users/alice/rotate");
    let v = handle(
        &w,
        event_with_body(
            "POST",
            &uri,
            Value::Null,
            json!({"x-api-key": w.admin, "Content-Type": "application/json"}),
            Some("{}"),
        ),
    )
    .await;
    assert_eq!(v["statusCode"], 401, "{v}");
    assert!(w.fake.commands.lock().unwrap().is_empty());
}
