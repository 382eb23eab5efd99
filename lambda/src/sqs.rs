//! The SQS batch runner: one per-message function per record, at most
//! `concurrency` at a time, failures answered per message.
//!
//! A record whose function fails is named in `batchItemFailures` and SQS
//! redelivers only it (after its visibility timeout; its receive count goes
//! up, and the queue's redrive policy moves it to the dead-letter queue in
//! the end). A record whose function succeeds is deleted, whatever happened
//! to its neighbours. A record without a message id cannot be named: it is
//! reported with an empty identifier, which Lambda treats as a failure of
//! the whole batch, the safe side (nothing is deleted that was not done).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::stream::{self, StreamExt};
use std::future::Future;

/// How many times SQS has handed this record out (its
/// `ApproximateReceiveCount` attribute; 1 when absent or unreadable).
pub fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Runs `handle` for each record of `event`, up to `concurrency` at once,
/// and answers with the records it failed. `handle` logs its own failures
/// (it knows what they mean); the runner adds nothing but the message id.
pub async fn run_batch<F, Fut, E>(
    event: SqsEvent,
    concurrency: usize,
    handle: F,
) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let failures: Vec<BatchItemFailure> = stream::iter(event.records)
        .map(|record| {
            let id = record.message_id.clone().unwrap_or_default();
            let done = handle(record);
            async move { done.await.err().map(|_| id) }
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|failed| async move {
            failed.map(|id| {
                let mut f = BatchItemFailure::default();
                f.item_identifier = id;
                f
            })
        })
        .collect()
        .await;
    let mut resp = SqsBatchResponse::default();
    resp.batch_item_failures = failures;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn event(bodies: &[&str]) -> SqsEvent {
        let mut e = SqsEvent::default();
        e.records = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut m = SqsMessage::default();
                m.message_id = Some(format!("m{i}"));
                m.body = Some(b.to_string());
                m
            })
            .collect();
        e
    }

    #[tokio::test]
    async fn only_the_failed_records_are_answered_and_every_record_is_handled() {
        let seen = AtomicUsize::new(0);
        let resp = run_batch(event(&["ok", "bad", "ok", "bad"]), 2, |m| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                if m.body.as_deref() == Some("bad") {
                    Err("no")
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(seen.load(Ordering::SeqCst), 4);
        let mut failed: Vec<_> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        failed.sort();
        assert_eq!(failed, ["m1", "m3"]);
    }

    #[tokio::test]
    async fn records_run_concurrently_up_to_the_bound() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let bodies = ["a"; 8];
        run_batch(event(&bodies), 3, |_| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let running = &running;
            async move {
                // Let the others start before this one ends.
                tokio::task::yield_now().await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), ()>(())
            }
        })
        .await;
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert!(peak.load(Ordering::SeqCst) >= 2);
    }

    #[test]
    fn the_receive_count_is_read_from_the_attribute_and_defaults_to_one() {
        let mut m = SqsMessage::default();
        assert_eq!(receive_count(&m), 1);
        m.attributes
            .insert("ApproximateReceiveCount".into(), "3".into());
        assert_eq!(receive_count(&m), 3);
        m.attributes
            .insert("ApproximateReceiveCount".into(), "x".into());
        assert_eq!(receive_count(&m), 1);
    }
}
