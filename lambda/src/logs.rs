//! One log set-up for the three Lambda functions: JSON lines (CloudWatch
//! Logs Insights reads their fields), no timestamp (Lambda stamps each
//! line), no span context.

/// `RUST_LOG` (default `info`), except that the runtime's own event
/// logging never goes below `info`: at `trace`, `lambda_runtime` logs each
/// raw event, and an SQS event carries a job or result message with its job
/// token, an API event a bearer token.
pub fn log_filter() -> tracing_subscriber::EnvFilter {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    match "lambda_runtime::layers::api_response=info".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    }
}

/// Installs the JSON subscriber with [`log_filter`]; called once, first
/// thing in a function's process.
pub fn init_json_logs() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(log_filter())
        .with_current_span(false)
        .without_time()
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtimes_event_logging_stays_at_info_whatever_rust_log_says() {
        // The directive is added last, so it wins over a `trace` default.
        let shown = log_filter().to_string();
        assert!(
            shown.contains("lambda_runtime::layers::api_response=info"),
            "{shown}"
        );
    }
}
