//! Outbound webhooks, locally. The delivery queue and its dead-letter queue are moto's SQS
//! ([`create_queues`] makes them as the template declares them: the redrive policy moves a
//! message after `maxReceiveCount` receives); the table's stream feeds
//! [`notifier::Notifier::handle_stream`] through [`crate::stream::run_consumer`]; and
//! [`run_queue_workers`] polls the queue and hands each batch to
//! [`notifier::Notifier::handle_queue`] as Lambda's SQS event source does, deleting the messages
//! it finished.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use notifier::Notifier;

/// The local queues' names (the template's are made by CloudFormation).
pub const DELIVERY_QUEUE: &str = "tollgate-webhook-deliveries";
pub const DEAD_LETTER_QUEUE: &str = "tollgate-webhook-deliveries-dlq";
/// The template's `WebhookMaxAttempts` default: receives of a delivery before it is dead-lettered.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Pollers of the delivery queue: Lambda runs several batches at once, so one slow endpoint
/// holds up only the batch it is in (and, within it, only its own delivery).
pub const QUEUE_WORKERS: usize = 4;
/// The delivery queue's visibility timeout (the template's): longer than a batch can take.
pub const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
#[error("SQS {operation} failed: {detail}")]
pub struct QueueError {
    operation: &'static str,
    detail: String,
}

fn queue_error<E: std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
) -> impl Fn(aws_sdk_sqs::error::SdkError<E, R>) -> QueueError {
    move |error| QueueError {
        operation,
        detail: aws_sdk_sqs::error::DisplayErrorContext(&error).to_string(),
    }
}

/// The local delivery queue and dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalQueues {
    pub delivery_url: String,
    pub dead_letter_url: String,
}

/// Creates (or finds: CreateQueue with the same attributes is idempotent) the delivery queue,
/// whose redrive policy moves a message to the dead-letter queue after `max_attempts` receives.
pub async fn create_queues(
    sqs: &aws_sdk_sqs::Client,
    max_attempts: u32,
) -> Result<LocalQueues, QueueError> {
    let dead_letter_url = sqs
        .create_queue()
        .queue_name(DEAD_LETTER_QUEUE)
        .send()
        .await
        .map_err(queue_error("CreateQueue"))?
        .queue_url
        .unwrap_or_default();
    let dead_letter_arn = sqs
        .get_queue_attributes()
        .queue_url(&dead_letter_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(queue_error("GetQueueAttributes"))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dead_letter_arn,
        "maxReceiveCount": max_attempts,
    });
    let delivery_url = sqs
        .create_queue()
        .queue_name(DELIVERY_QUEUE)
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            VISIBILITY_TIMEOUT.as_secs().to_string(),
        )
        .send()
        .await
        .map_err(queue_error("CreateQueue"))?
        .queue_url
        .unwrap_or_default();
    Ok(LocalQueues {
        delivery_url,
        dead_letter_url,
    })
}

/// A received message as Lambda's SQS event carries it.
pub fn sqs_message(message: &aws_sdk_sqs::types::Message) -> SqsMessage {
    let mut event = SqsMessage::default();
    event.message_id = message.message_id.clone();
    event.receipt_handle = message.receipt_handle.clone();
    event.body = message.body.clone();
    event.md5_of_body = message.md5_of_body.clone();
    event.attributes = message
        .attributes
        .as_ref()
        .map(|attributes| {
            attributes
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
                .collect::<HashMap<String, String>>()
        })
        .unwrap_or_default();
    event.event_source = Some("aws:sqs".to_owned());
    event
}

/// One poll of the delivery queue: up to ten messages (waiting up to `wait` for the first), handed
/// to the notifier as one SQS event; the messages it finished are deleted, as the event source
/// mapping deletes them. Answers how many messages it received.
pub async fn poll_once(notifier: &Notifier, wait: Duration) -> Result<usize, QueueError> {
    let queue_url = &notifier.settings.queue_url;
    let received = notifier
        .sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(20).min(20))
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(queue_error("ReceiveMessage"))?;
    let messages = received.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(0);
    }
    let mut event = SqsEvent::default();
    event.records = messages.iter().map(sqs_message).collect();
    let response = notifier.handle_queue(event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let finished: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| !failed.contains(&m.message_id.as_deref().unwrap_or_default()))
        .filter_map(|(position, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(position.to_string())
                .receipt_handle(m.receipt_handle.clone()?)
                .build()
                .ok()
        })
        .collect();
    if !finished.is_empty() {
        notifier
            .sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(finished))
            .send()
            .await
            .map_err(queue_error("DeleteMessageBatch"))?;
    }
    Ok(messages.len())
}

/// [`QUEUE_WORKERS`] pollers of the delivery queue, until the task is dropped.
pub async fn run_queue_workers(notifier: Arc<Notifier>) {
    let workers = (0..QUEUE_WORKERS).map(|_| {
        let notifier = notifier.clone();
        async move {
            let mut warned = false;
            loop {
                match poll_once(&notifier, Duration::from_secs(1)).await {
                    Ok(_) => warned = false,
                    Err(error) => {
                        if !warned {
                            tracing::warn!(%error, "cannot read the webhook delivery queue; deliveries wait");
                            warned = true;
                        }
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            }
        }
    });
    futures::future::join_all(workers).await;
}

/// Runs the notifier locally until the task is dropped: the table's stream (a reader of its own,
/// from what is written after it starts) into the delivery queue, and the queue's pollers.
pub async fn run(notifier: Arc<Notifier>, reader: crate::stream::StreamReader) {
    let stream_side = {
        let notifier = notifier.clone();
        crate::stream::run_consumer(reader, "webhook deliveries", move |event| {
            let notifier = notifier.clone();
            async move { notifier.handle_stream(event).await }
        })
    };
    tokio::join!(stream_side, run_queue_workers(notifier));
}

/// The notifier `tollgate-dev serve` runs, when there is a queue to run it with: `SQS_ENDPOINT`
/// (moto's SQS; `make dev` starts one), where the queues are created, or `WEBHOOK_QUEUE_URL`.
/// Deliveries may go to loopback addresses as the gateway's configuration says (`tollgate-dev
/// serve` allows them unless `WEBHOOK_ALLOW_LOOPBACK=false`). `None`: no queue, no deliveries
/// (said once on the console).
pub async fn local_notifier(
    state: Arc<tollgate::pipeline::AppState>,
) -> Result<Option<Arc<Notifier>>, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let sqs_endpoint = env("SQS_ENDPOINT");
    if sqs_endpoint.is_none() && env("WEBHOOK_QUEUE_URL").is_none() {
        println!(
            "Webhook deliveries are off: no SQS_ENDPOINT or WEBHOOK_QUEUE_URL (make dev starts moto's SQS)"
        );
        return Ok(None);
    }
    let mut created = None;
    if env("WEBHOOK_QUEUE_URL").is_none() {
        let max_attempts = match env("WEBHOOK_MAX_ATTEMPTS") {
            None => DEFAULT_MAX_ATTEMPTS,
            Some(value) => value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or("WEBHOOK_MAX_ATTEMPTS must be a whole number from 1 to 1000")?,
        };
        let sqs = sqs_client(sqs_endpoint.as_deref()).await;
        created = Some(
            create_queues(&sqs, max_attempts)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let settings = notifier::NotifierSettings::from_lookup(|name| match name {
        "WEBHOOK_QUEUE_URL" => {
            env(name).or_else(|| created.as_ref().map(|q| q.delivery_url.clone()))
        }
        _ => env(name),
    })
    .map_err(|e| e.to_string())?;
    if let Some(queues) = &created {
        println!(
            "Webhook deliveries: queue {}, dead letters in {}",
            queues.delivery_url, queues.dead_letter_url
        );
    }
    Notifier::connect(state, settings)
        .await
        .map(|n| Some(Arc::new(n)))
        .map_err(|e| e.to_string())
}

/// An SQS client of `endpoint` (moto) with the SDK configuration every local client uses.
pub async fn sqs_client(endpoint: Option<&str>) -> aws_sdk_sqs::Client {
    let timeouts = tollgate::aws::Timeouts {
        connect: Duration::from_secs(2),
        attempt: Duration::from_secs(25),
        operation: Duration::from_secs(30),
    };
    let config = tollgate::aws::sdk_config(endpoint, timeouts, "moto").await;
    aws_sdk_sqs::Client::new(&config)
}
