//! The encrypted zip that carries a new access key to its owner.
//!
//! Message 1 of a key delivery carries `keyfleet-<account>-<user>.zip`; the
//! password travels separately in message 2. The zip holds two entries, both
//! encrypted with WinZip AES-256, vendor version AE-2:
//!
//! - `credentials.csv`, in the layout the IAM console's "Download .csv file"
//!   button produces for an access key (`<user>_accessKeys.csv`): the header
//!   `Access key ID,Secret access key`, then one row, CRLF line endings.
//!   The console file has no `User name` column, so neither has ours. Unlike
//!   the console we write no UTF-8 byte-order mark: the content is ASCII, so
//!   the mark adds nothing, and it breaks tools that match the header by name
//!   (`aws configure import`, Python's `csv` module without `utf-8-sig`).
//! - `credentials`, a shared-credentials profile to paste into
//!   `~/.aws/credentials`, named `keyfleet-<account>-<user>`.
//!
//! Decisions:
//!
//! - `<account>` in the file and profile names is the account alias when the
//!   agent reported a well-formed one (what the owner recognises; aliases are
//!   globally unique), otherwise the 12-digit account id.
//! - User names keep every IAM character (`+=,.@-_` are safe in file names).
//!   In the profile name `=` and `,` become `_`, because some SDKs (Java v2)
//!   accept only `[A-Za-z0-9_\-/.%@:+]` in profile names.
//! - The zip crate writes AE-1 (plaintext CRC-32 in the headers) for entries
//!   of 20 bytes or more. AE-2 is what the design asks for and what WinZip
//!   recommends for small files: a CRC of a short, mostly known plaintext
//!   says something about the secret, and the HMAC-SHA1 of AE-x already
//!   authenticates the data. So after writing, [`credentials_zip`] walks the
//!   archive's own headers, sets the vendor version to 2 and zeroes the CRC
//!   fields, in the local headers and in the central directory alike. The
//!   layout is checked strictly; anything unexpected is an error, never a
//!   half-patched archive.
//! - Entry times are the key's creation time (UTC); `credentials` is marked
//!   mode 0600 for extractors that honour Unix permissions.
//! - Passwords are 24 characters from the OS generator over a 62-symbol
//!   alphabet without look-alikes (about 143 bits).

use keyfleet_protocol::{is_account_id, is_user_name};
use keyfleet_protocol::{Credential, Secret};
use rand::{Rng, TryRngCore};
use std::io::{Cursor, Write};
use time::OffsetDateTime;
use zip::write::SimpleFileOptions;
use zip::{AesMode, CompressionMethod, DateTime, ZipWriter};

/// Characters a generated password is drawn from: letters and digits without
/// the look-alikes `0 O 1 l I`, plus symbols found on every common keyboard
/// layout and harmless in a shell prompt.
pub const PASSWORD_ALPHABET: &[u8] =
    b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.+=";

/// Length of a generated password.
pub const PASSWORD_LEN: usize = 24;

/// The shortest password [`credentials_zip`] accepts (the design's floor).
pub const MIN_PASSWORD_LEN: usize = 20;

/// Name of the CSV entry inside the zip.
pub const CSV_ENTRY: &str = "credentials.csv";

/// Name of the shared-credentials profile entry inside the zip.
pub const PROFILE_ENTRY: &str = "credentials";

/// Why the zip could not be built. Never carries the password or the secret.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    #[error("account id `{0}` is not 12 digits")]
    InvalidAccountId(String),
    #[error("`{0}` is not a valid IAM user name")]
    InvalidUserName(String),
    #[error("zip password is shorter than {MIN_PASSWORD_LEN} characters")]
    WeakPassword,
    #[error("writing the zip failed: {0}")]
    Write(#[from] zip::result::ZipError),
    #[error("writing the zip failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected zip layout while marking entries AE-2: {0}")]
    Layout(&'static str),
}

/// A fresh random password for a credentials zip.
///
/// # Panics
///
/// If the operating system's random generator is unavailable; there is no
/// safe fallback for a password.
pub fn generate_password() -> Secret {
    let mut rng = rand::rngs::OsRng.unwrap_err();
    let password: String = (0..PASSWORD_LEN)
        .map(|_| char::from(PASSWORD_ALPHABET[rng.random_range(0..PASSWORD_ALPHABET.len())]))
        .collect();
    Secret::new(password)
}

/// The zip's file name: `keyfleet-<account>-<user>.zip`, `<account>` being
/// the alias when a well-formed one is given, else the account id.
pub fn zip_file_name(
    account_id: &str,
    account_alias: Option<&str>,
    user_name: &str,
) -> Result<String, ZipError> {
    check_names(account_id, user_name)?;
    Ok(format!(
        "keyfleet-{}-{user_name}.zip",
        account_label(account_id, account_alias)
    ))
}

/// The profile name used in the `credentials` entry.
pub fn profile_name(account_id: &str, account_alias: Option<&str>, user_name: &str) -> String {
    let user: String = user_name
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '-' | '.' | '@' | '+' => c,
            _ => '_',
        })
        .collect();
    format!(
        "keyfleet-{}-{user}",
        account_label(account_id, account_alias)
    )
}

/// Builds the encrypted zip for `cred`. Returns the file name and the bytes.
pub fn credentials_zip(
    cred: &Credential,
    password: &Secret,
    account_alias: Option<&str>,
) -> Result<(String, Vec<u8>), ZipError> {
    let name = zip_file_name(&cred.account_id, account_alias, &cred.user_name)?;
    if password.expose().chars().count() < MIN_PASSWORD_LEN {
        return Err(ZipError::WeakPassword);
    }
    let csv = Secret::new(credentials_csv(cred));
    let profile = Secret::new(credentials_profile(cred, account_alias));

    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(zip_time(cred.created))
        .unix_permissions(0o600)
        .with_aes_encryption(AesMode::Aes256, password.expose());
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file(CSV_ENTRY, options)?;
    zip.write_all(csv.expose().as_bytes())?;
    zip.start_file(PROFILE_ENTRY, options)?;
    zip.write_all(profile.expose().as_bytes())?;
    let mut bytes = zip.finish()?.into_inner();
    mark_ae2(&mut bytes)?;
    Ok((name, bytes))
}

/// `credentials.csv`, console layout (see the module documentation).
fn credentials_csv(cred: &Credential) -> String {
    format!(
        "Access key ID,Secret access key\r\n{},{}\r\n",
        csv_field(&cred.access_key_id),
        csv_field(cred.secret_access_key.expose())
    )
}

/// RFC 4180 quoting, for values that would need it. AWS key ids and secrets
/// never do; this only keeps a malformed value from breaking the row.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// The `credentials` profile snippet.
fn credentials_profile(cred: &Credential, account_alias: Option<&str>) -> String {
    let profile = profile_name(&cred.account_id, account_alias, &cred.user_name);
    let account = match valid_alias(account_alias) {
        Some(alias) => format!("{} ({alias})", cred.account_id),
        None => cred.account_id.clone(),
    };
    let created = cred
        .created
        .to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    format!(
        "# Access key {key} of IAM user {user} in account {account}, created {created}.\n\
         # Append this profile to ~/.aws/credentials (Windows: %UserProfile%\\.aws\\credentials),\n\
         # then use it with `--profile {profile}` or AWS_PROFILE={profile}.\n\
         [{profile}]\n\
         aws_access_key_id = {key}\n\
         aws_secret_access_key = {secret}\n",
        key = cred.access_key_id,
        user = cred.user_name,
        secret = cred.secret_access_key.expose(),
    )
}

fn check_names(account_id: &str, user_name: &str) -> Result<(), ZipError> {
    if !is_account_id(account_id) {
        return Err(ZipError::InvalidAccountId(account_id.to_string()));
    }
    if !is_user_name(user_name) {
        return Err(ZipError::InvalidUserName(user_name.to_string()));
    }
    Ok(())
}

/// An account alias as IAM allows it: 3-63 of `[a-z0-9-]`, starting and
/// ending with a letter or digit, no `--`.
fn valid_alias(alias: Option<&str>) -> Option<&str> {
    let a = alias?;
    let ok = (3..=63).contains(&a.len())
        && a.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !a.starts_with('-')
        && !a.ends_with('-')
        && !a.contains("--");
    ok.then_some(a)
}

fn account_label<'a>(account_id: &'a str, alias: Option<&'a str>) -> &'a str {
    valid_alias(alias).unwrap_or(account_id)
}

/// MS-DOS time of `t` in UTC (two-second resolution, years 1980-2107).
fn zip_time(t: OffsetDateTime) -> DateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    u16::try_from(t.year())
        .ok()
        .and_then(|year| {
            DateTime::from_date_and_time(
                year,
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second() & !1,
            )
            .ok()
        })
        .unwrap_or_default()
}

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const AES_METHOD: u16 = 99;
const AES_EXTRA_ID: u16 = 0x9901;
const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;

fn u16_at(b: &[u8], at: usize) -> Result<u16, ZipError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(ZipError::Layout("header runs past the end of the archive"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, ZipError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(ZipError::Layout("header runs past the end of the archive"))
}

fn zero_crc(b: &mut [u8], at: usize) -> Result<(), ZipError> {
    b.get_mut(at..at + 4)
        .ok_or(ZipError::Layout("header runs past the end of the archive"))?
        .fill(0);
    Ok(())
}

/// Sets the AE-x vendor version of the AES extra field found in
/// `b[start..start + len]` to 2. Errors if there is none.
fn set_ae2_in_extra(b: &mut [u8], start: usize, len: usize) -> Result<(), ZipError> {
    let end = start + len;
    let mut at = start;
    while at + 4 <= end {
        let id = u16_at(b, at)?;
        let size = usize::from(u16_at(b, at + 2)?);
        if at + 4 + size > end {
            return Err(ZipError::Layout("extra field runs past its header"));
        }
        if id == AES_EXTRA_ID {
            if size != 7 || b.get(at + 6..at + 8) != Some(b"AE".as_slice()) {
                return Err(ZipError::Layout("malformed AES extra field"));
            }
            b[at + 4..at + 6].copy_from_slice(&2u16.to_le_bytes());
            return Ok(());
        }
        at += 4 + size;
    }
    Err(ZipError::Layout("entry has no AES extra field"))
}

/// Rewrites every entry of a freshly written AES archive as AE-2.
fn mark_ae2(b: &mut [u8]) -> Result<(), ZipError> {
    // No archive comment is written, so the end record is the last 22 bytes.
    let eocd = b
        .len()
        .checked_sub(22)
        .ok_or(ZipError::Layout("archive too short"))?;
    if u32_at(b, eocd)? != EOCD_SIG {
        return Err(ZipError::Layout("end of central directory not at the end"));
    }
    let entries = usize::from(u16_at(b, eocd + 10)?);
    let mut at = u32_at(b, eocd + 16)? as usize;
    for _ in 0..entries {
        if u32_at(b, at)? != CENTRAL_SIG {
            return Err(ZipError::Layout("bad central directory signature"));
        }
        if u16_at(b, at + 8)? & FLAG_DATA_DESCRIPTOR != 0 {
            return Err(ZipError::Layout("entry uses a data descriptor"));
        }
        if u16_at(b, at + 10)? != AES_METHOD {
            return Err(ZipError::Layout("entry is not AES encrypted"));
        }
        let name_len = usize::from(u16_at(b, at + 28)?);
        let extra_len = usize::from(u16_at(b, at + 30)?);
        let comment_len = usize::from(u16_at(b, at + 32)?);
        let local = u32_at(b, at + 42)? as usize;
        zero_crc(b, at + 16)?;
        set_ae2_in_extra(b, at + 46 + name_len, extra_len)?;

        if u32_at(b, local)? != LOCAL_SIG {
            return Err(ZipError::Layout("bad local header signature"));
        }
        if u16_at(b, local + 8)? != AES_METHOD {
            return Err(ZipError::Layout("local header is not AES encrypted"));
        }
        let local_name_len = usize::from(u16_at(b, local + 26)?);
        let local_extra_len = usize::from(u16_at(b, local + 28)?);
        zero_crc(b, local + 14)?;
        set_ae2_in_extra(b, local + 30 + local_name_len, local_extra_len)?;

        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use time::macros::datetime;
    use zip::ZipArchive;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn cred(user: &str) -> Credential {
        Credential {
            account_id: "111122223333".into(),
            user_name: user.into(),
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: Secret::new(SECRET),
            created: datetime!(2026-03-04 05:06:07 UTC),
        }
    }

    fn read_entry(bytes: &[u8], name: &str, password: &str) -> zip::result::ZipResult<String> {
        let mut archive = ZipArchive::new(Cursor::new(bytes))?;
        let mut file = archive.by_name_decrypt(name, password.as_bytes())?;
        let mut out = String::new();
        file.read_to_string(&mut out)?;
        Ok(out)
    }

    /// Every local header: (name, method, AES extra field data).
    fn local_headers(b: &[u8]) -> Vec<(String, u16, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while u32_at(b, at).unwrap() == LOCAL_SIG {
            let method = u16_at(b, at + 8).unwrap();
            let crc = u32_at(b, at + 14).unwrap();
            let compressed = u32_at(b, at + 18).unwrap() as usize;
            let name_len = usize::from(u16_at(b, at + 26).unwrap());
            let extra_len = usize::from(u16_at(b, at + 28).unwrap());
            let name = String::from_utf8(b[at + 30..at + 30 + name_len].to_vec()).unwrap();
            let extra = b[at + 30 + name_len..at + 30 + name_len + extra_len].to_vec();
            out.push((name, method, crc, extra));
            at += 30 + name_len + extra_len + compressed;
        }
        out
    }

    #[test]
    fn round_trips_with_the_password() {
        let pw = generate_password();
        let (name, bytes) = credentials_zip(&cred("alice"), &pw, None).unwrap();
        assert_eq!(name, "keyfleet-111122223333-alice.zip");
        let csv = read_entry(&bytes, CSV_ENTRY, pw.expose()).unwrap();
        assert_eq!(
            csv,
            format!("Access key ID,Secret access key\r\nAKIAIOSFODNN7EXAMPLE,{SECRET}\r\n")
        );
        let profile = read_entry(&bytes, PROFILE_ENTRY, pw.expose()).unwrap();
        assert!(
            profile.contains("\n[keyfleet-111122223333-alice]\n"),
            "{profile}"
        );
        assert!(profile.contains("\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"));
        assert!(profile.contains(&format!("\naws_secret_access_key = {SECRET}\n")));
        assert!(profile.contains("created 2026-03-04T05:06:07Z"));

        let mut archive = ZipArchive::new(Cursor::new(&bytes)).unwrap();
        assert_eq!(archive.len(), 2);
        let names: Vec<&str> = archive.file_names().collect();
        assert!(names.contains(&CSV_ENTRY) && names.contains(&PROFILE_ENTRY));
        let f = archive
            .by_name_decrypt(CSV_ENTRY, pw.expose().as_bytes())
            .unwrap();
        assert!(f.encrypted());
        let t = f.last_modified().unwrap();
        assert_eq!((t.year(), t.month(), t.day(), t.hour()), (2026, 3, 4, 5));
        assert_eq!((t.minute(), t.second()), (6, 6));
    }

    #[test]
    fn wrong_or_missing_password_fails() {
        let pw = generate_password();
        let (_, bytes) = credentials_zip(&cred("alice"), &pw, None).unwrap();
        // A wrong password fails the 2-byte verifier, or (1 in 65536) passes
        // it and then fails the HMAC while reading. Either way: no content.
        for wrong in ["not-the-password-at-all", "", &pw.expose()[1..]] {
            assert!(read_entry(&bytes, CSV_ENTRY, wrong).is_err());
            assert!(read_entry(&bytes, PROFILE_ENTRY, wrong).is_err());
        }
        let mut archive = ZipArchive::new(Cursor::new(&bytes)).unwrap();
        assert!(matches!(
            archive.by_name(CSV_ENTRY),
            Err(zip::result::ZipError::UnsupportedArchive(
                zip::result::ZipError::PASSWORD_REQUIRED
            ))
        ));
    }

    #[test]
    fn no_plaintext_secret_or_password_in_the_bytes() {
        let pw = generate_password();
        let (_, bytes) = credentials_zip(&cred("alice"), &pw, None).unwrap();
        let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(SECRET.as_bytes()));
        assert!(!contains(&SECRET.as_bytes()[..12]));
        assert!(!contains(b"AKIAIOSFODNN7EXAMPLE"));
        assert!(!contains(pw.expose().as_bytes()));
        assert!(!contains(b"Access key ID"));
    }

    #[test]
    fn entries_are_aes256_ae2_with_no_crc() {
        let pw = generate_password();
        let (_, bytes) = credentials_zip(&cred("alice"), &pw, None).unwrap();
        let headers = local_headers(&bytes);
        assert_eq!(headers.len(), 2);
        for (name, method, crc, extra) in headers {
            assert_eq!(method, AES_METHOD, "{name}: compression method 99 (AES)");
            assert_eq!(crc, 0, "{name}: AE-2 stores no CRC");
            let pos = extra
                .windows(2)
                .position(|w| w == AES_EXTRA_ID.to_le_bytes())
                .expect("0x9901 extra field");
            let f = &extra[pos..pos + 11];
            assert_eq!(u16::from_le_bytes([f[2], f[3]]), 7, "data size");
            assert_eq!(u16::from_le_bytes([f[4], f[5]]), 2, "vendor version AE-2");
            assert_eq!(&f[6..8], b"AE");
            assert_eq!(f[8], 3, "strength 3 = AES-256");
            assert_eq!(u16::from_le_bytes([f[9], f[10]]), 8, "real method deflate");
        }
        // The central directory agrees (a reader may trust either).
        let mut archive = ZipArchive::new(Cursor::new(&bytes)).unwrap();
        for i in 0..archive.len() {
            let f = archive.by_index_raw(i).unwrap();
            assert_eq!(f.crc32(), 0);
        }
        let cd = bytes
            .windows(4)
            .position(|w| w == CENTRAL_SIG.to_le_bytes())
            .unwrap();
        let ae = bytes[cd..]
            .windows(8)
            .filter(|w| w[..4] == [0x01, 0x99, 0x07, 0x00] && w[6..] == *b"AE")
            .map(|w| u16::from_le_bytes([w[4], w[5]]))
            .collect::<Vec<_>>();
        assert_eq!(ae, vec![2, 2]);
    }

    #[test]
    fn user_names_keep_their_iam_characters() {
        let pw = generate_password();
        let user = "ci+deploy=x,y.z@example-team_1";
        let (name, bytes) = credentials_zip(&cred(user), &pw, None).unwrap();
        assert_eq!(name, format!("keyfleet-111122223333-{user}.zip"));
        let profile = read_entry(&bytes, PROFILE_ENTRY, pw.expose()).unwrap();
        assert!(profile.contains("[keyfleet-111122223333-ci+deploy_x_y.z@example-team_1]"));
    }

    #[test]
    fn alias_is_used_when_well_formed() {
        let pw = generate_password();
        let (name, bytes) = credentials_zip(&cred("bob"), &pw, Some("prod-payments")).unwrap();
        assert_eq!(name, "keyfleet-prod-payments-bob.zip");
        let profile = read_entry(&bytes, PROFILE_ENTRY, pw.expose()).unwrap();
        assert!(profile.contains("[keyfleet-prod-payments-bob]"));
        assert!(profile.contains("account 111122223333 (prod-payments)"));
        for bad in ["../etc", "a", "Prod", "x--y", "-abc", "with space", "a/b/c"] {
            let (name, _) = credentials_zip(&cred("bob"), &pw, Some(bad)).unwrap();
            assert_eq!(name, "keyfleet-111122223333-bob.zip", "alias {bad:?}");
        }
    }

    #[test]
    fn invalid_names_and_weak_passwords_are_rejected_without_leaking() {
        let pw = generate_password();
        let err = credentials_zip(&cred("../../evil"), &pw, None).unwrap_err();
        assert!(matches!(err, ZipError::InvalidUserName(_)));
        let mut c = cred("alice");
        c.account_id = "12345".into();
        let err = credentials_zip(&c, &pw, None).unwrap_err();
        assert!(matches!(err, ZipError::InvalidAccountId(_)));
        let short = Secret::new("short-password-123");
        let err = credentials_zip(&cred("alice"), &short, None).unwrap_err();
        assert!(matches!(err, ZipError::WeakPassword));
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(
                !text.contains(short.expose()) && !text.contains(SECRET),
                "{text}"
            );
        }
    }

    #[test]
    fn passwords_are_long_random_and_unambiguous() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let pw = generate_password();
            assert_eq!(pw.expose().len(), PASSWORD_LEN);
            assert!(pw.expose().bytes().all(|b| PASSWORD_ALPHABET.contains(&b)));
            assert!(!pw.expose().contains(['0', 'O', '1', 'l', 'I']));
            assert_eq!(format!("{pw:?}"), "<redacted>");
            assert!(seen.insert(pw.expose().to_string()));
        }
        let all: String = seen.into_iter().collect();
        // 4800 draws from 62 symbols: every symbol shows up.
        assert!(PASSWORD_ALPHABET
            .iter()
            .all(|&c| all.contains(char::from(c))));
    }

    #[test]
    fn alphabet_has_no_look_alikes_or_duplicates() {
        let set: std::collections::BTreeSet<u8> = PASSWORD_ALPHABET.iter().copied().collect();
        assert_eq!(set.len(), PASSWORD_ALPHABET.len());
        assert_eq!(PASSWORD_ALPHABET.len(), 62);
        assert!(!b"0O1lI".iter().any(|c| set.contains(c)));
    }

    #[test]
    fn layout_check_refuses_foreign_archives() {
        // A plain (unencrypted) archive is not patched.
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file("a.txt", SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"hello world, this is more than twenty bytes")
            .unwrap();
        let mut bytes = zip.finish().unwrap().into_inner();
        assert!(matches!(
            mark_ae2(&mut bytes),
            Err(ZipError::Layout("entry is not AES encrypted"))
        ));
        assert!(matches!(mark_ae2(&mut [0u8; 10]), Err(ZipError::Layout(_))));
        let mut truncated = [0u8; 30];
        assert!(mark_ae2(&mut truncated).is_err());
    }

    /// Writes a sample zip for the independent check with `check_zip.py`
    /// when `KEYFLEET_ZIP_SAMPLE_DIR` is set (password in `<zip>.password`).
    #[test]
    fn writes_a_sample_for_external_readers_when_asked() {
        let Some(dir) = std::env::var_os("KEYFLEET_ZIP_SAMPLE_DIR") else {
            return;
        };
        let pw = generate_password();
        let (name, bytes) =
            credentials_zip(&cred("alice+ci@example.com"), &pw, Some("sample-alias")).unwrap();
        let path = std::path::Path::new(&dir).join(&name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::write(path.with_extension("zip.password"), pw.expose()).unwrap();
    }
}
