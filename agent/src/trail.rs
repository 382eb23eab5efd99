//! A key's CloudTrail event history: what the agent reads to tell the
//! handover read from real use ([`crate::handover`]) and where a key still
//! in use is used from ([`crate::where_used`]).
//!
//! `LookupEvents` by `AccessKeyId` from a given second (CloudTrail dates
//! events to the whole second), at most [`MAX_PAGES`] pages of 50 events:
//! AWS keeps 90 days of management events per Region and allows two
//! lookups a second per account and Region (the client's adaptive retry
//! absorbs a throttle). Free of charge. The agent's role grants
//! `cloudtrail:LookupEvents` and nothing else of CloudTrail.

use aws_sdk_cloudtrail::types::{Event, LookupAttribute, LookupAttributeKey};
use time::OffsetDateTime;

/// Pages of 50 events read at most for one key.
pub const MAX_PAGES: usize = 4;

/// One event of a key, as far as keyfleet reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvent {
    /// `s3.amazonaws.com`.
    pub source: String,
    pub name: String,
    pub time: OffsetDateTime,
    /// The secret the call named, when the event says
    /// (`requestParameters.secretId`).
    pub secret_id: Option<String>,
    /// `sourceIPAddress`: an IP address, or an AWS service's name.
    pub source_ip: String,
    pub user_agent: String,
    pub region: String,
}

impl KeyEvent {
    /// A field the event lacks is empty (or the epoch): such an event is
    /// never taken for the handover read, nor is it a place of use.
    fn from_sdk(e: &Event) -> KeyEvent {
        let record: serde_json::Value = e
            .cloud_trail_event()
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        let text = |k: &str| record[k].as_str().unwrap_or_default().to_string();
        KeyEvent {
            source: e.event_source().unwrap_or_default().to_string(),
            name: e.event_name().unwrap_or_default().to_string(),
            time: e
                .event_time()
                .map_or(OffsetDateTime::UNIX_EPOCH, crate::scan::to_time),
            secret_id: record["requestParameters"]["secretId"]
                .as_str()
                .map(str::to_string),
            source_ip: text("sourceIPAddress"),
            user_agent: text("userAgent"),
            region: text("awsRegion"),
        }
    }
}

/// What a lookup read.
#[derive(Debug, Clone, Default)]
pub struct Read {
    /// Newest first.
    pub events: Vec<KeyEvent>,
    /// Every event of the key is in `events`: there were no more than
    /// [`MAX_PAGES`] pages.
    pub complete: bool,
}

/// The events of `key_id` from the second of `since` on, newest first, in
/// the client's Region or in `region` (CloudTrail keeps each Region's
/// events apart; IAM's and STS's are in us-east-1), at most [`MAX_PAGES`]
/// pages of them. `Err` names what failed.
pub async fn key_events(
    ct: &aws_sdk_cloudtrail::Client,
    key_id: &str,
    since: OffsetDateTime,
    region: Option<&str>,
) -> Result<Read, String> {
    let attribute = LookupAttribute::builder()
        .attribute_key(LookupAttributeKey::AccessKeyId)
        .attribute_value(key_id)
        .build()
        .map_err(|e| e.to_string())?;
    // The same client (its retry, its call counter) in the other Region.
    let regional = region.map(|r| {
        aws_sdk_cloudtrail::Client::from_conf(
            ct.config()
                .to_builder()
                .region(aws_sdk_cloudtrail::config::Region::new(r.to_string()))
                .build(),
        )
    });
    let mut pages = regional
        .as_ref()
        .unwrap_or(ct)
        .lookup_events()
        .lookup_attributes(attribute)
        // CloudTrail dates events to the whole second: from the second of
        // `since`, so an event in that second is seen.
        .start_time(aws_smithy_types::DateTime::from_secs(
            since.unix_timestamp(),
        ))
        .max_results(50)
        .into_paginator()
        .send();
    let mut events = Vec::new();
    for _ in 0..MAX_PAGES {
        match pages.next().await {
            None => {
                return Ok(Read {
                    events,
                    complete: true,
                })
            }
            Some(Err(e)) => {
                return Err(format!(
                    "CloudTrail LookupEvents: {}",
                    aws_sdk_cloudtrail::error::DisplayErrorContext(&e)
                ))
            }
            Some(Ok(page)) => events.extend(page.events().iter().map(KeyEvent::from_sdk)),
        }
    }
    let complete = pages.next().await.is_none();
    Ok(Read { events, complete })
}
