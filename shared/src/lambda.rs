//! The Lambda runtime loop every HTTP function's `main` hands its handlers to.

use crate::pipeline::{self, AppState, FunctionHandlers};

/// Each HTTP function binary's whole `main`: a Tokio runtime (as `#[tokio::main]` builds it)
/// running [`run`] with the function's handlers.
pub fn serve(handlers: &'static FunctionHandlers) -> Result<(), lambda_http::Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(handlers))
}

/// Builds the state once per cold start (no network I/O), then serves the routes of `handlers`
/// until the runtime stops the process.
pub async fn run(handlers: &'static FunctionHandlers) -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let state = match AppState::from_env().await {
        Ok(state) => state,
        Err(error) => return Err(init_failed(error).await),
    };
    let served = [handlers];
    lambda_http::run(lambda_http::service_fn(move |request| {
        let state = state.clone();
        async move {
            Ok::<_, std::convert::Infallible>(pipeline::handle(&state, &served, request).await)
        }
    }))
    .await
}

/// A cold start that cannot build its state (bad configuration): logged, reported to the Runtime
/// API's `init/error` (Lambda shows the message as the init error), and returned so the process
/// exits. The messages name settings, never their values.
pub async fn init_failed(error: pipeline::StartupError) -> lambda_http::Error {
    tracing::error!(error = %error, "init failed");
    // The runtime loop never started, so nothing else tells the Runtime API.
    if let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") {
        let document = serde_json::json!({"errorMessage": error.to_string(), "errorType": "Runtime.InitError"});
        // A plain-HTTP client; rustls needs its provider installed before any client is built.
        crate::trust::install_ring_defaults();
        let sent = match reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(2))
            .build()
        {
            Ok(client) => client
                .post(format!("http://{api}/2018-06-01/runtime/init/error"))
                .header("Lambda-Runtime-Function-Error-Type", "Runtime.InitError")
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(document.to_string())
                .send()
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(reason) = sent {
            tracing::warn!(reason = %reason, "could not report the init error to the Runtime API");
        }
    }
    error.into()
}
