//! The table's stream, locally. [`StreamReader`] reads DynamoDB Local's stream of the table as
//! Lambda's event source mapping reads the table's stream in AWS, and turns its records into the
//! [`Event`] Lambda delivers; [`run_workers`] hands each batch to the same handler the
//! `org-cleanup` Lambda runs, so `tollgate-dev serve` finishes deletion jobs as the deployed
//! stack does.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event, EventRecord, StreamRecord};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use tollgate::store::Store;

/// How often an idle reader asks the stream for new records (the event source mapping polls a
/// shard about four times a second).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Times a failing batch is handed over again before it is given up, as the template's
/// `MaximumRetryAttempts`; then it is logged, as the mapping sends it to the dead-letter queue.
pub const MAX_RETRIES: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the table {0} has no stream; run `tollgate-dev create-table` to turn it on")]
    NoStream(String),
    #[error("DynamoDB Streams {operation} failed: {detail}")]
    Unavailable {
        operation: &'static str,
        detail: String,
    },
}

fn unavailable<E: std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
) -> impl Fn(aws_sdk_dynamodbstreams::error::SdkError<E, R>) -> StreamError {
    move |error| StreamError::Unavailable {
        operation,
        detail: aws_sdk_dynamodbstreams::error::DisplayErrorContext(&error).to_string(),
    }
}

/// Reads every shard of a table's stream from its oldest record (`TRIM_HORIZON`, as the
/// template's mapping starts), so a job left running when the gateway stopped goes on.
pub struct StreamReader {
    streams: aws_sdk_dynamodbstreams::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    stream_arn: Option<String>,
    /// Shard id → the iterator to read it from next; `None`: the shard is closed and read.
    shards: BTreeMap<String, Option<String>>,
    /// Shard id → the sequence number of the last record read from it, where a lost iterator
    /// starts again.
    read_up_to: BTreeMap<String, String>,
    /// Where the shards found by the first read start: their oldest record, or (for
    /// [`StreamReader::from_latest`]) the records written after it.
    first_position: ShardIteratorType,
}

impl StreamReader {
    /// A reader of `table`'s stream at `endpoint` (DynamoDB Local serves the streams API too).
    pub async fn new(endpoint: Option<&str>, table: &str) -> StreamReader {
        let timeouts = tollgate::aws::Timeouts {
            connect: Duration::from_secs(2),
            attempt: Duration::from_secs(10),
            operation: Duration::from_secs(30),
        };
        let config = tollgate::aws::sdk_config(endpoint, timeouts, "dynamodb-local").await;
        StreamReader {
            streams: aws_sdk_dynamodbstreams::Client::new(&config),
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            table: table.to_owned(),
            stream_arn: None,
            shards: BTreeMap::new(),
            read_up_to: BTreeMap::new(),
            first_position: ShardIteratorType::TrimHorizon,
        }
    }

    /// Reads only what is written after its first read (the shards that exist then start at
    /// `LATEST`; shards opened later from their oldest record): a consumer that must not act on
    /// the stream's last 24 hours again each time the gateway starts.
    pub fn from_latest(mut self) -> StreamReader {
        self.first_position = ShardIteratorType::Latest;
        self
    }

    /// The stream's ARN: DescribeTable's `LatestStreamArn`, as the template's `!GetAtt
    /// TollgateTable.StreamArn`.
    pub async fn stream_arn(&mut self) -> Result<String, StreamError> {
        if let Some(arn) = &self.stream_arn {
            return Ok(arn.clone());
        }
        let described = self
            .dynamodb
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|error| StreamError::Unavailable {
                operation: "DescribeTable",
                detail: aws_sdk_dynamodb::error::DisplayErrorContext(&error).to_string(),
            })?;
        let arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .ok_or_else(|| StreamError::NoStream(self.table.clone()))?
            .to_owned();
        self.stream_arn = Some(arn.clone());
        Ok(arn)
    }

    /// Every record written since the last call (possibly none), oldest first per shard.
    pub async fn poll(&mut self) -> Result<Vec<EventRecord>, StreamError> {
        let arn = self.stream_arn().await?;
        self.discover_shards(&arn).await?;
        let mut records = Vec::new();
        let open: Vec<(String, String)> = self
            .shards
            .iter()
            .filter_map(|(id, iterator)| Some((id.clone(), iterator.clone()?)))
            .collect();
        for (shard, iterator) in open {
            let output = match self
                .streams
                .get_records()
                .shard_iterator(iterator)
                .limit(1000)
                .send()
                .await
            {
                Ok(output) => output,
                // DynamoDB Local sometimes calls an iterator past the shard's trim horizon (or
                // expired): the shard is read again from just after its last record read.
                Err(error)
                    if error.as_service_error().is_some_and(|e| {
                        e.is_trimmed_data_access_exception() || e.is_expired_iterator_exception()
                    }) =>
                {
                    tracing::debug!(%shard, "stream iterator lost; reading the shard again after its last record");
                    let iterator = self.iterator_after_last_read(&arn, &shard).await?;
                    self.shards.insert(shard, iterator);
                    continue;
                }
                Err(error) => return Err(unavailable("GetRecords")(error)),
            };
            if let Some(last) = output
                .records()
                .last()
                .and_then(|r| r.dynamodb())
                .and_then(|r| r.sequence_number())
            {
                self.read_up_to.insert(shard.clone(), last.to_owned());
            }
            records.extend(output.records().iter().map(|r| event_record(r, &arn)));
            self.shards
                .insert(shard, output.next_shard_iterator().map(str::to_owned));
        }
        Ok(records)
    }

    /// An iterator of `shard` just after the last record read from it (its oldest record if none
    /// was read).
    async fn iterator_after_last_read(
        &self,
        arn: &str,
        shard: &str,
    ) -> Result<Option<String>, StreamError> {
        let request = self
            .streams
            .get_shard_iterator()
            .stream_arn(arn)
            .shard_id(shard);
        let request = match self.read_up_to.get(shard) {
            Some(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(sequence),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let iterator = request
            .send()
            .await
            .map_err(unavailable("GetShardIterator"))?;
        Ok(iterator.shard_iterator().map(str::to_owned))
    }

    /// Every record on the stream not read yet: [`StreamReader::poll`] until it answers none.
    pub async fn read_all(&mut self) -> Result<Vec<EventRecord>, StreamError> {
        let mut records = Vec::new();
        loop {
            let batch = self.poll().await?;
            if batch.is_empty() {
                return Ok(records);
            }
            records.extend(batch);
        }
    }

    /// Starts reading shards not seen before, from their oldest record.
    async fn discover_shards(&mut self, arn: &str) -> Result<(), StreamError> {
        let described = self
            .streams
            .describe_stream()
            .stream_arn(arn)
            .send()
            .await
            .map_err(unavailable("DescribeStream"))?;
        let shard_ids: Vec<String> = described
            .stream_description()
            .map(|d| d.shards())
            .unwrap_or_default()
            .iter()
            .filter_map(|shard| shard.shard_id().map(str::to_owned))
            .collect();
        for shard in shard_ids {
            if self.shards.contains_key(&shard) {
                continue;
            }
            let iterator = self
                .streams
                .get_shard_iterator()
                .stream_arn(arn)
                .shard_id(&shard)
                .shard_iterator_type(self.first_position.clone())
                .send()
                .await
                .map_err(unavailable("GetShardIterator"))?;
            self.shards
                .insert(shard, iterator.shard_iterator().map(str::to_owned));
        }
        self.first_position = ShardIteratorType::TrimHorizon;
        Ok(())
    }
}

/// A stream record as Lambda delivers it in a DynamoDB event (the same fields, the source ARN
/// added).
fn event_record(record: &Record, stream_arn: &str) -> EventRecord {
    let mut event = EventRecord::default();
    event.event_id = record.event_id().unwrap_or_default().to_owned();
    event.event_name = record
        .event_name()
        .map(|name| name.as_str().to_owned())
        .unwrap_or_default();
    event.event_source = record.event_source().map(str::to_owned);
    event.event_version = record.event_version().map(str::to_owned);
    event.aws_region = record.aws_region().unwrap_or_default().to_owned();
    event.event_source_arn = Some(stream_arn.to_owned());
    let mut change = StreamRecord::default();
    if let Some(stream) = record.dynamodb() {
        change.keys = stream.keys().cloned().unwrap_or_default().into();
        change.new_image = stream.new_image().cloned().unwrap_or_default().into();
        change.old_image = stream.old_image().cloned().unwrap_or_default().into();
        change.sequence_number = stream.sequence_number().map(str::to_owned);
        change.size_bytes = stream.size_bytes().unwrap_or_default();
    }
    event.change = change;
    event
}

/// Reads the stream until the task is dropped, handing every batch to the org-cleanup handler;
/// a batch it reports failed is handed over again (from its first failed record) after a
/// backoff, at most [`MAX_RETRIES`] times.
pub async fn run_workers(store: Store, reader: StreamReader) {
    run_consumer(reader, "deletion jobs", move |event| {
        let store = store.clone();
        async move { org_cleanup::handle(&store, event, org_cleanup::INVOCATION_BUDGET).await }
    })
    .await
}

/// Reads the stream until the task is dropped, handing every batch to `handler` as an event
/// source mapping hands it to its function (each consumer reads with its own reader, as each
/// mapping reads the stream on its own). `waiting` names what waits while the stream is
/// unreadable.
pub async fn run_consumer<H, F>(mut reader: StreamReader, waiting: &'static str, handler: H)
where
    H: Fn(Event) -> F,
    F: Future<Output = DynamoDbEventResponse>,
{
    let mut warned = false;
    loop {
        let records = match reader.poll().await {
            Ok(records) => {
                warned = false;
                records
            }
            Err(error) => {
                if !warned {
                    tracing::warn!(%error, "cannot read the table's stream; {waiting} wait");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if records.is_empty() {
            tokio::time::sleep(POLL_INTERVAL).await;
            continue;
        }
        deliver_to(&handler, records).await;
    }
}

/// One batch to the org-cleanup handler, with the event source mapping's retries.
pub async fn deliver(store: &Store, records: Vec<EventRecord>) {
    deliver_to(
        &|event| org_cleanup::handle(store, event, org_cleanup::INVOCATION_BUDGET),
        records,
    )
    .await
}

/// One batch to `handler`, with the event source mapping's retries.
pub async fn deliver_to<H, F>(handler: &H, mut records: Vec<EventRecord>)
where
    H: Fn(Event) -> F,
    F: Future<Output = DynamoDbEventResponse>,
{
    for attempt in 0..=MAX_RETRIES {
        let response = handler(event_of(records.clone())).await;
        let Some(failed) = response
            .batch_item_failures
            .iter()
            .filter_map(|f| f.item_identifier.clone())
            .min()
        else {
            return;
        };
        records.retain(|r| {
            r.change
                .sequence_number
                .as_ref()
                .is_some_and(|s| sequence_at_or_after(s, &failed))
        });
        if attempt < MAX_RETRIES {
            tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
        }
    }
    tracing::error!(
        records = records.len(),
        "a stream batch failed {MAX_RETRIES} retries and is given up (in AWS: the mapping's dead-letter queue)"
    );
}

/// Sequence numbers are decimal strings (DynamoDB Local pads them with zeros) of growing value
/// within a shard.
fn sequence_at_or_after(sequence: &str, first: &str) -> bool {
    let number = |s: &str| {
        let digits = s.trim_start_matches('0');
        (digits.len(), digits.to_owned())
    };
    number(sequence) >= number(first)
}

/// The DynamoDB event Lambda delivers with `records`.
pub fn event_of(records: Vec<EventRecord>) -> Event {
    let mut event = Event::default();
    event.records = records;
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert!(sequence_at_or_after("100", "99"));
        assert!(sequence_at_or_after("100", "100"));
        assert!(!sequence_at_or_after("99", "100"));
        assert!(
            !sequence_at_or_after("000100", "200"),
            "leading zeros do not count"
        );
        assert!(sequence_at_or_after("000000300", "200"));
    }
}
