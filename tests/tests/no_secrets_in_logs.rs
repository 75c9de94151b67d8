//! A full flow with every kind of secret, logging at TRACE into a buffer through the subscriber the
//! functions install: no token, key, signing secret, credential or email appears in any log line,
//! whatever directives the level holds.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tollgate_tests::TestApp;
use tollgate_tests::stripe_standin::{StripeStandIn, fixture, signed_event};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_full_flow_logs_no_secret() {
    full_flow_logs_no_secret("trace").await;
}

/// Directives that outrank a plain `hyper=info` inside one `EnvFilter` (a span filter, more
/// specific module paths) must not lift the cap either: with them, the AWS SDK would log every
/// request it signs and every DynamoDB item it reads (emails, names).
#[tokio::test]
async fn span_or_module_directives_in_the_level_log_no_secret() {
    full_flow_logs_no_secret(
        "trace,[request]=trace,aws_smithy_runtime::client=trace,aws_sigv4::http_request=trace,\
         hyper_util::client=trace,hyper::proto=trace,reqwest::connect=trace",
    )
    .await;
}

/// Runs a full flow logging at `level` through the subscriber the functions install
/// (`tollgate::telemetry::subscriber`, JSON lines), into a buffer, and searches the lines for every
/// secret the flow used.
async fn full_flow_logs_no_secret(level: &str) {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    // The gateway runs on this (current-thread) runtime, so a thread-local default sees it all.
    let settings = tollgate::telemetry::LogSettings {
        level: level.to_owned(),
        json: true,
    };
    let _logging =
        tracing::subscriber::set_default(tollgate::telemetry::subscriber(&settings, move || {
            writer.clone()
        }));

    const SERVICE_KEY: &str = "tgsk_log_test_service_key_5f3a_0123456789abcdefg";
    const WEBHOOK_SECRET: &str = "whsec_log_test_signing_secret_9c1e";
    const STRIPE_KEY: &str = "sk_test_log_test_stripe_key_77d2";
    const ENCRYPTION_KEY: &str = "3333333333333333333333333333333333333333333333333333333333333333";
    const CREDENTIAL: &str = "twilio_auth_token_never_logged_4b8e";
    const PEPPER: &str = "log_test_api_key_pepper_never_logged_0123456789";
    let stripe = StripeStandIn::start().await;
    let base = stripe.base_url.clone();
    let app = TestApp::start_with(move |config| {
        config.service_key_hashes = tollgate::auth::service_key::ServiceKeys::hash_hex(SERVICE_KEY);
        config.stripe_secret_key = Some(STRIPE_KEY.into());
        config.stripe_api_base = base;
        config.stripe_webhook_secrets = WEBHOOK_SECRET.into();
        config.encryption_keys = Some(format!("k9:{ENCRYPTION_KEY}"));
        config.encryption_active_key = Some("k9".into());
        config.api_key_pepper = Some(PEPPER.into());
    })
    .await;

    let (owner, user) = app.owner_with_organization("auth0|logger").await;
    let org = user.organization_id.clone().unwrap();
    assert_eq!(
        app.post(
            "/api/billing/checkout",
            &owner,
            json!({"plan": "BUSINESS", "interval": "monthly"})
        )
        .await
        .status,
        200
    );
    let customer = app
        .store
        .get_organization(&user.tenant().unwrap())
        .await
        .unwrap()
        .unwrap()
        .stripe_customer_id
        .unwrap();
    let mut subscription = fixture("subscription");
    subscription["customer"] = json!(customer);
    subscription["items"]["data"][0]["price"]["id"] = json!("price_business_monthly");
    let (body, signature) = signed_event(
        WEBHOOK_SECRET,
        "customer.subscription.created",
        "evt_log_1",
        1_790_000_000,
        subscription,
    );
    assert_eq!(app.deliver(&body, Some(&signature)).await.status, 200);
    assert_eq!(app.deliver(&body, Some("t=1,v1=00")).await.status, 400);
    assert_eq!(
        app.post(
            "/api/integrations",
            &owner,
            json!({"type": "twilio", "name": "Line", "credentials": {"authToken": CREDENTIAL}})
        )
        .await
        .status,
        201
    );
    // An organization API key: created, listed, used, refused where keys may not go, guessed,
    // revoked and used again.
    let created = app
        .post(
            "/api/api-keys",
            &owner,
            json!({"name": "Log key", "role": "ADMIN"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let api_key = created.body["key"].as_str().unwrap().to_owned();
    let api_key_id = created.body["id"].as_str().unwrap().to_owned();
    let api_key_secret = api_key[api_key.len() - 64..].to_owned();
    let api_key_hash = tollgate::auth::api_key::Pepper::new(PEPPER)
        .unwrap()
        .digest_hex(&api_key);
    let listed = app.get("/api/api-keys", &owner).await;
    assert_eq!(listed.status, 200);
    assert!(!listed.body.to_string().contains(&api_key_secret));
    assert_eq!(app.get("/api/organization", &api_key).await.status, 200);
    assert_eq!(app.get("/api/users", &api_key).await.status, 403);
    let guessed = format!("{}{}", &api_key[..api_key.len() - 64], "e0".repeat(32));
    assert_ne!(guessed, api_key);
    assert_eq!(app.get("/api/organization", &guessed).await.status, 401);
    assert_eq!(
        app.delete(&format!("/api/api-keys/{api_key_id}"), &owner)
            .await
            .status,
        200
    );
    assert_eq!(app.get("/api/organization", &api_key).await.status, 401);
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let call =
        json!({"organizationId": org, "callId": "log-call", "durationSeconds": 90, "endedAt": now});
    assert_eq!(
        app.post("/api/usage/calls", SERVICE_KEY, call).await.status,
        201
    );
    assert_eq!(
        app.get(
            "/api/me",
            "tgsk_wrong_guess_key_0123456789abcdefghijklmnopq"
        )
        .await
        .status,
        401
    );
    assert_eq!(app.get("/api/me", &format!("{owner}x")).await.status, 401);
    assert_eq!(
        app.get("/api/billing/subscription", &owner).await.status,
        200
    );

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("billing state changed"),
        "the flow was logged"
    );
    assert!(logs.contains("request done"));
    assert!(logs.contains("API key created") && logs.contains("API key revoked"));
    // The key's id is not a secret: it ties the key's requests together in the logs.
    assert!(logs.contains(&format!("\"api_key_id\":\"{api_key_id}\"")));
    let token_signature = owner.rsplit('.').next().unwrap();
    for secret in [
        owner.as_str(),
        token_signature,
        SERVICE_KEY,
        "tgsk_wrong_guess_key_0123456789abcdefghijklmnopq",
        WEBHOOK_SECRET,
        STRIPE_KEY,
        ENCRYPTION_KEY,
        CREDENTIAL,
        signature.as_str(),
        "auth0|logger@example.com",
        PEPPER,
        api_key.as_str(),
        api_key_secret.as_str(),
        api_key_hash.as_str(),
        &guessed[guessed.len() - 64..],
    ] {
        let leak = logs.lines().find(|line| line.contains(secret));
        assert!(
            leak.is_none(),
            "{level}: a log line contains a secret: {}",
            leak.unwrap_or_default().replace(secret, "<SECRET>")
        );
    }
}
