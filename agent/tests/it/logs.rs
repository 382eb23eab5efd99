//! No secret reaches the logs of a full agent run.

use crate::fixture::*;
use keyfleet_protocol::{Delivery, Policy};
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_in_captured_logs() {
    let mut acct = new_account().await;
    acct.populate(&[
        user("logs-rotate", vec![key(85, true, Some(1))]),
        user(
            "logs-both",
            vec![key(95, false, None), key(85, true, Some(1))],
        ),
        user(
            "logs-deactivate",
            vec![key(105, true, Some(20)), key(5, true, Some(1))],
        ),
    ])
    .await;
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let job = acct.job(Policy {
        delivery: Delivery::Both,
        ..Policy::default()
    });
    let result = deliver(&acct.agent, &job).await.unwrap();
    drop(_guard);
    assert_eq!(result.sealed.len(), 2);
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("job done"), "logs were captured");
    for s in &result.sealed {
        let secret = acct.open(s);
        assert!(!logs.contains(&secret), "secret access key in logs");
        // The Secrets Manager copy holds the same secret (Both delivery).
        let stored = acct
            .sm
            .get_secret_value()
            .secret_id(format!("keyfleet/{}", s.user_name))
            .send()
            .await
            .unwrap();
        assert!(stored.secret_string().unwrap().contains(&secret));
    }
    assert!(!logs.contains(&job.token.0), "job token in logs");
}
