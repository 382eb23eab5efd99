//! Delivery-confirmed deactivation, the coordinator's half: which new keys
//! have not reached their owners yet.
//!
//! The agent never deactivates or deletes an old key whose replacement has
//! not been delivered (`keyfleet_agent::rules`). It learns which from the
//! job ([`keyfleet_protocol::Job::undelivered`], key ids only), which the
//! coordinator fills from one marker a key under
//! [`store::undelivered_prefix`]:
//!
//! - written for every new key a result names, before any mail is tried,
//!   also when the owner's address is refused or the box cannot be opened
//!   (such a key never reaches anyone, and its old key must not be switched
//!   off because of it);
//! - removed once the zip and its password were both sent.
//!
//! At dispatch one listing per account (no object read) gives the job its
//! list, and a key still undelivered `undelivered_alert_after` (7 days by
//! default) after it was received is alerted by name, on every run until it
//! is delivered. The agent itself notes when a key it saw undelivered is
//! delivered, and counts the old key's notice period from then. With
//! Secrets Manager delivery the key is in its secret when the result is
//! sent, and nothing is tracked.
//!
//! Cost: one S3 LIST per account and run, one PUT and one DELETE per new
//! key: at 500 accounts x 100 users with daily runs about 15,000 LISTs a
//! month ($0.08) and a few thousand writes (under $0.05).

use super::{Coordinator, CoordinatorError};
use keyfleet_protocol::Policy;
use keyfleet_reports::store;
use time::OffsetDateTime;

impl Coordinator {
    /// Marks a new key of `user` as not delivered yet (a create-if-absent
    /// put: the marker keeps the time it was first written).
    pub(super) async fn mark_undelivered(
        &self,
        account: &str,
        user: &str,
        key_id: &str,
    ) -> Result<(), CoordinatorError> {
        let key = store::undelivered_key(account, user, key_id);
        self.store.put_new(&key, Vec::new(), "text/plain").await?;
        Ok(())
    }

    /// The key reached its owner (zip and password sent).
    pub(super) async fn mark_delivered(
        &self,
        account: &str,
        user: &str,
        key_id: &str,
    ) -> Result<(), CoordinatorError> {
        self.store
            .delete(&store::undelivered_key(account, user, key_id))
            .await?;
        Ok(())
    }

    /// The job's undelivered keys for `account`; alerts those waiting for
    /// longer than the policy allows.
    pub(super) async fn undelivered_of(
        &self,
        account: &str,
        policy: &Policy,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, CoordinatorError> {
        let listed = self
            .store
            .list_dated(&store::undelivered_prefix(account))
            .await?;
        let (keys, overdue) = undelivered(account, &listed, policy, now);
        if !overdue.is_empty() {
            self.alert(
                &format!("keyfleet: new keys not delivered in {account}"),
                &format!(
                    "These new keys of account {account} have not reached their owners for more than {}; \
                     their old keys stay active until they do: {}",
                    policy.undelivered_alert_after,
                    overdue.join(", ")
                ),
            )
            .await;
        }
        Ok(keys)
    }
}

/// From the markers listed under the account's prefix (key, written at):
/// the undelivered key ids, and those waiting longer than the policy's
/// `undelivered_alert_after`, as the alert names them.
fn undelivered(
    account: &str,
    listed: &[(String, OffsetDateTime)],
    policy: &Policy,
    now: OffsetDateTime,
) -> (Vec<String>, Vec<String>) {
    let mut keys = Vec::new();
    let mut overdue = Vec::new();
    for (key, since) in listed {
        let Some((user, key_id)) = store::parse_undelivered_key(account, key) else {
            continue;
        };
        if now - *since > policy.undelivered_alert_after.to_time() {
            overdue.push(format!(
                "{key_id} of {user} (waiting since {})",
                since.date()
            ));
        }
        keys.push(key_id.to_string());
    }
    (keys, overdue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_key_undelivered_past_the_interval_is_named_and_every_one_is_listed() {
        let now = datetime!(2030-06-10 12:00 UTC);
        let at = |days: i64| now - time::Duration::days(days);
        let account = "111122223333";
        let listed = vec![
            (
                store::undelivered_key(account, "alice", "AKIAAAAAAAAAAAAAAAAA"),
                at(8),
            ),
            (
                store::undelivered_key(account, "bob", "AKIABBBBBBBBBBBBBBBB"),
                at(6),
            ),
            // Not a marker of this layout: ignored.
            (format!("undelivered/{account}/stray"), at(30)),
        ];
        let (keys, overdue) = undelivered(account, &listed, &Policy::default(), now);
        assert_eq!(keys, vec!["AKIAAAAAAAAAAAAAAAAA", "AKIABBBBBBBBBBBBBBBB"]);
        assert_eq!(
            overdue,
            vec!["AKIAAAAAAAAAAAAAAAAA of alice (waiting since 2030-06-02)"]
        );
        let lax = Policy {
            undelivered_alert_after: keyfleet_protocol::Duration::from_days(9),
            ..Policy::default()
        };
        assert!(undelivered(account, &listed, &lax, now).1.is_empty());
    }
}
