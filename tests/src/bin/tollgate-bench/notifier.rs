//! The notifier's throughput: audit events per second from DynamoDB Local's stream, through the
//! notifier's stream side, moto's SQS and its queue side, to a local receiver that answers 200 at
//! once. The notifier runs as `tollgate-dev serve` runs it (`tollgate_dev::notify::run`: one
//! stream reader, four queue pollers).
//!
//! The events are written first (renames through the dev gateway's router, 16 at a time), then
//! the notifier starts from the stream's oldest record, so the time measured is the notifier's
//! alone: from its start to the receiver's last delivery.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::json;
use tollgate::pricing::Plan;
use tollgate::store::PlanStatus;
use tollgate_tests::TestApp;
use tollgate_tests::moto::Moto;

use crate::BenchResult;

#[derive(clap::Args)]
pub struct Args {
    /// Audit events to deliver (each to one endpoint), one run per value.
    #[arg(long, value_delimiter = ',', default_value = "400,2000")]
    pub events: Vec<usize>,
    /// Organizations the events are spread over, each with one endpoint.
    #[arg(long, default_value_t = 20)]
    pub organizations: usize,
    /// Markdown section output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const LIMIT: Duration = Duration::from_secs(600);

struct Row {
    events: usize,
    writing: Duration,
    delivering: Duration,
    requests: usize,
}

pub async fn run(args: Args) -> BenchResult {
    let mut rows = Vec::new();
    for events in &args.events {
        rows.push(measure(*events, args.organizations).await?);
    }
    let mut markdown = format!(
        "## Outbound webhooks: notifier throughput\n\n\
         `tollgate-bench notifier`: N audit events (`organization.updated`, written first through \
         the dev gateway's router) of {organizations} organizations, each with one endpoint on a \
         local receiver that answers 204 at once. The notifier runs as `tollgate-dev serve` runs \
         it: one reader of DynamoDB Local's stream queuing deliveries in moto's SQS, four pollers \
         attempting them (ten per batch, at once). **Delivered in** is the time from the \
         notifier's start to the last delivery; more requests than events are redeliveries \
         (at least once).\n\n\
         | events | written in | delivered in | events/s | requests received |\n\
         |---:|---:|---:|---:|---:|\n",
        organizations = args.organizations,
    );
    for row in &rows {
        markdown.push_str(&format!(
            "| {} | {:.1} s | {:.1} s | {:.0} | {} |\n",
            row.events,
            row.writing.as_secs_f64(),
            row.delivering.as_secs_f64(),
            row.events as f64 / row.delivering.as_secs_f64().max(0.001),
            row.requests
        ));
    }
    markdown.push('\n');
    Ok(markdown)
}

async fn measure(
    events: usize,
    organizations: usize,
) -> Result<Row, Box<dyn std::error::Error + Send + Sync>> {
    if organizations == 0 || events < organizations {
        return Err("--events must be at least --organizations, which must be at least 1".into());
    }
    let app = TestApp::start_with(|config| {
        config.encryption_keys = Some(format!("k1:{K1}"));
        config.encryption_active_key = Some("k1".to_owned());
        config.webhook_allow_loopback = true;
    })
    .await;
    let moto = tokio::task::spawn_blocking(Moto::start).await?;
    let sqs = tollgate_dev::notify::sqs_client(Some(&moto.endpoint)).await;
    let queues = tollgate_dev::notify::create_queues(&sqs, 3).await?;

    let delivered = Arc::new(AtomicUsize::new(0));
    let counter = delivered.clone();
    let router = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            axum::http::StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let receiver = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });

    let mut owners = Vec::new();
    for n in 0..organizations {
        let (token, _) = app
            .organization_on_plan(
                &format!("auth0|bench-hooks-{n}"),
                Plan::Business,
                PlanStatus::Active,
            )
            .await;
        let created = app
            .post(
                "/api/webhooks/endpoints",
                &token,
                json!({"url": url, "eventTypes": ["organization.updated"]}),
            )
            .await;
        if created.status != 201 {
            return Err(format!("endpoint: {} {}", created.status, created.body).into());
        }
        owners.push(token);
    }
    let started = Instant::now();
    // One organization's renames one after another (each is conditional on the name it read),
    // 16 organizations at once.
    let per_organization = events / organizations;
    let events = per_organization * organizations;
    let renamed: Vec<u16> = futures::stream::iter(owners.iter().enumerate())
        .map(|(o, token)| {
            let app = &app;
            async move {
                let mut statuses = Vec::with_capacity(per_organization);
                for n in 0..per_organization {
                    let name = format!("Bench {o}-{n}");
                    statuses.push(
                        app.patch("/api/organization", token, json!({"name": name}))
                            .await
                            .status,
                    );
                }
                statuses
            }
        })
        .buffer_unordered(16)
        .flat_map(futures::stream::iter)
        .collect()
        .await;
    let writing = started.elapsed();
    if let Some(status) = renamed.iter().find(|s| **s != 200) {
        return Err(format!("a rename answered {status}").into());
    }

    let settings = notifier::NotifierSettings {
        queue_url: queues.delivery_url.clone(),
        sqs_endpoint: Some(moto.endpoint.clone()),
        timeout: Duration::from_secs(10),
        retry_base: Duration::from_secs(30),
        retry_cap: Duration::from_secs(3600),
    };
    let notifier = Arc::new(notifier::Notifier::new(app.state.clone(), sqs, settings)?);
    let reader = tollgate_dev::stream::StreamReader::new(
        Some(&tollgate_tests::dynamodb_endpoint()),
        app.store.table_name(),
    )
    .await;
    let started = Instant::now();
    let worker = tokio::spawn(tollgate_dev::notify::run(notifier, reader));
    while delivered.load(Ordering::SeqCst) < events {
        if started.elapsed() > LIMIT {
            worker.abort();
            return Err(format!(
                "only {} of {} events delivered in {LIMIT:?}",
                delivered.load(Ordering::SeqCst),
                events
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivering = started.elapsed();
    // Anything more would be a duplicate: give it a moment to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    worker.abort();
    receiver.abort();
    let requests = delivered.load(Ordering::SeqCst);
    eprintln!(
        "notifier: {events} events of {organizations} organizations delivered in {delivering:?} ({requests} requests)"
    );
    Ok(Row {
        events,
        writing,
        delivering,
        requests,
    })
}
