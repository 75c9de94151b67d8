//! The AWS SDK configuration both SDK clients (DynamoDB, Secrets Manager) are built from.
//!
//! The SDK's default HTTPS client reads the operating system's trust store when a client is built,
//! at cold start, once per SDK client. Here it trusts the compiled-in Amazon Trust Services roots
//! ([`crate::trust::aws_roots_pem`]).

use std::time::Duration;

use aws_sdk_dynamodb::config::SharedCredentialsProvider;
use aws_smithy_http_client::tls;

/// Timeouts of one SDK client: connect, one HTTP attempt, one call with its retries.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub attempt: Duration,
    pub operation: Duration,
}

/// The SDK configuration for one client. With `endpoint` (DynamoDB Local, moto in tests) requests
/// go there, with placeholder credentials (named `local_credentials_name`) unless the environment
/// has its own, and region `us-east-1` unless the environment names one.
///
/// When the environment gives the region and credentials, as Lambda's always does
/// (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), the
/// configuration is built from them directly: the default chains would come to the same answer
/// after probing profile files and building STS and SSO providers, about a millisecond of every
/// cold start. Otherwise (a developer's profile, SSO, IMDS) the default chains decide.
pub async fn sdk_config(
    endpoint: Option<&str>,
    timeouts: Timeouts,
    local_credentials_name: &'static str,
) -> aws_config::SdkConfig {
    let timeout_config = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(timeouts.connect)
        .operation_attempt_timeout(timeouts.attempt)
        .operation_timeout(timeouts.operation)
        .build();
    let region = region_from_environment()
        .or_else(|| endpoint.map(|_| aws_config::Region::new("us-east-1")));
    let credentials = if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        Some(SharedCredentialsProvider::new(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        ))
    } else {
        endpoint.map(|_| {
            SharedCredentialsProvider::new(aws_sdk_dynamodb::config::Credentials::new(
                "local",
                "local",
                None,
                None,
                local_credentials_name,
            ))
        })
    };
    let (Some(region), Some(credentials)) = (region, credentials) else {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeout_config)
            .http_client(https_client());
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        return loader.load().await;
    };
    let mut config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(region)
        .credentials_provider(credentials)
        .timeout_config(timeout_config)
        // What the default chain resolves to without a profile; the client's default plugins add
        // Tokio's sleep (for the timeouts) and the system clock.
        .retry_config(aws_config::retry::RetryConfig::standard())
        .http_client(https_client());
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint);
    }
    config.build()
}

/// `AWS_REGION`, else `AWS_DEFAULT_REGION`, as the SDK's environment region provider reads them.
fn region_from_environment() -> Option<aws_config::Region> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.trim().is_empty())
        .map(aws_config::Region::new)
}

/// The SDK's own hyper/rustls client (ring), trusting only the
/// compiled-in Amazon Trust Services roots. Built per SDK client, not shared in a static: its
/// connection pool belongs to the Tokio runtime that opened the connections.
pub fn https_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    let trust_store = tls::TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(crate::trust::aws_roots_pem().as_bytes());
    let context = tls::TlsContext::builder()
        .with_trust_store(trust_store)
        .build();
    let builder = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::Ring,
    ));
    match context {
        Ok(context) => builder.tls_context(context).build_https(),
        // `build` cannot fail today; should a later version fail, the system's roots still work.
        Err(error) => {
            tracing::warn!(%error, "compiled-in trust store refused; using the system's roots");
            builder.build_https()
        }
    }
}
