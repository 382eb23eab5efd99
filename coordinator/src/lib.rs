//! keyfleet coordinator: runs in the provisioning account, fans jobs out to
//! the agents, takes their results in, emails key owners and builds the
//! consolidated report.
//!
//! - [`service`]: the operations (start, intake, notify, finalize, sweep);
//! - [`org`]: organization enumeration and account selection (pure part
//!   tested directly);
//! - [`zipbox`], [`mail`]: pure builders of the encrypted zip and the MIME
//!   emails;
//! - [`lambda`]: the event dispatcher of the Lambda binary.
//!
//! The report it builds is stored, read and presented through
//! `keyfleet-reports` (the run store, its read side, the outcome of a run,
//! the report's shapes); the commands it takes are the protocol's
//! (`keyfleet_protocol::command`).

pub mod config;
pub mod lambda;
pub mod mail;
pub mod org;
pub mod service;
pub mod zipbox;

pub use service::{
    Coordinator, CoordinatorClients, CoordinatorConfig, CoordinatorError, Intake, JobSink,
    KeySource, LocalJob, MailRetry, PendingMail, Rejection, RunRequest, PENDING_MAIL_PREFIX,
};
