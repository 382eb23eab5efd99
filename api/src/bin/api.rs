//! The API's Lambda bootstrap: see `keyfleet_api::lambda`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    keyfleet_api::lambda::run().await
}
