//! Lambda bootstrap for the coordinator; see
//! [`keyfleet_coordinator::lambda::run_function`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    keyfleet_coordinator::lambda::run_function().await
}
