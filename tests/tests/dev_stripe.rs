//! `make dev` without a Stripe account: a gateway billing through the local Stripe stand-in, a
//! checkout paid with `tollgate-dev stripe pay`'s code path (`tollgate_dev::stripe_pay::pay`), and
//! the plan it buys applied: subscription, entitlements, seats, usage allowance. Against DynamoDB
//! Local.

use serde_json::{Value, json};
use tollgate_dev::stripe_pay::{self, PayError, PayTarget};
use tollgate_tests::stripe_standin::{SECRET_KEY, StripeStandIn};
use tollgate_tests::{TestApp, assert_error};

const SECRET: &str = "whsec_dev_stripe_test";
const SERVICE_KEY: &str = "tgsk_test_dev_stripe_0123456789_0123456789abcdef";

/// A gateway as `tollgate-dev serve --stripe-standin` configures it, plus a service key.
async fn dev_app(stripe: &StripeStandIn) -> TestApp {
    let base = stripe.base_url.clone();
    TestApp::start_with(move |config| {
        config.stripe_secret_key = Some(SECRET_KEY.to_owned());
        config.stripe_api_base = base;
        config.stripe_webhook_secrets = SECRET.to_owned();
        config.service_key_hashes = tollgate::auth::service_key::ServiceKeys::hash_hex(SERVICE_KEY);
    })
    .await
}

fn target(app: &TestApp, stripe: &StripeStandIn, secret: &str) -> PayTarget {
    PayTarget {
        gateway_url: app.base_url.clone(),
        stripe_api_base: stripe.base_url.clone(),
        stripe_secret_key: SECRET_KEY.to_owned(),
        webhook_secret: secret.to_owned(),
    }
}

/// Signs `sub` in and onboards them through `POST /api/organizations`; their token and org id.
async fn onboard(app: &TestApp, sub: &str) -> (String, String) {
    let token = app.token(
        sub,
        Some(&format!("{}@example.com", sub.replace('|', "-"))),
        None,
    );
    let me = app.get("/api/me", &token).await;
    assert!(me.status == 200 || me.status == 201, "{}", me.body);
    let created = app
        .post("/api/organizations", &token, json!({"name": "Paying Org"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let org = created.body["id"].as_str().expect("id").to_owned();
    (token, org)
}

async fn checkout(app: &TestApp, token: &str, plan: &str, interval: &str) -> String {
    let reply = app
        .post(
            "/api/billing/checkout",
            token,
            json!({"plan": plan, "interval": interval}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["sessionId"]
        .as_str()
        .expect("sessionId")
        .to_owned()
}

async fn invite(app: &TestApp, token: &str, email: &str) -> tollgate_tests::Reply {
    app.post(
        "/api/users",
        token,
        json!({"email": email, "role": "OPERATOR"}),
    )
    .await
}

fn outcomes(payment: &stripe_pay::Payment) -> Vec<(String, u16, Option<String>)> {
    payment
        .deliveries
        .iter()
        .map(|d| {
            (
                d.event_type().to_owned(),
                d.status,
                d.outcome().map(str::to_owned),
            )
        })
        .collect()
}

fn expected(outcome: &str) -> Vec<(String, u16, Option<String>)> {
    [
        "checkout.session.completed",
        "customer.subscription.created",
        "invoice.paid",
    ]
    .iter()
    .map(|t| (t.to_string(), 200, Some(outcome.to_owned())))
    .collect()
}

#[tokio::test]
async fn pay_completes_a_business_checkout_and_the_plan_applies_once() {
    let stripe = StripeStandIn::start().await;
    let app = dev_app(&stripe).await;
    let (token, org) = onboard(&app, "auth0|dev-payer").await;

    // Before paying: no plan, one seat (the owner), no minutes included, no API access.
    assert_error(
        &invite(&app, &token, "first-hire@example.com").await,
        409,
        "seat_limit_reached",
    );
    let usage = app.get("/api/billing/usage", &token).await;
    assert_eq!(usage.body["minutesIncluded"], 0, "{}", usage.body);
    let check = json!({"permissions": ["billing:read"], "features": ["apiAccess"]});
    let before = app
        .post("/api/permissions/check", &token, check.clone())
        .await;
    assert_eq!(
        before.body["missing"],
        json!(["apiAccess"]),
        "{}",
        before.body
    );

    let session = checkout(&app, &token, "BUSINESS", "monthly").await;
    let payment = stripe_pay::pay(&target(&app, &stripe, SECRET), &session)
        .await
        .expect("pay");
    assert_eq!(outcomes(&payment), expected("processed"));

    // The events are Stripe's shapes for a paid subscription checkout.
    let events: Vec<&Value> = payment.deliveries.iter().map(|d| &d.event).collect();
    let subscription_id = payment.subscription["id"].as_str().expect("sub id");
    let completed = &events[0]["data"]["object"];
    assert_eq!(events[0]["object"], "event");
    assert_eq!(
        events[0]["api_version"],
        tollgate_stripe::PINNED_API_VERSION.as_str()
    );
    assert_eq!(completed["id"], session.as_str());
    assert_eq!(completed["mode"], "subscription");
    assert_eq!(completed["status"], "complete");
    assert_eq!(completed["payment_status"], "paid");
    assert_eq!(completed["client_reference_id"], org.as_str());
    assert_eq!(completed["subscription"], subscription_id);
    assert!(completed["metadata"].is_object());
    let customer = completed["customer"].as_str().expect("customer");
    let created = &events[1]["data"]["object"];
    assert_eq!(created["status"], "active");
    assert_eq!(created["customer"], customer);
    assert_eq!(created["metadata"]["organizationId"], org.as_str());
    let item = &created["items"]["data"][0];
    assert_eq!(item["price"]["id"], "price_business_monthly");
    assert_eq!(item["price"]["unit_amount"], 79_900);
    assert_eq!(item["price"]["recurring"]["interval"], "month");
    let (start, end) = (
        item["current_period_start"].as_i64().expect("start"),
        item["current_period_end"].as_i64().expect("end"),
    );
    assert!(
        (28 * 86_400..=31 * 86_400).contains(&(end - start)),
        "{start}..{end}"
    );
    let invoice = &events[2]["data"]["object"];
    assert_eq!(invoice["status"], "paid");
    assert_eq!(invoice["amount_paid"], 79_900);
    assert_eq!(
        invoice["parent"]["subscription_details"]["subscription"],
        subscription_id
    );
    // checkout.session.completed made the gateway read the subscription back from the stand-in.
    assert!(
        !stripe
            .requests_to("GET", &format!("/v1/subscriptions/{subscription_id}"))
            .is_empty()
    );

    // The plan applies: subscription, entitlements, seats, usage allowance.
    let subscription = app.get("/api/billing/subscription", &token).await;
    assert_eq!(subscription.status, 200, "{}", subscription.body);
    assert_eq!(subscription.body["plan"], "BUSINESS");
    assert_eq!(subscription.body["status"], "active");
    assert_eq!(subscription.body["interval"], "monthly");
    assert_eq!(subscription.body["amount"], 79_900);
    assert_eq!(subscription.body["currency"], "usd");
    let me = app.get("/api/me", &token).await;
    let organization = &me.body["organization"];
    assert_eq!(organization["plan"], "BUSINESS", "{}", me.body);
    assert_eq!(organization["planStatus"], "active");
    assert_eq!(me.body["features"]["apiAccess"], true, "{}", me.body);
    assert_eq!(me.body["limits"]["maxMinutes"], 10_000);
    let seats = app.get("/api/organization", &token).await;
    assert_eq!(
        seats.body["seatLimit"],
        tollgate::pricing::UNLIMITED,
        "{}",
        seats.body
    );
    let after = app.post("/api/permissions/check", &token, check).await;
    assert_eq!(after.body["allowed"], true, "{}", after.body);
    assert_eq!(
        after.body["features"],
        json!([{"feature": "apiAccess", "enabled": true}])
    );
    assert_eq!(
        invite(&app, &token, "first-hire@example.com").await.status,
        201
    );
    let ended = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let call = app
        .post(
            "/api/usage/calls",
            SERVICE_KEY,
            json!({"organizationId": org, "callId": "dev-call-1", "durationSeconds": 125, "endedAt": ended}),
        )
        .await;
    assert_eq!(call.status, 201, "{}", call.body);
    let usage = app.get("/api/billing/usage", &token).await;
    assert_eq!(
        (
            &usage.body["plan"],
            &usage.body["minutesIncluded"],
            &usage.body["minutes"],
            &usage.body["overageMinutes"]
        ),
        (&json!("BUSINESS"), &json!(10_000), &json!(3), &json!(0)),
        "{}",
        usage.body
    );

    // Paying again sends the same events: each is a duplicate and nothing changes.
    let items = app.all_items().await;
    let again = stripe_pay::pay(&target(&app, &stripe, SECRET), &session)
        .await
        .expect("pay again");
    assert_eq!(outcomes(&again), expected("duplicate"));
    let ids = |p: &stripe_pay::Payment| -> Vec<String> {
        p.deliveries
            .iter()
            .map(|d| d.event_id().to_owned())
            .collect()
    };
    assert_eq!(ids(&again), ids(&payment));
    assert_eq!(app.all_items().await, items);
    assert_eq!(
        stripe
            .requests_to(
                "POST",
                &format!("/_standin/checkout/sessions/{session}/pay")
            )
            .len(),
        2
    );
}

/// `make dev` again: a new gateway and a new stand-in (as `tollgate-dev serve --stripe-standin`
/// starts it) over the table the last run kept. The new stand-in must not hand out the ids the
/// old one did: the new organization's customer would be the old one's (its checkout fails), and
/// its events would be answered `duplicate` with the payment never applied.
#[tokio::test]
async fn a_restarted_standin_over_a_kept_table_repeats_no_id() {
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let prices = tollgate::billing::prices::PriceTable::from_lookup(|_| None);
    let first_run = StripeStandIn::start_on(local, &prices).await.expect("bind");
    let app = dev_app(&first_run).await;
    let (first_token, _) = onboard(&app, "auth0|first-run").await;
    let session = checkout(&app, &first_token, "STARTER", "monthly").await;
    let payment = stripe_pay::pay(&target(&app, &first_run, SECRET), &session)
        .await
        .expect("pay");
    assert_eq!(outcomes(&payment), expected("processed"));
    drop(first_run);

    let second_run = StripeStandIn::start_on(local, &prices).await.expect("bind");
    let kept = app.store.table_name().to_owned();
    let base = second_run.base_url.clone();
    let restarted = TestApp::start_with(move |config| {
        config.stripe_secret_key = Some(SECRET_KEY.to_owned());
        config.stripe_api_base = base;
        config.stripe_webhook_secrets = SECRET.to_owned();
        config.table_name = kept;
    })
    .await;
    let (token, _) = onboard(&restarted, "auth0|second-run").await;
    let session = checkout(&restarted, &token, "BUSINESS", "monthly").await;
    let again = stripe_pay::pay(&target(&restarted, &second_run, SECRET), &session)
        .await
        .expect("pay");
    assert_eq!(outcomes(&again), expected("processed"));
    let ids = |p: &stripe_pay::Payment| -> Vec<String> {
        p.deliveries
            .iter()
            .map(|d| d.event_id().to_owned())
            .collect()
    };
    assert!(ids(&again).iter().all(|id| !ids(&payment).contains(id)));
    assert_ne!(
        again.subscription["customer"],
        payment.subscription["customer"]
    );
    // (The first run's gateway, its issuer, still reads the same table.)
    let first = app.get("/api/billing/subscription", &first_token).await;
    let second = restarted.get("/api/billing/subscription", &token).await;
    assert_eq!(first.body["plan"], "STARTER", "{}", first.body);
    assert_eq!(second.body["plan"], "BUSINESS", "{}", second.body);
}

#[tokio::test]
async fn a_yearly_plan_gets_a_years_period_and_its_seats() {
    let stripe = StripeStandIn::start().await;
    let app = dev_app(&stripe).await;
    let (token, _) = onboard(&app, "auth0|dev-yearly").await;
    let session = checkout(&app, &token, "PROFESSIONAL", "yearly").await;
    let payment = stripe_pay::pay(&target(&app, &stripe, SECRET), &session)
        .await
        .expect("pay");
    assert_eq!(outcomes(&payment), expected("processed"));
    let subscription = app.get("/api/billing/subscription", &token).await.body;
    assert_eq!(
        (
            &subscription["plan"],
            &subscription["interval"],
            &subscription["amount"]
        ),
        (&json!("PROFESSIONAL"), &json!("yearly"), &json!(305_094)),
        "{subscription}"
    );
    let parse = |field: &str| {
        time::OffsetDateTime::parse(
            subscription[field].as_str().expect(field),
            &time::format_description::well_known::Rfc3339,
        )
        .expect(field)
    };
    let days = (parse("currentPeriodEnd") - parse("currentPeriodStart")).whole_days();
    assert!((365..=366).contains(&days), "{days} days");
    // PROFESSIONAL: five seats, the owner's included.
    for n in 0..4 {
        let reply = invite(&app, &token, &format!("pro-{n}@example.com")).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    assert_error(
        &invite(&app, &token, "pro-5@example.com").await,
        409,
        "seat_limit_reached",
    );
}

#[tokio::test]
async fn pay_refuses_what_a_customer_could_not_pay() {
    let stripe = StripeStandIn::start().await;
    let app = dev_app(&stripe).await;
    let (token, _) = onboard(&app, "auth0|dev-refused").await;

    for bad in ["cs_../../v1/customers", "sub_123", ""] {
        assert!(
            matches!(
                stripe_pay::pay(&target(&app, &stripe, SECRET), bad).await,
                Err(PayError::InvalidSessionId(_))
            ),
            "{bad:?}"
        );
    }
    match stripe_pay::pay(&target(&app, &stripe, SECRET), "cs_test_unknown").await {
        Err(PayError::Stripe {
            status, message, ..
        }) => {
            assert_eq!(status, 404);
            assert!(message.contains("No such checkout.session"), "{message}");
        }
        other => panic!("unknown session paid: {other:?}"),
    }

    // Signed with another secret: the gateway refuses every event and the plan stays unset.
    let session = checkout(&app, &token, "STARTER", "monthly").await;
    let payment = stripe_pay::pay(&target(&app, &stripe, "whsec_not_the_gateways"), &session)
        .await
        .expect("delivered");
    for delivery in &payment.deliveries {
        assert_eq!(delivery.status, 400, "{}", delivery.answer);
        assert_eq!(delivery.answer["error"], "invalid_signature");
    }
    let subscription = app.get("/api/billing/subscription", &token).await.body;
    assert_eq!(subscription["status"], "none", "{subscription}");

    // A Stripe that is not the stand-in (its 404 for an unknown URL) is named as such.
    stripe.respond_with(
        "POST",
        &format!("/_standin/checkout/sessions/{session}/pay"),
        404,
        tollgate_tests::stripe_standin::stripe_error(
            "invalid_request_error",
            None,
            "Unrecognized request URL",
        ),
    );
    assert!(matches!(
        stripe_pay::pay(&target(&app, &stripe, SECRET), &session).await,
        Err(PayError::NotStandIn(_))
    ));
}

#[tokio::test]
async fn the_standin_sells_every_plan_and_refuses_other_prices() {
    let stripe = StripeStandIn::start().await;
    tollgate::trust::install_ring_defaults();
    let http = reqwest::Client::new();
    let prices: Value = http
        .get(format!("{}/v1/prices", stripe.base_url))
        .bearer_auth(SECRET_KEY)
        .send()
        .await
        .expect("prices")
        .json()
        .await
        .expect("json");
    let table = tollgate::billing::prices::PriceTable::from_lookup(|_| None);
    let data = prices["data"].as_array().expect("list");
    assert_eq!(data.len(), 6);
    for plan in tollgate::pricing::Plan::ALL {
        for interval in tollgate::pricing::Interval::ALL {
            let id = table.price_id(plan, interval).expect("price id");
            let price = data.iter().find(|p| p["id"] == id).expect(id);
            assert_eq!(
                price["unit_amount"],
                tollgate::pricing::price_cents(plan, interval)
            );
            assert_eq!(price["type"], "recurring");
        }
    }

    // A gateway whose STRIPE_PRICE_* names a price the account does not have: Stripe's refusal.
    let base = stripe.base_url.clone();
    let app = TestApp::start_with(move |config| {
        config.stripe_secret_key = Some(SECRET_KEY.to_owned());
        config.stripe_api_base = base;
        config.stripe_webhook_secrets = SECRET.to_owned();
        config.prices = tollgate::billing::prices::PriceTable::from_lookup(|name| {
            (name == "STRIPE_PRICE_STARTER_MONTHLY").then(|| "price_typo".to_owned())
        });
    })
    .await;
    let (token, _) = onboard(&app, "auth0|dev-typo").await;
    let reply = app
        .post(
            "/api/billing/checkout",
            &token,
            json!({"plan": "STARTER", "interval": "monthly"}),
        )
        .await;
    assert_error(&reply, 502, "stripe_error");
    let refused = stripe.requests_to("POST", "/v1/checkout/sessions");
    assert_eq!(
        refused[0].form_value("line_items[0][price]"),
        Some("price_typo")
    );
}

#[tokio::test]
async fn paying_a_checkout_with_a_trial_starts_a_trialing_subscription_that_grants_the_plan() {
    let stripe = StripeStandIn::start().await;
    let base = stripe.base_url.clone();
    let app = TestApp::start_with(move |config| {
        config.stripe_secret_key = Some(SECRET_KEY.to_owned());
        config.stripe_api_base = base;
        config.stripe_webhook_secrets = SECRET.to_owned();
        config.trial_days = tollgate::billing::prices::TrialDays::from_lookup(|name| {
            (name == "TRIAL_DAYS_BUSINESS").then(|| "14".to_owned())
        })
        .expect("trial days");
    })
    .await;
    let (token, _) = onboard(&app, "auth0|dev-trial").await;
    let session = checkout(&app, &token, "BUSINESS", "monthly").await;
    let payment = stripe_pay::pay(&target(&app, &stripe, SECRET), &session)
        .await
        .expect("pay");
    assert_eq!(outcomes(&payment), expected("processed"));
    let subscription = &payment.subscription;
    assert_eq!(subscription["status"], "trialing");
    let trial_end = subscription["trial_end"].as_i64().expect("trial_end");
    let trial_start = subscription["trial_start"].as_i64().expect("trial_start");
    assert_eq!(trial_end - trial_start, 14 * 86_400);
    assert_eq!(payment.invoice["amount_paid"], 0);

    let shown = app.get("/api/billing/subscription", &token).await;
    assert_eq!(shown.body["status"], "trialing", "{}", shown.body);
    let expected_end = time::OffsetDateTime::from_unix_timestamp(trial_end)
        .expect("timestamp")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("rfc3339");
    assert_eq!(shown.body["trialEnd"], json!(expected_end));
    assert_eq!(shown.body["currentPeriodEnd"], json!(expected_end));
    let me = app.get("/api/me", &token).await;
    assert_eq!(
        me.body["entitlementStatus"]["status"], "trialing",
        "{}",
        me.body
    );
    assert_eq!(me.body["features"]["apiAccess"], true, "{}", me.body);
}
