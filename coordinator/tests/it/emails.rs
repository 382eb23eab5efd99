//! The owners' emails, read back from the SES outbox: the new key arrives as
//! an AES-256 zip that independent tools (Python's pyzipper, and 7-Zip when
//! installed) open with the password from the separate second email, and it
//! holds exactly the key IAM lists and the secret the agent sealed. Every
//! notice goes out once, across duplicate finalizes and later runs.

use crate::fleet::*;
use keyfleet_coordinator::RunRequest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The password line of the password email.
pub(crate) fn password_from(text: &str) -> String {
    let mut lines = text.lines();
    lines
        .by_ref()
        .find(|l| l.starts_with("Password (on its own line below"))
        .expect("password email announces the password");
    lines
        .map(str::trim)
        .find(|l| !l.is_empty())
        .expect("a password line")
        .to_string()
}

fn python() -> PathBuf {
    keyfleet_testkit::harness_dir().join(".venv/bin/python")
}

/// Runs the harness's pyzipper checker on a zip.
pub(crate) fn check_zip(zip: &Path, password: &str) -> std::process::Output {
    Command::new(python())
        .arg(keyfleet_testkit::harness_dir().join("check_zip.py"))
        .arg(zip)
        .arg(password)
        .output()
        .expect("run check_zip.py")
}

/// Extracts a zip with pyzipper into `dir`.
fn pyzipper_extract(zip: &Path, password: &str, dir: &Path) {
    let out = Command::new(python())
        .args([
            "-c",
            "import sys, pyzipper\n\
             with pyzipper.AESZipFile(sys.argv[1]) as z:\n\
             \x20   z.setpassword(sys.argv[2].encode())\n\
             \x20   z.extractall(sys.argv[3])\n",
        ])
        .arg(zip)
        .arg(password)
        .arg(dir)
        .output()
        .expect("run pyzipper");
    assert!(
        out.status.success(),
        "pyzipper extract failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 7-Zip's command line, if installed (`7z`, or `7zz` as Debian's 7zip
/// package names it).
fn seven_zip() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["7z", "7zz"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// The (access key id, secret) rows of an extracted `credentials.csv`,
/// after checking its header and line endings.
fn read_csv(dir: &Path) -> Vec<(String, String)> {
    let csv = std::fs::read_to_string(dir.join("credentials.csv")).expect("credentials.csv");
    assert!(csv.ends_with("\r\n"), "CRLF line ends: {csv:?}");
    let mut lines = csv.split("\r\n").filter(|l| !l.is_empty());
    assert_eq!(lines.next(), Some("Access key ID,Secret access key"));
    lines
        .map(|l| {
            let (id, secret) = l.split_once(',').expect("two columns");
            (id.to_string(), secret.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_key_reaches_its_owner_in_an_encrypted_zip_and_notices_go_out_once() {
    let (member, users) = normal_member("mail").await;
    let central = Central::new(Setup::default()).await;
    let run = RunRequest {
        accounts: Some(vec![member.id.clone()]),
        ..RunRequest::default()
    };
    let run_id = central
        .coordinator
        .start_run(run.clone())
        .await
        .expect("start run")
        .run_id;
    let (_, result) = member.run_agent(&central.public_key).await;
    central.intake_until_finalized().await;

    // Exactly the expected emails, once each.
    let mails = emails_of_run(&run_id);
    let mut sent: BTreeMap<(String, String), usize> = BTreeMap::new();
    for m in &mails {
        assert_eq!(m.to.len(), 1, "one recipient per message: {m:?}");
        assert_eq!(m.from, central.sender);
        let label = match m.kind.as_str() {
            "digest" => format!("digest: {}", m.tells().join(", ")),
            kind => kind.to_string(),
        };
        *sent.entry((m.to[0].clone(), label)).or_default() += 1;
    }
    let owner = |u: &str| owner_address(u);
    let expected: BTreeMap<(String, String), usize> = [
        (owner(&users.rotate), "new_key"),
        (owner(&users.rotate), "password"),
        // The rotated user's old key's deactivation date is in the new
        // key's email: no notice of its own, and no digest.
        (owner(&users.pending), "digest: deactivation_scheduled"),
        (owner(&users.unused), "digest: unused_deleted"),
        (central.security_team.clone(), "summary"),
    ]
    .into_iter()
    .map(|(to, kind)| ((to, kind.to_string()), 1))
    .collect();
    assert_eq!(sent, expected);
    let find = |to: &str, kind: &str| {
        mails
            .iter()
            .find(|m| m.to[0] == to && m.tells_of(kind))
            .unwrap_or_else(|| panic!("{kind} email to {to}"))
    };

    // The new key, as IAM lists it, and as the agent sealed it.
    let old = member.created[&users.rotate][0].clone();
    let now = member.keys(&users.rotate).await;
    assert_eq!(now.len(), 2, "{now:?}");
    let (new_key, active) = now
        .iter()
        .find(|(id, _)| *id != old)
        .cloned()
        .expect("a new key");
    assert!(active);
    let sealed = result
        .sealed
        .iter()
        .find(|s| s.user_name == users.rotate)
        .expect("sealed credential of the rotated user");
    assert_eq!(sealed.access_key_id, new_key);
    let cred = keyfleet_protocol::seal::open(&central.key, &member.id, sealed)
        .expect("sealed credential opens with the coordinator key");
    assert_eq!(cred.access_key_id, new_key);
    let secret = cred.secret_access_key.expose().to_string();
    assert_eq!(secret.len(), 40);

    // Message 1: the zip; message 2: the password.
    let key_mail = find(&owner(&users.rotate), "new_key");
    let pw_mail = find(&owner(&users.rotate), "password");
    assert_eq!(key_mail.account, member.id);
    assert!(key_mail.subject.contains(&users.rotate), "{key_mail:?}");
    assert!(key_mail.text.contains(&new_key));
    assert!(key_mail.text.contains(&old), "names the old key");
    assert_eq!(key_mail.attachments.len(), 1);
    let (zip_name, zip) = &key_mail.attachments[0];
    assert_eq!(
        zip_name,
        &format!("keyfleet-{}-{}.zip", member.id, users.rotate)
    );
    assert!(pw_mail.attachments.is_empty());
    let password = password_from(&pw_mail.text);
    assert!(password.len() >= 20, "password of {} chars", password.len());
    assert!(pw_mail.text.contains(&new_key));
    assert!(!key_mail.text.contains(&password), "password in message 1");
    for m in emu().outbox().expect("outbox") {
        assert!(!m.raw.contains(&secret), "secret in clear in an email");
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let zip_path = dir.path().join(zip_name);
    std::fs::write(&zip_path, zip).expect("write zip");

    // pyzipper: the harness's checker (AES-256, AE-2, contents) ...
    let out = check_zip(&zip_path, &password);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check_zip.py failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("== credentials.csv:"), "{stdout}");
    assert!(stdout.contains("== credentials:"), "{stdout}");
    assert_eq!(
        stdout.matches("AES strength 3, AE-2").count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains(&new_key), "{stdout}");
    assert!(
        stdout.contains(&format!("{}{}", &secret[..4], "*".repeat(36))),
        "masked secret in {stdout}"
    );
    assert!(!stdout.contains(&secret), "check_zip.py masks the secret");
    // ... which refuses a wrong password ...
    let wrong = check_zip(&zip_path, "not-the-password-at-all");
    assert!(!wrong.status.success(), "a wrong password opens the zip");
    // ... and pyzipper's extraction gives the whole key.
    let py_dir = dir.path().join("pyzipper");
    pyzipper_extract(&zip_path, &password, &py_dir);
    assert_eq!(read_csv(&py_dir), vec![(new_key.clone(), secret.clone())]);
    let profile = std::fs::read_to_string(py_dir.join("credentials")).expect("profile");
    assert!(
        profile.contains(&format!("[keyfleet-{}-{}]", member.id, users.rotate)),
        "{}",
        profile.replace(&secret, "<secret>")
    );
    assert!(profile.contains(&format!("aws_access_key_id = {new_key}")));
    assert!(profile.contains(&format!("aws_secret_access_key = {secret}")));

    // 7-Zip, the tool the email recommends.
    match seven_zip() {
        Some(seven) => {
            let out_dir = dir.path().join("7z");
            let out = Command::new(&seven)
                .arg("x")
                .arg(format!("-p{password}"))
                .arg(format!("-o{}", out_dir.display()))
                .arg("-y")
                .arg(&zip_path)
                .output()
                .expect("run 7z");
            assert!(
                out.status.success(),
                "7z x failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(read_csv(&out_dir), vec![(new_key.clone(), secret.clone())]);
        }
        None => eprintln!("7z not installed: 7-Zip half of the zip check skipped"),
    }

    // The notices name the right keys.
    let rotated_notice = find(&owner(&users.rotate), "new_key");
    assert!(
        rotated_notice.text.contains(&old)
            && rotated_notice.text.contains("will be deactivated on"),
        "the new key's email tells when the old key is deactivated:\n{}",
        rotated_notice.text
    );
    assert!(rotated_notice.text.contains(&new_key), "names the new key");
    let pending_notice = find(&owner(&users.pending), "deactivation_scheduled");
    assert!(pending_notice
        .text
        .contains(&member.created[&users.pending][0]));
    let unused_notice = find(&owner(&users.unused), "unused_deleted");
    assert!(unused_notice
        .text
        .contains(&member.created[&users.unused][0]));
    assert!(unused_notice.text.contains("never been used"));

    // A second finalize of the same run does nothing and mails nobody.
    assert_eq!(
        central
            .coordinator
            .finalize(&run_id)
            .await
            .expect("finalize"),
        None
    );
    assert_eq!(emails_of_run(&run_id).len(), mails.len());

    // The next run sees the same pending deactivations: the ledger keeps
    // the owners from hearing about them twice; only the summary goes out.
    let owners_before: usize = [&users.rotate, &users.pending, &users.unused]
        .iter()
        .map(|u| emails_to(&owner(u)).len())
        .sum();
    assert_eq!(owners_before, 4);
    let run2 = central
        .coordinator
        .start_run(run)
        .await
        .expect("second run")
        .run_id;
    let (_, result2) = member.run_agent(&central.public_key).await;
    assert!(result2.sealed.is_empty(), "no second new key");
    let notices2 = result2
        .users
        .iter()
        .flat_map(|u| &u.actions)
        .filter(|a| a.action.kind() == "notify")
        .count();
    assert_eq!(notices2, 2, "both deactivations are still scheduled");
    central.intake_until_finalized().await;
    let kinds2: Vec<String> = emails_of_run(&run2).into_iter().map(|m| m.kind).collect();
    assert_eq!(kinds2, vec!["summary".to_string()]);
    let owners_after: usize = [&users.rotate, &users.pending, &users.unused]
        .iter()
        .map(|u| emails_to(&owner(u)).len())
        .sum();
    assert_eq!(owners_after, owners_before);
}

/// A result's free text (notes, errors, the account's error) is the
/// agent's to write, so a compromised account's: it reaches the report
/// (escaped), never an owner's email from the organization's sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_emails_carry_no_free_text_from_the_result() {
    let (member, users) = normal_member("free-text").await;
    let central = Central::new(Setup::default()).await;
    let run_id = central.start_run_on(&[&member.id]).await;
    let (_, mut result) = member.run_agent(&central.public_key).await;
    const MARK: &str = "Click here: example.net/reset";
    for u in &mut result.users {
        u.note = Some(format!("note {MARK}"));
        u.error = Some(format!("error {MARK}"));
    }
    let body = String::from_utf8(keyfleet_protocol::encode(&result)).expect("utf-8");
    central.coordinator.intake(&body, 1).await.expect("intake");
    let mails = emails_of_run(&run_id);
    let owners: Vec<&Mail> = mails.iter().filter(|m| m.kind != "summary").collect();
    assert!(
        owners
            .iter()
            .any(|m| m.to[0] == owner_address(&users.rotate) && m.kind == "new_key"),
        "the owners were mailed: {:?}",
        owners.iter().map(|m| &m.kind).collect::<Vec<_>>()
    );
    for m in owners {
        assert!(!m.text.contains(MARK), "free text in a {} email", m.kind);
        assert!(
            !m.subject.contains(MARK),
            "free text in a {} subject",
            m.kind
        );
        for (name, bytes) in &m.attachments {
            assert!(
                !String::from_utf8_lossy(bytes).contains(MARK),
                "free text in {name}"
            );
        }
    }
}

/// Asserts that the password email `owner` got opens the zip email they
/// got (of `mails`), whichever delivery sent each.
pub fn assert_password_opens_zip(mails: &[Mail], owner: &str) {
    let find = |kind: &str| {
        mails
            .iter()
            .find(|m| m.to[0] == owner && m.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} mail to {owner}"))
    };
    let (zip_name, zip) = &find("new_key").attachments[0];
    let dir = tempfile::tempdir().expect("temp dir");
    let zip_path = dir.path().join(zip_name);
    std::fs::write(&zip_path, zip).expect("write zip");
    let out = check_zip(&zip_path, &password_from(&find("password").text));
    assert!(
        out.status.success(),
        "the password opens the zip: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
