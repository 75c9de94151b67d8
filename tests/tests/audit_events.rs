//! The audit log (issue 19, later parts): the events the system, Stripe and key rotation write,
//! each in the same transaction as its change. For each type, the change that succeeds writes
//! exactly one event with the documented fields, and a change that fails or is a no-op (a released
//! invitation released again, a replayed or out-of-order webhook, a second alert claim, a second
//! overage billing, a concurrent rotation, a finished deletion job stepped again) writes none.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tollgate::crypto::KeyRing;
use tollgate::pricing::{Interval, Plan};
use tollgate::rbac::Role;
use tollgate::store::audit::{AuditActor, AuditEvent, AuditQuery, EventType};
use tollgate::store::deletion::StepOutcome;
use tollgate::store::{PlanStatus, TenantId, WebhookCommit, WebhookOutcome};
use tollgate_tests::stripe_standin::{
    StripeStandIn, fixture, invoice_object, signed_event, subscription_object,
};
use tollgate_tests::{Reply, TestApp, tenant_of};

const SERVICE_KEY: &str = "tgsk_test_audit_events_0123456789_0123456789abcd";
const WEBHOOK_SECRET: &str = "whsec_audit_events_test";
const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
/// 520 minutes: 20 above STARTER's 500 included, billed 200 cents.
const OVERAGE_520: &[i64] = &[6000, 6000, 6000, 6000, 6000, 1200];
const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// Every event of `tenant`, newest first, through the store's listing (all pages). Works for a
/// deleted organization too, whose members can no longer call `GET /api/audit`.
async fn events_of(app: &TestApp, tenant: &TenantId) -> Vec<AuditEvent> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = app
            .store
            .list_audit(tenant, &AuditQuery::default(), cursor.as_deref(), 100)
            .await
            .expect("list the audit log");
        events.extend(page.events);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return events,
        }
    }
}

fn of_type(events: &[AuditEvent], kind: EventType) -> Vec<AuditEvent> {
    events.iter().filter(|e| e.kind == kind).cloned().collect()
}

fn map(fields: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

fn iso(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// The stored item of event `id` (its `ttl` included).
async fn event_item(app: &TestApp, id: &str) -> HashMap<String, AttributeValue> {
    app.raw_items()
        .await
        .into_iter()
        .find(|item| {
            item["SK"]
                .as_s()
                .is_ok_and(|sk| sk == &format!("AUDIT#{id}"))
        })
        .expect("the event's item")
}

fn ttl_of(item: &HashMap<String, AttributeValue>) -> Option<i64> {
    item.get("ttl")?.as_n().ok()?.parse().ok()
}

async fn service_app(stripe: Option<&StripeStandIn>) -> TestApp {
    let base = stripe.map(|s| s.base_url.clone());
    TestApp::start_with(move |config| {
        config.service_key_hashes = tollgate::auth::service_key::ServiceKeys::hash_hex(SERVICE_KEY);
        if let Some(base) = base {
            config.stripe_secret_key = Some("sk_test_audit_events".into());
            config.stripe_api_base = base;
            config.stripe_webhook_secrets = WEBHOOK_SECRET.into();
        }
    })
    .await
}

async fn post_call(
    app: &TestApp,
    org: &str,
    call: &str,
    seconds: i64,
    ended: OffsetDateTime,
) -> Reply {
    app.post(
        "/api/usage/calls",
        SERVICE_KEY,
        json!({"organizationId": org, "callId": call, "durationSeconds": seconds, "endedAt": iso(ended)}),
    )
    .await
}

async fn deliver(app: &TestApp, event_type: &str, id: &str, created: i64, object: Value) -> Reply {
    let (body, signature) = signed_event(WEBHOOK_SECRET, event_type, id, created, object);
    app.deliver(&body, Some(&signature)).await
}

#[tokio::test]
async fn an_expired_invitation_released_writes_one_event_and_a_second_release_none() {
    let app = TestApp::start().await;
    let (owner, owner_user) = app
        .organization_on_plan("auth0|exp-owner", Plan::Business, PlanStatus::Active)
        .await;
    let tenant = owner_user.tenant().unwrap();
    let expired = app
        .store
        .invite(
            &tenant,
            (&owner_user.id, Role::Owner),
            None,
            "lapsed@example.com",
            Role::Manager,
            999,
            now() - 60,
        )
        .await
        .unwrap();
    let pending = app
        .store
        .invite(
            &tenant,
            (&owner_user.id, Role::Owner),
            None,
            "pending@example.com",
            Role::Viewer,
            999,
            now() + 86_400,
        )
        .await
        .unwrap();

    // Inviting someone releases the expired invitation first (its seat back), through the route.
    let invited = app
        .post(
            "/api/users",
            &owner,
            json!({"email": "fresh@example.com", "role": "VIEWER"}),
        )
        .await;
    assert_eq!(invited.status, 201, "{}", invited.body);
    let events = events_of(&app, &tenant).await;
    let released = of_type(&events, EventType::InvitationExpired);
    assert_eq!(released.len(), 1, "{events:?}");
    let event = &released[0];
    assert_eq!(event.actor, AuditActor::system());
    assert_eq!(event.target.kind, "invitation");
    assert_eq!(event.target.id, expired.id);
    assert_eq!(event.before, map(&[("role", "MANAGER")]));
    assert_eq!(event.after, None);
    assert_eq!(event.organization_id, tenant.as_str());
    assert!(
        !serde_json::to_string(event).unwrap().contains("lapsed@"),
        "no address in the event"
    );

    // Releasing again, twice at once, finds nothing expired: no event. The pending one stays.
    let (a, b) = futures::join!(
        app.store.release_expired_invitations(&tenant, now()),
        app.store.release_expired_invitations(&tenant, now()),
    );
    assert_eq!((a.unwrap(), b.unwrap()), (0, 0));
    assert_eq!(
        of_type(
            &events_of(&app, &tenant).await,
            EventType::InvitationExpired
        )
        .len(),
        1
    );
    assert!(
        app.store
            .get_invitation(&tenant, &pending.id)
            .await
            .unwrap()
            .is_some()
    );

    // Two releases racing for one newly expired invitation: one releases it, one event.
    let raced = app
        .store
        .invite(
            &tenant,
            (&owner_user.id, Role::Owner),
            None,
            "raced@example.com",
            Role::Admin,
            999,
            now() - 1,
        )
        .await
        .unwrap();
    let (a, b) = futures::join!(
        app.store.release_expired_invitations(&tenant, now()),
        app.store.release_expired_invitations(&tenant, now()),
    );
    assert_eq!(a.unwrap() + b.unwrap(), 1, "released once");
    let released = of_type(
        &events_of(&app, &tenant).await,
        EventType::InvitationExpired,
    );
    assert_eq!(released.len(), 2);
    assert_eq!(released[0].target.id, raced.id);
    assert_eq!(released[0].before, map(&[("role", "ADMIN")]));
}

#[tokio::test]
async fn a_finished_deletion_job_writes_one_event_expiring_with_the_organization() {
    let app = TestApp::start().await;
    let (owner, owner_user) = app
        .organization_on_plan("auth0|gone-owner", Plan::Business, PlanStatus::Active)
        .await;
    let tenant = owner_user.tenant().unwrap();
    app.add_member(&owner, "auth0|gone-member", "VIEWER").await;
    app.store
        .set_organization_plan(&tenant, Some(Plan::Business), PlanStatus::Canceled)
        .await
        .unwrap();
    let deleted = app.delete("/api/organization", &owner).await;
    assert_eq!(deleted.status, 202, "{}", deleted.body);
    // Started, not finished: no organization.deleted yet.
    assert!(
        of_type(
            &events_of(&app, &tenant).await,
            EventType::OrganizationDeleted
        )
        .is_empty()
    );

    // Two workers given the same job race each step to the end: the last step is recorded once.
    let deadline = Instant::now() + Duration::from_secs(600);
    let (a, b) = futures::join!(
        org_cleanup::run_job(&app.store, &tenant, deadline),
        org_cleanup::run_job(&app.store, &tenant, deadline),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let job = app.store.deletion_job(&tenant).await.unwrap().unwrap();
    assert!(job.is_finished(), "{a:?} {b:?}");
    // Stepped again (a redelivered stream record): nothing runs, nothing is written.
    assert_eq!(
        app.store.deletion_step(&tenant, 200).await.unwrap(),
        StepOutcome::NotRunning
    );
    assert!(
        org_cleanup::run_job(&app.store, &tenant, deadline)
            .await
            .unwrap()
            .is_none()
    );

    let events = events_of(&app, &tenant).await;
    let finished = of_type(&events, EventType::OrganizationDeleted);
    assert_eq!(finished.len(), 1, "{events:?}");
    let event = &finished[0];
    assert_eq!(event.actor, AuditActor::system());
    assert_eq!(event.target.kind, "organization");
    assert_eq!(event.target.id, tenant.as_str());
    assert_eq!(event.before, None);
    assert_eq!(
        event.after,
        map(&[
            (
                "membersDetached",
                &job.deletion_members_detached.to_string()
            ),
            ("itemsExpired", &job.deletion_items_expired.to_string()),
        ])
    );
    assert_eq!(job.deletion_members_detached, 2, "owner and member");
    assert_eq!(
        of_type(&events, EventType::OrganizationDeletionStarted).len(),
        1
    );
    // It is the newest event, and expires exactly when the organization's items do (not after
    // AUDIT_RETENTION_DAYS), like the deletion_started event the job expired with them.
    assert_eq!(events[0].kind, EventType::OrganizationDeleted);
    let expires = job.expires_at.expect("the organization expires");
    assert_eq!(ttl_of(&event_item(&app, &event.id).await), Some(expires));
    let started = &of_type(&events, EventType::OrganizationDeletionStarted)[0];
    assert_eq!(ttl_of(&event_item(&app, &started.id).await), Some(expires));
}

#[tokio::test]
async fn each_reencrypted_credential_writes_one_event_and_concurrent_rotations_no_more() {
    let app = TestApp::start_with(|config| {
        config.encryption_keys = Some(format!("k1:{K1}"));
        config.encryption_active_key = Some("k1".into());
    })
    .await;
    let (owner, owner_user) = app
        .organization_on_plan("auth0|rot-owner", Plan::Business, PlanStatus::Active)
        .await;
    let tenant = owner_user.tenant().unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let reply = app
            .post(
                "/api/integrations",
                &owner,
                json!({"type": "crm", "name": format!("CRM {i}"), "credentials": {"token": format!("tok_SECRET_{i}")}}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        ids.push(reply.body["id"].as_str().unwrap().to_owned());
    }
    let old_ciphertexts: Vec<String> = app
        .raw_items()
        .await
        .iter()
        .filter_map(|item| item.get("credentials").and_then(|c| c.as_s().ok()).cloned())
        .collect();
    assert_eq!(old_ciphertexts.len(), 3);

    // Two rotations at once: each credential is re-encrypted by one of them, one event each.
    let ring = KeyRing::from_env_strings(&format!("k1:{K1},k2:{K2}"), "k2").unwrap();
    let (a, b) = futures::join!(
        rotate_keys::rotate_keys(&app.store, &ring),
        rotate_keys::rotate_keys(&app.store, &ring),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.reencrypted + b.reencrypted, 3, "{a:?} {b:?}");
    // A run with everything current re-encrypts nothing and writes nothing.
    let again = rotate_keys::rotate_keys(&app.store, &ring).await.unwrap();
    assert_eq!((again.reencrypted, again.already_current), (0, 3));

    let events = events_of(&app, &tenant).await;
    let rotated = of_type(&events, EventType::KeyRingRotated);
    assert_eq!(rotated.len(), 3, "{events:?}");
    let mut targets: Vec<String> = rotated.iter().map(|e| e.target.id.clone()).collect();
    targets.sort();
    ids.sort();
    assert_eq!(targets, ids, "one event per integration");
    for event in &rotated {
        assert_eq!(event.actor, AuditActor::system());
        assert_eq!(event.target.kind, "integration");
        assert_eq!(event.before, map(&[("keyId", "k1")]));
        assert_eq!(event.after, map(&[("keyId", "k2")]));
    }
    // Key ids only: no ciphertext (old or new), key or credential.
    let new_ciphertexts: Vec<String> = app
        .raw_items()
        .await
        .iter()
        .filter_map(|item| item.get("credentials").and_then(|c| c.as_s().ok()).cloned())
        .collect();
    let stored = format!(
        "{:?}",
        app.raw_items()
            .await
            .iter()
            .filter(|i| i["SK"].as_s().is_ok_and(|sk| sk.starts_with("AUDIT#")))
            .collect::<Vec<_>>()
    );
    for secret in old_ciphertexts
        .iter()
        .chain(&new_ciphertexts)
        .map(String::as_str)
        .chain([K1, K2, "tok_SECRET_"])
    {
        assert!(!stored.contains(secret), "an event holds {secret}");
    }

    // A credential changed between the scan and the write is not replaced: no event. (A new
    // integration, under k1 again: the app still writes with k1.)
    let reply = app
        .post(
            "/api/integrations",
            &owner,
            json!({"type": "crm", "name": "CRM late", "credentials": {"token": "tok_SECRET_late"}}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let late_id = reply.body["id"].as_str().unwrap().to_owned();
    let (page, _) = app.store.scan_integrations(None).await.unwrap();
    let stale = page
        .into_iter()
        .find(|stored| stored.record.id == late_id)
        .unwrap();
    assert!(stale.record.credentials.starts_with("v1:k1:"));
    let first = ring
        .reencrypt(tenant.as_str(), &stale.record.credentials)
        .unwrap();
    let second = ring
        .reencrypt(tenant.as_str(), &stale.record.credentials)
        .unwrap();
    assert_ne!(first, second, "fresh nonces");
    assert!(app.store.replace_credentials(&stale, &first).await.unwrap());
    assert!(
        !app.store
            .replace_credentials(&stale, &second)
            .await
            .unwrap()
    );
    let rotated = of_type(&events_of(&app, &tenant).await, EventType::KeyRingRotated);
    assert_eq!(
        rotated.len(),
        4,
        "the write that replaced wrote one; the stale one none"
    );
    assert_eq!(rotated[0].target.id, late_id);
}

/// An organization with a Stripe customer (from a first checkout), and its tenant.
async fn customer_of(app: &TestApp, sub: &str) -> (String, TenantId, String) {
    let (token, user) = app.owner_with_organization(sub).await;
    let checkout = app
        .post(
            "/api/billing/checkout",
            &token,
            json!({"plan": "PROFESSIONAL", "interval": "monthly"}),
        )
        .await;
    assert_eq!(checkout.status, 200, "{}", checkout.body);
    let tenant = user.tenant().unwrap();
    let customer = app
        .store
        .get_organization(&tenant)
        .await
        .unwrap()
        .unwrap()
        .stripe_customer_id
        .unwrap();
    (token, tenant, customer)
}

#[tokio::test]
async fn a_webhook_that_changes_the_plan_writes_one_event_and_one_that_changes_nothing_none() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing(&stripe, WEBHOOK_SECRET).await;
    let (token, tenant, customer) = customer_of(&app, "auth0|plan-owner").await;
    // Recent times, so the past_due grace period (7 days from the failed payment) is running.
    let t = now() - 3600;
    let period = (t, t + 30 * 86_400);
    let plan_events = |events: &[AuditEvent]| of_type(events, EventType::PlanChanged);
    let summary = |plan: &str, status: &str, seats: &str, api: &str| {
        map(&[
            ("plan", plan),
            ("status", status),
            ("seats", seats),
            ("apiAccess", api),
        ])
    };

    let created = subscription_object("sub_plan", &customer, "active", "price_pro_monthly", period);
    let reply = deliver(
        &app,
        "customer.subscription.created",
        "evt_plan_1",
        t,
        created.clone(),
    )
    .await;
    assert_eq!(reply.body["outcome"], "processed", "{}", reply.body);
    let events = plan_events(&events_of(&app, &tenant).await);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, AuditActor::stripe());
    assert_eq!(events[0].target.kind, "organization");
    assert_eq!(events[0].target.id, tenant.as_str());
    assert_eq!(events[0].before, summary("none", "none", "1", "false"));
    assert_eq!(
        events[0].after,
        summary("PROFESSIONAL", "active", "5", "false")
    );

    // Replayed: a duplicate, nothing written.
    let reply = deliver(
        &app,
        "customer.subscription.created",
        "evt_plan_1",
        t,
        created.clone(),
    )
    .await;
    assert_eq!(reply.body["outcome"], "duplicate");
    // Older news arriving late (an `incomplete` from before the activation): ignored, no event.
    let older = subscription_object(
        "sub_plan",
        &customer,
        "incomplete",
        "price_pro_monthly",
        period,
    );
    let reply = deliver(
        &app,
        "customer.subscription.updated",
        "evt_plan_old",
        t - 50,
        older,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // A change of neither plan, status nor entitlement (cancel at the period's end): no event.
    let mut cancelling = created.clone();
    cancelling["cancel_at_period_end"] = json!(true);
    let reply = deliver(
        &app,
        "customer.subscription.updated",
        "evt_plan_cancel",
        t + 10,
        cancelling,
    )
    .await;
    assert_eq!(reply.body["outcome"], "processed", "{}", reply.body);
    let subscription = app.get("/api/billing/subscription", &token).await.body;
    assert_eq!(
        subscription["cancelAtPeriodEnd"], true,
        "the change itself was applied"
    );
    // The first invoice paid: the subscription stays active on PROFESSIONAL, no event.
    let paid = invoice_object("in_plan_1", &customer, "sub_plan", "paid", t + 1);
    assert_eq!(
        deliver(&app, "invoice.paid", "evt_plan_paid", t + 20, paid)
            .await
            .status,
        200
    );
    assert_eq!(plan_events(&events_of(&app, &tenant).await).len(), 1);

    // An upgrade, a failed payment (grace period: the plan stays), the cancellation.
    let upgraded = subscription_object(
        "sub_plan",
        &customer,
        "active",
        "price_business_monthly",
        period,
    );
    assert_eq!(
        deliver(
            &app,
            "customer.subscription.updated",
            "evt_plan_up",
            t + 100,
            upgraded
        )
        .await
        .body["outcome"],
        "processed"
    );
    let failed = invoice_object("in_plan_2", &customer, "sub_plan", "open", t + 150);
    assert_eq!(
        deliver(
            &app,
            "invoice.payment_failed",
            "evt_plan_fail",
            t + 200,
            failed
        )
        .await
        .body["outcome"],
        "processed"
    );
    let canceled = subscription_object(
        "sub_plan",
        &customer,
        "canceled",
        "price_business_monthly",
        period,
    );
    assert_eq!(
        deliver(
            &app,
            "customer.subscription.deleted",
            "evt_plan_del",
            t + 300,
            canceled.clone()
        )
        .await
        .body["outcome"],
        "processed"
    );
    // Replaying the cancellation changes nothing.
    assert_eq!(
        deliver(
            &app,
            "customer.subscription.deleted",
            "evt_plan_del",
            t + 300,
            canceled
        )
        .await
        .body["outcome"],
        "duplicate"
    );

    let mut events = plan_events(&events_of(&app, &tenant).await);
    events.reverse();
    let changes: Vec<_> = events
        .iter()
        .map(|e| (e.before.clone(), e.after.clone()))
        .collect();
    assert_eq!(
        changes,
        vec![
            (
                summary("none", "none", "1", "false"),
                summary("PROFESSIONAL", "active", "5", "false")
            ),
            (
                summary("PROFESSIONAL", "active", "5", "false"),
                summary("BUSINESS", "active", "999", "true")
            ),
            (
                summary("BUSINESS", "active", "999", "true"),
                summary("BUSINESS", "past_due", "999", "true")
            ),
            (
                summary("BUSINESS", "past_due", "999", "true"),
                summary("BUSINESS", "canceled", "1", "false")
            ),
        ]
    );
    assert!(events.iter().all(|e| e.actor == AuditActor::stripe()));
    // The owner reads them through the API, filtered by type and by the `stripe` actor.
    let listed = app
        .get("/api/audit?type=plan.changed&actor=stripe", &token)
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["events"].as_array().unwrap().len(), 4);
    assert_eq!(
        listed.body["events"][0]["actor"],
        json!({"type": "stripe", "id": "stripe"})
    );
    assert_eq!(listed.body["events"][0]["after"]["status"], "canceled");
}

#[tokio::test]
async fn each_usage_threshold_writes_one_event_when_its_alert_is_claimed() {
    let app = service_app(None).await;
    let (token, user) = app
        .organization_on_plan("auth0|usage-owner", Plan::Starter, PlanStatus::Active)
        .await;
    let org = user.organization_id.clone().unwrap();
    let tenant = user.tenant().unwrap();
    let ended = tollgate_tests::recent_call_end(time::Duration::minutes(10));
    let period = tollgate::usage::organization_period(None, ended);

    // 399 minutes: below 80 % of 500, no alert.
    for (i, seconds) in [6000, 6000, 6000, 5940].iter().enumerate() {
        let reply = post_call(&app, &org, &format!("u-{i}"), *seconds, ended).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        assert_eq!(reply.body["alertsFired"], json!([]));
    }
    assert!(
        of_type(
            &events_of(&app, &tenant).await,
            EventType::UsageThresholdCrossed
        )
        .is_empty()
    );
    // 400: the 80 % alert fires, with its event.
    let reply = post_call(&app, &org, "u-4", 60, ended).await;
    assert_eq!(reply.body["alertsFired"], json!(["80"]), "{}", reply.body);
    let crossed = of_type(
        &events_of(&app, &tenant).await,
        EventType::UsageThresholdCrossed,
    );
    assert_eq!(crossed.len(), 1);
    assert_eq!(crossed[0].actor, AuditActor::system());
    assert_eq!(crossed[0].target.kind, "organization");
    assert_eq!(crossed[0].target.id, org);
    assert_eq!(crossed[0].before, None);
    assert_eq!(
        crossed[0].after,
        map(&[
            ("threshold", "80"),
            ("periodStart", &iso(period.start)),
            ("periodEnd", &iso(period.end)),
            ("minutes", "400"),
            ("minutesIncluded", "500"),
        ])
    );
    // A second claim of the same alert (another call that read the counter before the first
    // claim) fires nothing and writes nothing.
    assert!(
        !app.store
            .fire_alert(
                &tenant,
                &period,
                tollgate::usage::Threshold::Warning80,
                401,
                500
            )
            .await
            .unwrap()
    );

    // Twelve calls at once cross 100 %: exactly one of them fires it, with one event.
    let replies = futures::future::join_all((0..12).map(|i| {
        let (app, org) = (&app, &org);
        async move { post_call(app, org, &format!("rush-{i}"), 600, ended).await }
    }))
    .await;
    let mut fired = Vec::new();
    for reply in &replies {
        assert_eq!(reply.status, 201, "{}", reply.body);
        fired.extend(
            reply.body["alertsFired"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
    }
    assert_eq!(fired, vec![json!("100")]);
    let events = events_of(&app, &tenant).await;
    let crossed = of_type(&events, EventType::UsageThresholdCrossed);
    assert_eq!(crossed.len(), 2, "{events:?}");
    let full = &crossed[0];
    assert_eq!(full.after.as_ref().unwrap()["threshold"], "100");
    let minutes: u64 = full.after.as_ref().unwrap()["minutes"].parse().unwrap();
    assert!((500..=520).contains(&minutes), "{minutes}");
    let usage = app.get("/api/billing/usage", &token).await.body;
    assert_eq!(usage["minutes"], 520);
    assert_eq!(usage["alerts"].as_array().unwrap().len(), 2);
}

fn renewal_invoice(id: &str, customer: &str, subscription: &str, start: i64, end: i64) -> Value {
    let mut object = fixture("invoice");
    object["id"] = json!(id);
    object["customer"] = json!(customer);
    object["status"] = json!("draft");
    object["billing_reason"] = json!("subscription_cycle");
    object["period_start"] = json!(start);
    object["period_end"] = json!(end);
    object["created"] = json!(end);
    object["parent"] = json!({"type": "subscription_details", "quote_details": null,
        "subscription_details": {"metadata": {}, "subscription": subscription}});
    object
}

/// An organization on STARTER whose subscription started 35 days ago (its first period closed),
/// with calls of `seconds` each in that closed period.
async fn closed_period_with_usage(
    app: &TestApp,
    tag: &str,
    seconds: &[i64],
) -> (TenantId, String, tollgate::usage::Period) {
    let sub = format!("auth0|{tag}");
    let (token, _) = app.owner_with_organization(&sub).await;
    let checkout = app
        .post(
            "/api/billing/checkout",
            &token,
            json!({"plan": "STARTER", "interval": "monthly"}),
        )
        .await;
    assert_eq!(checkout.status, 200, "{}", checkout.body);
    let tenant = tenant_of(app, &sub).await;
    let customer = app
        .store
        .get_organization(&tenant)
        .await
        .unwrap()
        .unwrap()
        .stripe_customer_id
        .unwrap();
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let anchor = now - time::Duration::days(35);
    let closed = tollgate::usage::subscription_period_containing(anchor, Interval::Monthly, anchor);
    let (start, end) = (closed.start.unix_timestamp(), closed.end.unix_timestamp());
    let subscription = subscription_object(
        &format!("sub_{tag}"),
        &customer,
        "active",
        "price_starter_monthly",
        (start, end),
    );
    let reply = deliver(
        app,
        "customer.subscription.created",
        &format!("evt_{tag}_sub"),
        start,
        subscription,
    )
    .await;
    assert_eq!(reply.body["outcome"], "processed", "{}", reply.body);
    for (i, seconds) in seconds.iter().enumerate() {
        let reply = post_call(
            app,
            tenant.as_str(),
            &format!("{tag}-{i}"),
            *seconds,
            closed.start + time::Duration::days(2),
        )
        .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    (tenant, customer, closed)
}

#[tokio::test]
async fn overage_billed_writes_one_event_however_often_the_invoice_arrives() {
    let stripe = StripeStandIn::start().await;
    let app = service_app(Some(&stripe)).await;
    let (tenant, customer, closed) = closed_period_with_usage(&app, "bill", OVERAGE_520).await;
    let (start, end) = (closed.start.unix_timestamp(), closed.end.unix_timestamp());
    assert!(of_type(&events_of(&app, &tenant).await, EventType::OverageBilled).is_empty());

    let invoice = renewal_invoice("in_bill", &customer, "sub_bill", start, end);
    let reply = deliver(
        &app,
        "invoice.created",
        "evt_bill_1",
        end + 60,
        invoice.clone(),
    )
    .await;
    assert_eq!(reply.body["outcome"], "processed", "{}", reply.body);
    let item_id = app
        .store
        .overage_record(&tenant, &closed)
        .await
        .unwrap()
        .unwrap()
        .invoice_item_id
        .expect("the invoice item is recorded");
    let billed = of_type(&events_of(&app, &tenant).await, EventType::OverageBilled);
    assert_eq!(billed.len(), 1);
    assert_eq!(billed[0].actor, AuditActor::system());
    assert_eq!(billed[0].target.kind, "organization");
    assert_eq!(billed[0].target.id, tenant.as_str());
    assert_eq!(billed[0].before, None);
    assert_eq!(
        billed[0].after,
        map(&[
            ("periodStart", &iso(closed.start)),
            ("periodEnd", &iso(closed.end)),
            ("minutes", "520"),
            ("overageMinutes", "20"),
            ("amountCents", "200"),
            ("invoiceId", "in_bill"),
            ("invoiceItemId", &item_id),
        ])
    );

    // Replayed, and another invoice.created for the same period: billed already, no event.
    assert_eq!(
        deliver(
            &app,
            "invoice.created",
            "evt_bill_1",
            end + 60,
            invoice.clone()
        )
        .await
        .body["outcome"],
        "duplicate"
    );
    assert_eq!(
        deliver(&app, "invoice.created", "evt_bill_2", end + 90, invoice)
            .await
            .status,
        200
    );
    assert_eq!(stripe.requests_to("POST", "/v1/invoiceitems").len(), 1);
    // Recording the billed marker a second time (a worker that read it pending before the first
    // commit) is refused by its condition: no second event.
    let marker = app
        .store
        .overage_record(&tenant, &closed)
        .await
        .unwrap()
        .unwrap();
    let again = app
        .store
        .commit_webhook(&WebhookCommit {
            event_id: "evt_bill_late_worker".into(),
            event_type: "invoice.created".into(),
            tenant: Some(tenant.clone()),
            billing: None,
            invoice: None,
            overage_billed: Some((closed, marker)),
            plan_change: None,
        })
        .await
        .unwrap();
    assert_ne!(again, WebhookOutcome::Committed);
    assert_eq!(
        of_type(&events_of(&app, &tenant).await, EventType::OverageBilled).len(),
        1
    );

    // Two deliveries of the renewal invoice racing (two event ids): one bill, one event.
    let (tenant, customer, closed) = closed_period_with_usage(&app, "race", OVERAGE_520).await;
    let (start, end) = (closed.start.unix_timestamp(), closed.end.unix_timestamp());
    let invoice = renewal_invoice("in_race", &customer, "sub_race", start, end);
    let (a, b) = futures::join!(
        deliver(
            &app,
            "invoice.created",
            "evt_race_1",
            end + 60,
            invoice.clone()
        ),
        deliver(&app, "invoice.created", "evt_race_2", end + 61, invoice),
    );
    assert_eq!((a.status, b.status), (200, 200), "{} {}", a.body, b.body);
    let billed = of_type(&events_of(&app, &tenant).await, EventType::OverageBilled);
    assert_eq!(billed.len(), 1);
    assert_eq!(billed[0].after.as_ref().unwrap()["invoiceId"], "in_race");
    assert_eq!(billed[0].after.as_ref().unwrap()["amountCents"], "200");
}

#[tokio::test]
async fn a_closed_period_without_overage_is_closed_without_an_event() {
    let stripe = StripeStandIn::start().await;
    let app = service_app(Some(&stripe)).await;
    // 100 minutes of STARTER's 500: nothing to bill.
    let (tenant, customer, closed) = closed_period_with_usage(&app, "under", &[6000]).await;
    let (start, end) = (closed.start.unix_timestamp(), closed.end.unix_timestamp());
    let invoice = renewal_invoice("in_under", &customer, "sub_under", start, end);
    let reply = deliver(&app, "invoice.created", "evt_under", end + 60, invoice).await;
    assert_eq!(reply.body["outcome"], "processed", "{}", reply.body);
    let marker = app
        .store
        .overage_record(&tenant, &closed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((marker.state.as_str(), marker.amount_cents), ("billed", 0));
    assert!(stripe.requests_to("POST", "/v1/invoiceitems").is_empty());
    assert!(of_type(&events_of(&app, &tenant).await, EventType::OverageBilled).is_empty());
}
