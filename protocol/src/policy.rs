//! The rotation policy: every threshold of the rules, as data.
//!
//! The coordinator sends the policy inside each job so that one run applies
//! one policy everywhere, and the report records which policy it applied.
//! Defaults are the ones in the design: rotate at 80 days, deactivate at 90,
//! delete at 100, unused keys deleted after 90, hard limit 120.

use crate::address::{check_syntax, AddressError};
use crate::duration::{Duration, Limit};
use serde::{Deserialize, Serialize};

/// How a new key reaches its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Encrypted zip by email, password in a second email.
    #[default]
    Email,
    /// Secret `keyfleet/<user>` in the member account, readable by that user.
    SecretsManager,
    /// Both of the above.
    Both,
}

impl Delivery {
    pub fn by_email(self) -> bool {
        matches!(self, Delivery::Email | Delivery::Both)
    }
    pub fn by_secrets_manager(self) -> bool {
        matches!(self, Delivery::SecretsManager | Delivery::Both)
    }
}

/// A tag key and the value that switches a behaviour on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct TagMatch {
    pub key: String,
    pub value: String,
}

/// Every threshold of the rules. Unknown fields are rejected so a typo in a
/// policy never silently falls back to a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// A key this old gets a replacement.
    pub rotate_after: Duration,
    /// The old key is deactivated at this age (notice period = this - rotate_after).
    pub deactivate_after: Duration,
    /// An inactive key this old is deleted.
    pub delete_after: Duration,
    /// A key not used (or never used) for this long is deleted, not replaced.
    pub unused_delete_after: Duration,
    /// Hard limit: past it an old key is deactivated even if still in use.
    pub max_key_age: Limit,
    /// Users carrying this tag are skipped and reported as exempt.
    pub exempt_tag: TagMatch,
    /// Tag holding the owner's email address.
    pub email_tag: String,
    /// How new keys are delivered.
    pub delivery: Delivery,
    /// Initial clean-up mode (first run): delete inactive keys older than
    /// `delete_after` and deactivate over-age keys of users without an email,
    /// silently; no new keys, no owner notices.
    pub cleanup: bool,
    /// Allow-list of owner email domains (exact, ignoring ASCII case). Empty:
    /// any address that passes the deliverability rule. Left out of the
    /// message while empty, so agents that predate it still accept jobs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owner_domains: Vec<String>,
    /// Deactivate a key past `max_key_age` in the run that finds it, even
    /// if its replacement was created in that same run (no notice period).
    /// Off by default: the older key of a pair is otherwise never
    /// deactivated before its replacement is `deactivate_after -
    /// rotate_after` old. Left out of the message while false.
    #[serde(skip_serializing_if = "is_false")]
    pub deactivate_at_max_age_without_notice: bool,
    /// A new key still not delivered to its owner this long after the
    /// coordinator received it is alerted by name (its old key stays
    /// active meanwhile). Left out of the message while it is the default.
    #[serde(skip_serializing_if = "is_default_alert")]
    pub undelivered_alert_after: Duration,
    /// Cutover by evidence: once the younger key of an active pair has been
    /// used after it reached its owner and the older key (at least
    /// `rotate_after` old) has not been used since, the older key is
    /// deactivated at the next run instead of on its date (with the usual
    /// `Deactivated` notice). Never while the
    /// replacement awaits delivery or the older key is in a reactivation's
    /// grace; a key still in use after its replacement was created keeps
    /// today's schedule. On by default (a policy written without it reads as
    /// on); `false` keeps the fixed date for every pair. Left out of the
    /// message while true, so agents that predate it still accept jobs.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub cutover_on_use: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_true(b: &bool) -> bool {
    *b
}

fn default_true() -> bool {
    true
}

/// The default of [`Policy::undelivered_alert_after`]: 7 days.
pub const UNDELIVERED_ALERT_AFTER: Duration = Duration::from_days(7);

fn is_default_alert(d: &Duration) -> bool {
    *d == UNDELIVERED_ALERT_AFTER
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            rotate_after: Duration::from_days(80),
            deactivate_after: Duration::from_days(90),
            delete_after: Duration::from_days(100),
            unused_delete_after: Duration::from_days(90),
            max_key_age: Limit::After(Duration::from_days(120)),
            exempt_tag: TagMatch {
                key: "Exempt".into(),
                value: "True".into(),
            },
            email_tag: "Email".into(),
            delivery: Delivery::Email,
            cleanup: false,
            owner_domains: Vec::new(),
            deactivate_at_max_age_without_notice: false,
            undelivered_alert_after: UNDELIVERED_ALERT_AFTER,
            cutover_on_use: true,
        }
    }
}

/// A policy whose thresholds contradict each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy.{field} must be greater than zero")]
    Zero { field: &'static str },
    #[error("policy.{later} ({later_value}) must not be shorter than policy.{earlier} ({earlier_value})")]
    Order {
        earlier: &'static str,
        earlier_value: String,
        later: &'static str,
        later_value: String,
    },
    #[error("policy.{field} must not be empty")]
    EmptyTag { field: &'static str },
    #[error("policy.owner_domains: `{0}` is not a domain name")]
    OwnerDomain(String),
}

impl Policy {
    /// The owner's address from the user's tags under this policy's rule:
    /// the value of the tag `email_tag` (exact key), trimmed, if it passes
    /// [`check_syntax`] and the owner-domain allow-list.
    pub fn owner_email(&self, tags: &[(String, String)]) -> Result<String, AddressError> {
        let tag = &self.email_tag;
        let (_, value) = tags
            .iter()
            .find(|(k, _)| k == tag)
            .ok_or_else(|| AddressError::NoTag { tag: tag.clone() })?;
        let value = value.trim();
        self.check_owner_address(value).map(|()| value.to_string())
    }

    /// Checks an address as [`Policy::owner_email`] does (for the
    /// coordinator, which gets the address from an agent's result).
    pub fn check_owner_address(&self, value: &str) -> Result<(), AddressError> {
        let tag = &self.email_tag;
        check_syntax(value).map_err(|reason| AddressError::Invalid {
            tag: tag.clone(),
            value: value.escape_debug().to_string(),
            reason,
        })?;
        if self.owner_domains.is_empty() {
            return Ok(());
        }
        let domain = value.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        if self
            .owner_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
        {
            Ok(())
        } else {
            Err(AddressError::DomainNotAllowed {
                tag: tag.clone(),
                value: value.to_string(),
                domain: domain.to_string(),
            })
        }
    }
}

impl Policy {
    /// Checks the thresholds are in the order the rules need:
    /// `0 < rotate_after < deactivate_after <= delete_after` and
    /// `deactivate_after <= max_key_age`.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for (field, d) in [
            ("rotate_after", self.rotate_after),
            ("deactivate_after", self.deactivate_after),
            ("delete_after", self.delete_after),
            ("unused_delete_after", self.unused_delete_after),
            ("undelivered_alert_after", self.undelivered_alert_after),
        ] {
            if d == Duration::ZERO {
                return Err(PolicyError::Zero { field });
            }
        }
        let order = |earlier: &'static str, e: Duration, later: &'static str, l: Duration| {
            if l < e {
                Err(PolicyError::Order {
                    earlier,
                    earlier_value: e.to_string(),
                    later,
                    later_value: l.to_string(),
                })
            } else {
                Ok(())
            }
        };
        order(
            "rotate_after",
            self.rotate_after,
            "deactivate_after",
            self.deactivate_after,
        )?;
        if self.deactivate_after == self.rotate_after {
            // A zero notice period would deactivate a key in the same run that
            // created its replacement, before the owner could switch.
            return Err(PolicyError::Order {
                earlier: "rotate_after",
                earlier_value: self.rotate_after.to_string(),
                later: "deactivate_after",
                later_value: self.deactivate_after.to_string(),
            });
        }
        order(
            "deactivate_after",
            self.deactivate_after,
            "delete_after",
            self.delete_after,
        )?;
        if let Limit::After(max) = self.max_key_age {
            order(
                "deactivate_after",
                self.deactivate_after,
                "max_key_age",
                max,
            )?;
        }
        if self.exempt_tag.key.is_empty() {
            return Err(PolicyError::EmptyTag {
                field: "exempt_tag.key",
            });
        }
        if self.email_tag.is_empty() {
            return Err(PolicyError::EmptyTag { field: "email_tag" });
        }
        if let Some(bad) = self
            .owner_domains
            .iter()
            .find(|d| !crate::address::is_domain(d))
        {
            return Err(PolicyError::OwnerDomain(bad.clone()));
        }
        Ok(())
    }

    /// Notice period between the replacement and the deactivation.
    pub fn notice_period(&self) -> Duration {
        self.deactivate_after.saturating_sub(self.rotate_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_valid_and_matches_design() {
        let p = Policy::default();
        p.validate().unwrap();
        assert_eq!(p.notice_period(), Duration::from_days(10));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["rotate_after"], "80d");
        assert_eq!(json["max_key_age"], "120d");
        assert_eq!(json["delivery"], "email");
        // New fields stay off the wire while they hold their default, so an
        // agent that predates them still accepts the job.
        assert!(json.get("owner_domains").is_none(), "{json}");
        assert!(
            json.get("deactivate_at_max_age_without_notice").is_none(),
            "{json}"
        );
        assert!(json.get("cutover_on_use").is_none(), "{json}");
        assert!(p.cutover_on_use, "cutover by evidence is on by default");
    }

    /// A policy written before the switch existed reads as on; `false` is
    /// written out and read back (an agent that predates the field rejects
    /// such a job, as for every field set away from its default).
    #[test]
    fn cutover_on_use_defaults_to_on_and_off_is_sent() {
        let p: Policy = serde_json::from_str(r#"{"rotate_after":"10d"}"#).unwrap();
        assert!(p.cutover_on_use);
        let p: Policy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, Policy::default());
        let off: Policy = serde_json::from_str(r#"{"cutover_on_use":false}"#).unwrap();
        assert!(!off.cutover_on_use);
        off.validate().unwrap();
        let json = serde_json::to_value(&off).unwrap();
        assert_eq!(json["cutover_on_use"], false);
        let back: Policy = serde_json::from_value(json).unwrap();
        assert_eq!(back, off);
    }

    #[test]
    fn owner_domains_must_be_domain_names() {
        let p = Policy {
            owner_domains: vec!["example.com".into(), "not a domain".into()],
            ..Policy::default()
        };
        assert_eq!(
            p.validate(),
            Err(PolicyError::OwnerDomain("not a domain".into()))
        );
    }

    #[test]
    fn partial_policy_fills_defaults_and_unknown_field_is_rejected() {
        let p: Policy = serde_json::from_str(r#"{"rotate_after":"10m"}"#).unwrap();
        assert_eq!(p.rotate_after, Duration::from_minutes(10));
        assert_eq!(p.deactivate_after, Duration::from_days(90));
        let err = serde_json::from_str::<Policy>(r#"{"rotate_afterr":"10m"}"#).unwrap_err();
        assert!(err.to_string().contains("rotate_afterr"), "{err}");
    }

    #[test]
    fn contradictory_thresholds_are_named() {
        let p = Policy {
            delete_after: Duration::from_days(85),
            ..Policy::default()
        };
        let e = p.validate().unwrap_err();
        assert!(e.to_string().contains("policy.delete_after"), "{e}");
        let p = Policy {
            deactivate_after: Duration::from_days(80),
            ..Policy::default()
        };
        assert!(matches!(p.validate(), Err(PolicyError::Order { .. })));
        let p = Policy {
            rotate_after: Duration::ZERO,
            ..Policy::default()
        };
        assert_eq!(
            p.validate(),
            Err(PolicyError::Zero {
                field: "rotate_after"
            })
        );
    }
}
