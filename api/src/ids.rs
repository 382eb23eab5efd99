//! The identifiers a request names, checked before anything is read or
//! invoked: a malformed one is a 400 naming the parameter and its form.
//!
//! The protocol's validators ([`keyfleet_protocol::validate`]) decide
//! account ids, user names and run ids; access key ids are held to what
//! IAM issues for users and sessions, `AKIA` or `ASIA` followed by 16 upper
//! case letters or digits, which is narrower than the protocol's form.
//!
//! A malformed value is never shown back, whatever it looks like: what was
//! put where an identifier goes may be anything, a secret access key or a
//! zip password included (see [`crate::problem`] for what answers may
//! echo). [`echoable`] says which well-formed values may be.

use crate::problem::Problem;
use keyfleet_protocol::{is_access_key_id, is_account_id, is_run_id, is_user_name};

/// 12 digits.
pub fn account(s: &str) -> Result<&str, Problem> {
    if is_account_id(s) {
        Ok(s)
    } else {
        Err(Problem::bad_request(
            "account is not an AWS account id (12 digits)",
        ))
    }
}

/// An account's page of a run's HTML report as its path names it, the
/// account id and `.html` (`111122223333.html`): the account id.
pub fn account_page(s: &str) -> Result<&str, Problem> {
    match s.strip_suffix(".html") {
        Some(id) => account(id),
        None => Err(Problem::bad_request(
            "account_page is not an AWS account id (12 digits) followed by .html",
        )),
    }
}

/// An IAM user name: 1-64 of `[\w+=,.@-]`.
pub fn user(s: &str) -> Result<&str, Problem> {
    if is_user_name(s) {
        Ok(s)
    } else {
        Err(Problem::bad_request(
            "user is not an IAM user name (1-64 of letters, digits and +=,.@_-)",
        ))
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
        Err(Problem::bad_request(
            "key_id is not an access key id (AKIA or ASIA and 16 upper case letters or digits)",
        ))
    }
}

/// A run id: 1-64 of `[A-Za-z0-9_-]`.
pub fn run(s: &str) -> Result<&str, Problem> {
    if is_run_id(s) {
        Ok(s)
    } else {
        Err(Problem::bad_request(
            "run id is not a keyfleet run id (1-64 of letters, digits, - and _)",
        ))
    }
}

pub use keyfleet_reports::read::finalized::run_started;

/// Whether a well-formed value of the path parameter `param` may be shown
/// back (in a problem's `instance` or `detail`): only when its form tells
/// it from a secret. An account id (12 digits), an access key id (`AKIA`
/// and 16 upper case letters or digits: 20 characters, where a secret
/// access key has 40 and a zip password 24 of a wider alphabet) and a run
/// id of the coordinator's form ([`run_started`]) cannot be a secret, nor
/// can an account's page (an account id and `.html`); an IAM user name can
/// (both secrets fit its alphabet), and so can a run id of another form.
pub fn echoable(param: &str, value: &str) -> bool {
    match param {
        "account" => is_account_id(value),
        "account_page" => value.strip_suffix(".html").is_some_and(is_account_id),
        "key_id" => is_key_id(value),
        "run_id" | "run" => run_started(value).is_some(),
        _ => false,
    }
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
    fn account_pages_are_an_account_id_and_html() {
        assert_eq!(account_page("111122223333.html").unwrap(), "111122223333");
        for bad in [
            "111122223333",
            "111122223333.htm",
            "111122223333.json",
            "11112222333.html",
            "111122223333.html.html",
            ".html",
            "",
        ] {
            let p = account_page(bad).unwrap_err();
            assert_eq!(p.status, 400, "{bad}");
            assert!(p.detail.contains("account"), "{bad}: {}", p.detail);
        }
        assert!(echoable("account_page", "111122223333.html"));
        assert!(!echoable("account_page", "wJalrXUtnFEMIK7MDENG.html"));
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
        // A zip password, which is of no secret's form.
        let zip = "Kp7-xQ2_mN9.vR4+tY6=wZ8h";
        for p in [account(zip), key_id(zip), run(zip)] {
            let p = p.unwrap_err();
            assert!(!p.detail.contains("Kp7"), "{}", p.detail);
        }
        let p = user(&"x".repeat(300)).unwrap_err();
        assert!(p.detail.len() < 200, "{}", p.detail);
    }

    #[test]
    fn only_identifiers_no_secret_can_look_like_are_echoable() {
        assert!(echoable("account", "111122223333"));
        assert!(echoable("key_id", "AKIAIOSFODNN7EXAMPLE"));
        assert!(echoable("run_id", "20260301T000000Z-a1b2c3"));
        for (param, v) in [
            ("user", "alice"),
            ("run_id", "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY12"),
            ("run_id", "Kp7xQ2mN9vR4tY6wZ8hJ3a-b"),
            ("run_id", "20260301T000000Z-A1B2C3"),
            ("run_id", "20261301T000000Z-a1b2c3"),
            ("account", "11112222333a"),
            ("other", "111122223333"),
        ] {
            assert!(!echoable(param, v), "{param} {v}");
        }
    }

    #[test]
    fn a_coordinator_run_id_tells_its_start_second() {
        assert_eq!(
            run_started("20260301T120304Z-abcdef"),
            Some(time::macros::datetime!(2026-03-01 12:03:04 UTC))
        );
        for other in [
            "20260301T120304Z",
            "20260301T120304Z-abcdeg",
            "r-1",
            "x-abcdef",
        ] {
            assert_eq!(run_started(other), None, "{other}");
        }
    }
}
