//! The Lambda entry points: every function binary's `main` is one call to [`entry`].

use crate::pipeline::{self, AppState};
use crate::routes::Serves;

/// Builds the state once per cold start (no network I/O), then serves the routes of `S` (one
/// function, e.g. [`serve::UserLoad`](crate::routes::serve::UserLoad)) until the runtime stops
/// the process. The binary contains only that function's handlers.
pub async fn run<S: Serves>() -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let state = match AppState::from_env().await {
        Ok(state) => state,
        Err(error) => return Err(init_failed(error).await),
    };
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
    let state = match AppState::from_env().await {
        Ok(state) => state,
        Err(error) => return Err(init_failed(error).await),
    };
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

/// A cold start that cannot build its state (bad configuration): logged, reported to the Runtime
/// API's `init/error` (Lambda shows the message as the init error), and returned so the process
/// exits. The messages name settings, never their values.
async fn init_failed(error: pipeline::StartupError) -> lambda_http::Error {
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

/// Each function binary's whole `main`: a Tokio runtime (as `#[tokio::main]` builds it) running
/// [`run`] for that function, or [`run_rotate_keys`].
///
/// These are plain (non-generic) functions of this library, so each function's handlers, pipeline
/// and runtime loop are compiled once, here, rather than again in every binary crate: a release
/// build compiles the eleven binaries in seconds instead of 20–45 s each. A binary still links only
/// what its own entry point reaches, so it contains only its function's handlers.
pub mod entry {
    use crate::routes::serve;

    macro_rules! entry_points {
        ($($entry:ident => $serves:ident),* $(,)?) => {$(
            #[doc = concat!("`main` of the `", stringify!($entry), "` function ([`serve::", stringify!($serves), "`]).")]
            pub fn $entry() -> Result<(), lambda_http::Error> {
                block_on(super::run::<serve::$serves>())
            }
        )*};
    }
    entry_points!(
        user_load => UserLoad,
        permission_check => PermissionCheck,
        organizations => Organizations,
        team => Team,
        checkout => Checkout,
        billing_portal => BillingPortal,
        billing => Billing,
        stripe_webhook => StripeWebhook,
        usage_tracking => UsageTracking,
        integrations => Integrations,
    );

    /// `main` of the `rotate-keys` function.
    pub fn rotate_keys() -> Result<(), lambda_http::Error> {
        block_on(super::run_rotate_keys())
    }

    fn block_on(
        main: impl std::future::Future<Output = Result<(), lambda_http::Error>>,
    ) -> Result<(), lambda_http::Error> {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(main)
    }
}
