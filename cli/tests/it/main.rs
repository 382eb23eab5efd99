//! End-to-end tests of the `keyfleet` binary against the emulator.
//!
//! One test binary (it links the whole SDK); the timeline test drives the
//! real CLI as a subprocess, the way an operator would.

mod api;
mod common;
mod credential_process;
mod dashboard;
mod delivery;
mod doctor;
mod errors;
mod failures;
mod hygiene;
mod keys;
mod mails;
mod modes;
mod permissions;
mod resource_policies;
mod results;
mod ses;
mod timeline;
mod timeout;
mod upgrade;
mod where_used;
