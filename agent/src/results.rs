//! Where an agent's results go: the coordinator's results queue (the
//! deployed system), or straight into an in-process coordinator
//! (`keyfleet run --local`, which never touches the deployed queues).
//!
//! Either way a part counts as delivered only when the other side has it:
//! SQS accepted the message, or the in-process coordinator took it in (its
//! intake stored the part). The agent clears a rotation's intent only
//! after that, so a result lost on the way is sent again by the next run.
//!
//! The transport owns the sending (`ResultSink::deliver`); which queue a
//! result goes to is the agent's configuration, decided by the agent
//! (`Agent::results_queue`), so this module knows nothing of the agent.

use futures::future::BoxFuture;
use std::sync::Arc;

/// Hands one encoded result part to an in-process coordinator; `Ok` once
/// it is taken in, `Err` with the reason otherwise.
pub type LocalSink = Arc<dyn Fn(String) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The transport of an agent's results.
#[derive(Clone, Default)]
pub enum ResultSink {
    /// SQS: the results queue of the agent's own configuration (set by
    /// the StackSet), else the one the job names.
    #[default]
    Queue,
    /// In-process: each part is handed to this function.
    Local(LocalSink),
}

/// A result part the other side did not take.
#[derive(Debug, thiserror::Error)]
#[error("sending the result to {queue} failed: {message}")]
pub struct SendError {
    pub queue: String,
    pub message: String,
}

impl ResultSink {
    /// Delivers one encoded result part (see the module doc): to `queue`
    /// with `sqs`, or to the in-process coordinator (which needs neither).
    pub(crate) async fn deliver(
        &self,
        sqs: &aws_sdk_sqs::Client,
        queue: &str,
        body: String,
    ) -> Result<(), SendError> {
        match self {
            ResultSink::Local(sink) => sink(body).await.map_err(|message| SendError {
                queue: "the in-process coordinator".into(),
                message,
            }),
            ResultSink::Queue => sqs
                .send_message()
                .queue_url(queue)
                .message_body(body)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    use aws_sdk_sqs::error::ProvideErrorMetadata;
                    SendError {
                        queue: queue.to_string(),
                        message: format!(
                            "{}: {}",
                            e.code().unwrap_or("error"),
                            e.message().unwrap_or(
                                &aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()
                            )
                        ),
                    }
                }),
        }
    }
}
