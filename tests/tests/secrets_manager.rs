//! `tollgate::secrets` against a local Secrets Manager: moto's server (`moto[server]`, pinned in
//! `infra/requirements-test.txt`), started by each test on a free 127.0.0.1 port from the project
//! venv (`<repo>/.venv/bin/moto_server`) and killed when the test ends, even when it fails.
//!
//! moto is required: without it these tests fail (they do not skip), because the Secrets Manager
//! path would otherwise go unproven. Install it with
//! `.venv/bin/pip install -r infra/requirements-test.txt`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tollgate::crypto::KeyRing;
use tollgate::secrets::{
    OPERATION_TIMEOUT, SecretSource, SecretValues, SecretsError, secrets_manager_client,
};
use tollgate_tests::moto::{Moto, free_port};

const KEY_1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const KEY_2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const HASH_1: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const STRIPE_KEY_V1: &str = "sk_test_SECRET_version_one";
const STRIPE_KEY_V2: &str = "sk_test_SECRET_version_two";
const WHSEC: &str = "whsec_SECRET_signing";

async fn sleep_until(deadline: Instant) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
}

fn secret_v1() -> String {
    json!({
        "stripeSecretKey": STRIPE_KEY_V1,
        "stripeWebhookSecret": [WHSEC],
        "serviceKeyHashes": HASH_1,
        "encryptionKeys": {"active": "k1", "keys": {"k1": KEY_1}},
    })
    .to_string()
}

/// The rotation: a new Stripe key and a new active key (the old one stays to decrypt).
fn secret_v2() -> String {
    json!({
        "stripeSecretKey": STRIPE_KEY_V2,
        "stripeWebhookSecret": [WHSEC],
        "serviceKeyHashes": HASH_1,
        "encryptionKeys": {"active": "k2", "keys": {"k1": KEY_1, "k2": KEY_2}},
    })
    .to_string()
}

fn ring(values: &SecretValues) -> &KeyRing {
    values.encryption_keys.as_ref().expect("a key ring")
}

async fn create_secret(client: &aws_sdk_secretsmanager::Client, name: &str) -> String {
    let created = client
        .create_secret()
        .name(name)
        .secret_string(secret_v1())
        .send()
        .await
        .expect("create the secret in moto");
    created.arn().expect("moto returns the ARN").to_owned()
}

/// Captures log lines written on this thread (`#[tokio::test]` runs on the test thread).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

#[tokio::test]
async fn a_rotated_secret_is_picked_up_after_the_ttl() {
    // Long enough that "still cached" holds on a busy machine, short enough to wait out.
    const TTL: Duration = Duration::from_secs(3);
    let moto = Moto::start();
    let client = secrets_manager_client(Some(&moto.endpoint)).await;
    let arn = create_secret(&client, "tollgate/test/rotation").await;
    let source = SecretSource::secrets_manager(client.clone(), arn.clone(), TTL);

    // The values are stamped when the read completes: somewhere between these two instants.
    let read_started = Instant::now();
    let v1 = source.current().await.expect("read the secret");
    let read_done = Instant::now();
    assert_eq!(v1.stripe_secret_key.as_deref(), Some(STRIPE_KEY_V1));
    assert_eq!(v1.stripe_webhook_secrets, WHSEC);
    assert_eq!(v1.service_key_hashes, HASH_1);
    assert_eq!(ring(&v1).active_kid(), "k1");
    let sealed = ring(&v1).encrypt("org_1", b"api-token").expect("encrypt");

    client
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(secret_v2())
        .send()
        .await
        .expect("rotate the secret in moto");

    // Within the TTL: the cached values, no read.
    let cached = source.current().await.expect("cached values");
    assert!(
        read_started.elapsed() < TTL,
        "the test itself took longer than the TTL ({TTL:?}); the machine is too slow for it"
    );
    assert!(Arc::ptr_eq(&v1, &cached));
    assert_eq!(cached.stripe_secret_key.as_deref(), Some(STRIPE_KEY_V1));

    // After the TTL: the new version.
    sleep_until(read_done + TTL + Duration::from_millis(100)).await;
    let v2 = source.current().await.expect("read the rotated secret");
    assert_eq!(v2.stripe_secret_key.as_deref(), Some(STRIPE_KEY_V2));
    assert_eq!(ring(&v2).active_kid(), "k2");
    // The old key is still in the ring: values written before the rotation still decrypt, and new
    // ones are written under the new key.
    assert_eq!(
        ring(&v2).decrypt("org_1", &sealed).expect("decrypt"),
        b"api-token"
    );
    assert!(
        ring(&v2)
            .encrypt("org_1", b"x")
            .expect("encrypt")
            .starts_with("v1:k2:")
    );
    assert!(Arc::ptr_eq(&v2, &source.current().await.expect("cached")));

    // A secret id that does not exist: the service's error code, nothing cached, so an error.
    let missing = SecretSource::secrets_manager(client, "tollgate/test/missing".to_owned(), TTL);
    match missing.current().await {
        Err(SecretsError::Fetch { kind, .. }) => assert_eq!(kind, "ResourceNotFoundException"),
        other => panic!("expected ResourceNotFoundException, got {other:?}"),
    }
}

#[tokio::test]
async fn an_outage_keeps_serving_the_cached_values() {
    const TTL: Duration = Duration::from_secs(1);
    let (logs, _guard) = Captured::install();
    let mut moto = Moto::start();
    let client = secrets_manager_client(Some(&moto.endpoint)).await;
    let arn = create_secret(&client, "tollgate/test/outage").await;
    // Well within the maximum staleness however long stopping moto takes on a busy machine;
    // stale_secrets_past_the_maximum_staleness_answer_503 covers what happens past it.
    let source =
        SecretSource::secrets_manager(client, arn, TTL).with_max_staleness(Duration::from_secs(60));
    let v1 = source.current().await.expect("read the secret");
    let read_done = Instant::now();
    assert_eq!(v1.stripe_secret_key.as_deref(), Some(STRIPE_KEY_V1));

    moto.stop();
    sleep_until(read_done + TTL + Duration::from_millis(100)).await;

    let started = Instant::now();
    let stale = source
        .current()
        .await
        .expect("the cached values, despite the outage");
    let waited = started.elapsed();
    assert!(Arc::ptr_eq(&v1, &stale));
    assert!(
        waited < OPERATION_TIMEOUT + Duration::from_secs(1),
        "the failed refresh took {waited:?}"
    );
    // The failure is remembered for a while: the next request does not wait again.
    let started = Instant::now();
    assert!(Arc::ptr_eq(&v1, &source.current().await.expect("cached")));
    assert!(started.elapsed() < Duration::from_millis(500));

    let logs = logs.text();
    assert!(
        logs.contains("WARN") && logs.contains("kind=\"connection failed\""),
        "{logs}"
    );
    for secret in [STRIPE_KEY_V1, WHSEC, HASH_1, KEY_1] {
        assert!(!logs.contains(secret), "a secret value was logged:\n{logs}");
    }
}

#[tokio::test]
async fn an_unreachable_secrets_manager_fails_promptly() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let client = secrets_manager_client(Some(&endpoint)).await;
    let source = SecretSource::secrets_manager(
        client,
        "tollgate/test/unreachable".to_owned(),
        Duration::from_secs(60),
    );
    let started = Instant::now();
    let error = source.current().await.expect_err("nothing listens there");
    let waited = started.elapsed();
    assert_eq!(error.kind(), "connection failed", "{error}");
    assert!(
        waited < OPERATION_TIMEOUT + Duration::from_secs(1),
        "the failed read took {waited:?}"
    );
    // The same error right away for the next caller (no read per request during an outage).
    let started = Instant::now();
    assert_eq!(source.current().await.expect_err("still down"), error);
    assert!(started.elapsed() < Duration::from_millis(500));
}

/// Through the whole pipeline: with `SECRETS_ARN` set, the service keys come from the secret, and
/// a rotated key is accepted (and the old one refused) once the TTL has passed — no redeploy.
#[tokio::test]
async fn the_pipeline_picks_up_a_rotated_service_key_after_the_ttl() {
    use tollgate::auth::service_key::ServiceKeys;
    let moto = Moto::start();
    let client = secrets_manager_client(Some(&moto.endpoint)).await;
    let (old_key, new_key) = (
        "tgsk_rotation_old_key_0123456789abcdefghijklmnop",
        "tgsk_rotation_new_key_0123456789abcdefghijklmnop",
    );
    let secret = |key: &str| {
        json!({"serviceKeyHashes": [ServiceKeys::hash_hex(key)], "stripeWebhookSecret": WHSEC})
            .to_string()
    };
    let arn = client
        .create_secret()
        .name(format!("tollgate-pipeline-{}", free_port()))
        .secret_string(secret(old_key))
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("arn");
    let endpoint = moto.endpoint.clone();
    let app = tollgate_tests::TestApp::start_with(move |config| {
        config.secrets_arn = Some(arn);
        config.secrets_manager_endpoint = Some(endpoint);
        config.secrets_ttl = Duration::from_secs(5);
        // Not used while SECRETS_ARN is set: the secret is the source.
        config.service_key_hashes =
            ServiceKeys::hash_hex("tgsk_environment_key_0123456789abcdefghijklmnopq");
    })
    .await;
    let (_, user) = app.owner_with_organization("auth0|rotating").await;
    let org = user.organization_id.clone().unwrap();
    let post = |key: &'static str, call: &'static str| {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let body =
            json!({"organizationId": org, "callId": call, "durationSeconds": 30, "endedAt": now});
        let app = &app;
        async move { app.post("/api/usage/calls", key, body).await.status }
    };
    assert_eq!(post(old_key, "c1").await, 201);
    assert_eq!(
        post("tgsk_environment_key_0123456789abcdefghijklmnopq", "c2").await,
        401,
        "the environment is not the source"
    );

    let read_at = Instant::now();
    let secrets = secrets_manager_client(Some(&moto.endpoint)).await;
    let arn = secrets
        .list_secrets()
        .send()
        .await
        .unwrap()
        .secret_list()
        .iter()
        .find(|s| {
            s.name()
                .is_some_and(|n| n.starts_with("tollgate-pipeline-"))
        })
        .and_then(|s| s.arn().map(str::to_owned))
        .unwrap();
    secrets
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(secret(new_key))
        .send()
        .await
        .expect("rotate");
    assert_eq!(post(new_key, "c3").await, 401, "cached until the TTL");
    sleep_until(read_at + Duration::from_millis(5500)).await;
    assert_eq!(post(new_key, "c4").await, 201, "picked up after the TTL");
    assert_eq!(post(old_key, "c5").await, 401, "the old key is gone");
}

/// Secrets Manager goes away: values read earlier keep being served for up to the maximum
/// staleness (by default 3 × the TTL) after their read, then requests that need them answer 503
/// `secrets_unavailable` and an error is logged, instead of serving values that may have been
/// revoked meanwhile.
#[tokio::test]
async fn stale_secrets_past_the_maximum_staleness_answer_503() {
    use tollgate::auth::service_key::ServiceKeys;
    // Long enough that "within the maximum" holds on a busy machine.
    const TTL: Duration = Duration::from_secs(2);
    let (logs, _guard) = Captured::install();
    let mut moto = Moto::start();
    let client = secrets_manager_client(Some(&moto.endpoint)).await;
    let key = "tgsk_0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let arn = client
        .create_secret()
        .name(format!("tollgate-stale-{}", free_port()))
        .secret_string(json!({"serviceKeyHashes": [ServiceKeys::hash_hex(key)]}).to_string())
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("arn");
    let endpoint = moto.endpoint.clone();
    let app = tollgate_tests::TestApp::start_with(move |config| {
        config.secrets_arn = Some(arn);
        config.secrets_manager_endpoint = Some(endpoint);
        config.secrets_ttl = TTL;
    })
    .await;
    let (_, user) = app.owner_with_organization("auth0|stale").await;
    let org = user.organization_id.clone().unwrap();
    let post = |call: &'static str| {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let body =
            json!({"organizationId": org, "callId": call, "durationSeconds": 30, "endedAt": now});
        let app = &app;
        async move { app.post("/api/usage/calls", key, body).await }
    };
    let started = Instant::now();
    assert_eq!(post("c1").await.status, 201);
    let read_done = Instant::now();
    moto.stop();

    // Past the TTL, within 3 × TTL: the refresh fails, the values read earlier are served.
    sleep_until(read_done + TTL + Duration::from_millis(300)).await;
    assert_eq!(
        post("c2").await.status,
        201,
        "served stale within the maximum"
    );
    assert!(
        started.elapsed() < TTL * 3,
        "the test itself took longer than the maximum staleness; the machine is too slow for it"
    );

    // Past 3 × TTL since the read: refused.
    sleep_until(read_done + TTL * 3 + Duration::from_millis(1500)).await;
    let refused = post("c3").await;
    tollgate_tests::assert_error(&refused, 503, "secrets_unavailable");
    let logs = logs.text();
    assert!(
        logs.contains("ERROR") && logs.contains("past their maximum staleness"),
        "{logs}"
    );
    assert!(!logs.contains(key), "the key was logged");
}
