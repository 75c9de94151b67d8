//! What Tollgate's Stripe functions share, over async-stripe: the client with its budget and
//! retries ([`StripeApi::send`]), the error classes, the parsing of webhook events and objects, and
//! the facts Tollgate keeps of them. Each function builds its own requests with async-stripe's
//! builders (`functions/<name>/src/stripe_calls.rs`).
//!
//! async-stripe 1.0 is generated from Stripe's OpenAPI specification for one API version,
//! [`PINNED_API_VERSION`]: its client sends that version as `Stripe-Version` on every request, so
//! Stripe answers in the shapes of its types, and its request builders encode the form bodies. The
//! webhook endpoint must be created with the same version, or its payloads may not fit (see
//! [`parse_event`]). Only the function crates that call Stripe depend on this crate.
//!
//! # Objects
//! API responses and webhook objects parse into async-stripe's types (`Subscription`, `Invoice`,
//! `CheckoutSession`), which require every field the pinned version requires. From them we keep
//! only the facts Tollgate needs ([`SubscriptionFacts`], [`InvoiceFacts`], [`CheckoutFacts`]), which
//! feed the billing state machine. Expandable references (customer, subscription) may be an id or
//! an expanded object: both give the id. A payload that does not fit the pinned types is a
//! [`ShapeError`] (or an [`Unparsed`](StripeEvent::Unparsed) event), never misread: the webhook
//! handler fetches the object again by id (the API answers in the pinned version) or answers 5xx so that Stripe retries.
//!
//! Older API versions, concretely:
//! - Subscription periods live on the items since 2025-03-31.basil, and the pinned version
//!   requires `current_period_start/end` on every item, so an older payload (periods only at the
//!   top level) is a [`ShapeError`] whose detail says so. The top-level fields are still read when
//!   the subscription has no item at all (nothing to take the period from).
//! - Invoices name their subscription in `parent.subscription_details.subscription` since basil;
//!   the old top-level `subscription` is the fallback.
//!
//! # Requests, retries and errors
//! Every POST sends an `Idempotency-Key` (the caller's, or a fresh one for a portal session), and
//! a failed attempt is retried as async-stripe's [`RequestStrategy::ExponentialBackoff`] decides
//! (no answer, 409, 424, 429 and 500–504; up to [`MAX_ATTEMPTS`] attempts, 1 s then 2 s apart),
//! with the same key, and only while [`REQUEST_TIMEOUT`] lasts: the whole call, every attempt and
//! pause included, stays within it. What is still failing then is [`StripeError::Unavailable`]
//! (transient: answer 502/503 so that the caller or Stripe retries); other 4xx are
//! [`StripeError::Rejected`] with Stripe's own code and message.
//!
//! # Secrets
//! Nothing here logs (async-stripe itself traces each attempt's status, never a body). The secret
//! key is never part of `Debug` output nor of any error message (Stripe's messages are scrubbed of
//! it, should one quote it), and async-stripe marks its header sensitive. The generated types are
//! built with `redact-generated-debug`: their `Debug` prints no field.
//!
//! [`RequestStrategy::ExponentialBackoff`]: stripe::RequestStrategy::ExponentialBackoff

use std::time::Duration;

mod client;
mod event;
mod objects;

pub use client::{StripeApi, StripeSettings, check_id, idempotency_key_of, organization_metadata};
pub use event::{EventError, EventFacts, StripeEvent, parse_event};
pub use objects::{
    checkout_facts, invoice_facts, parse_checkout_session, parse_invoice, parse_subscription,
    subscription_facts,
};

/// The Stripe API version Tollgate speaks: async-stripe's own (`stripe_shared::version::VERSION`),
/// the version its types follow and its client sends as `Stripe-Version`. Create the webhook
/// endpoint with it. `PINNED_API_VERSION.as_str()` is `2026-09-30.endive` in async-stripe
/// 1.0.0-rc.10.
pub use stripe_shared::version::VERSION as PINNED_API_VERSION;

/// async-stripe's name for an API version ([`PINNED_API_VERSION`]'s type).
pub use stripe_shared::ApiVersion;
use tollgate::http::ApiError;
use tollgate::pipeline::AppState;

/// The default `STRIPE_API_BASE`.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// Budget of one call, every attempt and pause between attempts included. API Gateway gives a
/// request 29 s and checkout makes up to two calls, so one slow Stripe call must not eat it all.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts of one call at most (async-stripe's `ExponentialBackoff` count), within
/// [`REQUEST_TIMEOUT`].
pub const MAX_ATTEMPTS: u32 = 3;

/// The metadata key (on customers and subscriptions) naming the owning organization.
pub const ORGANIZATION_METADATA_KEY: &str = "organizationId";

/// Why a Stripe call failed. `Display` never includes the secret key, card data or a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeError {
    /// Stripe could not be reached or answered 5xx / 429 / 424 / 409 (or timed out), on every
    /// attempt the budget allowed: transient, the caller answers 502/503 so that it (or Stripe, for
    /// a webhook) retries. Also returned by [`StripeApi::new`] when the configuration is unusable
    /// (billing unavailable: 503).
    #[error("Stripe is unavailable: {0}")]
    Unavailable(String),
    /// Stripe refused the request (4xx other than 429, 424 and 409): retrying it will not help.
    /// `code` and `message` are Stripe's (`error.code`, `error.message`).
    #[error("Stripe rejected the request ({status}{}): {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Rejected {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// Stripe answered 2xx with a body that does not fit the pinned types (or lacks what we need).
    #[error("unexpected response from Stripe: {0}")]
    UnexpectedShape(String),
}

impl StripeError {
    /// Whether the same request may succeed later (network, timeout, Stripe 5xx, 429, 424 or 409).
    pub fn is_transient(&self) -> bool {
        matches!(self, StripeError::Unavailable(_))
    }
}

/// A Stripe object (a webhook's `data.object`) that does not fit the pinned type, or lacks a fact
/// we need. Names the object; the detail says what did not fit (never the payload itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Stripe {object} does not match API version {PINNED_API_VERSION}: {detail}")]
pub struct ShapeError {
    /// Stripe's object name: `subscription`, `invoice`, `checkout.session`.
    pub object: &'static str,
    pub detail: String,
}

/// What Tollgate needs of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubscriptionFacts {
    pub id: String,
    pub customer_id: String,
    /// Stripe's status string: `active`, `past_due`, `canceled`, `trialing`, ...
    pub status: String,
    /// The first item's price id (the plan, through configuration).
    pub price_id: Option<String>,
    pub cancel_at_period_end: bool,
    /// The first item's period (current API); the top-level fields of older API versions only
    /// when the subscription has no item.
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
    /// `trial_end` (Unix seconds): when the subscription's trial ends or ended; `None` without a
    /// trial.
    #[serde(default)]
    pub trial_end: Option<i64>,
    /// The first item's `price.unit_amount × quantity` (quantity 1 when Stripe gives none).
    pub amount_cents: Option<u64>,
    /// The first item's price currency (the subscription's when it has no item).
    pub currency: Option<String>,
    /// The first item's `price.recurring.interval`: `month`, `year`, ...
    pub interval: Option<String>,
    /// `metadata.organizationId`.
    pub organization_id: Option<String>,
    pub created: i64,
}

/// What Tollgate needs of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InvoiceFacts {
    pub id: String,
    pub number: Option<String>,
    pub customer_id: String,
    /// `parent.subscription_details.subscription` (current API), else the top-level
    /// `subscription` (older API versions).
    pub subscription_id: Option<String>,
    pub amount_due: u64,
    pub amount_paid: u64,
    pub currency: String,
    /// `draft`, `open`, `paid`, `uncollectible`, `void`.
    pub status: Option<String>,
    pub hosted_invoice_url: Option<String>,
    pub invoice_pdf: Option<String>,
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    /// `status_transitions.paid_at`.
    pub paid_at: Option<i64>,
    pub created: i64,
    /// `subscription_create`, `subscription_cycle`, `subscription_update`, `manual`, ...
    pub billing_reason: Option<String>,
}

/// What Tollgate needs of a Checkout Session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckoutFacts {
    pub id: String,
    pub customer_id: Option<String>,
    pub subscription_id: Option<String>,
    pub client_reference_id: Option<String>,
    /// `payment`, `setup` or `subscription`.
    pub mode: String,
    /// `open`, `complete` or `expired`.
    pub status: Option<String>,
    /// `paid`, `unpaid` or `no_payment_required`.
    pub payment_status: String,
    /// `metadata.organizationId`, else `client_reference_id`.
    pub organization_id: Option<String>,
}

/// The function's Stripe client, built from the current secret key on the first Stripe call and
/// kept until the secret values change; 503 `billing_not_configured` without a key.
pub async fn client(state: &AppState) -> Result<StripeApi, ApiError> {
    let secrets = state.secrets().await?;
    secrets.client(|secrets| {
        let key = secrets.stripe_secret_key.as_deref().ok_or_else(|| {
            ApiError::unavailable(
                "billing_not_configured",
                "Billing is not configured on this deployment (STRIPE_SECRET_KEY is unset).",
            )
        })?;
        StripeSettings::new(key, &state.config.stripe_api_base)
            .and_then(|settings| StripeApi::build(&settings))
            .map_err(api_error)
    })
}

/// Stripe's failures become 502: the request changed nothing Tollgate would not reuse.
pub fn api_error(error: StripeError) -> ApiError {
    tracing::error!(error = %error, "Stripe request failed");
    let message = match &error {
        StripeError::Rejected { message, .. } => format!("Stripe refused the request: {message}"),
        _ => "Stripe could not be reached or failed; try again shortly.".to_owned(),
    };
    ApiError::new(http::StatusCode::BAD_GATEWAY, "stripe_error", message)
}
