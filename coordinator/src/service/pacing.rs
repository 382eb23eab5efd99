//! SES pacing: the coordinator sends no faster and no more than the
//! account's SES quota allows, and what it cannot send now waits for the
//! pending-mail sweep instead of being refused by SES again and again.
//!
//! **What SES allows.** `GetAccount` gives the quota: `MaxSendRate`
//! (recipients per second), `Max24HourSend` (recipients in any 24 hours;
//! `-1` unlimited) and `SentLast24Hours`. Over the rate SES answers
//! `TooManyRequestsException` (HTTP 429, "Maximum sending rate
//! exceeded."); over the day `LimitExceededException` ("Daily message
//! quota exceeded."); SES v1 answers both as `Throttling`.
//!
//! **How the coordinator paces.** The quota is read at the first send of an
//! invocation, at the first send of each pending-mail sweep, and again at
//! most every [`QUOTA_READ_EVERY`] (one `GetAccount`: SES bills nothing
//! for it), and what this invocation sent since is counted on top. Sends are spaced at the rate divided by the
//! number of coordinator invocations that may send at once
//! (`KEYFLEET_MAIL_SENDERS`, which Terraform sets to the results mapping's
//! maximum concurrency plus the sweep's one), so that together they stay
//! under it. An owner email is sent only while the day's quota keeps room
//! for it and for the security team's summary (`reserve`); a new key's zip
//! also keeps room for its password, so an owner is not left with a zip
//! and no password until the next day.
//!
//! **What waits.** A send the quota has no room for, or that SES refuses
//! for its rate or its day (after the SDK's own retries), is
//! [`CoordinatorError::MailDeferred`]: its ledger claim is released, the
//! account goes to the pending-mail sweep, which sends it within the hour
//! or once the day's quota has room again. A deferral is not a failed
//! attempt (`mail_retry` gives up on failures only): a quota that is
//! reached never loses an email, and the ledger still sends each one once.
//! A run whose mail waits says so in its report (`mail_waiting`) and its
//! alert.
//!
//! Concurrent invocations read the same `SentLast24Hours` and may together
//! go past the day's quota by what they send between two reads; SES then
//! refuses the excess, which waits as above.

use super::CoordinatorError;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long a read quota is used before it is read again.
pub const QUOTA_READ_EVERY: Duration = Duration::from_secs(60);

/// The account's SES quota as last read, with what was sent since.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    /// Recipients per second; `None` when SES says none (`<= 0`).
    pub max_send_rate: Option<f64>,
    /// Recipients in 24 hours; `None` when unlimited (`-1`).
    pub max_24_hour_send: Option<f64>,
    pub sent_last_24_hours: f64,
}

impl Quota {
    /// The recipients the day's quota still has room for, `sent` more
    /// having gone out since it was read; `None` when unlimited.
    pub fn room(&self, sent: f64) -> Option<f64> {
        self.max_24_hour_send
            .map(|max| (max - self.sent_last_24_hours - sent).max(0.0))
    }
}

/// Why an email waits (see [`CoordinatorError::MailDeferred`]).
pub fn daily_quota_reached(quota: &Quota, sent: f64) -> String {
    format!(
        "SES's daily sending quota is reached ({} of {} in the last 24 hours)",
        (quota.sent_last_24_hours + sent).round(),
        quota.max_24_hour_send.unwrap_or(f64::INFINITY)
    )
}

/// The time between two sends of `recipients` when `senders`
/// invocations share `rate` recipients a second.
pub fn spacing(rate: f64, senders: u32, recipients: usize) -> Duration {
    if rate <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(recipients as f64 * f64::from(senders.max(1)) / rate)
}

#[derive(Debug, Default)]
struct State {
    quota: Option<(Quota, Instant)>,
    /// Recipients sent by this invocation since the quota was read.
    sent: f64,
    /// When the next send may go.
    next: Option<Instant>,
    /// The quota could not be read: sends go unpaced (SES still refuses
    /// what is over, which waits), and the failure is logged once.
    unread_logged: bool,
}

/// Paces one coordinator's sends (see the module documentation).
#[derive(Debug)]
pub struct Pacer {
    senders: u32,
    state: Mutex<State>,
}

impl Pacer {
    pub fn new(senders: u32) -> Self {
        Pacer {
            senders: senders.max(1),
            state: Mutex::new(State::default()),
        }
    }

    /// Forgets the quota read: the next send reads it again (a sweep
    /// starts so, an hour or a day after the last read).
    pub async fn forget(&self) {
        self.state.lock().await.quota = None;
    }

    /// Waits for this send's turn at the rate; fails with
    /// [`CoordinatorError::MailDeferred`] when the day's quota has no room
    /// for `recipients` and `reserve` more.
    pub async fn admit(
        &self,
        ses: &aws_sdk_sesv2::Client,
        to: &str,
        recipients: usize,
        reserve: usize,
    ) -> Result<(), CoordinatorError> {
        let wait_until = {
            let mut st = self.state.lock().await;
            let fresh = st
                .quota
                .is_some_and(|(_, at)| at.elapsed() < QUOTA_READ_EVERY);
            if !fresh {
                match read_quota(ses).await {
                    Ok(q) => {
                        st.quota = Some((q, Instant::now()));
                        st.sent = 0.0;
                    }
                    Err(e) => {
                        if !st.unread_logged {
                            tracing::warn!(error = %e, "SES quota not read; sending unpaced (SES refuses what is over, which waits for the sweep)");
                            st.unread_logged = true;
                        }
                    }
                }
            }
            let Some((quota, _)) = st.quota else {
                return Ok(());
            };
            if let Some(room) = quota.room(st.sent) {
                if room < (recipients + reserve) as f64 {
                    return Err(CoordinatorError::MailDeferred {
                        to: to.to_string(),
                        reason: daily_quota_reached(&quota, st.sent),
                    });
                }
            }
            st.sent += recipients as f64;
            let now = Instant::now();
            let slot = st.next.map_or(now, |n| n.max(now));
            if let Some(rate) = quota.max_send_rate {
                st.next = Some(slot + spacing(rate, self.senders, recipients));
            }
            slot
        };
        tokio::time::sleep_until(wait_until.into()).await;
        Ok(())
    }
}

async fn read_quota(ses: &aws_sdk_sesv2::Client) -> Result<Quota, String> {
    let out = ses.get_account().send().await.map_err(|e| {
        use aws_sdk_sesv2::error::ProvideErrorMetadata;
        match e.code() {
            Some(c) => format!("{c}: {}", e.message().unwrap_or("")),
            None => aws_sdk_sesv2::error::DisplayErrorContext(&e).to_string(),
        }
    })?;
    let q = out.send_quota();
    let positive = |v: f64| (v > 0.0).then_some(v);
    Ok(Quota {
        max_send_rate: q.map(|q| q.max_send_rate()).and_then(positive),
        max_24_hour_send: q
            .map(|q| q.max24_hour_send())
            .and_then(|v| (v >= 0.0).then_some(v)),
        sent_last_24_hours: q.map_or(0.0, |q| q.sent_last24_hours()),
    })
}

/// Whether SES refused a send for its rate or its day: the email waits.
pub fn is_quota_refusal(code: Option<&str>, message: Option<&str>) -> bool {
    match code {
        Some("TooManyRequestsException" | "LimitExceededException") => true,
        Some("Throttling") => message.is_some_and(|m| {
            m.contains("Daily message quota exceeded")
                || m.contains("Maximum sending rate exceeded")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(max_day: Option<f64>, sent: f64) -> Quota {
        Quota {
            max_send_rate: Some(14.0),
            max_24_hour_send: max_day,
            sent_last_24_hours: sent,
        }
    }

    #[test]
    fn the_days_room_counts_what_was_sent_since_the_read() {
        assert_eq!(quota(Some(200.0), 150.0).room(30.0), Some(20.0));
        assert_eq!(quota(Some(200.0), 190.0).room(30.0), Some(0.0));
        assert_eq!(quota(None, 1e9).room(1e9), None);
    }

    #[test]
    fn invocations_share_the_rate() {
        assert_eq!(spacing(14.0, 7, 1), Duration::from_millis(500));
        assert_eq!(spacing(1.0, 1, 2), Duration::from_secs(2));
        assert_eq!(spacing(0.0, 3, 1), Duration::ZERO);
    }

    #[test]
    fn quota_refusals_are_told_from_other_refusals() {
        assert!(is_quota_refusal(Some("TooManyRequestsException"), None));
        assert!(is_quota_refusal(
            Some("LimitExceededException"),
            Some("Daily message quota exceeded.")
        ));
        assert!(is_quota_refusal(
            Some("Throttling"),
            Some("Maximum sending rate exceeded.")
        ));
        assert!(!is_quota_refusal(Some("Throttling"), Some("Rate exceeded")));
        assert!(!is_quota_refusal(
            Some("MessageRejected"),
            Some("Email address is not verified.")
        ));
        assert!(!is_quota_refusal(None, None));
    }
}
