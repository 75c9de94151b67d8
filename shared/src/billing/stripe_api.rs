//! Stripe API client: the few calls Tollgate makes, and the parsing of webhook objects.
//!
//! Stripe's REST API spoken directly over reqwest (the HTTP client the JWKS fetch already uses):
//! form-encoded requests, JSON answers, `Authorization: Bearer <secret key>` and
//! `Stripe-Version:` [`PINNED_API_VERSION`] on every request, so Stripe answers in that version's
//! shapes. The webhook endpoint must be created with the same version, or its payloads may not fit
//! (see below). A generated SDK (async-stripe) was used before: its object types were most of the
//! Stripe functions' binaries and a third of a clean release build (docs/BENCHMARKS.md).
//!
//! # Objects
//! API responses and webhook `data.object` payloads parse into this module's own types, which hold
//! the fields Tollgate reads with the types and required-ness API version [`PINNED_API_VERSION`]
//! gives them (Stripe's published fixtures, `infra/dev-gateway/fixtures`, are the reference).
//! Other fields are ignored. A payload that lacks a field Tollgate reads, or has it with another
//! type, fails with a [`ShapeError`] instead of being misread; the webhook handler then fetches the
//! object by id ([`StripeApi::retrieve_subscription`] and friends answer in the pinned version) or
//! answers 5xx so Stripe retries.
//!
//! From the objects we keep only the facts Tollgate needs ([`SubscriptionFacts`],
//! [`InvoiceFacts`], [`CheckoutFacts`]). Expandable references (customer, subscription) may be an
//! id or an expanded object: both give the id.
//!
//! Older API versions, concretely:
//! - Subscription periods live on the items since 2025-03-31.basil, and the pinned version
//!   requires `current_period_start/end` on every item, so an older payload (periods only at
//!   the top level) is a [`ShapeError`] whose detail says so. The top-level fields are still read
//!   when the subscription has no item at all (nothing to take the period from).
//! - Invoices name their subscription in `parent.subscription_details.subscription` since basil;
//!   the old top-level `subscription` is the fallback.
//!
//! # Errors and secrets
//! Network failures, timeouts, Stripe 5xx, 429 and 409 (a concurrent request with the same
//! idempotency key) are [`StripeError::Unavailable`] (transient: answer 502/503 so the caller or
//! Stripe retries); other 4xx are [`StripeError::Rejected`] with
//! Stripe's own code and message. Nothing here logs. The secret key is never part of `Debug`
//! output nor of any error message (Stripe's messages are scrubbed of it, should one quote it),
//! and its header is marked sensitive.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use serde::Deserialize;
use serde_json::Value;

/// The Stripe API version Tollgate speaks: sent as `Stripe-Version` on every request, and the
/// version whose object shapes the types below follow. Create the webhook endpoint with it.
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
    http: reqwest::Client,
    api_base: String,
    /// `Bearer <key>`, marked sensitive. Never printed.
    authorization: HeaderValue,
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

/// A validated Stripe secret key and API base: what [`StripeApi::build`] needs. Building the HTTP
/// client is left to the first Stripe call ([`client`]), so functions that
/// never call Stripe do not pay for it at cold start.
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

/// One request: method, path under `/v1/`, form fields (POST only), idempotency key.
struct Call<'a> {
    op: &'static str,
    post: bool,
    path: String,
    form: Vec<(&'a str, &'a str)>,
    idempotency_key: Option<&'a str>,
}

impl<'a> Call<'a> {
    fn get(op: &'static str, path: String) -> Self {
        Call {
            op,
            post: false,
            path,
            form: Vec::new(),
            idempotency_key: None,
        }
    }

    fn post(op: &'static str, path: &str, form: Vec<(&'a str, &'a str)>) -> Self {
        Call {
            op,
            post: true,
            path: path.to_owned(),
            form,
            idempotency_key: None,
        }
    }

    /// Sends `Idempotency-Key: <key>` (checked first: visible ASCII, 1–255 characters).
    fn idempotent(mut self, key: &'a str) -> Result<Self, StripeError> {
        check_idempotency_key(key)?;
        self.idempotency_key = Some(key);
        Ok(self)
    }
}

/// The `id` of a created object.
#[derive(Deserialize)]
struct Created {
    id: String,
}

/// A billing portal session: where to send the user.
#[derive(Deserialize)]
struct PortalSession {
    id: String,
    url: String,
}

/// Stripe's error answer: `{"error": {"type", "code", "message", ...}}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: ApiError,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl StripeApi {
    /// A client for `api_base` with the secret key `secret_key` ([`StripeSettings::new`], then
    /// [`StripeApi::build`]). No network I/O.
    pub fn new(secret_key: &str, api_base: &str) -> Result<StripeApi, StripeError> {
        StripeApi::build(&StripeSettings::new(secret_key, api_base)?)
    }

    /// The client for validated settings. No network I/O.
    pub fn build(settings: &StripeSettings) -> Result<StripeApi, StripeError> {
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", settings.secret_key))
            .map_err(|_| {
            StripeError::Unavailable(
                "the Stripe secret key contains characters a key never has".to_owned(),
            )
        })?;
        authorization.set_sensitive(true);
        Ok(StripeApi {
            http: crate::trust::reqwest_client(REQUEST_TIMEOUT)
                .map_err(|err| StripeError::Unavailable(err.to_string()))?,
            api_base: settings.api_base.clone(),
            authorization,
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
        let mut form = vec![("name", name)];
        if let Some(email) = email {
            form.push(("email", email));
        }
        form.push((ORGANIZATION_METADATA_FIELD, organization_id));
        let call = Call::post("create customer", "customers", form).idempotent(idempotency_key)?;
        let customer: Created = self.send(call).await?;
        Ok(customer.id)
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
        let form = vec![
            ("mode", "subscription"),
            ("customer", request.customer_id),
            ("client_reference_id", request.organization_id),
            ("line_items[0][price]", request.price_id),
            ("line_items[0][quantity]", "1"),
            (
                "subscription_data[metadata][organizationId]",
                request.organization_id,
            ),
            ("success_url", request.success_url),
            ("cancel_url", request.cancel_url),
        ];
        let call = Call::post(OP, "checkout/sessions", form).idempotent(idempotency_key)?;
        let session: CheckoutSession = self.send(call).await?;
        match session.url {
            Some(url) if !url.is_empty() => Ok(CheckoutSessionCreated {
                id: session.id,
                url,
            }),
            _ => Err(StripeError::UnexpectedShape(format!(
                "{OP}: checkout session {} has no url",
                session.id
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
        let form = vec![("customer", customer_id), ("return_url", return_url)];
        let session: PortalSession = self
            .send(Call::post(OP, "billing_portal/sessions", form))
            .await?;
        if session.url.is_empty() {
            return Err(StripeError::UnexpectedShape(format!(
                "{OP}: portal session {} has no url",
                session.id
            )));
        }
        Ok(session.url)
    }

    /// Retrieves a subscription (in the pinned API version).
    pub async fn retrieve_subscription(&self, id: &str) -> Result<SubscriptionFacts, StripeError> {
        const OP: &str = "retrieve subscription";
        check_id(OP, id)?;
        let subscription: Subscription = self
            .send(Call::get(OP, format!("subscriptions/{id}")))
            .await?;
        Ok(subscription_facts(subscription, None))
    }

    /// Retrieves an invoice (in the pinned API version).
    pub async fn retrieve_invoice(&self, id: &str) -> Result<InvoiceFacts, StripeError> {
        const OP: &str = "retrieve invoice";
        check_id(OP, id)?;
        let invoice: Invoice = self.send(Call::get(OP, format!("invoices/{id}"))).await?;
        invoice_facts(invoice).map_err(|err| StripeError::UnexpectedShape(format!("{OP}: {err}")))
    }

    /// Retrieves a Checkout Session (in the pinned API version).
    pub async fn retrieve_checkout_session(&self, id: &str) -> Result<CheckoutFacts, StripeError> {
        const OP: &str = "retrieve checkout session";
        check_id(OP, id)?;
        let session: CheckoutSession = self
            .send(Call::get(OP, format!("checkout/sessions/{id}")))
            .await?;
        Ok(checkout_facts(session))
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
        if i64::try_from(amount_cents).is_err() {
            return Err(StripeError::Rejected {
                status: 400,
                code: Some("amount_too_large".to_owned()),
                message: format!("{OP}: amount {amount_cents} does not fit Stripe's integer"),
            });
        }
        let amount = amount_cents.to_string();
        let currency = currency.trim().to_ascii_lowercase();
        let metadata_fields: Vec<String> = metadata
            .iter()
            .map(|(key, _)| format!("metadata[{key}]"))
            .collect();
        let mut form = vec![
            ("customer", customer_id),
            ("invoice", invoice_id),
            ("amount", amount.as_str()),
            ("currency", currency.as_str()),
            ("description", description),
        ];
        form.extend(
            metadata_fields
                .iter()
                .zip(metadata)
                .map(|(field, (_, value))| (field.as_str(), *value)),
        );
        let call = Call::post(OP, "invoiceitems", form).idempotent(idempotency_key)?;
        let item: Created = self.send(call).await?;
        Ok(item.id)
    }

    /// Sends one request once (the caller, or Stripe for a webhook, retries with the same
    /// idempotency key) and parses a 2xx answer as `T`.
    async fn send<T: serde::de::DeserializeOwned>(&self, call: Call<'_>) -> Result<T, StripeError> {
        let op = call.op;
        let url = format!("{}/v1/{}", self.api_base, call.path);
        let mut request = if call.post {
            let mut body = form_urlencoded::Serializer::new(String::new());
            body.extend_pairs(&call.form);
            self.http
                .post(url)
                .header(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                )
                .body(body.finish())
        } else {
            self.http.get(url)
        };
        request = request
            .header(AUTHORIZATION, self.authorization.clone())
            .header("Stripe-Version", PINNED_API_VERSION)
            .header(USER_AGENT, USER_AGENT_VALUE);
        if let Some(key) = call.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request
            .send()
            .await
            .map_err(|err| self.transport(op, &err))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|err| self.transport(op, &err))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&body).map_err(|_| {
                StripeError::UnexpectedShape(format!(
                    "{op}: the response does not match API version {PINNED_API_VERSION}"
                ))
            });
        }
        Err(self.refusal(op, status, &body))
    }

    /// A request that got no answer: Stripe out of reach, a reset connection, the timeout.
    fn transport(&self, op: &'static str, err: &reqwest::Error) -> StripeError {
        if err.is_timeout() {
            return StripeError::Unavailable(format!(
                "{op}: no answer within {} s",
                REQUEST_TIMEOUT.as_secs()
            ));
        }
        // The error and its causes (as the store reports the SDK's); reqwest's names the URL (base
        // and path: the key travels in a sensitive header, which it never prints).
        let detail = DisplayErrorContext(err).to_string();
        StripeError::Unavailable(format!("{op}: {}", self.scrub(&detail)))
    }

    /// Maps a non-2xx answer, scrubbing the secret key from anything Stripe quoted.
    fn refusal(&self, op: &'static str, status: u16, body: &[u8]) -> StripeError {
        // An error status whose body is not Stripe's error JSON (a proxy's 502 page, say) is not
        // a refusal by Stripe: treat it as transient rather than lose the request.
        let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) else {
            return StripeError::Unavailable(format!(
                "{op}: Stripe answered {status} without its error body"
            ));
        };
        let message = error
            .message
            .as_deref()
            .map(|message| self.scrub(message))
            .unwrap_or_else(|| format!("Stripe {} without a message", error.kind));
        // 409: the request raced another with the same idempotency key (or on the same object);
        // like 429 and 5xx, the same request is expected to succeed later.
        let transient = status >= 500
            || status == 429
            || status == 409
            || matches!(error.code.as_deref(), Some("lock_timeout" | "rate_limit"));
        if transient {
            StripeError::Unavailable(format!("{op}: Stripe answered {status}: {message}"))
        } else {
            StripeError::Rejected {
                status,
                code: error.code,
                message,
            }
        }
    }

    fn scrub(&self, text: &str) -> String {
        text.replace(&*self.secret_key, "[redacted]")
    }
}

/// `tollgate/<version>`: who is calling, as Stripe asks integrations to say.
const USER_AGENT_VALUE: &str = concat!("tollgate/", env!("CARGO_PKG_VERSION"));

/// The form field naming the owning organization on customers.
const ORGANIZATION_METADATA_FIELD: &str = "metadata[organizationId]";

/// Stripe's rule for `Idempotency-Key`: 1–255 characters; visible ASCII so it is a header value.
fn check_idempotency_key(key: &str) -> Result<(), StripeError> {
    let invalid = |reason: &str| StripeError::Rejected {
        status: 400,
        code: Some("idempotency_key_invalid".to_owned()),
        message: format!("invalid idempotency key: {reason}"),
    };
    if key.is_empty() {
        return Err(invalid("it is empty"));
    }
    if key.len() > 255 {
        return Err(invalid("it is longer than 255 characters"));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("only visible ASCII characters are allowed"));
    }
    Ok(())
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

// ---------------------------------------------------------------------------------------------
// Objects: the fields Tollgate reads, typed and required as in the pinned API version.

/// An expandable reference: the id, or the expanded object (which has one).
#[derive(Deserialize)]
#[serde(untagged)]
enum Expandable {
    Id(String),
    Object { id: String },
}

impl Expandable {
    fn into_id(self) -> String {
        match self {
            Expandable::Id(id) | Expandable::Object { id } => id,
        }
    }
}

#[derive(Deserialize)]
struct Subscription {
    id: String,
    customer: Expandable,
    status: String,
    items: List<SubscriptionItem>,
    cancel_at_period_end: bool,
    currency: String,
    metadata: std::collections::HashMap<String, String>,
    created: i64,
    /// Only in API versions before 2025-03-31.basil (read when there is no item).
    #[serde(default)]
    current_period_start: Option<i64>,
    #[serde(default)]
    current_period_end: Option<i64>,
}

#[derive(Deserialize)]
struct List<T> {
    data: Vec<T>,
}

#[derive(Deserialize)]
struct SubscriptionItem {
    price: Price,
    #[serde(default)]
    quantity: Option<u64>,
    current_period_start: i64,
    current_period_end: i64,
}

#[derive(Deserialize)]
struct Price {
    id: String,
    currency: String,
    #[serde(default)]
    unit_amount: Option<i64>,
    #[serde(default)]
    recurring: Option<Recurring>,
}

#[derive(Deserialize)]
struct Recurring {
    interval: String,
}

#[derive(Deserialize)]
struct Invoice {
    /// None only for a preview invoice.
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    customer: Option<Expandable>,
    #[serde(default)]
    parent: Option<InvoiceParent>,
    /// Before 2025-03-31.basil.
    #[serde(default)]
    subscription: Option<Expandable>,
    amount_due: i64,
    amount_paid: i64,
    currency: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    hosted_invoice_url: Option<String>,
    #[serde(default)]
    invoice_pdf: Option<String>,
    period_start: i64,
    period_end: i64,
    status_transitions: StatusTransitions,
    created: i64,
    #[serde(default)]
    billing_reason: Option<String>,
}

#[derive(Deserialize)]
struct InvoiceParent {
    #[serde(default)]
    subscription_details: Option<SubscriptionDetails>,
}

#[derive(Deserialize)]
struct SubscriptionDetails {
    subscription: Expandable,
}

#[derive(Deserialize)]
struct StatusTransitions {
    #[serde(default)]
    paid_at: Option<i64>,
}

#[derive(Deserialize)]
struct CheckoutSession {
    id: String,
    #[serde(default)]
    customer: Option<Expandable>,
    #[serde(default)]
    subscription: Option<Expandable>,
    #[serde(default)]
    client_reference_id: Option<String>,
    #[serde(default)]
    metadata: Option<std::collections::HashMap<String, String>>,
    mode: String,
    #[serde(default)]
    status: Option<String>,
    payment_status: String,
    #[serde(default)]
    url: Option<String>,
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
    Ok(subscription_facts(subscription, Some(object)))
}

/// Parses a webhook's `data.object` as an invoice of the pinned API version.
pub fn parse_invoice(object: &Value) -> Result<InvoiceFacts, ShapeError> {
    let invoice: Invoice = parse_pinned("invoice", object)?;
    invoice_facts(invoice)
}

/// Parses a webhook's `data.object` as a Checkout Session of the pinned API version.
pub fn parse_checkout_session(object: &Value) -> Result<CheckoutFacts, ShapeError> {
    let session: CheckoutSession = parse_pinned("checkout.session", object)?;
    Ok(checkout_facts(session))
}

/// Deserializes `object` into `T`, checking its `object` name first.
fn parse_pinned<T: serde::de::DeserializeOwned>(
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
    T::deserialize(object).map_err(|err| {
        // serde names a missing field without quoting the payload; other messages may quote a
        // value (an email, say), so they are not repeated.
        let message = err.to_string();
        shape(if message.starts_with("missing field") {
            format!("{message} (a payload of another API version?)")
        } else {
            "a field Tollgate reads has another type (a payload of another API version?)".to_owned()
        })
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

fn subscription_facts(subscription: Subscription, raw: Option<&Value>) -> SubscriptionFacts {
    let item = subscription.items.data.into_iter().next();
    // Older API versions: the period is at the top level (only reachable for a subscription
    // without items, since every item must carry its own period).
    let top_level = |field: &str, parsed: Option<i64>| {
        parsed.or_else(|| raw.and_then(|raw| raw.get(field)).and_then(Value::as_i64))
    };
    let (current_period_start, current_period_end) = match &item {
        Some(item) => (
            Some(item.current_period_start),
            Some(item.current_period_end),
        ),
        None => (
            top_level("current_period_start", subscription.current_period_start),
            top_level("current_period_end", subscription.current_period_end),
        ),
    };
    let amount_cents = item.as_ref().and_then(|item| {
        let unit = u64::try_from(item.price.unit_amount?).ok()?;
        unit.checked_mul(item.quantity.unwrap_or(1))
    });
    let price = item.map(|item| item.price);
    let organization_id = subscription
        .metadata
        .get(ORGANIZATION_METADATA_KEY)
        .filter(|id| !id.is_empty())
        .cloned();
    SubscriptionFacts {
        id: subscription.id,
        customer_id: subscription.customer.into_id(),
        status: subscription.status,
        currency: Some(
            price
                .as_ref()
                .map(|price| price.currency.clone())
                .unwrap_or(subscription.currency),
        ),
        interval: price
            .as_ref()
            .and_then(|price| price.recurring.as_ref())
            .map(|recurring| recurring.interval.clone()),
        price_id: price.map(|price| price.id),
        cancel_at_period_end: subscription.cancel_at_period_end,
        current_period_start,
        current_period_end,
        amount_cents,
        organization_id,
        created: subscription.created,
    }
}

fn invoice_facts(invoice: Invoice) -> Result<InvoiceFacts, ShapeError> {
    let shape = |detail: &str| ShapeError {
        object: "invoice",
        detail: detail.to_owned(),
    };
    let id = invoice
        .id
        .ok_or_else(|| shape("it has no id (a preview invoice?)"))?;
    let customer = invoice
        .customer
        .ok_or_else(|| shape("it has no customer"))?;
    let amount = |value: i64, field: &str| {
        u64::try_from(value).map_err(|_| shape(&format!("{field} is negative")))
    };
    let subscription_id = invoice
        .parent
        .and_then(|parent| parent.subscription_details)
        .map(|details| details.subscription.into_id())
        .or_else(|| invoice.subscription.map(Expandable::into_id));
    Ok(InvoiceFacts {
        id,
        number: invoice.number,
        customer_id: customer.into_id(),
        subscription_id,
        amount_due: amount(invoice.amount_due, "amount_due")?,
        amount_paid: amount(invoice.amount_paid, "amount_paid")?,
        currency: invoice.currency,
        status: invoice.status,
        hosted_invoice_url: invoice.hosted_invoice_url,
        invoice_pdf: invoice.invoice_pdf,
        period_start: Some(invoice.period_start),
        period_end: Some(invoice.period_end),
        paid_at: invoice.status_transitions.paid_at,
        created: invoice.created,
        billing_reason: invoice.billing_reason,
    })
}

fn checkout_facts(session: CheckoutSession) -> CheckoutFacts {
    let client_reference_id = session.client_reference_id.filter(|id| !id.is_empty());
    let organization_id = session
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.get(ORGANIZATION_METADATA_KEY))
        .filter(|id| !id.is_empty())
        .cloned()
        .or_else(|| client_reference_id.clone());
    CheckoutFacts {
        id: session.id,
        customer_id: session.customer.map(Expandable::into_id),
        subscription_id: session.subscription.map(Expandable::into_id),
        client_reference_id,
        mode: session.mode,
        status: session.status,
        payment_status: session.payment_status,
        organization_id,
    }
}

/// The function's Stripe client, built from the current secret key on the first Stripe call;
/// 503 `billing_not_configured` without a key.
pub async fn client(state: &crate::pipeline::AppState) -> Result<StripeApi, crate::http::ApiError> {
    let secrets = state.secrets().await?;
    secrets.client(|secrets| {
        let key = secrets.stripe_secret_key.as_deref().ok_or_else(|| {
            crate::http::ApiError::unavailable(
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
pub fn api_error(error: StripeError) -> crate::http::ApiError {
    tracing::error!(error = %error, "Stripe request failed");
    let message = match &error {
        StripeError::Rejected { message, .. } => format!("Stripe refused the request: {message}"),
        _ => "Stripe could not be reached or failed; try again shortly.".to_owned(),
    };
    crate::http::ApiError::new(http::StatusCode::BAD_GATEWAY, "stripe_error", message)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(check_idempotency_key("checkout:org_1:abc").is_ok());
        assert!(check_idempotency_key(&"k".repeat(255)).is_ok());
        for bad in ["", "a b", "ключ", "k\n"] {
            assert!(
                matches!(
                    check_idempotency_key(bad),
                    Err(StripeError::Rejected { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            check_idempotency_key(&"k".repeat(256)),
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
