//! keyfleet agent: runs in every member account, scans its IAM users,
//! applies the rotation rules and reports back to the coordinator.
//!
//! - [`rules`]: the pure decision function (no I/O), tested exhaustively.
//! - [`scan`]: reads users and keys in O(pages) IAM calls.
//! - [`run`]: the executor: crash-safe order of writes, reconciliation,
//!   dry runs, result sending.
//! - [`store`]: Secrets Manager `keyfleet/<user>`.
//! - [`clients`]: SDK clients with call counting and tuned retries.
//! - [`lambda`]: the SQS batch handler.

pub mod clients;
pub mod config;
pub mod lambda;
pub mod rules;
pub mod run;
pub mod scan;
pub mod store;

pub use clients::{AgentClients, CallCounter};
pub use run::{Agent, AgentConfig, AgentError, FaultHook, FaultPoint};
