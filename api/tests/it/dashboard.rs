//! The dashboard as a browser without script sees it.

use crate::fixture::*;
use crate::world::{Options, World};
use keyfleet_api::dashboard::PAGE_ROWS;

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
    // The dashboard itself; the latest run's four reports (JSON, HTML,
    // CSV, JSON Lines) and the inventory twice in the summary; three
    // reports and the dashboard's view of it for each of 4 runs.
    assert_eq!(links.len(), 1 + 4 + 2 + 4 * 4, "{links:?}");
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

/// The user name of a row of [`user_rows`].
fn user_name(row: &str) -> String {
    let td = row.split("<td>").nth(2).expect("a user cell");
    td[..td.find('<').unwrap()].to_string()
}

/// The `href` of the link with this id, if the page has one.
fn link(page: &str, id: &str) -> Option<String> {
    let at = page.find(&format!("id=\"{id}\""))?;
    let start = page[..at].rfind('<')?;
    let tag = &page[start..start + page[start..].find('>')?];
    let href = tag.split("href=\"").nth(1)?;
    Some(href[..href.find('"')?].replace("&amp;", "&"))
}

/// A link as the browser requests it (without its fragment).
fn requested(href: &str) -> &str {
    href.split('#').next().unwrap()
}

fn crowded_world() -> Options {
    Options {
        reports: vec![crowded()],
        ..Default::default()
    }
}

/// 500 accounts of 100 users: the page shows one page of the users table
/// at a time and links to the next and the previous one.
#[tokio::test]
async fn the_users_table_shows_one_page_at_a_time() {
    let w = World::new(crowded_world()).await;
    let total = 2 * PAGE_ROWS + CROWDED_EXTRA;
    let a = w.get("/", Some(&w.reader)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let page = a.text();
    let rows = user_rows(&page);
    assert_eq!(rows.len(), PAGE_ROWS);
    assert!(
        page.contains(&format!("rows 1–{PAGE_ROWS} of {total} users")),
        "{page}"
    );
    assert_eq!(link(&page, "prev"), None);
    assert_eq!(link(&page, "next").as_deref(), Some("/?page=2#users"));

    // Following the next links: every user once, in report order, on
    // pages of PAGE_ROWS and a last one with the remainder.
    let mut seen: Vec<String> = rows.iter().map(|r| user_name(r)).collect();
    let mut next = link(&page, "next");
    let mut last = String::new();
    let mut pages = 1;
    while let Some(href) = next {
        let a = w.get(requested(&href), Some(&w.reader)).await;
        assert_eq!(a.status, 200, "{href}: {}", a.text());
        last = a.text();
        let rows = user_rows(&last);
        assert!(rows.len() <= PAGE_ROWS, "{href}");
        seen.extend(rows.iter().map(|r| user_name(r)));
        next = link(&last, "next");
        pages += 1;
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..PAGE_ROWS + CROWDED_EXTRA)
        .map(|i| format!("user-{i:04}"))
        .chain((0..PAGE_ROWS).map(|i| format!("sbx-{i:04}")))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(user_rows(&last).len(), CROWDED_EXTRA);
    assert!(
        last.contains(&format!(
            "rows {}–{total} of {total} users",
            2 * PAGE_ROWS + 1
        )),
        "{last}"
    );
    assert_eq!(link(&last, "prev").as_deref(), Some("/?page=2#users"));
    let page2 = w.get("/?page=2", Some(&w.reader)).await.text();
    assert_eq!(link(&page2, "prev").as_deref(), Some("/?page=1#users"));
    assert_eq!(link(&page2, "next").as_deref(), Some("/?page=3#users"));
}

#[tokio::test]
async fn the_page_links_keep_the_filter_and_the_run() {
    let w = World::new(crowded_world()).await;
    let filter = format!("run={CROWDED}&account={PROD}&verdict=compliant&min_age=30");
    let a = w.get(&format!("/?{filter}"), Some(&w.reader)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-keyfleet-run-id"), Some(CROWDED));
    let page = a.text();
    let rows = user_rows(&page);
    assert_eq!(rows.len(), PAGE_ROWS);
    assert!(rows.iter().all(|r| r.starts_with(&format!("\"{PROD}\""))));
    let matching = PAGE_ROWS + CROWDED_EXTRA;
    assert!(
        page.contains(&format!("rows 1–{PAGE_ROWS} of {matching} users")),
        "{page}"
    );
    let next = link(&page, "next").expect("a next link");
    assert_eq!(next, format!("/?{filter}&page=2#users"));

    let a = w.get(requested(&next), Some(&w.reader)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-keyfleet-run-id"), Some(CROWDED));
    let page = a.text();
    assert_eq!(user_rows(&page).len(), CROWDED_EXTRA);
    assert_eq!(link(&page, "next"), None);
    assert_eq!(
        link(&page, "prev"),
        Some(format!("/?{filter}&page=1#users"))
    );
    // The form keeps the filter, and applying it starts at page 1 again.
    assert!(page.contains("<option value=\"111122223333\" selected"));
    assert!(!page.contains("name=\"page\""), "{page}");

    // Exactly a page: no link.
    let a = w.get("/?verdict=no_keys", Some(&w.reader)).await;
    let page = a.text();
    assert_eq!(user_rows(&page).len(), PAGE_ROWS);
    assert!(page.contains(&format!("rows 1–{PAGE_ROWS} of {PAGE_ROWS} users")));
    assert_eq!((link(&page, "prev"), link(&page, "next")), (None, None));
}

/// `page` is 1-based: 0 or not a number is a 400 like the other filter
/// parameters; a page past the last (the run or the filter may have
/// changed under a kept link) is an empty page linking back to the last.
#[tokio::test]
async fn a_page_is_a_number_from_one_and_past_the_end_an_empty_page() {
    let w = World::new(crowded_world()).await;
    for bad in [
        "page=0",
        "page=x",
        "page=-1",
        "page=1.5",
        "page=1e3",
        "page=99999999999999999999999",
    ] {
        let a = w.get(&format!("/?{bad}"), Some(&w.reader)).await;
        assert_eq!(a.status, 400, "{bad}");
        assert!(a.header("content-type").unwrap().starts_with("text/html"));
        assert!(a.text().contains("page"), "{bad}: {}", a.text());
    }
    // Empty: the first.
    let page = w.get("/?page=", Some(&w.reader)).await.text();
    assert_eq!(user_rows(&page).len(), PAGE_ROWS);

    for (q, back) in [
        ("page=4", "/?page=3#users"),
        ("page=18446744073709551615", "/?page=3#users"),
        (
            "account=111122223333&page=3",
            "/?account=111122223333&page=2#users",
        ),
    ] {
        let a = w.get(&format!("/?{q}"), Some(&w.reader)).await;
        assert_eq!(a.status, 200, "{q}: {}", a.text());
        let page = a.text();
        assert!(user_rows(&page).is_empty(), "{q}");
        assert_eq!(link(&page, "back").as_deref(), Some(back), "{q}");
        assert_eq!(
            (link(&page, "prev"), link(&page, "next")),
            (None, None),
            "{q}"
        );
    }

    // The fixture's handful of users: page 1 is all of them, no links;
    // page 2 is past the end.
    let w = World::new(Options::default()).await;
    let page = w.get("/?page=1", Some(&w.reader)).await.text();
    assert_eq!(user_rows(&page).len(), 5);
    assert!(page.contains("rows 1–5 of 5 users"), "{page}");
    assert_eq!((link(&page, "prev"), link(&page, "next")), (None, None));
    let page = w.get("/?page=2", Some(&w.reader)).await.text();
    assert!(user_rows(&page).is_empty());
    assert_eq!(link(&page, "back").as_deref(), Some("/?page=1#users"));
    // Nothing matches: one empty page, nothing to go back to.
    let page = w.get("/?verdict=exempt", Some(&w.reader)).await.text();
    assert!(user_rows(&page).is_empty());
    assert!(page.contains("0 users"), "{page}");
    assert_eq!(link(&page, "back"), None);
}

#[test]
fn the_document_lists_the_dashboard_s_page_parameter() {
    let doc = keyfleet_api::openapi::document();
    let names: Vec<&str> = doc["paths"]["/"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["run", "account", "verdict", "min_age", "page"]);
    let page = &doc["paths"]["/"]["get"]["parameters"][4]["description"];
    assert!(
        page.as_str()
            .unwrap()
            .contains(&format!("at most {PAGE_ROWS} users")),
        "{page}"
    );
}

/// An organization with more accounts than a page: the accounts table
/// shows one page of them, those that need attention first, and says how
/// many there are and where the others are.
#[tokio::test]
async fn the_accounts_table_shows_one_page_problems_first() {
    let ids: Vec<String> = (0..PAGE_ROWS + 20)
        .map(|i| format!("{:012}", 100_000_000_000u64 + i as u64))
        .collect();
    let silent = ids.last().unwrap().clone();
    let accounts: Vec<(&str, &str, Option<serde_json::Value>)> = ids
        .iter()
        .map(|id| {
            let users = (*id != silent).then(|| many_users("u", 1, true));
            (id.as_str(), "Member", users)
        })
        .collect();
    let run = report(
        "20260301T000000Z-acc001",
        time::macros::datetime!(2026-03-01 00:00 UTC),
        keyfleet_protocol::JobMode::Scheduled,
        false,
        accounts,
    );
    let w = World::new(Options {
        reports: vec![run],
        ..Default::default()
    })
    .await;
    let page = w.get("/", Some(&w.reader)).await.text();
    let start = page.find("id=\"accounts\"").expect("the accounts section");
    let section = &page[start..start + page[start..].find("</section>").unwrap()];
    let rows: Vec<&str> = section.split("<tr>").skip(2).collect();
    assert_eq!(rows.len(), PAGE_ROWS, "{section}");
    assert!(
        rows[0].contains(&silent),
        "the missing account first: {}",
        rows[0]
    );
    assert!(
        section.contains(&format!("The first {PAGE_ROWS} of {} accounts", ids.len())),
        "{section}"
    );
    assert!(section.contains("/runs/20260301T000000Z-acc001/report.html"));
}
