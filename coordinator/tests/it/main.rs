//! Coordinator integration tests against the emulator harness (moto + the
//! extensions in `tests/emulator/`), through the real AWS SDK: a real
//! organization, real agents in member accounts, jobs and results over SQS,
//! the run store in S3, emails through SES and alerts through SNS.
//!
//! One test binary, modules inside: each links the whole SDK. Every test
//! builds its own bucket, queues, topic, sender, OUs and member accounts, and
//! names its accounts explicitly in each run, so tests share the emulator's
//! one organization without seeing each other.

mod conflict;
mod digests;
mod emails;
mod finalize;
mod fleet;
mod html_report;
mod intake;
mod key_rotation;
mod latest;
mod mail_retry;
mod manual;
mod no_success;
mod org_run;
mod reactivation;
mod ses_quota;
mod upload;
