//! Lambda bootstrap for the agent: builds the clients once, then hands each
//! SQS batch to the library.

use aws_lambda_events::event::sqs::SqsEvent;
use keyfleet_agent::{lambda, Agent, AgentClients};

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_current_span(false)
        .without_time()
        .init();
    let config = keyfleet_agent::config::from_env()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    // The account is the one the function runs in, read from its own ARN
    // (`arn:aws:lambda:<region>:<account>:function:<name>`): a job for any
    // other account is refused.
    let clients = AgentClients::new(&sdk);
    let agent_for = |account: &str| Agent::new(clients.clone(), config.clone(), account);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let account = event
            .context
            .invoked_function_arn
            .split(':')
            .nth(4)
            .unwrap_or_default()
            .to_string();
        let agent = agent_for(&account);
        async move { Ok::<_, lambda_runtime::Error>(lambda::handle_batch(&agent, event.payload).await) }
    }))
    .await
}
