//! Deleting an organization: `DELETE /api/organization` marks it deleted and answers 202 at
//! once; the deletion job (the org-cleanup Lambda's handler, run here as the dev gateway runs it,
//! from DynamoDB Local's stream) detaches the members, withdraws the invitations and gives every
//! item a `ttl`, resumably after any failure.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use futures::StreamExt as _;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tollgate::pricing::Plan;
use tollgate::store::usage::CallRecord;
use tollgate::store::{PlanStatus, Store, TenantId, keys};
use tollgate_dev::stream::event_of;
use tollgate_tests::{TestApp, assert_error, tenant_of};

type Item = HashMap<String, AttributeValue>;

/// Every item of `tenant`'s partition, all pages.
async fn partition(app: &TestApp, tenant: &TenantId) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let output = app
            .store
            .client()
            .query()
            .table_name(app.store.table_name())
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(keys::tenant_partition(tenant)))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("query the partition");
        items.extend(output.items.unwrap_or_default());
        match output.last_evaluated_key {
            Some(key) => start = Some(key),
            None => return items,
        }
    }
}

fn ttl_of(item: &Item) -> Option<i64> {
    item.get("ttl")?.as_n().ok()?.parse().ok()
}

fn sort_key(item: &Item) -> String {
    item["SK"].as_s().cloned().unwrap_or_default()
}

/// `count` calls of `tenant` recorded as usage-tracking records them, 8 at a time.
async fn record_calls(store: &Store, tenant: &TenantId, count: usize) {
    let now = OffsetDateTime::now_utc();
    let period = tollgate::usage::organization_period(None, now);
    let ended_at = now
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let recorded: Vec<_> = futures::stream::iter(0..count)
        .map(|n| {
            let call = CallRecord {
                organization_id: tenant.as_str().to_owned(),
                call_id: format!("call-{n:05}"),
                duration_seconds: 61,
                minutes: 2,
                ended_at: ended_at.clone(),
                period_start: period.key(),
                period_end: period.key(),
                recorded_at: ended_at.clone(),
            };
            async move {
                // Calls of one period share its counter: concurrent transactions on it conflict,
                // and usage-tracking answers such a call 409 for its caller to send again.
                let mut attempt = 0;
                loop {
                    match store.record_call(tenant, &call, &period).await {
                        Err(tollgate::store::StoreError::ConcurrentUpdate)
                        | Ok(tollgate::store::usage::RecordOutcome::Conflict)
                            if attempt < 20 =>
                        {
                            attempt += 1;
                            tollgate::store::conflict_backoff(attempt).await;
                        }
                        outcome => return outcome,
                    }
                }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for outcome in recorded {
        outcome.expect("call recorded");
    }
}

/// An organization on a canceled plan (deletable) with a MANAGER, a pending invitation and
/// `calls` recorded calls: (owner token, member token, tenant).
async fn organization_to_delete(
    app: &TestApp,
    name: &str,
    calls: usize,
) -> (String, String, TenantId) {
    let (owner, _) = app
        .organization_on_plan(
            &format!("auth0|{name}-owner"),
            Plan::Business,
            PlanStatus::Active,
        )
        .await;
    let (member, _) = app
        .add_member(&owner, &format!("auth0|{name}-member"), "MANAGER")
        .await;
    let invited = app
        .post(
            "/api/users",
            &owner,
            json!({"email": format!("{name}-pending@example.com"), "role": "VIEWER"}),
        )
        .await;
    assert_eq!(invited.status, 201, "{}", invited.body);
    let tenant = tenant_of(app, &format!("auth0|{name}-owner")).await;
    // The first few as usage-tracking records them (with their period counter), the rest written
    // in batches of the same shape.
    let recorded = calls.min(5);
    record_calls(&app.store, &tenant, recorded).await;
    tollgate_tests::write_call_records(&app.store, &tenant, recorded..calls)
        .await
        .expect("write call records");
    app.store
        .set_organization_plan(&tenant, Some(Plan::Business), PlanStatus::Canceled)
        .await
        .expect("cancel the plan");
    (owner, member, tenant)
}

/// Runs `tenant`'s job to its end as the org-cleanup Lambda does, with a long budget.
async fn run_job(store: &Store, tenant: &TenantId) -> tollgate::store::deletion::DeletionJob {
    let deadline = Instant::now() + Duration::from_secs(600);
    org_cleanup::run_job(store, tenant, deadline)
        .await
        .expect("the job runs")
        .expect("the job was running")
}

/// Everything a finished job leaves: every item of the partition expiring by the organization's
/// `ttl`, nobody naming the organization, no invitation look-up left.
async fn assert_wound_up(app: &TestApp, tenant: &TenantId, subjects: &[&str]) {
    let items = partition(app, tenant).await;
    let organization = items
        .iter()
        .find(|item| sort_key(item) == "ORG")
        .expect("the organization's item is kept for the retention period");
    let expires = ttl_of(organization).expect("the organization expires");
    let now = OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (expires - now - 30 * 24 * 3600).abs() < 600,
        "~30 days ahead"
    );
    let without: Vec<String> = items
        .iter()
        .filter(|item| ttl_of(item).is_none_or(|ttl| ttl > expires))
        .map(sort_key)
        .collect();
    assert!(without.is_empty(), "items that never expire: {without:?}");
    for subject in subjects {
        let user = app
            .store
            .get_user(subject)
            .await
            .expect("read")
            .expect("user");
        assert_ne!(
            user.organization_id.as_deref(),
            Some(tenant.as_str()),
            "{subject} still names the deleted organization"
        );
    }
    let invitees = app
        .raw_items()
        .await
        .into_iter()
        .filter(|item| {
            item["PK"].as_s().is_ok_and(|pk| pk.starts_with("INVITEE#"))
                && item["SK"].as_s().ok() == Some(&keys::tenant_partition(tenant))
        })
        .count();
    assert_eq!(invitees, 0, "invitation look-ups withdrawn");
}

#[tokio::test]
async fn deleting_answers_202_at_once_and_the_job_finishes_the_rest() {
    let app = TestApp::start().await;
    let (owner, member, tenant) = organization_to_delete(&app, "quick", 5).await;
    let deleted = app.delete("/api/organization", &owner).await;
    assert_eq!(deleted.status, 202, "{}", deleted.body);
    assert_eq!(deleted.body["id"], tenant.as_str());
    assert_eq!(deleted.body["deleted"], true);
    assert_eq!(deleted.body["deletion"]["status"], "running");
    assert_eq!(deleted.body["deletion"]["phase"], "members");
    assert!(
        deleted.body["retainedUntil"].is_string(),
        "{}",
        deleted.body
    );

    // Gone to every member at once, before the job ran.
    for token in [&owner, &member] {
        assert_error(
            &app.get("/api/organization", token).await,
            400,
            "organization_required",
        );
        assert_eq!(
            app.get("/api/me", token).await.body["organization"],
            Value::Null
        );
    }
    // Sending it again continues the job instead of failing.
    let again = app.delete("/api/organization", &owner).await;
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(again.body["deletion"]["status"], "running");

    let job = run_job(&app.store, &tenant).await;
    assert!(job.is_finished());
    assert_eq!(job.deletion_members_detached, 2, "owner and manager");
    // 2 members, 1 invitation, 5 calls, 1 usage counter, 5 audit events (organization created,
    // member invited and joined, invitation pending, deletion started).
    assert_eq!(job.deletion_items_expired, 14, "{job:?}");
    assert_wound_up(&app, &tenant, &["auth0|quick-owner", "auth0|quick-member"]).await;
    // The addressee of the withdrawn invitation sees nothing to accept.
    let invitee = app.verified_token("auth0|quick-invitee", "quick-pending@example.com", None);
    let me = app.get("/api/me", &invitee).await;
    assert_eq!(me.body["invitations"], json!([]), "{}", me.body);
    // Once detached, the former owner has no organization to delete.
    assert_error(
        &app.delete("/api/organization", &owner).await,
        400,
        "organization_required",
    );
}

/// Found live: members were left naming the deleted organization, so creating or accepting
/// another answered 409. Now a member the job has not reached yet is free at once.
#[tokio::test]
async fn a_member_of_a_deleted_organization_can_found_or_join_another_before_the_job_runs() {
    let app = TestApp::start().await;
    let (owner, _, tenant) = organization_to_delete(&app, "free", 0).await;
    let (inviter, _) = app
        .organization_on_plan("auth0|free-other", Plan::Business, PlanStatus::Active)
        .await;
    let invitation = app
        .post(
            "/api/users",
            &inviter,
            json!({"email": "auth0-free-member@example.com", "role": "VIEWER"}),
        )
        .await;
    assert_eq!(invitation.status, 201, "{}", invitation.body);
    assert_eq!(app.delete("/api/organization", &owner).await.status, 202);

    let founded = app
        .post(
            "/api/organizations",
            &owner,
            json!({"name": "Second Start"}),
        )
        .await;
    assert_eq!(founded.status, 201, "{}", founded.body);
    let member = app.verified_token("auth0|free-member", "auth0-free-member@example.com", None);
    let joined = app
        .post(
            &format!(
                "/api/me/invitations/{}/accept",
                invitation.body["id"].as_str().unwrap()
            ),
            &member,
            json!({}),
        )
        .await;
    assert_eq!(joined.status, 200, "{}", joined.body);

    // The job then leaves both where they are now.
    let job = run_job(&app.store, &tenant).await;
    assert_eq!(job.deletion_members_detached, 2, "both memberships ended");
    let owner_now = app
        .store
        .get_user("auth0|free-owner")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        owner_now.organization_id.as_deref(),
        founded.body["id"].as_str()
    );
    assert_eq!(app.get("/api/organization", &member).await.status, 200);
    // An organization that is not gone still blocks creating another.
    assert_error(
        &app.post("/api/organizations", &member, json!({"name": "Third"}))
            .await,
        409,
        "already_in_organization",
    );
}

/// Fails every DynamoDB `UpdateItem` after the first `allowed`, as an outage mid-job would.
#[derive(Debug, Clone)]
struct FailAfter {
    allowed: usize,
    seen: Arc<AtomicUsize>,
}

impl aws_sdk_dynamodb::config::Intercept for FailAfter {
    fn name(&self) -> &'static str {
        "FailAfter"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("");
        if target.ends_with(".UpdateItem")
            && self.seen.fetch_add(1, Ordering::SeqCst) >= self.allowed
        {
            return Err("injected: DynamoDB stopped answering".into());
        }
        Ok(())
    }
}

fn failing_store(store: &Store, allowed: usize) -> Store {
    let client = aws_sdk_dynamodb::Client::from_conf(
        store
            .client()
            .config()
            .to_builder()
            .interceptor(FailAfter {
                allowed,
                seen: Arc::default(),
            })
            .build(),
    );
    Store::new(client, store.table_name())
}

/// The test: 2,000 call records, DynamoDB failing mid-way through the job, then the job
/// resumed: every item expires, every member is detached, and the counts are exact (nothing
/// done twice). The synchronous part's time is printed (the bench row measures it).
#[tokio::test]
async fn a_job_over_2000_calls_survives_a_failure_mid_way_and_resumes_exactly() {
    let app = TestApp::start().await;
    let (owner, _, tenant) = organization_to_delete(&app, "big", 2000).await;
    let items_before = partition(&app, &tenant).await.len();
    assert_eq!(
        items_before,
        1 + 2 + 1 + 2000 + 1 + 4,
        "org, members, invitation, calls, counter, audit events"
    );

    let started = Instant::now();
    let deleted = app.delete("/api/organization", &owner).await;
    let synchronous = started.elapsed();
    assert_eq!(deleted.status, 202, "{}", deleted.body);
    println!("DELETE /api/organization with 2,000 calls answered in {synchronous:?}");

    // 700 updates in, DynamoDB stops answering: the job fails where it is.
    let failing = failing_store(&app.store, 700);
    let failure =
        org_cleanup::run_job(&failing, &tenant, Instant::now() + Duration::from_secs(600)).await;
    assert!(failure.is_err(), "{failure:?}");
    let stalled = app.store.deletion_job(&tenant).await.unwrap().unwrap();
    assert!(stalled.is_running(), "{stalled:?}");
    assert!(
        stalled.deletion_step > 0,
        "some steps were recorded: {stalled:?}"
    );
    let expired_so_far = partition(&app, &tenant)
        .await
        .iter()
        .filter(|item| ttl_of(item).is_some())
        .count();
    assert!(
        expired_so_far > 1 && expired_so_far < items_before,
        "cut mid-way: {expired_so_far} of {items_before}"
    );
    // The stream gives the record again: a handler run over real stream records resumes it.
    let reader_records = stream_records(&app).await;
    let response = org_cleanup::handle(
        &app.store,
        event_of(reader_records),
        Duration::from_secs(600),
    )
    .await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    let job = app.store.deletion_job(&tenant).await.unwrap().unwrap();
    assert!(job.is_finished(), "{job:?}");
    assert_eq!(job.deletion_members_detached, 2);
    assert_eq!(
        job.deletion_items_expired as usize, items_before,
        "every item but the organization's own, each counted once, and the deletion's audit event"
    );
    assert_wound_up(&app, &tenant, &["auth0|big-owner", "auth0|big-member"]).await;
}

/// Every record on the test table's stream so far, read as the dev gateway reads it.
async fn stream_records(app: &TestApp) -> Vec<aws_lambda_events::event::dynamodb::EventRecord> {
    tollgate_dev::stream::StreamReader::new(
        Some(&tollgate_tests::dynamodb_endpoint()),
        app.store.table_name(),
    )
    .await
    .read_all()
    .await
    .expect("read the stream")
}

/// A failing job is answered as a batch item failure naming its record, so the stream gives it
/// again; other organizations' jobs in the batch still run.
#[tokio::test]
async fn a_failing_job_is_reported_by_its_record_and_others_in_the_batch_still_run() {
    let app = TestApp::start().await;
    let (first_owner, _, first) = organization_to_delete(&app, "first", 3).await;
    let (second_owner, _, second) = organization_to_delete(&app, "second", 3).await;
    assert_eq!(
        app.delete("/api/organization", &first_owner).await.status,
        202
    );
    assert_eq!(
        app.delete("/api/organization", &second_owner).await.status,
        202
    );
    let records = stream_records(&app).await;
    let running: Vec<_> = records
        .iter()
        .filter_map(|r| {
            Some((
                org_cleanup::running_deletion(r)?,
                r.change.sequence_number.clone()?,
            ))
        })
        .collect();
    assert_eq!(
        running.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(),
        vec![first.clone(), second.clone()],
        "exactly the two organizations' deletion records"
    );
    // No write succeeds: both jobs fail, each reported by its own record.
    let response = org_cleanup::handle(
        &failing_store(&app.store, 0),
        event_of(records.clone()),
        Duration::from_secs(60),
    )
    .await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .filter_map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, vec![running[0].1.clone(), running[1].1.clone()]);
    // The response is what Lambda reads: `batchItemFailures[].itemIdentifier`.
    let wire = serde_json::to_value(&response).unwrap();
    assert_eq!(
        wire["batchItemFailures"][0]["itemIdentifier"],
        json!(running[0].1)
    );

    let response =
        org_cleanup::handle(&app.store, event_of(records), Duration::from_secs(60)).await;
    assert!(response.batch_item_failures.is_empty());
    for tenant in [&first, &second] {
        assert!(
            app.store
                .deletion_job(tenant)
                .await
                .unwrap()
                .unwrap()
                .is_finished()
        );
    }
}

/// `tollgate-dev serve` runs deletion jobs from DynamoDB Local's stream by itself.
#[tokio::test]
async fn the_dev_gateway_finishes_a_deletion_from_the_stream() {
    let app = TestApp::start().await;
    let (owner, member, tenant) = organization_to_delete(&app, "streamed", 20).await;
    let reader = tollgate_dev::stream::StreamReader::new(
        Some(&tollgate_tests::dynamodb_endpoint()),
        app.store.table_name(),
    )
    .await;
    let workers = tokio::spawn(tollgate_dev::stream::run_workers(app.store.clone(), reader));
    assert_eq!(app.delete("/api/organization", &owner).await.status, 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    let finished = loop {
        let job = app.store.deletion_job(&tenant).await.unwrap().unwrap();
        if job.is_finished() || Instant::now() > deadline {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    workers.abort();
    assert!(
        finished.is_finished(),
        "the stream worker did not finish it: {finished:?}"
    );
    assert_eq!(finished.deletion_members_detached, 2);
    assert_wound_up(
        &app,
        &tenant,
        &["auth0|streamed-owner", "auth0|streamed-member"],
    )
    .await;
    assert_eq!(
        app.get("/api/me", &member).await.body["user"]["organizationId"],
        Value::Null
    );
}

/// An organization deleted before deletion was a job (marked, its detaching cut short) is
/// finished by sending the DELETE again from a member it did not detach.
#[tokio::test]
async fn a_deletion_from_before_jobs_is_resumed_by_sending_it_again() {
    let app = TestApp::start().await;
    let (owner, _, tenant) = organization_to_delete(&app, "legacy", 2).await;
    // What the synchronous deletion left when cut short: deletedAt and ttl, no job fields.
    app.store
        .client()
        .update_item()
        .table_name(app.store.table_name())
        .key("PK", AttributeValue::S(keys::tenant_partition(&tenant)))
        .key("SK", AttributeValue::S("ORG".to_owned()))
        .update_expression("SET deletedAt = :now, #ttl = :ttl")
        .expression_attribute_names("#ttl", "ttl")
        .expression_attribute_values(":now", AttributeValue::S("2026-11-01T00:00:00Z".to_owned()))
        .expression_attribute_values(
            ":ttl",
            AttributeValue::N(
                (OffsetDateTime::now_utc().unix_timestamp() + 30 * 24 * 3600).to_string(),
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        app.store.deletion_step(&tenant, 10).await.unwrap(),
        tollgate::store::deletion::StepOutcome::NotRunning,
        "no job to run until it is resumed"
    );
    let resumed = app.delete("/api/organization", &owner).await;
    assert_eq!(resumed.status, 202, "{}", resumed.body);
    assert_eq!(resumed.body["deletion"]["status"], "running");
    run_job(&app.store, &tenant).await;
    assert_wound_up(
        &app,
        &tenant,
        &["auth0|legacy-owner", "auth0|legacy-member"],
    )
    .await;
}

/// An organization's API keys stop at its deletion, and the job removes their look-up items
/// (which live outside its partition), so nothing of them outlives the retention period.
#[tokio::test]
async fn a_deleted_organizations_api_keys_stop_and_their_look_ups_go() {
    let app = TestApp::start().await;
    let (owner, _, tenant) = organization_to_delete(&app, "keyed", 1).await;
    // Keys need a plan with API access: back on BUSINESS to create one, then canceled again.
    app.store
        .set_organization_plan(&tenant, Some(Plan::Business), PlanStatus::Active)
        .await
        .unwrap();
    let created = app
        .post(
            "/api/api-keys",
            &owner,
            json!({"name": "CRM", "role": "VIEWER"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let key = created.body["key"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/api/organization", &key).await.status, 200);
    app.store
        .set_organization_plan(&tenant, Some(Plan::Business), PlanStatus::Canceled)
        .await
        .unwrap();
    assert_eq!(app.delete("/api/organization", &owner).await.status, 202);
    let refused = app.get("/api/organization", &key).await;
    assert!(
        refused.status == 401 || refused.status == 400 || refused.status == 403,
        "a deleted organization's key is refused: {} {}",
        refused.status,
        refused.body
    );
    run_job(&app.store, &tenant).await;
    let lookup = app
        .store
        .client()
        .get_item()
        .table_name(app.store.table_name())
        .key("PK", AttributeValue::S(format!("APIKEY#{id}")))
        .key("SK", AttributeValue::S("APIKEY".to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert!(lookup.item.is_none(), "the key's look-up item is gone");
    assert_error(
        &app.get("/api/organization", &key).await,
        401,
        "invalid_token",
    );
    assert_wound_up(&app, &tenant, &["auth0|keyed-owner", "auth0|keyed-member"]).await;
}

/// Before the job has detached them, a deleted organization's members read and change nothing of
/// it, on every tenant route, those whose handler never reads the organization included (members,
/// integrations, invoices, usage, API keys): the organization is gone to them at once. Only a
/// repeated `DELETE` goes on, and nudges the job.
#[tokio::test]
async fn a_deleted_organizations_members_reach_none_of_its_data_before_the_job_runs() {
    let app = TestApp::start().await;
    let (owner, member, tenant) = organization_to_delete(&app, "lurker", 1).await;
    assert_eq!(app.delete("/api/organization", &owner).await.status, 202);
    // With the deletion's own audit event.
    let before = partition(&app, &tenant).await.len();

    for path in [
        "/api/users",
        "/api/integrations",
        "/api/billing/invoices",
        "/api/billing/usage",
        "/api/api-keys",
        "/api/organization",
    ] {
        assert_error(&app.get(path, &owner).await, 400, "organization_required");
    }
    assert_error(
        &app.get("/api/users", &member).await,
        400,
        "organization_required",
    );
    assert_error(
        &app.get("/api/billing/usage", &member).await,
        400,
        "organization_required",
    );
    // Nothing new lands in the partition the job may already have passed.
    assert_error(
        &app.post(
            "/api/integrations",
            &owner,
            json!({"type": "twilio", "name": "Late", "credentials": {"authToken": "x"}}),
        )
        .await,
        400,
        "organization_required",
    );
    assert_error(
        &app.post(
            "/api/users",
            &owner,
            json!({"email": "late@example.com", "role": "VIEWER"}),
        )
        .await,
        400,
        "organization_required",
    );
    assert_eq!(partition(&app, &tenant).await.len(), before);
    // The owner, still attached, can send the DELETE again: the job's state, nudged.
    let again = app.delete("/api/organization", &owner).await;
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(again.body["deletion"]["status"], "running");
    // The organization's own pending invitation cannot be accepted: it is gone.
    let invitation = partition(&app, &tenant)
        .await
        .iter()
        .find_map(|item| sort_key(item).strip_prefix("INVITE#").map(str::to_owned))
        .expect("the pending invitation");
    let invitee = app.verified_token("auth0|lurker-pending", "lurker-pending@example.com", None);
    // Signing in lists no invitation of a deleted organization, and accepting it is refused.
    let me = app.get("/api/me", &invitee).await;
    assert_eq!(me.status, 201, "{}", me.body);
    assert!(!me.body.to_string().contains(&invitation), "{}", me.body);
    assert_error(
        &app.post(
            &format!("/api/me/invitations/{invitation}/accept"),
            &invitee,
            json!({}),
        )
        .await,
        404,
        "invitation_not_found",
    );
    // Once detached, the DELETE is refused like any tenant route.
    run_job(&app.store, &tenant).await;
    assert_error(
        &app.delete("/api/organization", &owner).await,
        400,
        "organization_required",
    );
}

/// A stream record (or an item) that shows a running job on an organization that is not deleted
/// winds nothing up: the step reads the organization and refuses to touch a live one.
#[tokio::test]
async fn a_forged_running_job_on_a_live_organization_touches_nothing() {
    let app = TestApp::start().await;
    let (owner, _) = app
        .organization_on_plan("auth0|forged-owner", Plan::Business, PlanStatus::Active)
        .await;
    let (member, _) = app
        .add_member(&owner, "auth0|forged-member", "VIEWER")
        .await;
    let tenant = tenant_of(&app, "auth0|forged-owner").await;
    // The organization's item claims a running job, but it was never deleted.
    app.store
        .client()
        .update_item()
        .table_name(app.store.table_name())
        .set_key(Some(HashMap::from([
            (
                "PK".to_owned(),
                AttributeValue::S(keys::organization(&tenant).0),
            ),
            ("SK".to_owned(), AttributeValue::S("ORG".to_owned())),
        ])))
        .update_expression(
            "SET deletionStatus = :running, deletionPhase = :members, deletionStep = :zero, \
             deletionMembersDetached = :zero, deletionItemsExpired = :zero",
        )
        .expression_attribute_values(":running", AttributeValue::S("running".into()))
        .expression_attribute_values(":members", AttributeValue::S("members".into()))
        .expression_attribute_values(":zero", AttributeValue::N("0".into()))
        .send()
        .await
        .unwrap();
    // A stream record for it, exactly as a real job's change would look.
    let record = stream_records(&app)
        .await
        .into_iter()
        .rev()
        .find(|r| org_cleanup::running_deletion(r).as_ref() == Some(&tenant))
        .expect("the change is on the stream");
    let response =
        org_cleanup::handle(&app.store, event_of(vec![record]), Duration::from_secs(60)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        app.store.deletion_step(&tenant, 200).await.unwrap(),
        tollgate::store::deletion::StepOutcome::NotRunning
    );
    // Nobody detached, no item expiring: the organization is as it was.
    assert_eq!(app.get("/api/organization", &member).await.status, 200);
    assert_eq!(app.get("/api/users", &owner).await.status, 200);
    assert!(
        partition(&app, &tenant)
            .await
            .iter()
            .filter(|item| !sort_key(item).starts_with("AUDIT#"))
            .all(|item| ttl_of(item).is_none()),
        "no item of a live organization gets a ttl (audit events carry their retention's)"
    );
}
