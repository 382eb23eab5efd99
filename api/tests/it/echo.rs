//! A secret pasted into a URL is never echoed: not in a problem's
//! `instance`, not in a `detail`, not in an HTML page, not in a header.
//!
//! Every request of every test is checked for the values of [`PASTED`]
//! ([`crate::world::send_checked`]); the tests here put each of them in
//! every path parameter of every route (and in paths no route matches),
//! raw as pasted and percent-encoded.

use crate::fixture::*;
use crate::world::{Options, World};
use axum::body::Body;
use keyfleet_api::routes::{In, ROUTES};

/// What someone might paste into a URL by mistake.
pub const PASTED: &[&str] = &[
    // An AWS secret access key (40 of the base64 alphabet): its `/` splits
    // the path when pasted raw.
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    // One without `/` or `+` (about a quarter of them): a valid IAM user
    // name and a valid run id.
    "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY12",
    // A credentials zip's password (24 of the coordinator's alphabet,
    // letters, digits and `-_.+=`): always a valid IAM user name.
    "Kp7-xQ2_mN9.vR4+tY6=wZ8h",
    // One of those without `.+=`: a valid run id too.
    "Kp7xQ2mN9vR4tY6wZ8hJ3a-b",
];

/// The value, and its pieces between the characters a URL or a parser may
/// split it at, that are long enough to be telling (none of them occurs in
/// the fixture's data).
pub fn pieces(pasted: &str) -> Vec<&str> {
    let mut out = vec![pasted];
    out.extend(
        pasted
            .split(['/', '+', '=', '.'])
            .filter(|p| p.len() >= 7 && *p != pasted),
    );
    out
}

/// As pasted, and percent-encoded the way a client library would.
fn spellings(pasted: &str) -> Vec<String> {
    let encoded = pasted
        .replace('/', "%2F")
        .replace('+', "%2B")
        .replace('=', "%3D");
    let mut out = vec![pasted.to_string()];
    if encoded != pasted {
        out.push(encoded);
    }
    out
}

/// A valid value of each path parameter (of the fixture: the read
/// succeeds unless the pasted value is the problem).
fn valid(param: &str) -> &'static str {
    match param {
        "account" => PROD,
        "user" => "alice",
        "key_id" => ALICE_OLD,
        "run_id" => LATEST,
        "account_page" => PROD_PAGE,
        other => panic!("no valid value for path parameter {other}"),
    }
}

#[tokio::test]
async fn no_route_echoes_a_secret_pasted_into_any_path_parameter() {
    let w = World::new(Options::default()).await;
    let mut tried = 0;
    for route in ROUTES {
        let params: Vec<&str> = route
            .params
            .iter()
            .filter(|p| p.location == In::Path)
            .map(|p| p.name)
            .collect();
        for at in &params {
            for pasted in PASTED {
                for spelled in spellings(pasted) {
                    let mut uri = route.path.to_string();
                    for p in &params {
                        let v = if p == at { spelled.as_str() } else { valid(p) };
                        uri = uri.replace(&format!("{{{p}}}"), v);
                    }
                    // `send_checked` fails the test if anything echoes it.
                    let a = w
                        .call(
                            route.verb.method(),
                            &uri,
                            Some(&w.admin),
                            &[],
                            Body::empty(),
                        )
                        .await;
                    assert!(
                        a.status.is_client_error() || a.status.is_success(),
                        "{} {uri}: {} {}",
                        route.verb.as_str(),
                        a.status,
                        a.text()
                    );
                    // A method the route does not have: a 405 names the
                    // route, not the path.
                    w.call(
                        axum::http::Method::DELETE,
                        &uri,
                        Some(&w.admin),
                        &[],
                        Body::empty(),
                    )
                    .await;
                    tried += 1;
                }
            }
        }
    }
    // 13 path parameters in 8 routes, 6 spellings of the 4 values.
    assert!(tried >= 13 * 6, "only {tried} requests");
}

#[tokio::test]
async fn an_unrouted_path_holding_a_secret_is_a_404_that_does_not_echo_it() {
    let w = World::new(Options::default()).await;
    for pasted in PASTED {
        for spelled in spellings(pasted) {
            for uri in [
                format!("/{spelled}"),
                format!("/v1/{spelled}"),
                format!("/v1/runs/{LATEST}/{spelled}"),
                format!("/v1/accounts/{spelled}/users"),
                format!("/runs/{spelled}/report.pdf"),
            ] {
                let p = w.get(&uri, Some(&w.reader)).await.problem(404);
                let instance = p["instance"].as_str().unwrap();
                assert!(instance.starts_with('/'), "{p}");
            }
            // The dashboard's run filter (a query parameter) neither.
            let a = w.get(&format!("/?run={spelled}"), Some(&w.reader)).await;
            assert!(a.status.is_client_error(), "{}", a.status);
        }
    }
}

/// `instance` names the route, with the identifiers that cannot be a
/// secret (a 12-digit account id, an access key id, a run id of the
/// coordinator's form) as given and the others as their placeholder.
#[tokio::test]
async fn a_problem_s_instance_is_its_route_with_only_safe_identifiers_filled_in() {
    let w = World::new(Options::default()).await;
    let p = w
        .get(
            &format!("/v1/accounts/{PROD}/users/zed/keys"),
            Some(&w.reader),
        )
        .await
        .problem(404);
    assert_eq!(
        p["instance"],
        format!("/v1/accounts/{PROD}/users/{{user}}/keys")
    );
    let p = w
        .post(
            &format!("/v1/accounts/{PROD}/users/alice/keys/{UNSEEN}/reactivate"),
            Some(&w.admin),
            "",
        )
        .await
        .problem(404);
    assert_eq!(
        p["instance"],
        format!("/v1/accounts/{PROD}/users/{{user}}/keys/{UNSEEN}/reactivate")
    );
    let missing = "20991231T235959Z-abc123";
    let p = w
        .get(&format!("/v1/runs/{missing}"), Some(&w.reader))
        .await
        .problem(404);
    assert_eq!(p["instance"], format!("/v1/runs/{missing}"));
    assert!(p["detail"].as_str().unwrap().contains(missing), "{p}");
    // A run id of another form may be anything pasted: not shown.
    let p = w
        .get("/v1/runs/not-a-run", Some(&w.reader))
        .await
        .problem(404);
    assert_eq!(p["instance"], "/v1/runs/{run_id}");
    assert!(!p["detail"].as_str().unwrap().contains("not-a-run"), "{p}");
    // A malformed value is never shown, whatever its form.
    let p = w
        .get(
            "/v1/accounts/hunter2hunter2/users/alice/keys",
            Some(&w.reader),
        )
        .await
        .problem(400);
    assert_eq!(p["instance"], "/v1/accounts/{account}/users/{user}/keys");
    assert!(!p.to_string().contains("hunter2"), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("account"), "{p}");
    // An account's page of the HTML report: its account id is shown.
    let p = w
        .get(
            &format!("/runs/{LATEST}/accounts/{SANDBOX}.html"),
            Some(&w.reader),
        )
        .await
        .problem(404);
    assert_eq!(
        p["instance"],
        format!("/runs/{LATEST}/accounts/{SANDBOX}.html")
    );
    let p = w
        .get(
            &format!("/runs/{LATEST}/accounts/hunter2hunter2.html"),
            Some(&w.reader),
        )
        .await
        .problem(400);
    assert_eq!(
        p["instance"],
        format!("/runs/{LATEST}/accounts/{{account_page}}")
    );
    assert!(!p.to_string().contains("hunter2"), "{p}");
    // No route: the path's segments no route has are not shown.
    let p = w
        .get("/v1/hunter2hunter2", Some(&w.reader))
        .await
        .problem(404);
    assert_eq!(p["instance"], "/v1/{segment}");
}
