//! keyfleet agent: runs in every member account, scans its IAM users,
//! applies the rotation rules and reports back to the coordinator.
//!
//! - [`rules`]: the pure decision function (no I/O), tested exhaustively.
//! - [`scan`]: reads users and keys in O(pages) IAM calls.
//! - [`run`]: one job end to end: scan, users, result sending; the one
//!   home of `impl Agent`.
//! - [`executor`]: one user's plan applied in a crash-safe order, with
//!   reconciliation of half-done rotations and dry runs; its own type,
//!   which the agent calls and which never calls back.
//! - [`table`]: the account's table `keyfleet-records`, trusted only with
//!   keyfleet's resource policy; [`record`]: the protected per-user record,
//!   one item of it; [`delivery`]: the user's delivery secret with Secrets
//!   Manager delivery.
//! - [`fault`]: test-only fault points (`fault-injection` feature).
//! - [`clients`]: SDK clients with call counting and tuned retries.
//! - [`message`]: the one per-message function (job body in, outcome out)
//!   that the Lambda, `keyfleet run --local` and the tests call;
//! - [`results`]: where results go (the results queue, or an in-process
//!   coordinator);
//! - [`lambda`]: the SQS batch handler (over `keyfleet_lambda`'s batch
//!   runner) and the Lambda process.
//! - [`lease`]: one run at a time per account.
//! - [`budget`]: when to stop starting users before the Lambda's timeout.

pub mod budget;
pub mod clients;
pub mod config;
pub mod delivery;
pub mod executor;
pub mod fault;
pub mod handover;
pub mod lambda;
pub mod lease;
pub mod message;
pub mod record;
pub mod results;
pub mod rules;
pub mod run;
pub mod scan;
pub mod table;
pub mod trail;
pub mod where_used;

pub use budget::Budget;
pub use clients::{AgentClients, CallCounter};
#[cfg(feature = "fault-injection")]
pub use fault::FaultHook;
pub use fault::FaultPoint;
pub use message::{handle_message, JobOutcome, Rejected};
pub use results::{LocalSink, ResultSink};
pub use run::{Agent, AgentConfig, AgentError};
pub use scan::ReportPolling;
