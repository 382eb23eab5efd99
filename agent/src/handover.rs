//! The handover read: an old key whose last use was its owner's program
//! fetching the replacement, and nothing since.
//!
//! With Secrets Manager delivery the owner's program picks up a new key by
//! reading the user's delivery secret `keyfleet/<user>` with the key it
//! holds (`keyfleet credential-process` does so within the hour). That read
//! is a use of the old key after its replacement was created, and IAM's
//! last use cannot tell it from a program still running on the old key:
//! the rules would keep the old key active as "still in use" until
//! `max_key_age`, the opposite of what the read means.
//!
//! IAM's last use covers every Region and every kind of call (data events
//! too), but only the last one; CloudTrail's event history has each
//! management call, but per Region and not data events. Together they can
//! tell. For the older key of a pair that IAM shows used after its
//! replacement was created (a few keys a run), the agent reads the key's
//! events in its own Region, where the delivery secret is, since the
//! replacement's creation ([`crate::trail::key_events`]). The key counts as
//! handed over only when all of these hold:
//!
//! - IAM's last use is a Secrets Manager call in the agent's Region, and a
//!   `GetSecretValue` of this user's delivery secret (the event names it)
//!   is dated within [`COVERAGE`] of it: the last use *is* the handover
//!   read, so nothing used the key after it, in any Region;
//! - that read is at least [`QUIET`] old: a program still on the old key
//!   that calls daily would have moved IAM's last use past it;
//! - every event since the replacement's creation is such a read, or came
//!   from the address the read came from (the owner's program, which kept
//!   using the old key until its credentials expired and it asked for new
//!   ones): a call from anywhere else means someone else holds the key;
//! - the lookup read every event (at most [`crate::trail::MAX_PAGES`]
//!   pages).
//!
//! Anything else (an error, throttling past the retries, CloudTrail not
//! caught up yet) leaves the key "used after", as before. What stays
//! unseen: a program elsewhere that used the key after its replacement was
//! created only through data events or in another Region, and not since
//! the read, nor in the [`QUIET`] day after it; the same kind of consumer
//! the cutover by evidence cannot see either (one that has not called since
//! the replacement), and the owner is told either way. Cost: one
//! `LookupEvents` (free; two a second per account and Region) per such key
//! per run.

use crate::trail::{self, KeyEvent};
use keyfleet_protocol::KeyState;
use time::{Duration, OffsetDateTime};

/// How far apart IAM and CloudTrail may date the same call.
pub const COVERAGE: Duration = Duration::minutes(5);
/// How long nothing may have used the key since the handover read.
pub const QUIET: Duration = Duration::hours(24);

/// Whether `secret_id` (a name or an ARN) names `user`'s delivery secret.
fn names_the_delivery_secret(secret_id: &str, user: &str) -> bool {
    let name = keyfleet_protocol::secret_name(user);
    secret_id == name
        || secret_id
            .split_once(":secret:")
            .is_some_and(|(_, rest)| rest.rsplit_once('-').is_some_and(|(n, _)| n == name))
}

/// A read of `user`'s delivery secret.
fn is_handover_read(e: &KeyEvent, user: &str) -> bool {
    e.source == "secretsmanager.amazonaws.com"
        && e.name == "GetSecretValue"
        && e.secret_id
            .as_deref()
            .is_some_and(|id| names_the_delivery_secret(id, user))
}

/// The decision (see the module doc): `old` as IAM reports it, the events
/// of the agent's `region` since the replacement's creation (all of them),
/// at `now`.
pub fn only_the_handover(
    events: &[KeyEvent],
    user: &str,
    old: &KeyState,
    region: &str,
    now: OffsetDateTime,
) -> bool {
    let Some(last_used) = old.last_used else {
        return false;
    };
    if old.last_used_service.as_deref() != Some("secretsmanager")
        || old.last_used_region.as_deref() != Some(region)
        || now - last_used < QUIET
    {
        return false;
    }
    let Some(read) = events
        .iter()
        .filter(|e| is_handover_read(e, user) && (e.time - last_used).abs() <= COVERAGE)
        .max_by_key(|e| e.time)
    else {
        return false;
    };
    events
        .iter()
        .all(|e| is_handover_read(e, user) || e.source_ip == read.source_ip)
}

/// Whether `old` was last used to fetch its replacement, and by nothing
/// else (see the module doc), from `read`: its events in the agent's
/// `region` since the replacement's creation.
pub fn handed_over(
    read: &trail::Read,
    user: &str,
    old: &KeyState,
    region: &str,
    now: OffsetDateTime,
) -> bool {
    read.complete && only_the_handover(&read.events, user, old, region, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfleet_protocol::KeyStatus;
    use time::macros::datetime;

    const T: OffsetDateTime = datetime!(2026-12-01 10:00 UTC);
    const HOME: &str = "203.0.113.5";

    fn event(name: &str, secret: Option<&str>, at: OffsetDateTime, ip: &str) -> KeyEvent {
        KeyEvent {
            source: if name == "GetSecretValue" {
                "secretsmanager.amazonaws.com".into()
            } else {
                "s3.amazonaws.com".into()
            },
            name: name.into(),
            time: at,
            secret_id: secret.map(str::to_string),
            source_ip: ip.into(),
            user_agent: "app/1.0".into(),
            region: "eu-west-1".into(),
        }
    }

    /// The old key as IAM reports it: last used at `at` by `service` in
    /// `region`.
    fn old(at: OffsetDateTime, service: &str, region: &str) -> KeyState {
        KeyState {
            id: "AKIAOLD".into(),
            status: KeyStatus::Active,
            created: T - Duration::days(90),
            last_used: Some(at),
            last_used_service: Some(service.into()),
            last_used_region: Some(region.into()),
        }
    }

    fn decide(events: &[KeyEvent], key: &KeyState, now: OffsetDateTime) -> bool {
        only_the_handover(events, "alice", key, "eu-west-1", now)
    }

    #[test]
    fn the_last_use_being_the_owners_read_a_day_ago_is_a_handover() {
        let arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:keyfleet/alice-AbCdEf";
        let events = [
            // The program's own calls before it asked for new credentials.
            event("ListBuckets", None, T - Duration::minutes(30), HOME),
            event("GetSecretValue", Some(arn), T, HOME),
        ];
        let key = old(T + Duration::seconds(1), "secretsmanager", "eu-west-1");
        assert!(decide(&events, &key, T + QUIET + Duration::seconds(1)));
        let by_name = [event("GetSecretValue", Some("keyfleet/alice"), T, HOME)];
        assert!(decide(&by_name, &key, T + QUIET + Duration::seconds(1)));
    }

    #[test]
    fn anything_else_keeps_the_key_in_use() {
        let read = event("GetSecretValue", Some("keyfleet/alice"), T, HOME);
        let key = old(T, "secretsmanager", "eu-west-1");
        let later = T + QUIET + Duration::seconds(1);
        // Less than a day since the read.
        assert!(!decide(
            std::slice::from_ref(&read),
            &key,
            T + QUIET - Duration::seconds(1)
        ));
        // IAM's last use is elsewhere or something else: used after the read.
        for k in [
            old(T + Duration::hours(2), "secretsmanager", "eu-west-1"),
            old(T, "s3", "eu-west-1"),
            old(T, "secretsmanager", "us-east-1"),
        ] {
            assert!(!decide(std::slice::from_ref(&read), &k, later), "{k:?}");
        }
        // No read, or a read that does not name the secret, or another's.
        assert!(!decide(&[], &key, later));
        for other in [
            None,
            Some("keyfleet/bob"),
            Some("prod/db"),
            Some("keyfleet/alice/x"),
        ] {
            let e = event("GetSecretValue", other, T, HOME);
            assert!(!decide(&[e], &key, later), "{other:?}");
        }
        // A call from another address since the replacement: someone else
        // holds the key.
        let elsewhere = event(
            "ListBuckets",
            None,
            T - Duration::minutes(5),
            "198.51.100.7",
        );
        assert!(!decide(&[elsewhere, read.clone()], &key, later));
        // The read a good while before IAM's last use.
        let early = event(
            "GetSecretValue",
            Some("keyfleet/alice"),
            T - COVERAGE - Duration::seconds(1),
            HOME,
        );
        assert!(!decide(&[early], &key, later));
    }
}
