//! Agent integration tests against the emulator harness (moto + the
//! extensions in `tests/emulator/`), through the real AWS SDK.
//!
//! One test binary, modules inside: each links the whole SDK.

mod bad_input;
mod budget;
mod crash;
mod credential_state;
mod degrade;
mod emergency;
mod fixture;
mod fleet;
mod lambda;
mod logs;
mod overlap;
mod reactivate;
mod report_in_progress;
mod retry;
mod safety;
mod table;

pub use fixture::*;
