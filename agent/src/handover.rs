//! The handover read: an old key whose only use after its replacement was
//! created was fetching that replacement.
//!
//! With Secrets Manager delivery the owner's program picks up a new key by
//! reading the user's delivery secret `keyfleet/<user>` with the key it
//! holds (`keyfleet credential-process` does so within the hour). That read
//! is a use of the old key after its replacement was created, and IAM's
//! last use cannot tell it from a program still running on the old key:
//! the rules would keep the old key active as "still in use" until
//! `max_key_age`, the opposite of what the read means.
//!
//! CloudTrail can tell. For the older key of a pair that IAM shows used
//! after its replacement was created, and only then (a few keys a run),
//! the agent looks up the key's events since the replacement's creation
//! ([`crate::trail::key_events`]).
//! The key counts as handed over when:
//!
//! - there is at least one event (CloudTrail has caught up; it lags by
//!   minutes);
//! - every event is Secrets Manager's `GetSecretValue` of this user's
//!   delivery secret (when the event names the secret; the event history
//!   of a management event does);
//! - the newest event is not older than IAM's last use by more than
//!   [`COVERAGE`] (the use IAM reports is one CloudTrail has).
//!
//! Anything else (another call, too many events, an error, throttling past
//! the retries) leaves the key "used after", as before: the check can only
//! let a key go that the evidence shows unused by anything but the
//! handover. Cost: one `LookupEvents` (free; CloudTrail allows two a second
//! per account and region) per such key per run.

use crate::trail::{self, KeyEvent};
use keyfleet_protocol::KeyState;
use time::{Duration, OffsetDateTime};
/// How much older than IAM's last use the newest event may be (the two
/// services date a call apart by seconds).
pub const COVERAGE: Duration = Duration::minutes(5);

/// Whether `secret_id` (a name or an ARN) names `user`'s delivery secret.
fn names_the_delivery_secret(secret_id: &str, user: &str) -> bool {
    let name = keyfleet_protocol::secret_name(user);
    secret_id == name
        || secret_id
            .split_once(":secret:")
            .is_some_and(|(_, rest)| rest.rsplit_once('-').is_some_and(|(n, _)| n == name))
}

/// The decision (see the module doc), from the events since the
/// replacement's creation and IAM's last use of the old key.
pub fn only_the_handover(events: &[KeyEvent], user: &str, last_used: OffsetDateTime) -> bool {
    let Some(newest) = events.iter().map(|e| e.time).max() else {
        return false;
    };
    newest + COVERAGE >= last_used
        && events.iter().all(|e| {
            e.source == "secretsmanager.amazonaws.com"
                && e.name == "GetSecretValue"
                && e.secret_id
                    .as_deref()
                    .is_none_or(|id| names_the_delivery_secret(id, user))
        })
}

/// Whether `old`, used after its replacement created at `since`, was used
/// only to fetch that replacement. `Err` names what could not be read.
pub async fn handed_over(
    ct: &aws_sdk_cloudtrail::Client,
    user: &str,
    old: &KeyState,
    since: OffsetDateTime,
) -> Result<bool, String> {
    let Some(last_used) = old.last_used else {
        return Ok(false);
    };
    // More events than a handover makes (`None`): the key is in use.
    Ok(trail::key_events(ct, &old.id, since, None)
        .await?
        .is_some_and(|events| only_the_handover(&events, user, last_used)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T: OffsetDateTime = datetime!(2026-12-01 10:00 UTC);

    fn event(name: &str, secret: Option<&str>, at: OffsetDateTime) -> KeyEvent {
        KeyEvent {
            source_ip: "203.0.113.5".into(),
            user_agent: "app/1.0".into(),
            region: "eu-west-1".into(),
            source: if name == "GetSecretValue" {
                "secretsmanager.amazonaws.com".into()
            } else {
                "s3.amazonaws.com".into()
            },
            name: name.into(),
            time: at,
            secret_id: secret.map(str::to_string),
        }
    }

    #[test]
    fn reads_of_the_users_own_delivery_secret_are_the_handover() {
        let arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:keyfleet/alice-AbCdEf";
        let events = [
            event("GetSecretValue", Some("keyfleet/alice"), T),
            event("GetSecretValue", Some(arn), T + Duration::minutes(1)),
            event("GetSecretValue", None, T + Duration::minutes(2)),
        ];
        assert!(only_the_handover(
            &events,
            "alice",
            T + Duration::minutes(2)
        ));
    }

    #[test]
    fn any_other_use_or_no_evidence_keeps_the_key_in_use() {
        let read = event("GetSecretValue", Some("keyfleet/alice"), T);
        assert!(!only_the_handover(&[], "alice", T), "no event yet");
        for other in [
            event("GetObject", None, T),
            event("GetSecretValue", Some("keyfleet/bob"), T),
            event("GetSecretValue", Some("prod/db-password"), T),
            event(
                "GetSecretValue",
                Some(
                    "arn:aws:secretsmanager:eu-west-1:111122223333:secret:keyfleet/alice/x-AbCdEf",
                ),
                T,
            ),
        ] {
            assert!(
                !only_the_handover(&[read.clone(), other.clone()], "alice", T),
                "{other:?}"
            );
        }
        // IAM knows a later use than CloudTrail shows: not covered.
        assert!(!only_the_handover(
            std::slice::from_ref(&read),
            "alice",
            T + COVERAGE + Duration::seconds(1)
        ));
        assert!(only_the_handover(&[read], "alice", T + COVERAGE));
    }
}
