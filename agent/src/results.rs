//! Where an agent's results go: the coordinator's results queue (the
//! deployed system), or straight into an in-process coordinator
//! (`keyfleet run --local`, which never touches the deployed queues).
//!
//! Either way a part counts as delivered only when the other side has it:
//! SQS accepted the message, or the in-process coordinator took it in (its
//! intake stored the part). The agent clears a rotation's intent only
//! after that, so a result lost on the way is sent again by the next run.

use crate::run::{Agent, AgentError};
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

impl Agent {
    /// Where results go on SQS: the configured queue, else the job's.
    pub fn results_queue<'a>(&'a self, job_queue: &'a str) -> &'a str {
        self.config
            .results_queue_url
            .as_deref()
            .unwrap_or(job_queue)
    }

    /// Delivers one encoded result part (see the module doc).
    pub(crate) async fn deliver(&self, job_queue: &str, body: String) -> Result<(), AgentError> {
        match &self.sink {
            ResultSink::Local(sink) => sink(body).await.map_err(|message| AgentError::Send {
                queue: "the in-process coordinator".into(),
                message,
            }),
            ResultSink::Queue => {
                let queue = self.results_queue(job_queue);
                self.clients
                    .sqs
                    .send_message()
                    .queue_url(queue)
                    .message_body(body)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        use aws_sdk_sqs::error::ProvideErrorMetadata;
                        AgentError::Send {
                            queue: queue.to_string(),
                            message: format!(
                                "{}: {}",
                                e.code().unwrap_or("error"),
                                e.message().unwrap_or(
                                    &aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()
                                )
                            ),
                        }
                    })
            }
        }
    }
}
