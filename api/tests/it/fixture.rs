//! The reports the tests read, built the way the coordinator builds them:
//! a manifest and the accounts' results through `report::aggregate`.
//!
//! The organization of the latest scheduled run (2026-03-01):
//!
//! | account | user | keys before the run | the run | after |
//! | --- | --- | --- | --- | --- |
//! | PROD | alice | ALICE_OLD active, 96 d | created ALICE_NEW | both active |
//! | PROD | bob | BOB_DELETED inactive, BOB_KEPT active | deleted BOB_DELETED | BOB_KEPT |
//! | PROD | carol | CAROL_OLD inactive, CAROL_NEW active | nothing | both |
//! | PROD | +eve | none | nothing | none |
//! | SANDBOX | dave | DAVE_KEY active | nothing | DAVE_KEY active |
//! | MISSING | (no result) | | | |
//!
//! Afterwards (2026-03-03) an emergency rotation of dave created DAVE_NEW
//! and deactivated DAVE_KEY: a one-user run.
//!
//! [`crowded`] and [`split`] are scheduled runs of worlds of their own:
//! more users than a page of the dashboard's users table, and more than
//! the HTML report shows on one page.

use keyfleet_protocol::report::{aggregate, RunReport};
use keyfleet_protocol::{AccountResult, JobMode, Policy, RunManifest};
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;

pub const PROD: &str = "111122223333";
pub const SANDBOX: &str = "444455556666";
pub const MISSING: &str = "777788889999";
/// PROD's page of a run's HTML report, as its path names it.
pub const PROD_PAGE: &str = "111122223333.html";

pub const ALICE_OLD: &str = "AKIAALICEOLD00000001";
pub const ALICE_NEW: &str = "AKIAALICENEW00000002";
pub const BOB_DELETED: &str = "AKIABOBDELETED000003";
pub const BOB_KEPT: &str = "AKIABOBKEPT000000004";
pub const CAROL_OLD: &str = "AKIACAROLOLD00000005";
pub const CAROL_NEW: &str = "AKIACAROLNEW00000006";
pub const DAVE_KEY: &str = "AKIADAVEKEY000000007";
pub const DAVE_NEW: &str = "AKIADAVENEW000000008";
pub const UNSEEN: &str = "AKIAUNSEEN0000000009";

pub const LATEST: &str = "20260301T000000Z-aaaaaa";
pub const EARLIER: &str = "20260201T000000Z-bbbbbb";
pub const DRY: &str = "20260302T000000Z-cccccc";
pub const ROTATION: &str = "20260303T000000Z-dddddd";
/// Started, not finalized.
pub const RUNNING: &str = "20260304T000000Z-eeeeee";
/// The scheduled run of [`crowded`].
pub const CROWDED: &str = "20260215T000000Z-a1b2c3";
/// Users of PROD in [`crowded`] beyond a page of the dashboard.
pub const CROWDED_EXTRA: usize = 20;

pub const LATEST_AT: OffsetDateTime = datetime!(2026-03-01 00:00 UTC);

fn t(s: OffsetDateTime) -> String {
    s.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

pub fn key(id: &str, status: &str, created: &str) -> Value {
    json!({"id": id, "status": status, "created": created,
           "last_used": "2026-02-27T10:00:00Z", "last_used_service": "s3",
           "last_used_region": "eu-west-1"})
}

pub fn done(action: Value) -> Value {
    let mut a = action;
    a["result"] = json!({"outcome": "done"});
    a
}

pub fn user(name: &str, verdict: &str, keys: Value, actions: Value) -> Value {
    json!({"user_name": name, "verdict": verdict, "email": format!("{}@example.com", name.trim_start_matches('+')),
           "keys": keys, "actions": actions})
}

/// A finalized report: `accounts` are (id, name, users or `None` for an
/// account that never reported).
pub fn report(
    run_id: &str,
    created_at: OffsetDateTime,
    mode: JobMode,
    dry_run: bool,
    accounts: Vec<(&str, &str, Option<Value>)>,
) -> RunReport {
    let manifest: RunManifest = serde_json::from_value(json!({
        "v": 1,
        "run_id": run_id,
        "created_at": t(created_at),
        "deadline": t(created_at + time::Duration::minutes(30)),
        "policy": Policy::default(),
        "dry_run": dry_run,
        "mode": mode,
        "accounts": accounts.iter().map(|(id, name, _)| json!({
            "account_id": id, "name": name, "token_sha256": "0".repeat(64),
            "dispatch": {"state": "sent"}})).collect::<Vec<_>>(),
    }))
    .expect("a manifest");
    let at = t(created_at + time::Duration::minutes(2));
    let results: Vec<AccountResult> = accounts
        .iter()
        .filter_map(|(id, _, users)| {
            users.as_ref().map(|users| {
                serde_json::from_value(json!({
                    "v": 1, "run_id": run_id, "account_id": id, "token": "0".repeat(32),
                    "part": 1, "parts": 1, "status": "ok", "dry_run": dry_run,
                    "as_of": at, "started_at": at, "finished_at": at, "users": users,
                }))
                .expect("a result")
            })
        })
        .collect();
    aggregate(
        &manifest,
        &results,
        created_at + time::Duration::minutes(10),
    )
}

fn prod_users() -> Value {
    json!([
        user(
            "alice",
            "rotated",
            json!([key(ALICE_OLD, "Active", "2025-11-25T00:00:00Z")]),
            json!([
                {"action": "create_key", "result": {"outcome": "done", "key_id": ALICE_NEW}},
                done(json!({"action": "notify", "notice": {"kind": "deactivation_scheduled",
                    "key_id": ALICE_OLD, "on": "2026-03-11T00:00:00Z", "replacement": ALICE_NEW}})),
            ])
        ),
        user(
            "bob",
            "cleaned",
            json!([
                key(BOB_DELETED, "Inactive", "2025-11-01T00:00:00Z"),
                key(BOB_KEPT, "Active", "2026-01-15T00:00:00Z")
            ]),
            json!([done(json!({"action": "delete", "key_id": BOB_DELETED}))])
        ),
        user(
            "carol",
            "compliant",
            json!([
                key(CAROL_OLD, "Inactive", "2025-11-20T00:00:00Z"),
                key(CAROL_NEW, "Active", "2026-01-10T00:00:00Z")
            ]),
            json!([])
        ),
        user("+eve", "no_keys", json!([]), json!([])),
    ])
}

fn sandbox_users() -> Value {
    json!([user(
        "dave",
        "compliant",
        json!([key(DAVE_KEY, "Active", "2026-02-20T00:00:00Z")]),
        json!([])
    )])
}

/// The latest scheduled run (see the module doc).
pub fn latest() -> RunReport {
    report(
        LATEST,
        LATEST_AT,
        JobMode::Scheduled,
        false,
        vec![
            (PROD, "Production", Some(prod_users())),
            (SANDBOX, "Sandbox", Some(sandbox_users())),
            (MISSING, "Gone quiet", None),
        ],
    )
}

/// A month earlier: alice's old key was younger, bob still had both.
pub fn earlier() -> RunReport {
    report(
        EARLIER,
        datetime!(2026-02-01 00:00 UTC),
        JobMode::Scheduled,
        false,
        vec![(
            PROD,
            "Production",
            Some(json!([
                user(
                    "alice",
                    "compliant",
                    json!([key(ALICE_OLD, "Active", "2025-11-25T00:00:00Z")]),
                    json!([])
                ),
                user(
                    "old-timer",
                    "compliant",
                    json!([key(UNSEEN, "Active", "2025-06-01T00:00:00Z")]),
                    json!([])
                ),
            ])),
        )],
    )
}

/// A newer dry run: never what key reads show.
pub fn dry() -> RunReport {
    report(
        DRY,
        datetime!(2026-03-02 00:00 UTC),
        JobMode::Scheduled,
        true,
        vec![(PROD, "Production", Some(json!([])))],
    )
}

/// The emergency rotation of dave (deactivate_old).
pub fn rotation() -> RunReport {
    report(
        ROTATION,
        datetime!(2026-03-03 00:00 UTC),
        JobMode::Rotate {
            user: "dave".into(),
            deactivate_old: true,
            key_id: None,
        },
        false,
        vec![(
            SANDBOX,
            "Sandbox",
            Some(json!([user(
                "dave",
                "rotated",
                json!([key(DAVE_KEY, "Active", "2026-02-20T00:00:00Z")]),
                json!([
                    {"action": "create_key", "result": {"outcome": "done", "key_id": DAVE_NEW}},
                    done(json!({"action": "deactivate", "key_id": DAVE_KEY})),
                ])
            )])),
        )],
    )
}

/// `n` users `{prefix}-0000`, `{prefix}-0001`, ...: compliant with one key
/// (`AKIACROWDED000000000`, ...) created 2026-01-01, or without keys.
pub fn many_users(prefix: &str, n: usize, with_keys: bool) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                let name = format!("{prefix}-{i:04}");
                if with_keys {
                    let id = format!("AKIACROWDED{i:09}");
                    let keys = json!([key(&id, "Active", "2026-01-01T00:00:00Z")]);
                    user(&name, "compliant", keys, json!([]))
                } else {
                    user(&name, "no_keys", json!([]), json!([]))
                }
            })
            .collect(),
    )
}

/// A scheduled run with more users than a page of the dashboard
/// ([`keyfleet_api::dashboard::PAGE_ROWS`]): PROD has a page and
/// [`CROWDED_EXTRA`] more users, `user-0000`, `user-0001`, ..., each with a
/// key 45 days old (compliant); SANDBOX has a page of users without keys,
/// `sbx-0000`, .... Report order: PROD's users, then SANDBOX's.
pub fn crowded() -> RunReport {
    use keyfleet_api::dashboard::PAGE_ROWS;
    report(
        CROWDED,
        datetime!(2026-02-15 00:00 UTC),
        JobMode::Scheduled,
        false,
        vec![
            (
                PROD,
                "Production",
                Some(many_users("user", PAGE_ROWS + CROWDED_EXTRA, true)),
            ),
            (
                SANDBOX,
                "Sandbox",
                Some(many_users("sbx", PAGE_ROWS, false)),
            ),
        ],
    )
}

/// The scheduled run of [`split`].
pub const SPLIT: &str = "20260220T000000Z-d4e5f6";

/// A scheduled run whose HTML report is a summary page and a page per
/// account (more users than [`keyfleet_reports::render::html::INLINE_USERS`]):
/// PROD and SANDBOX, each with half of them and one more.
pub fn split() -> RunReport {
    let half = keyfleet_reports::render::html::INLINE_USERS as usize / 2 + 1;
    report(
        SPLIT,
        datetime!(2026-02-20 00:00 UTC),
        JobMode::Scheduled,
        false,
        vec![
            (PROD, "Production", Some(many_users("p", half, false))),
            (SANDBOX, "Sandbox", Some(many_users("s", half, false))),
        ],
    )
}
