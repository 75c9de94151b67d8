//! Logging: JSON lines under Lambda (CloudWatch, log subscriptions), readable text locally.

use tracing_subscriber::EnvFilter;

/// Libraries that dump whole HTTP requests and responses at debug/trace (DynamoDB items, Stripe
/// bodies, Authorization headers). They are held at `info` whatever `RUST_LOG` says, so no level
/// setting can put a token, key or credential into the logs.
const WIRE_DUMPING_TARGETS: [&str; 8] = [
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "aws_sigv4",
    "aws_runtime",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
];

/// The filter every subscriber uses: `RUST_LOG` (or `default`), with the wire dumps capped.
pub fn filter(default: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    for target in WIRE_DUMPING_TARGETS {
        if let Ok(directive) = format!("{target}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the global subscriber once; later calls are no-ops. Level from `RUST_LOG` (default info).
pub fn init() {
    let under_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter("info"))
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
