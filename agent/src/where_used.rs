//! Where a key still in use is used from: the places of use the owner is
//! told in the "still in use" notice, and the report shows.
//!
//! For an old key the rules keep active because it was used after its
//! replacement was created (`StillInUse`: a few keys a run), the agent reads
//! the key's CloudTrail events since that creation ([`crate::trail`]: in
//! the agent's Region, and in the Region IAM last saw the key in) and
//! groups them by source IP, user agent, service and region, with the last
//! time each was seen and its number of calls; the [`MAX_USE_SITES`] most
//! recently seen go in the notice. The same CloudTrail read as the handover
//! check, so the same cost: one free `LookupEvents` (up to four pages) per
//! such key per run. A lookup that fails leaves the notice without places
//! (the IAM service and region are still there).

use crate::trail::{self, KeyEvent};
use keyfleet_protocol::{KeyState, UseSite, MAX_USER_AGENT, MAX_USE_SITES};
use std::collections::HashMap;
use time::OffsetDateTime;

/// The places of use in `events`, most recently seen first, at most
/// [`MAX_USE_SITES`]. User agents are cut to [`MAX_USER_AGENT`] characters
/// and control characters dropped; events from the handover read are
/// places of use like any other (the rules did not count them as one, but
/// the owner may want to know).
pub fn sites(events: &[KeyEvent]) -> Vec<UseSite> {
    let mut by_place: HashMap<(String, String, String, String), (OffsetDateTime, u32)> =
        HashMap::new();
    for e in events {
        // Printable ASCII, as the protocol takes it: anything else is shown
        // as `?` (whoever holds the key writes this text).
        let user_agent: String = e
            .user_agent
            .chars()
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() {
                    c
                } else {
                    '?'
                }
            })
            .take(MAX_USER_AGENT)
            .collect();
        let service = e
            .source
            .strip_suffix(".amazonaws.com")
            .unwrap_or(&e.source)
            .to_string();
        let seen = by_place
            .entry((e.source_ip.clone(), user_agent, service, e.region.clone()))
            .or_insert((e.time, 0));
        seen.0 = seen.0.max(e.time);
        seen.1 = seen.1.saturating_add(1);
    }
    let mut sites: Vec<UseSite> = by_place
        .into_iter()
        .map(
            |((source_ip, user_agent, service, region), (last_seen, calls))| UseSite {
                source_ip,
                user_agent,
                service,
                region,
                last_seen,
                calls,
            },
        )
        .collect();
    // Most recent first; ties in a fixed order, so that a dry run keeps
    // the same ten as the run.
    sites.sort_by(|a, b| {
        (b.last_seen, b.calls)
            .cmp(&(a.last_seen, a.calls))
            .then_with(|| {
                (&a.source_ip, &a.user_agent, &a.service, &a.region).cmp(&(
                    &b.source_ip,
                    &b.user_agent,
                    &b.service,
                    &b.region,
                ))
            })
    });
    sites.truncate(MAX_USE_SITES);
    sites
}

/// Where `key` was used from since `since` (its replacement's creation),
/// looked up in the agent's Region (`own`: that read when the run has it
/// already, from the handover check) and, when IAM says the key was last
/// used in another, in that one too. With more events than a lookup reads,
/// the newest pages' places; a Region whose lookup fails is left out (with
/// a warning) when the other answered.
pub async fn look_up(
    ct: &aws_sdk_cloudtrail::Client,
    key: &KeyState,
    since: OffsetDateTime,
    own_read: Option<trail::Read>,
) -> Result<Vec<UseSite>, String> {
    let mut events = match own_read {
        Some(read) => read.events,
        None => trail::key_events(ct, &key.id, since, None).await?.events,
    };
    let own = ct.config().region().map(|r| r.as_ref().to_string());
    if let Some(region) = key
        .last_used_region
        .as_deref()
        .filter(|r| keyfleet_protocol::is_region(r) && own.as_deref() != Some(*r))
    {
        match trail::key_events(ct, &key.id, since, Some(region)).await {
            Ok(read) => events.extend(read.events),
            Err(e) => {
                tracing::warn!(key = %key.id, region, error = %e, "places of use in this Region not looked up")
            }
        }
    }
    Ok(sites(&events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn event(ip: &str, agent: &str, source: &str, at: OffsetDateTime) -> KeyEvent {
        KeyEvent {
            source: source.into(),
            name: "GetObject".into(),
            time: at,
            secret_id: None,
            source_ip: ip.into(),
            user_agent: agent.into(),
            region: "eu-west-1".into(),
        }
    }

    #[test]
    fn events_group_by_place_most_recent_first_with_counts() {
        let t = datetime!(2026-12-01 10:00 UTC);
        let events = [
            event("203.0.113.5", "aws-cli/2.15.0", "s3.amazonaws.com", t),
            event(
                "203.0.113.5",
                "aws-cli/2.15.0",
                "s3.amazonaws.com",
                t + time::Duration::hours(2),
            ),
            event(
                "198.51.100.7",
                "boto3/1.34",
                "sqs.amazonaws.com",
                t + time::Duration::hours(1),
            ),
        ];
        let got = sites(&events);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (
                got[0].source_ip.as_str(),
                got[0].service.as_str(),
                got[0].calls
            ),
            ("203.0.113.5", "s3", 2)
        );
        assert_eq!(got[0].last_seen, t + time::Duration::hours(2));
        assert_eq!(
            (got[1].source_ip.as_str(), got[1].calls),
            ("198.51.100.7", 1)
        );
        for s in &got {
            assert!(keyfleet_protocol::use_site_rule(s).is_ok(), "{s:?}");
        }
    }

    #[test]
    fn at_most_ten_places_and_user_agents_are_bounded_lines() {
        let t = datetime!(2026-12-01 10:00 UTC);
        let long = format!("agent\n\u{202e}{}", "x".repeat(1000));
        let events: Vec<KeyEvent> = (0..25)
            .map(|i| {
                event(
                    &format!("203.0.113.{i}"),
                    &long,
                    "s3.amazonaws.com",
                    t + time::Duration::minutes(i),
                )
            })
            .collect();
        let got = sites(&events);
        assert_eq!(got.len(), MAX_USE_SITES);
        assert_eq!(got[0].source_ip, "203.0.113.24", "the most recent first");
        assert!(got
            .iter()
            .all(|s| s.user_agent.chars().count() == MAX_USER_AGENT));
        assert!(got
            .iter()
            .all(|s| keyfleet_protocol::use_site_rule(s).is_ok()));
    }
}
