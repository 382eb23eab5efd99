use super::*;
use crate::zipbox;
use keyfleet_reports::fixtures;
use mail_parser::{Address as ParsedAddress, Message, MessageParser, MimeHeaders};
use time::macros::datetime;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const NEW_KEY: &str = "AKIAIOSFODNN7NEWWXYZ";
const OLD_KEY: &str = "AKIAIOSFODNN7OLD1234";

fn ctx() -> MailContext {
    MailContext {
        sender: "keyfleet <keyfleet@security.example.com>".into(),
        account_id: "111122223333".into(),
        account_alias: Some("payments-prod".into()),
        user_name: "alice+ci@example.com".into(),
        to: "alice@example.com".into(),
        now: datetime!(2026-03-10 06:05 UTC),
        run_id: "run-42".into(),
        cutover_on_use: true,
    }
}

fn credential() -> Credential {
    Credential {
        account_id: "111122223333".into(),
        user_name: "alice+ci@example.com".into(),
        access_key_id: NEW_KEY.into(),
        secret_access_key: Secret::new(SECRET),
        created: datetime!(2026-03-10 06:01 UTC),
    }
}

fn parse(raw: &[u8]) -> Message<'_> {
    MessageParser::default()
        .parse(raw)
        .expect("the message parses")
}

fn first_address(a: Option<&ParsedAddress<'_>>) -> String {
    a.and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_string()
}

fn all_addresses(a: Option<&ParsedAddress<'_>>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .filter_map(|a| a.address())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

fn text(msg: &Message<'_>) -> String {
    msg.body_text(0).expect("a text body").replace("\r\n", "\n")
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn header(msg: &Message<'_>, name: &str) -> Option<String> {
    msg.header_raw(name).map(|v| v.trim().to_string())
}

fn assert_common_headers(msg: &Message<'_>, email: &Email, kind: &str) {
    assert_eq!(first_address(msg.from()), "keyfleet@security.example.com");
    assert_eq!(
        msg.from().and_then(|a| a.first()).and_then(|a| a.name()),
        Some("keyfleet")
    );
    assert_eq!(all_addresses(msg.to()), email.to);
    assert_eq!(msg.subject(), Some(email.subject.as_str()));
    assert_eq!(
        header(msg, "Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert_eq!(header(msg, "X-Keyfleet-Kind").as_deref(), Some(kind));
    let id = msg.message_id().expect("a Message-ID");
    assert!(id.starts_with("keyfleet."), "{id}");
    assert!(id.ends_with("@security.example.com"), "{id}");
    assert!(msg.date().is_some());
}

#[test]
fn new_key_email_carries_the_zip_and_explains_it() {
    let pw = zipbox::generate_password();
    let cred = credential();
    let (zip_name, zip_bytes) = zipbox::credentials_zip(&cred, &pw, Some("payments-prod")).unwrap();
    let email = new_key_email(
        &ctx(),
        &NewKeyInfo::from(&cred),
        &zip_name,
        &zip_bytes,
        Some(datetime!(2026-03-20 06:00 UTC)),
        Some(OLD_KEY),
    )
    .unwrap();
    assert_eq!(email.to, vec!["alice@example.com".to_string()]);
    let msg = parse(&email.raw);
    assert_common_headers(&msg, &email, "new_key");
    assert_eq!(
        header(&msg, "X-Keyfleet-Account").as_deref(),
        Some("111122223333")
    );
    assert_eq!(header(&msg, "X-Keyfleet-Run").as_deref(), Some("run-42"));
    let subject = msg.subject().unwrap();
    assert!(subject.contains("\u{2026}WXYZ"), "{subject}");
    assert!(
        subject.contains("payments-prod (111122223333)"),
        "{subject}"
    );
    assert!(!subject.contains(NEW_KEY), "subject shows only the last 4");

    let ct = msg.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("mixed")));
    assert_eq!(msg.attachment_count(), 1);
    let att = msg.attachment(0).unwrap();
    assert_eq!(att.attachment_name(), Some(zip_name.as_str()));
    let act = att.content_type().unwrap();
    assert_eq!((act.ctype(), act.subtype()), ("application", Some("zip")));
    assert_eq!(
        att.content_transfer_encoding()
            .map(|s| s.to_ascii_lowercase()),
        Some("base64".to_string())
    );
    assert_eq!(att.contents(), zip_bytes.as_slice());

    let body = text(&msg);
    for needle in [
        NEW_KEY,
        "alice+ci@example.com",
        "111122223333",
        "payments-prod",
        zip_name.as_str(),
        "second, separate email",
        "7-Zip",
        "Keka",
        "7z x",
        "cannot open AES-encrypted zips",
        "credentials.csv",
        OLD_KEY,
        "will be deactivated on 2026-03-20 (in 9 days)",
        "Once only the new key is in use, keyfleet deactivates the old one",
        "2026-03-10 06:01 UTC",
        "run-42",
    ] {
        assert!(body.contains(needle), "body lacks {needle:?}:\n{body}");
    }
    // Neither the password nor the secret travels in message 1.
    assert!(!contains(&email.raw, pw.expose()));
    assert!(!body.contains(pw.expose()));
    assert!(!contains(&email.raw, SECRET));
}

#[test]
fn new_key_email_old_key_cases() {
    let cred = credential();
    let key = NewKeyInfo::from(&cred);
    let body_for = |on: Option<OffsetDateTime>, old: Option<&str>| {
        let email = new_key_email(&ctx(), &key, "k.zip", b"PK", on, old).unwrap();
        text(&parse(&email.raw))
    };
    let past = body_for(Some(datetime!(2026-03-10 06:00 UTC)), Some(OLD_KEY));
    assert!(
        past.contains(&format!("{OLD_KEY} was deactivated on 2026-03-10")),
        "{past}"
    );
    let later = body_for(None, Some(OLD_KEY));
    assert!(later.contains("stays active for now"), "{later}");
    let first = body_for(None, None);
    assert!(!first.contains("old access key"), "{first}");
}

#[test]
fn password_email_carries_only_the_password() {
    let pw = zipbox::generate_password();
    let email = password_email(&ctx(), NEW_KEY, &pw).unwrap();
    let msg = parse(&email.raw);
    assert_common_headers(&msg, &email, "password");
    assert_eq!(msg.attachment_count(), 0);
    let ct = msg.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("plain")));
    let body = text(&msg);
    assert!(
        body.lines().any(|l| l == pw.expose()),
        "the password stands on its own line"
    );
    assert!(
        body.contains("keyfleet-payments-prod-alice+ci@example.com.zip"),
        "{body}"
    );
    assert!(body.contains("7-Zip") && body.contains("Keka") && body.contains("7z x"));
    assert!(!email.subject.contains(pw.expose()));
    assert!(msg.subject().unwrap().contains("\u{2026}WXYZ"));
    assert!(!contains(&email.raw, SECRET));
    // Debug never shows the raw message.
    let dbg = format!("{email:?}");
    assert!(!dbg.contains(pw.expose()), "{dbg}");
    assert!(dbg.contains("bytes>"), "{dbg}");
}

/// A digest holding `notice` alone, for `ctx`'s owner, account and user:
/// how an owner with one notice in a run gets it.
fn notice_email(ctx: &MailContext, notice: &Notice) -> Result<Email, MailError> {
    digest::digest_email(
        &digest::DigestContext {
            sender: ctx.sender.clone(),
            to: ctx.to.clone(),
            now: ctx.now,
            run_id: ctx.run_id.clone(),
            cutover_on_use: ctx.cutover_on_use,
        },
        &[digest::DigestItem {
            account_id: ctx.account_id.clone(),
            account_alias: ctx.account_alias.clone(),
            user_name: ctx.user_name.clone(),
            notice: notice.clone(),
            next_step: None,
        }],
    )
}

fn notices() -> Vec<Notice> {
    vec![
        Notice::DeactivationScheduled {
            key_id: OLD_KEY.into(),
            on: datetime!(2026-03-20 06:00 UTC),
            replacement: Some(NEW_KEY.into()),
        },
        Notice::Deactivated {
            key_id: OLD_KEY.into(),
            replacement: Some(NEW_KEY.into()),
        },
        Notice::Deleted {
            key_id: OLD_KEY.into(),
        },
        Notice::UnusedDeleted {
            key_id: OLD_KEY.into(),
            last_used: Some(datetime!(2025-11-01 12:00 UTC)),
        },
        Notice::Reactivated {
            key_id: OLD_KEY.into(),
            until: datetime!(2026-03-20 06:05 UTC),
        },
        Notice::StillInUse {
            key_id: OLD_KEY.into(),
            last_used: Some(datetime!(2026-03-09 22:15 UTC)),
            service: Some("dynamodb".into()),
            region: Some("eu-central-1".into()),
            replacement: Some(NEW_KEY.into()),
            used_from: Vec::new(),
        },
    ]
}

#[test]
fn each_notice_has_its_own_template() {
    let mut subjects = std::collections::HashSet::new();
    for notice in notices() {
        let email = notice_email(&ctx(), &notice).unwrap();
        let msg = parse(&email.raw);
        assert_common_headers(&msg, &email, "digest");
        assert_eq!(
            header(&msg, "X-Keyfleet-Notices"),
            Some(format!("111122223333/{}", notice.kind()))
        );
        assert_eq!(msg.attachment_count(), 0);
        let subject = msg.subject().unwrap().to_string();
        assert!(subject.contains("\u{2026}1234"), "{subject}");
        assert!(subject.contains("alice+ci@example.com"), "{subject}");
        assert!(
            subject.contains("payments-prod (111122223333)"),
            "{subject}"
        );
        assert!(subjects.insert(subject.clone()), "subjects differ per kind");
        let body = text(&msg);
        for needle in [
            OLD_KEY,
            "alice+ci@example.com",
            "111122223333",
            "payments-prod",
            "run-42",
        ] {
            assert!(
                body.contains(needle),
                "{}: body lacks {needle:?}:\n{body}",
                notice.kind()
            );
        }
        let expected: &[&str] = match notice {
            Notice::DeactivationScheduled { .. } => &[
                "will be deactivated on 2026-03-20 06:00 UTC (in 9 days)",
                NEW_KEY,
            ],
            Notice::Deactivated { .. } => &["was deactivated on 2026-03-10 06:05 UTC", NEW_KEY],
            Notice::Deleted { .. } => &["deleted on 2026-03-10 06:05 UTC", "cannot be undone"],
            Notice::UnusedDeleted { .. } => &[
                "had not been used since 2025-11-01 12:00 UTC",
                "was not replaced",
            ],
            Notice::Reactivated { .. } => &[
                "switched back on by your security team on 2026-03-10 06:05 UTC",
                "deactivated again on\n2026-03-20 06:05 UTC (in 10 days)",
                "then it is deleted",
            ],
            Notice::StillInUse { .. } => &[
                "2026-03-09 22:15 UTC",
                "dynamodb",
                "eu-central-1",
                NEW_KEY,
                "not\ndeactivated",
            ],
        };
        for needle in expected {
            assert!(
                body.contains(needle),
                "{}: body lacks {needle:?}:\n{body}",
                notice.kind()
            );
        }
        if let Notice::DeactivationScheduled { .. } = notice {
            assert!(
                subject.ends_with("will be deactivated on 2026-03-20"),
                "{subject}"
            );
        }
    }
}

#[test]
fn notices_without_optional_details_still_read() {
    let never_used = Notice::UnusedDeleted {
        key_id: "AK".into(),
        last_used: None,
    };
    let email = notice_email(&ctx(), &never_used).unwrap();
    let body = text(&parse(&email.raw));
    assert!(body.contains("had never been used"), "{body}");
    assert!(
        email.subject.contains("\u{2026}AK"),
        "short ids are shown whole"
    );

    let unknown = Notice::StillInUse {
        key_id: OLD_KEY.into(),
        last_used: None,
        service: None,
        region: None,
        replacement: None,
        used_from: Vec::new(),
    };
    let body = text(&parse(&notice_email(&ctx(), &unknown).unwrap().raw));
    assert!(body.contains("an unknown service") && body.contains("an unknown region"));

    let mut no_alias = ctx();
    no_alias.account_alias = None;
    let email = notice_email(&no_alias, &notices()[2]).unwrap();
    assert!(
        email.subject.contains(" in 111122223333 was deleted")
            || email.subject.contains("in 111122223333")
    );
    assert!(!email.subject.contains("()"));
}

#[test]
fn summary_email_has_numbers_html_and_the_csv() {
    let report = fixtures::report();
    let csv = keyfleet_reports::render::to_csv(&report);
    let to = vec![
        "secteam@example.com".to_string(),
        "ciso@example.com".to_string(),
    ];
    let email = summary_email(
        "keyfleet <keyfleet@security.example.com>",
        &to,
        &report,
        &csv,
        Some("https://reports.example.com/run/index.html"),
    )
    .unwrap();
    assert_eq!(email.to, to);
    let msg = parse(&email.raw);
    assert_common_headers(&msg, &email, "summary");
    assert!(email.subject.contains(fixtures::RUN_ID));
    assert!(
        email
            .subject
            .contains("4 accounts, 3 need attention, 1 user rotated, 1 failed action"),
        "{}",
        email.subject
    );
    let ct = msg.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("mixed")));
    assert_eq!(msg.attachment_count(), 1);
    let att = msg.attachment(0).unwrap();
    let name = format!("keyfleet-{}.csv", fixtures::RUN_ID);
    assert_eq!(att.attachment_name(), Some(name.as_str()));
    let act = att.content_type().unwrap();
    assert_eq!((act.ctype(), act.subtype()), ("text", Some("csv")));
    assert_eq!(att.contents(), csv.as_slice());

    let body = text(&msg);
    for needle in [
        "Accounts:   4",
        "ok                    1",
        "partial               1",
        "missing (no result)   1",
        "no agent              1",
        "skipped (excluded)    1",
        "Users:      8",
        "Keys:       9 (8 active)",
        "Failed actions: 1",
        "rotated               1",
        "333333333333 missing",
        "444444444444 no_agent",
        "222222222222 partial",
        "1 of 2 users failed",
        &name,
        "https://reports.example.com/run/index.html",
    ] {
        assert!(body.contains(needle), "summary lacks {needle:?}:\n{body}");
    }
    let html = msg.body_html(0).expect("an HTML alternative");
    assert!(html.contains("Accounts that need attention"));
    assert!(html.contains("href=\"https://reports.example.com/run/index.html\""));
    assert!(html.contains("333333333333"));
    assert!(!contains(&email.raw, SECRET));
}

#[test]
fn summary_email_flags_dry_runs_and_needs_recipients() {
    let mut report = fixtures::report();
    report.dry_run = true;
    let email = summary_email(
        "keyfleet@example.com",
        &["a@example.com".into()],
        &report,
        b"x\r\n",
        None,
    )
    .unwrap();
    assert!(
        email.subject.starts_with("[keyfleet] [DRY RUN] Run "),
        "{}",
        email.subject
    );
    assert!(text(&parse(&email.raw)).contains("DRY RUN"));
    assert!(matches!(
        summary_email("keyfleet@example.com", &[], &report, b"", None),
        Err(MailError::NoRecipients(_))
    ));
}

#[test]
fn bad_addresses_are_refused_and_headers_cannot_be_injected() {
    for bad in [
        "alice@example.com\r\nBcc: evil@example.com",
        "alice@example.com>, <evil@example.com",
        "Alice <alice@example.com>",
        "alice",
        "@example.com",
        "alice@",
        "alice@localhost",
        "a@b@example.com",
        "alice @example.com",
        "",
    ] {
        let mut c = ctx();
        c.to = bad.into();
        let err = notice_email(&c, &notices()[2]).unwrap_err();
        assert!(
            matches!(
                err,
                MailError::InvalidAddress {
                    field: "recipient",
                    ..
                }
            ),
            "{bad:?}: {err}"
        );
        assert!(!err.to_string().contains('\n'), "error text is one line");
    }
    let mut c = ctx();
    c.sender = "keyfleet <keyfleet@example.com".into();
    assert!(matches!(
        notice_email(&c, &notices()[2]),
        Err(MailError::InvalidAddress {
            field: "sender",
            ..
        })
    ));
    c.sender = "keyfleet@example.com".into();
    let email = notice_email(&c, &notices()[2]).unwrap();
    assert_eq!(
        first_address(parse(&email.raw).from()),
        "keyfleet@example.com"
    );

    // An alias with a line break ends up encoded in the subject, not as a header.
    let mut c = ctx();
    c.account_alias = Some("prod\r\nBcc: evil@example.com".into());
    let email = notice_email(&c, &notices()[2]).unwrap();
    let msg = parse(&email.raw);
    assert!(msg.bcc().is_none());
    assert!(msg.header_raw("Bcc").is_none());
    assert_eq!(
        all_addresses(msg.to()),
        vec!["alice@example.com".to_string()]
    );
    let raw = String::from_utf8_lossy(&email.raw);
    assert!(!raw.contains("\nBcc:"), "{raw}");
}

#[test]
fn short_key_takes_the_last_four() {
    assert_eq!(short_key("AKIAIOSFODNN7EXAMPLE"), "\u{2026}MPLE");
    assert_eq!(short_key("ABC"), "\u{2026}ABC");
    assert_eq!(short_key(""), "\u{2026}");
}

#[test]
fn mail_errors_never_carry_secrets() {
    let pw = zipbox::generate_password();
    let mut c = ctx();
    c.to = "not an address".into();
    let err = password_email(&c, NEW_KEY, &pw).unwrap_err();
    for t in [err.to_string(), format!("{err:?}")] {
        assert!(!t.contains(pw.expose()), "{t}");
    }
}

/// Writes sample messages as `.eml` files to `KEYFLEET_MAIL_SAMPLE_DIR` when
/// it is set, to read them by eye or open them in a mail client.
#[test]
fn writes_samples_when_asked() {
    let Some(dir) = std::env::var_os("KEYFLEET_MAIL_SAMPLE_DIR") else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    let pw = zipbox::generate_password();
    let cred = credential();
    let (zip_name, zip_bytes) = zipbox::credentials_zip(&cred, &pw, Some("payments-prod")).unwrap();
    let mut emails = vec![
        (
            "1-new-key".to_string(),
            new_key_email(
                &ctx(),
                &NewKeyInfo::from(&cred),
                &zip_name,
                &zip_bytes,
                Some(datetime!(2026-03-20 06:00 UTC)),
                Some(OLD_KEY),
            )
            .unwrap(),
        ),
        (
            "2-password".to_string(),
            password_email(&ctx(), NEW_KEY, &pw).unwrap(),
        ),
    ];
    for n in notices() {
        emails.push((
            format!("notice-{}", n.kind()),
            notice_email(&ctx(), &n).unwrap(),
        ));
    }
    let report = fixtures::report();
    emails.push((
        "summary".to_string(),
        summary_email(
            "keyfleet@security.example.com",
            &["secteam@example.com".into()],
            &report,
            &keyfleet_reports::render::to_csv(&report),
            None,
        )
        .unwrap(),
    ));
    for (name, email) in emails {
        std::fs::write(dir.join(format!("{name}.eml")), &email.raw).unwrap();
    }
}

#[test]
fn owners_with_mail_coming_are_checked_with_the_runs_policy() {
    use keyfleet_protocol::Policy;
    let results = fixtures::results();
    let ok = &results[0];
    let user = |name: &str, email: &str| {
        let mut u = ok
            .users
            .iter()
            .find(|u| u.user_name == name)
            .unwrap()
            .clone();
        u.email = Some(email.into());
        u
    };
    let open = Policy::default();
    let allow = Policy {
        owner_domains: vec!["example.com".into()],
        ..Policy::default()
    };
    // alice has a new key and a notice; bob has nothing coming.
    assert!(has_mail(&open, ok, &user("alice", "a@example.com")));
    assert!(!has_mail(&open, ok, &user("bob", "b@example.com")));
    assert_eq!(
        owner_refusal(&open, ok, &user("alice", "a@example.org")),
        None
    );
    let why = owner_refusal(&allow, ok, &user("alice", "a@example.org")).unwrap();
    assert!(
        refusal_text(&why).starts_with("owner address not deliverable"),
        "{why}"
    );
    assert!(why.to_string().contains("owner_domains"), "{why}");
    assert!(owner_refusal(&open, ok, &user("alice", "bad@corp")).is_some());
    // Nothing to send: nothing to refuse (the agent reports the user).
    assert_eq!(owner_refusal(&allow, ok, &user("bob", "bad@corp")), None);
}

fn summary_of(report: &keyfleet_protocol::report::RunReport) -> (String, String) {
    let email = summary_email(
        "keyfleet@example.com",
        &["secteam@example.com".into()],
        report,
        b"x\r\n",
        None,
    )
    .unwrap();
    let msg = parse(&email.raw);
    let html = msg.body_html(0).expect("an HTML alternative").to_string();
    (text(&msg), html)
}

#[test]
fn summary_email_has_the_compliance_share_and_the_findings_counts() {
    let (body, html) = summary_of(&fixtures::report());
    for needle in [
        "Compliance:\n",
        "  Active keys at most 90 days old (CIS): 50.0% (4 of 8 active keys)\n",
        "  Active key, no MFA:              2 users\n",
        "  Console password and active key: 2 users\n",
        "  MFA or console password unknown for 1 user with an active key",
    ] {
        assert!(body.contains(needle), "summary lacks {needle:?}:\n{body}");
    }
    assert!(
        html.contains("Active keys \u{2264} 90 days (CIS)"),
        "{html}"
    );
    assert!(html.contains("50.0% (4 of 8 active keys)"));
    assert!(html.contains(
        ">Active key, no MFA</th><td style=\"padding:2px 12px 2px 0;text-align:left\">2 users<"
    ));
    assert!(html.contains(">Console password and active key</th><td style=\"padding:2px 12px 2px 0;text-align:left\">2 users<"));
    assert!(html.contains("unknown for 1 user with an active key"));
}

#[test]
fn summary_email_of_an_old_report_says_compliance_was_not_recorded() {
    let mut report = fixtures::report();
    report.compliance = None;
    let (body, html) = summary_of(&report);
    assert!(
        body.contains("Compliance: not recorded in this report"),
        "{body}"
    );
    assert!(!body.contains("no MFA"));
    assert!(html.contains("not recorded"));
    assert!(!html.contains("no MFA"));

    // A fleet with no active key has no share: n/a, not 100% or 0%.
    let mut none_active = fixtures::report();
    let s = none_active.compliance.as_mut().unwrap();
    s.total = Default::default();
    s.keys_without_mfa.clear();
    s.console_users_with_keys.clear();
    s.keys_without_mfa_total = 0;
    s.console_users_with_keys_total = 0;
    s.credential_state_unknown = 0;
    let (body, _) = summary_of(&none_active);
    assert!(body.contains("(CIS): n/a (no active key)\n"), "{body}");
    assert!(body.contains("Active key, no MFA:              0 users\n"));
    assert!(!body.contains("unknown for"));
}

#[test]
fn summary_email_links_a_csv_over_the_attachment_limit() {
    let report = fixtures::report();
    let csv = keyfleet_reports::render::to_csv(&report);
    let url = "s3://keyfleet-reports/reports/r/report.csv";
    let build = |limit: usize| {
        summary_email_with(
            "keyfleet@example.com",
            &["secteam@example.com".into()],
            &report,
            CsvReport::choose(&csv, limit, url),
            Some("https://reports.example.com/run/index.html"),
        )
        .unwrap()
    };
    // At the limit it is attached, as before.
    let attached = build(csv.len());
    assert_eq!(parse(&attached.raw).attachment_count(), 1);
    // One byte less: linked, with its size, in both parts.
    let email = build(csv.len() - 1);
    let msg = parse(&email.raw);
    assert_eq!(msg.attachment_count(), 0);
    let body = text(&msg);
    assert!(
        body.contains("too large to attach") && body.contains(url),
        "{body}"
    );
    let html = msg.body_html(0).expect("an HTML alternative");
    assert!(html.contains(url), "{html}");
    assert!(!body.contains("is attached as"), "{body}");
}

/// Without cutover on use, the date is the only one: the emails do not
/// promise an earlier deactivation.
#[test]
fn without_cutover_the_emails_give_the_date_alone() {
    let ctx = MailContext {
        cutover_on_use: false,
        ..ctx()
    };
    let notice = Notice::DeactivationScheduled {
        key_id: OLD_KEY.into(),
        on: datetime!(2026-03-20 06:00 UTC),
        replacement: Some(NEW_KEY.into()),
    };
    let hint = "Once only the new key is in use";
    let without = notice_email(&ctx, &notice).unwrap();
    assert!(!text(&parse(&without.raw)).contains(hint));
    let with = notice_email(&self::ctx(), &notice).unwrap();
    assert!(text(&parse(&with.raw)).contains(hint));
}

fn item(
    account: &str,
    user: &str,
    notice: Notice,
    next: Option<OffsetDateTime>,
) -> digest::DigestItem {
    digest::DigestItem {
        account_id: account.into(),
        account_alias: (account == "111122223333").then(|| "payments-prod".to_string()),
        user_name: user.into(),
        notice,
        next_step: next,
    }
}

fn digest_ctx() -> digest::DigestContext {
    let c = ctx();
    digest::DigestContext {
        sender: c.sender,
        to: c.to,
        now: c.now,
        run_id: c.run_id,
        cutover_on_use: c.cutover_on_use,
    }
}

/// One owner, four notices in two accounts, given in the worst order: the
/// digest opens with what needs the owner (the key still in use, with
/// where it is used; the deactivation coming), then what was done, each
/// with its next step and date, and its headers list every item in that
/// order.
#[test]
fn a_digest_puts_what_needs_the_owner_first_with_each_next_step() {
    let site = keyfleet_protocol::UseSite {
        source_ip: "203.0.113.5".into(),
        user_agent: "aws-cli/2.15.0 Python/3.11.6".into(),
        service: "s3".into(),
        region: "eu-west-1".into(),
        last_seen: datetime!(2026-03-09 22:15 UTC),
        calls: 2,
    };
    let items = vec![
        item(
            "111122223333",
            "bob",
            Notice::Deleted {
                key_id: "AKIAOLDBOB0000000001".into(),
            },
            None,
        ),
        item(
            "111122223333",
            "carol",
            Notice::Deactivated {
                key_id: "AKIAOLDCAROL00000002".into(),
                replacement: None,
            },
            Some(datetime!(2026-03-20 06:05 UTC)),
        ),
        item(
            "444455556666",
            "ivan",
            Notice::StillInUse {
                key_id: "AKIAOLDIVAN000000003".into(),
                last_used: Some(datetime!(2026-03-09 22:15 UTC)),
                service: Some("s3".into()),
                region: Some("eu-west-1".into()),
                replacement: Some(NEW_KEY.into()),
                used_from: vec![site],
            },
            Some(datetime!(2026-04-01 00:00 UTC)),
        ),
        item(
            "111122223333",
            "dave",
            Notice::DeactivationScheduled {
                key_id: "AKIAOLDDAVE000000004".into(),
                on: datetime!(2026-03-14 06:00 UTC),
                replacement: None,
            },
            Some(datetime!(2026-03-14 06:00 UTC)),
        ),
    ];
    let email = digest::digest_email(&digest_ctx(), &items).unwrap();
    let msg = parse(&email.raw);
    assert_common_headers(&msg, &email, "digest");
    assert_eq!(
        email.subject,
        "[keyfleet] Action needed on 4 of your access keys: 1 still in use, 1 to be deactivated, 1 deactivated, 1 deleted"
    );
    let list = |name: &str| -> Vec<String> {
        header(&msg, name)
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .collect()
    };
    assert_eq!(
        list("X-Keyfleet-Notices"),
        [
            "444455556666/still_in_use",
            "111122223333/deactivation_scheduled",
            "111122223333/deactivated",
            "111122223333/deleted"
        ]
    );
    assert_eq!(list("X-Keyfleet-Account"), ["111122223333", "444455556666"]);
    let body = text(&msg);
    assert!(
        body.contains("about 4 of your access keys in 2 AWS accounts"),
        "{body}"
    );
    let at = |needle: &str| {
        body.find(needle)
            .unwrap_or_else(|| panic!("body lacks {needle:?}:\n{body}"))
    };
    let order = [
        at("== Action needed =="),
        at("1. Action needed: access key \u{2026}0003 of ivan in 444455556666 is still in use"),
        at("203.0.113.5 \"aws-cli/2.15.0 Python/3.11.6\" s3 eu-west-1, 2 calls"),
        at("Next step: deactivated on 2026-04-01 00:00 UTC at the latest"),
        at("2. Access key \u{2026}0004 of dave in payments-prod (111122223333) will be deactivated on 2026-03-14"),
        at("Next step: deactivated on 2026-03-14 06:00 UTC."),
        at("== Done, for your records =="),
        at("3. Access key \u{2026}0002 of carol"),
        at("Next step: deleted at keyfleet's first run on or after 2026-03-20 06:05 UTC"),
        at("4. Inactive access key \u{2026}0001 of bob"),
        at("Next step: none"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}\n{body}");
    assert!(matches!(
        digest::digest_email(&digest_ctx(), &[]),
        Err(MailError::EmptyDigest)
    ));
}

/// A digest of what was done only asks nothing of the owner.
#[test]
fn a_digest_of_done_things_is_news_not_action() {
    let items = vec![
        item(
            "111122223333",
            "bob",
            Notice::Deleted {
                key_id: "AKIAOLDBOB0000000001".into(),
            },
            None,
        ),
        item(
            "111122223333",
            "carol",
            Notice::Deactivated {
                key_id: "AKIAOLDCAROL00000002".into(),
                replacement: None,
            },
            None,
        ),
    ];
    let email = digest::digest_email(&digest_ctx(), &items).unwrap();
    assert_eq!(
        email.subject,
        "[keyfleet] News on 2 of your access keys: 1 deactivated, 1 deleted"
    );
    let body = text(&parse(&email.raw));
    assert!(!body.contains("== Action needed =="), "{body}");
    assert!(
        body.contains("in AWS account payments-prod (111122223333)"),
        "{body}"
    );
}

/// Each notice's next step, from the policy and the key's creation.
#[test]
fn next_steps_follow_the_policy() {
    use keyfleet_protocol::{Duration, Limit, Policy};
    let p = Policy::default();
    let now = datetime!(2026-03-10 06:00 UTC);
    let created = datetime!(2025-12-01 06:00 UTC); // 99 days before now
    let key = || "AKIAOLD".to_string();
    let deactivated = Notice::Deactivated {
        key_id: key(),
        replacement: None,
    };
    // Deactivated late: the recovery window counts from now.
    let window = p.delete_after.saturating_sub(p.deactivate_after).to_time();
    assert_eq!(
        digest::next_step(&p, &deactivated, Some(created), now),
        Some(now + window)
    );
    // Deactivated early (cutover on use): the deletion age is later.
    let young = now - time::Duration::days(30);
    assert_eq!(
        digest::next_step(&p, &deactivated, Some(young), now),
        Some(young + p.delete_after.to_time())
    );
    let in_use = Notice::StillInUse {
        key_id: key(),
        last_used: None,
        service: None,
        region: None,
        replacement: None,
        used_from: Vec::new(),
    };
    let limited = Policy {
        max_key_age: Limit::After(Duration::from_days(120)),
        ..Policy::default()
    };
    assert_eq!(
        digest::next_step(&limited, &in_use, Some(created), now),
        Some(created + time::Duration::days(120))
    );
    let unlimited = Policy {
        max_key_age: Limit::Never,
        ..Policy::default()
    };
    assert_eq!(
        digest::next_step(&unlimited, &in_use, Some(created), now),
        None
    );
    let on = datetime!(2026-03-20 06:00 UTC);
    let scheduled = Notice::DeactivationScheduled {
        key_id: key(),
        on,
        replacement: None,
    };
    assert_eq!(digest::next_step(&p, &scheduled, None, now), Some(on));
    assert_eq!(
        digest::next_step(&p, &Notice::Deleted { key_id: key() }, Some(created), now),
        None
    );
}

mod order {
    use super::*;
    use proptest::prelude::*;

    fn notice(kind: u8, key: String, at: OffsetDateTime) -> Notice {
        match kind % 6 {
            0 => Notice::StillInUse {
                key_id: key,
                last_used: None,
                service: None,
                region: None,
                replacement: None,
                used_from: Vec::new(),
            },
            1 => Notice::DeactivationScheduled {
                key_id: key,
                on: at,
                replacement: None,
            },
            2 => Notice::Reactivated {
                key_id: key,
                until: at,
            },
            3 => Notice::Deactivated {
                key_id: key,
                replacement: None,
            },
            4 => Notice::Deleted { key_id: key },
            _ => Notice::UnusedDeleted {
                key_id: key,
                last_used: None,
            },
        }
    }

    fn items() -> impl Strategy<Value = Vec<digest::DigestItem>> {
        proptest::collection::vec(
            (
                0u8..6,
                0u8..3,
                0u8..4,
                0u32..50,
                proptest::option::of(0i64..40),
            ),
            0..12,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (kind, account, user, key, days))| {
                    let at =
                        datetime!(2026-03-10 06:00 UTC) + time::Duration::days(days.unwrap_or(0));
                    digest::DigestItem {
                        account_id: format!("{:012}", account),
                        account_alias: None,
                        user_name: format!("user{user}"),
                        notice: notice(kind, format!("AKIA{key:08}{i:04}"), at),
                        next_step: days.map(|_| at),
                    }
                })
                .collect()
        })
    }

    proptest! {
        /// Whatever order the results came in, the digest's order is the
        /// same, every item is kept, what needs the owner comes before what
        /// was done, and within a kind the soonest next step comes first.
        #[test]
        fn the_order_is_the_owners_whatever_the_input(items in items(), seed in any::<u64>()) {
            let mut a = items.clone();
            digest::order(&mut a);
            let mut shuffled = items.clone();
            let n = shuffled.len();
            if n > 1 {
                for i in 0..n {
                    let j = (seed.wrapping_mul(i as u64 + 7) % n as u64) as usize;
                    shuffled.swap(i, j);
                }
            }
            let mut b = shuffled;
            digest::order(&mut b);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a.len(), items.len());
            for it in &items {
                prop_assert!(a.contains(it));
            }
            let action = |i: &digest::DigestItem| matches!(
                i.notice,
                Notice::StillInUse { .. } | Notice::DeactivationScheduled { .. } | Notice::Reactivated { .. }
            );
            for w in a.windows(2) {
                prop_assert!(action(&w[0]) || !action(&w[1]), "an action after a record");
                if w[0].notice.kind() == w[1].notice.kind() {
                    if let (Some(x), Some(y)) = (w[0].next_step, w[1].next_step) {
                        prop_assert!(x <= y);
                    }
                    prop_assert!(!(w[0].next_step.is_none() && w[1].next_step.is_some()));
                }
            }
        }
    }
}
