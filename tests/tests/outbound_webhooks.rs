//! Outbound webhooks end to end: audit events written by API requests reach the organization's
//! endpoints through DynamoDB Local's stream, the notifier and moto's SQS, signed as the Standard
//! Webhooks specification says (checked by the `standardwebhooks` package from PyPI), retried with
//! backoff through the queue and dead-lettered after the queue's `maxReceiveCount`.
//!
//! The notifier runs as `tollgate-dev serve` runs it ([`tollgate_dev::notify::run`]); the
//! receivers are local HTTP servers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tollgate::pricing::Plan;
use tollgate::store::PlanStatus;
use tollgate_dev::notify::{self, LocalQueues};
use tollgate_tests::TestApp;
use tollgate_tests::moto::Moto;

const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
    at: Instant,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a delivery's body is JSON")
    }
}

/// How a receiver answers its `n`th request (0-based): a status, after a delay.
type Answer = fn(usize) -> (u16, Duration);

struct ReceiverState {
    received: Mutex<Vec<Received>>,
    answer: Answer,
}

/// A webhook receiver on 127.0.0.1.
struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let n = {
        let mut received = state.received.lock().expect("lock");
        received.push(Received {
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        });
        received.len() - 1
    };
    let (status, delay) = (state.answer)(n);
    tokio::time::sleep(delay).await;
    StatusCode::from_u16(status).expect("status")
}

impl Receiver {
    async fn start(answer: Answer) -> Receiver {
        let state = Arc::new(ReceiverState {
            received: Mutex::new(Vec::new()),
            answer,
        });
        let router = axum::Router::new()
            .fallback(receive)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/hooks/tollgate",
            listener.local_addr().expect("addr")
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Receiver { url, state, server }
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    /// Waits until `count` requests arrived (or `limit` passed) and answers them.
    async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let received = self.received();
            if received.len() >= count || Instant::now() >= deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The gateway, moto's SQS with the local queues, and the notifier running over both.
struct Stack {
    app: TestApp,
    queues: LocalQueues,
    sqs: aws_sdk_sqs::Client,
    _moto: Moto,
    notifier: tokio::task::JoinHandle<()>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.notifier.abort();
    }
}

/// A stack whose deliveries wait `timeout` for an answer, back off from `retry_base`, and go to
/// the dead-letter queue after `max_attempts` receives.
async fn stack(max_attempts: u32, retry_base: Duration, timeout: Duration) -> Stack {
    tollgate::telemetry::init();
    let app = TestApp::start_with(|config| {
        config.encryption_keys = Some(format!("k1:{K1}"));
        config.encryption_active_key = Some("k1".to_owned());
        config.webhook_allow_loopback = true;
    })
    .await;
    let moto = tokio::task::spawn_blocking(Moto::start)
        .await
        .expect("moto starts");
    let sqs = notify::sqs_client(Some(&moto.endpoint)).await;
    let queues = notify::create_queues(&sqs, max_attempts)
        .await
        .expect("queues");
    let settings = notifier::NotifierSettings {
        queue_url: queues.delivery_url.clone(),
        sqs_endpoint: Some(moto.endpoint.clone()),
        timeout,
        retry_base,
        retry_cap: retry_base * 4,
    };
    let notifier = Arc::new(
        notifier::Notifier::new(app.state.clone(), sqs.clone(), settings).expect("notifier"),
    );
    let reader = tollgate_dev::stream::StreamReader::new(
        Some(&tollgate_tests::dynamodb_endpoint()),
        app.store.table_name(),
    )
    .await;
    let notifier = tokio::spawn(notify::run(notifier, reader));
    Stack {
        app,
        queues,
        sqs,
        _moto: moto,
        notifier,
    }
}

/// An OWNER's token for a new organization (on BUSINESS).
async fn owner(app: &TestApp, sub: &str) -> String {
    app.organization_on_plan(sub, Plan::Business, PlanStatus::Active)
        .await
        .0
}

/// Registers `url` for `types`: the endpoint's id and its signing secret.
async fn endpoint(app: &TestApp, token: &str, url: &str, types: &[&str]) -> (String, String) {
    let created = app
        .post(
            "/api/webhooks/endpoints",
            token,
            json!({"url": url, "eventTypes": types}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    (
        created.body["id"].as_str().expect("id").to_owned(),
        created.body["secret"].as_str().expect("secret").to_owned(),
    )
}

/// Renames the organization: one `organization.updated` event. Answers the event's id as
/// `GET /api/audit` lists it.
async fn rename(app: &TestApp, token: &str, name: &str) -> String {
    let renamed = app
        .patch("/api/organization", token, json!({"name": name}))
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let audit = app
        .get("/api/audit?type=organization.updated&limit=1", token)
        .await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    audit.body["events"][0]["id"]
        .as_str()
        .expect("the rename's event")
        .to_owned()
}

/// Verifies `received` with the `standardwebhooks` package (PyPI, in the project venv), as a
/// receiver using the specification's reference library would: `Webhook(secret).verify(body,
/// headers)`. Answers the verified payload, or the library's error.
fn verify_with_standardwebhooks(secret: &str, received: &Received) -> Result<Value, String> {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python");
    assert!(
        std::path::Path::new(python).is_file(),
        "{python} not found: `make test` installs the venv (infra/scripts/venv.sh) with the \
         standardwebhooks package pinned in infra/requirements-test.txt"
    );
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
given = json.load(sys.stdin)
try:
    payload = Webhook(given["secret"]).verify(given["body"], given["headers"])
except Exception as error:
    print(json.dumps({"error": type(error).__name__ + ": " + str(error)}))
else:
    print(json.dumps({"payload": payload}))
"#;
    let input = json!({
        "secret": secret,
        "body": received.body,
        "headers": {
            "webhook-id": received.header("webhook-id"),
            "webhook-timestamp": received.header("webhook-timestamp"),
            "webhook-signature": received.header("webhook-signature"),
        },
    });
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the venv's python");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.to_string().as_bytes())
            .expect("write the delivery");
    }
    let output = child.wait_with_output().expect("python finishes");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).expect("python answers JSON");
    match answer.get("payload") {
        Some(payload) => Ok(payload.clone()),
        None => Err(answer["error"].as_str().unwrap_or_default().to_owned()),
    }
}

async fn dead_letters(stack: &Stack, limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    let mut found = Vec::new();
    while Instant::now() < deadline {
        let received = stack
            .sqs
            .receive_message()
            .queue_url(&stack.queues.dead_letter_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("read the dead-letter queue");
        for message in received.messages.unwrap_or_default() {
            found.push(serde_json::from_str(message.body().unwrap_or_default()).expect("JSON"));
        }
        if !found.is_empty() {
            return found;
        }
    }
    found
}

#[tokio::test]
async fn deliveries_are_signed_so_a_standard_webhooks_verifier_accepts_them() {
    let stack = stack(3, Duration::from_secs(1), Duration::from_secs(5)).await;
    let app = &stack.app;
    let receiver = Receiver::start(|_| (204, Duration::ZERO)).await;
    let token = owner(app, "auth0|hooks-signed").await;
    let (endpoint_id, secret) =
        endpoint(app, &token, &receiver.url, &["organization.updated"]).await;
    let event_id = rename(app, &token, "Signed Co").await;

    let received = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(received.len(), 1, "one delivery");
    let delivery = &received[0];
    assert_eq!(delivery.header("webhook-id"), event_id, "the event id");
    assert_eq!(delivery.header("content-type"), "application/json");
    assert!(
        delivery
            .header("user-agent")
            .starts_with("Tollgate-Webhooks/")
    );
    let payload = verify_with_standardwebhooks(&secret, delivery)
        .expect("the standardwebhooks package accepts the signature");
    assert_eq!(payload["type"], "organization.updated");
    assert_eq!(payload["data"]["id"], event_id.as_str());
    assert_eq!(payload["data"]["after"]["name"], "Signed Co");
    assert_eq!(payload, delivery.json());
    assert!(
        !delivery.body.contains(&secret) && !delivery.body.contains("whsec_"),
        "no secret in the body"
    );

    // The same verifier refuses it under another secret, or with the body changed.
    let (_, other_secret) = endpoint(app, &token, &receiver.url, &["member.invited"]).await;
    assert!(verify_with_standardwebhooks(&other_secret, delivery).is_err());
    let mut tampered = delivery.clone();
    tampered.body = tampered.body.replace("Signed Co", "Signed Co.");
    assert!(verify_with_standardwebhooks(&secret, &tampered).is_err());

    // Deleted, the endpoint gets nothing more.
    let deleted = app
        .delete(&format!("/api/webhooks/endpoints/{endpoint_id}"), &token)
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    rename(app, &token, "Unsigned Co").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.received().len(), 1, "nothing after the delete");
}

#[tokio::test]
async fn only_the_organizations_own_endpoints_that_want_the_type_receive_it() {
    let stack = stack(3, Duration::from_secs(1), Duration::from_secs(5)).await;
    let app = &stack.app;
    let wants = Receiver::start(|_| (200, Duration::ZERO)).await;
    let other_type = Receiver::start(|_| (200, Duration::ZERO)).await;
    let other_org = Receiver::start(|_| (200, Duration::ZERO)).await;
    let token = owner(app, "auth0|hooks-own").await;
    let stranger = owner(app, "auth0|hooks-stranger").await;
    endpoint(
        app,
        &token,
        &wants.url,
        &["organization.updated", "member.invited"],
    )
    .await;
    endpoint(app, &token, &other_type.url, &["api_key.created"]).await;
    endpoint(app, &stranger, &other_org.url, &["organization.updated"]).await;

    let first = rename(app, &token, "Own One").await;
    let invited = app
        .post(
            "/api/users",
            &token,
            json!({"email": "new-hire@example.com", "role": "VIEWER"}),
        )
        .await;
    assert_eq!(invited.status, 201, "{}", invited.body);

    let received = wants.wait_for(2, Duration::from_secs(30)).await;
    let mut types: Vec<String> = received
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    types.sort();
    assert_eq!(types, ["member.invited", "organization.updated"]);
    assert!(received.iter().any(|r| r.header("webhook-id") == first));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        other_type.received().is_empty(),
        "a type it did not ask for"
    );
    assert!(
        other_org.received().is_empty(),
        "another organization's event"
    );
    assert_eq!(wants.received().len(), 2, "each event once");
}

#[tokio::test]
async fn a_failed_delivery_is_tried_again_after_its_backoff_with_the_same_id() {
    let stack = stack(5, Duration::from_secs(2), Duration::from_secs(5)).await;
    let app = &stack.app;
    // 500 first, then 200.
    let receiver = Receiver::start(|n| (if n == 0 { 500 } else { 200 }, Duration::ZERO)).await;
    let token = owner(app, "auth0|hooks-retry").await;
    let (_, secret) = endpoint(app, &token, &receiver.url, &["organization.updated"]).await;
    let event_id = rename(app, &token, "Retry Co").await;

    let received = receiver.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(received.len(), 2, "the 500, then the redelivery");
    let waited = received[1].at - received[0].at;
    assert!(
        waited >= Duration::from_millis(1900),
        "the redelivery waits its backoff (2 s), waited {waited:?}"
    );
    for delivery in &received {
        assert_eq!(
            delivery.header("webhook-id"),
            event_id,
            "same id: receivers deduplicate"
        );
        verify_with_standardwebhooks(&secret, delivery).expect("each attempt is signed afresh");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(receiver.received().len(), 2, "nothing after the 200");
    assert!(
        dead_letters(&stack, Duration::from_secs(1))
            .await
            .is_empty(),
        "a delivered event is no dead letter"
    );
}

#[tokio::test]
async fn a_delivery_that_always_fails_goes_to_the_dead_letter_queue_after_n_attempts() {
    let stack = stack(3, Duration::from_secs(1), Duration::from_secs(5)).await;
    let app = &stack.app;
    let receiver = Receiver::start(|_| (503, Duration::ZERO)).await;
    let token = owner(app, "auth0|hooks-dead").await;
    let (endpoint_id, _) = endpoint(app, &token, &receiver.url, &["organization.updated"]).await;
    let event_id = rename(app, &token, "Dead Co").await;

    let letters = dead_letters(&stack, Duration::from_secs(60)).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["endpointId"], endpoint_id.as_str());
    assert_eq!(letters[0]["event"]["id"], event_id.as_str());
    let attempts = receiver.received();
    assert_eq!(attempts.len(), 3, "exactly maxReceiveCount attempts");
    assert!(
        attempts
            .windows(2)
            .all(|pair| pair[1].at - pair[0].at >= Duration::from_millis(900)),
        "each retry waited its backoff"
    );
}

#[tokio::test]
async fn an_endpoint_that_hangs_or_fails_does_not_delay_another_organizations_deliveries() {
    let timeout = Duration::from_secs(8);
    let stack = stack(3, Duration::from_secs(30), timeout).await;
    let app = &stack.app;
    // Never answers within the timeout.
    let hanging = Receiver::start(|_| (200, Duration::from_secs(60))).await;
    let failing = Receiver::start(|_| (500, Duration::ZERO)).await;
    let healthy = Receiver::start(|_| (200, Duration::ZERO)).await;
    let slow_owner = owner(app, "auth0|hooks-slow").await;
    let failing_owner = owner(app, "auth0|hooks-failing").await;
    let healthy_owner = owner(app, "auth0|hooks-healthy").await;
    endpoint(app, &slow_owner, &hanging.url, &["organization.updated"]).await;
    endpoint(app, &failing_owner, &failing.url, &["organization.updated"]).await;
    endpoint(app, &healthy_owner, &healthy.url, &["organization.updated"]).await;

    // The hanging and failing organizations' events first, several of them, then the healthy one's.
    for n in 0..3 {
        rename(app, &slow_owner, &format!("Slow {n}")).await;
        rename(app, &failing_owner, &format!("Failing {n}")).await;
    }
    let started = Instant::now();
    for n in 0..3 {
        rename(app, &healthy_owner, &format!("Healthy {n}")).await;
    }
    let delivered = healthy.wait_for(3, Duration::from_secs(30)).await;
    assert_eq!(delivered.len(), 3);
    let slowest = delivered
        .iter()
        .map(|r| r.at.duration_since(started))
        .max()
        .unwrap_or_default();
    assert!(
        slowest < timeout,
        "the healthy organization's events arrived in {slowest:?}, before the hanging endpoint's timeout ({timeout:?})"
    );
    assert!(
        !hanging.received().is_empty(),
        "the hanging endpoint was being tried meanwhile"
    );
}
