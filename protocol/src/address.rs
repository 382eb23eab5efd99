//! The one deliverability rule: which owner email addresses keyfleet mails.
//!
//! The agent decides with it whether a new key can be delivered (no key is
//! created for an owner the coordinator would refuse to mail), and the
//! coordinator checks every address with it again before sending, so the
//! two sides can never disagree (a key created and then never mailed).
//!
//! The rule is RFC 5321 syntax as the `email_address` crate parses it, made
//! stricter where a permissive address is a risk for an automated sender:
//!
//! - one bare address, ASCII only, at most 254 characters; no display name,
//!   no quoted local part, no comment, no IP-literal domain;
//! - no spaces, control characters or any of `<>()[]\,;:"` (so a tag value
//!   can never smuggle a second recipient or a header);
//! - the domain is a DNS name with at least two labels (`corp` alone is not
//!   deliverable on the internet, so `bad@corp` is refused), each label 1-63
//!   letters, digits or hyphens, not starting or ending with a hyphen;
//! - when the policy has an allow-list of owner domains, the domain (compared
//!   ignoring ASCII case) must be one of them exactly; a subdomain must be
//!   listed on its own.

use email_address::{EmailAddress, Options};

/// Why a user's owner cannot be mailed. The message names the tag and value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("no `{tag}` tag with the owner's email address")]
    NoTag { tag: String },
    #[error("`{tag}` tag value `{value}` is not a deliverable email address: {reason}")]
    Invalid {
        tag: String,
        value: String,
        reason: &'static str,
    },
    #[error("`{tag}` tag value `{value}`: domain `{domain}` is not in the policy's owner_domains")]
    DomainNotAllowed {
        tag: String,
        value: String,
        domain: String,
    },
}

/// Checks one bare address against the syntax part of the rule (no
/// allow-list). Returns the reason it is refused.
pub fn check_syntax(addr: &str) -> Result<(), &'static str> {
    if addr.is_empty() || addr.len() > 254 {
        return Err("empty or longer than 254 characters");
    }
    if !addr.is_ascii() {
        return Err("not ASCII");
    }
    if addr
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || "<>()[]\\,;:\"".contains(c))
    {
        return Err("contains spaces, control characters or one of <>()[]\\,;:\"");
    }
    let options = Options::default()
        .without_display_text()
        .without_domain_literal();
    EmailAddress::parse_with_options(addr, options).map_err(|_| "not an RFC 5321 address")?;
    let (_, domain) = addr.rsplit_once('@').ok_or("no @")?;
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err("the domain has no dot (not an internet domain)");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !labels.iter().all(|l| label_ok(l)) {
        return Err("the domain is not a DNS name");
    }
    Ok(())
}

/// Checks a domain name for the policy's allow-list.
pub fn is_domain(domain: &str) -> bool {
    check_syntax(&format!("x@{domain}")).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn tags(v: &str) -> Vec<(String, String)> {
        vec![("Email".into(), v.into())]
    }

    #[test]
    fn ordinary_addresses_pass() {
        for a in [
            "alice@example.com",
            "a.b+ci@sub.example.co.uk",
            "o'neil@example.org",
            "x_y-z=1@example-corp.com",
        ] {
            assert_eq!(check_syntax(a), Ok(()), "{a}");
        }
    }

    #[test]
    fn risky_or_undeliverable_addresses_are_refused_with_a_reason() {
        for a in [
            "bad@corp",
            "",
            "no-at-sign",
            "@example.com",
            "a@",
            "a@@example.com",
            "a@b@example.com",
            "a b@example.com",
            "a@example.com,b@example.com",
            "a@example.com;b@example.com",
            "Alice <a@example.com>",
            "\"quoted\"@example.com",
            "a@[127.0.0.1]",
            "a@-bad.example.com",
            "a@example..com",
            "a@.example.com",
            "a@example.com.",
            "a@exämple.com",
            "a@example.com\r\nBcc: x@evil.com",
        ] {
            assert!(check_syntax(a).is_err(), "{a:?} should be refused");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(check_syntax(&long).is_err());
    }

    #[test]
    fn owner_email_names_the_tag_and_the_value() {
        let p = Policy::default();
        assert_eq!(
            p.owner_email(&tags(" alice@example.com ")).as_deref(),
            Ok("alice@example.com")
        );
        assert_eq!(
            p.owner_email(&[]),
            Err(AddressError::NoTag {
                tag: "Email".into()
            })
        );
        let e = p.owner_email(&tags("bad@corp")).unwrap_err();
        assert!(e.to_string().contains("`Email`"), "{e}");
        assert!(e.to_string().contains("bad@corp"), "{e}");
        assert!(e.to_string().contains("no dot"), "{e}");
    }

    #[test]
    fn allow_list_matches_the_whole_domain_ignoring_case() {
        let p = Policy {
            owner_domains: vec!["example.com".into()],
            ..Policy::default()
        };
        assert!(p.owner_email(&tags("a@Example.COM")).is_ok());
        assert!(matches!(
            p.owner_email(&tags("a@sub.example.com")),
            Err(AddressError::DomainNotAllowed { .. })
        ));
        assert!(matches!(
            p.owner_email(&tags("a@example.com.evil.org")),
            Err(AddressError::DomainNotAllowed { .. })
        ));
        assert!(matches!(
            p.owner_email(&tags("a@evil.org")),
            Err(AddressError::DomainNotAllowed { .. })
        ));
    }
}
