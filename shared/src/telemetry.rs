//! Logging: JSON lines under Lambda (CloudWatch, log subscriptions), readable text locally.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops. Level from `RUST_LOG` (default info).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let under_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if under_lambda || std::env::var_os("TOLLGATE_LOG_JSON").is_some() {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .without_time()
            .try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
    // Already installed (tests, or a second call): keep the first.
    drop(result);
}
