//! infra/scripts/smoke.sh against the dev gateway over DynamoDB Local: it passes on a correctly
//! configured deployment and stops, non-zero, at the first step a misconfigured one gets wrong.

use std::path::PathBuf;
use std::process::Output;

use tollgate_tests::TestApp;

const SERVICE_KEY: &str = "tgsk_test_smoke_script_0123456789_0123456789abcd";
const SECRET: &str = "whsec_smoke_script";

async fn app(webhook_secret: Option<&'static str>) -> TestApp {
    TestApp::start_with(move |config| {
        config.service_key_hashes = tollgate::auth::service_key::ServiceKeys::hash_hex(SERVICE_KEY);
        config.stripe_webhook_secrets = webhook_secret.unwrap_or_default().to_owned();
    })
    .await
}

/// Runs the script against `app` with `token`; its output.
async fn smoke(app: &TestApp, token: &str) -> Output {
    smoke_at(&app.base_url, token).await
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/scripts/smoke.sh")
}

async fn smoke_at(base: &str, token: &str) -> Output {
    let (base, token) = (base.to_owned(), token.to_owned());
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .arg(script())
            .arg(base)
            .env("TOKEN", token)
            .env("SERVICE_KEY", SERVICE_KEY)
            .output()
            .expect("run smoke.sh")
    })
    .await
    .expect("join")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn passes_on_a_configured_gateway_and_leaves_one_organization() {
    let app = app(Some(SECRET)).await;
    let token = app.token("smoke|fresh", Some("fresh@example.com"), None);
    let output = smoke(&app, &token).await;
    let text = stdout(&output);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let steps: Vec<&str> = text.lines().filter(|l| l.starts_with("ok ")).collect();
    assert_eq!(steps.len(), 11, "{text}");
    assert!(text.contains("webhook with a bad signature: POST /api/webhooks/stripe -> 400"));
    let user = app
        .store
        .get_user("smoke|fresh")
        .await
        .expect("read")
        .expect("user");
    let org = user.organization_id.expect("the script onboarded the user");
    assert!(text.ends_with(&format!("smoke test passed: organization {org}\n")));

    // The same user again: not fresh any more, so the script stops before writing anything.
    let again = smoke(&app, &token).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stdout(&again).contains("FAIL me: this user already belongs to an organization"),
        "{}",
        stdout(&again)
    );
}

#[tokio::test]
async fn stops_at_the_first_wrong_answer() {
    // No webhook secret: the signature step answers 503 webhook_not_configured, not 400.
    let app = app(None).await;
    let token = app.token("smoke|no-secret", None, None);
    let output = smoke(&app, &token).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("FAIL webhook with a bad signature:") && last.contains("503"),
        "{text}"
    );

    // Nothing listening: the first step fails.
    let closed = smoke_at("http://127.0.0.1:9", &token).await;
    assert_eq!(closed.status.code(), Some(1));
    assert!(
        stdout(&closed).contains("FAIL no token"),
        "{}",
        stdout(&closed)
    );
    // Usage errors are told apart.
    let usage = std::process::Command::new("bash")
        .arg(script())
        .env_remove("TOKEN")
        .output()
        .expect("run");
    assert_eq!(usage.status.code(), Some(2));
}

/// The token and the service key go to BASE_URL only: never over plain HTTP to a host that is not
/// loopback, and never along a redirect (urllib would carry `Authorization` to the new host).
#[tokio::test]
async fn credentials_go_only_to_the_base_url_over_https_or_loopback() {
    use std::sync::{Arc, Mutex};
    const TOKEN: &str = "eyJ.smoke_redirect_SECRET.sig";

    // Plain HTTP to another host is refused before any request (exit 2, a usage error).
    let plain = smoke_at("http://tollgate.invalid", TOKEN).await;
    assert_eq!(plain.status.code(), Some(2), "{}", stdout(&plain));
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("https://"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );

    // A deployment that redirects: the other host must never see the credentials.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let elsewhere = {
        let seen = seen.clone();
        axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let authorization = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                seen.lock()
                    .unwrap()
                    .push(authorization.clone().unwrap_or_default());
                match authorization {
                    None => (
                        axum::http::StatusCode::UNAUTHORIZED,
                        axum::Json(serde_json::json!({"error": "missing_token", "message": "m"})),
                    ),
                    Some(_) => (
                        axum::http::StatusCode::OK,
                        axum::Json(serde_json::json!({"user": {"id": "usr_1"}})),
                    ),
                }
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}", listener.local_addr().unwrap());
    let other = tokio::spawn(async move { axum::serve(listener, elsewhere).await.ok() });
    let redirecting = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let location = format!("{target}{uri}");
        async move { axum::response::Redirect::temporary(&location) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let redirector = tokio::spawn(async move { axum::serve(listener, redirecting).await.ok() });

    let output = smoke_at(&base, TOKEN).await;
    other.abort();
    redirector.abort();
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|authorization| authorization.is_empty()),
        "the credentials followed a redirect to another host: {seen:?}"
    );
    assert!(
        stdout(&output).contains("answered 307"),
        "{}",
        stdout(&output)
    );
}
