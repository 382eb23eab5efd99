//! Who may call what: keys, IAM principals, scopes, rate limits, browser
//! sessions, CORS.

use crate::fixture::*;
use crate::world::{session_of, Options, World};
use axum::body::Body;
use axum::http::Method;
use keyfleet_api::RateLimit;
use std::time::Duration;

const READS: [&str; 10] = [
    "/v1/runs",
    "/v1/export",
    "/",
    "/v1/runs/20260301T000000Z-aaaaaa",
    "/runs/20260301T000000Z-aaaaaa/report.html",
    "/runs/20260301T000000Z-aaaaaa/accounts/111122223333.html",
    "/runs/20260301T000000Z-aaaaaa/report.json",
    "/runs/20260301T000000Z-aaaaaa/report.csv",
    "/export.csv",
    "/export.json",
];

#[tokio::test]
async fn a_missing_or_wrong_key_is_401() {
    let w = World::new(Options::default()).await;
    let keys_uri = format!("/v1/accounts/{PROD}/users/alice/keys");
    for uri in [keys_uri.as_str(), "/v1/runs", "/v1/export"] {
        let a = w.get(uri, None).await;
        let p = a.problem(401);
        assert!(
            p["detail"].as_str().unwrap().contains("Authorization"),
            "{p}"
        );
        assert_eq!(
            a.header("www-authenticate"),
            Some("Bearer realm=\"keyfleet\"")
        );
        let wrong = format!("{}x", w.reader);
        w.get(uri, Some(&wrong)).await.problem(401);
        w.get(uri, Some("kfk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
            .await
            .problem(401);
    }
    let rotate = format!("/v1/accounts/{PROD}/users/alice/rotate");
    w.post(&rotate, None, "").await.problem(401);
    w.post(&rotate, Some("nope"), "").await.problem(401);
    assert!(w.fake.commands.lock().unwrap().is_empty());
}

#[tokio::test]
async fn scopes_decide_what_a_key_may_do() {
    let w = World::new(Options::default()).await;
    let rotate = format!("/v1/accounts/{PROD}/users/alice/rotate");
    let reactivate = format!("/v1/accounts/{PROD}/users/carol/keys/{CAROL_OLD}/reactivate");
    // A read-only key cannot act.
    let p = w.post(&rotate, Some(&w.reader), "").await.problem(403);
    assert!(p["detail"].as_str().unwrap().contains("rotate"), "{p}");
    w.post(&reactivate, Some(&w.reader), "").await.problem(403);
    assert!(w.fake.commands.lock().unwrap().is_empty());
    // A rotate-only key cannot read.
    for uri in ["/v1/runs", "/v1/export"] {
        w.get(uri, Some(&w.rotator)).await.problem(403);
    }
    let a = w.get("/", Some(&w.rotator)).await;
    assert_eq!(a.status, 403);
    assert!(a.header("content-type").unwrap().starts_with("text/html"));
    // Both scopes: both.
    assert_eq!(w.get("/v1/runs", Some(&w.admin)).await.status, 200);
    assert_eq!(w.post(&rotate, Some(&w.admin), "").await.status, 202);
}

#[tokio::test]
async fn past_the_burst_a_key_waits_and_others_do_not() {
    let w = World::new(Options {
        rate_limit: RateLimit {
            per_minute: 30,
            burst: 3,
        },
        ..Default::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(w.get("/v1/runs", Some(&w.reader)).await.status, 200);
    }
    let a = w.get("/v1/runs", Some(&w.reader)).await;
    a.problem(429);
    // One token every 2 s.
    assert_eq!(a.header("retry-after"), Some("2"));
    // Another key has its own bucket.
    assert_eq!(w.get("/v1/runs", Some(&w.admin)).await.status, 200);
    w.clock.advance(Duration::from_secs(1));
    w.get("/v1/runs", Some(&w.reader)).await.problem(429);
    w.clock.advance(Duration::from_secs(1));
    assert_eq!(w.get("/v1/runs", Some(&w.reader)).await.status, 200);
    // The dashboard says it in HTML.
    let a = w.get("/", Some(&w.reader)).await;
    assert_eq!(a.status, 429);
    assert!(a.header("retry-after").is_some());
    // Public routes are not limited by key.
    for _ in 0..5 {
        assert_eq!(w.get("/healthz", None).await.status, 200);
    }
}

fn cookie_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn a_browser_logs_in_with_a_form_and_keeps_a_cookie_that_is_not_the_key() {
    let w = World::new(Options::default()).await;
    // No key, no session: the login form, as a 401.
    let a = w.get("/", None).await;
    assert_eq!(a.status, 401);
    assert!(a.header("content-type").unwrap().starts_with("text/html"));
    let page = a.text();
    assert!(
        page.contains("action=\"/login\"") && page.contains("name=\"api_key\""),
        "{page}"
    );

    let form = |key: &str| format!("api_key={}", key.replace('+', "%2B"));
    let login = |body: String, proto: Option<&'static str>| {
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        if let Some(p) = proto {
            headers.push(("x-forwarded-proto", p));
        }
        let w = &w;
        async move {
            w.call(Method::POST, "/login", None, &headers, Body::from(body))
                .await
        }
    };
    let a = login(form(&w.reader), None).await;
    assert_eq!(a.status, 303, "{}", a.text());
    assert_eq!(a.header("location"), Some("/"));
    let set = a.header("set-cookie").unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let cookie = cookie_of(&set);
    assert!(
        cookie.starts_with("keyfleet_session=v1.reader."),
        "{cookie}"
    );
    // Over HTTPS the cookie is Secure.
    let a = login(form(&w.reader), Some("https")).await;
    assert!(a.header("set-cookie").unwrap().contains("Secure"));

    // The session reads the browser's routes, in HTML, JSON and CSV.
    let with_cookie = |uri: &'static str, method: Method| {
        let w = &w;
        let cookie = cookie.clone();
        async move {
            w.call(
                method,
                uri,
                None,
                &[("cookie", cookie.as_str())],
                Body::empty(),
            )
            .await
        }
    };
    let a = with_cookie("/", Method::GET).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains(LATEST));
    for uri in [
        "/runs/20260301T000000Z-aaaaaa/report.json",
        "/runs/20260301T000000Z-aaaaaa/report.csv",
        "/export.csv",
        "/export.json",
    ] {
        assert_eq!(with_cookie(uri, Method::GET).await.status, 200, "{uri}");
    }
    // The API's routes take no cookie, under /v1 or /keys/v1 ...
    with_cookie("/v1/runs", Method::GET).await.problem(401);
    with_cookie("/keys/v1/runs", Method::GET).await.problem(401);
    // ... so a session never acts: the actions need a header.
    let a = w
        .call(
            Method::POST,
            &format!("/v1/accounts/{PROD}/users/alice/rotate"),
            None,
            &[("cookie", cookie.as_str())],
            Body::empty(),
        )
        .await;
    a.problem(401);
    assert!(w.fake.commands.lock().unwrap().is_empty());

    // Wrong key: the form again, 401; a key without read: 403.
    let a = login(form("kfk_wrong"), None).await;
    assert_eq!(a.status, 401);
    assert!(a.text().contains("not valid"));
    assert!(a.header("set-cookie").is_none());
    assert_eq!(login(form(&w.rotator), None).await.status, 403);
    assert_eq!(login("nothing=1".into(), None).await.status, 400);

    // The session ends by itself.
    w.clock
        .advance(Duration::from_secs(keyfleet_api::auth::SESSION_SECONDS + 1));
    let a = with_cookie("/", Method::GET).await;
    assert_eq!(a.status, 401);
    assert!(a.text().contains("session has ended"), "{}", a.text());

    // Logging out clears the cookie.
    let a = w
        .call(Method::POST, "/logout", None, &[], Body::empty())
        .await;
    assert_eq!(a.status, 303);
    assert!(a.header("set-cookie").unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn without_configured_origins_there_is_no_cors_header() {
    let w = World::new(Options::default()).await;
    for uri in READS {
        let a = w
            .call(
                Method::GET,
                uri,
                Some(&w.reader),
                &[("origin", "https://evil.example")],
                Body::empty(),
            )
            .await;
        assert!(a.header("access-control-allow-origin").is_none(), "{uri}");
    }
    let a = w
        .call(
            Method::OPTIONS,
            "/v1/runs",
            None,
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
            Body::empty(),
        )
        .await;
    assert_eq!(a.status, 405);
    assert!(a.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn configured_origins_get_cors_and_others_do_not() {
    let w = World::new(Options {
        cors_origins: vec!["https://sec.example.com".into()],
        ..Default::default()
    })
    .await;
    let a = w
        .call(
            Method::OPTIONS,
            "/v1/export",
            None,
            &[
                ("origin", "https://sec.example.com"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "authorization"),
            ],
            Body::empty(),
        )
        .await;
    assert_eq!(a.status, 204);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://sec.example.com")
    );
    assert!(a
        .header("access-control-allow-headers")
        .unwrap()
        .contains("authorization"));
    let a = w
        .call(
            Method::GET,
            "/v1/export",
            Some(&w.reader),
            &[("origin", "https://sec.example.com")],
            Body::empty(),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://sec.example.com")
    );
    assert!(a
        .header("access-control-expose-headers")
        .unwrap()
        .contains("x-keyfleet-run-id"));
    assert!(a.header("access-control-allow-credentials").is_none());
    let a = w
        .call(
            Method::GET,
            "/v1/export",
            Some(&w.reader),
            &[("origin", "https://other.example.com")],
            Body::empty(),
        )
        .await;
    assert!(a.header("access-control-allow-origin").is_none());
}

/// The security review's finding: the module README had operators register
/// each keyfleet key in API Gateway with the same value, and API Gateway
/// returns key values to anyone with `apigateway:GET` (ReadOnlyAccess,
/// SecurityAudit). So whatever arrives in `x-api-key`, the header API
/// Gateway keys travel in, must open nothing: not a read, not a rotation.
#[tokio::test]
async fn a_key_in_x_api_key_the_header_api_gateway_keys_use_opens_nothing() {
    let w = World::new(Options::default()).await;
    let rotate = format!("/v1/accounts/{PROD}/users/alice/rotate");
    let a = w
        .call(
            Method::POST,
            &rotate,
            None,
            &[
                ("x-api-key", &w.admin),
                ("content-type", "application/json"),
            ],
            Body::from("{}"),
        )
        .await;
    assert_eq!(
        a.status,
        401,
        "a rotation with the key API Gateway stores: {}",
        a.text()
    );
    for uri in ["/v1/runs", "/v1/export", "/", "/export.json"] {
        let a = w
            .call(
                Method::GET,
                uri,
                None,
                &[("x-api-key", &w.admin)],
                Body::empty(),
            )
            .await;
        assert_eq!(a.status, 401, "{uri} with x-api-key: {}", a.text());
    }
    assert!(w.fake.commands.lock().unwrap().is_empty());
}

/// Behind API Gateway `/v1` is SigV4: the principal API Gateway verified
/// gets the scopes the keys secret lists for it (for a role's session, the
/// role's), whatever the session is called.
#[tokio::test]
async fn a_listed_roles_session_gets_the_roles_scopes() {
    let w = World::new(Options::default()).await;
    let auditor = session_of("SecurityAuditors", "jane@example.com");
    let responder = session_of("KeyfleetResponders", "pager");
    for uri in [
        "/v1/runs",
        "/v1/export",
        &format!("/v1/accounts/{PROD}/users/alice/keys"),
    ] {
        for who in [&auditor, &responder] {
            let a = w.call_signed(Method::GET, uri, who, Body::empty()).await;
            assert_eq!(a.status, 200, "{who} {uri}: {}", a.text());
        }
    }
    let rotate = format!("/v1/accounts/{PROD}/users/alice/rotate");
    let a = w
        .call_signed(Method::POST, &rotate, &responder, Body::from("{}"))
        .await;
    assert_eq!(a.status, 202, "{}", a.text());
    assert_eq!(
        a.header("location"),
        Some("/v1/runs/20260305T000000Z-ffffff")
    );
    assert_eq!(w.fake.commands.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_read_only_principal_cannot_rotate_or_reactivate() {
    let w = World::new(Options::default()).await;
    let auditor = session_of("SecurityAuditors", "jane");
    let rotate = format!("/v1/accounts/{PROD}/users/alice/rotate");
    let reactivate = format!("/v1/accounts/{PROD}/users/carol/keys/{CAROL_OLD}/reactivate");
    for uri in [&rotate, &reactivate] {
        let p = w
            .call_signed(Method::POST, uri, &auditor, Body::from("{}"))
            .await
            .problem(403);
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.contains("IAM principal") && detail.contains("rotate"),
            "{p}"
        );
    }
    assert!(w.fake.commands.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_unlisted_principal_gets_403_everywhere() {
    let w = World::new(Options::default()).await;
    for principal in [
        // A role the secret does not list; a listed role's name in another
        // account; the account's root; a federated user.
        session_of("Admin", "x"),
        "arn:aws:sts::444455556666:assumed-role/SecurityAuditors/x".to_string(),
        "arn:aws:iam::111122223333:root".to_string(),
        "arn:aws:sts::111122223333:federated-user/x".to_string(),
    ] {
        for uri in ["/v1/runs", "/v1/export"] {
            let p = w
                .call_signed(Method::GET, uri, &principal, Body::empty())
                .await
                .problem(403);
            assert!(
                p["detail"]
                    .as_str()
                    .unwrap()
                    .contains("not one the API accepts"),
                "{p}"
            );
        }
        let rotate = format!("/v1/accounts/{PROD}/users/alice/rotate");
        w.call_signed(Method::POST, &rotate, &principal, Body::from("{}"))
            .await
            .problem(403);
    }
    assert!(w.fake.commands.lock().unwrap().is_empty());
}

/// API key clients reach the same operations under /keys/v1 (API Gateway
/// sends that path to the function unauthenticated, and the function
/// checks the Bearer key); a started run's Location keeps the door.
#[tokio::test]
async fn keys_open_the_same_operations_under_keys_v1() {
    let w = World::new(Options::default()).await;
    for uri in [
        "/keys/v1/runs".to_string(),
        "/keys/v1/export".to_string(),
        format!("/keys/v1/runs/{LATEST}"),
        format!("/keys/v1/accounts/{PROD}/users/alice/keys"),
    ] {
        assert_eq!(w.get(&uri, Some(&w.reader)).await.status, 200, "{uri}");
        w.get(&uri, None).await.problem(401);
        w.get(&uri, Some("kfk_nope")).await.problem(401);
        w.get(&uri, Some(&w.rotator)).await.problem(403);
    }
    let rotate = format!("/keys/v1/accounts/{PROD}/users/alice/rotate");
    w.post(&rotate, Some(&w.reader), "").await.problem(403);
    let a = w.post(&rotate, Some(&w.admin), "").await;
    assert_eq!(a.status, 202, "{}", a.text());
    assert_eq!(
        a.header("location"),
        Some("/keys/v1/runs/20260305T000000Z-ffffff")
    );
    // The same answers as /v1 (where `keyfleet serve` takes keys too).
    let via_v1 = w.get("/v1/export", Some(&w.reader)).await.json();
    assert_eq!(
        w.get("/keys/v1/export", Some(&w.reader)).await.json(),
        via_v1
    );
}
