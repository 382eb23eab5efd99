//! `keyfleet lambda agent|coordinator` (hidden, emulator builds only): the
//! `keyfleet` binary doubles as the Lambda bootstrap of both functions on
//! the embedded emulator, so `cargo run -p keyfleet -- demo` needs no
//! second build. The zip `keyfleet bootstrap` uploads holds a one-line
//! `bootstrap` that execs this command; the emulator runs it as Lambda
//! runs a `provided.al2023` function. It runs exactly the code of the
//! production bootstraps (`agent`, `coordinator`), which AWS gets as their
//! own small binaries (`scripts/package-lambdas.sh`).

use clap::ValueEnum;

/// Which function this process is.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Function {
    Agent,
    Coordinator,
}

pub async fn run(function: Function) -> Result<(), lambda_runtime::Error> {
    match function {
        Function::Agent => keyfleet_agent::lambda::run_function().await,
        Function::Coordinator => keyfleet_coordinator::lambda::run_function().await,
    }
}
