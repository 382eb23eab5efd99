//! The rotation timeline through the CLI: day 0 keys; day 81 -> new key
//! delivered (zip decrypted by an independent implementation, key matches
//! IAM); day 91 -> old key deactivated; day 101 -> deleted. An exempt user
//! is untouched throughout, a user without email is reported unreachable,
//! notices go out once, and a dry run before each step changes nothing and
//! predicts exactly what the real run then does.

use keyfleet_protocol::report::RunReport;
use keyfleet_protocol::{predictable, Outcome, Verdict};
use keyfleet_testkit::seed::{self, key, user, UserSpec};
use keyfleet_testkit::{Emulator, SentEmail};
use mail_parser::MimeHeaders;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{organization, Cli};

/// The day-N cycle: `keyfleet run --json --accounts <account>`, dry or real.
fn cycle(cli: &Cli, account: &str, dry_run: bool) -> RunReport {
    let mut args = vec!["run", "--json", "--accounts", account];
    if dry_run {
        args.push("--dry-run");
    }
    serde_json::from_str(&cli.run(&args)).expect("report JSON on stdout")
}

type Keys = BTreeMap<String, Vec<(String, bool)>>;

async fn keys_of(iam: &aws_sdk_iam::Client, users: &[&str]) -> Keys {
    let mut all = Keys::new();
    for u in users {
        all.insert(
            u.to_string(),
            seed::keys(iam, u).await.expect("ListAccessKeys"),
        );
    }
    all
}

/// The users of the timeline account, as the report lists them.
fn users_of(report: &RunReport, account: &str) -> BTreeMap<String, keyfleet_protocol::UserReport> {
    report
        .accounts
        .iter()
        .find(|a| a.account_id == account)
        .expect("account in report")
        .users
        .iter()
        .map(|u| (u.user_name.clone(), u.clone()))
        .collect()
}

fn assert_plan_predicts(plan: &RunReport, real: &RunReport, account: &str, step: &str) {
    let p = users_of(plan, account);
    let r = users_of(real, account);
    assert_eq!(
        p.keys().collect::<Vec<_>>(),
        r.keys().collect::<Vec<_>>(),
        "{step}"
    );
    for (name, pu) in &p {
        let ru = &r[name];
        assert_eq!(pu.verdict, ru.verdict, "{step}: verdict of {name}");
        assert_eq!(
            predictable(&pu.actions),
            predictable(&ru.actions),
            "{step}: actions of {name}"
        );
        assert!(
            pu.actions.iter().all(|a| a.result == Outcome::Planned),
            "{step}: {name}"
        );
        assert!(
            ru.actions
                .iter()
                .all(|a| matches!(a.result, Outcome::Done { .. })),
            "{step}: {name} {:?}",
            ru.actions
        );
    }
}

fn header(raw: &str, name: &str) -> String {
    let m = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .expect("MIME parses");
    m.header_raw(name).unwrap_or("").trim().to_string()
}

fn kinds_for(mails: &[SentEmail], account: &str, to: &str) -> Vec<String> {
    mails
        .iter()
        .filter(|m| {
            m.destinations.iter().any(|d| d == to)
                && header(&m.raw, "X-Keyfleet-Account") == account
        })
        .map(|m| header(&m.raw, "X-Keyfleet-Kind"))
        .collect()
}

/// Decrypts the zip with pyzipper (and 7-Zip when installed) and returns
/// (access key id, secret access key) from credentials.csv.
fn open_zip_independently(zip: &Path, password: &str) -> (String, String) {
    let py = keyfleet_testkit::harness_dir().join(".venv/bin/python");
    let out = Command::new(py)
        .args([
            "-c",
            "import sys, pyzipper\n\
             z = pyzipper.AESZipFile(sys.argv[1]); z.setpassword(sys.argv[2].encode())\n\
             i = z.getinfo('credentials.csv'); assert i.wz_aes_strength == 3, 'not AES-256'\n\
             sys.stdout.write(z.read('credentials.csv').decode())",
        ])
        .arg(zip)
        .arg(password)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "pyzipper: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let row = csv.lines().nth(1).expect("a data row");
    let mut cells = row.split(',');
    let id = cells.next().unwrap().trim().to_string();
    let secret = cells.next().unwrap().trim().to_string();
    if let Ok(seven) = which("7z") {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new(seven)
            .args([
                "x",
                "-y",
                &format!("-p{password}"),
                &format!("-o{}", dir.path().display()),
            ])
            .arg(zip)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "7z: {}",
            String::from_utf8_lossy(&st.stdout)
        );
        let again = std::fs::read_to_string(dir.path().join("credentials.csv")).unwrap();
        assert!(
            again.contains(&id) && again.contains(&secret),
            "7-Zip reads the same key"
        );
    }
    (id, secret)
}

fn which(cmd: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(cmd))
                .find(|f| f.is_file())
        })
        .ok_or(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_timeline_through_the_cli() {
    let emu = Emulator::shared().expect("emulator");
    let sdk = emu.config();
    let org = aws_sdk_organizations::Client::new(&sdk);
    // Other tests share the organization: every run here names its account.
    let management = organization().await;
    let created = org
        .create_account()
        .account_name("timeline")
        .email("aws+timeline@example.com")
        .send()
        .await
        .unwrap();
    let account = created
        .create_account_status()
        .unwrap()
        .account_id()
        .unwrap()
        .to_string();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keyfleet.toml");
    std::fs::write(
        &config,
        format!(
            "[org]\nexclude_accounts = [\"{management}\"]\n\n[mail]\nsender = \"keyfleet@example.com\"\nsecurity_team = [\"sec@example.com\"]\n"
        ),
    )
    .unwrap();
    let cli = Cli {
        config,
        endpoint: emu.endpoint().to_string(),
        _dir: None,
    };
    let boot = cli.bootstrap().await;
    assert!(boot.contains("coordinator key id"), "{boot}");

    // Day 0.
    let acct = emu.config_for_account(&account).await.unwrap();
    let iam = aws_sdk_iam::Client::new(&acct);
    let specs: Vec<UserSpec> = vec![
        user("owner", vec![key(0, true, Some(0))]),
        UserSpec {
            exempt: true,
            ..user("exempt", vec![key(0, true, Some(0))])
        },
        UserSpec {
            email: None,
            ..user("noemail", vec![key(0, true, Some(0))])
        },
    ];
    let day0 = seed::populate(emu, &iam, &account, &specs).await.unwrap();
    let names = ["owner", "exempt", "noemail"];
    let owner_mail = "owner-owner@example.com";
    let k1 = day0["owner"][0].clone();

    // Day 81: the owner's key was used yesterday; a new key is due.
    emu.advance_clock(81.0, Some(&account)).unwrap();
    let used = (time::OffsetDateTime::now_utc() - time::Duration::days(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    for (u, ids) in &day0 {
        emu.mark_key_used(&account, &ids[0], Some(&used), "s3", "eu-west-1")
            .unwrap();
        let _ = u;
    }
    let before = keys_of(&iam, &names).await;
    let plan = cycle(&cli, &account, true);
    assert_eq!(
        keys_of(&iam, &names).await,
        before,
        "day 81 dry run changed IAM"
    );
    let real = cycle(&cli, &account, false);
    assert_plan_predicts(&plan, &real, &account, "day 81");
    let users = users_of(&real, &account);
    assert_eq!(users["owner"].verdict, Verdict::Rotated);
    assert_eq!(users["exempt"].verdict, Verdict::Exempt);
    assert_eq!(users["noemail"].verdict, Verdict::Unreachable);
    let after81 = keys_of(&iam, &names).await;
    assert_eq!(after81["exempt"], before["exempt"]);
    assert_eq!(
        after81["noemail"], before["noemail"],
        "no key for an unreachable user"
    );
    assert_eq!(after81["owner"].len(), 2);
    let k2 = after81["owner"][1].0.clone();
    assert_ne!(k2, k1);

    // The new key reached its owner: zip in one email, password in another.
    let mails = emu.outbox().unwrap();
    let mine: Vec<&SentEmail> = mails
        .iter()
        .filter(|m| m.destinations.iter().any(|d| d == owner_mail))
        .collect();
    let zip_mail = mine
        .iter()
        .find(|m| header(&m.raw, "X-Keyfleet-Kind") == "new_key")
        .expect("new key email");
    let pw_mail = mine
        .iter()
        .find(|m| header(&m.raw, "X-Keyfleet-Kind") == "password")
        .expect("password email");
    let parsed = mail_parser::MessageParser::default()
        .parse(zip_mail.raw.as_bytes())
        .unwrap();
    let att = parsed.attachments().next().expect("zip attachment");
    let zip_name = att.attachment_name().unwrap().to_string();
    assert!(
        zip_name.starts_with("keyfleet-") && zip_name.ends_with("-owner.zip"),
        "{zip_name}"
    );
    let zip_path = dir.path().join(&zip_name);
    std::fs::write(&zip_path, att.contents()).unwrap();
    let pw_body = mail_parser::MessageParser::default()
        .parse(pw_mail.raw.as_bytes())
        .unwrap()
        .body_text(0)
        .unwrap()
        .to_string();
    let password = pw_body
        .split_whitespace()
        .filter(|w| {
            w.len() >= 20
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.+=".contains(c))
        })
        .find(|w| !zip_mail.raw.contains(*w))
        .expect("password in the second email")
        .to_string();
    assert!(
        !zip_mail.raw.contains(&password),
        "password not in the zip email"
    );
    let (zip_id, zip_secret) = open_zip_independently(&zip_path, &password);
    assert_eq!(zip_id, k2, "the zip holds the key IAM has");
    assert_eq!(zip_secret.len(), 40);
    for m in &mails {
        assert!(
            !m.raw.contains(&zip_secret),
            "secret in plain text in an email"
        );
    }

    // Day 91: the owner switched; the old key is deactivated.
    emu.advance_clock(10.0, Some(&account)).unwrap();
    let switched = (time::OffsetDateTime::now_utc() - time::Duration::days(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    emu.mark_key_used(&account, &k2, Some(&switched), "s3", "eu-west-1")
        .unwrap();
    let before = keys_of(&iam, &names).await;
    let plan = cycle(&cli, &account, true);
    assert_eq!(
        keys_of(&iam, &names).await,
        before,
        "day 91 dry run changed IAM"
    );
    let real = cycle(&cli, &account, false);
    assert_plan_predicts(&plan, &real, &account, "day 91");
    let after91 = keys_of(&iam, &names).await;
    assert_eq!(
        after91["owner"],
        vec![(k1.clone(), false), (k2.clone(), true)]
    );
    assert_eq!(after91["exempt"], before["exempt"]);
    assert_eq!(
        users_of(&real, &account)["noemail"].verdict,
        Verdict::Unreachable
    );

    // Day 101: the inactive key is deleted.
    emu.advance_clock(10.0, Some(&account)).unwrap();
    let before = keys_of(&iam, &names).await;
    let plan = cycle(&cli, &account, true);
    assert_eq!(
        keys_of(&iam, &names).await,
        before,
        "day 101 dry run changed IAM"
    );
    let real = cycle(&cli, &account, false);
    assert_plan_predicts(&plan, &real, &account, "day 101");
    let after101 = keys_of(&iam, &names).await;
    assert_eq!(after101["owner"], vec![(k2.clone(), true)]);
    assert_eq!(
        after101["exempt"],
        day0["exempt"]
            .iter()
            .map(|k| (k.clone(), true))
            .collect::<Vec<_>>()
    );
    assert_eq!(after101["noemail"].len(), 1);

    // Every owner email went out exactly once.
    let mails = emu.outbox().unwrap();
    let kinds = kinds_for(&mails, &account, owner_mail);
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(count("new_key"), 1, "{kinds:?}");
    assert_eq!(count("password"), 1, "{kinds:?}");
    assert_eq!(count("deactivation_scheduled"), 1, "{kinds:?}");
    assert_eq!(count("deactivated"), 1, "{kinds:?}");
    assert_eq!(count("deleted"), 1, "{kinds:?}");
    assert!(kinds_for(&mails, &account, "owner-exempt@example.com").is_empty());

    // The stored report is readable through the CLI, in every format.
    let table = cli.run(&["report", "--run", "latest"]);
    assert!(table.contains(&account), "{table}");
    let json: RunReport = serde_json::from_str(&cli.run(&["report", "--format", "json"])).unwrap();
    assert_eq!(json.run_id, real.run_id);
    let csv = cli.run(&["report", "--format", "csv"]);
    assert!(
        csv.lines()
            .any(|l| l.contains(&account) && l.contains("owner")),
        "{csv}"
    );
    assert!(cli.run(&["report", "--format", "html"]).contains("<html"));

    // Emergency rotation through the CLI: a new key now, the old one
    // deactivated at once.
    cli.run(&[
        "rotate",
        "--account",
        &account,
        "--user",
        "owner",
        "--deactivate-old",
    ]);
    let after = keys_of(&iam, &["owner"]).await;
    assert_eq!(after["owner"].len(), 2, "{after:?}");
    assert_eq!(
        after["owner"][0],
        (k2.clone(), false),
        "old key deactivated at once"
    );
    assert!(after["owner"][1].1 && after["owner"][1].0 != k2);
}
