//! The `checkout` function: `POST /api/billing/checkout` starts a subscription in a Stripe
//! Checkout session, creating the organization's Stripe customer on its first checkout.

mod stripe_calls;

pub use stripe_calls::{
    CheckoutRequest, CheckoutSessionCreated, create_checkout_session, create_customer,
};

use http::StatusCode;
use lambda_http::{Body, Response};
use serde::{Deserialize, Serialize};
use tollgate::http::{ApiError, json_response, parse_json_body};
use tollgate::pipeline::{
    AppState, Caller, FunctionHandlers, organization_of, store_error, tenant_of,
};
use tollgate::pricing::{Interval, Plan};
use tollgate::routes::{Function, Operation};
use tollgate::store::is_live;
use tollgate_stripe as stripe_api;

/// The checkout function's routes and handlers.
pub static HANDLERS: FunctionHandlers = FunctionHandlers {
    function: Function::Checkout,
    handlers: &[(Operation::Checkout, |call| {
        Box::pin(async move { checkout(call.state, call.caller()?, call.body()).await })
    })],
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CheckoutBody {
    plan: String,
    interval: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckoutResponse {
    url: String,
    session_id: String,
}

pub async fn checkout(
    state: &AppState,
    caller: &Caller,
    body: &Body,
) -> Result<Response<Body>, ApiError> {
    let stripe = stripe_api::client(state).await?;
    let request: CheckoutBody = parse_json_body(body)?;
    let plan: Plan = request.plan.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_plan",
            format!(
                "Unknown plan \"{}\"; use STARTER, PROFESSIONAL or BUSINESS.",
                request.plan
            ),
        )
    })?;
    let interval: Interval = request.interval.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_interval",
            format!(
                "Unknown interval \"{}\"; use monthly or yearly.",
                request.interval
            ),
        )
    })?;
    let organization = organization_of(state, caller).await?;
    if is_live(organization.plan_status) {
        return Err(ApiError::conflict(
            "already_subscribed",
            "The organization already has a subscription; change or cancel it in the billing portal (POST /api/billing/portal).",
        ));
    }
    let price_id = state
        .config
        .prices
        .price_id(plan, interval)
        .ok_or_else(ApiError::internal)?;
    let tenant = tenant_of(caller)?;
    let customer_id = match &organization.stripe_customer_id {
        Some(customer) => customer.clone(),
        None => {
            let email = organization
                .billing_email
                .clone()
                .or_else(|| caller.user.as_ref().and_then(|u| u.email.clone()));
            // One key per organization: concurrent first checkouts get the same customer back
            // from Stripe, and the conditional write below keeps whichever was stored first.
            let created = stripe_calls::create_customer(
                &stripe,
                &organization.id,
                &organization.name,
                email.as_deref(),
                &format!("tollgate-customer-{}", organization.id),
            )
            .await
            .map_err(stripe_api::api_error)?;
            state
                .store
                .attach_customer(tenant, &created)
                .await
                .map_err(store_error)?
        }
    };
    let base = &state.config.app_url;
    let success_url =
        format!("{base}/settings/billing?checkout=success&session_id={{CHECKOUT_SESSION_ID}}");
    let cancel_url = format!("{base}/settings/billing?checkout=cancelled");
    let session = stripe_calls::create_checkout_session(
        &stripe,
        &CheckoutRequest {
            customer_id: &customer_id,
            price_id,
            organization_id: &organization.id,
            success_url: &success_url,
            cancel_url: &cancel_url,
            trial_days: state.config.trial_days.of(plan),
            allow_promotion_codes: state.config.allow_promotion_codes,
        },
        &format!("tollgate-checkout-{}", uuid::Uuid::new_v4()),
    )
    .await
    .map_err(stripe_api::api_error)?;
    tracing::info!(session_id = %session.id, plan = %plan, interval = %interval, "checkout session created");
    Ok(json_response(
        StatusCode::OK,
        &CheckoutResponse {
            url: session.url,
            session_id: session.id,
        },
    ))
}
