//! Logging: JSON lines under Lambda (CloudWatch, log subscriptions), readable text locally.

use tracing::Subscriber;
use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Filter, SubscriberExt as _};
use tracing_subscriber::{EnvFilter, Layer as _};

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

/// `level` (a `RUST_LOG`-style directive list) as an `EnvFilter`, with `<target>=info` added for
/// each wire-dumping library. On its own this does not hold the cap: a more specific target
/// (`aws_smithy_runtime::client=trace`) or a span filter (`[request]=trace`) outranks those
/// directives; [`layer_filter`] adds the cap that holds.
fn filter_for(level: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    for target in WIRE_DUMPING_TARGETS {
        if let Ok(directive) = format!("{target}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// The cap itself: the wire-dumping libraries (and every module under them) at `info` at most,
/// everything else at any level. A filter of its own, which every event must pass besides the
/// level's, so that no directive in the level lifts it.
fn wire_cap() -> Targets {
    WIRE_DUMPING_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |targets, target| targets.with_target(*target, LevelFilter::INFO),
    )
}

/// The filter every subscriber uses: what `level` (a `RUST_LOG`-style directive list) enables,
/// and only what the wire-dumping cap lets through, whatever the level's directives say.
pub fn layer_filter<S: Subscriber>(level: &str) -> impl Filter<S> + Send + Sync + 'static {
    filter_for(level).and(wire_cap())
}

/// The subscriber [`init`] installs, writing to `writer`: `settings.level` under the wire-dumping
/// cap ([`layer_filter`]), as JSON lines or text.
pub fn subscriber<W>(settings: &LogSettings, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = layer_filter(&settings.level);
    let layer = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(writer);
    if settings.json {
        let layer = layer
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .without_time();
        Box::new(tracing_subscriber::registry().with(layer.with_filter(filter)))
    } else {
        let layer = layer.with_ansi(false);
        Box::new(tracing_subscriber::registry().with(layer.with_filter(filter)))
    }
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

/// Installs the global subscriber once ([`subscriber`], to stdout); later calls are no-ops.
/// Settings from [`LogSettings`].
pub fn init() {
    let settings = LogSettings::from_env(|name| std::env::var(name).ok());
    // Already installed (tests, or a second call): keep the first.
    drop(tracing::subscriber::set_global_default(subscriber(
        &settings,
        std::io::stdout,
    )));
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

    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `level` lets through of a wire dump inside a request span, and of Tollgate's own trace.
    fn logged(level: &str) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let settings = LogSettings {
            level: level.to_owned(),
            json: true,
        };
        tracing::subscriber::with_default(subscriber(&settings, move || writer.clone()), || {
            let span = tracing::info_span!("request", method = "POST");
            let _entered = span.enter();
            tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", "WIRE-DUMP-smithy");
            tracing::debug!(target: "hyper_util::client::legacy::pool", "WIRE-DUMP-hyper-util");
            tracing::trace!(target: "hyper::proto::h1::io", "WIRE-DUMP-hyper");
            tracing::trace!(target: "reqwest::connect", "WIRE-DUMP-reqwest");
            tracing::trace!(target: "tollgate::pipeline", "OWN-TRACE");
            tracing::info!(target: "hyper::client", "WIRE-INFO");
        });
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    /// A more specific target or a span filter outranks `hyper=info` inside an `EnvFilter`; the
    /// cap is a filter of its own, so neither lifts it.
    #[test]
    fn module_or_span_directives_do_not_lift_the_wire_dump_cap() {
        for level in [
            "trace",
            "trace,[request]=trace",
            "info,[request{method=POST}]=trace",
            "trace,aws_smithy_runtime::client=trace,hyper::proto=trace,hyper_util::client=debug",
            "reqwest::connect=trace,tollgate=trace",
        ] {
            let logs = logged(level);
            assert!(!logs.contains("WIRE-DUMP"), "{level}: {logs}");
            assert!(
                logs.contains("OWN-TRACE"),
                "{level} keeps Tollgate's own: {logs}"
            );
        }
        let logs = logged("info,[request]=trace");
        assert!(logs.contains("WIRE-INFO"), "info still passes: {logs}");
        assert!(!logs.contains("WIRE-DUMP"), "{logs}");
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
