use super::*;
use crate::fixtures;
use keyfleet_protocol::report::UserRef;
use proptest::prelude::*;

fn parse_csv(bytes: &[u8]) -> Vec<::csv::StringRecord> {
    let body = bytes
        .strip_prefix(CSV_BOM)
        .expect("the CSV starts with a BOM");
    let mut r = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body);
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        CSV_HEADER.to_vec()
    );
    r.records().map(|r| r.unwrap()).collect()
}

fn col(rec: &::csv::StringRecord, name: &str) -> String {
    let i = CSV_HEADER.iter().position(|h| *h == name).unwrap();
    rec.get(i).unwrap().to_string()
}

fn find<'a>(rows: &'a [::csv::StringRecord], user: &str, key: &str) -> &'a ::csv::StringRecord {
    rows.iter()
        .find(|r| col(r, "user_name") == user && col(r, "key_id") == key)
        .unwrap_or_else(|| panic!("no row for {user}/{key}"))
}

#[test]
fn aggregate_numbers_are_as_built() {
    let r = fixtures::report();
    let t = &r.totals;
    assert_eq!(
        (
            t.accounts,
            t.accounts_ok,
            t.accounts_partial,
            t.accounts_missing,
            t.accounts_no_agent
        ),
        (4, 1, 1, 1, 1)
    );
    assert_eq!(
        (t.users, t.keys, t.active_keys, t.failed_actions),
        (8, 9, 8, 1)
    );
    assert_eq!(t.accounts_skipped, 1);
    let order: Vec<&str> = r.accounts.iter().map(|a| a.account_id.as_str()).collect();
    assert_eq!(
        order,
        [
            "333333333333",
            "444444444444",
            "222222222222",
            "111111111111"
        ]
    );
}

#[test]
fn csv_has_a_row_per_user_key_and_per_empty_account() {
    let report = fixtures::report();
    let bytes = to_csv(&report);
    assert!(bytes.starts_with(CSV_BOM));
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(text.contains("\r\n"), "CRLF line ends");
    let rows = parse_csv(&bytes);
    // missing 1 + no_agent 1 + partial (gina 1 + hank 2) + ok (alice 1, bob 1,
    // carol 1, dave 2, erin 1, frank 0 keys -> 1) = 12
    assert_eq!(rows.len(), 12);

    let missing = &rows[0];
    assert_eq!(col(missing, "account_id"), "333333333333");
    assert_eq!(col(missing, "account_name"), "Sandbox");
    assert_eq!(col(missing, "account_state"), "missing");
    assert_eq!(col(missing, "user_name"), "");
    assert_eq!(col(&rows[1], "account_state"), "no_agent");

    let alice = find(&rows, "alice", "AKIAALICEOLD0000WXYZ");
    assert_eq!(col(alice, "account_id"), "111111111111");
    assert_eq!(col(alice, "account_name"), "Payments Prod");
    assert_eq!(col(alice, "alias"), "payments-prod");
    assert_eq!(col(alice, "account_state"), "ok");
    assert_eq!(col(alice, "path"), "/");
    assert_eq!(col(alice, "email"), "alice@example.com");
    assert_eq!(col(alice, "verdict"), "rotated");
    assert_eq!(col(alice, "key_status"), "Active");
    assert_eq!(col(alice, "key_created"), "2025-12-15T06:00:00Z");
    assert_eq!(col(alice, "key_age_days"), "85");
    assert_eq!(col(alice, "last_used"), "2026-03-09T06:00:00Z");
    assert_eq!(col(alice, "last_used_service"), "s3");
    assert_eq!(col(alice, "last_used_region"), "eu-west-1");
    assert_eq!(
        col(alice, "actions"),
        "create(AKIAALICENEW0000ABCD):done; notify(deactivation_scheduled):done"
    );
    assert_eq!(col(alice, "error"), "");

    // Two keys: each action sits on the row of the key it targets.
    let hank_old = find(&rows, "hank", "AKIAHANKOLD000000001");
    let hank_new = find(&rows, "hank", "AKIAHANKNEW000000002");
    assert_eq!(
        col(hank_old, "actions"),
        "deactivate:done; notify(deactivated):done"
    );
    assert_eq!(col(hank_new, "actions"), "");
    assert_eq!(col(hank_new, "key_age_days"), "11");

    let gina = find(&rows, "gina", "AKIAGINA000000000001");
    assert_eq!(col(gina, "account_state"), "partial");
    assert_eq!(col(gina, "verdict"), "failed");
    assert_eq!(col(gina, "actions"), "create:failed");
    // The action's error is already part of the user's error: said once.
    assert_eq!(
        col(gina, "error"),
        "CreateAccessKey failed: LimitExceeded: Cannot exceed quota for AccessKeysPerUser: 2"
    );

    // An action error the user's error does not mention is listed too.
    let mut other = report.clone();
    other.accounts[2].users[0].error = Some("quota".into());
    let rows2 = parse_csv(&to_csv(&other));
    let gina2 = find(&rows2, "gina", "AKIAGINA000000000001");
    assert_eq!(
        col(gina2, "error"),
        "quota; create: LimitExceeded: Cannot exceed quota for AccessKeysPerUser: 2"
    );

    let frank = find(&rows, "frank", "");
    assert_eq!(col(frank, "verdict"), "no_keys");
    assert_eq!(col(frank, "path"), "/service/");
    assert_eq!(col(frank, "email"), "");
    assert_eq!(col(frank, "key_age_days"), "");

    let carol = find(&rows, "carol", "AKIACAROL00000000001");
    assert_eq!(col(carol, "key_status"), "Inactive");

    // Every action appears once: the CSV agrees with the totals.
    let actions: usize = rows
        .iter()
        .map(|r| col(r, "actions"))
        .filter(|a| !a.is_empty())
        .map(|a| a.split("; ").count())
        .sum();
    let total: u64 = report.totals.actions_by_kind.values().sum();
    assert_eq!(actions as u64, total);
}

#[test]
fn csv_quotes_and_guards_formulas() {
    let mut report = fixtures::report();
    let ok = report.accounts.last_mut().unwrap();
    ok.name = "Pay, \"Prod\"\nline two".into();
    ok.users[0].user_name = "=HYPERLINK(\"http://x\")".into();
    ok.users[0].email = Some("@SUM(A1:A9)".into());
    ok.users[1].user_name = "+cmd".into();
    ok.users[2].user_name = "-2+3".into();
    ok.users[3].email = Some("\tx@example.com".into());
    let bytes = to_csv(&report);
    let rows = parse_csv(&bytes);
    let alice = rows
        .iter()
        .find(|r| col(r, "key_id") == "AKIAALICEOLD0000WXYZ")
        .unwrap();
    assert_eq!(col(alice, "account_name"), "Pay, \"Prod\"\nline two");
    assert_eq!(col(alice, "user_name"), "'=HYPERLINK(\"http://x\")");
    assert_eq!(col(alice, "email"), "'@SUM(A1:A9)");
    assert!(rows.iter().any(|r| col(r, "user_name") == "'+cmd"));
    assert!(rows.iter().any(|r| col(r, "user_name") == "'-2+3"));
    assert!(rows.iter().any(|r| col(r, "email") == "'\tx@example.com"));
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.contains("\"Pay, \"\"Prod\"\"\nline two\""),
        "RFC 4180 quoting"
    );
    assert!(!text.contains(",=HYPERLINK"));
}

#[test]
fn json_round_trips() {
    let report = fixtures::report();
    let bytes = to_json(&report);
    assert!(bytes.ends_with(b"}\n"));
    assert!(
        std::str::from_utf8(&bytes)
            .unwrap()
            .contains("\n  \"run_id\": "),
        "pretty"
    );
    let back: RunReport = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back, report);
    // The protocol's decoder (version check, validation) accepts it too.
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(value["totals"]["accounts"], 4);
    assert_eq!(value["accounts"][0]["state"], "missing");
}

#[test]
fn html_puts_problems_first_and_has_both_charts() {
    let report = fixtures::report();
    let html = to_html(&report);
    assert!(html.starts_with("<!DOCTYPE html><html lang=\"en\">"));
    assert!(html.contains(&format!(
        "<title>keyfleet run {} \u{2014} 2026-03-10</title>",
        fixtures::RUN_ID
    )));
    assert!(!html.contains("<script"), "no script");
    assert!(
        !html.contains("src=") && !html.contains("<link"),
        "no external resources"
    );
    assert!(!html.contains("DRY RUN"));

    let attention = html.find("id=\"attention\"").expect("attention section");
    let accounts = html.find("id=\"accounts-h\"").unwrap();
    assert!(attention < accounts);
    let att = &html[attention..accounts];
    for id in ["333333333333", "444444444444", "222222222222"] {
        assert!(att.contains(id), "{id} in the attention section");
    }
    assert!(!att.contains("111111111111"), "ok account not in attention");
    assert!(att.contains("gina") && att.contains("LimitExceeded"));

    // In the accounts table and the per-account sections, failures come first.
    let table = &html[accounts..];
    let pos = |id: &str| table.find(id).unwrap();
    assert!(pos("333333333333") < pos("222222222222"));
    assert!(pos("444444444444") < pos("222222222222"));
    assert!(pos("222222222222") < pos("111111111111"));
    let sections = &html[html.find("id=\"users-h\"").unwrap()..];
    assert!(
        sections.find("id=\"acct-333333333333\"").unwrap()
            < sections.find("id=\"acct-111111111111\"").unwrap()
    );

    // Charts: two inline SVGs, each an accessible image with a title.
    assert_eq!(html.matches("<svg role=\"img\"").count(), 2);
    assert!(html.contains("<title id=\"age-title\">Access keys by age in days</title>"));
    assert!(html.contains("<title id=\"actions-title\">Actions by kind and outcome</title>"));
    for b in &report.key_age_histogram {
        assert!(
            html.contains(&format!(">{}</text>", b.label)),
            "{}",
            b.label
        );
    }
    assert!(html.contains("create failed: 1"), "failed create bar");
    assert!(html.contains("notify done: 4"));

    // Numbers and per-user details.
    assert!(html.contains("<span class=\"n\">4</span><span class=\"l\">Accounts</span>"));
    assert!(html.contains("<span class=\"n\">8</span><span class=\"l\">Users</span>"));
    assert!(html.contains("<span class=\"n\">1</span><span class=\"l\">Failed actions</span>"));
    assert!(html.contains("<th scope=\"col\">User</th>"));
    assert!(html.contains("create key AKIAALICENEW0000ABCD"));
    assert!(html.contains("AKIADAVEOLD000000001</code> Active, 95d"));
    assert!(html.contains("last used 2026-03-10 (s3, eu-west-1)"));
    assert!(html.contains("excluded OU ou-abcd-12345678"));
    assert!(html.contains("No agent: the account has no keyfleet-jobs queue."));
}

#[test]
fn html_escapes_everything_and_shows_dry_runs() {
    let mut report = fixtures::report();
    report.dry_run = true;
    let ok = report.accounts.last_mut().unwrap();
    ok.users[0].user_name = "<script>alert(1)</script>".into();
    ok.users[1].email = Some("\"><img src=x onerror=alert(2)>".into());
    ok.name = "A & B <Prod>".into();
    let html = to_html(&report);
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("<img"));
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"));
    assert!(html.contains("A &amp; B &lt;Prod&gt;"));
    assert!(html.contains("DRY RUN"));
}

#[test]
fn html_handles_an_empty_run() {
    let mut m = fixtures::manifest();
    m.accounts.clear();
    m.skipped.clear();
    let report = keyfleet_protocol::report::aggregate(&m, &[], fixtures::NOW);
    let html = to_html(&report);
    assert!(!html.contains("id=\"attention\""));
    assert_eq!(html.matches("<svg role=\"img\"").count(), 2);
    assert!(!html.contains("NaN") && !html.contains("inf"));
    // An empty run is a failed run: every shape says no account was selected.
    assert!(html.contains("id=\"run-failed\""));
    assert!(html.contains("Run failed: no account selected"));
    let rows = parse_csv(&to_csv(&report));
    assert_eq!(rows.len(), 1, "only the run's failure row");
    assert_eq!(col(&rows[0], "account_id"), "");
    assert!(col(&rows[0], "error").starts_with("run failed: no account selected"));
    let table = to_table(&report);
    assert!(table.contains("TOTAL"));
    assert!(table.contains("RUN FAILED: no account selected"), "{table}");
    let json: serde_json::Value = serde_json::from_slice(&to_json(&report)).unwrap();
    assert_eq!(
        json["error"],
        "no account selected (the organization listed no account to run on)"
    );
}

#[test]
fn a_run_where_every_account_failed_says_so_in_every_shape() {
    let report = keyfleet_protocol::report::aggregate(&fixtures::manifest(), &[], fixtures::NOW);
    let phrase = "every selected account failed or is missing";
    let json = to_json(&report);
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert!(
        value["error"].as_str().unwrap().starts_with(phrase),
        "{value}"
    );
    // The extra field does not stop the report from reading back.
    let back: RunReport = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, report);
    let rows = parse_csv(&to_csv(&report));
    assert_eq!(rows.len(), 5, "the failure row, then one row per account");
    assert!(col(&rows[0], "error").starts_with(&format!("run failed: {phrase}")));
    let html = to_html(&report);
    assert!(html.find("id=\"run-failed\"").unwrap() < html.find("id=\"summary-h\"").unwrap());
    assert!(to_table(&report).contains(&format!("RUN FAILED: {phrase}")));
    // A run with one account that answered is not failed: no such marks.
    let ok = fixtures::report();
    let value: serde_json::Value = serde_json::from_slice(&to_json(&ok)).unwrap();
    assert!(value.get("error").is_none());
    assert!(!to_html(&ok).contains("run-failed"));
    assert!(!to_table(&ok).contains("RUN FAILED"));
    assert_eq!(parse_csv(&to_csv(&ok)).len(), 12);
}

#[test]
fn table_lists_accounts_then_totals() {
    let report = fixtures::report();
    let table = to_table(&report);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with(&format!(
        "keyfleet run {} - finalized 2026-03-10 06:05 UTC",
        fixtures::RUN_ID
    )));
    let header = lines.iter().position(|l| l.starts_with("ACCOUNT")).unwrap();
    assert!(lines[header].contains("ROTATED") && lines[header].contains("FAILURES"));
    let words = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let row = |id: &str| words(lines.iter().find(|l| l.starts_with(id)).unwrap());
    assert_eq!(
        row("333333333333")[1..],
        ["Sandbox", "missing", "0", "0", "0", "0", "0"]
    );
    assert_eq!(
        row("444444444444")[1..],
        ["Legacy", "no_agent", "0", "0", "0", "0", "0"]
    );
    assert_eq!(
        row("222222222222")[1..],
        [
            "Data",
            "Lake",
            "(data-lake)",
            "partial",
            "2",
            "0",
            "1",
            "0",
            "1"
        ]
    );
    assert_eq!(
        row("111111111111")[1..],
        [
            "Payments",
            "Prod",
            "(payments-prod)",
            "ok",
            "6",
            "1",
            "0",
            "1",
            "0"
        ]
    );
    assert_eq!(
        row("TOTAL")[1..],
        ["4", "accounts", "8", "1", "1", "1", "1"]
    );
    assert!(table.contains("accounts: 1 ok, 1 partial, 0 failed, 1 missing, 1 no agent, 1 skipped"));
    assert!(table.contains("users: 8, keys: 9 (8 active), failed actions: 1, IAM calls: 6"));
    // Columns line up: every row of the table has the same width prefix.
    let sep = lines.iter().find(|l| l.starts_with("----")).unwrap();
    assert!(lines[header].len() <= sep.len());
}

#[test]
fn table_strips_terminal_escapes() {
    let mut report = fixtures::report();
    report.accounts[0].name = "evil\x1b[2J\x07name".into();
    let table = to_table(&report);
    assert!(!table.contains('\x1b') && !table.contains('\x07'));
    assert!(table.contains("evil?[2J?name"));
}

fn report_with_user(name: String, email: Option<String>, path: String) -> RunReport {
    let mut report = fixtures::report();
    let ok = report.accounts.last_mut().unwrap();
    ok.users[0].user_name = name.clone();
    ok.users[0].email = email.clone();
    ok.users[0].path = path;
    ok.users[5].user_name = name;
    ok.users[5].note = email.clone();
    ok.users[5].email = email;
    report
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn renderers_never_panic_on_arbitrary_text(
        name in any::<String>(),
        email in proptest::option::of(any::<String>()),
        path in "\\PC{0,20}",
    ) {
        let report = report_with_user(name.clone(), email.clone(), path);
        let csv = to_csv(&report);
        let rows = parse_csv(&csv);
        prop_assert_eq!(rows.len(), 12);
        let alice = rows.iter().find(|r| col(r, "key_id") == "AKIAALICEOLD0000WXYZ").unwrap();
        prop_assert_eq!(col(alice, "user_name"), guard_cell(&name));
        prop_assert_eq!(col(alice, "email"), guard_cell(email.as_deref().unwrap_or("")));
        let html = to_html(&report);
        prop_assert!(!html.contains("<script"));
        let table = to_table(&report);
        prop_assert!(!table.chars().any(|c| c.is_control() && c != '\n'));
        let back: RunReport = serde_json::from_slice(&to_json(&report)).unwrap();
        prop_assert_eq!(back, report);
    }

    #[test]
    fn html_text_is_always_escaped(name in "[<>&\"'a-z ]{0,40}") {
        let report = report_with_user(name.clone(), Some(name.clone()), "/".into());
        let html = to_html(&report);
        let escaped = name.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
        if name.contains(['<', '>', '&', '"']) {
            prop_assert!(html.contains(&escaped));
        }
        prop_assert!(!html.contains("<script"));
    }
}

/// Writes the sample report in every format to `KEYFLEET_RENDER_SAMPLE_DIR`
/// when it is set (for `render_check.sh` and a look by eye).
#[test]
fn writes_samples_when_asked() {
    let Some(dir) = std::env::var_os("KEYFLEET_RENDER_SAMPLE_DIR") else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    let report = fixtures::report();
    std::fs::write(dir.join("report.html"), to_html(&report)).unwrap();
    std::fs::write(dir.join("report.csv"), to_csv(&report)).unwrap();
    std::fs::write(dir.join("report.json"), to_json(&report)).unwrap();
    std::fs::write(dir.join("report.txt"), to_table(&report)).unwrap();
}

#[test]
fn a_users_note_is_in_its_row_in_every_shape() {
    let mut report = fixtures::report();
    let ok = report.accounts.last_mut().unwrap();
    let note = "key AKIAFOREIGN0000001 was not created by keyfleet";
    ok.users[3].note = Some(note.into()); // dave, two keys
    ok.users[5].note = Some("no `Email` tag".into()); // frank, no keys

    let csv = to_csv(&report);
    let rows = parse_csv(&csv);
    // Columns added since are appended after it: `note` keeps its place.
    assert_eq!(CSV_HEADER[17], "note");
    // On the user's first row only, like the user's error.
    assert_eq!(
        col(find(&rows, "dave", "AKIADAVEOLD000000001"), "note"),
        note
    );
    assert_eq!(col(find(&rows, "dave", "AKIADAVENEW000000002"), "note"), "");
    assert_eq!(col(find(&rows, "frank", ""), "note"), "no `Email` tag");
    assert_eq!(
        col(find(&rows, "alice", "AKIAALICEOLD0000WXYZ"), "note"),
        ""
    );

    let html = to_html(&report);
    assert!(
        html.contains("<th scope=\"col\">Note</th>"),
        "a Note column"
    );
    let dave = html.find("<th scope=\"row\">dave</th>").unwrap();
    let row_end = dave + html[dave..].find("</tr>").unwrap();
    assert!(html[dave..row_end].contains(note), "in dave's row");

    let value: serde_json::Value = serde_json::from_slice(&to_json(&report)).unwrap();
    assert_eq!(value["accounts"][3]["users"][3]["note"], note);

    let table = to_table(&report);
    let line = table
        .lines()
        .find(|l| l.contains("dave"))
        .unwrap_or_else(|| panic!("dave's note in the table:\n{table}"));
    assert!(
        line.contains("111111111111") && line.contains(note),
        "{line}"
    );
}

#[test]
fn aggregate_compliance_is_as_built() {
    let r = fixtures::report();
    let s = r.compliance.as_ref().unwrap();
    let share = |id: &str| {
        r.accounts
            .iter()
            .find(|a| a.account_id == id)
            .unwrap()
            .compliance
            .unwrap()
    };
    let counts = |c: Compliance| (c.active_keys, c.active_keys_within_90d);
    assert_eq!(counts(share("111111111111")), (5, 3));
    assert_eq!(counts(share("222222222222")), (3, 1));
    assert_eq!(counts(share("333333333333")), (0, 0));
    assert_eq!(counts(s.total), (4 + 4, 4), "8 active keys, 4 within");
    assert_eq!(s.total.active_keys, r.totals.active_keys);
    let names = |l: &[UserRef]| {
        l.iter()
            .map(|u| format!("{}/{}", u.account_id, u.user_name))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&s.keys_without_mfa),
        ["111111111111/bob", "111111111111/dave"]
    );
    assert_eq!(
        names(&s.console_users_with_keys),
        ["111111111111/alice", "111111111111/dave"]
    );
    assert_eq!(s.credential_state_unknown, 1, "gina");
}

#[test]
fn csv_carries_credential_state_and_each_accounts_share() {
    let report = fixtures::report();
    let rows = parse_csv(&to_csv(&report));
    assert_eq!(
        CSV_HEADER[18..23],
        [
            "mfa_active",
            "password_enabled",
            "account_active_keys",
            "account_active_keys_within_90d",
            "account_within_90d_percent"
        ],
        "appended after the columns consumers already read"
    );
    assert_eq!(rows.len(), 12, "no extra rows");

    let flags = |r: &::csv::StringRecord| (col(r, "mfa_active"), col(r, "password_enabled"));
    let share = |r: &::csv::StringRecord| {
        [
            col(r, "account_active_keys"),
            col(r, "account_active_keys_within_90d"),
            col(r, "account_within_90d_percent"),
        ]
    };
    let alice = find(&rows, "alice", "AKIAALICEOLD0000WXYZ");
    assert_eq!(flags(alice), ("true".into(), "true".into()));
    assert_eq!(share(alice), ["5", "3", "60.0%"]);
    assert_eq!(
        flags(find(&rows, "bob", "AKIABOB0000000000001")),
        ("false".into(), "false".into())
    );
    // On every row of the user, like the email.
    for k in ["AKIADAVEOLD000000001", "AKIADAVENEW000000002"] {
        assert_eq!(
            flags(find(&rows, "dave", k)),
            ("false".into(), "true".into())
        );
    }
    // Unknown is empty, not `false`.
    let gina = find(&rows, "gina", "AKIAGINA000000000001");
    assert_eq!(flags(gina), (String::new(), String::new()));
    assert_eq!(share(gina), ["3", "1", "33.3%"]);
    // An account without users still has its (empty) measure.
    let missing = &rows[0];
    assert_eq!(col(missing, "account_state"), "missing");
    assert_eq!(share(missing), ["0", "0", "n/a"]);
    assert_eq!(flags(missing), (String::new(), String::new()));

    // The total is the sum over the distinct accounts.
    let mut seen = std::collections::BTreeMap::new();
    for r in &rows {
        seen.insert(col(r, "account_id"), share(r));
    }
    let sum = |i: usize| -> u64 { seen.values().map(|s| s[i].parse::<u64>().unwrap()).sum() };
    let total = report.compliance.as_ref().unwrap().total;
    assert_eq!(
        (sum(0), sum(1)),
        (total.active_keys, total.active_keys_within_90d)
    );
}

#[test]
fn html_has_a_compliance_section_with_shares_and_findings() {
    let report = fixtures::report();
    let html = to_html(&report);
    assert!(html.contains(
        "<li class=\"bad\"><span class=\"n\">50.0%</span><span class=\"l\">Active keys \u{2264} 90 days (CIS)</span></li>"
    ));
    let start = html
        .find("id=\"compliance\"")
        .expect("a Compliance section");
    let accounts = html.find("id=\"accounts-h\"").unwrap();
    let users = html.find("id=\"users-h\"").unwrap();
    assert!(
        accounts < start && start < users,
        "after the accounts table"
    );
    let section = &html[start..users];
    assert!(section.contains("<h2 id=\"compliance-h\">Compliance</h2>"));
    assert!(section.contains("<strong>50.0% (4 of 8 active keys)</strong>"));
    let row = |id: &str| {
        let at = section.find(&format!("<code>{id}</code>")).unwrap();
        let end = at + section[at..].find("</tr>").unwrap();
        section[at..end].to_string()
    };
    let nums = |r: &str| -> Vec<String> {
        r.split("<td class=\"num\">")
            .skip(1)
            .map(|c| c[..c.find("</td>").unwrap()].to_string())
            .collect()
    };
    // Active keys, within 90 days, share; then the account's users in
    // each finding (bob and dave without MFA, alice and dave with a
    // console password: all of Payments Prod).
    assert_eq!(nums(&row("111111111111")), ["5", "3", "60.0%", "2", "2"]);
    assert_eq!(nums(&row("222222222222")), ["3", "1", "33.3%", "0", "0"]);
    assert_eq!(nums(&row("333333333333")), ["0", "0", "n/a", "0", "0"]);
    assert!(section.contains(
        "<td class=\"num\">8</td><td class=\"num\">4</td><td class=\"num\">50.0%</td><td class=\"num\">2</td><td class=\"num\">2</td>"
    ));

    let no_mfa = section.find("id=\"no-mfa-h\"").unwrap();
    let console = section.find("id=\"console-keys-h\"").unwrap();
    let no_mfa_part = &section[no_mfa..console];
    let console_part = &section[console..];
    assert!(no_mfa_part.contains("Active access key, no MFA (2)"));
    assert!(console_part.contains("Console password and active access key (2)"));
    let user_cells = |part: &str| -> Vec<String> {
        part.split("<td>")
            .skip(1)
            .map(|c| c[..c.find("</td>").unwrap()].to_string())
            .filter(|c| !c.starts_with('<') && !c.contains('('))
            .collect()
    };
    assert_eq!(user_cells(no_mfa_part), ["bob", "dave"]);
    assert_eq!(user_cells(console_part), ["alice", "dave"]);
    assert!(console_part.contains("IAM Identity Center"));
    assert!(console_part.contains("MFA or console password unknown for 1 user with an active key"));
    // Carol (inactive key) and frank (no key) are in no finding.
    assert!(!section.contains(">carol<") && !section.contains(">frank<"));
}

#[test]
fn html_finding_lists_say_none_when_empty() {
    let mut report = fixtures::report();
    let s = report.compliance.as_mut().unwrap();
    s.keys_without_mfa.clear();
    s.console_users_with_keys.clear();
    s.credential_state_unknown = 0;
    let html = to_html(&report);
    let section =
        &html[html.find("id=\"compliance\"").unwrap()..html.find("id=\"users-h\"").unwrap()];
    assert_eq!(section.matches("<p>None.</p>").count(), 2);
    assert!(!section.contains("unknown for"));
}

#[test]
fn table_has_the_share_and_the_findings_counts() {
    let table = to_table(&fixtures::report());
    assert!(
        table.contains("active keys at most 90 days old (CIS): 50.0% (4 of 8 active keys)"),
        "{table}"
    );
    assert!(table.contains(
        "findings: 2 users with an active key and no MFA, 2 users with a console password and an active key"
    ));
    assert!(table.contains("MFA or console password unknown for 1 user with an active key"));
}

/// A report stored before the evidence existed: read back (the API and
/// `keyfleet report` do) and rendered, it says "not recorded" everywhere
/// rather than "n/a", 0% or an empty finding.
fn report_stored_before_compliance() -> RunReport {
    let mut value = serde_json::to_value(fixtures::report()).unwrap();
    value.as_object_mut().unwrap().remove("compliance");
    for a in value["accounts"].as_array_mut().unwrap() {
        a.as_object_mut().unwrap().remove("compliance");
        for u in a["users"].as_array_mut().unwrap() {
            u.as_object_mut().unwrap().remove("mfa_active");
            u.as_object_mut().unwrap().remove("password_enabled");
        }
    }
    serde_json::from_value(value).unwrap()
}

#[test]
fn an_old_report_says_compliance_was_not_recorded_in_every_shape() {
    let old = report_stored_before_compliance();
    assert_eq!(old.compliance, None);
    let html = to_html(&old);
    assert!(html.contains("<span class=\"n\">not recorded</span>"));
    let section =
        &html[html.find("id=\"compliance\"").unwrap()..html.find("id=\"users-h\"").unwrap()];
    assert!(section.contains("Not recorded: this report was finalized before"));
    assert!(!section.contains("n/a") && !section.contains("None."));
    let rows = parse_csv(&to_csv(&old));
    assert_eq!(rows.len(), 12);
    for r in &rows {
        for c in &CSV_HEADER[18..] {
            assert_eq!(col(r, c), "", "{c} empty");
        }
    }
    let table = to_table(&old);
    assert!(table.contains("active keys at most 90 days old (CIS): not recorded"));
    assert!(!table.contains("findings:"));
    let value: serde_json::Value = serde_json::from_slice(&to_json(&old)).unwrap();
    assert!(value["compliance"].is_null());
}

#[test]
fn json_carries_the_evidence() {
    let value: serde_json::Value = serde_json::from_slice(&to_json(&fixtures::report())).unwrap();
    let c = &value["compliance"];
    assert_eq!(c["total"]["active_keys"], 8);
    assert_eq!(c["total"]["active_keys_within_90d"], 4);
    assert_eq!(c["keys_without_mfa"][0]["account_id"], "111111111111");
    assert_eq!(c["keys_without_mfa"][0]["user_name"], "bob");
    assert_eq!(c["console_users_with_keys"][0]["user_name"], "alice");
    assert_eq!(c["credential_state_unknown"], 1);
    let ok = &value["accounts"][3];
    assert_eq!(ok["account_id"], "111111111111");
    assert_eq!(ok["compliance"]["active_keys"], 5);
    assert_eq!(ok["compliance"]["active_keys_within_90d"], 3);
    assert_eq!(ok["users"][0]["mfa_active"], true);
    assert_eq!(ok["users"][0]["password_enabled"], true);
    // Unknown is left out, not `false`.
    let gina = &value["accounts"][2]["users"][0];
    assert_eq!(gina["user_name"], "gina");
    assert!(gina.get("mfa_active").is_none());
}

/// A large run's HTML report is a summary page whose size does not grow
/// with the users, plus a page per account; lists on the summary are capped
/// with their counts. (A run of up to `INLINE_USERS` users stays one page,
/// as every test above shows.)
#[test]
fn a_large_report_is_a_summary_page_and_a_page_per_account() {
    use super::html::{is_split, LIST_ROWS};
    let small = fixtures::report();
    assert!(!is_split(&small));

    let report = fixtures::large_report(60, 40);
    assert!(is_split(&report));
    let page = to_html(&report);
    assert!(page.len() < 1_000_000, "{} bytes", page.len());
    // Every account is linked to its page; no user's row is on the summary.
    for a in &report.accounts {
        assert!(
            page.contains(&format!("href=\"accounts/{}.html\"", a.account_id)),
            "{}",
            a.account_id
        );
    }
    assert!(
        !page.contains("user-59-39"),
        "the last user is on its page only"
    );
    assert!(!page.contains("<th scope=\"col\">Keys (oldest first)</th>"));
    // Failed users (every seventh: 6 of 40 in each of 60 accounts) and the
    // no-MFA finding (8 of 40 each) are capped, with their counts.
    let failed = 60 * 40_usize.div_ceil(7);
    assert!(page.contains(&format!("The first {LIST_ROWS} of {failed} users")));
    let no_mfa = 60 * 8;
    assert!(page.contains(&format!("The first {LIST_ROWS} of {no_mfa} users")));

    // Twice the users per account: the summary page hardly grows.
    let twice = to_html(&fixtures::large_report(60, 80));
    assert!(
        twice.len() < page.len() + page.len() / 20,
        "{} bytes for twice the users, {} before",
        twice.len(),
        page.len()
    );

    // An account's page has its users, its findings and the way back.
    let a = &report.accounts[59];
    let own = account_page(&report, a);
    assert!(own.contains("href=\"../report.html\""));
    assert!(own.contains("user-59-39") && !own.contains("user-58-"));
    assert!(own.contains("<th scope=\"col\">Keys (oldest first)</th>"));
    let findings = &own[own.find("id=\"no-mfa-h\"").unwrap()..];
    assert!(findings.contains("<li>user-59-0</li>") && findings.contains("<li>user-59-35</li>"));
}

/// A one-page report whose lists are capped says where the other rows are
/// on that page (the sections below), not on account pages it does not
/// have.
#[test]
fn a_capped_list_of_a_one_page_report_points_to_its_own_sections() {
    use super::html::{is_split, LIST_ROWS};
    let report = fixtures::large_report(2, 900);
    assert!(!is_split(&report));
    let page = to_html(&report);
    let failed = 2 * 900_usize.div_ceil(7);
    let line = format!("The first {LIST_ROWS} of {failed} users are listed");
    let at = page.find(&line).expect("the capped list says how many");
    let sentence = &page[at..at + page[at..].find("</p>").unwrap()];
    assert!(!sentence.contains("account pages"), "{sentence}");
    assert!(sentence.contains("Users by account"), "{sentence}");
}

/// The summary page of a large run is rendered from the summary alone
/// (schema 2: no users inline, as finalize holds it): it is the page the
/// whole report gives, and the CSV written one account at a time is the
/// whole report's CSV.
#[test]
fn a_large_runs_summary_page_needs_no_users() {
    use keyfleet_protocol::report::LISTED_USERS;
    let report = fixtures::large_report(30, 90);
    assert!(html::is_split(&report));
    assert!(report.failed_users.count > LISTED_USERS as u64 || report.totals.users > 2_000);
    let summary = report.without_users(|a| format!("runs/x/final/a/{}.json", a.account_id));
    assert!(summary.accounts.iter().all(|a| a.users.is_empty()));
    assert!(!summary.users_inline());
    assert_eq!(to_html(&summary), to_html(&report));
    let mut streamed = csv_head(&summary);
    for a in &report.accounts {
        streamed.extend(csv_account(&summary, a));
    }
    assert_eq!(streamed, to_csv(&report));
    // The JSON summary is a fraction of the whole report.
    let (small, whole) = (to_json(&summary).len(), to_json(&report).len());
    assert!(
        small * 10 < whole,
        "summary {small} bytes, whole {whole} bytes"
    );
}

/// A report written before schema 2 (no `schema`, no figures, no counts
/// beside the lists, no recorded failed users or action outcomes, every
/// user inline) reads as schema 1 and renders as the same report written
/// today: what schema 2 records, a schema 1 report's users say.
#[test]
fn a_schema_1_report_renders_as_its_schema_2_twin() {
    for today in [fixtures::report(), fixtures::large_report(3, 900)] {
        let mut v = serde_json::to_value(&today).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("schema");
        o.remove("failed_users");
        o["totals"]
            .as_object_mut()
            .unwrap()
            .remove("action_outcomes");
        // Schema 1 listed every user of a finding.
        let every = |finding: fn(&keyfleet_protocol::messages::UserReport) -> bool| {
            today
                .accounts
                .iter()
                .flat_map(|a| {
                    a.users.iter().filter(|u| finding(u)).map(|u| {
                        serde_json::json!({"account_id": a.account_id, "user_name": u.user_name})
                    })
                })
                .collect::<Vec<_>>()
        };
        let c = o["compliance"].as_object_mut().unwrap();
        c.remove("keys_without_mfa_total");
        c.remove("console_users_with_keys_total");
        c["keys_without_mfa"] = every(keyfleet_protocol::report::keys_without_mfa).into();
        c["console_users_with_keys"] =
            every(keyfleet_protocol::report::console_user_with_keys).into();
        for a in o["accounts"].as_array_mut().unwrap() {
            a.as_object_mut().unwrap().remove("figures");
        }
        let old: RunReport = serde_json::from_value(v).unwrap();
        assert_eq!(old.schema, 1);
        assert!(old.users_inline());
        for (a, b) in old.accounts.iter().zip(&today.accounts) {
            assert_eq!(a.figures(), b.figures.unwrap());
        }
        assert_eq!(to_html(&old), to_html(&today));
        assert_eq!(to_csv(&old), to_csv(&today));
        assert_eq!(to_table(&old), to_table(&today));
    }
}
