//! keyfleet coordinator: runs in the provisioning account, fans jobs out to
//! the agents, takes their results in, emails key owners and builds the
//! consolidated report.
//!
//! - [`service`]: the operations (start, intake, notify, finalize, sweep);
//! - [`org`]: organization enumeration and account selection (pure part
//!   tested directly);
//! - [`outcome`]: when a run fails as a whole (no silent success);
//! - [`store`]: the S3 run store with conditional writes;
//! - [`reports`]: its read side (reports, `latest`, a run's progress),
//!   which needs no private key;
//! - [`zipbox`], [`mail`], [`render`]: pure builders of the encrypted zip,
//!   the MIME emails and the report formats;
//! - [`lambda`]: the event dispatcher of the Lambda binary.

pub mod config;
pub mod lambda;
pub mod mail;
pub mod org;
pub mod outcome;
pub mod render;
pub mod reports;
pub mod service;
pub mod store;
pub mod zipbox;

pub use service::{
    Coordinator, CoordinatorClients, CoordinatorConfig, CoordinatorError, Intake, JobSink,
    KeySource, LocalJob, MailRetry, PendingMail, Rejection, RunRequest, PENDING_MAIL_PREFIX,
};

#[cfg(test)]
mod fixtures;
