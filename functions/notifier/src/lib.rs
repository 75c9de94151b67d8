//! The `notifier` function (no route): delivers audit events to organizations' webhook endpoints,
//! signed as the Standard Webhooks specification says ([`signature`]).
//!
//! It has two event sources, told apart by the records' `eventSource`:
//! - **The table's stream** (`aws:dynamodb`; in AWS an event source mapping filtered to inserted
//!   `AUDIT#` items, locally the dev gateway's stream worker): each new audit event becomes one
//!   [`Delivery`] per endpoint of its organization that wants its type, sent to the delivery queue.
//!   No endpoint is called here, so no endpoint can hold up the stream. A record whose deliveries
//!   could not be queued is answered as a batch item failure and comes again.
//! - **The delivery queue** (`aws:sqs`; in AWS SQS, locally moto's SQS polled by the dev gateway):
//!   each message is one attempt at one delivery, all messages of a batch at once. A delivery that
//!   fails is answered as a batch item failure after its message's visibility is set to the
//!   [`delivery::backoff`] of its receive count, so it comes again that much later; after the
//!   queue's `maxReceiveCount` receives SQS moves it to the dead-letter queue.
//!
//! Delivery is at least once: an event can reach an endpoint twice (a stream batch retried, a
//! receiver that answered too late), always with the same `webhook-id`, the event's id.

pub mod delivery;
pub mod signature;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use futures::StreamExt as _;
use serde_dynamo::AttributeValue;
use tracing::Instrument as _;

use tollgate::pipeline::{AppState, StartupError};
use tollgate::store::audit::AuditEvent;
use tollgate::store::webhook_endpoints::WebhookEndpointRecord;
use tollgate::store::{StoreError, TenantId};
use tollgate::webhook_url::validate_endpoint_url;

pub use delivery::{AttemptError, Delivery, Payload};
use signature::{SecretError, SigningKey};

/// The `User-Agent` of every delivery.
pub const USER_AGENT: &str = concat!("Tollgate-Webhooks/", env!("CARGO_PKG_VERSION"));

/// SQS takes at most this many messages per `SendMessageBatch`.
const SQS_BATCH: usize = 10;
/// `SendMessageBatch` calls of one stream batch in flight at once.
const SENDS_IN_FLIGHT: usize = 8;
/// SQS's longest visibility timeout (12 hours).
const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);

/// The notifier's settings, from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierSettings {
    /// `WEBHOOK_QUEUE_URL`: the delivery queue.
    pub queue_url: String,
    /// `SQS_ENDPOINT`: a local SQS (moto), for development and tests.
    pub sqs_endpoint: Option<String>,
    /// `WEBHOOK_TIMEOUT_SECONDS` (1–30, default 10): how long one attempt waits for an answer.
    pub timeout: Duration,
    /// `WEBHOOK_RETRY_BASE_SECONDS` (0–3600, default 30): the wait after the first failure,
    /// doubled after each further one.
    pub retry_base: Duration,
    /// `WEBHOOK_RETRY_MAX_SECONDS` (0–43200, default 3600): the longest wait between attempts.
    pub retry_cap: Duration,
}

/// A notifier setting that is missing or out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{0} is unset: the notifier needs its delivery queue's URL")]
    Missing(&'static str),
    #[error("{name} must be a whole number from {low} to {high}")]
    Range {
        name: &'static str,
        low: u64,
        high: u64,
    },
}

impl NotifierSettings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let seconds = |name: &'static str, low: u64, high: u64, default: u64| match get(name) {
            None => Ok(Duration::from_secs(default)),
            Some(value) => value
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (low..=high).contains(n))
                .map(Duration::from_secs)
                .ok_or(SettingsError::Range { name, low, high }),
        };
        Ok(Self {
            queue_url: get("WEBHOOK_QUEUE_URL")
                .ok_or(SettingsError::Missing("WEBHOOK_QUEUE_URL"))?,
            sqs_endpoint: get("SQS_ENDPOINT"),
            timeout: seconds("WEBHOOK_TIMEOUT_SECONDS", 1, 30, 10)?,
            retry_base: seconds("WEBHOOK_RETRY_BASE_SECONDS", 0, 3600, 30)?,
            retry_cap: seconds(
                "WEBHOOK_RETRY_MAX_SECONDS",
                0,
                MAX_VISIBILITY.as_secs(),
                3600,
            )?,
        })
    }
}

/// Why one delivery attempt was not made or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Attempt(#[from] AttemptError),
    #[error("the delivery message is not one the notifier wrote: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the secrets could not be read: {0}")]
    Secrets(String),
    #[error("no key ring is configured (ENCRYPTION_KEYS): the signing secret cannot be read")]
    NoKeyRing,
    #[error("the endpoint's signing secret could not be decrypted")]
    Decrypt,
    #[error("the endpoint's signing secret is not valid: {0}")]
    Secret(#[from] SecretError),
}

/// What a delivery attempt that raised no error came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The endpoint answered this 2xx status.
    Delivered(u16),
    /// The endpoint was deleted (or no longer wants the type): nothing to deliver.
    EndpointGone,
}

/// The notifier: the table (endpoints), the secrets (the key ring that holds signing secrets),
/// the delivery queue and the delivery HTTP client. Endpoints may be loopback addresses only when
/// the configuration allows them (`WEBHOOK_ALLOW_LOOPBACK`, [`tollgate::config::Config`]).
pub struct Notifier {
    pub state: Arc<AppState>,
    pub sqs: aws_sdk_sqs::Client,
    pub settings: NotifierSettings,
    http: reqwest::Client,
}

/// The audit event a stream record inserts, with its partition key: an `INSERT` of an `AUDIT#`
/// item of an organization. The same test as the template's `FilterCriteria`.
pub fn inserted_event(record: &EventRecord) -> Option<(TenantId, AuditEvent)> {
    let text = |name: &str| match record.change.keys.get(name) {
        Some(AttributeValue::S(value)) => Some(value.as_str()),
        _ => None,
    };
    if record.event_name != "INSERT" || !text("SK")?.starts_with("AUDIT#") {
        return None;
    }
    let tenant = TenantId::from_partition_key(text("PK")?)?;
    match serde_dynamo::from_item::<_, AuditEvent>(record.change.new_image.clone()) {
        Ok(event) if event.organization_id == tenant.as_str() => Some((tenant, event)),
        Ok(event) => {
            tracing::error!(event_id = %event.id, "audit event names another organization than its partition; not delivered");
            None
        }
        Err(error) => {
            tracing::error!(%error, "audit item does not read as an event; not delivered");
            None
        }
    }
}

impl Notifier {
    /// A notifier over `state`'s table and secrets.
    pub async fn connect(
        state: Arc<AppState>,
        settings: NotifierSettings,
    ) -> Result<Self, tollgate::trust::HttpClientError> {
        let config = tollgate::aws::sdk_config(
            settings.sqs_endpoint.as_deref(),
            tollgate::aws::Timeouts {
                connect: Duration::from_secs(3),
                attempt: Duration::from_secs(5),
                operation: Duration::from_secs(15),
            },
            "tollgate-local-sqs",
        )
        .await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        Self::new(state, sqs, settings)
    }

    pub fn new(
        state: Arc<AppState>,
        sqs: aws_sdk_sqs::Client,
        settings: NotifierSettings,
    ) -> Result<Self, tollgate::trust::HttpClientError> {
        let http = delivery::client(settings.timeout, state.config.webhook_allow_loopback)?;
        Ok(Self {
            state,
            sqs,
            settings,
            http,
        })
    }

    /// One Lambda event of either source; anything else is an error (the invocation fails).
    pub async fn handle(
        &self,
        event: serde_json::Value,
    ) -> Result<serde_json::Value, lambda_runtime::Error> {
        let source = event
            .get("Records")
            .and_then(|records| records.get(0))
            .and_then(|record| record.get("eventSource"))
            .and_then(|source| source.as_str())
            .map(str::to_owned);
        match source.as_deref() {
            Some("aws:dynamodb") => Ok(serde_json::to_value(
                self.handle_stream(serde_json::from_value(event)?).await,
            )?),
            Some("aws:sqs") => Ok(serde_json::to_value(
                self.handle_queue(serde_json::from_value(event)?).await,
            )?),
            None if event
                .get("Records")
                .and_then(|r| r.as_array())
                .is_some_and(|r| r.is_empty()) =>
            {
                Ok(serde_json::json!({"batchItemFailures": []}))
            }
            _ => Err(
                "the notifier takes the table's stream records and its delivery queue's messages"
                    .into(),
            ),
        }
    }

    /// A batch of stream records: queues one delivery per inserted event and endpoint that wants
    /// it. Endpoints are read once per organization per batch (one Query). The first record whose
    /// deliveries could not all be queued is reported, so the stream gives it (and those after
    /// it) again; deliveries queued before are queued again then, with the same event id.
    pub async fn handle_stream(&self, event: StreamEvent) -> DynamoDbEventResponse {
        let mut endpoints: HashMap<TenantId, Vec<WebhookEndpointRecord>> = HashMap::new();
        let mut planned: Vec<(usize, Delivery)> = Vec::new();
        let mut first_failure: Option<usize> = None;
        for (index, record) in event.records.iter().enumerate() {
            let Some((tenant, audit)) = inserted_event(record) else {
                continue;
            };
            if !endpoints.contains_key(&tenant) {
                match self.state.store.list_webhook_endpoints(&tenant).await {
                    Ok(found) => {
                        endpoints.insert(tenant.clone(), found);
                    }
                    Err(error) => {
                        tracing::error!(organization_id = %tenant.as_str(), %error, "endpoints could not be read; the stream will retry");
                        first_failure = Some(index);
                        break;
                    }
                }
            }
            let wanting = endpoints
                .get(&tenant)
                .into_iter()
                .flatten()
                .filter(|endpoint| endpoint.wants(audit.kind.as_str()));
            for endpoint in wanting {
                planned.push((
                    index,
                    Delivery {
                        endpoint_id: endpoint.id.clone(),
                        partition_key: format!("ORG#{}", tenant.as_str()),
                        event: audit.clone(),
                    },
                ));
            }
        }
        // Owned chunks (moved, not copied): a closure over borrowed ones makes this future not
        // `Send` for every lifetime, which spawning it needs.
        let mut chunks: Vec<Vec<(usize, Delivery)>> = Vec::new();
        let mut planned = planned.into_iter().peekable();
        while planned.peek().is_some() {
            chunks.push(planned.by_ref().take(SQS_BATCH).collect());
        }
        let failed = futures::stream::iter(chunks)
            .map(|chunk| async move { self.enqueue(&chunk).await })
            .buffer_unordered(SENDS_IN_FLIGHT)
            .collect::<Vec<Vec<usize>>>()
            .await;
        if let Some(earliest) = failed.into_iter().flatten().min() {
            first_failure = Some(first_failure.map_or(earliest, |f| f.min(earliest)));
        }
        let mut response = DynamoDbEventResponse::default();
        if let Some(index) = first_failure {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = event.records[index].change.sequence_number.clone();
            response.batch_item_failures.push(failure);
        }
        response
    }

    /// Sends up to ten deliveries in one `SendMessageBatch`; answers the record indexes of those
    /// SQS did not take.
    async fn enqueue(&self, chunk: &[(usize, Delivery)]) -> Vec<usize> {
        let mut entries = Vec::with_capacity(chunk.len());
        for (position, (index, delivery)) in chunk.iter().enumerate() {
            let entry = serde_json::to_string(delivery).ok().and_then(|body| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(position.to_string())
                    .message_body(body)
                    .build()
                    .ok()
            });
            match entry {
                Some(entry) => entries.push(entry),
                None => return vec![*index],
            }
        }
        let sent = self
            .sqs
            .send_message_batch()
            .queue_url(&self.settings.queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        match sent {
            Ok(output) => output
                .failed()
                .iter()
                .filter_map(|failed| failed.id().parse::<usize>().ok())
                .filter_map(|position| chunk.get(position).map(|(index, _)| *index))
                .collect(),
            Err(error) => {
                tracing::error!(error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "deliveries could not be queued; the stream will retry");
                chunk.iter().map(|(index, _)| *index).collect()
            }
        }
    }

    /// A batch of delivery messages, all attempted at once (a slow endpoint holds up only its own
    /// delivery). Failed ones are reported, after their visibility is set to their backoff.
    pub async fn handle_queue(&self, event: SqsEvent) -> SqsBatchResponse {
        let outcomes =
            futures::future::join_all(event.records.iter().map(|m| self.process(m))).await;
        let mut response = SqsBatchResponse::default();
        for (message, done) in event.records.iter().zip(outcomes) {
            if !done && let Some(id) = &message.message_id {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id.clone();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// One message: `true` when it is finished with (delivered, or its endpoint is gone).
    async fn process(&self, message: &SqsMessage) -> bool {
        let attempt = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|count| count.parse::<u32>().ok())
            .unwrap_or(1);
        let delivery = match message
            .body
            .as_deref()
            .map(serde_json::from_str::<Delivery>)
        {
            Some(Ok(delivery)) => delivery,
            _ => {
                tracing::error!(message_id = ?message.message_id, "delivery message does not parse; it goes to the dead-letter queue after its retries");
                return false;
            }
        };
        let span = tracing::info_span!(
            "delivery",
            event_id = %delivery.event.id,
            endpoint_id = %delivery.endpoint_id,
            attempt
        );
        // Instrumented, not entered: the batch's deliveries are polled together on one thread,
        // and a guard held across an await would give one delivery's log lines another's span.
        self.attempt(message, &delivery, attempt)
            .instrument(span)
            .await
    }

    /// One attempt at `delivery` from `message`, its outcome logged and, when it failed, the
    /// message's visibility set to its backoff.
    async fn attempt(&self, message: &SqsMessage, delivery: &Delivery, attempt: u32) -> bool {
        match self.send(delivery).await {
            Ok(Sent::Delivered(status)) => {
                tracing::info!(status, "webhook delivered");
                true
            }
            Ok(Sent::EndpointGone) => {
                tracing::info!("endpoint deleted; delivery dropped");
                true
            }
            Err(error) => {
                let wait =
                    delivery::backoff(attempt, self.settings.retry_base, self.settings.retry_cap);
                tracing::warn!(%error, retry_in_seconds = wait.as_secs(), "webhook not delivered");
                if let Some(receipt) = &message.receipt_handle {
                    let visibility = i32::try_from(wait.as_secs()).unwrap_or(i32::MAX);
                    if let Err(error) = self
                        .sqs
                        .change_message_visibility()
                        .queue_url(&self.settings.queue_url)
                        .receipt_handle(receipt)
                        .visibility_timeout(visibility)
                        .send()
                        .await
                    {
                        tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "backoff not set; the queue's visibility timeout applies");
                    }
                }
                false
            }
        }
    }

    /// One attempt at `delivery`: reads the endpoint, decrypts its signing secret, signs and
    /// posts the event.
    pub async fn send(&self, delivery: &Delivery) -> Result<Sent, DeliveryError> {
        let tenant = TenantId::from_partition_key(&delivery.partition_key)
            .ok_or(DeliveryError::Malformed("partitionKey"))?;
        if delivery.event.organization_id != tenant.as_str() {
            return Err(DeliveryError::Malformed("organizationId"));
        }
        let kind = delivery.event.kind.as_str();
        let endpoint = match self
            .state
            .store
            .get_webhook_endpoint(&tenant, &delivery.endpoint_id)
            .await?
        {
            Some(endpoint) if endpoint.wants(kind) => endpoint,
            _ => return Ok(Sent::EndpointGone),
        };
        // The creation rules again: the flag may have changed since, and an IP literal reaches
        // no resolver.
        let url = validate_endpoint_url(&endpoint.url, self.state.config.webhook_allow_loopback)
            .map_err(|_| AttemptError::AddressRefused)?;
        let secrets = self
            .state
            .secrets()
            .await
            .map_err(|error| DeliveryError::Secrets(error.message))?;
        let ring = secrets.keyring.as_ref().ok_or(DeliveryError::NoKeyRing)?;
        let secret = ring
            .decrypt(tenant.as_str(), &endpoint.signing_secret)
            .ok()
            .and_then(|plain| String::from_utf8(plain).ok())
            .ok_or(DeliveryError::Decrypt)?;
        let key = SigningKey::from_secret(&secret)?;
        let body = serde_json::to_vec(&Payload::of(&delivery.event))
            .map_err(|_| DeliveryError::Malformed("event"))?;
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = key.sign(&delivery.event.id, timestamp, &body);
        let answer = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::USER_AGENT, USER_AGENT)
            .header(signature::HEADERS[0], &delivery.event.id)
            .header(signature::HEADERS[1], timestamp.to_string())
            .header(signature::HEADERS[2], signature)
            .body(body)
            .send()
            .await
            .map_err(|error| attempt_error(&error))?;
        let status = answer.status();
        if status.is_success() {
            Ok(Sent::Delivered(status.as_u16()))
        } else {
            Err(AttemptError::Status(status.as_u16()).into())
        }
    }
}

/// What a failed request was, without its URL.
fn attempt_error(error: &reqwest::Error) -> AttemptError {
    if error.is_timeout() {
        return AttemptError::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current
            .downcast_ref::<AttemptError>()
            .is_some_and(|e| *e == AttemptError::AddressRefused)
        {
            return AttemptError::AddressRefused;
        }
        source = current.source();
    }
    AttemptError::Unreachable
}

/// The Lambda: the state, settings and clients once per cold start, then [`Notifier::handle`]
/// per batch.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    tollgate::telemetry::init();
    let state = match AppState::from_env().await {
        Ok(state) => state,
        Err(error) => return Err(tollgate::lambda::init_failed(error).await),
    };
    let settings = match NotifierSettings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            return Err(
                tollgate::lambda::init_failed(StartupError::Function(error.to_string())).await,
            );
        }
    };
    let notifier = match Notifier::connect(state, settings).await {
        Ok(notifier) => Arc::new(notifier),
        Err(error) => return Err(tollgate::lambda::init_failed(error.into()).await),
    };
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let notifier = notifier.clone();
            async move { notifier.handle(event.payload).await }
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The samples of docs/sam-local.md, in the shapes Lambda delivers.
    fn stream_sample() -> StreamEvent {
        serde_json::from_str(include_str!("../../../events/notifier-stream.json"))
            .expect("the stream sample parses as Lambda's DynamoDB event")
    }

    fn queue_sample() -> SqsEvent {
        serde_json::from_str(include_str!("../../../events/notifier-queue.json"))
            .expect("the queue sample parses as Lambda's SQS event")
    }

    #[test]
    fn only_an_inserted_audit_item_is_an_event_to_deliver() {
        let event = stream_sample();
        let found: Vec<Option<(String, String)>> = event
            .records
            .iter()
            .map(|r| inserted_event(r).map(|(t, e)| (t.as_str().to_owned(), e.id)))
            .collect();
        assert_eq!(
            found,
            vec![
                Some((
                    "org_0193f1c2a7b47c55a1e0b3f0c2d4e6f8".to_owned(),
                    "evt_019ad6f1c2a87b3e9d1f0a4c5b6e7d8f".to_owned()
                )),
                None
            ]
        );
    }

    #[test]
    fn an_event_naming_another_organization_than_its_partition_is_not_delivered() {
        let mut event = stream_sample();
        let record = &mut event.records[0];
        record.change.new_image.insert(
            "organizationId".to_owned(),
            AttributeValue::S("org_someone_else".to_owned()),
        );
        assert!(inserted_event(record).is_none());
        let mut event = stream_sample();
        let record = &mut event.records[0];
        record.event_name = "REMOVE".to_owned();
        assert!(
            inserted_event(record).is_none(),
            "a TTL removal is no new event"
        );
    }

    #[test]
    fn the_queue_sample_carries_a_delivery() {
        let event = queue_sample();
        let message = &event.records[0];
        let delivery: Delivery =
            serde_json::from_str(message.body.as_deref().expect("body")).expect("a delivery");
        assert_eq!(delivery.endpoint_id, "we_0193f1c2a7b47c55a1e0b3f0c2d4e700");
        assert_eq!(
            TenantId::from_partition_key(&delivery.partition_key)
                .map(|t| t.as_str().to_owned())
                .as_deref(),
            Some(delivery.event.organization_id.as_str())
        );
        assert_eq!(
            message
                .attributes
                .get("ApproximateReceiveCount")
                .map(String::as_str),
            Some("1")
        );
    }

    #[test]
    fn settings_default_and_refuse_out_of_range_values() {
        let with = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            NotifierSettings::from_lookup(move |name| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
        };
        assert_eq!(with(&[]), Err(SettingsError::Missing("WEBHOOK_QUEUE_URL")));
        let settings = with(&[("WEBHOOK_QUEUE_URL", "https://sqs/q")]).expect("defaults");
        assert_eq!(settings.timeout, Duration::from_secs(10));
        assert_eq!(settings.retry_base, Duration::from_secs(30));
        assert_eq!(settings.retry_cap, Duration::from_secs(3600));
        for (name, value) in [
            ("WEBHOOK_TIMEOUT_SECONDS", "0"),
            ("WEBHOOK_TIMEOUT_SECONDS", "31"),
            ("WEBHOOK_RETRY_BASE_SECONDS", "-1"),
            ("WEBHOOK_RETRY_MAX_SECONDS", "43201"),
            ("WEBHOOK_RETRY_MAX_SECONDS", "soon"),
        ] {
            assert!(
                matches!(
                    with(&[("WEBHOOK_QUEUE_URL", "https://sqs/q"), (name, value)]),
                    Err(SettingsError::Range { .. })
                ),
                "{name}={value}"
            );
        }
    }
}
