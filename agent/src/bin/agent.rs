//! Lambda bootstrap for the agent; see [`keyfleet_agent::lambda::run_function`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    keyfleet_agent::lambda::run_function().await
}
