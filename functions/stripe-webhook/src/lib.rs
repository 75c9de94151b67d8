//! The stripe-webhook function: `POST /api/webhooks/stripe`, authenticated by `Stripe-Signature`.
//!
//! Each event takes effect exactly once (its marker and its state change commit in one
//! transaction), in any arrival order (the state machine in `billing::state` orders events by
//! their own timestamps), and is never acknowledged without being processed: a payload that does
//! not fit the pinned API types is fetched again through the API, and any transient failure answers
//! 5xx so Stripe retries.

mod stripe_calls;

pub use stripe_calls::{
    create_invoice_item, retrieve_checkout_session, retrieve_invoice, retrieve_subscription,
};

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;

use tollgate::billing::signature::{self, DEFAULT_TOLERANCE, SignatureError};
use tollgate::billing::state::BillingState;
use tollgate::billing::state::{
    self, InvoiceOutcome, InvoiceSignal, SubscriptionSnapshot, Transition,
};
use tollgate::http::{ApiError, body_bytes, json_response};
use tollgate::pipeline::{AppState, FunctionHandlers, store_error};
use tollgate::routes::{Function, Operation};
use tollgate::store::audit::PlanSummary;
use tollgate::store::{InvoiceRecord, OrganizationRecord, TenantId, WebhookCommit, WebhookOutcome};
use tollgate_stripe::{
    self as stripe_api, CheckoutFacts, EventError, EventFacts, InvoiceFacts, StripeEvent,
    SubscriptionFacts,
};

/// The stripe-webhook function's routes and handlers.
pub static HANDLERS: FunctionHandlers = FunctionHandlers {
    function: Function::StripeWebhook,
    handlers: &[(Operation::StripeWebhook, |call| {
        Box::pin(async move { receive(call.state, call.request).await })
    })],
};

/// Stripe's events are far smaller; anything larger is not from Stripe.
pub const MAX_WEBHOOK_BYTES: usize = 512 * 1024;
/// Concurrent events for one organization retry their read-compute-write this often.
const COMMIT_ATTEMPTS: usize = 6;

/// A signed event: its id, type and time, and its object's facts (parsed into async-stripe's
/// types), or the object's id when the payload did not fit the pinned types.
#[derive(Debug)]
struct EventEnvelope {
    id: String,
    event_type: String,
    created: i64,
    object: EventObject,
}

#[derive(Debug)]
enum EventObject {
    Parsed(Box<EventFacts>),
    /// Retrieved again by id, in the pinned version, when the handler needs it.
    Refetch {
        id: String,
        reason: String,
    },
    /// Neither parsed nor retrievable (no id): an event the handler acts on is refused (400), any
    /// other is acknowledged as ignored like every event Tollgate does not act on.
    Missing,
}

impl From<StripeEvent> for EventEnvelope {
    fn from(event: StripeEvent) -> Self {
        match event {
            StripeEvent::Parsed {
                id,
                event_type,
                created,
                object,
            } => EventEnvelope {
                id,
                event_type,
                created,
                object: EventObject::Parsed(Box::new(object)),
            },
            StripeEvent::Unparsed {
                id,
                event_type,
                created,
                object_id,
                reason,
            } => EventEnvelope {
                id,
                event_type,
                created,
                object: EventObject::Refetch {
                    id: object_id,
                    reason,
                },
            },
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Received<'a> {
    received: bool,
    event_id: &'a str,
    outcome: &'a str,
}

fn ok(event_id: &str, outcome: &str) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &Received {
            received: true,
            event_id,
            outcome,
        },
    )
}

pub async fn receive(state: &AppState, request: &Request) -> Result<Response<Body>, ApiError> {
    let payload = body_bytes(request.body());
    if payload.len() > MAX_WEBHOOK_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "The webhook payload is too large.",
        ));
    }
    let header = request
        .headers()
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    match signature::verify(
        &state.secrets().await?.webhook_secrets,
        header,
        payload,
        now,
        DEFAULT_TOLERANCE,
    ) {
        Ok(_) => {}
        Err(SignatureError::NoSecretsConfigured) => {
            return Err(ApiError::unavailable(
                "webhook_not_configured",
                "STRIPE_WEBHOOK_SECRET is unset: this deployment cannot verify Stripe's webhooks.",
            ));
        }
        Err(error) => {
            tracing::warn!(reason = %error, "webhook signature rejected");
            return Err(ApiError::bad_request(
                "invalid_signature",
                error.to_string(),
            ));
        }
    }
    let event: EventEnvelope = match tollgate_stripe::parse_event(payload) {
        Ok(event) => event.into(),
        Err(EventError::ObjectWithoutId {
            id,
            event_type,
            created,
        }) => EventEnvelope {
            id,
            event_type,
            created,
            object: EventObject::Missing,
        },
        Err(error) => return Err(invalid_payload(&error)),
    };
    tracing::info!(event_id = %event.id, event_type = %event.event_type, "webhook received");
    if state
        .store
        .event_processed(&event.id)
        .await
        .map_err(store_error)?
    {
        return Ok(ok(&event.id, "duplicate"));
    }

    let mut skip_invoice = false;
    for _ in 0..COMMIT_ATTEMPTS {
        let Some(mut commit) = plan(state, &event).await? else {
            return Ok(ok(&event.id, "ignored"));
        };
        if skip_invoice {
            commit.invoice = None;
        }
        match state
            .store
            .commit_webhook(&commit)
            .await
            .map_err(store_error)?
        {
            WebhookOutcome::Committed => {
                if let (Some(tenant), Some((billing, _))) = (&commit.tenant, &commit.billing) {
                    tracing::info!(
                        event_id = %event.id,
                        event_type = %event.event_type,
                        organization_id = %tenant.as_str(),
                        status = ?billing.status,
                        plan = ?billing.plan,
                        subscription_id = %billing.subscription_id,
                        "billing state changed"
                    );
                    if billing.unknown_price() {
                        tracing::warn!(price_id = ?billing.price_id, "subscription price is not one of the configured STRIPE_PRICE_* ids");
                    }
                }
                return Ok(ok(&event.id, "processed"));
            }
            WebhookOutcome::Duplicate => return Ok(ok(&event.id, "duplicate")),
            WebhookOutcome::InvoiceNewer => skip_invoice = true,
            WebhookOutcome::BillingChanged => {}
        }
    }
    Err(ApiError::unavailable(
        "busy",
        "The organization's billing changed concurrently; Stripe will retry.",
    ))
}

fn invalid_payload(error: &EventError) -> ApiError {
    ApiError::bad_request(
        "invalid_payload",
        format!("The webhook payload is not usable: {error}."),
    )
}

/// The event's object as `T`: as parsed from the payload, or retrieved again by id in the pinned
/// version when the payload did not fit its types. Never acknowledged unparsed: a failed retrieval
/// answers 5xx, and Stripe retries.
async fn pinned<T, Fut>(
    state: &AppState,
    event: &EventEnvelope,
    parsed: fn(&EventFacts) -> Option<&T>,
    fetch: impl FnOnce(stripe_api::StripeApi, String) -> Fut,
) -> Result<T, ApiError>
where
    T: Clone,
    Fut: std::future::Future<Output = Result<T, stripe_api::StripeError>>,
{
    match &event.object {
        EventObject::Parsed(facts) => parsed(facts).cloned().ok_or_else(|| {
            tracing::error!(event_type = %event.event_type, "the parsed object is not of the event's type");
            ApiError::internal()
        }),
        EventObject::Missing => Err(invalid_payload(&EventError::ObjectWithoutId {
            id: event.id.clone(),
            event_type: event.event_type.clone(),
            created: event.created,
        })),
        EventObject::Refetch { id, reason } => {
            tracing::warn!(%reason, "payload does not fit the pinned API version; fetching it");
            fetch(stripe_api::client(state).await?, id.clone())
                .await
                .map_err(stripe_api::api_error)
        }
    }
}

async fn subscription_facts(
    state: &AppState,
    event: &EventEnvelope,
) -> Result<SubscriptionFacts, ApiError> {
    pinned(
        state,
        event,
        EventFacts::subscription,
        |api, id| async move { stripe_calls::retrieve_subscription(&api, &id).await },
    )
    .await
}

async fn invoice_facts(state: &AppState, event: &EventEnvelope) -> Result<InvoiceFacts, ApiError> {
    pinned(state, event, EventFacts::invoice, |api, id| async move {
        stripe_calls::retrieve_invoice(&api, &id).await
    })
    .await
}

async fn checkout_facts(
    state: &AppState,
    event: &EventEnvelope,
) -> Result<CheckoutFacts, ApiError> {
    pinned(
        state,
        event,
        EventFacts::checkout_session,
        |api, id| async move { stripe_calls::retrieve_checkout_session(&api, &id).await },
    )
    .await
}

async fn tenant_of_customer(
    state: &AppState,
    customer_id: &str,
) -> Result<Option<TenantId>, ApiError> {
    let tenant = state
        .store
        .organization_of_customer(customer_id)
        .await
        .map_err(store_error)?;
    if tenant.is_none() {
        tracing::warn!(
            customer_id,
            "event for a Stripe customer no organization owns; ignored"
        );
    }
    Ok(tenant)
}

fn snapshot(
    event: &EventEnvelope,
    facts: SubscriptionFacts,
    deleted: bool,
) -> Option<SubscriptionSnapshot> {
    let status = state::map_status(&facts.status)?;
    Some(SubscriptionSnapshot {
        event_id: event.id.clone(),
        observed_at: event.created,
        subscription_id: facts.id,
        customer_id: facts.customer_id,
        status,
        price_id: facts.price_id,
        cancel_at_period_end: facts.cancel_at_period_end,
        current_period_start: facts.current_period_start,
        current_period_end: facts.current_period_end,
        trial_end: facts.trial_end,
        amount_cents: facts.amount_cents,
        currency: facts.currency,
        deleted,
    })
}

/// An invoice's status rank, so a later lifecycle step wins at the same second.
fn invoice_rank(status: Option<&str>) -> u8 {
    match status {
        Some("draft") => 0,
        Some("open") => 1,
        Some("uncollectible") => 2,
        Some("void") => 3,
        Some("paid") => 4,
        _ => 0,
    }
}

fn invoice_record(event: &EventEnvelope, facts: &InvoiceFacts) -> InvoiceRecord {
    InvoiceRecord {
        id: facts.id.clone(),
        number: facts.number.clone(),
        amount_due: facts.amount_due,
        amount_paid: facts.amount_paid,
        currency: facts.currency.clone(),
        status: facts.status.clone(),
        hosted_invoice_url: facts.hosted_invoice_url.clone(),
        invoice_pdf: facts.invoice_pdf.clone(),
        period_start: facts.period_start,
        period_end: facts.period_end,
        paid_at: facts.paid_at,
        created: facts.created,
        subscription_id: facts.subscription_id.clone(),
        event_order: format!(
            "{:012}:{}:{}",
            event.created,
            invoice_rank(facts.status.as_deref()),
            event.id
        ),
        overage_minutes: None,
        overage_cost_cents: None,
    }
}

/// Works out what `event` changes, reading the current billing state. `None`: nothing to do.
async fn plan(state: &AppState, event: &EventEnvelope) -> Result<Option<WebhookCommit>, ApiError> {
    let prices = &state.config.prices;
    let lookup = |price: &str| prices.plan_of(price);
    let (tenant, subscription, invoice) = match event.event_type.as_str() {
        "checkout.session.completed" => {
            let facts = checkout_facts(state, event).await?;
            let (Some(customer), Some(subscription_id)) =
                (facts.customer_id, facts.subscription_id)
            else {
                return Ok(None);
            };
            let Some(tenant) = tenant_of_customer(state, &customer).await? else {
                return Ok(None);
            };
            // The session carries no subscription state: read it, in the pinned version.
            let api = stripe_api::client(state).await?;
            let subscription = stripe_calls::retrieve_subscription(&api, &subscription_id)
                .await
                .map_err(stripe_api::api_error)?;
            (tenant, snapshot(event, subscription, false), None)
        }
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted" => {
            let facts = subscription_facts(state, event).await?;
            let Some(tenant) = tenant_of_customer(state, &facts.customer_id).await? else {
                return Ok(None);
            };
            let deleted = event.event_type == "customer.subscription.deleted";
            (tenant, snapshot(event, facts, deleted), None)
        }
        "invoice.paid"
        | "invoice.payment_succeeded"
        | "invoice.payment_failed"
        | "invoice.created"
        | "invoice.finalized"
        | "invoice.updated"
        | "invoice.voided" => {
            let facts = invoice_facts(state, event).await?;
            let Some(tenant) = tenant_of_customer(state, &facts.customer_id).await? else {
                return Ok(None);
            };
            let mut record = invoice_record(event, &facts);
            let outcome = match event.event_type.as_str() {
                "invoice.payment_failed" => Some(InvoiceOutcome::PaymentFailed),
                "invoice.paid" | "invoice.payment_succeeded" => {
                    Some(InvoiceOutcome::PaymentSucceeded)
                }
                _ => None,
            };
            let signal = match (outcome, &facts.subscription_id) {
                (Some(outcome), Some(subscription_id)) => Some(InvoiceSignal {
                    event_id: event.id.clone(),
                    created: event.created,
                    subscription_id: subscription_id.clone(),
                    customer_id: facts.customer_id.clone(),
                    outcome,
                }),
                _ => None,
            };
            let organization = state
                .store
                .get_organization(&tenant)
                .await
                .map_err(store_error)?;
            let Some(organization) = organization else {
                return Ok(None);
            };
            let billing = match signal {
                Some(signal) => {
                    match state::apply_invoice(organization.billing.as_ref(), &signal) {
                        Transition::Apply(next) => Some((next, organization.billing_version)),
                        Transition::Ignore(_) => None,
                    }
                }
                None => None,
            };
            let plan_change = billing
                .as_ref()
                .map(|(next, _)| plan_change(state, &organization, next));
            let overage_billed = if is_renewal_draft(event, &facts) {
                bill_overage(state, &tenant, &organization, &facts, &mut record).await?
            } else {
                None
            };
            return Ok(Some(WebhookCommit {
                event_id: event.id.clone(),
                event_type: event.event_type.clone(),
                tenant: Some(tenant),
                billing,
                invoice: Some(record),
                overage_billed,
                plan_change,
            }));
        }
        _ => return Ok(None),
    };
    let Some(snapshot) = subscription else {
        tracing::warn!(event_id = %event.id, "subscription status not understood; ignored");
        return Ok(None);
    };
    let organization = state
        .store
        .get_organization(&tenant)
        .await
        .map_err(store_error)?;
    let Some(organization) = organization else {
        return Ok(None);
    };
    let billing = match state::apply(organization.billing.as_ref(), &snapshot, &lookup) {
        Transition::Apply(next) => Some((next, organization.billing_version)),
        // Older or repeated news: record the event as processed, change nothing.
        Transition::Ignore(_) => None,
    };
    let plan_change = billing
        .as_ref()
        .map(|(next, _)| plan_change(state, &organization, next));
    Ok(Some(WebhookCommit {
        event_id: event.id.clone(),
        event_type: event.event_type.clone(),
        tenant: Some(tenant),
        billing,
        invoice,
        overage_billed: None,
        plan_change,
    }))
}

/// The organization's plan, status and entitlements as read, and as the billing state `next`
/// leaves them: the commit writes a `plan.changed` audit event when they differ (a change of
/// only the period, the amount or `cancelAtPeriodEnd` writes none).
fn plan_change(
    state: &AppState,
    organization: &OrganizationRecord,
    next: &BillingState,
) -> (PlanSummary, PlanSummary) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let grace = state.config.past_due_grace_days;
    (
        PlanSummary::of_organization(organization, now, grace),
        PlanSummary::of_organization(&organization.with_billing(next), now, grace),
    )
}

/// `invoice.created` for a subscription renewal, still a draft: the one moment Stripe lets us add
/// the closed period's overage to the invoice.
fn is_renewal_draft(event: &EventEnvelope, facts: &InvoiceFacts) -> bool {
    event.event_type == "invoice.created"
        && facts.billing_reason.as_deref() == Some("subscription_cycle")
        && facts.status.as_deref() == Some("draft")
}

/// Adds the closed period's overage to the renewal invoice, exactly once: the period is first
/// frozen (a marker, and `overageBilledThrough` so later calls of that period go to the open one),
/// then the invoice item is created with an idempotency key per organization and period, then the
/// marker is set to billed in the webhook's commit. A retry after any failure resumes from the
/// marker with the same amount and key, so Stripe never gets a second item. The commit records
/// the marker as billed (only if it is not yet) with the `overage.billed` audit event when an item
/// was created.
async fn bill_overage(
    state: &AppState,
    tenant: &TenantId,
    organization: &tollgate::store::OrganizationRecord,
    facts: &InvoiceFacts,
    record: &mut InvoiceRecord,
) -> Result<
    Option<(
        tollgate::usage::Period,
        tollgate::store::usage::OverageRecord,
    )>,
    ApiError,
> {
    use tollgate::store::usage::{OVERAGE_BILLED, OverageRecord};
    let Some(period_end) = facts.period_end else {
        return Ok(None);
    };
    let Ok(last_moment) = time::OffsetDateTime::from_unix_timestamp(period_end - 1) else {
        return Ok(None);
    };
    let period = tollgate::usage::organization_period(organization.billing.as_ref(), last_moment);
    // The plan the closed period was on: the billing state's, whatever happened since.
    let plan = organization
        .billing
        .as_ref()
        .and_then(|b| b.plan)
        .or(organization.plan);
    let included = tollgate::usage::included_minutes(plan);

    let mut marker = state
        .store
        .overage_record(tenant, &period)
        .await
        .map_err(store_error)?;
    for _ in 0..COMMIT_ATTEMPTS {
        if marker.is_some() {
            break;
        }
        let counter = state
            .store
            .usage_counter(tenant, &period)
            .await
            .map_err(store_error)?;
        let overage = tollgate::pricing::overage_minutes(counter.minutes, included);
        let frozen = OverageRecord {
            period_key: period.key(),
            minutes: counter.minutes,
            overage_minutes: overage,
            amount_cents: tollgate::pricing::overage_cost_cents(overage),
            invoice_id: facts.id.clone(),
            invoice_item_id: None,
            state: "pending".to_owned(),
            frozen_at: tollgate::store::now_rfc3339(),
        };
        if state
            .store
            .freeze_period(tenant, &period, counter.minutes, &frozen)
            .await
            .map_err(store_error)?
        {
            tracing::info!(period = %period.key(), minutes = counter.minutes, overage_minutes = overage, "usage period frozen for overage billing");
            marker = Some(frozen);
        } else {
            marker = state
                .store
                .overage_record(tenant, &period)
                .await
                .map_err(store_error)?;
        }
    }
    let Some(marker) = marker else {
        return Err(ApiError::unavailable(
            "busy",
            "Usage is still being recorded for the period; Stripe will retry.",
        ));
    };
    if marker.invoice_id == record.id {
        record.overage_minutes = Some(marker.overage_minutes);
        record.overage_cost_cents = Some(marker.amount_cents);
    }
    if marker.state == OVERAGE_BILLED {
        return Ok(None);
    }
    let item = if marker.amount_cents > 0 {
        let customer = organization
            .stripe_customer_id
            .as_deref()
            .unwrap_or(&facts.customer_id);
        let description = format!(
            "Overage: {} minutes above the {} included, at $0.10 per minute (period from {})",
            marker.overage_minutes, included, marker.period_key
        );
        let key = format!("tollgate-overage-{}-{}", tenant.as_str(), marker.period_key);
        let minutes = marker.overage_minutes.to_string();
        let api = stripe_api::client(state).await?;
        let item = stripe_calls::create_invoice_item(
            &api,
            customer,
            &marker.invoice_id,
            marker.amount_cents,
            facts.currency.as_str(),
            &description,
            &[
                ("organizationId", tenant.as_str()),
                ("period", marker.period_key.as_str()),
                ("overageMinutes", minutes.as_str()),
            ],
            &key,
        )
        .await
        .map_err(stripe_api::api_error)?;
        tracing::info!(invoice_id = %marker.invoice_id, invoice_item_id = %item, overage_minutes = marker.overage_minutes, amount_cents = marker.amount_cents, "overage billed");
        Some(item)
    } else {
        None
    };
    Ok(Some((
        period,
        OverageRecord {
            invoice_item_id: item,
            ..marker
        },
    )))
}
