//! The identifiers a request names, checked before anything is read or
//! invoked: a malformed one is a 400 naming the parameter and its form.
//!
//! The protocol's validators ([`keyfleet_protocol::validate`]) decide
//! account ids, user names and run ids; access key ids are held to what
//! IAM issues for users and sessions, `AKIA` or `ASIA` followed by 16 upper
//! case letters or digits, which is narrower than the protocol's form.

use crate::problem::Problem;
use keyfleet_protocol::{is_access_key_id, is_account_id, is_run_id, is_user_name};

/// 12 digits.
pub fn account(s: &str) -> Result<&str, Problem> {
    if is_account_id(s) {
        Ok(s)
    } else {
        Err(Problem::bad_request(format!(
            "account `{}` is not an AWS account id (12 digits)",
            shown(s)
        )))
    }
}

/// An IAM user name: 1-64 of `[\w+=,.@-]`.
pub fn user(s: &str) -> Result<&str, Problem> {
    if is_user_name(s) {
        Ok(s)
    } else {
        Err(Problem::bad_request(format!(
            "user `{}` is not an IAM user name (1-64 of letters, digits and +=,.@_-)",
            shown(s)
        )))
    }
}

/// `AKIA` or `ASIA` and 16 of `[A-Z0-9]`.
pub fn is_key_id(s: &str) -> bool {
    s.len() == 20 && (s.starts_with("AKIA") || s.starts_with("ASIA")) && is_access_key_id(s)
}

pub fn key_id(s: &str) -> Result<&str, Problem> {
    if is_key_id(s) {
        Ok(s)
    } else {
        Err(Problem::bad_request(format!(
            "key_id `{}` is not an access key id (AKIA or ASIA and 16 upper case letters or digits)",
            shown(s)
        )))
    }
}

/// A run id: 1-64 of `[A-Za-z0-9_-]`.
pub fn run(s: &str) -> Result<&str, Problem> {
    if is_run_id(s) {
        Ok(s)
    } else {
        Err(Problem::bad_request(format!(
            "run id `{}` is not a keyfleet run id (1-64 of letters, digits, - and _)",
            shown(s)
        )))
    }
}

/// A value as it may be echoed in a problem: printable ASCII, at most 64
/// characters. An access key id is public, but a caller who pastes a secret
/// access key where a key id goes must not find it echoed (and logged by
/// whatever reads the answer): a value of a secret's form (40 of the base64
/// alphabet) is not shown at all. About a quarter of real secrets have no
/// `/` or `+`, so the form alone decides.
fn shown(s: &str) -> String {
    if keyfleet_protocol::is_secret_access_key(s) {
        return "<hidden>".into();
    }
    let mut out: String = s
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    if s.chars().count() > 64 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_twelve_digits() {
        assert!(account("111122223333").is_ok());
        for bad in ["11112222333", "1111222233334", "11112222333a", ""] {
            let p = account(bad).unwrap_err();
            assert_eq!(p.status, 400, "{bad}");
        }
    }

    #[test]
    fn user_names_follow_iam() {
        for ok in ["alice", "a,b", "x+y=z.w@v-u_t", &"a".repeat(64)] {
            assert!(user(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "ä", &"a".repeat(65), "a;b"] {
            assert!(user(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_ids_are_akia_or_asia_and_sixteen_more() {
        assert!(key_id("AKIAIOSFODNN7EXAMPLE").is_ok());
        assert!(key_id("ASIAIOSFODNN7EXAMPLE").is_ok());
        for bad in [
            "AKIAIOSFODNN7EXAMPL",
            "AKIAIOSFODNN7EXAMPLEX",
            "AIDAIOSFODNN7EXAMPLE",
            "akiaiosfodnn7example",
            "AKIAIOSFODNN7EXAMP-E",
        ] {
            assert!(key_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn run_ids_are_storage_safe() {
        assert!(run("20260101T000000Z-abc123").is_ok());
        for bad in ["", "a/b", "..", &"r".repeat(65)] {
            assert!(run(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_pasted_secret_is_never_echoed() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let p = key_id(secret).unwrap_err();
        assert!(!p.detail.contains(secret), "{}", p.detail);
        // One without `/` or `+` (about a quarter of them) too.
        let plain = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY12";
        let p = key_id(plain).unwrap_err();
        assert!(!p.detail.contains(plain), "{}", p.detail);
        let p = user(&"x".repeat(300)).unwrap_err();
        assert!(p.detail.len() < 200, "{}", p.detail);
    }
}
