//! The dashboard as a browser without script sees it.

use crate::fixture::*;
use crate::world::{Options, World};

/// The `tbody` rows of the users table.
fn user_rows(page: &str) -> Vec<String> {
    let start = page.find("id=\"user-table\"").expect("a users table");
    let table = &page[start..];
    let end = table.find("</table>").unwrap();
    table[..end]
        .split("<tr data-account=")
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_dashboard_shows_the_latest_scheduled_run_and_every_report() {
    let w = World::new(Options::default()).await;
    let a = w.get("/", Some(&w.reader)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.header("content-type").unwrap().starts_with("text/html"));
    let csp = a.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(a.header("x-keyfleet-run-id"), Some(LATEST));
    let page = a.text();
    assert!(!page.contains("<script"), "no script");
    // Summary, states, chart, trend, the runs with their links: to the
    // stored reports and the inventory outside /v1, never under it (API
    // Gateway wants its key there, which a browser cannot send).
    for ext in ["json", "csv", "html"] {
        for id in [LATEST, EARLIER, DRY, ROTATION] {
            assert!(
                page.contains(&format!("href=\"/runs/{id}/report.{ext}\"")),
                "{id} {ext}: {page}"
            );
        }
    }
    assert!(page.contains(&format!(
        "id=\"latest-run\" href=\"/runs/{LATEST}/report.json\""
    )));
    assert!(page.contains("href=\"/export.csv\"") && page.contains("href=\"/export.json\""));
    assert!(!page.contains("/v1"), "a link under /v1: {page}");
    assert!(!page.contains(RUNNING));
    assert!(page.contains("missing") && page.contains("Gone quiet"));
    assert!(page.contains("id=\"age\"") && page.contains("class=\"bar\""));
    assert!(page.contains("id=\"trend\"") && page.contains("<polyline"));
    // Two scheduled runs in the trend; the dry run and the rotation are not.
    let trend = &page[page.find("id=\"trend-table\"").unwrap()..];
    let trend = &trend[..trend.find("</table>").unwrap()];
    assert!(trend.contains(LATEST) && trend.contains(EARLIER));
    assert!(!trend.contains(DRY) && !trend.contains(ROTATION));
    assert!(
        trend.contains("75.0%") && trend.contains("50.0%"),
        "{trend}"
    );
    // The form a browser test drives.
    assert!(
        page.contains("<select id=\"account\" name=\"account\""),
        "{page}"
    );
    assert!(page.contains("<button id=\"apply\" type=\"submit\""));
    assert!(page.contains("<form class=\"filters\" id=\"filters\" method=\"get\" action=\"/\""));
    assert_eq!(user_rows(&page).len(), 5);
}

/// Every `href` of a page.
fn links(page: &str) -> Vec<String> {
    page.split("href=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].replace("&amp;", "&"))
        .collect()
}

#[tokio::test]
async fn every_link_of_the_dashboard_opens_with_the_session_alone() {
    let w = World::new(Options::default()).await;
    let cookie = w.login(&w.reader).await;
    let a = w.get_with_cookie("/", &cookie).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let links = links(&a.text());
    // The dashboard itself; the latest run's three reports and the
    // inventory twice in the summary; three reports and the dashboard's
    // view of it for each of 4 runs.
    assert_eq!(links.len(), 1 + 3 + 2 + 4 * 4, "{links:?}");
    for link in links {
        assert!(link.starts_with('/') && !link.starts_with("/v1"), "{link}");
        let a = w.get_with_cookie(&link, &cookie).await;
        assert_eq!(a.status, 200, "{link}: {}", a.text());
    }
}

#[tokio::test]
async fn the_filters_narrow_the_users() {
    let w = World::new(Options::default()).await;
    let rows = |q: &'static str| {
        let w = &w;
        async move {
            let a = w.get(&format!("/?{q}"), Some(&w.reader)).await;
            assert_eq!(a.status, 200, "{q}: {}", a.text());
            user_rows(&a.text())
        }
    };
    let sandbox = rows("account=444455556666&verdict=&min_age=").await;
    assert_eq!(sandbox.len(), 1);
    assert!(sandbox[0].contains("dave") && sandbox[0].contains(DAVE_KEY));
    let page = w
        .get("/?account=444455556666", Some(&w.reader))
        .await
        .text();
    assert!(
        page.contains("<option value=\"444455556666\" selected"),
        "the choice stays selected"
    );

    let cleaned = rows("verdict=cleaned").await;
    assert_eq!(cleaned.len(), 1);
    assert!(
        cleaned[0].contains("bob")
            && cleaned[0].contains(BOB_KEPT)
            && !cleaned[0].contains(BOB_DELETED)
    );

    // Oldest key at least 100 days: carol (101 days); alice's is 96.
    let old = rows("min_age=100").await;
    assert_eq!(old.len(), 1);
    assert!(old[0].contains("carol"));
    assert_eq!(rows("min_age=90").await.len(), 2);
    assert_eq!(
        rows("account=111122223333&min_age=0").await.len(),
        3,
        "eve has no keys"
    );

    for bad in ["account=12", "verdict=great", "min_age=old"] {
        let a = w.get(&format!("/?{bad}"), Some(&w.reader)).await;
        assert_eq!(a.status, 400, "{bad}");
        assert!(a.header("content-type").unwrap().starts_with("text/html"));
    }
}

#[tokio::test]
async fn with_no_run_yet_the_dashboard_says_so() {
    let w = World::new(Options {
        reports: vec![],
        ..Default::default()
    })
    .await;
    let a = w.get("/", Some(&w.reader)).await;
    assert_eq!(a.status, 200);
    assert!(a.text().contains("No scheduled run has been finalized yet"));
}

/// `?run=` shows a given finalized run (linked as "view" from the run
/// list), keeps it through the filter form, and a run that is not
/// finalized is a 404 page.
#[tokio::test]
async fn the_dashboard_shows_a_chosen_run() {
    let w = World::new(Options::default()).await;
    let page = w.get("/", Some(&w.reader)).await.text();
    assert!(
        page.contains(&format!("href=\"/?run={EARLIER}\"")),
        "{page}"
    );
    let a = w
        .get(&format!("/?run={EARLIER}&account={PROD}"), Some(&w.reader))
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-keyfleet-run-id"), Some(EARLIER));
    let page = a.text();
    assert!(
        page.contains(&format!(
            "<input type=\"hidden\" name=\"run\" value=\"{EARLIER}\">"
        )),
        "{page}"
    );
    assert!(
        page.contains("old-timer"),
        "a user only the earlier run has"
    );
    assert_eq!(
        w.get(&format!("/?run={RUNNING}"), Some(&w.reader))
            .await
            .status,
        404
    );
    assert_eq!(w.get("/?run=a.b", Some(&w.reader)).await.status, 400);
}
