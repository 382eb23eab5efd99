//! Reading what the coordinator mailed: the kinds of email an owner got,
//! and the new key, out of its AES zip, with the password of the second
//! email, decrypted by independent implementations (pyzipper, and 7-Zip
//! when installed).

use keyfleet_testkit::SentEmail;
use mail_parser::MimeHeaders;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn header(raw: &str, name: &str) -> String {
    let m = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .expect("MIME parses");
    m.header_raw(name).unwrap_or("").trim().to_string()
}

/// A comma-separated header's entries (`X-Keyfleet-Account` and
/// `X-Keyfleet-Notices` of a digest list several).
fn entries(raw: &str, name: &str) -> Vec<String> {
    header(raw, name)
        .split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect()
}

/// Whether the email is about `account` (a digest may be about several).
pub fn about(raw: &str, account: &str) -> bool {
    entries(raw, "X-Keyfleet-Account")
        .iter()
        .any(|a| a == account)
}

/// What `to` was told about `account`, email by email: an email's kind, or
/// for a digest the kinds of its notices of that account, in its order.
pub fn kinds_for(mails: &[SentEmail], account: &str, to: &str) -> Vec<String> {
    mails
        .iter()
        .filter(|m| m.destinations.iter().any(|d| d == to) && about(&m.raw, account))
        .flat_map(|m| match header(&m.raw, "X-Keyfleet-Kind").as_str() {
            "digest" => entries(&m.raw, "X-Keyfleet-Notices")
                .into_iter()
                .filter_map(|n| {
                    n.split_once('/')
                        .filter(|(a, _)| *a == account)
                        .map(|(_, k)| k.to_string())
                })
                .collect(),
            kind => vec![kind.to_string()],
        })
        .collect()
}

/// Decrypts the zip with pyzipper (and 7-Zip when installed) and returns
/// (access key id, secret access key) from credentials.csv.
pub fn open_zip_independently(zip: &Path, password: &str) -> (String, String) {
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

/// A new key as its owner received it.
pub struct Delivered {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The zip's password, from the second email.
    pub password: String,
}

/// The one new key emailed to `to`: finds its key-file email (whose zip
/// name ends with `zip_suffix`) and its password email, checks the password
/// is only in the second and the secret in no email, and opens the zip.
pub fn delivered_key(mails: &[SentEmail], to: &str, zip_suffix: &str, dir: &Path) -> Delivered {
    let mine: Vec<&SentEmail> = mails
        .iter()
        .filter(|m| m.destinations.iter().any(|d| d == to))
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
        .expect("MIME parses");
    let att = parsed.attachments().next().expect("zip attachment");
    let zip_name = att.attachment_name().expect("zip name").to_string();
    assert!(
        zip_name.starts_with("keyfleet-") && zip_name.ends_with(zip_suffix),
        "{zip_name}"
    );
    let zip_path = dir.join(&zip_name);
    std::fs::write(&zip_path, att.contents()).expect("write zip");
    let pw_body = mail_parser::MessageParser::default()
        .parse(pw_mail.raw.as_bytes())
        .expect("MIME parses")
        .body_text(0)
        .expect("text body")
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
    let (access_key_id, secret_access_key) = open_zip_independently(&zip_path, &password);
    for m in mails {
        assert!(
            !m.raw.contains(&secret_access_key),
            "secret in plain text in an email"
        );
    }
    Delivered {
        access_key_id,
        secret_access_key,
        password,
    }
}

/// Every line the emulator's Lambdas logged in `account` (CloudWatch Logs
/// `/aws/lambda/<function>`, written as Lambda writes them).
pub async fn lambda_logs(account: &str, function: &str) -> String {
    let cfg = crate::common::emu()
        .config_for_account(account)
        .await
        .expect("assume a role in the account");
    let logs = aws_sdk_cloudwatchlogs::Client::new(&cfg);
    let mut pages = logs
        .filter_log_events()
        .log_group_name(format!("/aws/lambda/{function}"))
        .into_paginator()
        .send();
    let mut text = String::new();
    while let Some(page) = pages.next().await {
        for e in page.expect("FilterLogEvents").events() {
            text.push_str(e.message().unwrap_or_default());
            text.push('\n');
        }
    }
    text
}
