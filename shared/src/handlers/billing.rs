//! The checkout, billing-portal and billing functions: starting a subscription, managing it in
//! Stripe's portal, and reading the subscription and invoices webhooks recorded.

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

use super::organizations::tenant_of;
use crate::billing::stripe_api::{CheckoutRequest, StripeApi, StripeError};
use crate::http::{ApiError, invalid_cursor, json_response, page_params, parse_json_body};
use crate::pipeline::{AppState, Caller, organization_required, store_error};
use crate::pricing::{Interval, Plan};
use crate::store::{InvoiceRecord, OrganizationRecord, PlanStatus, StoreError, is_live};

const DEFAULT_PAGE_SIZE: i32 = 20;
const MAX_PAGE_SIZE: i32 = 100;

async fn stripe(state: &AppState) -> Result<StripeApi, ApiError> {
    let secrets = state.secrets().await?;
    let stripe = secrets.stripe.as_ref().ok_or_else(|| {
        ApiError::unavailable(
            "billing_not_configured",
            "Billing is not configured on this deployment (STRIPE_SECRET_KEY is unset).",
        )
    })?;
    stripe.api().map_err(stripe_error)
}

/// Stripe's failures become 502: the request changed nothing Tollgate would not reuse.
pub(crate) fn stripe_error(error: StripeError) -> ApiError {
    tracing::error!(error = %error, "Stripe request failed");
    let message = match &error {
        StripeError::Rejected { message, .. } => format!("Stripe refused the request: {message}"),
        _ => "Stripe could not be reached or failed; try again shortly.".to_owned(),
    };
    ApiError::new(StatusCode::BAD_GATEWAY, "stripe_error", message)
}

async fn organization(state: &AppState, caller: &Caller) -> Result<OrganizationRecord, ApiError> {
    state
        .store
        .get_organization(tenant_of(caller)?)
        .await
        .map_err(store_error)?
        .ok_or_else(organization_required)
}

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
    let stripe = stripe(state).await?;
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
    let organization = organization(state, caller).await?;
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
            let created = stripe
                .create_customer(
                    &organization.id,
                    &organization.name,
                    email.as_deref(),
                    &format!("tollgate-customer-{}", organization.id),
                )
                .await
                .map_err(stripe_error)?;
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
    let session = stripe
        .create_checkout_session(
            &CheckoutRequest {
                customer_id: &customer_id,
                price_id,
                organization_id: &organization.id,
                success_url: &success_url,
                cancel_url: &cancel_url,
            },
            &format!("tollgate-checkout-{}", uuid::Uuid::new_v4()),
        )
        .await
        .map_err(stripe_error)?;
    tracing::info!(session_id = %session.id, plan = %plan, interval = %interval, "checkout session created");
    Ok(json_response(
        StatusCode::OK,
        &CheckoutResponse {
            url: session.url,
            session_id: session.id,
        },
    ))
}

#[derive(Debug, Serialize)]
struct PortalResponse {
    url: String,
}

pub async fn portal(state: &AppState, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let stripe = stripe(state).await?;
    let organization = organization(state, caller).await?;
    let customer_id = organization.stripe_customer_id.ok_or_else(|| {
        ApiError::conflict(
            "no_billing_account",
            "The organization has no billing account yet; start a subscription with POST /api/billing/checkout.",
        )
    })?;
    let return_url = format!("{}/settings/billing", state.config.app_url);
    let url = stripe
        .create_portal_session(&customer_id, &return_url)
        .await
        .map_err(stripe_error)?;
    Ok(json_response(StatusCode::OK, &PortalResponse { url }))
}

fn iso(seconds: Option<i64>) -> Option<String> {
    seconds
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionView {
    plan: Option<Plan>,
    status: PlanStatus,
    interval: Option<Interval>,
    amount: Option<u64>,
    currency: Option<String>,
    current_period_start: Option<String>,
    current_period_end: Option<String>,
    cancel_at_period_end: bool,
}

pub async fn subscription(state: &AppState, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let organization = organization(state, caller).await?;
    let view = match organization.billing {
        Some(billing) => SubscriptionView {
            plan: billing.plan,
            status: billing.status,
            interval: billing.interval,
            amount: billing.amount_cents,
            currency: billing.currency,
            current_period_start: iso(billing.current_period_start),
            current_period_end: iso(billing.current_period_end),
            cancel_at_period_end: billing.cancel_at_period_end,
        },
        None => SubscriptionView {
            plan: None,
            status: PlanStatus::None,
            interval: None,
            amount: None,
            currency: None,
            current_period_start: None,
            current_period_end: None,
            cancel_at_period_end: false,
        },
    };
    Ok(json_response(StatusCode::OK, &view))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InvoiceView {
    id: String,
    number: Option<String>,
    amount: u64,
    currency: String,
    status: Option<String>,
    invoice_url: Option<String>,
    invoice_pdf: Option<String>,
    period_start: Option<String>,
    period_end: Option<String>,
    paid_at: Option<String>,
    /// Overage of the closed usage period added to this renewal invoice.
    #[serde(skip_serializing_if = "Option::is_none")]
    overage_minutes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    overage_cost: Option<u64>,
}

impl From<InvoiceRecord> for InvoiceView {
    fn from(i: InvoiceRecord) -> Self {
        let paid = i.status.as_deref() == Some("paid");
        Self {
            amount: if paid { i.amount_paid } else { i.amount_due },
            id: i.id,
            number: i.number,
            currency: i.currency,
            status: i.status,
            invoice_url: i.hosted_invoice_url,
            invoice_pdf: i.invoice_pdf,
            period_start: iso(i.period_start),
            period_end: iso(i.period_end),
            paid_at: iso(i.paid_at),
            overage_minutes: i.overage_minutes,
            overage_cost: i.overage_cost_cents,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InvoicesResponse {
    invoices: Vec<InvoiceView>,
    next_cursor: Option<String>,
}

pub async fn invoices(
    state: &AppState,
    caller: &Caller,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let tenant = tenant_of(caller)?;
    let (limit, cursor) = page_params(request, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let cursor = cursor.as_deref();
    let (invoices, next_cursor) = match state.store.list_invoices(tenant, cursor, limit).await {
        Ok(page) => page,
        Err(StoreError::NotFound) => {
            return Err(invalid_cursor());
        }
        Err(error) => return Err(store_error(error)),
    };
    Ok(json_response(
        StatusCode::OK,
        &InvoicesResponse {
            invoices: invoices.into_iter().map(InvoiceView::from).collect(),
            next_cursor,
        },
    ))
}
