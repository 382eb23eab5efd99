//! `/openapi.json` against the router: the same routes, methods and
//! statuses. (Every call of the other tests also checks its status against
//! the document, see `world::send_checked`.)

use crate::world::{Options, World};
use axum::body::Body;
use axum::http::Method;
use keyfleet_api::routes::mounted;
use serde_json::Value;
use std::collections::BTreeSet;

fn sample(path: &str) -> String {
    path.replace("{account}", "111122223333")
        .replace("{user}", "alice")
        .replace("{key_id}", "AKIAALICEOLD00000001")
        .replace("{run_id}", "20260301T000000Z-aaaaaa")
        .replace("{account_page}", "111122223333.html")
}

#[tokio::test]
async fn the_document_and_the_router_agree() {
    let w = World::new(Options::default()).await;
    let served = w.get("/openapi.json", None).await.json();
    assert_eq!(&served, keyfleet_api::openapi::document());
    let paths = served["paths"].as_object().unwrap();
    // Every route of the table, and the /v1 ones again under /keys.
    let table: BTreeSet<String> = mounted().into_iter().map(|(p, _)| p).collect();
    assert!(table.contains("/keys/v1/runs") && table.contains("/v1/runs"));
    assert_eq!(paths.keys().cloned().collect::<BTreeSet<_>>(), table);

    for (path, ops) in paths {
        let ops = ops.as_object().unwrap();
        let uri = sample(path);
        for (method, op) in ops {
            let m: Method = method.to_ascii_uppercase().parse().unwrap();
            // Without credentials: routed (the matched route is the
            // document's path) and answered with a documented status.
            let a = w.call(m.clone(), &uri, None, &[], Body::empty()).await;
            assert_eq!(a.route.as_deref(), Some(path.as_str()), "{method} {uri}");
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured {
                assert_eq!(a.status, 401, "{method} {path} without a key");
            } else {
                assert!(a.status.as_u16() < 500, "{method} {path}: {}", a.status);
            }
            // With a key holding both scopes: still a documented status
            // (send_checked asserts it).
            let a = w.call(m, &uri, Some(&w.admin), &[], Body::empty()).await;
            assert!(op["responses"][a.status.as_str()].is_object());
            // Every error is a problem or an HTML page.
            for (status, resp) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let content = resp["content"].as_object().unwrap();
                    assert!(
                        content.contains_key("application/problem+json")
                            || content.contains_key("text/html"),
                        "{method} {path} {status}"
                    );
                }
            }
        }
        // Every other method: 405, with Allow naming the documented ones.
        for m in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            if ops.contains_key(&m.as_str().to_ascii_lowercase()) {
                continue;
            }
            let a = w
                .call(m.clone(), &uri, Some(&w.admin), &[], Body::empty())
                .await;
            a.problem(405);
            let allow = a.header("allow").unwrap_or_default().to_string();
            for documented in ops.keys() {
                assert!(
                    allow.contains(&documented.to_ascii_uppercase()),
                    "{m} {path}: Allow {allow}"
                );
            }
        }
    }
    // A path the document does not have is not routed.
    let a = w.get("/v1/accounts", Some(&w.admin)).await;
    assert_eq!((a.status.as_u16(), a.route.as_deref()), (404, None));
}

#[test]
fn every_operation_says_who_may_call_it() {
    let doc = keyfleet_api::openapi::document();
    for (path, r) in mounted() {
        let op: &Value = &doc["paths"][&path][r.verb.as_str()];
        let scope = op["x-keyfleet-scope"].as_str();
        assert_eq!(scope, r.access.scope().map(|s| s.as_str()), "{path}");
        let statuses: BTreeSet<u16> = r.responses.iter().map(|s| s.status).collect();
        let documented: BTreeSet<u16> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(statuses, documented);
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["sigv4"]["x-amazon-apigateway-authtype"],
        "awsSigv4"
    );
}
