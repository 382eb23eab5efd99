//! Actions go through the normal path: the API invokes the coordinator
//! Lambda with the same [`Command`] an operator or `keyfleet rotate` sends,
//! through the protocol's one client ([`LambdaCoordinator`]: one attempt
//! per request, since starting a run is not idempotent), and answers with
//! the run id the coordinator returns. A caller who got a 502 saying the
//! coordinator gave no answer looks in `/v1/runs` before asking again.

use futures::future::BoxFuture;
use keyfleet_protocol::command::Command;
pub use keyfleet_protocol::invoke::{run_id_of, InvokeError, LambdaCoordinator};
use serde_json::Value;

/// Something that runs coordinator commands: the deployed Lambda in
/// production and under `keyfleet serve`; tests may put a fake in.
pub trait Coordinator: Send + Sync + 'static {
    /// Runs `cmd` and returns the coordinator's JSON answer.
    fn invoke<'a>(&'a self, cmd: &'a Command) -> BoxFuture<'a, Result<Value, InvokeError>>;
}

impl Coordinator for LambdaCoordinator {
    fn invoke<'a>(&'a self, cmd: &'a Command) -> BoxFuture<'a, Result<Value, InvokeError>> {
        Box::pin(LambdaCoordinator::invoke(self, cmd))
    }
}
