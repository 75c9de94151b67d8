//! The `org-cleanup` function (no route): runs organization deletion jobs. `DELETE
//! /api/organization` marks the organization deleted and starts its job on the organization's
//! item; that change, and each step the job records there, reaches this function through the
//! table's stream (in AWS an event source mapping filtered to such changes; locally the dev
//! gateway's stream worker hands it the same [`Event`]). It answers the records it could not
//! finish as batch item failures, so the stream gives them again; a step is idempotent, so
//! doing one twice changes nothing twice.

use std::time::{Duration, Instant};

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde_dynamo::AttributeValue;

use tollgate::config::Config;
use tollgate::store::deletion::{DELETION_BATCH, DeletionJob, StepOutcome};
use tollgate::store::{Store, StoreError, TenantId};

/// How long one invocation goes on stepping a job; the step it records last is on the stream and
/// runs the rest. Well inside the template's 120 s timeout.
pub const INVOCATION_BUDGET: Duration = Duration::from_secs(60);

/// The organization whose deletion job a stream record shows running: a change of an
/// organization's own item whose new image has `deletionStatus = running`. The same test as the
/// template's `FilterCriteria`.
pub fn running_deletion(record: &EventRecord) -> Option<TenantId> {
    let text = |item: &serde_dynamo::Item, name: &str| match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value.clone()),
        _ => None,
    };
    let change = &record.change;
    if text(&change.keys, "SK").as_deref() != Some("ORG")
        || text(&change.new_image, "deletionStatus").as_deref() != Some("running")
    {
        return None;
    }
    TenantId::from_partition_key(&text(&change.keys, "PK")?)
}

/// Steps `tenant`'s deletion job until it finishes, another worker takes it over, or `deadline`
/// passes; answers the job as this run left it (`None`: it was not running).
pub async fn run_job(
    store: &Store,
    tenant: &TenantId,
    deadline: Instant,
) -> Result<Option<DeletionJob>, StoreError> {
    let mut last = None;
    loop {
        // Boxed: the step's future is deep enough to overflow the compiler's layout query.
        match Box::pin(store.deletion_step(tenant, DELETION_BATCH)).await? {
            StepOutcome::Advanced(job) => {
                tracing::debug!(
                    organization_id = %tenant.as_str(),
                    step = job.deletion_step,
                    "deletion step recorded"
                );
                last = Some(job);
                if Instant::now() >= deadline {
                    return Ok(last);
                }
            }
            StepOutcome::Finished(job) => return Ok(Some(job)),
            StepOutcome::Superseded | StepOutcome::NotRunning => return Ok(last),
        }
    }
}

/// One batch of stream records: each organization with a running deletion job is stepped once
/// per batch, however many of its records the batch holds. A job that fails is reported by its
/// first record's sequence number, so the stream gives that record (and those after it) again.
pub async fn handle(store: &Store, event: Event, budget: Duration) -> DynamoDbEventResponse {
    let deadline = Instant::now() + budget;
    let mut jobs: Vec<(TenantId, Option<String>)> = Vec::new();
    for record in &event.records {
        if let Some(tenant) = running_deletion(record)
            && !jobs.iter().any(|(seen, _)| *seen == tenant)
        {
            jobs.push((tenant, record.change.sequence_number.clone()));
        }
    }
    let mut response = DynamoDbEventResponse::default();
    for (tenant, sequence_number) in jobs {
        if let Err(error) = run_job(store, &tenant, deadline).await {
            tracing::error!(organization_id = %tenant.as_str(), %error, "deletion step failed; the stream will retry");
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = sequence_number;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// The Lambda: one store per cold start, then [`handle`] per batch.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    tollgate::telemetry::init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => return Err(tollgate::lambda::init_failed(error.into()).await),
    };
    let store = Store::connect(&config).await;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Event>| {
            let store = store.clone();
            async move {
                Ok::<_, lambda_runtime::Error>(
                    handle(&store, event.payload, INVOCATION_BUDGET).await,
                )
            }
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch in the shape Lambda delivers (events/org-cleanup-stream.json, also the
    /// `sam local invoke OrgCleanupFunction` example): a deletion job's change, a call record's
    /// insert (whose image the filter would not pass) and a TTL removal with no new image.
    fn sample() -> Event {
        let text = include_str!("../../../events/org-cleanup-stream.json");
        serde_json::from_str(text).expect("the sample parses as Lambda's DynamoDB event")
    }

    #[test]
    fn only_an_organization_item_showing_a_running_job_starts_a_step() {
        let event = sample();
        let found: Vec<Option<String>> = event
            .records
            .iter()
            .map(|r| running_deletion(r).map(|t| t.as_str().to_owned()))
            .collect();
        assert_eq!(
            found,
            vec![
                Some("org_0193f1c2a7b47c55a1e0b3f0c2d4e6f8".to_owned()),
                None,
                None
            ]
        );
        assert_eq!(
            event.records[0].change.sequence_number.as_deref(),
            Some("111000000000000000000000001")
        );
    }

    #[test]
    fn a_partition_key_that_is_not_an_organization_names_no_tenant() {
        let mut event = sample();
        let record = &mut event.records[0];
        for key in ["USER#auth0|x", "ORG#", "org_1"] {
            record
                .change
                .keys
                .insert("PK".to_owned(), AttributeValue::S(key.to_owned()));
            assert_eq!(running_deletion(record), None, "{key}");
        }
    }

    #[test]
    fn the_answer_is_lambdas_partial_batch_response() {
        let mut response = DynamoDbEventResponse::default();
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some("111000000000000000000000001".to_owned());
        response.batch_item_failures.push(failure);
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "111000000000000000000000001"}]})
        );
    }
}
