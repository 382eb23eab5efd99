//! The browser's routes outside `/v1`: a run's stored reports and the key
//! inventory, read with the dashboard's session cookie (in production API
//! Gateway wants a SigV4 signature on every `/v1` path, which a browser
//! following a link cannot make), while `/v1` and `/keys/v1` take only a
//! header (a Bearer key, or behind API Gateway a SigV4 signature).

use crate::fixture::*;
use crate::world::{Answer, Options, World};
use keyfleet_api::keys;
use keyfleet_api::routes::ROUTES;
use keyfleet_reports::render;
use keyfleet_reports::store;

/// The browser's read routes of the fixture's latest run.
fn browser_reads() -> Vec<String> {
    vec![
        format!("/runs/{LATEST}/report.json"),
        format!("/runs/{LATEST}/report.csv"),
        format!("/runs/{LATEST}/report.html"),
        "/export.csv".to_string(),
        "/export.json".to_string(),
    ]
}

/// No answer holds a credential or a secret: not the session cookie, not
/// a key's hash, not an access key's secret (the key itself is checked by
/// every call, see `world::send_checked`).
fn assert_no_secret(w: &World, a: &Answer, cookie: &str, uri: &str) {
    let text = a.text();
    let session = cookie.split_once('=').unwrap().1;
    assert!(!text.contains(session), "{uri} holds the session cookie");
    for k in w.keys() {
        assert!(!text.contains(&keys::hash(k)), "{uri} holds a key's hash");
    }
    for word in ["secret_access_key", "SecretAccessKey", "sealed"] {
        assert!(!text.contains(word), "{uri} holds {word}");
    }
}

#[tokio::test]
async fn a_session_reads_the_stored_reports_and_the_inventory() {
    let w = World::new(Options::default()).await;
    let cookie = w.login(&w.reader).await;

    // The stored JSON report, byte for byte as the coordinator wrote it.
    let uri = format!("/runs/{LATEST}/report.json");
    let a = w.get_with_cookie(&uri, &cookie).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.header("x-keyfleet-run-id"), Some(LATEST));
    assert_eq!(
        a.header("x-keyfleet-run-time"),
        Some("2026-03-01T00:10:00Z")
    );
    assert_eq!(a.body, crate::world::stored_json(&latest()));
    assert_eq!(a.json()["run_id"], LATEST);
    assert_no_secret(&w, &a, &cookie, &uri);

    // The stored CSV report, as a download.
    let uri = format!("/runs/{LATEST}/report.csv");
    let a = w.get_with_cookie(&uri, &cookie).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("text/csv; charset=utf-8"));
    let disposition = a.header("content-disposition").unwrap();
    assert!(
        disposition.starts_with("attachment") && disposition.contains(LATEST),
        "{disposition}"
    );
    assert_eq!(a.header("x-keyfleet-run-id"), Some(LATEST));
    assert_eq!(a.body, render::to_csv(&latest()));
    assert_no_secret(&w, &a, &cookie, &uri);

    // The other runs' too: a dry run, a one-user run.
    for id in [EARLIER, DRY, ROTATION] {
        for ext in ["json", "csv", "html"] {
            let uri = format!("/runs/{id}/report.{ext}");
            let a = w.get_with_cookie(&uri, &cookie).await;
            assert_eq!(a.status, 200, "{uri}: {}", a.text());
            assert_eq!(a.header("x-keyfleet-run-id"), Some(id), "{uri}");
        }
    }

    // The inventory: what /v1/export answers an API key.
    let a = w.get_with_cookie("/export.csv", &cookie).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        a.header("content-disposition"),
        Some(format!("attachment; filename=\"keyfleet-keys-{LATEST}.csv\"").as_str())
    );
    assert_eq!(a.header("x-keyfleet-run-id"), Some(LATEST));
    let api = w.get("/v1/export?format=csv", Some(&w.reader)).await;
    assert_eq!(api.status, 200);
    assert_eq!(a.body, api.body);
    assert_no_secret(&w, &a, &cookie, "/export.csv");

    let a = w.get_with_cookie("/export.json", &cookie).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.header("x-keyfleet-run-id"), Some(LATEST));
    let api = w.get("/v1/export", Some(&w.reader)).await;
    assert_eq!(a.json(), api.json());
    assert_eq!(a.json()["keys"].as_array().unwrap().len(), 6);
    assert_no_secret(&w, &a, &cookie, "/export.json");

    // A query does not change the format: the path names it.
    let a = w.get_with_cookie("/export.csv?format=json", &cookie).await;
    assert_eq!(a.header("content-type"), Some("text/csv; charset=utf-8"));
}

#[tokio::test]
async fn the_browser_routes_take_the_header_too_and_need_the_read_scope() {
    let w = World::new(Options::default()).await;
    for uri in browser_reads() {
        let a = w.get(&uri, Some(&w.reader)).await;
        assert_eq!(a.status, 200, "{uri}: {}", a.text());
        assert_eq!(a.header("x-keyfleet-run-id"), Some(LATEST), "{uri}");
        // A key without read: the browser's refusal page.
        let a = w.get(&uri, Some(&w.rotator)).await;
        assert_eq!(a.status, 403, "{uri}");
        assert!(a.header("content-type").unwrap().starts_with("text/html"));
    }
    // A session of a key with both scopes reads as well.
    let cookie = w.login(&w.admin).await;
    assert_eq!(w.get_with_cookie("/export.csv", &cookie).await.status, 200);
}

#[tokio::test]
async fn without_a_session_the_browser_routes_are_401_and_v1_refuses_the_cookie() {
    let w = World::new(Options::default()).await;
    for uri in browser_reads() {
        // Nothing: the login form, as a 401.
        let a = w.get(&uri, None).await;
        assert_eq!(a.status, 401, "{uri}");
        assert!(a.header("content-type").unwrap().starts_with("text/html"));
        assert!(a.header("www-authenticate").is_some(), "{uri}");
        let page = a.text();
        assert!(
            page.contains("action=\"/login\"") && !page.contains(LATEST),
            "{uri}: {page}"
        );
        // A cookie that is not a session.
        let a = w
            .get_with_cookie(&uri, "keyfleet_session=v1.reader.99999999999.00")
            .await;
        assert_eq!(a.status, 401, "{uri}");
        assert!(a.text().contains("session has ended"), "{uri}");
    }

    // /v1 takes no cookie (API Gateway wants a signature there anyway).
    let cookie = w.login(&w.reader).await;
    for uri in [
        "/v1/runs".to_string(),
        format!("/v1/runs/{LATEST}"),
        format!("/v1/runs/{LATEST}?format=csv"),
        format!("/v1/accounts/{PROD}/users/alice/keys"),
        "/v1/export".to_string(),
        "/v1/export?format=csv".to_string(),
    ] {
        let p = w.get_with_cookie(&uri, &cookie).await.problem(401);
        assert!(
            p["detail"].as_str().unwrap().contains("Authorization"),
            "{p}"
        );
        assert_eq!(w.get(&uri, Some(&w.reader)).await.status, 200, "{uri}");
    }

    // The session ends by itself, on the browser routes too.
    w.clock.advance(std::time::Duration::from_secs(
        keyfleet_api::auth::SESSION_SECONDS + 1,
    ));
    let a = w.get_with_cookie("/export.json", &cookie).await;
    assert_eq!(a.status, 401);
    assert!(a.text().contains("session has ended"));
}

#[tokio::test]
async fn missing_reports_are_404_and_malformed_run_ids_400() {
    let w = World::new(Options::default()).await;
    let cookie = w.login(&w.reader).await;
    for ext in ["json", "csv"] {
        // Started, not finalized: nothing rendered yet.
        let p = w
            .get_with_cookie(&format!("/runs/{RUNNING}/report.{ext}"), &cookie)
            .await
            .problem(404);
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains(&ext.to_ascii_uppercase()),
            "{p}"
        );
        w.get_with_cookie(
            &format!("/runs/20990101T000000Z-zzzzzz/report.{ext}"),
            &cookie,
        )
        .await
        .problem(404);
        w.get_with_cookie(&format!("/runs/a.b/report.{ext}"), &cookie)
            .await
            .problem(400);
    }

    // Without a scheduled run there is no inventory.
    let w = World::new(Options {
        reports: vec![dry()],
        ..Default::default()
    })
    .await;
    let cookie = w.login(&w.reader).await;
    for uri in ["/export.csv", "/export.json"] {
        let p = w.get_with_cookie(uri, &cookie).await.problem(404);
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("no finalized scheduled run"),
            "{p}"
        );
    }
}

/// PROD's page of the latest run's HTML report, stored as the coordinator
/// stores a large run's (`world::put_report`; the fixture's run is small,
/// its report one page).
async fn put_account_page(w: &World) -> Vec<u8> {
    let r = latest();
    let page = render::account_page(&r, &r.accounts[0]).into_bytes();
    w.store()
        .put(
            &store::account_page_key(LATEST, PROD),
            page.clone(),
            "text/html",
        )
        .await
        .unwrap();
    page
}

#[tokio::test]
async fn a_session_reads_an_account_s_page_of_the_html_report() {
    let w = World::new(Options::default()).await;
    let stored = put_account_page(&w).await;
    let uri = format!("/runs/{LATEST}/accounts/{PROD}.html");
    let cookie = w.login(&w.reader).await;
    let a = w.get_with_cookie(&uri, &cookie).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = a.header("content-security-policy").unwrap();
    assert!(
        csp.contains("sandbox") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(a.header("x-keyfleet-run-id"), Some(LATEST));
    assert_eq!(
        a.header("x-keyfleet-run-time"),
        Some("2026-03-01T00:10:00Z")
    );
    assert_eq!(a.body, stored);
    assert!(!a.text().contains("<script"));
    assert_no_secret(&w, &a, &cookie, &uri);

    // A Bearer key reads it too; a key without read gets the refusal
    // page, no credential the login form.
    let a = w.get(&uri, Some(&w.reader)).await;
    assert_eq!((a.status.as_u16(), &a.body), (200, &stored));
    let a = w.get(&uri, Some(&w.rotator)).await;
    assert_eq!(a.status, 403);
    assert!(a.header("content-type").unwrap().starts_with("text/html"));
    let a = w.get(&uri, None).await;
    assert_eq!(a.status, 401);
    assert!(a.header("www-authenticate").is_some());
    assert!(a.text().contains("action=\"/login\"") && !a.text().contains(LATEST));
}

/// `href`s of a page that start with `prefix`.
fn hrefs(page: &str, prefix: &str) -> Vec<String> {
    page.split("href=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_string())
        .filter(|h| h.starts_with(prefix))
        .collect()
}

/// A large run's summary page links each account's page relatively
/// (`accounts/<id>.html`); from `/runs/{run_id}/report.html` the browser
/// asks the route for it, with the session alone, and the page's way back
/// (`../report.html`) is the summary again.
#[tokio::test]
async fn the_summary_page_s_account_links_open_with_the_session() {
    let w = World::new(Options {
        reports: vec![split()],
        ..Default::default()
    })
    .await;
    let cookie = w.login(&w.reader).await;
    let summary = format!("/runs/{SPLIT}/report.html");
    let a = w.get_with_cookie(&summary, &cookie).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let mut links = hrefs(&a.text(), "accounts/");
    links.sort();
    links.dedup();
    assert_eq!(
        links,
        [
            format!("accounts/{PROD}.html"),
            format!("accounts/{SANDBOX}.html")
        ]
    );
    let r = split();
    for (link, account) in links.iter().zip(&r.accounts) {
        let uri = format!("/runs/{SPLIT}/{link}");
        let a = w.get_with_cookie(&uri, &cookie).await;
        assert_eq!(a.status, 200, "{uri}: {}", a.text());
        assert_eq!(a.header("x-keyfleet-run-id"), Some(SPLIT));
        assert_eq!(a.text(), render::account_page(&r, account));
        assert_eq!(hrefs(&a.text(), "../"), ["../report.html"], "{uri}");
    }
}

#[tokio::test]
async fn missing_account_pages_are_404_and_malformed_account_ids_400() {
    let w = World::new(Options::default()).await;
    put_account_page(&w).await;
    let cookie = w.login(&w.reader).await;
    for uri in [
        // An account without a page, a run not finalized, an unknown run.
        format!("/runs/{LATEST}/accounts/{SANDBOX}.html"),
        format!("/runs/{RUNNING}/accounts/{PROD}.html"),
        format!("/runs/20990101T000000Z-zzzzzz/accounts/{PROD}.html"),
    ] {
        let p = w.get_with_cookie(&uri, &cookie).await.problem(404);
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("HTML page of account"),
            "{uri}: {p}"
        );
    }
    for uri in [
        format!("/runs/{LATEST}/accounts/11112222333.html"),
        format!("/runs/{LATEST}/accounts/abcdefghijkl.html"),
        format!("/runs/{LATEST}/accounts/.html"),
        format!("/runs/{LATEST}/accounts/{PROD}"),
        format!("/runs/{LATEST}/accounts/{PROD}.json"),
        format!("/runs/{LATEST}/accounts/{PROD}.html.html"),
        format!("/runs/a.b/accounts/{PROD}.html"),
    ] {
        let p = w.get_with_cookie(&uri, &cookie).await.problem(400);
        assert!(
            p["detail"].as_str().unwrap().contains("account")
                || p["detail"].as_str().unwrap().contains("run id"),
            "{uri}: {p}"
        );
    }
}

/// The decision of the crate doc, held against the route table: `/v1` is
/// for signed principals and Bearer keys, the session opens only the
/// browser's GETs outside it.
#[test]
fn only_the_browser_routes_outside_v1_take_the_session() {
    use keyfleet_api::auth::Access;
    let doc = keyfleet_api::openapi::document();
    let mut browser = Vec::new();
    for r in ROUTES {
        let schemes: Vec<String> = doc["paths"][r.path][r.verb.as_str()]["security"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s.as_object().unwrap().keys().cloned())
            .collect();
        if r.path.starts_with("/v1") {
            assert!(
                matches!(r.access, Access::Api(_)),
                "{} takes more than a header",
                r.path
            );
            assert_eq!(schemes, ["sigv4", "bearer"], "{}", r.path);
        }
        if let Access::KeyOrSession(_) = r.access {
            assert_eq!(r.verb.as_str(), "get", "{}", r.path);
            assert!(r.html, "{} refuses a browser with a problem", r.path);
            assert_eq!(schemes, ["bearer", "session"], "{}", r.path);
            browser.push(r.path);
        }
    }
    assert_eq!(
        browser,
        [
            "/",
            "/runs/{run_id}/report.html",
            "/runs/{run_id}/accounts/{account_page}",
            "/runs/{run_id}/report.json",
            "/runs/{run_id}/report.csv",
            "/runs/{run_id}/report.jsonl",
            "/export.csv",
            "/export.json",
        ]
    );
}
