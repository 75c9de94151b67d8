//! Stripe billing through the dev gateway: checkout, portal, webhooks applied exactly once in any
//! order, and the subscription and invoices they leave — Stripe's API stood in locally, payloads
//! built from Stripe's own fixtures and signed as Stripe signs them.

use serde_json::{Value, json};
use tollgate_tests::stripe_standin::{
    StripeStandIn, fixture, invoice_object, signed_event, subscription_object,
};
use tollgate_tests::{TestApp, assert_error};

const SECRET: &str = "whsec_test_tollgate";

async fn checkout(app: &TestApp, token: &str, plan: &str, interval: &str) -> tollgate_tests::Reply {
    app.post(
        "/api/billing/checkout",
        token,
        json!({"plan": plan, "interval": interval}),
    )
    .await
}

/// The organization's Stripe customer after a first checkout.
async fn subscribed_customer(app: &TestApp, token: &str, sub: &str) -> String {
    assert_eq!(
        checkout(app, token, "PROFESSIONAL", "monthly").await.status,
        200
    );
    let tenant = tollgate_tests::tenant_of(app, sub).await;
    app.store
        .get_organization(&tenant)
        .await
        .unwrap()
        .unwrap()
        .stripe_customer_id
        .unwrap()
}

fn checkout_completed(customer: &str, subscription: &str, organization: &str) -> Value {
    let mut object = fixture("checkout.session");
    object["customer"] = json!(customer);
    object["subscription"] = json!(subscription);
    object["client_reference_id"] = json!(organization);
    object["mode"] = json!("subscription");
    object["status"] = json!("complete");
    object["payment_status"] = json!("paid");
    object
}

async fn deliver(
    app: &TestApp,
    event_type: &str,
    id: &str,
    created: i64,
    object: Value,
) -> tollgate_tests::Reply {
    let (body, signature) = signed_event(SECRET, event_type, id, created, object);
    app.deliver(&body, Some(&signature)).await
}

#[tokio::test]
async fn checkout_sends_exactly_stripes_fields_and_reuses_the_customer() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing(&stripe, SECRET).await;
    let (token, user) = app.owner_with_organization("auth0|buyer").await;
    let org = user.organization_id.clone().unwrap();

    let reply = checkout(&app, &token, "PROFESSIONAL", "monthly").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body["url"]
            .as_str()
            .unwrap()
            .starts_with("https://checkout.stripe.com/")
    );
    assert!(
        reply.body["sessionId"]
            .as_str()
            .unwrap()
            .starts_with("cs_test_")
    );

    let customers = stripe.requests_to("POST", "/v1/customers");
    assert_eq!(customers.len(), 1);
    assert_eq!(
        customers[0].form_value("metadata[organizationId]"),
        Some(org.as_str())
    );
    assert_eq!(
        customers[0].idempotency_key(),
        Some(format!("tollgate-customer-{org}").as_str())
    );
    let sessions = stripe.requests_to("POST", "/v1/checkout/sessions");
    assert_eq!(sessions.len(), 1);
    let customer = sessions[0].form_value("customer").unwrap().to_owned();
    let mut expected = vec![
        ("cancel_url".to_owned(), "https://app.tollgate.test/settings/billing?checkout=cancelled".to_owned()),
        ("client_reference_id".to_owned(), org.clone()),
        ("customer".to_owned(), customer.clone()),
        ("line_items[0][price]".to_owned(), "price_pro_monthly".to_owned()),
        ("line_items[0][quantity]".to_owned(), "1".to_owned()),
        ("mode".to_owned(), "subscription".to_owned()),
        ("subscription_data[metadata][organizationId]".to_owned(), org.clone()),
        (
            "success_url".to_owned(),
            "https://app.tollgate.test/settings/billing?checkout=success&session_id={CHECKOUT_SESSION_ID}".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(sessions[0].sorted_form(), expected);
    assert!(
        sessions[0]
            .idempotency_key()
            .unwrap()
            .starts_with("tollgate-checkout-")
    );
    assert_eq!(
        sessions[0].header("authorization"),
        Some("Bearer sk_test_tollgate_standin")
    );
    assert_eq!(
        sessions[0].header("stripe-version"),
        Some(tollgate_stripe::PINNED_API_VERSION.as_str())
    );

    // A second checkout (say, the first was abandoned) reuses the customer, with a new key.
    assert_eq!(
        checkout(&app, &token, "BUSINESS", "yearly").await.status,
        200
    );
    assert_eq!(stripe.requests_to("POST", "/v1/customers").len(), 1);
    let sessions = stripe.requests_to("POST", "/v1/checkout/sessions");
    assert_eq!(sessions[1].form_value("customer"), Some(customer.as_str()));
    assert_eq!(
        sessions[1].form_value("line_items[0][price]"),
        Some("price_business_yearly")
    );
    assert_ne!(sessions[0].idempotency_key(), sessions[1].idempotency_key());
}

#[tokio::test]
async fn concurrent_first_checkouts_make_one_customer() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing(&stripe, SECRET).await;
    let (token, user) = app.owner_with_organization("auth0|double-click").await;
    let replies =
        futures::future::join_all((0..6).map(|_| checkout(&app, &token, "STARTER", "monthly")))
            .await;
    assert!(
        replies.iter().all(|r| r.status == 200),
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    let stored = app
        .store
        .get_organization(&user.tenant().unwrap())
        .await
        .unwrap()
        .unwrap()
        .stripe_customer_id
        .unwrap();
    let used: std::collections::HashSet<String> = stripe
        .requests_to("POST", "/v1/checkout/sessions")
        .iter()
        .map(|r| r.form_value("customer").unwrap().to_owned())
        .collect();
    assert_eq!(
        used,
        std::collections::HashSet::from([stored]),
        "every session uses the one stored customer"
    );
}

#[tokio::test]
async fn stripe_failures_are_502_and_leave_nothing_half_written() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing(&stripe, SECRET).await;
    let (token, user) = app.owner_with_organization("auth0|unlucky").await;
    let tenant = user.tenant().unwrap();

    stripe.respond_with(
        "POST",
        "/v1/customers",
        500,
        tollgate_tests::stripe_standin::stripe_error("api_error", None, "boom"),
    );
    let before = app.all_items().await;
    assert_error(
        &checkout(&app, &token, "STARTER", "monthly").await,
        502,
        "stripe_error",
    );
    assert_eq!(
        app.all_items().await,
        before,
        "no customer stored when Stripe made none"
    );
    stripe.clear_response("POST", "/v1/customers");

    stripe.respond_with(
        "POST",
        "/v1/checkout/sessions",
        500,
        tollgate_tests::stripe_standin::stripe_error("api_error", None, "boom"),
    );
    assert_error(
        &checkout(&app, &token, "STARTER", "monthly").await,
        502,
        "stripe_error",
    );
    // The customer Stripe did create is the organization's, whole and reused by the retry.
    let customer = app
        .store
        .get_organization(&tenant)
        .await
        .unwrap()
        .unwrap()
        .stripe_customer_id
        .unwrap();
    stripe.clear_response("POST", "/v1/checkout/sessions");
    assert_eq!(
        checkout(&app, &token, "STARTER", "monthly").await.status,
        200
    );
    let after = app
        .store
        .get_organization(&tenant)
        .await
        .unwrap()
        .unwrap()
        .stripe_customer_id;
    assert_eq!(
        after.as_deref(),
        Some(customer.as_str()),
        "the stored customer is kept"
    );
    let last = stripe.requests_to("POST", "/v1/checkout/sessions");
    assert_eq!(
        last.last().unwrap().form_value("customer"),
        Some(customer.as_str())
    );
}

#[tokio::test]
async fn checkout_input_and_state_errors() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing(&stripe, SECRET).await;
    let (token, user) = app.owner_with_organization("auth0|careful").await;
    assert_error(
        &checkout(&app, &token, "GOLD", "monthly").await,
        400,
        "invalid_plan",
    );
    assert_error(
        &checkout(&app, &token, "STARTER", "weekly").await,
        400,
        "invalid_interval",
    );
    assert_error(
        &app.post("/api/billing/checkout", &token, json!({"plan": "STARTER"}))
            .await,
        400,
        "invalid_body",
    );
    assert_error(
        &app.post("/api/billing/portal", &token, json!({})).await,
        409,
        "no_billing_account",
    );
    // The portal takes no body: fields (another customer, another return URL) are refused.
    assert_error(
        &app.post(
            "/api/billing/portal",
            &token,
            json!({"customer": "cus_someone_else", "returnUrl": "https://evil.example"}),
        )
        .await,
        400,
        "invalid_body",
    );
    assert!(stripe.requests().is_empty(), "nothing reached Stripe");

    app.store
        .set_organization_plan(
            &user.tenant().unwrap(),
            Some(tollgate::pricing::Plan::Starter),
            tollgate::store::PlanStatus::Active,
        )
        .await
        .unwrap();
    let reply = checkout(&app, &token, "BUSINESS", "monthly").await;
    assert_error(&reply, 409, "already_subscribed");
    assert!(reply.body["message"].as_str().unwrap().contains("portal"));

    let unconfigured = TestApp::start().await;
    let (token, _) = unconfigured.owner_with_organization("auth0|nokey").await;
    assert_error(
        &checkout(&unconfigured, &token, "STARTER", "monthly").await,
        503,
        "billing_not_configured",
    );
    assert_error(
        &unconfigured
            .post("/api/billing/portal", &token, json!({}))
            .await,
        503,
        "billing_not_configured",
    );
}

#[tokio::test]
async fn portal_session_for_the_organizations_customer() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing(&stripe, SECRET).await;
    let (token, _) = app.owner_with_organization("auth0|manager").await;
    let customer = subscribed_customer(&app, &token, "auth0|manager").await;
    let reply = app.post("/api/billing/portal", &token, json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body["url"]
            .as_str()
            .unwrap()
            .starts_with("https://billing.stripe.com/")
    );
    let portal = stripe.requests_to("POST", "/v1/billing_portal/sessions");
    assert_eq!(portal[0].form_value("customer"), Some(customer.as_str()));
    assert_eq!(
        portal[0].form_value("return_url"),
        Some("https://app.tollgate.test/settings/billing")
    );
}

struct Lifecycle {
    events: Vec<(&'static str, String, i64, Value)>,
}

/// checkout completed → subscription created → invoice paid → plan changed → payment failed →
/// subscription deleted, for one customer.
fn lifecycle(customer: &str, organization: &str, tag: &str) -> Lifecycle {
    let sub = format!("sub_{tag}");
    let t = 1_790_000_000;
    let period = (t, t + 30 * 86_400);
    Lifecycle {
        events: vec![
            (
                "checkout.session.completed",
                format!("evt_{tag}_1"),
                t,
                checkout_completed(customer, &sub, organization),
            ),
            (
                "customer.subscription.created",
                format!("evt_{tag}_2"),
                t + 1,
                subscription_object(&sub, customer, "active", "price_pro_monthly", period),
            ),
            (
                "invoice.paid",
                format!("evt_{tag}_3"),
                t + 2,
                invoice_object(&format!("in_{tag}_1"), customer, &sub, "paid", t + 1),
            ),
            (
                "customer.subscription.updated",
                format!("evt_{tag}_4"),
                t + 100,
                subscription_object(&sub, customer, "active", "price_business_monthly", period),
            ),
            (
                "invoice.payment_failed",
                format!("evt_{tag}_5"),
                t + 200,
                invoice_object(&format!("in_{tag}_2"), customer, &sub, "open", t + 150),
            ),
            (
                "customer.subscription.deleted",
                format!("evt_{tag}_6"),
                t + 300,
                subscription_object(&sub, customer, "canceled", "price_business_monthly", period),
            ),
        ],
    }
}

#[tokio::test]
async fn a_realistic_lifecycle_drives_the_organizations_state() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing(&stripe, SECRET).await;
    let (token, user) = app.owner_with_organization("auth0|life").await;
    let customer = subscribed_customer(&app, &token, "auth0|life").await;
    let org = user.organization_id.clone().unwrap();
    let life = lifecycle(&customer, &org, "life");
    // checkout.session.completed carries no subscription state: the handler reads it from Stripe.
    stripe.set_subscription("sub_life", life.events[1].3.clone());

    let expectations = [
        ("active", Some("PROFESSIONAL")),
        ("active", Some("PROFESSIONAL")),
        ("active", Some("PROFESSIONAL")),
        ("active", Some("BUSINESS")),
        ("past_due", Some("BUSINESS")),
        ("canceled", Some("BUSINESS")),
    ];
    for ((event_type, id, created, object), (status, plan)) in life.events.iter().zip(expectations)
    {
        let reply = deliver(&app, event_type, id, *created, object.clone()).await;
        assert_eq!(reply.status, 200, "{event_type}: {}", reply.body);
        assert_eq!(reply.body["outcome"], "processed", "{event_type}");
        let subscription = app.get("/api/billing/subscription", &token).await;
        assert_eq!(
            subscription.body["status"], status,
            "after {event_type}: {}",
            subscription.body
        );
        assert_eq!(subscription.body["plan"], json!(plan), "after {event_type}");
        let me = app.get("/api/me", &token).await;
        assert_eq!(me.body["organization"]["planStatus"], status);
        // Entitlements follow a live subscription only.
        let entitled = if status == "canceled" {
            Value::Null
        } else {
            json!(plan)
        };
        assert_eq!(
            me.body["organization"]["plan"], entitled,
            "after {event_type}"
        );
    }
    let subscription = app.get("/api/billing/subscription", &token).await;
    assert_eq!(subscription.body["interval"], "monthly");
    assert_eq!(subscription.body["amount"], 29900);
    assert_eq!(subscription.body["currency"], "usd");
    assert!(
        subscription.body["currentPeriodStart"]
            .as_str()
            .unwrap()
            .starts_with("2026-09-21")
    );

    let invoices = app.get("/api/billing/invoices", &token).await;
    assert_eq!(invoices.status, 200, "{}", invoices.body);
    let list = invoices.body["invoices"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], "in_life_2", "newest first");
    assert_eq!(list[0]["status"], "open");
    assert_eq!(list[1]["status"], "paid");
    assert_eq!(list[1]["amount"], 29900);
    assert_eq!(
        list[1]["invoiceUrl"],
        "https://invoice.stripe.com/i/in_life_1"
    );
    assert!(list[1]["paidAt"].is_string());

    // Redelivery answers 200 and changes nothing.
    let before = app.all_items().await;
    for (event_type, id, created, object) in &life.events {
        let reply = deliver(&app, event_type, id, *created, object.clone()).await;
        assert_eq!(
            (reply.status, reply.body["outcome"].as_str()),
            (200, Some("duplicate"))
        );
    }
    assert_eq!(app.all_items().await, before);

    // Once canceled, the organization can be deleted.
    assert_eq!(app.delete("/api/organization", &token).await.status, 202);
}

/// A tiny deterministic generator, so a failing seed can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[tokio::test]
async fn any_order_with_duplicates_gives_the_same_final_state() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing(&stripe, SECRET).await;
    let mut finals = Vec::new();
    for seed in 0..12u64 {
        let sub = format!("auth0|shuffle{seed}");
        let (token, user) = app.owner_with_organization(&sub).await;
        let customer = subscribed_customer(&app, &token, &sub).await;
        let tag = format!("s{seed}");
        let life = lifecycle(&customer, user.organization_id.as_deref().unwrap(), &tag);
        stripe.set_subscription(&format!("sub_{tag}"), life.events[1].3.clone());
        let mut deliveries: Vec<usize> =
            (0..life.events.len()).chain(0..life.events.len()).collect();
        let mut rng = Lcg(seed + 1);
        for i in (1..deliveries.len()).rev() {
            deliveries.swap(i, (rng.next() as usize) % (i + 1));
        }
        // Some deliveries race each other, as Stripe's do.
        for pair in deliveries.chunks(2) {
            let replies = futures::future::join_all(pair.iter().map(|&i| {
                let (event_type, id, created, object) = &life.events[i];
                deliver(&app, event_type, id, *created, object.clone())
            }))
            .await;
            for reply in replies {
                assert_eq!(reply.status, 200, "seed {seed}: {}", reply.body);
            }
        }
        let subscription = app.get("/api/billing/subscription", &token).await.body;
        let invoices = app.get("/api/billing/invoices", &token).await.body;
        let invoice_states: Vec<(Value, Value)> = invoices["invoices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["status"].clone(), i["amount"].clone()))
            .collect();
        finals.push((subscription, invoice_states));
    }
    let expected = (
        json!({"plan": "BUSINESS", "status": "canceled", "interval": "monthly", "amount": 29900, "currency": "usd",
               "currentPeriodStart": finals[0].0["currentPeriodStart"], "currentPeriodEnd": finals[0].0["currentPeriodEnd"],
               "trialEnd": null, "cancelAtPeriodEnd": false}),
        vec![(json!("open"), json!(29900)), (json!("paid"), json!(29900))],
    );
    for (seed, state) in finals.iter().enumerate() {
        assert_eq!(state, &expected, "seed {seed}");
    }
}

#[tokio::test]
async fn bad_signatures_and_payloads_are_400_with_no_writes() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing(&stripe, SECRET).await;
    let (token, user) = app.owner_with_organization("auth0|target").await;
    let customer = subscribed_customer(&app, &token, "auth0|target").await;
    let object = subscription_object("sub_bad", &customer, "active", "price_pro_monthly", (1, 2));
    let before = app.all_items().await;

    let (body, good) = signed_event(
        SECRET,
        "customer.subscription.created",
        "evt_bad_1",
        1_790_000_000,
        object.clone(),
    );
    let (_, wrong_secret) = signed_event(
        "whsec_other",
        "customer.subscription.created",
        "evt_bad_1",
        1_790_000_000,
        object.clone(),
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let stale = tollgate::billing::signature::sign_for_test(SECRET, body.as_bytes(), now - 301);
    let tampered = body.replace("price_pro_monthly", "price_business_monthly");
    for (body, signature, code) in [
        (body.as_str(), None, "invalid_signature"),
        (
            body.as_str(),
            Some(wrong_secret.as_str()),
            "invalid_signature",
        ),
        (body.as_str(), Some(stale.as_str()), "invalid_signature"),
        (tampered.as_str(), Some(good.as_str()), "invalid_signature"),
        (body.as_str(), Some("t=1,v1=zz"), "invalid_signature"),
    ] {
        assert_error(&app.deliver(body, signature).await, 400, code);
    }
    let garbage = "{not json";
    let garbage_signature =
        tollgate::billing::signature::sign_for_test(SECRET, garbage.as_bytes(), now);
    assert_error(
        &app.deliver(garbage, Some(&garbage_signature)).await,
        400,
        "invalid_payload",
    );
    assert_eq!(app.all_items().await, before, "nothing written");
    let _ = user;

    // The correctly signed one is processed.
    assert_eq!(
        app.deliver(&body, Some(&good)).await.body["outcome"],
        "processed"
    );
}

#[tokio::test]
async fn a_payload_of_another_api_version_is_fetched_not_dropped() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing(&stripe, SECRET).await;
    let (token, _) = app.owner_with_organization("auth0|old-endpoint").await;
    let customer = subscribed_customer(&app, &token, "auth0|old-endpoint").await;
    let current = subscription_object(
        "sub_old",
        &customer,
        "active",
        "price_business_yearly",
        (1_790_000_000, 1_821_536_000),
    );
    stripe.set_subscription("sub_old", current);
    // An old-version shape the pinned types reject: `items` is not a list object.
    let old = json!({"id": "sub_old", "object": "subscription", "customer": customer, "status": "active", "items": ["si_1"]});

    stripe.respond_with(
        "GET",
        "/v1/subscriptions/sub_old",
        500,
        tollgate_tests::stripe_standin::stripe_error("api_error", None, "down"),
    );
    let reply = deliver(
        &app,
        "customer.subscription.updated",
        "evt_old_1",
        1_790_000_100,
        old.clone(),
    )
    .await;
    assert!(reply.status >= 500, "never 2xx unprocessed: {}", reply.body);
    assert_eq!(
        app.get("/api/billing/subscription", &token).await.body["status"],
        "none"
    );

    stripe.clear_response("GET", "/v1/subscriptions/sub_old");
    let reply = deliver(
        &app,
        "customer.subscription.updated",
        "evt_old_1",
        1_790_000_100,
        old,
    )
    .await;
    assert_eq!(reply.body["outcome"], "processed", "{}", reply.body);
    let subscription = app.get("/api/billing/subscription", &token).await.body;
    assert_eq!(
        (
            subscription["plan"].as_str(),
            subscription["interval"].as_str()
        ),
        (Some("BUSINESS"), Some("yearly"))
    );
}

#[tokio::test]
async fn another_tenant_sees_nothing_of_the_billing() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing(&stripe, SECRET).await;
    let (token, user) = app.owner_with_organization("auth0|payer").await;
    let customer = subscribed_customer(&app, &token, "auth0|payer").await;
    for (event_type, id, created, object) in
        lifecycle(&customer, user.organization_id.as_deref().unwrap(), "iso")
            .events
            .into_iter()
            .skip(1)
            .take(3)
    {
        assert_eq!(
            deliver(&app, event_type, &id, created, object).await.status,
            200
        );
    }
    let (other, _) = app.owner_with_organization("auth0|neighbour").await;
    let subscription = app.get("/api/billing/subscription", &other).await;
    assert_eq!(subscription.body["status"], "none");
    assert_eq!(subscription.body["plan"], Value::Null);
    let invoices = app.get("/api/billing/invoices", &other).await;
    assert_eq!(invoices.body["invoices"], json!([]));
    assert!(!invoices.body.to_string().contains("in_iso"));
    // A member without billing:read is refused.
    let (viewer, _) = {
        app.store
            .set_organization_plan(
                &user.tenant().unwrap(),
                Some(tollgate::pricing::Plan::Business),
                tollgate::store::PlanStatus::Active,
            )
            .await
            .unwrap();
        app.add_member(&token, "auth0|payer-viewer", "VIEWER").await
    };
    assert_error(
        &app.get("/api/billing/invoices", &viewer).await,
        403,
        "forbidden",
    );
    assert_error(
        &app.post(
            "/api/billing/checkout",
            &viewer,
            json!({"plan": "STARTER", "interval": "monthly"}),
        )
        .await,
        403,
        "forbidden",
    );
}

/// Signature attacks on the webhook, through the gateway: several `v1` values none of which
/// matches, only a legacy `v0`, a timestamp in the future or replayed from the past (the
/// signature itself authentic), a second `t`. Each is 400 `invalid_signature` and writes nothing;
/// among several `v1` values one authentic one is enough (Stripe signs with every active secret).
#[tokio::test]
async fn webhook_signature_attacks_are_400_and_change_nothing() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing(&stripe, SECRET).await;
    let (token, _) = app.owner_with_organization("auth0|sig-target").await;
    let customer = subscribed_customer(&app, &token, "auth0|sig-target").await;
    let object = subscription_object(
        "sub_sig",
        &customer,
        "active",
        "price_pro_monthly",
        (1_790_000_000, 1_792_592_000),
    );
    let (body, good) = signed_event(
        SECRET,
        "customer.subscription.created",
        "evt_sig_1",
        1_790_000_000,
        object,
    );
    let before = app.all_items().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sign_at = |t: i64| tollgate::billing::signature::sign_for_test(SECRET, body.as_bytes(), t);
    let (t, v1) = good.split_once(",v1=").unwrap();
    let zeros = "0".repeat(64);
    let ones = "1".repeat(64);
    for header in [
        format!("{t},v1={zeros},v1={ones}"),
        format!("{t},v0={v1}"),
        sign_at(now + 301),
        sign_at(now - 3600),
        format!("{good},t={now}"),
        String::new(),
    ] {
        let reply = app.deliver(&body, Some(&header)).await;
        assert_error(&reply, 400, "invalid_signature");
    }
    assert_eq!(app.all_items().await, before, "nothing written");
    let several = format!("{t},v1={zeros},v1={v1},v1={ones}");
    let reply = app.deliver(&body, Some(&several)).await;
    assert_eq!(reply.body["outcome"], "processed", "{}", reply.body);
}

/// Correctly signed payloads that are not Stripe events, or whose object has no id to fetch it
/// by, are 400 `invalid_payload` with a readable message, and change nothing; an oversized
/// delivery is 413 before its signature is even checked.
#[tokio::test]
async fn signed_payloads_that_are_not_events_are_400_and_change_nothing() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing(&stripe, SECRET).await;
    let (token, _) = app.owner_with_organization("auth0|payload-target").await;
    let _ = subscribed_customer(&app, &token, "auth0|payload-target").await;
    let before = app.all_items().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let without_id = tollgate_tests::stripe_standin::event(
        "customer.subscription.updated",
        "evt_no_object_id",
        now,
        json!({"object": "subscription", "status": "canceled"}),
    )
    .to_string();
    for body in [
        r#"{"hello":"world"}"#.to_owned(),
        "[1,2,3]".to_owned(),
        "null".to_owned(),
        String::new(),
        r#"{"id":"evt_x","type":"invoice.paid","type":"customer.created","created":1,"data":{"object":{"id":"in_1"}}}"#.to_owned(),
        r#"{"id":7,"type":"invoice.paid","created":1,"data":{"object":{"id":"in_1"}}}"#.to_owned(),
        without_id,
    ] {
        let signature = tollgate::billing::signature::sign_for_test(SECRET, body.as_bytes(), now);
        let reply = app.deliver(&body, Some(&signature)).await;
        assert_error(&reply, 400, "invalid_payload");
        let message = reply.body["message"].as_str().unwrap();
        assert!(!message.to_lowercase().contains("the the"), "{message}");
    }
    assert_eq!(app.all_items().await, before, "nothing written");

    let huge = format!(r#"{{"id":"evt_huge","pad":"{}"}}"#, "a".repeat(513 * 1024));
    let signature = tollgate::billing::signature::sign_for_test(SECRET, huge.as_bytes(), now);
    assert_error(
        &app.deliver(&huge, Some(&signature)).await,
        413,
        "payload_too_large",
    );
}

/// An event names its organization only through its Stripe customer: an event for A's customer
/// whose metadata and `client_reference_id` name organization B changes A (the customer's) and
/// never B, and an event for a customer no organization owns changes nobody.
#[tokio::test]
async fn an_event_naming_another_organization_changes_only_the_customers() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing(&stripe, SECRET).await;
    let (a_token, _) = app.owner_with_organization("auth0|cust-a").await;
    let customer_a = subscribed_customer(&app, &a_token, "auth0|cust-a").await;
    let (b_token, b_user) = app.owner_with_organization("auth0|cust-b").await;
    let org_b = b_user.organization_id.clone().unwrap();
    let b_before = app.get("/api/organization", &b_token).await.body;

    let mut subscription = subscription_object(
        "sub_cross",
        &customer_a,
        "active",
        "price_business_monthly",
        (1_790_000_000, 1_792_592_000),
    );
    subscription["metadata"] = json!({"organizationId": org_b});
    stripe.set_subscription("sub_cross", subscription.clone());
    let mut completed = checkout_completed(&customer_a, "sub_cross", &org_b);
    completed["metadata"] = json!({"organizationId": org_b});
    for (event_type, id, object) in [
        ("checkout.session.completed", "evt_cross_1", completed),
        ("customer.subscription.created", "evt_cross_2", subscription),
    ] {
        let reply = deliver(&app, event_type, id, 1_790_000_000, object).await;
        assert_eq!(reply.body["outcome"], "processed", "{}", reply.body);
    }
    let a = app.get("/api/billing/subscription", &a_token).await.body;
    assert_eq!(a["plan"], "BUSINESS", "{a}");
    let b = app.get("/api/billing/subscription", &b_token).await.body;
    assert_eq!(
        (&b["plan"], &b["status"]),
        (&Value::Null, &json!("none")),
        "{b}"
    );
    assert_eq!(app.get("/api/organization", &b_token).await.body, b_before);

    // A customer nobody owns, naming B: ignored, B unchanged.
    let mut stranger = subscription_object(
        "sub_stranger",
        "cus_nobody_owns",
        "active",
        "price_business_monthly",
        (1_790_000_000, 1_792_592_000),
    );
    stranger["metadata"] = json!({"organizationId": org_b});
    let reply = deliver(
        &app,
        "customer.subscription.created",
        "evt_cross_3",
        1_790_000_100,
        stranger,
    )
    .await;
    assert_eq!(reply.body["outcome"], "ignored", "{}", reply.body);
    assert_eq!(app.get("/api/organization", &b_token).await.body, b_before);
}

/// Checkout and the portal need `billing:update` (OWNER only): every other role of the paying
/// organization is 403 and Stripe is never called. The owner of another organization gets their
/// own organization's answer: no portal (no billing account yet), and a checkout for their own
/// new customer, never the paying organization's.
#[tokio::test]
async fn checkout_and_portal_by_other_roles_or_another_organization() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing(&stripe, SECRET).await;
    // Members join while the plan is active (a lapsed plan takes nobody new); then it lapses,
    // so that the owner may check out again.
    let (owner, user) = app
        .organization_on_plan(
            "auth0|billing-a",
            tollgate::pricing::Plan::Business,
            tollgate::store::PlanStatus::Active,
        )
        .await;
    let mut members = Vec::new();
    for role in ["ADMIN", "MANAGER", "OPERATOR", "VIEWER"] {
        let (member, _) = app
            .add_member(&owner, &format!("auth0|billing-{role}"), role)
            .await;
        members.push(member);
    }
    app.store
        .set_organization_plan(
            &user.tenant().unwrap(),
            Some(tollgate::pricing::Plan::Business),
            tollgate::store::PlanStatus::Canceled,
        )
        .await
        .unwrap();
    let customer_a = subscribed_customer(&app, &owner, "auth0|billing-a").await;
    let org_a = user.organization_id.clone().unwrap();
    stripe.clear_requests();
    for member in &members {
        let reply = checkout(&app, member, "STARTER", "monthly").await;
        assert_error(&reply, 403, "forbidden");
        let reply = app.post("/api/billing/portal", member, json!({})).await;
        assert_error(&reply, 403, "forbidden");
    }
    assert!(stripe.requests().is_empty(), "Stripe never called");

    let (other, other_user) = app.owner_with_organization("auth0|billing-b").await;
    let org_b = other_user.organization_id.clone().unwrap();
    let reply = app.post("/api/billing/portal", &other, json!({})).await;
    assert_error(&reply, 409, "no_billing_account");
    assert!(stripe.requests().is_empty());
    assert_eq!(
        checkout(&app, &other, "STARTER", "monthly").await.status,
        200
    );
    let session = stripe.requests_to("POST", "/v1/checkout/sessions");
    let customer_b = session[0].form_value("customer").unwrap();
    assert_ne!(customer_b, customer_a);
    assert_eq!(
        session[0].form_value("client_reference_id"),
        Some(org_b.as_str())
    );
    assert_ne!(org_b, org_a);
}

/// `invoice.upcoming` carries an invoice that has no id yet (Stripe: "the received Invoice object
/// will not have an invoice ID"). Tollgate does not act on it, so it is acknowledged as ignored
/// like any such event, not refused: a 4xx would have Stripe retry it for days and count it
/// against the endpoint. An event Tollgate acts on whose object has no id is still refused.
#[tokio::test]
async fn an_upcoming_invoice_without_an_id_is_acknowledged_not_refused() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing(&stripe, SECRET).await;
    let (token, _) = app.owner_with_organization("auth0|upcoming").await;
    let customer = subscribed_customer(&app, &token, "auth0|upcoming").await;
    let before = app.all_items().await;
    let mut upcoming = invoice_object(
        "in_placeholder",
        &customer,
        "sub_up",
        "draft",
        1_790_000_000,
    );
    upcoming.as_object_mut().unwrap().remove("id");
    upcoming["billing_reason"] = json!("upcoming");
    let reply = deliver(
        &app,
        "invoice.upcoming",
        "evt_up_1",
        1_790_000_000,
        upcoming.clone(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["outcome"], "ignored");
    upcoming["id"] = Value::Null;
    let reply = deliver(
        &app,
        "invoice.upcoming",
        "evt_up_2",
        1_790_000_000,
        upcoming.clone(),
    )
    .await;
    assert_eq!(reply.body["outcome"], "ignored", "{}", reply.body);
    assert_eq!(app.all_items().await, before, "nothing written");

    // The same object on an event Tollgate acts on cannot be retrieved: refused, never acknowledged.
    let reply = deliver(&app, "invoice.paid", "evt_up_3", 1_790_000_000, upcoming).await;
    assert_error(&reply, 400, "invalid_payload");
    assert_eq!(app.all_items().await, before, "nothing written");
}

// ---------------------------------------------------------------------------------------------
// Trials

const TRIAL_START: i64 = 1_790_000_000;
const TRIAL_END: i64 = TRIAL_START + 14 * 86_400;

/// A billing app whose BUSINESS plan has a 14-day trial and whose checkout allows promotion codes.
async fn trial_app(stripe: &StripeStandIn) -> TestApp {
    TestApp::start_billing_with(stripe, SECRET, |config| {
        config.trial_days = tollgate::billing::prices::TrialDays::from_lookup(|name| {
            (name == "TRIAL_DAYS_BUSINESS").then(|| "14".to_owned())
        })
        .expect("trial days");
        config.allow_promotion_codes = true;
    })
    .await
}

/// `subscription_object` with a trial from `TRIAL_START` to `TRIAL_END`.
fn trial_subscription(sub: &str, customer: &str, status: &str, period: (i64, i64)) -> Value {
    let mut object = subscription_object(sub, customer, status, "price_business_monthly", period);
    object["trial_start"] = json!(TRIAL_START);
    object["trial_end"] = json!(TRIAL_END);
    object
}

/// Checks out the BUSINESS plan with its trial; the organization's Stripe customer.
async fn trial_checkout(app: &TestApp, stripe: &StripeStandIn, token: &str, sub: &str) -> String {
    let reply = checkout(app, token, "BUSINESS", "monthly").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let sessions = stripe.requests_to("POST", "/v1/checkout/sessions");
    let session = sessions.last().expect("a checkout session");
    assert_eq!(
        session.form_value("subscription_data[trial_period_days]"),
        Some("14")
    );
    assert_eq!(session.form_value("allow_promotion_codes"), Some("true"));
    let tenant = tollgate_tests::tenant_of(app, sub).await;
    app.store
        .get_organization(&tenant)
        .await
        .unwrap()
        .unwrap()
        .stripe_customer_id
        .unwrap()
}

/// The subscription, `/api/me`'s entitlement status and whether it grants the BUSINESS features.
async fn assert_standing(app: &TestApp, token: &str, status: &str, entitlement: &str, when: &str) {
    let subscription = app.get("/api/billing/subscription", token).await;
    assert_eq!(subscription.status, 200, "{when}: {}", subscription.body);
    assert_eq!(
        subscription.body["status"], status,
        "{when}: {}",
        subscription.body
    );
    assert_eq!(subscription.body["plan"], "BUSINESS", "{when}");
    assert_eq!(
        subscription.body["trialEnd"], "2026-10-05T14:13:20Z",
        "{when}: {}",
        subscription.body
    );
    let me = app.get("/api/me", token).await;
    assert_eq!(me.status, 200, "{when}: {}", me.body);
    assert_eq!(
        me.body["entitlementStatus"]["status"], entitlement,
        "{when}: {}",
        me.body
    );
    if entitlement == "inactive" {
        assert_eq!(me.body["features"], Value::Null, "{when}: {}", me.body);
        assert_eq!(me.body["limits"], Value::Null, "{when}: {}", me.body);
    } else {
        assert_eq!(
            me.body["features"]["apiAccess"], true,
            "{when}: {}",
            me.body
        );
        assert_eq!(me.body["organization"]["plan"], "BUSINESS", "{when}");
    }
}

#[tokio::test]
async fn a_trial_grants_the_plan_and_converts_when_the_first_invoice_is_paid() {
    let stripe = StripeStandIn::start().await;
    let app = trial_app(&stripe).await;
    let (token, _) = app.owner_with_organization("auth0|trial-converts").await;
    let customer = trial_checkout(&app, &stripe, &token, "auth0|trial-converts").await;
    let sub = "sub_trial_converts";

    // Without a subscription there is no trial to show.
    let before = app.get("/api/billing/subscription", &token).await;
    assert_eq!(before.body["trialEnd"], Value::Null, "{}", before.body);

    let trial = trial_subscription(sub, &customer, "trialing", (TRIAL_START, TRIAL_END));
    let reply = deliver(
        &app,
        "customer.subscription.created",
        "evt_tc_1",
        TRIAL_START,
        trial,
    )
    .await;
    assert_eq!(
        (reply.status, reply.body["outcome"].as_str()),
        (200, Some("processed"))
    );
    assert_standing(&app, &token, "trialing", "trialing", "trial started").await;

    // The trial's $0 invoice leaves it trialing.
    let mut zero = invoice_object("in_tc_0", &customer, sub, "paid", TRIAL_START);
    zero["amount_due"] = json!(0);
    zero["amount_paid"] = json!(0);
    let reply = deliver(&app, "invoice.paid", "evt_tc_2", TRIAL_START + 1, zero).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_standing(&app, &token, "trialing", "trialing", "$0 trial invoice").await;

    // The trial ends (trial_end now in the past) and the first real invoice is paid.
    let converted = trial_subscription(
        sub,
        &customer,
        "active",
        (TRIAL_END, TRIAL_END + 30 * 86_400),
    );
    let reply = deliver(
        &app,
        "customer.subscription.updated",
        "evt_tc_3",
        TRIAL_END,
        converted,
    )
    .await;
    assert_eq!(
        (reply.status, reply.body["outcome"].as_str()),
        (200, Some("processed"))
    );
    let paid = invoice_object("in_tc_1", &customer, sub, "paid", TRIAL_END);
    let reply = deliver(&app, "invoice.paid", "evt_tc_4", TRIAL_END + 1, paid).await;
    assert_eq!(
        (reply.status, reply.body["outcome"].as_str()),
        (200, Some("processed"))
    );
    assert_standing(&app, &token, "active", "active", "converted").await;
    let subscription = app.get("/api/billing/subscription", &token).await;
    assert_eq!(
        subscription.body["currentPeriodStart"],
        "2026-10-05T14:13:20Z"
    );
}

#[tokio::test]
async fn a_trial_that_ends_paused_grants_nothing() {
    let stripe = StripeStandIn::start().await;
    let app = trial_app(&stripe).await;
    let (token, _) = app.owner_with_organization("auth0|trial-paused").await;
    let customer = trial_checkout(&app, &stripe, &token, "auth0|trial-paused").await;
    let sub = "sub_trial_paused";

    let trial = trial_subscription(sub, &customer, "trialing", (TRIAL_START, TRIAL_END));
    let reply = deliver(
        &app,
        "customer.subscription.created",
        "evt_tp_1",
        TRIAL_START,
        trial,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_standing(&app, &token, "trialing", "trialing", "trial started").await;

    // No payment method when the trial ended: Stripe pauses the subscription.
    let paused = trial_subscription(sub, &customer, "paused", (TRIAL_START, TRIAL_END));
    let reply = deliver(
        &app,
        "customer.subscription.updated",
        "evt_tp_2",
        TRIAL_END,
        paused,
    )
    .await;
    assert_eq!(
        (reply.status, reply.body["outcome"].as_str()),
        (200, Some("processed"))
    );
    assert_standing(&app, &token, "paused", "inactive", "trial ended paused").await;
    let me = app.get("/api/me", &token).await;
    assert_eq!(
        me.body["entitlementStatus"]["reason"],
        "subscription_paused"
    );
}

#[tokio::test]
async fn without_trial_days_or_promotion_codes_checkout_sends_neither() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing_with(&stripe, SECRET, |config| {
        config.trial_days = tollgate::billing::prices::TrialDays::from_lookup(|name| {
            (name == "TRIAL_DAYS_BUSINESS").then(|| "14".to_owned())
        })
        .expect("trial days");
    })
    .await;
    let (token, _) = app.owner_with_organization("auth0|no-trial").await;
    // STARTER has no trial; promotion codes are off by default.
    assert_eq!(
        checkout(&app, &token, "STARTER", "monthly").await.status,
        200
    );
    let sessions = stripe.requests_to("POST", "/v1/checkout/sessions");
    let fields: Vec<&str> = sessions[0]
        .form
        .iter()
        .map(|(key, _)| key.as_str())
        .collect();
    assert!(
        !fields
            .iter()
            .any(|field| field.contains("trial") || field.contains("promotion")),
        "{fields:?}"
    );
}
