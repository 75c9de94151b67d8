//! The `billing-portal` function: `POST /api/billing/portal` opens Stripe's customer portal,
//! where the organization changes or cancels its subscription.

mod stripe_calls;

pub use stripe_calls::create_portal_session;

use http::StatusCode;
use lambda_http::{Body, Response};
use serde::{Deserialize, Serialize};
use tollgate::http::ApiError;
use tollgate::http::{body_bytes, json_response, parse_json_body};
use tollgate::pipeline::{AppState, Caller, FunctionHandlers, organization_of};
use tollgate::routes::{Function, Operation};
use tollgate_stripe as stripe_api;

/// The billing-portal function's routes and handlers.
pub static HANDLERS: FunctionHandlers = FunctionHandlers {
    function: Function::BillingPortal,
    handlers: &[(Operation::BillingPortal, |call| {
        Box::pin(async move { portal(call.state, call.caller()?, call.body()).await })
    })],
};

#[derive(Debug, Serialize)]
struct PortalResponse {
    url: String,
}

/// The route takes no body; one that is sent may only be an empty JSON object, like every other
/// route that refuses unknown fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortalBody {}

pub async fn portal(
    state: &AppState,
    caller: &Caller,
    body: &Body,
) -> Result<Response<Body>, ApiError> {
    if !body_bytes(body).iter().all(u8::is_ascii_whitespace) {
        parse_json_body::<PortalBody>(body)?;
    }
    let stripe = stripe_api::client(state).await?;
    let organization = organization_of(state, caller).await?;
    let customer_id = organization.stripe_customer_id.ok_or_else(|| {
        ApiError::conflict(
            "no_billing_account",
            "The organization has no billing account yet; start a subscription with POST /api/billing/checkout.",
        )
    })?;
    let return_url = format!("{}/settings/billing", state.config.app_url);
    let url = stripe_calls::create_portal_session(&stripe, &customer_id, &return_url)
        .await
        .map_err(stripe_api::api_error)?;
    Ok(json_response(StatusCode::OK, &PortalResponse { url }))
}
