//! The `billing` function: the subscription and the invoices, as the Stripe webhooks recorded them
//! (no Stripe call).

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use tollgate::http::{ApiError, invalid_cursor, json_response, page_params};
use tollgate::pipeline::{
    AppState, Caller, FunctionHandlers, organization_of, store_error, tenant_of,
};
use tollgate::pricing::{Interval, Plan};
use tollgate::routes::{Function, Operation};
use tollgate::store::{InvoiceRecord, PlanStatus, StoreError};

const DEFAULT_PAGE_SIZE: i32 = 20;
const MAX_PAGE_SIZE: i32 = 100;

/// The billing function's routes and handlers.
pub static HANDLERS: FunctionHandlers = FunctionHandlers {
    function: Function::Billing,
    handlers: &[
        (Operation::GetSubscription, |call| {
            Box::pin(async move { subscription(call.state, call.caller()?).await })
        }),
        (Operation::ListInvoices, |call| {
            Box::pin(async move { invoices(call.state, call.caller()?, call.request).await })
        }),
    ],
};

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
    /// When the trial ends or ended; null without a trial.
    trial_end: Option<String>,
    cancel_at_period_end: bool,
}

pub async fn subscription(state: &AppState, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let organization = organization_of(state, caller).await?;
    let view = match organization.billing {
        Some(billing) => SubscriptionView {
            plan: billing.plan,
            status: billing.status,
            interval: billing.interval,
            amount: billing.amount_cents,
            currency: billing.currency,
            current_period_start: iso(billing.current_period_start),
            current_period_end: iso(billing.current_period_end),
            trial_end: iso(billing.trial_end),
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
            trial_end: None,
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
