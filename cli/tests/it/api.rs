//! The security team's API end to end: `keyfleet serve` under the deployed
//! API role (the emulator enforces its policy, and the test compares what
//! it used with what it is granted) over the reports of the deployed
//! system, its keys read from the API keys secret as the Lambda reads them.
//! Every endpoint, every refusal (401, 403, 404, 400, 409, 429), an
//! emergency rotation through the API carried out by the deployed
//! coordinator and agent, and no response holding a secret or an API key.

use crate::common::*;
use crate::mails::delivered_key;
use keyfleet_api::keys::generate;
use keyfleet_api::Scope;
use keyfleet_protocol::report::RunReport;
use keyfleet_protocol::Verdict;
use keyfleet_testkit::seed::{self, key, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_reports_and_acts_through_the_coordinator_under_its_role() {
    let emu = emu();
    let cli = deployment().await;
    let account = create_account("api").await;
    let iam = iam_of(&account).await;
    seed::populate(
        emu,
        &iam,
        &account,
        &[
            // Due for rotation: the run delivers a new key.
            user("api-owner", vec![key(85, true, Some(1))]),
            // Inactive past delete_after: the run deletes it.
            user("api-gone", vec![key(150, false, Some(60))]),
        ],
    )
    .await
    .expect("seed");
    let gone_key = seed::keys(&iam, "api-gone").await.unwrap()[0].0.clone();
    let report: RunReport =
        serde_json::from_str(&cli.run(&["run", "--json", "--accounts", &account]))
            .expect("report JSON");
    let run = report.run_id.clone();
    api_role_reads_the_report_not_the_results(&run).await;
    let dir = tempfile::tempdir().unwrap();
    let delivered = delivered_key(
        &emu.outbox().unwrap(),
        "owner-api-owner@example.com",
        "-api-owner.zip",
        dir.path(),
    );
    let owner_keys = seed::keys(&iam, "api-owner").await.unwrap();
    assert_eq!(owner_keys.len(), 2, "{owner_keys:?}");

    // Keys as the deployed API holds them: hashes in its secret.
    let (reader_key, reader) = generate("e2e-reader", &[Scope::Read]);
    let (ops_key, ops) = generate("e2e-ops", &[Scope::Read, Scope::Rotate]);
    aws_sdk_secretsmanager::Client::new(&emu.config())
        .put_secret_value()
        .secret_id("keyfleet-api/api-keys")
        .secret_string(serde_json::to_string(&[&reader, &ops]).unwrap())
        .send()
        .await
        .expect("PutSecretValue keyfleet-api/api-keys");
    let served = Served::start(cli, "keys_secret = \"keyfleet-api/api-keys\"");
    let base = served.base.as_str();
    let get = |path: &str, key: Option<&str>| call(base, "GET", path, key, &[], None);
    let mut bodies: Vec<String> = Vec::new();

    // Reads, labelled with their run.
    let runs = get("/v1/runs?limit=200", Some(&reader_key));
    assert_eq!(runs.status, 200, "{}", runs.body);
    assert!(runs.body.contains(&run), "{}", runs.body);
    let one = get(&format!("/v1/runs/{run}"), Some(&reader_key));
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.json()["run_id"], run.as_str());
    let csv = call(
        base,
        "GET",
        &format!("/v1/runs/{run}"),
        Some(&reader_key),
        &[("accept", "text/csv")],
        None,
    );
    assert_eq!(csv.status, 200);
    assert!(csv.content_type.starts_with("text/csv"), "{csv:?}");
    assert!(csv
        .body
        .lines()
        .any(|l| l.contains(&account) && l.contains("api-owner")));
    let keys = get(
        &format!("/v1/accounts/{account}/users/api-owner/keys"),
        Some(&reader_key),
    );
    assert_eq!(keys.status, 200, "{}", keys.body);
    let v = keys.json();
    assert_eq!(
        v["run_id"],
        run.as_str(),
        "labelled with the run it comes from"
    );
    let ids: Vec<(String, bool)> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key_id"].as_str().unwrap().to_string(),
                k["status"] == "Active",
            )
        })
        .collect();
    assert_eq!(
        ids, owner_keys,
        "the keys at the end of the run, as IAM has them"
    );
    let export = get("/v1/export", Some(&reader_key));
    assert_eq!(export.status, 200, "{}", export.body);
    let export_csv = get("/v1/export?format=csv", Some(&reader_key));
    assert_eq!(export_csv.status, 200);
    assert!(export_csv.content_type.starts_with("text/csv"));
    let openapi = get("/openapi.json", None);
    assert_eq!(openapi.status, 200);
    assert!(openapi.json()["paths"]["/v1/export"].is_object());
    let dashboard = get("/", Some(&reader_key));
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.body.contains("<html"));
    // The browser's routes outside /v1 (the header works there too), the
    // health check, and a browser's login and logout.
    let mut browser = Vec::new();
    for (path, kind) in [
        (format!("/runs/{run}/report.html"), "text/html"),
        (format!("/runs/{run}/report.json"), "application/json"),
        (format!("/runs/{run}/report.csv"), "text/csv"),
        ("/export.csv".to_string(), "text/csv"),
        ("/export.json".to_string(), "application/json"),
        (format!("/?run={run}&account={account}"), "text/html"),
    ] {
        let a = get(&path, Some(&reader_key));
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        assert!(a.content_type.starts_with(kind), "{path}: {a:?}");
        browser.push(a.body);
    }
    assert_eq!(get("/healthz", None).status, 200);
    let login = post_form(base, "/login", &format!("api_key={reader_key}"));
    assert_eq!(login.status, 303, "{}", login.body);
    assert!(login.set_cookie.is_some(), "a session cookie");
    assert!(!login.set_cookie.as_deref().unwrap().contains(&reader_key));
    assert_eq!(post_form(base, "/logout", "").status, 303);
    let refused = post_form(base, "/login", "api_key=kfk_nobody");
    assert_eq!(refused.status, 401);
    bodies.extend(browser);
    bodies.extend([login.body, refused.body]);
    bodies.extend(
        [
            &runs,
            &one,
            &csv,
            &keys,
            &export,
            &export_csv,
            &openapi,
            &dashboard,
        ]
        .iter()
        .map(|a| a.body.clone()),
    );

    // Refusals, each with its status, as problem details.
    let owner_path = format!("/v1/accounts/{account}/users/api-owner");
    let problems = [
        (get("/v1/runs", None), 401),
        (get("/v1/runs", Some("kfk_not-a-key-anyone-was-given")), 401),
        (
            call(
                base,
                "POST",
                &format!("{owner_path}/rotate"),
                Some(&reader_key),
                &[],
                None,
            ),
            403,
        ),
        (
            call(
                base,
                "POST",
                &format!("{owner_path}/keys/{}/reactivate", owner_keys[0].0),
                Some(&reader_key),
                &[],
                None,
            ),
            403,
        ),
        (
            get(
                &format!("/v1/accounts/{account}/users/nobody/keys"),
                Some(&reader_key),
            ),
            404,
        ),
        (
            get("/v1/accounts/12ab/users/api-owner/keys", Some(&reader_key)),
            400,
        ),
        (
            get(
                &format!("/v1/accounts/{account}/users/bad%2Fname/keys"),
                Some(&reader_key),
            ),
            400,
        ),
        (
            call(
                base,
                "POST",
                &format!("{owner_path}/keys/not-a-key-id/reactivate"),
                Some(&ops_key),
                &[],
                None,
            ),
            400,
        ),
        (
            call(
                base,
                "POST",
                &format!("/v1/accounts/{account}/users/api-gone/keys/{gone_key}/reactivate"),
                Some(&ops_key),
                &[],
                None,
            ),
            409,
        ),
    ];
    for (answer, status) in &problems {
        assert_eq!(answer.status, *status, "{answer:?}");
        assert!(
            answer.content_type.starts_with("application/problem+json"),
            "{answer:?}"
        );
        assert_eq!(answer.json()["status"], *status);
        bodies.push(answer.body.clone());
    }
    assert!(problems[8].0.json()["type"]
        .as_str()
        .unwrap()
        .contains("key-deleted"));

    // An emergency rotation through the API: the deployed coordinator and
    // agent carry it out.
    let rotate = call(
        base,
        "POST",
        &format!("{owner_path}/rotate"),
        Some(&ops_key),
        &[],
        Some(serde_json::json!({"key_id": owner_keys[0].0, "deactivate_old": true})),
    );
    assert_eq!(rotate.status, 202, "{}", rotate.body);
    let emergency = rotate.json()["run_id"].as_str().unwrap().to_string();
    bodies.push(rotate.body.clone());
    emu.settle(&[&account, keyfleet_testkit::DEFAULT_ACCOUNT], 120)
        .expect("settled");
    let after = cli.report(&emergency);
    let owner = &after["accounts"][0]["users"][0];
    assert_eq!(owner["user_name"], "api-owner");
    assert_eq!(owner["verdict"], Verdict::Rotated.as_str(), "{owner}");
    let now = seed::keys(&iam, "api-owner").await.unwrap();
    assert_eq!(now.len(), 2);
    assert!(
        !now.iter().any(|(id, _)| *id == owner_keys[0].0),
        "the named key was replaced"
    );
    assert!(now.iter().all(|(_, active)| *active));
    let runs = get("/v1/runs?limit=200", Some(&reader_key));
    assert!(runs.body.contains(&emergency));
    bodies.push(runs.body);

    // Limits: a key that spends its burst is answered 429 with Retry-After
    // (a second server with a burst of two and one request a minute).
    let limited = Served::start(
        cli,
        "keys_secret = \"keyfleet-api/api-keys\"\nrate_limit_per_minute = 1\nrate_limit_burst = 2",
    );
    let statuses: Vec<u16> = (0..3)
        .map(|_| {
            call(
                &limited.base,
                "GET",
                "/v1/runs?limit=1",
                Some(&reader_key),
                &[],
                None,
            )
        })
        .map(|a| {
            if a.status == 429 {
                assert!(a.retry_after.is_some(), "{a:?}");
                assert!(a.content_type.starts_with("application/problem+json"));
            }
            a.status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 429]);

    // No answer held the rotation's secret or any API key.
    for body in &bodies {
        for secret in [
            delivered.secret_access_key.as_str(),
            delivered.password.as_str(),
            reader_key.as_str(),
            ops_key.as_str(),
        ] {
            assert!(!body.contains(secret), "a secret in a response:\n{body}");
        }
    }
    drop(served);
    drop(limited);
    crate::permissions::assert_roles_use_what_they_are_granted(&[(
        "keyfleet-api",
        keyfleet_testkit::DEFAULT_ACCOUNT,
    )])
    .await;
}

/// The API role's report grant both ways: it reads a finalized run's
/// summary and the accounts' sections the summary names
/// (`runs/*/report.json`, `runs/*/final/*`), and is refused the result
/// parts (sealed credentials) and the notification ledger beside them.
async fn api_role_reads_the_report_not_the_results(run: &str) {
    use keyfleet_reports::store;
    let admin = emu().config();
    let s3_of = |cfg: &aws_config::SdkConfig| {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(cfg)
                .force_path_style(true)
                .build(),
        )
    };
    let bucket = "keyfleet-reports";
    let listed = |prefix: String| {
        let s3 = s3_of(&admin);
        async move {
            s3.list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .send()
                .await
                .expect("ListObjectsV2")
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string))
                .collect::<Vec<_>>()
        }
    };
    let section = listed(format!("runs/{run}/final/")).await;
    let part = listed(store::results_prefix(run)).await;
    let ledger = listed("ledger/".to_string()).await;
    assert!(!section.is_empty() && !part.is_empty() && !ledger.is_empty());

    let creds = aws_sdk_sts::Client::new(&admin)
        .assume_role()
        .role_arn(format!(
            "arn:aws:iam::{}:role/keyfleet-api",
            keyfleet_testkit::DEFAULT_ACCOUNT
        ))
        .role_session_name(crate::permissions::REFUSAL_CHECK)
        .send()
        .await
        .expect("AssumeRole keyfleet-api")
        .credentials
        .expect("credentials");
    let api = s3_of(
        &admin
            .to_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new(
                        creds.access_key_id,
                        creds.secret_access_key,
                        Some(creds.session_token),
                        None,
                        "refusal-check",
                    ),
                ),
            )
            .build(),
    );
    let get = |key: String| {
        let api = api.clone();
        async move { api.get_object().bucket(bucket).key(key).send().await }
    };
    get(store::final_key(run))
        .await
        .expect("the finalized report");
    get(section[0].clone()).await.expect("an account's section");
    for key in [part[0].clone(), ledger[0].clone()] {
        let e = get(key.clone()).await.expect_err("refused");
        assert_eq!(
            e.raw_response().map(|r| r.status().as_u16()),
            Some(403),
            "{key}: {e:?}"
        );
    }
}
