//! The one client that invokes the deployed coordinator with a
//! [`Command`]: the command line (`keyfleet run`, `plan`, `rotate`, …) and
//! the API (`keyfleet serve` and its Lambda) both use it.
//!
//! Starting a run is not idempotent, so [`LambdaCoordinator`] makes one
//! attempt per command (SDK retries disabled): a retry after a lost
//! response would start a second run. Its errors split what a caller acts
//! on differently: the function does not exist ([`InvokeError::NotFound`]),
//! the command was sent and no answer came back, so a run may have started
//! ([`InvokeError::NoAnswer`]: look at the runs before asking again), the
//! request failed before the function ran ([`InvokeError::Failed`]), or
//! the coordinator ran and refused ([`InvokeError::Function`]).
//!
//! Compiled with the `invoke` feature only, which brings the Lambda SDK:
//! the agent's and the coordinator's builds stay without it.

use crate::command::Command;
use aws_sdk_lambda::primitives::Blob;
use serde_json::Value;

/// Why the coordinator did not start the run.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the coordinator function `{0}` does not exist")]
    NotFound(String),
    /// Sent, but no (readable) answer came back: it may have started a run.
    #[error("no answer from the coordinator `{function}`: {error}")]
    NoAnswer { function: String, error: String },
    #[error("invoking the coordinator `{function}`: {error}")]
    Failed { function: String, error: String },
    /// The coordinator ran and failed: `kind` is its `errorType`
    /// (`keyfleet.NoAccountSelected`, `keyfleet.BadRequest`, ...).
    #[error("the coordinator answered {kind}: {message}")]
    Function { kind: String, message: String },
    #[error("the coordinator's answer names no run: {0}")]
    Answer(String),
}

/// The coordinator Lambda, one attempt per command.
#[derive(Debug, Clone)]
pub struct LambdaCoordinator {
    client: aws_sdk_lambda::Client,
    function: String,
}

impl LambdaCoordinator {
    pub fn new(sdk: &aws_config::SdkConfig, function: impl Into<String>) -> LambdaCoordinator {
        let conf = aws_sdk_lambda::config::Builder::from(sdk)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        LambdaCoordinator {
            client: aws_sdk_lambda::Client::from_conf(conf),
            function: function.into(),
        }
    }

    /// Sends `cmd` once and returns the coordinator's JSON answer.
    pub async fn invoke(&self, cmd: &Command) -> Result<Value, InvokeError> {
        use aws_sdk_lambda::error::SdkError;
        let payload = serde_json::to_vec(cmd).expect("commands serialize");
        let out = self
            .client
            .invoke()
            .function_name(&self.function)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception())
                {
                    return InvokeError::NotFound(self.function.clone());
                }
                let unknown = matches!(
                    e,
                    SdkError::TimeoutError(_)
                        | SdkError::DispatchFailure(_)
                        | SdkError::ResponseError(_)
                );
                let error = crate::aws_error::describe(&e);
                if unknown {
                    InvokeError::NoAnswer {
                        function: self.function.clone(),
                        error,
                    }
                } else {
                    InvokeError::Failed {
                        function: self.function.clone(),
                        error,
                    }
                }
            })?;
        let body = out.payload().map(|b| b.as_ref()).unwrap_or_default();
        if out.function_error().is_some() {
            #[derive(serde::Deserialize)]
            struct FunctionError {
                #[serde(rename = "errorMessage", default)]
                message: String,
                #[serde(rename = "errorType", default)]
                kind: String,
            }
            let err: FunctionError = serde_json::from_slice(body).unwrap_or(FunctionError {
                message: String::from_utf8_lossy(body).into_owned(),
                kind: String::new(),
            });
            return Err(InvokeError::Function {
                kind: err.kind,
                message: err.message,
            });
        }
        serde_json::from_slice(body)
            .map_err(|_| InvokeError::Answer(String::from_utf8_lossy(body).into_owned()))
    }
}

/// The run id of a coordinator answer (`{"run_id": ..}`), or the answer as
/// an error when it names none.
pub fn run_id_of(answer: &Value) -> Result<String, InvokeError> {
    crate::command::run_id_of(answer)
        .map(str::to_string)
        .ok_or_else(|| InvokeError::Answer(answer.to_string()))
}
