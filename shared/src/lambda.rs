//! The Lambda entry point every function binary calls with its own [`Function`].

use crate::pipeline::{self, AppState};
use crate::routes::Serves;

/// Builds the state once per cold start (no network I/O), then serves the routes of `S` (one
/// function, e.g. [`serve::UserLoad`](crate::routes::serve::UserLoad)) until the runtime stops
/// the process. The binary contains only that function's handlers.
pub async fn run<S: Serves>() -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let state = AppState::from_env().await?;
    lambda_http::run(lambda_http::service_fn(move |request| {
        let state = state.clone();
        async move {
            Ok::<_, std::convert::Infallible>(
                pipeline::handle::<S>(&state, request).await,
            )
        }
    }))
    .await
}

/// The `rotate-keys` Lambda: invoked once (console, CLI or a scheduled rule) with any payload,
/// re-encrypts every integration credential under the active key and answers the report.
pub async fn run_rotate_keys() -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let state = AppState::from_env().await?;
    lambda_http::lambda_runtime::run(lambda_http::service_fn(
        move |_event: lambda_http::LambdaEvent<serde_json::Value>| {
            let state = state.clone();
            async move {
                let secrets = state.secrets().await.map_err(|e| e.message)?;
                let ring = secrets
                    .keyring
                    .as_ref()
                    .ok_or("ENCRYPTION_KEYS is unset: there is no key ring to rotate to")?;
                let report = crate::maintenance::rotate_keys(&state.store, ring).await?;
                Ok::<_, lambda_http::Error>(report)
            }
        },
    ))
    .await
}
