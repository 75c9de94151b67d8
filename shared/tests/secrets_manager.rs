//! `tollgate::secrets` against a local Secrets Manager: moto's server (`moto[server]`, pinned in
//! `infra/requirements-test.txt`), started by each test on a free 127.0.0.1 port from the project
//! venv (`<repo>/.venv/bin/moto_server`) and killed when the test ends, even when it fails.
//!
//! moto is required: without it these tests fail (they do not skip), because the Secrets Manager
//! path would otherwise go unproven. Install it with
//! `.venv/bin/pip install -r infra/requirements-test.txt`.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tollgate::crypto::KeyRing;
use tollgate::secrets::{
    OPERATION_TIMEOUT, SecretSource, SecretValues, SecretsError, secrets_manager_client,
};

const KEY_1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const KEY_2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const HASH_1: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const STRIPE_KEY_V1: &str = "sk_test_SECRET_version_one";
const STRIPE_KEY_V2: &str = "sk_test_SECRET_version_two";
const WHSEC: &str = "whsec_SECRET_signing";

/// How long moto may take to start (it imports a lot of Python).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A running `moto_server`; killed on drop (also when the test panics).
struct Moto {
    child: Option<Child>,
    endpoint: String,
    log: PathBuf,
}

impl Moto {
    fn start() -> Moto {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the tollgate crate lives in the workspace");
        let binary = repo.join(".venv/bin/moto_server");
        assert!(
            binary.is_file(),
            "{} not found. This test needs moto's server as a local Secrets Manager: run \
             `.venv/bin/pip install -r infra/requirements-test.txt` in the repository root \
             (the venv comes from infra/scripts/venv.sh). It fails rather than skips, so the \
             Secrets Manager path is never silently untested.",
            binary.display()
        );
        let port = free_port();
        let log =
            std::env::temp_dir().join(format!("tollgate-moto-{}-{port}.log", std::process::id()));
        let log_file = File::create(&log).expect("create the moto log file");
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log file handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|error| panic!("could not start {}: {error}", binary.display()));
        // From here on, Drop kills the child even if waiting fails.
        let mut moto = Moto {
            child: Some(child),
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        moto.wait_until_answering(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        moto
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls until an HTTP request gets an HTTP response.
    fn wait_until_answering(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "moto_server exited ({status}) before answering:\n{}",
                    self.log_text()
                );
            }
            if answers_http(addr) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on {addr} within {STARTUP_TIMEOUT:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server (an outage).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
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
    const TTL: Duration = Duration::from_secs(2);
    let moto = Moto::start();
    let client = secrets_manager_client(Some(&moto.endpoint)).await;
    let arn = create_secret(&client, "tollgate/test/rotation").await;
    let source = SecretSource::secrets_manager(client.clone(), arn.clone(), TTL);

    let read_at = Instant::now();
    let v1 = source.current().await.expect("read the secret");
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
        read_at.elapsed() < TTL,
        "the test itself took longer than the TTL ({TTL:?}); the machine is too slow for it"
    );
    assert!(Arc::ptr_eq(&v1, &cached));
    assert_eq!(cached.stripe_secret_key.as_deref(), Some(STRIPE_KEY_V1));

    // After the TTL: the new version.
    tokio::time::sleep((read_at + TTL + Duration::from_millis(100)) - Instant::now()).await;
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
    let source = SecretSource::secrets_manager(client, arn, TTL);
    let read_at = Instant::now();
    let v1 = source.current().await.expect("read the secret");
    assert_eq!(v1.stripe_secret_key.as_deref(), Some(STRIPE_KEY_V1));

    moto.stop();
    tokio::time::sleep((read_at + TTL + Duration::from_millis(100)) - Instant::now()).await;

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
    assert!(started.elapsed() < Duration::from_millis(100));

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
    assert!(started.elapsed() < Duration::from_millis(100));
}
