//! Usage metering through the dev gateway against DynamoDB Local: idempotent call records,
//! exact counters under concurrency, alerts once, late usage carried, overage billed once.

use std::collections::HashMap;

use serde_json::{Value, json};
use time::OffsetDateTime;
use tollgate::pricing::{Interval, Plan};
use tollgate::store::PlanStatus;
use tollgate_tests::stripe_standin::{StripeStandIn, fixture, signed_event, subscription_object};
use tollgate_tests::{Reply, TestApp, assert_error};

const SERVICE_KEY: &str = "tgsk_test_call_service_0123456789_0123456789abcd";
const SECRET: &str = "whsec_usage_test";

async fn app_with_service_key(stripe: Option<&StripeStandIn>) -> TestApp {
    let base = stripe.map(|s| s.base_url.clone());
    TestApp::start_with(move |config| {
        config.service_key_hashes = tollgate::auth::service_key::ServiceKeys::hash_hex(SERVICE_KEY);
        if let Some(base) = base {
            config.stripe_secret_key = Some("sk_test_usage".into());
            config.stripe_api_base = base;
            config.stripe_webhook_secrets = SECRET.into();
        }
    })
    .await
}

fn iso(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn post_call(
    app: &TestApp,
    organization: &str,
    call: &str,
    seconds: i64,
    ended: OffsetDateTime,
) -> Reply {
    app.post(
        "/api/usage/calls",
        SERVICE_KEY,
        json!({"organizationId": organization, "callId": call, "durationSeconds": seconds, "endedAt": iso(ended)}),
    )
    .await
}

#[tokio::test]
async fn calls_are_recorded_once_and_repeats_answer_the_original() {
    let app = app_with_service_key(None).await;
    let (token, user) = app
        .organization_on_plan("auth0|meter", Plan::Starter, PlanStatus::Active)
        .await;
    let org = user.organization_id.clone().unwrap();
    let ended = tollgate_tests::recent_call_end(time::Duration::minutes(3));

    app.dynamodb_requests.take();
    let first = post_call(&app, &org, "call-1", 61, ended).await;
    assert_eq!(first.status, 201, "{}", first.body);
    // Organization, the call + counter transaction, the counter (for alerts): nothing more.
    assert_eq!(
        app.dynamodb_requests.take(),
        ["GetItem", "TransactWriteItems", "GetItem"]
    );
    assert_eq!(first.body["minutes"], 2, "ceil(61/60)");
    let again = post_call(&app, &org, "call-1", 61, ended).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.body["recordedAt"], first.body["recordedAt"],
        "the original record"
    );
    assert_error(
        &post_call(&app, &org, "call-1", 62, ended).await,
        409,
        "call_conflict",
    );
    let zero = post_call(&app, &org, "call-0", 0, ended).await;
    assert_eq!((zero.status, zero.body["minutes"].as_u64()), (201, Some(0)));

    let usage = app.get("/api/billing/usage", &token).await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    assert_eq!(
        (usage.body["minutes"].as_u64(), usage.body["calls"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(usage.body["minutesIncluded"], 500);
    assert_eq!(usage.body["overageMinutes"], 0);
    assert_eq!(usage.body["overageCostFormatted"], "$0.00");
    assert_eq!(usage.body["plan"], "STARTER");
    assert_eq!(usage.body["alerts"], json!([]));
    let month = tollgate::usage::calendar_month(OffsetDateTime::now_utc());
    assert_eq!(usage.body["periodStart"], iso(month.start));
}

#[tokio::test]
async fn bad_input_names_the_field_and_writes_nothing() {
    let app = app_with_service_key(None).await;
    let (token, user) = app.owner_with_organization("auth0|strict").await;
    let org = user.organization_id.clone().unwrap();
    let now = OffsetDateTime::now_utc();
    let before = app.all_items().await;
    for (body, field) in [
        (
            json!({"organizationId": org, "callId": "c", "durationSeconds": -1, "endedAt": iso(now)}),
            "durationSeconds",
        ),
        (
            json!({"organizationId": org, "callId": "c", "durationSeconds": 86_401, "endedAt": iso(now)}),
            "durationSeconds",
        ),
        (
            json!({"organizationId": org, "callId": "c", "durationSeconds": 60, "endedAt": iso(now + time::Duration::hours(1))}),
            "endedAt",
        ),
        (
            json!({"organizationId": org, "callId": "c", "durationSeconds": 60, "endedAt": "yesterday"}),
            "endedAt",
        ),
        (
            json!({"organizationId": org, "callId": "", "durationSeconds": 60, "endedAt": iso(now)}),
            "callId",
        ),
        (
            json!({"organizationId": org, "durationSeconds": 60, "endedAt": iso(now)}),
            "callId",
        ),
        (
            json!({"callId": "c", "durationSeconds": 60, "endedAt": iso(now)}),
            "organizationId",
        ),
        (
            json!({"organizationId": org, "callId": "c", "endedAt": iso(now)}),
            "durationSeconds",
        ),
    ] {
        let reply = app.post("/api/usage/calls", SERVICE_KEY, body).await;
        assert_error(&reply, 400, "invalid_field");
        assert!(
            reply.body["message"].as_str().unwrap().contains(field),
            "{field}: {}",
            reply.body
        );
    }
    let unknown = post_call(&app, "org_nope", "c", 60, now).await;
    assert_error(&unknown, 404, "organization_not_found");
    let absurd = post_call(&app, &"o".repeat(3000), "c", 60, now).await;
    assert_error(&absurd, 404, "organization_not_found");
    // A user token, even an owner's, is not a service key.
    assert_error(
        &post_call_with(&app, &token, &org).await,
        403,
        "service_key_required",
    );
    assert_error(
        &post_call_with(
            &app,
            "tgsk_wrong_key_0123456789abcdefghijklmnopqrstuvw",
            &org,
        )
        .await,
        401,
        "invalid_token",
    );
    assert_eq!(app.all_items().await, before);
}

/// Usage older than the oldest billing period still open (the one before the current period)
/// is refused, naming `endedAt`, and nothing is written; the previous period is still open.
#[tokio::test]
async fn ended_at_older_than_the_oldest_open_billing_period_is_refused() {
    let app = app_with_service_key(None).await;
    let (_, user) = app.owner_with_organization("auth0|late").await;
    let org = user.organization_id.clone().unwrap();
    let now = OffsetDateTime::now_utc();
    let previous_month = tollgate::usage::calendar_month(
        tollgate::usage::calendar_month(now).start - time::Duration::seconds(1),
    );
    let before = app.all_items().await;
    for ended in [
        now - time::Duration::days(70),
        previous_month.start - time::Duration::seconds(1),
    ] {
        let reply = post_call(&app, &org, "too-old", 60, ended).await;
        assert_error(&reply, 400, "invalid_field");
        let message = reply.body["message"].as_str().unwrap();
        assert!(message.contains("endedAt"), "{message}");
        assert!(message.contains(&iso(previous_month.start)), "{message}");
    }
    // Year -1 in UTC: RFC 3339 cannot write it back, so it is a 400, never an empty string.
    let reply = app
        .post(
            "/api/usage/calls",
            SERVICE_KEY,
            json!({"organizationId": org, "callId": "year-0", "durationSeconds": 60, "endedAt": "0000-01-01T00:30:00+01:00"}),
        )
        .await;
    assert_error(&reply, 400, "invalid_field");
    assert!(reply.body["message"].as_str().unwrap().contains("endedAt"));
    assert_eq!(app.all_items().await, before, "nothing written");

    // The first instant of the previous period is still open.
    let reply = post_call(&app, &org, "last-month", 60, previous_month.start).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["periodStart"], iso(previous_month.start));
}

async fn post_call_with(app: &TestApp, credential: &str, org: &str) -> Reply {
    app.post(
        "/api/usage/calls",
        credential,
        json!({"organizationId": org, "callId": "x", "durationSeconds": 60, "endedAt": iso(OffsetDateTime::now_utc())}),
    )
    .await
}

#[tokio::test]
async fn usage_is_readable_with_billing_or_analytics_read() {
    let app = app_with_service_key(None).await;
    let (owner, _) = app
        .organization_on_plan("auth0|roles", Plan::Business, PlanStatus::Active)
        .await;
    for (role, allowed) in [
        ("ADMIN", true),
        ("MANAGER", true),
        ("VIEWER", true),
        ("OPERATOR", false),
    ] {
        let (token, _) = app
            .add_member(&owner, &format!("auth0|u-{role}"), role)
            .await;
        let reply = app.get("/api/billing/usage", &token).await;
        if allowed {
            assert_eq!(reply.status, 200, "{role}: {}", reply.body);
        } else {
            assert_error(&reply, 403, "forbidden");
        }
    }
}

/// 32 clients, 1,600 events (a quarter of them repeats), crossing 80 % and 100 % together.
#[tokio::test]
async fn concurrent_usage_counts_exactly_and_alerts_once() {
    let app = app_with_service_key(None).await;
    let (token, user) = app
        .organization_on_plan("auth0|busy", Plan::Starter, PlanStatus::Active)
        .await;
    let org = user.organization_id.clone().unwrap();
    let ended = tollgate_tests::recent_call_end(time::Duration::minutes(10));
    let mut seed = 7u64;
    let mut random = move |bound: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % bound
    };
    let unique: Vec<(String, i64)> = (0..1200)
        .map(|i| (format!("call-{i}"), 1 + random(45) as i64))
        .collect();
    let mut events: Vec<(String, i64)> = unique.clone();
    for _ in 0..400 {
        events.push(unique[random(1200) as usize].clone());
    }
    for i in (1..events.len()).rev() {
        events.swap(i, random(i as u64 + 1) as usize);
    }
    let expected_minutes: u64 = unique
        .iter()
        .map(|(_, s)| tollgate::usage::billable_minutes(*s as u64))
        .sum();
    assert!(
        expected_minutes > 500,
        "the run must cross both thresholds ({expected_minutes})"
    );

    let chunks: Vec<Vec<(String, i64)>> = events.chunks(50).map(|c| c.to_vec()).collect();
    assert_eq!(chunks.len(), 32);
    let results = futures::future::join_all(chunks.into_iter().map(|chunk| {
        let app = &app;
        let org = org.clone();
        async move {
            let mut fired = Vec::new();
            let mut statuses = Vec::new();
            for (call, seconds) in chunk {
                let mut reply = post_call(app, &org, &call, seconds, ended).await;
                // The call-handling service retries a busy answer with the same (idempotent) call.
                let mut retried = false;
                for _ in 0..20 {
                    if reply.status != 503 {
                        break;
                    }
                    retried = true;
                    reply = post_call(app, &org, &call, seconds, ended).await;
                }
                statuses.push((call, reply.status, retried));
                if let Some(alerts) = reply.body["alertsFired"].as_array() {
                    fired.extend(alerts.iter().map(|a| a.as_str().unwrap().to_owned()));
                }
            }
            (statuses, fired)
        }
    }))
    .await;
    // A 201 says this request recorded the call. After a 503 the outcome was open: a 200 then may
    // mean the busy attempt recorded it, so such a call counts as recorded once, whatever its
    // repeats answered. No call may be answered 201 twice.
    let mut created: HashMap<String, usize> = HashMap::new();
    let mut recorded: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut fired: HashMap<String, usize> = HashMap::new();
    for (statuses, alerts) in results {
        for (call, status, retried) in statuses {
            assert!(status == 201 || status == 200, "status {status}");
            if status == 201 {
                *created.entry(call.clone()).or_default() += 1;
            }
            if status == 201 || retried {
                recorded.insert(call);
            }
        }
        for alert in alerts {
            *fired.entry(alert).or_default() += 1;
        }
    }
    assert!(
        created.values().all(|n| *n == 1),
        "a call answered 201 twice"
    );
    assert_eq!(recorded.len(), 1200, "each call recorded exactly once");
    assert_eq!(
        fired,
        HashMap::from([("80".to_owned(), 1), ("100".to_owned(), 1)]),
        "each alert fired once"
    );

    let usage = app.get("/api/billing/usage", &token).await.body;
    assert_eq!(usage["minutes"].as_u64(), Some(expected_minutes));
    assert_eq!(usage["calls"].as_u64(), Some(1200));
    assert_eq!(
        usage["overageMinutes"].as_u64(),
        Some(expected_minutes - 500)
    );
    assert_eq!(
        usage["overageCost"].as_u64(),
        Some((expected_minutes - 500) * 10)
    );
    let thresholds: Vec<&str> = usage["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["threshold"].as_str().unwrap())
        .collect();
    assert_eq!(thresholds, vec!["80", "100"]);
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

/// An organization on STARTER whose subscription started 35 days ago: its first period is closed,
/// the second open.
struct Subscribed {
    token: String,
    org: String,
    customer: String,
    closed: tollgate::usage::Period,
    open: tollgate::usage::Period,
}

async fn subscribed_starter(app: &TestApp, tag: &str) -> Subscribed {
    let (token, user) = app.owner_with_organization(&format!("auth0|{tag}")).await;
    let org = user.organization_id.clone().unwrap();
    let checkout = app
        .post(
            "/api/billing/checkout",
            &token,
            json!({"plan": "STARTER", "interval": "monthly"}),
        )
        .await;
    assert_eq!(checkout.status, 200, "{}", checkout.body);
    let customer = app
        .store
        .get_organization(&user.tenant().unwrap())
        .await
        .unwrap()
        .unwrap()
        .stripe_customer_id
        .unwrap();
    // Whole seconds, as Stripe's timestamps are.
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let anchor = now - time::Duration::days(35);
    let closed = tollgate::usage::subscription_period_containing(anchor, Interval::Monthly, anchor);
    let open = tollgate::usage::next_period(&closed, anchor, Interval::Monthly);
    assert!(open.contains(now));
    let (start, end) = (closed.start.unix_timestamp(), closed.end.unix_timestamp());
    let (body, signature) = signed_event(
        SECRET,
        "customer.subscription.created",
        &format!("evt_{tag}_sub"),
        start,
        subscription_object(
            &format!("sub_{tag}"),
            &customer,
            "active",
            "price_starter_monthly",
            (start, end),
        ),
    );
    assert_eq!(
        app.deliver(&body, Some(&signature)).await.body["outcome"],
        "processed"
    );
    Subscribed {
        token,
        org,
        customer,
        closed,
        open,
    }
}

/// A period closes with a late event before and after its invoice: the invoice gets one item
/// for the overage as frozen, the later late event is carried into the open period, and a
/// redelivered `invoice.created` adds nothing.
#[tokio::test]
async fn overage_of_a_closed_period_is_billed_exactly_once() {
    let stripe = StripeStandIn::start().await;
    let app = app_with_service_key(Some(&stripe)).await;
    let Subscribed {
        token,
        org,
        customer,
        closed,
        open,
    } = subscribed_starter(&app, "overage").await;
    let (start, end) = (closed.start.unix_timestamp(), closed.end.unix_timestamp());

    // 520 minutes in the closed period (one of them arriving late, before the invoice).
    for (i, seconds) in [6000i64, 6000, 6000, 6000, 6000].iter().enumerate() {
        let reply = post_call(
            &app,
            &org,
            &format!("closed-{i}"),
            *seconds,
            closed.start + time::Duration::days(2),
        )
        .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        assert_eq!(reply.body["periodStart"], iso(closed.start));
    }
    let late_before = post_call(
        &app,
        &org,
        "late-before",
        1200,
        closed.end - time::Duration::minutes(1),
    )
    .await;
    assert_eq!(
        late_before.body["periodStart"],
        iso(closed.start),
        "not billed yet: its own period"
    );

    let invoice = renewal_invoice("in_renewal", &customer, "sub_overage", start, end);
    let (body, signature) = signed_event(
        SECRET,
        "invoice.created",
        "evt_ov_inv",
        end + 60,
        invoice.clone(),
    );
    let reply = app.deliver(&body, Some(&signature)).await;
    assert_eq!(reply.body["outcome"], "processed", "{}", reply.body);
    let items = stripe.requests_to("POST", "/v1/invoiceitems");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].form_value("invoice"), Some("in_renewal"));
    assert_eq!(items[0].form_value("customer"), Some(customer.as_str()));
    assert_eq!(
        items[0].form_value("amount"),
        Some("200"),
        "520 minutes - 500 included = 20 x 10 cents"
    );
    assert_eq!(items[0].form_value("metadata[overageMinutes]"), Some("20"));
    let key = items[0].idempotency_key().unwrap().to_owned();
    assert!(key.starts_with(&format!("tollgate-overage-{org}-")));

    // A call of the closed period arriving now is carried into the open one.
    let late_after = post_call(
        &app,
        &org,
        "late-after",
        120,
        closed.end - time::Duration::minutes(2),
    )
    .await;
    assert_eq!(late_after.status, 201);
    assert_eq!(
        late_after.body["periodStart"],
        iso(open.start),
        "carried into the next bill"
    );
    let usage = app.get("/api/billing/usage", &token).await.body;
    assert_eq!(
        (usage["minutes"].as_u64(), usage["calls"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(usage["periodStart"], iso(open.start));

    // Redelivery, and another invoice.created for the same period, add nothing.
    assert_eq!(
        app.deliver(&body, Some(&signature)).await.body["outcome"],
        "duplicate"
    );
    let (other, other_signature) =
        signed_event(SECRET, "invoice.created", "evt_ov_inv_2", end + 90, invoice);
    assert_eq!(
        app.deliver(&other, Some(&other_signature)).await.status,
        200
    );
    assert_eq!(stripe.requests_to("POST", "/v1/invoiceitems").len(), 1);

    let invoices = app.get("/api/billing/invoices", &token).await.body;
    let renewal = invoices["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "in_renewal")
        .unwrap()
        .clone();
    assert_eq!(
        (
            renewal["overageMinutes"].as_u64(),
            renewal["overageCost"].as_u64()
        ),
        (Some(20), Some(200))
    );
}

#[tokio::test]
async fn a_failed_invoice_item_is_retried_with_the_same_key_and_amount() {
    let stripe = StripeStandIn::start().await;
    let app = app_with_service_key(Some(&stripe)).await;
    let Subscribed {
        org,
        customer,
        closed,
        ..
    } = subscribed_starter(&app, "retry").await;
    let (start, end) = (closed.start.unix_timestamp(), closed.end.unix_timestamp());
    post_call(
        &app,
        &org,
        "big",
        86_400,
        closed.start + time::Duration::days(1),
    )
    .await; // 1440 minutes

    stripe.respond_with(
        "POST",
        "/v1/invoiceitems",
        500,
        tollgate_tests::stripe_standin::stripe_error("api_error", None, "down"),
    );
    let (body, signature) = signed_event(
        SECRET,
        "invoice.created",
        "evt_rt_inv",
        end + 60,
        renewal_invoice("in_rt", &customer, "sub_retry", start, end),
    );
    let failed = app.deliver(&body, Some(&signature)).await;
    assert!(failed.status >= 500, "Stripe must retry: {}", failed.body);
    // Usage arriving between the attempts is carried: the frozen amount does not move.
    post_call(
        &app,
        &org,
        "between",
        600,
        closed.start + time::Duration::days(3),
    )
    .await;

    stripe.clear_response("POST", "/v1/invoiceitems");
    let (body, signature) = signed_event(
        SECRET,
        "invoice.created",
        "evt_rt_inv",
        end + 60,
        renewal_invoice("in_rt", &customer, "sub_retry", start, end),
    );
    assert_eq!(
        app.deliver(&body, Some(&signature)).await.body["outcome"],
        "processed"
    );
    // The failed delivery tried MAX_ATTEMPTS times within its budget, then the redelivery once;
    // every attempt with the same key and amount.
    let items = stripe.requests_to("POST", "/v1/invoiceitems");
    let attempts = tollgate_stripe::MAX_ATTEMPTS as usize;
    assert_eq!(
        items.len(),
        attempts + 1,
        "{attempts} failed attempts, one success"
    );
    for item in &items {
        assert_eq!(item.idempotency_key(), items[0].idempotency_key());
        assert_eq!(item.form_value("amount"), Some("9400"));
    }
    assert_eq!(
        items[attempts].form_value("amount"),
        Some("9400"),
        "(1440 - 500) x 10"
    );
}

/// Reading usage costs the same DynamoDB requests with 10 and with 10,000 recorded calls: it reads
/// the period counter, never the calls.
#[tokio::test]
async fn reading_usage_does_not_grow_with_the_number_of_calls() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let app = app_with_service_key(None).await;
    let (token, user) = app
        .organization_on_plan("auth0|o1", Plan::Business, PlanStatus::Active)
        .await;
    let org = user.organization_id.clone().unwrap();
    let ended = tollgate_tests::recent_call_end(time::Duration::minutes(1));
    for i in 0..10 {
        assert_eq!(
            post_call(&app, &org, &format!("c{i}"), 60, ended)
                .await
                .status,
            201
        );
    }
    app.dynamodb_requests.take();
    let with_ten = app.get("/api/billing/usage", &token).await;
    let requests_ten = app.dynamodb_requests.take();
    assert_eq!(with_ten.body["calls"], 10);

    // 9,990 more call records, written straight to the table in batches, and the counter.
    let period = tollgate::usage::calendar_month(OffsetDateTime::now_utc());
    let tenant = user.tenant().unwrap();
    let client = app.store.client();
    // Batches retried when a busy DynamoDB Local times out (every write also feeds the table's
    // stream).
    tollgate_tests::write_call_records(&app.store, &tenant, 0..9_990)
        .await
        .expect("write call records");
    let (pk, sk) = tollgate::store::usage::counter_key(&tenant, &period);
    client
        .update_item()
        .table_name(app.store.table_name())
        .key("PK", AttributeValue::S(pk))
        .key("SK", AttributeValue::S(sk))
        .update_expression("ADD calls :n, minutes :n")
        .expression_attribute_values(":n", AttributeValue::N("9990".into()))
        .send()
        .await
        .unwrap();
    app.dynamodb_requests.take();
    let with_ten_thousand = app.get("/api/billing/usage", &token).await;
    let requests_ten_thousand = app.dynamodb_requests.take();
    assert_eq!(with_ten_thousand.body["calls"], 10_000);
    assert_eq!(
        requests_ten, requests_ten_thousand,
        "same requests whatever the number of calls"
    );
    assert!(
        requests_ten
            .iter()
            .all(|op| op == "GetItem" || op == "UpdateItem"),
        "point reads (and the rate-limit counter) only, no Query or Scan: {requests_ten:?}"
    );
    println!("GET /api/billing/usage DynamoDB requests: {requests_ten:?}");
}
