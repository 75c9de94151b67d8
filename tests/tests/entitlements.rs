//! Entitlements follow the subscription's status, driven by signed Stripe webhooks through the dev
//! gateway: `unpaid` and `paused` take the paid features, the seats beyond one and the included
//! minutes away (members stay, calls are still recorded, nobody new joins: 402 `plan_inactive`);
//! `past_due` keeps the plan for `PAST_DUE_GRACE_DAYS` (7) after the first failed payment.

use serde_json::{Value, json};
use time::OffsetDateTime;
use tollgate_tests::stripe_standin::{
    StripeStandIn, invoice_object, signed_event, subscription_object,
};
use tollgate_tests::{Reply, TestApp, assert_error};

const SECRET: &str = "whsec_entitlements_test";
const SERVICE_KEY: &str = "tgsk_test_entitlements_0123456789_0123456789abcdef";
const DAY: i64 = 86_400;

async fn start(stripe: &StripeStandIn) -> TestApp {
    let base = stripe.base_url.clone();
    TestApp::start_with(move |config| {
        config.stripe_secret_key = Some("sk_test_entitlements".into());
        config.stripe_api_base = base;
        config.stripe_webhook_secrets = SECRET.into();
        config.app_url = "https://app.tollgate.test".into();
        config.service_key_hashes = tollgate::auth::service_key::ServiceKeys::hash_hex(SERVICE_KEY);
    })
    .await
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// A BUSINESS organization, paid for through Stripe: the owner's token, the organization id, its
/// customer and subscription ids.
struct Business {
    token: String,
    org: String,
    customer: String,
    sub: String,
    /// The current period, the same in every event (usage is counted per period).
    period: (i64, i64),
}

impl Business {
    fn subscription(&self, status: &str) -> Value {
        subscription_object(
            &self.sub,
            &self.customer,
            status,
            "price_business_monthly",
            self.period,
        )
    }

    fn invoice(&self, id: &str, status: &str, created: i64) -> Value {
        invoice_object(id, &self.customer, &self.sub, status, created)
    }
}

async fn deliver(app: &TestApp, event_type: &str, id: &str, created: i64, object: Value) {
    let (body, signature) = signed_event(SECRET, event_type, id, created, object);
    let reply = app.deliver(&body, Some(&signature)).await;
    assert_eq!(reply.status, 200, "{event_type} {id}: {}", reply.body);
    assert_eq!(reply.body["outcome"], "processed", "{event_type} {id}");
}

/// An owner whose organization checked out BUSINESS and whose subscription became active 20 days
/// ago.
async fn business(app: &TestApp, tag: &str) -> Business {
    let sub = format!("auth0|{tag}");
    let (token, user) = app.owner_with_organization(&sub).await;
    let checkout = app
        .post(
            "/api/billing/checkout",
            &token,
            json!({"plan": "BUSINESS", "interval": "monthly"}),
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
    let org = Business {
        token,
        org: user.organization_id.unwrap(),
        customer,
        sub: format!("sub_{tag}"),
        period: (now() - 10 * DAY, now() + 20 * DAY),
    };
    deliver(
        app,
        "customer.subscription.created",
        &format!("evt_{tag}_created"),
        now() - 20 * DAY,
        org.subscription("active"),
    )
    .await;
    let me = app.get("/api/me", &org.token).await;
    assert_eq!(me.body["features"]["apiAccess"], true, "{}", me.body);
    assert_eq!(me.body["entitlementStatus"]["status"], "active");
    org
}

async fn api_access(app: &TestApp, token: &str) -> bool {
    let reply = app
        .post(
            "/api/permissions/check",
            token,
            json!({"permissions": ["org:read"], "features": ["apiAccess"]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["results"][0]["decision"], "allowed");
    let enabled = reply.body["features"][0]["enabled"].as_bool().unwrap();
    assert_eq!(reply.body["allowed"], enabled, "{}", reply.body);
    enabled
}

async fn invite(app: &TestApp, token: &str, email: &str) -> Reply {
    app.post(
        "/api/users",
        token,
        json!({"email": email, "role": "VIEWER"}),
    )
    .await
}

async fn record_call(app: &TestApp, org: &str, call: &str, seconds: i64) -> Reply {
    let ended = tollgate_tests::recent_call_end(time::Duration::minutes(2));
    app.post(
        "/api/usage/calls",
        SERVICE_KEY,
        json!({"organizationId": org, "callId": call, "durationSeconds": seconds,
               "endedAt": ended.format(&time::format_description::well_known::Rfc3339).unwrap()}),
    )
    .await
}

/// Found: after `customer.subscription.updated` with `unpaid` or `paused`, the BUSINESS
/// organization still had `apiAccess`, 999 seats and its full minute allowance.
#[tokio::test]
async fn unpaid_and_paused_subscriptions_lose_the_plan_but_keep_members_and_usage() {
    let stripe = StripeStandIn::start().await;
    let app = start(&stripe).await;
    for (status, reason) in [
        ("unpaid", "subscription_unpaid"),
        ("paused", "subscription_paused"),
    ] {
        let org = business(&app, &format!("lapsed-{status}")).await;
        let (member_token, _) = app
            .add_member(&org.token, &format!("auth0|member-{status}"), "MANAGER")
            .await;
        // Invited while the plan was active, accepted after it lapsed.
        let pending_email = format!("late-{status}@example.com");
        let pending = invite(&app, &org.token, &pending_email).await;
        assert_eq!(pending.status, 201, "{}", pending.body);
        assert_eq!(record_call(&app, &org.org, "before", 600).await.status, 201);

        deliver(
            &app,
            "customer.subscription.updated",
            &format!("evt_{status}_lapsed"),
            now() - 60,
            org.subscription(status),
        )
        .await;

        let me = app.get("/api/me", &org.token).await;
        assert_eq!(me.status, 200, "{}", me.body);
        assert_eq!(me.body["organization"]["planStatus"], status);
        assert_eq!(me.body["features"], Value::Null, "{status}: {}", me.body);
        assert_eq!(me.body["limits"], Value::Null, "{status}");
        assert_eq!(me.body["entitlementStatus"]["status"], "inactive");
        assert_eq!(me.body["entitlementStatus"]["reason"], reason);
        assert!(me.body["entitlementStatus"]["message"].is_string());
        assert!(me.body["entitlementStatus"].get("graceEndsAt").is_none());
        assert!(!api_access(&app, &org.token).await, "{status}");

        let refused = invite(&app, &org.token, &format!("new-{status}@example.com")).await;
        assert_error(&refused, 402, "plan_inactive");
        // Renewing the pending invitation is inviting again: refused too.
        let pending_id = pending.body["id"].as_str().unwrap();
        assert_error(
            &app.post(
                &format!("/api/users/invitations/{pending_id}/resend"),
                &org.token,
                json!({}),
            )
            .await,
            402,
            "plan_inactive",
        );
        let invitee = app.verified_token(&format!("auth0|late-{status}"), &pending_email, None);
        assert_eq!(app.get("/api/me", &invitee).await.status, 201);
        let id = pending.body["id"].as_str().unwrap();
        assert_error(
            &app.post(
                &format!("/api/me/invitations/{id}/accept"),
                &invitee,
                json!({}),
            )
            .await,
            402,
            "plan_inactive",
        );

        // Existing members stay, with their roles; the organization shows the free seat limit.
        let member = app.get("/api/me", &member_token).await;
        assert_eq!(member.body["user"]["role"], "MANAGER");
        assert_eq!(member.body["entitlementStatus"]["status"], "inactive");
        let organization = app.get("/api/organization", &org.token).await;
        assert_eq!(organization.body["memberCount"], 2);
        assert_eq!(organization.body["seatLimit"], 1);
        assert_eq!(organization.body["features"], Value::Null);

        // Calls still happened: recorded, against no included minutes.
        let recorded = record_call(&app, &org.org, "after", 125).await;
        assert_eq!(recorded.status, 201, "{}", recorded.body);
        let usage = app.get("/api/billing/usage", &org.token).await;
        assert_eq!(usage.status, 200, "{}", usage.body);
        assert_eq!(usage.body["minutes"], 13);
        assert_eq!(usage.body["calls"], 2);
        assert_eq!(usage.body["minutesIncluded"], 0);
        assert_eq!(usage.body["plan"], Value::Null);

        // Paying again restores everything.
        deliver(
            &app,
            "customer.subscription.updated",
            &format!("evt_{status}_restored"),
            now(),
            org.subscription("active"),
        )
        .await;
        let me = app.get("/api/me", &org.token).await;
        assert_eq!(me.body["entitlementStatus"]["status"], "active");
        assert_eq!(me.body["limits"]["maxTeamMembers"], 999);
        assert!(api_access(&app, &org.token).await);
        let usage = app.get("/api/billing/usage", &org.token).await;
        assert_eq!(usage.body["minutesIncluded"], 10_000);
    }
}

#[tokio::test]
async fn past_due_keeps_the_plan_for_the_grace_period_from_the_first_failed_payment() {
    let stripe = StripeStandIn::start().await;
    let app = start(&stripe).await;

    // Failed two days ago: within the 7-day grace period.
    let recent = business(&app, "grace").await;
    let failed_at = now() - 2 * DAY;
    deliver(
        &app,
        "invoice.payment_failed",
        "evt_grace_failed",
        failed_at,
        recent.invoice("in_grace_1", "open", failed_at - 60),
    )
    .await;
    let me = app.get("/api/me", &recent.token).await;
    assert_eq!(me.body["organization"]["planStatus"], "past_due");
    assert_eq!(me.body["entitlementStatus"]["status"], "grace_period");
    assert_eq!(me.body["entitlementStatus"]["reason"], "payment_past_due");
    let grace_ends = tollgate::team::rfc3339(failed_at + 7 * DAY).unwrap();
    assert_eq!(me.body["entitlementStatus"]["graceEndsAt"], grace_ends);
    assert_eq!(me.body["features"]["apiAccess"], true);
    assert!(api_access(&app, &recent.token).await);
    assert_eq!(
        invite(&app, &recent.token, "grace@example.com")
            .await
            .status,
        201
    );
    assert_eq!(record_call(&app, &recent.org, "c1", 60).await.status, 201);
    let usage = app.get("/api/billing/usage", &recent.token).await;
    assert_eq!(usage.body["minutesIncluded"], 10_000);

    // First failed eight days ago; the retry yesterday does not restart the grace period.
    let old = business(&app, "lapsed").await;
    let first = now() - 8 * DAY;
    deliver(
        &app,
        "invoice.payment_failed",
        "evt_lapsed_failed_1",
        first,
        old.invoice("in_lapsed_1", "open", first - 60),
    )
    .await;
    deliver(
        &app,
        "customer.subscription.updated",
        "evt_lapsed_past_due",
        first + 1,
        old.subscription("past_due"),
    )
    .await;
    deliver(
        &app,
        "invoice.payment_failed",
        "evt_lapsed_failed_2",
        now() - DAY,
        old.invoice("in_lapsed_1", "open", first - 60),
    )
    .await;
    let me = app.get("/api/me", &old.token).await;
    assert_eq!(me.body["organization"]["planStatus"], "past_due");
    assert_eq!(me.body["entitlementStatus"]["status"], "inactive");
    assert_eq!(me.body["entitlementStatus"]["reason"], "grace_period_ended");
    assert_eq!(
        me.body["entitlementStatus"]["graceEndsAt"],
        tollgate::team::rfc3339(first + 7 * DAY).unwrap()
    );
    assert_eq!(me.body["features"], Value::Null);
    assert!(!api_access(&app, &old.token).await);
    assert_error(
        &invite(&app, &old.token, "late@example.com").await,
        402,
        "plan_inactive",
    );
    assert_eq!(record_call(&app, &old.org, "c1", 60).await.status, 201);
    let usage = app.get("/api/billing/usage", &old.token).await;
    assert_eq!(usage.body["minutes"], 1);
    assert_eq!(usage.body["minutesIncluded"], 0);

    // The payment succeeds: the plan is back and the grace period is over.
    deliver(
        &app,
        "invoice.paid",
        "evt_lapsed_paid",
        now(),
        old.invoice("in_lapsed_1", "paid", first - 60),
    )
    .await;
    let me = app.get("/api/me", &old.token).await;
    assert_eq!(me.body["entitlementStatus"]["status"], "active");
    assert!(me.body["entitlementStatus"].get("graceEndsAt").is_none());
    assert!(api_access(&app, &old.token).await);
}

#[tokio::test]
async fn a_user_without_an_organization_has_no_entitlement_status() {
    let stripe = StripeStandIn::start().await;
    let app = start(&stripe).await;
    let token = app.token("auth0|loner", Some("loner@example.com"), None);
    let me = app.get("/api/me", &token).await;
    assert_eq!(me.status, 201, "{}", me.body);
    assert_eq!(me.body["entitlementStatus"], Value::Null);
    let (token, _) = app.owner_with_organization("auth0|free").await;
    let me = app.get("/api/me", &token).await;
    assert_eq!(me.body["entitlementStatus"]["status"], "none");
    assert_eq!(me.body["entitlementStatus"]["reason"], "no_subscription");
    // No subscription: the one free seat is the owner's, so an invitation is a seat matter (409).
    assert_error(
        &invite(&app, &token, "friend@example.com").await,
        409,
        "seat_limit_reached",
    );
}
