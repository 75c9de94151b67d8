//! Stripe API client: the few calls Tollgate makes, and the parsing of webhook objects.
//!
//! Built on async-stripe 1.0 (the split crates: client, `core` for customers, `checkout`,
//! `billing`), which pins one Stripe API version, [`PINNED_API_VERSION`]: every request carries it
//! as `Stripe-Version`, so Stripe answers in the shapes of the pinned types. The webhook endpoint
//! must be created with the same version, or its payloads may not fit (see below).
//!
//! # Objects
//! API responses and webhook `data.object` payloads parse into async-stripe's pinned types
//! (`stripe_shared::Subscription`, `Invoice`, `CheckoutSession`) through the crates' own miniserde
//! implementations — the very code the client uses for responses, so a webhook payload is accepted
//! exactly when the API's answer for the same object would be. A payload of another API version
//! that lacks a field the pinned type requires fails with a [`ShapeError`] instead of being
//! misread; the webhook handler then fetches the object by id ([`StripeApi::retrieve_subscription`]
//! and friends answer in the pinned version) or answers 5xx so Stripe retries.
//!
//! From the typed objects we keep only the facts Tollgate needs ([`SubscriptionFacts`],
//! [`InvoiceFacts`], [`CheckoutFacts`]). Expandable references (customer, subscription) may be an
//! id or an expanded object: both give the id.
//!
//! Older API versions, concretely:
//! - Subscription periods live on the items since 2025-03-31.basil. The pinned
//!   `SubscriptionItem` *requires* `current_period_start/end`, so an older payload (periods only at
//!   the top level) is a [`ShapeError`] whose detail says so. The top-level fields are still read
//!   when the subscription has no item at all (nothing to take the period from).
//! - Invoices name their subscription in `parent.subscription_details.subscription` since basil;
//!   the pinned type still accepts the old top-level `subscription`, which is the fallback.
//!
//! # Errors and secrets
//! Network failures, timeouts, Stripe 5xx, 429 and 409 (a concurrent request with the same
//! idempotency key) are [`StripeError::Unavailable`] (transient: answer 502/503 so the caller or
//! Stripe retries); other 4xx are [`StripeError::Rejected`] with
//! Stripe's own code and message. Nothing here logs. The secret key is never part of `Debug`
//! output nor of any error message (Stripe's messages are scrubbed of it, should one quote it).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stripe::{IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_billing::invoice::RetrieveInvoice;
use stripe_billing::invoice_item::CreateInvoiceItem;
use stripe_billing::subscription::RetrieveSubscription;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
    RetrieveCheckoutSession,
};
use stripe_core::customer::CreateCustomer;
use stripe_shared::{CheckoutSession, CheckoutSessionMode, Invoice, Subscription};

/// The Stripe API version async-stripe 1.0.0-rc.10 pins (`stripe_shared::version::VERSION`) and
/// sends as `Stripe-Version` on every request. Create the webhook endpoint with this version.
pub const PINNED_API_VERSION: &str = "2026-09-30.endive";

/// The default `STRIPE_API_BASE`.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// Budget of one HTTP attempt (connect, request and response body). API Gateway gives a request
/// 29 s and checkout makes up to two calls, so one slow Stripe call must not eat it all.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The metadata key (on customers and subscriptions) naming the owning organization.
pub const ORGANIZATION_METADATA_KEY: &str = "organizationId";

/// Why a Stripe call failed. `Display` never includes the secret key, card data or a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeError {
    /// Stripe could not be reached or answered 5xx / 429 / 409 (or timed out): transient, the caller
    /// answers 502/503 so that it (or Stripe, for a webhook) retries. Also returned by
    /// [`StripeApi::new`] when the configuration is unusable (billing unavailable: 503).
    #[error("Stripe is unavailable: {0}")]
    Unavailable(String),
    /// Stripe refused the request (4xx other than 429 and 409): retrying it will not help.
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
    /// Whether the same request may succeed later (network, timeout, Stripe 5xx, 429 or 409).
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

/// A subscription checkout for one organization's Stripe customer and one price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckoutRequest<'a> {
    pub customer_id: &'a str,
    pub price_id: &'a str,
    pub organization_id: &'a str,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
}

/// A created Checkout Session: where to send the user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckoutSessionCreated {
    pub id: String,
    pub url: String,
}

/// The Stripe API as Tollgate uses it. Cheap to clone (the HTTP client and key are shared);
/// build it once per cold start: [`StripeApi::new`] does no I/O.
#[derive(Clone)]
pub struct StripeApi {
    client: stripe::Client,
    api_base: String,
    /// Kept only to scrub it from error messages; never printed.
    secret_key: Arc<str>,
}

impl fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeApi")
            .field("api_base", &self.api_base)
            .field("api_version", &PINNED_API_VERSION)
            .field("secret_key", &"[redacted]")
            .finish()
    }
}

/// A validated Stripe secret key and API base: what [`StripeApi::build`] needs. Holds no
/// async-stripe type, so a function that never calls Stripe carries none of its code (the error
/// type of async-stripe's client builder alone drags in ~2 MB of drop glue for Stripe's objects).
#[derive(Clone)]
pub struct StripeSettings {
    api_base: String,
    /// Never printed (see the `Debug` impl).
    secret_key: Arc<str>,
}

impl fmt::Debug for StripeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeSettings")
            .field("api_base", &self.api_base)
            .field("secret_key", &"[redacted]")
            .finish()
    }
}

impl StripeSettings {
    /// `api_base` is `STRIPE_API_BASE`: [`DEFAULT_API_BASE`], or a local stand-in such as
    /// `http://127.0.0.1:PORT` in tests.
    ///
    /// Fails with [`StripeError::Unavailable`] when the key is empty or not a valid header value,
    /// or the base is not an `http(s)` URL: billing cannot work with this configuration.
    pub fn new(secret_key: &str, api_base: &str) -> Result<StripeSettings, StripeError> {
        let secret_key = secret_key.trim();
        if secret_key.is_empty() {
            return Err(StripeError::Unavailable(
                "no Stripe secret key is configured".to_owned(),
            ));
        }
        if !secret_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(StripeError::Unavailable(
                "the Stripe secret key contains characters a key never has".to_owned(),
            ));
        }
        let base = api_base.trim().trim_end_matches('/');
        let base = if base.is_empty() {
            DEFAULT_API_BASE
        } else {
            base
        };
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(StripeError::Unavailable(format!(
                "STRIPE_API_BASE must be an http(s) URL, got {base:?}"
            )));
        }
        Ok(StripeSettings {
            api_base: base.to_owned(),
            secret_key: Arc::from(secret_key),
        })
    }
}

impl StripeApi {
    /// A client for `api_base` with the secret key `secret_key` ([`StripeSettings::new`], then
    /// [`StripeApi::build`]). No network I/O.
    pub fn new(secret_key: &str, api_base: &str) -> Result<StripeApi, StripeError> {
        StripeApi::build(&StripeSettings::new(secret_key, api_base)?)
    }

    /// The client for validated settings. No network I/O.
    pub fn build(settings: &StripeSettings) -> Result<StripeApi, StripeError> {
        // async-stripe appends `v1/<path>` to the base as given.
        let client = stripe::ClientBuilder::new(&*settings.secret_key)
            .url(format!("{}/", settings.api_base))
            .timeout(REQUEST_TIMEOUT)
            .request_strategy(RequestStrategy::Once)
            .app_info("tollgate", Some(env!("CARGO_PKG_VERSION").to_owned()), None)
            .build()
            .map_err(|err| {
                StripeError::Unavailable(format!("invalid Stripe client configuration: {err}"))
            })?;
        Ok(StripeApi {
            client,
            api_base: settings.api_base.clone(),
            secret_key: settings.secret_key.clone(),
        })
    }

    /// The API base requests go to (without a trailing slash).
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// Creates the Stripe customer of an organization (`metadata[organizationId]`); returns its
    /// id (`cus_...`). The idempotency key makes a retried creation return the same customer.
    pub async fn create_customer(
        &self,
        organization_id: &str,
        name: &str,
        email: Option<&str>,
        idempotency_key: &str,
    ) -> Result<String, StripeError> {
        const OP: &str = "create customer";
        let strategy = idempotent(idempotency_key)?;
        let mut request = CreateCustomer::new()
            .name(name)
            .metadata(organization_metadata(organization_id));
        if let Some(email) = email {
            request = request.email(email);
        }
        let customer = request
            .customize()
            .request_strategy(strategy)
            .send(&self.client)
            .await
            .map_err(|err| self.map_error(OP, err))?;
        Ok(customer.id.as_str().to_owned())
    }

    /// Creates a subscription-mode Checkout Session. Sends exactly `mode=subscription`,
    /// `customer`, `client_reference_id=<organization>`, `line_items[0][price]`,
    /// `line_items[0][quantity]=1`, `subscription_data[metadata][organizationId]`, `success_url`
    /// and `cancel_url`.
    pub async fn create_checkout_session(
        &self,
        request: &CheckoutRequest<'_>,
        idempotency_key: &str,
    ) -> Result<CheckoutSessionCreated, StripeError> {
        const OP: &str = "create checkout session";
        let strategy = idempotent(idempotency_key)?;
        let mut line_item = CreateCheckoutSessionLineItems::new();
        line_item.price = Some(request.price_id.to_owned());
        line_item.quantity = Some(1);
        let mut subscription_data = CreateCheckoutSessionSubscriptionData::new();
        subscription_data.metadata = Some(organization_metadata(request.organization_id));
        let session = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Subscription)
            .customer(request.customer_id)
            .client_reference_id(request.organization_id)
            .line_items(vec![line_item])
            .subscription_data(subscription_data)
            .success_url(request.success_url)
            .cancel_url(request.cancel_url)
            .customize()
            .request_strategy(strategy)
            .send(&self.client)
            .await
            .map_err(|err| self.map_error(OP, err))?;
        let id = session.id.as_str().to_owned();
        match session.url {
            Some(url) if !url.is_empty() => Ok(CheckoutSessionCreated { id, url }),
            _ => Err(StripeError::UnexpectedShape(format!(
                "{OP}: checkout session {id} has no url"
            ))),
        }
    }

    /// Creates a customer portal session; returns its URL.
    pub async fn create_portal_session(
        &self,
        customer_id: &str,
        return_url: &str,
    ) -> Result<String, StripeError> {
        const OP: &str = "create billing portal session";
        let session = CreateBillingPortalSession::new()
            .customer(customer_id)
            .return_url(return_url)
            .send(&self.client)
            .await
            .map_err(|err| self.map_error(OP, err))?;
        if session.url.is_empty() {
            return Err(StripeError::UnexpectedShape(format!(
                "{OP}: portal session {} has no url",
                session.id.as_str()
            )));
        }
        Ok(session.url)
    }

    /// Retrieves a subscription (in the pinned API version).
    pub async fn retrieve_subscription(&self, id: &str) -> Result<SubscriptionFacts, StripeError> {
        const OP: &str = "retrieve subscription";
        check_id(OP, id)?;
        let subscription = RetrieveSubscription::new(id)
            .send(&self.client)
            .await
            .map_err(|err| self.map_error(OP, err))?;
        subscription_facts(&subscription, None)
            .map_err(|err| StripeError::UnexpectedShape(format!("{OP}: {err}")))
    }

    /// Retrieves an invoice (in the pinned API version).
    pub async fn retrieve_invoice(&self, id: &str) -> Result<InvoiceFacts, StripeError> {
        const OP: &str = "retrieve invoice";
        check_id(OP, id)?;
        let invoice = RetrieveInvoice::new(id)
            .send(&self.client)
            .await
            .map_err(|err| self.map_error(OP, err))?;
        invoice_facts(&invoice).map_err(|err| StripeError::UnexpectedShape(format!("{OP}: {err}")))
    }

    /// Retrieves a Checkout Session (in the pinned API version).
    pub async fn retrieve_checkout_session(&self, id: &str) -> Result<CheckoutFacts, StripeError> {
        const OP: &str = "retrieve checkout session";
        check_id(OP, id)?;
        let session = RetrieveCheckoutSession::new(id)
            .send(&self.client)
            .await
            .map_err(|err| self.map_error(OP, err))?;
        Ok(checkout_facts(&session))
    }

    /// Adds an invoice item of `amount_cents` in `currency` (ISO code, lower case) to the draft
    /// invoice `invoice_id` of `customer_id` (overage billing); returns its id (`ii_...`).
    #[allow(clippy::too_many_arguments)] // one call site, every argument a distinct Stripe field
    pub async fn create_invoice_item(
        &self,
        customer_id: &str,
        invoice_id: &str,
        amount_cents: u64,
        currency: &str,
        description: &str,
        metadata: &[(&str, &str)],
        idempotency_key: &str,
    ) -> Result<String, StripeError> {
        const OP: &str = "create invoice item";
        let strategy = idempotent(idempotency_key)?;
        let amount = i64::try_from(amount_cents).map_err(|_| StripeError::Rejected {
            status: 400,
            code: Some("amount_too_large".to_owned()),
            message: format!("{OP}: amount {amount_cents} does not fit Stripe's integer"),
        })?;
        let currency: stripe_types::Currency = match currency.trim().to_ascii_lowercase().parse() {
            Ok(currency) => currency,
            Err(never) => match never {},
        };
        let metadata: HashMap<String, String> = metadata
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        let mut request = CreateInvoiceItem::new()
            .customer(customer_id)
            .invoice(invoice_id)
            .amount(amount)
            .currency(currency)
            .description(description);
        if !metadata.is_empty() {
            request = request.metadata(metadata);
        }
        let item = request
            .customize()
            .request_strategy(strategy)
            .send(&self.client)
            .await
            .map_err(|err| self.map_error(OP, err))?;
        Ok(item.id.as_str().to_owned())
    }

    /// Maps async-stripe's error to ours, scrubbing the secret key from anything Stripe quoted.
    fn map_error(&self, op: &'static str, err: stripe::StripeError) -> StripeError {
        match err {
            stripe::StripeError::Stripe(api, status) => {
                let code = api.code.as_ref().map(|code| code.as_str().to_owned());
                let message = api
                    .message
                    .as_deref()
                    .map(|message| self.scrub(message))
                    .unwrap_or_else(|| format!("Stripe {} without a message", api.type_.as_str()));
                // 409: the request raced another with the same idempotency key (or on the same
                // object); like 429 and 5xx, the same request is expected to succeed later.
                let transient = status >= 500
                    || status == 429
                    || status == 409
                    || matches!(code.as_deref(), Some("lock_timeout" | "rate_limit"));
                if transient {
                    StripeError::Unavailable(format!("{op}: Stripe answered {status}: {message}"))
                } else {
                    StripeError::Rejected {
                        status,
                        code,
                        message,
                    }
                }
            }
            stripe::StripeError::Timeout => StripeError::Unavailable(format!(
                "{op}: no answer within {} s",
                REQUEST_TIMEOUT.as_secs()
            )),
            stripe::StripeError::ClientError(message)
            | stripe::StripeError::ConfigError(message) => {
                StripeError::Unavailable(format!("{op}: {}", self.scrub(&message)))
            }
            // async-stripe reports an error status whose body is not Stripe's error JSON (a proxy's
            // 502 page, say) with these two messages and no status: it is not a refusal by Stripe,
            // so treat it as transient rather than lose the request. Anything else it fails to
            // deserialize is a 2xx body that does not fit the pinned types.
            stripe::StripeError::JSONDeserialize(message)
                if message == "error deserializing Stripe error"
                    || message == "Response was not valid UTF-8" =>
            {
                StripeError::Unavailable(format!(
                    "{op}: Stripe answered an error without its error body"
                ))
            }
            stripe::StripeError::JSONDeserialize(_) => StripeError::UnexpectedShape(format!(
                "{op}: the response does not match API version {PINNED_API_VERSION}"
            )),
        }
    }

    fn scrub(&self, text: &str) -> String {
        text.replace(&*self.secret_key, "[redacted]")
    }
}

fn organization_metadata(organization_id: &str) -> HashMap<String, String> {
    HashMap::from([(
        ORGANIZATION_METADATA_KEY.to_owned(),
        organization_id.to_owned(),
    )])
}

/// The request strategy sending `Idempotency-Key: <key>` once.
fn idempotent(key: &str) -> Result<RequestStrategy, StripeError> {
    let invalid = |reason: String| StripeError::Rejected {
        status: 400,
        code: Some("idempotency_key_invalid".to_owned()),
        message: format!("invalid idempotency key: {reason}"),
    };
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "only visible ASCII characters are allowed".to_owned(),
        ));
    }
    IdempotencyKey::new(key)
        .map(RequestStrategy::Idempotent)
        .map_err(|err| invalid(err.to_string()))
}

/// Ids become part of the request path: letters, digits and `_` only.
fn check_id(op: &'static str, id: &str) -> Result<(), StripeError> {
    let valid = !id.is_empty()
        && id.len() <= 255
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(StripeError::Rejected {
            status: 400,
            code: Some("invalid_id".to_owned()),
            message: format!("{op}: not a Stripe id"),
        })
    }
}

/// Parses a webhook's `data.object` as a subscription of the pinned API version.
pub fn parse_subscription(object: &Value) -> Result<SubscriptionFacts, ShapeError> {
    const OBJECT: &str = "subscription";
    let subscription: Subscription = parse_pinned(OBJECT, object).map_err(|mut err| {
        if let Some(hint) = subscription_hint(object) {
            err.detail = hint;
        }
        err
    })?;
    subscription_facts(&subscription, Some(object))
}

/// Parses a webhook's `data.object` as an invoice of the pinned API version.
pub fn parse_invoice(object: &Value) -> Result<InvoiceFacts, ShapeError> {
    let invoice: Invoice = parse_pinned("invoice", object)?;
    invoice_facts(&invoice)
}

/// Parses a webhook's `data.object` as a Checkout Session of the pinned API version.
pub fn parse_checkout_session(object: &Value) -> Result<CheckoutFacts, ShapeError> {
    let session: CheckoutSession = parse_pinned("checkout.session", object)?;
    Ok(checkout_facts(&session))
}

/// Deserializes `object` into the pinned type `T` with async-stripe's own (miniserde) impls.
fn parse_pinned<T: miniserde::Deserialize>(
    name: &'static str,
    object: &Value,
) -> Result<T, ShapeError> {
    let shape = |detail: String| ShapeError {
        object: name,
        detail,
    };
    let Some(fields) = object.as_object() else {
        return Err(shape(format!(
            "expected a JSON object, got {}",
            json_kind(object)
        )));
    };
    match fields.get("object") {
        None => {}
        Some(Value::String(kind)) if kind == name => {}
        Some(Value::String(kind)) => {
            return Err(shape(format!("its \"object\" is {kind:?}, not {name:?}")));
        }
        Some(other) => {
            return Err(shape(format!(
                "its \"object\" is {}, not a string",
                json_kind(other)
            )));
        }
    }
    miniserde::json::from_str(&object.to_string()).map_err(|_| {
        shape(
            "a field the pinned type requires is missing or has another type \
             (a payload of another API version?)"
                .to_owned(),
        )
    })
}

/// A precise reason for the one known incompatibility of subscriptions: periods on the items
/// (2025-03-31.basil and later) versus at the top level (earlier versions).
fn subscription_hint(object: &Value) -> Option<String> {
    let items = object.pointer("/items/data")?.as_array()?;
    let lacking = items.iter().position(|item| {
        item.get("current_period_start").is_none() || item.get("current_period_end").is_none()
    })?;
    let top_level = object.get("current_period_start").is_some();
    Some(format!(
        "items.data[{lacking}] has no current_period_start/end{}",
        if top_level {
            " (they are at the top level: a payload of an API version before 2025-03-31.basil)"
        } else {
            ""
        }
    ))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn subscription_facts(
    subscription: &Subscription,
    raw: Option<&Value>,
) -> Result<SubscriptionFacts, ShapeError> {
    let item = subscription.items.data.first();
    let price = item.map(|item| &item.price);
    // Older API versions: the period is at the top level (only reachable for a subscription
    // without items, since the pinned item type requires its own period).
    let raw_period = |field: &str| raw.and_then(|raw| raw.get(field)).and_then(Value::as_i64);
    let (current_period_start, current_period_end) = match item {
        Some(item) => (
            Some(item.current_period_start),
            Some(item.current_period_end),
        ),
        None => (
            raw_period("current_period_start"),
            raw_period("current_period_end"),
        ),
    };
    let amount_cents = item.and_then(|item| {
        let unit = u64::try_from(item.price.unit_amount?).ok()?;
        unit.checked_mul(item.quantity.unwrap_or(1))
    });
    Ok(SubscriptionFacts {
        id: subscription.id.as_str().to_owned(),
        customer_id: subscription.customer.id().as_str().to_owned(),
        status: subscription.status.as_str().to_owned(),
        price_id: price.map(|price| price.id.as_str().to_owned()),
        cancel_at_period_end: subscription.cancel_at_period_end,
        current_period_start,
        current_period_end,
        amount_cents,
        currency: Some(
            price
                .map(|price| price.currency.to_string())
                .unwrap_or_else(|| subscription.currency.to_string()),
        ),
        interval: price
            .and_then(|price| price.recurring.as_ref())
            .map(|recurring| recurring.interval.as_str().to_owned()),
        organization_id: subscription
            .metadata
            .get(ORGANIZATION_METADATA_KEY)
            .filter(|id| !id.is_empty())
            .cloned(),
        created: subscription.created,
    })
}

fn invoice_facts(invoice: &Invoice) -> Result<InvoiceFacts, ShapeError> {
    let shape = |detail: &str| ShapeError {
        object: "invoice",
        detail: detail.to_owned(),
    };
    let id = invoice
        .id
        .as_ref()
        .ok_or_else(|| shape("it has no id (a preview invoice?)"))?;
    let customer = invoice
        .customer
        .as_ref()
        .ok_or_else(|| shape("it has no customer"))?;
    let amount = |value: i64, field: &str| {
        u64::try_from(value).map_err(|_| shape(&format!("{field} is negative")))
    };
    let subscription_id = invoice
        .parent
        .as_ref()
        .and_then(|parent| parent.subscription_details.as_ref())
        .map(|details| details.subscription.id().as_str().to_owned())
        .or_else(|| {
            invoice
                .subscription
                .as_ref()
                .map(|subscription| subscription.id().as_str().to_owned())
        });
    Ok(InvoiceFacts {
        id: id.as_str().to_owned(),
        number: invoice.number.clone(),
        customer_id: customer.id().as_str().to_owned(),
        subscription_id,
        amount_due: amount(invoice.amount_due, "amount_due")?,
        amount_paid: amount(invoice.amount_paid, "amount_paid")?,
        currency: invoice.currency.to_string(),
        status: invoice
            .status
            .as_ref()
            .map(|status| status.as_str().to_owned()),
        hosted_invoice_url: invoice.hosted_invoice_url.clone(),
        invoice_pdf: invoice.invoice_pdf.clone(),
        period_start: Some(invoice.period_start),
        period_end: Some(invoice.period_end),
        paid_at: invoice.status_transitions.paid_at,
        created: invoice.created,
        billing_reason: invoice
            .billing_reason
            .as_ref()
            .map(|reason| reason.as_str().to_owned()),
    })
}

fn checkout_facts(session: &CheckoutSession) -> CheckoutFacts {
    let client_reference_id = session
        .client_reference_id
        .clone()
        .filter(|id| !id.is_empty());
    let organization_id = session
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.get(ORGANIZATION_METADATA_KEY))
        .filter(|id| !id.is_empty())
        .cloned()
        .or_else(|| client_reference_id.clone());
    CheckoutFacts {
        id: session.id.as_str().to_owned(),
        customer_id: session
            .customer
            .as_ref()
            .map(|customer| customer.id().as_str().to_owned()),
        subscription_id: session
            .subscription
            .as_ref()
            .map(|subscription| subscription.id().as_str().to_owned()),
        client_reference_id,
        mode: session.mode.as_str().to_owned(),
        status: session
            .status
            .as_ref()
            .map(|status| status.as_str().to_owned()),
        payment_status: session.payment_status.as_str().to_owned(),
        organization_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_version_is_the_crates() {
        assert_eq!(stripe_shared::version::VERSION.as_str(), PINNED_API_VERSION);
    }

    #[test]
    fn client_and_futures_can_cross_threads() {
        fn clone_send_sync<T: Clone + Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        let api = StripeApi::new("sk_test_x", "http://127.0.0.1:9").unwrap();
        clone_send_sync(&api);
        let request = CheckoutRequest {
            customer_id: "cus_1",
            price_id: "price_1",
            organization_id: "org_1",
            success_url: "https://app.example.com/s",
            cancel_url: "https://app.example.com/c",
        };
        // Built, checked and dropped without being polled: no I/O.
        send(&api.create_customer("org_1", "Acme", None, "k"));
        send(&api.create_checkout_session(&request, "k"));
        send(&api.create_portal_session("cus_1", "https://app.example.com"));
        send(&api.retrieve_subscription("sub_1"));
        send(&api.retrieve_invoice("in_1"));
        send(&api.retrieve_checkout_session("cs_1"));
        send(&api.create_invoice_item("cus_1", "in_1", 1, "usd", "d", &[], "k"));
    }

    #[test]
    fn debug_hides_the_key() {
        let api = StripeApi::new("sk_test_do_not_print_me", "http://127.0.0.1:9").unwrap();
        let debug = format!("{api:?}");
        assert!(!debug.contains("do_not_print_me"), "{debug}");
        assert!(debug.contains("http://127.0.0.1:9"), "{debug}");
    }

    #[test]
    fn configuration_errors() {
        assert!(matches!(
            StripeApi::new(" ", DEFAULT_API_BASE),
            Err(StripeError::Unavailable(_))
        ));
        assert!(matches!(
            StripeApi::new("sk_test_x", "ftp://example.com"),
            Err(StripeError::Unavailable(_))
        ));
        let api = StripeApi::new("sk_test_x", "").unwrap();
        assert_eq!(api.api_base(), DEFAULT_API_BASE);
        let api = StripeApi::new("sk_test_x", "http://127.0.0.1:1234/").unwrap();
        assert_eq!(api.api_base(), "http://127.0.0.1:1234");
    }

    #[test]
    fn idempotency_keys_and_ids_are_checked() {
        assert!(idempotent("checkout:org_1:abc").is_ok());
        assert!(matches!(idempotent(""), Err(StripeError::Rejected { .. })));
        assert!(matches!(
            idempotent("a b"),
            Err(StripeError::Rejected { .. })
        ));
        assert!(matches!(
            idempotent(&"k".repeat(256)),
            Err(StripeError::Rejected { .. })
        ));
        assert!(check_id("op", "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw").is_ok());
        assert!(check_id("op", "sub_1/../customers").is_err());
        assert!(check_id("op", "").is_err());
    }

    #[test]
    fn rejected_display() {
        let err = StripeError::Rejected {
            status: 402,
            code: Some("card_declined".to_owned()),
            message: "Your card was declined.".to_owned(),
        };
        assert_eq!(
            err.to_string(),
            "Stripe rejected the request (402 card_declined): Your card was declined."
        );
        assert!(!err.is_transient());
        assert!(StripeError::Unavailable("x".to_owned()).is_transient());
    }

    #[test]
    fn garbage_is_a_shape_error() {
        let err = parse_subscription(&serde_json::json!("nope")).unwrap_err();
        assert_eq!(err.object, "subscription");
        let err = parse_invoice(&serde_json::json!({"object": "subscription"})).unwrap_err();
        assert!(err.detail.contains("\"subscription\""), "{err}");
        let err = parse_checkout_session(&serde_json::json!({"id": "cs_1"})).unwrap_err();
        assert!(err.to_string().contains("checkout.session"), "{err}");
    }
}
