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

/// The filter every subscriber uses: `level` (a `RUST_LOG`-style directive list), with the wire
/// dumps capped.
pub fn filter_for(level: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    for target in WIRE_DUMPING_TARGETS {
        if let Ok(directive) = format!("{target}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// The filter from the environment: `RUST_LOG` (or `default`), with the wire dumps capped.
pub fn filter(default: &str) -> EnvFilter {
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| default.to_owned());
    filter_for(&level)
}

/// How log lines are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// A `RUST_LOG`-style directive list, e.g. `info` or `warn,tollgate=debug`.
    pub level: String,
    /// JSON lines (CloudWatch, log subscriptions) rather than text.
    pub json: bool,
}

impl LogSettings {
    /// The settings from the environment as Lambda sets it. The function's `LoggingConfig`
    /// (`AWS_LAMBDA_LOG_LEVEL`, `AWS_LAMBDA_LOG_FORMAT`) wins over `RUST_LOG` and the defaults:
    /// info, JSON under Lambda (or with `TOLLGATE_LOG_JSON`), text elsewhere.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> LogSettings {
        let level = var("AWS_LAMBDA_LOG_LEVEL")
            .and_then(|level| lambda_log_level(&level))
            .map(str::to_owned)
            .or_else(|| var("RUST_LOG").filter(|directives| !directives.trim().is_empty()))
            .unwrap_or_else(|| "info".to_owned());
        let json = match var("AWS_LAMBDA_LOG_FORMAT").as_deref().map(str::trim) {
            Some(format) if format.eq_ignore_ascii_case("json") => true,
            Some(format) if format.eq_ignore_ascii_case("text") => false,
            _ => var("AWS_LAMBDA_FUNCTION_NAME").is_some() || var("TOLLGATE_LOG_JSON").is_some(),
        };
        LogSettings { level, json }
    }
}

/// Lambda's log levels (`LoggingConfig.ApplicationLogLevel`) as `tracing` levels; `FATAL` has no
/// tracing level of its own and keeps errors. `None` for anything else.
fn lambda_log_level(level: &str) -> Option<&'static str> {
    match level.trim().to_ascii_uppercase().as_str() {
        "TRACE" => Some("trace"),
        "DEBUG" => Some("debug"),
        "INFO" => Some("info"),
        "WARN" => Some("warn"),
        "ERROR" | "FATAL" => Some("error"),
        _ => None,
    }
}

/// Installs the global subscriber once; later calls are no-ops. Settings from [`LogSettings`].
pub fn init() {
    let settings = LogSettings::from_env(|name| std::env::var(name).ok());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter_for(&settings.level))
        .with_target(false);
    let result = if settings.json {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> LogSettings {
        LogSettings::from_env(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn lambda_logging_config_wins_over_rust_log() {
        let lambda = [("AWS_LAMBDA_FUNCTION_NAME", "user-load")];
        assert_eq!(
            settings(&[
                lambda[0],
                ("AWS_LAMBDA_LOG_LEVEL", "DEBUG"),
                ("RUST_LOG", "warn")
            ]),
            LogSettings {
                level: "debug".into(),
                json: true
            }
        );
        assert_eq!(
            settings(&[lambda[0], ("AWS_LAMBDA_LOG_LEVEL", "FATAL")]).level,
            "error"
        );
        assert_eq!(
            settings(&[lambda[0], ("AWS_LAMBDA_LOG_LEVEL", "warn")]).level,
            "warn"
        );
        // Not one of Lambda's levels: RUST_LOG, then info.
        assert_eq!(
            settings(&[
                ("AWS_LAMBDA_LOG_LEVEL", "LOUD"),
                ("RUST_LOG", "tollgate=debug")
            ])
            .level,
            "tollgate=debug"
        );
        assert_eq!(settings(&[("AWS_LAMBDA_LOG_LEVEL", "LOUD")]).level, "info");
        assert_eq!(settings(&[("RUST_LOG", " ")]).level, "info");
    }

    #[test]
    fn lambda_log_format_chooses_json_or_text() {
        let lambda = ("AWS_LAMBDA_FUNCTION_NAME", "team");
        assert!(settings(&[lambda]).json, "JSON under Lambda by default");
        assert!(!settings(&[lambda, ("AWS_LAMBDA_LOG_FORMAT", "Text")]).json);
        assert!(settings(&[("AWS_LAMBDA_LOG_FORMAT", "JSON")]).json);
        assert!(!settings(&[]).json, "text locally");
        assert!(settings(&[("TOLLGATE_LOG_JSON", "1")]).json);
    }

    #[test]
    fn no_level_setting_uncaps_the_wire_dumping_libraries() {
        for level in [
            "trace",
            "debug",
            "aws_smithy_runtime=trace,hyper=trace,reqwest=trace",
        ] {
            let shown = filter_for(level).to_string();
            for target in WIRE_DUMPING_TARGETS {
                assert!(
                    shown.contains(&format!("{target}=info")),
                    "{level}: {shown}"
                );
            }
        }
    }
}
