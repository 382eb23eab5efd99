//! keyfleet agent: runs in every member account, scans its IAM users,
//! applies the rotation rules and reports back to the coordinator.
//!
//! - [`rules`]: the pure decision function (no I/O), tested exhaustively.
//! - [`scan`]: reads users and keys in O(pages) IAM calls.
//! - [`run`]: one job end to end: scan, users, result sending.
//! - [`executor`]: one user's plan applied in a crash-safe order, with
//!   reconciliation of half-done rotations and dry runs.
//! - [`record`]: the protected per-user record, Secrets Manager
//!   `keyfleet/<user>`.
//! - [`fault`]: test-only fault points (`fault-injection` feature).
//! - [`clients`]: SDK clients with call counting and tuned retries.
//! - [`lambda`]: the SQS batch handler.

pub mod clients;
pub mod config;
pub mod executor;
pub mod fault;
pub mod lambda;
pub mod record;
pub mod rules;
pub mod run;
pub mod scan;

pub use clients::{AgentClients, CallCounter};
#[cfg(feature = "fault-injection")]
pub use fault::FaultHook;
pub use fault::FaultPoint;
pub use run::{Agent, AgentConfig, AgentError};
