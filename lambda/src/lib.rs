//! The Lambda plumbing the agent, the coordinator and the API share, so that
//! each function's handler only parses its event and calls its one
//! per-message function:
//!
//! - [`sqs`]: one generic runner for an SQS batch: the per-message
//!   function runs for every record, concurrently up to a bound, and the
//!   records it failed are answered as `batchItemFailures` (the event source
//!   mapping must enable `ReportBatchItemFailures`, as both templates do), so
//!   one bad message never makes SQS redeliver the others;
//! - [`logs`]: the JSON log set-up and its filter, the same for the three
//!   functions.

pub mod logs;
pub mod sqs;
