//! The Lambda entry point every function binary calls with its own [`Function`].

use crate::pipeline::{self, AppState};
use crate::routes::Function;

/// Builds the state once per cold start (no network I/O), then serves `function`'s routes
/// until the runtime stops the process.
pub async fn run(function: Function) -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let state = AppState::from_env().await?;
    lambda_http::run(lambda_http::service_fn(move |request| {
        let state = state.clone();
        async move {
            Ok::<_, std::convert::Infallible>(
                pipeline::handle(&state, Some(function), request).await,
            )
        }
    }))
    .await
}
