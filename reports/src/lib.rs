//! keyfleet's consolidated report, in one place: how it is stored, read
//! and presented. The coordinator writes through it, and the API, the
//! command line and the summary email read through it; none of them knows
//! an S3 key or draws a table of its own.
//!
//! - [`store`]: the run store in S3: every key layout and the conditional
//!   writes that make a run's records write-once;
//! - [`read`]: its read side: runs, a run's progress, finalized reports,
//!   `latest`, and the summaries the API lists, with the cache that keeps
//!   an API call from reading every report; needs no private key;
//! - [`outcome`]: when a run failed as a whole, and how it served its
//!   accounts (the exit code of `keyfleet run`, the coordinator's answer);
//! - [`render`]: the report's shapes (JSON, CSV, terminal table, HTML, the
//!   summary email's bodies) and the widgets they share with the dashboard.
//!
//! It depends on the protocol (what a report is) and the S3 SDK only.

pub mod outcome;
pub mod read;
pub mod render;
pub mod store;
pub mod upload;

#[cfg(any(test, feature = "fixtures"))]
#[doc(hidden)]
pub mod fixtures;
