//! Throughput against the storage limit: `GET /api/me` and `POST /api/usage/calls` through the dev
//! gateway (the `tollgate_tests::TestApp` harness: the same router `tollgate-dev serve` runs, over a
//! fresh table in DynamoDB Local), against the same DynamoDB operations issued directly from this
//! process — the same `tollgate::store` functions the handlers call, with the same SDK client
//! settings and the same concurrency, without HTTP, authentication or JSON.
//!
//! Per scenario and side: `--warmup` untimed requests (connections, DynamoDB Local's JIT), one
//! probe request whose DynamoDB operations are counted (both sides must issue the same sequence),
//! then `--requests` timed requests from `--concurrency` workers pulling from one shared counter.
//! Gateway workers each own one HTTP/1.1 keep-alive connection (a client per worker, one idle
//! connection kept), so there are never more than `--concurrency` connections.
//!
//! The usage scenario records unique calls of 61–600 s (deterministic) and then checks the period
//! counter holds exactly the minutes and calls sent, on both sides. Errors or an inexact counter
//! fail the run; a ratio under the target is reported, not failed.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use time::OffsetDateTime;
use tollgate::pricing::Plan;
use tollgate::ratelimit::{Bucket, Limit};
use tollgate::store::conflict_backoff as backoff;
use tollgate::store::usage::{CallRecord, RecordOutcome};
use tollgate::store::{NewUser, OrganizationRecord, PlanStatus, Store, TenantId, schema};
use tollgate::usage::organization_period;
use tollgate::usage::{Period, Threshold};
use tollgate_tests::{RequestCounter, TestApp};

use crate::BenchResult;

#[derive(clap::Args)]
pub struct Args {
    /// Timed requests per scenario and side.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Concurrent connections to the gateway, and concurrent operation sequences directly.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Untimed requests per scenario and side before the timed run.
    #[arg(long, default_value_t = 200)]
    pub warmup: usize,
    /// Signed-in users (each the owner of an organization) `GET /api/me` rotates through.
    #[arg(long, default_value_t = 64)]
    pub users: usize,
    /// Markdown section output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The target of the issue: gateway throughput at least this share of the direct figure.
const TARGET_RATIO: f64 = 0.8;
const SERVICE_KEY: &str = "tgsk_bench_throughput_0123456789abcdef_012345678";
/// `handlers::usage::RECORD_ATTEMPTS`: transaction conflicts are retried this often.
const RECORD_ATTEMPTS: u32 = 10;
const USAGE_PLAN: Plan = Plan::Professional;

/// One timed (or untimed) run of one side.
struct RunStats {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: usize,
    first_errors: Vec<String>,
}

impl RunStats {
    fn merge(mut self, other: RunStats) -> RunStats {
        self.requests += other.requests;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.first_errors.extend(other.first_errors);
        self.first_errors.truncate(5);
        self
    }

    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Nearest-rank percentile, in milliseconds.
    fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1].as_secs_f64() * 1000.0
    }
}

/// Runs `requests` calls of `op(worker_state, index)` from `states.len()` concurrent workers that
/// pull indexes `0..requests` from one shared counter. An `Err` is a failed request.
async fn drive<S, F, Fut>(requests: usize, states: Vec<S>, op: F) -> RunStats
where
    S: Send + 'static,
    F: Fn(&S, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = states
        .into_iter()
        .map(|state| {
            let next = next.clone();
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= requests {
                        break;
                    }
                    let sent = Instant::now();
                    let result = op(&state, index).await;
                    latencies.push(sent.elapsed());
                    if let Err(error) = result {
                        errors.push(format!("request {index}: {error}"));
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    let mut errors = Vec::new();
    for worker in workers {
        match worker.await {
            Ok((worker_latencies, worker_errors)) => {
                latencies.extend(worker_latencies);
                errors.extend(worker_errors);
            }
            Err(panic) => errors.push(format!("worker failed: {panic}")),
        }
    }
    let elapsed = started.elapsed();
    RunStats {
        requests,
        elapsed,
        latencies,
        errors: errors.len(),
        first_errors: errors.into_iter().take(5).collect(),
    }
}

/// One HTTP/1.1 client per worker, keeping at most one idle connection: one connection each.
fn worker_clients(concurrency: usize) -> Result<Vec<reqwest::Client>, Error> {
    tollgate::trust::install_ring_defaults();
    (0..concurrency)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(Error::from)
        })
        .collect()
}

/// Opens each worker's connection before timing (a route that touches no DynamoDB item).
async fn connect_all(clients: &[reqwest::Client], base_url: &str) -> Result<(), Error> {
    for client in clients {
        let reply = client
            .get(format!("{base_url}/api/openapi.yaml"))
            .send()
            .await?;
        reply.bytes().await?;
    }
    Ok(())
}

/// Sends one request; `Ok` only with exactly `expected` status.
async fn send_expecting(
    request: reqwest::RequestBuilder,
    expected: u16,
) -> Result<serde_json::Value, String> {
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if status != expected {
        return Err(format!(
            "status {status} (expected {expected}): {}",
            String::from_utf8_lossy(&body)
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("body is not JSON: {e}"))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The handler's whole path for one call after validation, with the same store calls in the same
/// order: organization, then the call + counter transaction (retried on conflicts), then the
/// counter read and any threshold alert.
async fn record_call_directly(
    store: &Store,
    organization_id: &str,
    call_id: &str,
    duration_seconds: i64,
    ended_at: &str,
) -> Result<(), String> {
    let now = OffsetDateTime::now_utc();
    let valid =
        tollgate::usage::validate_call(organization_id, call_id, duration_seconds, ended_at, now)
            .map_err(|e| e.to_string())?;
    let (tenant, mut organization) = store
        .organization_by_id(organization_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("organization not found")?;
    for attempt in 0..RECORD_ATTEMPTS {
        if attempt > 0 {
            organization = store
                .get_organization(&tenant)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("organization not found")?;
        }
        let own = organization_period(organization.billing.as_ref(), valid.ended_at);
        let billed_through = organization
            .overage_billed_through
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
        let current = organization_period(organization.billing.as_ref(), now);
        let period = tollgate::usage::billing_period_for_late_usage(&own, billed_through, &current);
        let record = CallRecord {
            organization_id: organization_id.to_owned(),
            call_id: call_id.to_owned(),
            duration_seconds: valid.duration_seconds,
            minutes: valid.minutes,
            ended_at: rfc3339(valid.ended_at),
            period_start: rfc3339(period.start),
            period_end: rfc3339(period.end),
            recorded_at: rfc3339(now),
        };
        match store
            .record_call(&tenant, &record, &period)
            .await
            .map_err(|e| e.to_string())?
        {
            RecordOutcome::Recorded(_) => {
                fire_alerts(store, &tenant, &organization, &period).await?;
                return Ok(());
            }
            RecordOutcome::Repeated(_) => return Err("call recorded before".to_owned()),
            RecordOutcome::OrganizationMissing => return Err("organization missing".to_owned()),
            RecordOutcome::PeriodBilled => {}
            RecordOutcome::Conflict => backoff(attempt).await,
        }
    }
    Err("busy: transaction conflicts on every attempt".to_owned())
}

/// `handlers::usage::fire_alerts`.
async fn fire_alerts(
    store: &Store,
    tenant: &TenantId,
    organization: &OrganizationRecord,
    period: &Period,
) -> Result<(), String> {
    let included = tollgate::usage::included_minutes(organization.plan);
    if included == 0 {
        return Ok(());
    }
    let counter = store
        .usage_counter(tenant, period)
        .await
        .map_err(|e| e.to_string())?;
    for threshold in Threshold::ALL {
        if counter.minutes >= threshold.boundary(included) && counter.alert_at(threshold).is_none()
        {
            store
                .fire_alert(tenant, period, threshold, counter.minutes, included)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The direct side's own table and client: the SDK client `tollgate::store::dynamodb_client`
/// builds, with a request counter as the gateway's store has.
async fn direct_store(endpoint: &str) -> Result<(Store, RequestCounter), Error> {
    let client = tollgate::store::dynamodb_client(Some(endpoint)).await;
    let table = format!("bench-direct-{}", uuid::Uuid::new_v4().simple());
    schema::create_table(&client, &table).await?;
    let counter = RequestCounter::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        client
            .config()
            .to_builder()
            .interceptor(counter.clone())
            .build(),
    );
    Ok((Store::new(client, table), counter))
}

/// Operation name → count, for the totals line.
fn tally(operations: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for operation in operations {
        *counts.entry(operation.clone()).or_default() += 1;
    }
    counts
}

fn tally_text(operations: &[String]) -> String {
    tally(operations)
        .into_iter()
        .map(|(operation, count)| format!("{count} {operation}"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Scenario {
    name: &'static str,
    gateway: RunStats,
    direct: RunStats,
    /// The operations of one steady-state request (identical on both sides, checked).
    operations: Vec<String>,
    gateway_total: Vec<String>,
    direct_total: Vec<String>,
}

struct UserFixture {
    subject: String,
    email: String,
    name: String,
}

fn users(count: usize) -> Vec<UserFixture> {
    (0..count)
        .map(|i| UserFixture {
            subject: format!("auth0|bench-me-{i:03}"),
            email: format!("bench-me-{i:03}@example.com"),
            name: format!("Bench User {i}"),
        })
        .collect()
}

async fn me_scenario(app: &TestApp, endpoint: &str, args: &Args) -> Result<Scenario, Error> {
    let pool = Arc::new(users(args.users.max(1)));
    // Gateway: each user signs in once and owns an organization, so every measured request is the
    // steady-state path of a returning member.
    let mut authorizations = Vec::with_capacity(pool.len());
    let now = OffsetDateTime::now_utc().unix_timestamp();
    for user in pool.iter() {
        app.owner_with_organization(&user.subject).await;
        // Valid for a day (`TestApp::token`'s last ten minutes, shorter than a long run).
        let token = app.sign(json!({
            "sub": user.subject, "iss": tollgate_tests::TEST_ISSUER, "iat": now, "nbf": now,
            "exp": now + 86_400, "email": user.email, "name": user.name,
        }));
        authorizations.push(format!("Bearer {token}"));
    }
    let authorizations = Arc::new(authorizations);
    let url = Arc::new(format!("{}/api/me", app.base_url));
    let clients = worker_clients(args.concurrency)?;
    connect_all(&clients, &app.base_url).await?;
    let gateway_op = {
        let authorizations = authorizations.clone();
        let url = url.clone();
        move |client: &reqwest::Client, index: usize| {
            let request = client.get(url.as_str()).header(
                "authorization",
                &authorizations[index % authorizations.len()],
            );
            async move { send_expecting(request, 200).await.map(|_| ()) }
        }
    };

    // Direct: the same users and organizations in the direct side's own table.
    let (store, counter) = direct_store(endpoint).await?;
    let limit = Limit {
        max: 100_000,
        window: Duration::from_secs(3600),
    };
    for user in pool.iter() {
        let (record, _) = store
            .get_or_create_user(NewUser {
                subject: user.subject.clone(),
                email: Some(user.email.clone()),
                name: Some(user.name.clone()),
                email_verified: None,
                profile_read_at: None,
            })
            .await?;
        store
            .create_organization(&record, &format!("Org of {}", user.subject), None, None)
            .await?;
    }
    let direct_op = {
        let pool = pool.clone();
        move |store: &Store, index: usize| {
            let store = store.clone();
            let pool = pool.clone();
            async move {
                let user = &pool[index % pool.len()];
                // The pipeline: the user bucket's window, then `me::get_me`.
                let now = OffsetDateTime::now_utc().unix_timestamp();
                let status = store
                    .hit_rate_limit(Bucket::User, &user.subject, limit, now)
                    .await
                    .map_err(|e| e.to_string())?;
                if status.limited {
                    return Err("rate limited".to_owned());
                }
                let (record, created) = store
                    .get_or_create_user(NewUser {
                        subject: user.subject.clone(),
                        email: Some(user.email.clone()),
                        name: Some(user.name.clone()),
                        email_verified: None,
                        profile_read_at: None,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                if created {
                    return Err("user created: not the steady-state path".to_owned());
                }
                // A member skips the invitation look-up; their organization is read.
                let tenant = record.tenant().ok_or("user without organization")?;
                store
                    .get_organization(&tenant)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("organization missing")?;
                Ok(())
            }
        }
    };

    run_both(
        "`GET /api/me` (returning member)",
        app,
        &clients,
        gateway_op,
        &store,
        &counter,
        direct_op,
        args,
    )
    .await
}

/// Warm-up, probe and timed run of both sides of one scenario.
#[allow(clippy::too_many_arguments)]
async fn run_both<G, GF, D, DF>(
    name: &'static str,
    app: &TestApp,
    clients: &[reqwest::Client],
    gateway_op: G,
    store: &Store,
    counter: &RequestCounter,
    direct_op: D,
    args: &Args,
) -> Result<Scenario, Error>
where
    G: Fn(&reqwest::Client, usize) -> GF + Clone + Send + Sync + 'static,
    GF: Future<Output = Result<(), String>> + Send,
    D: Fn(&Store, usize) -> DF + Clone + Send + Sync + 'static,
    DF: Future<Output = Result<(), String>> + Send,
{
    let stores = || vec![store.clone(); args.concurrency];
    // Warm-up of both sides (indexes `0..warmup` of the warm-up index space).
    let warm = drive(args.warmup, clients.to_vec(), gateway_op.clone()).await;
    check_clean(name, "gateway warm-up", &warm)?;
    let warm = drive(args.warmup, stores(), direct_op.clone()).await;
    check_clean(name, "direct warm-up", &warm)?;

    // One probe request per side: the steady-state DynamoDB operations, which must match.
    app.dynamodb_requests.take();
    gateway_op(&clients[0], args.warmup)
        .await
        .map_err(|e| format!("{name}: gateway probe: {e}"))?;
    let gateway_operations = app.dynamodb_requests.take();
    counter.take();
    direct_op(store, args.warmup)
        .await
        .map_err(|e| format!("{name}: direct probe: {e}"))?;
    let direct_operations = counter.take();
    if gateway_operations != direct_operations {
        return Err(format!(
            "{name}: the direct side does not mirror the gateway's DynamoDB operations: gateway {gateway_operations:?}, direct {direct_operations:?}"
        )
        .into());
    }

    // The timed runs use indexes after the warm-up and the probe, in two halves per side run
    // gateway, direct, direct, gateway, so a slow drift of the machine favours neither side.
    let offset = args.warmup + 1;
    let first = args.requests / 2;
    let second = args.requests - first;
    let gateway_from =
        |op: G, start: usize| move |state: &reqwest::Client, index: usize| op(state, start + index);
    let direct_from =
        |op: D, start: usize| move |state: &Store, index: usize| op(state, start + index);
    let gateway_first = drive(
        first,
        clients.to_vec(),
        gateway_from(gateway_op.clone(), offset),
    )
    .await;
    let direct_first = drive(first, stores(), direct_from(direct_op.clone(), offset)).await;
    let direct_second = drive(second, stores(), direct_from(direct_op, offset + first)).await;
    let gateway_second = drive(
        second,
        clients.to_vec(),
        gateway_from(gateway_op, offset + first),
    )
    .await;
    let gateway = gateway_first.merge(gateway_second);
    let direct = direct_first.merge(direct_second);
    // Each counter only sees its own side's requests.
    let gateway_total = app.dynamodb_requests.take();
    let direct_total = counter.take();
    Ok(Scenario {
        name,
        gateway,
        direct,
        operations: gateway_operations,
        gateway_total,
        direct_total,
    })
}

fn check_clean(scenario: &str, phase: &str, stats: &RunStats) -> Result<(), Error> {
    if stats.errors > 0 {
        return Err(format!(
            "{scenario}: {phase}: {} of {} requests failed: {}",
            stats.errors,
            stats.requests,
            stats.first_errors.join("; ")
        )
        .into());
    }
    Ok(())
}

/// Deterministic call durations of 61..=600 s.
fn durations(count: usize, seed: u64) -> Vec<i64> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            61 + ((state >> 33) % 540) as i64
        })
        .collect()
}

struct CounterCheck {
    lines: Vec<String>,
    exact: bool,
}

async fn usage_scenario(
    app: &TestApp,
    endpoint: &str,
    args: &Args,
) -> Result<(Scenario, CounterCheck), Error> {
    // Index space: warm-up calls, the probe, then the timed calls. The warm-up and the probe go to
    // a second organization so the measured organization's counter holds the timed calls only.
    let total = args.warmup + 1 + args.requests;
    let seconds = Arc::new(durations(total, 0x5eed_ca11));
    let ended = tollgate_tests::recent_call_end(time::Duration::minutes(2));
    let ended_text = Arc::new(rfc3339(ended));
    let timed = args.warmup + 1;
    let expected_minutes: u64 = seconds[timed..]
        .iter()
        .map(|s| tollgate::usage::billable_minutes(*s as u64))
        .sum();
    let expected_calls = args.requests as u64;

    // Gateway: an owner whose organization is on a plan, and a warm-up organization.
    let (owner_token, owner) = app
        .organization_on_plan("auth0|bench-usage", USAGE_PLAN, PlanStatus::Active)
        .await;
    let (_, warm_owner) = app
        .organization_on_plan("auth0|bench-usage-warm", USAGE_PLAN, PlanStatus::Active)
        .await;
    let measured_org = owner.organization_id.clone().ok_or("no organization")?;
    let warm_org = warm_owner
        .organization_id
        .clone()
        .ok_or("no organization")?;
    let gateway_bodies: Arc<Vec<String>> = Arc::new(
        (0..total)
            .map(|i| {
                let org = if i < timed { &warm_org } else { &measured_org };
                json!({"organizationId": org, "callId": format!("bench-gw-{i}"),
                       "durationSeconds": seconds[i], "endedAt": ended_text.as_str()})
                .to_string()
            })
            .collect(),
    );
    let url = Arc::new(format!("{}/api/usage/calls", app.base_url));
    let authorization = Arc::new(format!("Bearer {SERVICE_KEY}"));
    let clients = worker_clients(args.concurrency)?;
    connect_all(&clients, &app.base_url).await?;
    let gateway_op = move |client: &reqwest::Client, index: usize| {
        let request = client
            .post(url.as_str())
            .header("authorization", authorization.as_str())
            .header("content-type", "application/json")
            .body(gateway_bodies[index].clone());
        async move { send_expecting(request, 201).await.map(|_| ()) }
    };

    // Direct: the same organizations in the direct side's own table.
    let (store, counter) = direct_store(endpoint).await?;
    let mut direct_orgs = Vec::new();
    for subject in ["auth0|bench-usage", "auth0|bench-usage-warm"] {
        let (user, _) = store
            .get_or_create_user(NewUser {
                subject: subject.to_owned(),
                email: None,
                name: None,
                email_verified: None,
                profile_read_at: None,
            })
            .await?;
        let (tenant, _) = store
            .create_organization(&user, &format!("Org of {subject}"), None, None)
            .await?;
        store
            .set_organization_plan(&tenant, Some(USAGE_PLAN), PlanStatus::Active)
            .await?;
        direct_orgs.push(tenant);
    }
    let direct_measured = direct_orgs[0].clone();
    let direct_ids = Arc::new((
        direct_orgs[0].as_str().to_owned(),
        direct_orgs[1].as_str().to_owned(),
    ));
    let direct_op = {
        let seconds = seconds.clone();
        let ended_text = ended_text.clone();
        move |store: &Store, index: usize| {
            let store = store.clone();
            let seconds = seconds.clone();
            let ended_text = ended_text.clone();
            let ids = direct_ids.clone();
            async move {
                let org = if index < timed { &ids.1 } else { &ids.0 };
                record_call_directly(
                    &store,
                    org,
                    &format!("bench-direct-{index}"),
                    seconds[index],
                    &ended_text,
                )
                .await
            }
        }
    };

    let scenario = run_both(
        "`POST /api/usage/calls` (new call)",
        app,
        &clients,
        gateway_op,
        &store,
        &counter,
        direct_op,
        args,
    )
    .await?;

    // Counters: exactly the timed calls, on both sides.
    let period = tollgate::usage::calendar_month(ended);
    let mut check = CounterCheck {
        lines: Vec::new(),
        exact: true,
    };
    let gateway_tenant = owner.tenant().ok_or("no tenant")?;
    let stored = app.store.usage_counter(&gateway_tenant, &period).await?;
    let line = |check: &mut CounterCheck, side: &str, minutes: u64, calls: u64| {
        let ok = minutes == expected_minutes && calls == expected_calls;
        check.exact &= ok;
        check.lines.push(format!(
            "- {side}: {minutes} minutes / {calls} calls; expected {expected_minutes} / {expected_calls}: {}",
            if ok { "exact" } else { "**NOT EXACT**" }
        ));
    };
    line(
        &mut check,
        "gateway, stored counter",
        stored.minutes,
        stored.calls,
    );
    if tollgate::usage::calendar_month(OffsetDateTime::now_utc()) == period {
        let reply = app.get("/api/billing/usage", &owner_token).await;
        if reply.status != 200 {
            return Err(format!("GET /api/billing/usage: {} {}", reply.status, reply.body).into());
        }
        line(
            &mut check,
            "gateway, `GET /api/billing/usage` as the owner",
            reply.body["minutes"].as_u64().unwrap_or(u64::MAX),
            reply.body["calls"].as_u64().unwrap_or(u64::MAX),
        );
    } else {
        check.lines.push(
            "- gateway, `GET /api/billing/usage`: skipped (the run crossed a month boundary; the stored counter of the calls' period was checked)".to_owned(),
        );
    }
    let stored = store.usage_counter(&direct_measured, &period).await?;
    line(
        &mut check,
        "direct, stored counter",
        stored.minutes,
        stored.calls,
    );
    Ok((scenario, check))
}

pub async fn run(args: Args) -> BenchResult {
    if args.requests == 0 || args.concurrency == 0 {
        return Err("--requests and --concurrency must be at least 1".into());
    }
    let endpoint = tollgate_tests::dynamodb_endpoint();
    let app = TestApp::start_with(|config| {
        config.service_key_hashes = tollgate::auth::service_key::ServiceKeys::hash_hex(SERVICE_KEY);
    })
    .await;
    let me = me_scenario(&app, &endpoint, &args).await?;
    let (usage, counters) = usage_scenario(&app, &endpoint, &args).await?;
    let scenarios = [me, usage];

    let markdown = report(&args, &endpoint, &scenarios, &counters);
    let failed: Vec<String> = scenarios
        .iter()
        .flat_map(|s| {
            [("gateway", &s.gateway), ("direct", &s.direct)]
                .into_iter()
                .filter(|(_, stats)| stats.errors > 0)
                .map(move |(side, stats)| {
                    format!(
                        "{} ({side}): {} errors: {}",
                        s.name,
                        stats.errors,
                        stats.first_errors.join("; ")
                    )
                })
        })
        .collect();
    if !failed.is_empty() || !counters.exact {
        eprint!("{markdown}");
        let mut problems = failed;
        if !counters.exact {
            problems.push(format!(
                "usage counters not exact: {}",
                counters.lines.join(" ")
            ));
        }
        return Err(problems.join("\n").into());
    }
    Ok(markdown)
}

/// Two decimals, truncated: a shown 0.80 is never a 0.797 that missed the target.
fn ratio_text(ratio: f64) -> String {
    format!("{:.2}", (ratio * 100.0).floor() / 100.0)
}

fn describe(operations: &[String], scenario: &str) -> String {
    let roles: Vec<&str> = if scenario.contains("/api/me") {
        vec![
            "rate-limit window of the user bucket",
            "user",
            "organization",
        ]
    } else {
        vec![
            "organization",
            "call record put + counter ADD + organization condition check",
            "period counter, for threshold alerts",
        ]
    };
    operations
        .iter()
        .enumerate()
        .map(|(i, operation)| match roles.get(i) {
            Some(role) if operations.len() == roles.len() => format!("`{operation}` ({role})"),
            _ => format!("`{operation}`"),
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

fn report(args: &Args, endpoint: &str, scenarios: &[Scenario], counters: &CounterCheck) -> String {
    let profile = if cfg!(debug_assertions) {
        "debug build"
    } else {
        "optimized build"
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut out = String::new();
    out.push_str("## Throughput: dev gateway vs direct DynamoDB\n\n");
    out.push_str(&format!(
        "{} timed requests per scenario and side at {} concurrent connections (gateway) / {} concurrent operation sequences (direct), after {} untimed warm-up requests per side, the timed requests run in halves (gateway, direct, direct, gateway; req/s = requests / summed time); DynamoDB Local at {endpoint}, {profile}, {cores} cores shared by the load generator, the gateway, the SDK and DynamoDB Local. \
\"Direct\" calls the same `tollgate::store` functions the handler calls, in the same order, with the same SDK client settings (`tollgate::store::dynamodb_client`) on a table of its own: no HTTP, no token verification, no JSON.\n\n",
        args.requests, args.concurrency, args.concurrency, args.warmup
    ));
    out.push_str("| scenario | requests | concurrency | gateway req/s | direct req/s | ratio | gateway p50 / p99 ms | direct p50 / p99 ms | errors |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut verdicts = Vec::new();
    for s in scenarios {
        let ratio = s.gateway.per_second() / s.direct.per_second().max(1e-9);
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.0} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {} |\n",
            s.name,
            s.gateway.requests,
            args.concurrency,
            s.gateway.per_second(),
            s.direct.per_second(),
            ratio_text(ratio),
            s.gateway.percentile_ms(0.50),
            s.gateway.percentile_ms(0.99),
            s.direct.percentile_ms(0.50),
            s.direct.percentile_ms(0.99),
            s.gateway.errors + s.direct.errors,
        ));
        verdicts.push(format!(
            "{} {} ({})",
            s.name,
            ratio_text(ratio),
            if ratio >= TARGET_RATIO {
                "met"
            } else {
                "**not met**"
            }
        ));
    }
    out.push_str(&format!(
        "\nTarget: gateway throughput ≥ {TARGET_RATIO} × direct, zero errors, usage counters exact. Ratio: {}.\n\n",
        verdicts.join("; ")
    ));
    out.push_str("DynamoDB operations per request (counted on one steady-state request of each side; the two sides issued the same sequence):\n\n");
    for s in scenarios {
        out.push_str(&format!(
            "- {}: {}. During the timed runs: gateway {}; direct {}.\n",
            s.name,
            describe(&s.operations, s.name),
            tally_text(&s.gateway_total),
            tally_text(&s.direct_total),
        ));
    }
    out.push_str(
        "\nThe harness's rate limits are high enough that nothing is limited (user bucket 100,000 per hour), but the limiter's conditional `UpdateItem` on the `RATE#user#<sub>` window still runs on every `GET /api/me`, so it is in both sides' figures. `POST /api/usage/calls` is authenticated by service key and not rate limited, so it has no such write. \
`TransactWriteItems` beyond one per call are transaction conflicts on the shared period counter, retried as the handler retries them; `UpdateItem`s on the usage side are the 80 % and 100 % threshold alerts (once each per period, plus any losing concurrent attempts).\n\n",
    );
    out.push_str("Usage counters after the timed runs (warm-up and probe calls went to a second organization):\n\n");
    for line in &counters.lines {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!(
        "\nCommands:\n\n```sh\nDYNAMODB_ENDPOINT=\"$(infra/scripts/dynamodb-local.sh start bench)\"\nexport DYNAMODB_ENDPOINT\ntollgate-bench throughput --requests {} --concurrency {} --warmup {} --users {}\ninfra/scripts/dynamodb-local.sh stop bench\n```\n",
        args.requests, args.concurrency, args.warmup, args.users
    ));
    out
}
