//! A local stand-in for Stripe's HTTP API: an axum server on 127.0.0.1 that answers the calls
//! Tollgate makes with Stripe's own example objects (`fixtures/stripe-fixtures3.json` in this
//! crate), their ids and fields set from the request, and records every request. The test suite
//! asserts on what it received; `tollgate-dev serve --stripe-standin` runs it so `make dev` bills
//! without a Stripe account.
//!
//! Served (anything else answers Stripe's 404):
//! - `GET /v1/prices`, `GET /v1/prices/{id}` → a recurring USD price for every plan and interval:
//!   the configured ids ([`PriceTable`]) at the plan's list price (`tollgate::pricing`);
//! - `POST /v1/customers` → a customer `cus_test_N` with the posted name, email and metadata;
//! - `POST /v1/checkout/sessions` → an open session `cs_test_N`, url
//!   `https://checkout.stripe.com/c/pay/cs_test_N`, with the posted mode, customer,
//!   client_reference_id, URLs and metadata (later served by `GET`); a subscription's
//!   `line_items[0][price]` must be one of the prices (else 400 `resource_missing`, as Stripe);
//! - `POST /v1/billing_portal/sessions` → `bps_test_N`, url
//!   `https://billing.stripe.com/p/session/test_N`;
//! - `POST /v1/invoiceitems` → `ii_test_N` with the posted customer, invoice, amount, currency,
//!   description and metadata;
//! - `GET /v1/subscriptions/{id}`, `/v1/invoices/{id}`, `/v1/checkout/sessions/{id}` → the object
//!   set with [`StripeStandIn::set_subscription`] (and friends) or created earlier, else the
//!   fixture with that id;
//! - `POST /_standin/checkout/sessions/{id}/pay` (the stand-in's own, not Stripe's): what paying on
//!   the checkout page does. A subscription-mode session becomes `complete`/`paid`, an active
//!   subscription `sub_test_N` on the session's price (period from now, metadata from
//!   `subscription_data[metadata]`; with `subscription_data[trial_period_days]`, `trialing` until
//!   the trial's end, which ends the first period, and a $0 invoice) and its paid invoice
//!   `in_test_N` are created and served by
//!   `GET` from then on. Answers `{"checkout_session", "subscription", "invoice", "events"}`,
//!   `events` being the `checkout.session.completed`, `customer.subscription.created` and
//!   `invoice.paid` events Stripe would deliver; paying the same session again answers the same
//!   objects and events.
//!
//! Like Stripe: a request without `Authorization: Bearer <key>` answers 401; a missing required
//! parameter answers 400 `parameter_missing`; a POST repeating an `Idempotency-Key` replays the
//! first successful answer (`Idempotent-Replayed: true`), or answers 400 `idempotency_error` when
//! its endpoint or parameters differ (the same fields in another order are the same parameters:
//! a client may encode a map, such as `metadata`, in any order). Errors use Stripe's format `{"error": {"type", "code",
//! "message"[, "param"]}}`. [`StripeStandIn::respond_with`] overrides one endpoint (a 500, a card
//! error ...) until cleared; overridden answers are never stored for idempotent replay.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use tollgate::billing::prices::PriceTable;
use tollgate::pricing::{Interval, Plan};
use tollgate_stripe::PINNED_API_VERSION;

/// Stripe's published example objects (`openapi/fixtures3.json`), vendored so the repository
/// builds and tests on its own.
const FIXTURES: &str = include_str!("../fixtures/stripe-fixtures3.json");

/// The stand-in's address in `make dev` (stripe-mock's customary port), and its URL.
pub const DEFAULT_ADDR: &str = "127.0.0.1:12111";
pub const DEFAULT_URL: &str = "http://127.0.0.1:12111";

/// The secret key the dev gateway sends to the stand-in, which accepts any non-empty key.
pub const SECRET_KEY: &str = "sk_test_tollgate_local_standin";

/// Stripe's example object for a resource, by its `object` name: `subscription`, `invoice`,
/// `checkout.session`, `customer`, `billing_portal.session`, `invoiceitem`, ...
///
/// # Panics
/// When the fixture file has no such resource (a typo in a test; the stand-in itself only names
/// resources the file has).
pub fn fixture(name: &str) -> Value {
    static PARSED: OnceLock<Value> = OnceLock::new();
    let all = PARSED.get_or_init(|| serde_json::from_str(FIXTURES).expect("fixtures3.json parses"));
    match all.pointer(&format!("/resources/{}", name.replace('/', "~1"))) {
        Some(object) => object.clone(),
        None => panic!("fixtures3.json has no resource {name:?}"),
    }
}

/// Stripe's `subscription` fixture as Tollgate's tests need it, without a trial: `status`, its first item on `price`
/// (29,900 a period) for `period` (start, end as Unix seconds).
pub fn subscription_object(
    id: &str,
    customer: &str,
    status: &str,
    price: &str,
    period: (i64, i64),
) -> Value {
    let mut object = fixture("subscription");
    object["id"] = json!(id);
    object["customer"] = json!(customer);
    object["status"] = json!(status);
    object["cancel_at_period_end"] = json!(false);
    let item = &mut object["items"]["data"][0];
    item["price"]["id"] = json!(price);
    item["price"]["unit_amount"] = json!(29900);
    item["subscription"] = json!(id);
    item["current_period_start"] = json!(period.0);
    item["current_period_end"] = json!(period.1);
    // No trial (the fixture's are from 2009); a test of a trial sets them.
    object["trial_start"] = Value::Null;
    object["trial_end"] = Value::Null;
    object
}

/// Stripe's `invoice` fixture for `subscription`: 29,900 due, paid in full (and `paid_at` set)
/// when `status` is `paid`.
pub fn invoice_object(
    id: &str,
    customer: &str,
    subscription: &str,
    status: &str,
    created: i64,
) -> Value {
    let mut object = fixture("invoice");
    object["id"] = json!(id);
    object["customer"] = json!(customer);
    object["status"] = json!(status);
    object["created"] = json!(created);
    object["number"] = json!(format!("TG-{id}"));
    object["amount_due"] = json!(29900);
    object["amount_paid"] = json!(if status == "paid" { 29900 } else { 0 });
    object["hosted_invoice_url"] = json!(format!("https://invoice.stripe.com/i/{id}"));
    object["invoice_pdf"] = json!(format!("https://pay.stripe.com/invoice/{id}/pdf"));
    object["parent"] = json!({"type": "subscription_details", "quote_details": null,
        "subscription_details": {"metadata": {}, "subscription": subscription}});
    object["status_transitions"]["paid_at"] = if status == "paid" {
        json!(created + 5)
    } else {
        Value::Null
    };
    object
}

/// The event Stripe would deliver for `object`: `{"id", "object": "event", "api_version":
/// PINNED_API_VERSION, "created", "data": {"object"}, "livemode": false, "pending_webhooks": 1,
/// "request": {"id": null, "idempotency_key": null}, "type"}`.
pub fn event(event_type: &str, event_id: &str, created: i64, object: Value) -> Value {
    json!({
        "id": event_id,
        "object": "event",
        "api_version": PINNED_API_VERSION.as_str(),
        "created": created,
        "data": {"object": object},
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": event_type,
    })
}

/// [`event`] as a delivery body and its `Stripe-Signature` header, signed with `secret` at the
/// current time exactly as Stripe signs (`t=<now>,v1=<hex HMAC-SHA256 of "<now>.<body>">`).
pub fn signed_event(
    secret: &str,
    event_type: &str,
    event_id: &str,
    created: i64,
    object: Value,
) -> (String, String) {
    let body = event(event_type, event_id, created, object).to_string();
    let header = tollgate::billing::signature::sign_for_test(secret, body.as_bytes(), now());
    (body, header)
}

/// One request the stand-in received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path without the query, e.g. `/v1/checkout/sessions`.
    pub path: String,
    pub query: Option<String>,
    /// The form body, percent-decoded, in the order sent (`line_items[0][price]`, ...).
    pub form: Vec<(String, String)>,
    /// Every header, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The first value of form field `name`.
    pub fn form_value(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn idempotency_key(&self) -> Option<&str> {
        self.header("idempotency-key")
    }

    /// The form fields sorted, for comparing the full set regardless of order.
    pub fn sorted_form(&self) -> Vec<(String, String)> {
        let mut form = self.form.clone();
        form.sort();
        form
    }
}

#[derive(Default)]
struct Inner {
    requests: Vec<RecordedRequest>,
    overrides: HashMap<(String, String), (u16, Value)>,
    subscriptions: HashMap<String, Value>,
    invoices: HashMap<String, Value>,
    checkout_sessions: HashMap<String, Value>,
    /// What a created session sells, which its object does not show (`line_items` is expandable).
    checkout_intents: HashMap<String, CheckoutIntent>,
    /// The price catalogue, by id.
    prices: HashMap<String, Value>,
    /// The answer of `POST /_standin/checkout/sessions/{id}/pay`, by session, for replays.
    payments: HashMap<String, Value>,
    idempotent: HashMap<String, Stored>,
    counter: u64,
}

#[derive(Clone)]
struct CheckoutIntent {
    price: String,
    quantity: u64,
    subscription_metadata: Value,
    /// `subscription_data[trial_period_days]`; 0 when not sent.
    trial_days: i64,
}

struct Stored {
    endpoint: String,
    /// Sorted ([`RecordedRequest::sorted_form`]).
    form: Vec<(String, String)>,
    status: u16,
    body: Value,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(state: &Shared) -> MutexGuard<'_, Inner> {
    // A test that panicked while holding the lock must not hide its own failure behind ours.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The running stand-in. Dropping it stops the server.
pub struct StripeStandIn {
    /// `http://127.0.0.1:PORT`: the `STRIPE_API_BASE` to give the code under test.
    pub base_url: String,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for StripeStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl StripeStandIn {
    /// Starts a stand-in on a free port of 127.0.0.1 selling the default prices (tests).
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start() -> StripeStandIn {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        // A test's stand-in numbers its ids from 1 (`cus_test_1`, `cs_test_2`, ...).
        Self::start_numbered(addr, &PriceTable::from_lookup(|_| None), 0)
            .await
            .expect("bind the Stripe stand-in")
    }

    /// Starts a stand-in on `addr` (port 0: a free one) selling `prices`, as `tollgate-dev` runs
    /// it. Its ids continue from the time it started, in microseconds (`cus_test_1764...`), not
    /// from 1: the table it bills for outlives it (`make dev` keeps `.tollgate/dynamodb`), and an id
    /// issued again after a restart would be another organization's customer (its checkout then
    /// fails) or an event already processed (answered `duplicate`, the payment never applied).
    pub async fn start_on(addr: SocketAddr, prices: &PriceTable) -> std::io::Result<StripeStandIn> {
        let started = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000;
        Self::start_numbered(addr, prices, u64::try_from(started).unwrap_or_default()).await
    }

    /// A stand-in whose first id number is `after + 1`.
    async fn start_numbered(
        addr: SocketAddr,
        prices: &PriceTable,
        after: u64,
    ) -> std::io::Result<StripeStandIn> {
        let state: Shared = Arc::default();
        lock(&state).prices = catalogue(prices);
        lock(&state).counter = after;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "the Stripe stand-in stopped");
            }
        });
        Ok(StripeStandIn {
            base_url,
            state,
            server,
        })
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// The requests to `method` `path` so far.
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<RecordedRequest> {
        lock(&self.state)
            .requests
            .iter()
            .filter(|request| request.method.eq_ignore_ascii_case(method) && request.path == path)
            .cloned()
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }

    /// From now on, `method` `path` (e.g. `"POST"`, `"/v1/checkout/sessions"`) answers `status`
    /// with `body` (see [`stripe_error`] for Stripe's error format), until
    /// [`StripeStandIn::clear_response`].
    pub fn respond_with(&self, method: &str, path: &str, status: u16, body: Value) {
        lock(&self.state).overrides.insert(
            (method.to_ascii_uppercase(), path.to_owned()),
            (status, body),
        );
    }

    /// Removes the override of `method` `path`.
    pub fn clear_response(&self, method: &str, path: &str) {
        lock(&self.state)
            .overrides
            .remove(&(method.to_ascii_uppercase(), path.to_owned()));
    }

    /// What `GET /v1/subscriptions/{id}` answers from now on.
    pub fn set_subscription(&self, id: &str, object: Value) {
        lock(&self.state)
            .subscriptions
            .insert(id.to_owned(), object);
    }

    /// What `GET /v1/invoices/{id}` answers from now on.
    pub fn set_invoice(&self, id: &str, object: Value) {
        lock(&self.state).invoices.insert(id.to_owned(), object);
    }

    /// What `GET /v1/checkout/sessions/{id}` answers from now on.
    pub fn set_checkout_session(&self, id: &str, object: Value) {
        lock(&self.state)
            .checkout_sessions
            .insert(id.to_owned(), object);
    }
}

/// Stripe's error body: `{"error": {"type", "code", "message"}}` (`code` omitted when `None`).
pub fn stripe_error(error_type: &str, code: Option<&str>, message: &str) -> Value {
    let mut error = Map::new();
    error.insert("type".to_owned(), json!(error_type));
    if let Some(code) = code {
        error.insert("code".to_owned(), json!(code));
    }
    error.insert("message".to_owned(), json!(message));
    json!({ "error": error })
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = RecordedRequest {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        form: form_urlencoded::parse(&body).into_owned().collect(),
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    let mut inner = lock(&state);
    inner.requests.push(request.clone());
    let (status, body, replayed) = answer(&mut inner, &request);
    drop(inner);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert("request-id", HeaderValue::from_static("req_standin"));
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Status, body and whether it is an idempotent replay.
fn answer(inner: &mut Inner, request: &RecordedRequest) -> (u16, Value, bool) {
    let authorized = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|key| !key.trim().is_empty());
    if !authorized {
        return (
            401,
            stripe_error(
                "invalid_request_error",
                None,
                "You did not provide an API key. You need to provide your API key in the \
                 Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            ),
            false,
        );
    }
    let key = (request.method.clone(), request.path.clone());
    if let Some((status, body)) = inner.overrides.get(&key) {
        return (*status, body.clone(), false);
    }
    let endpoint = format!("{} {}", request.method, request.path);
    let idempotency_key = if request.method == "POST" {
        request.idempotency_key().map(str::to_owned)
    } else {
        None
    };
    if let Some(idempotency_key) = &idempotency_key
        && let Some(stored) = inner.idempotent.get(idempotency_key)
    {
        if stored.endpoint != endpoint {
            return idempotency_error(
                "Keys for idempotent requests can only be used for the same endpoint they were \
                 first used for.",
            );
        }
        if stored.form != request.sorted_form() {
            return idempotency_error(
                "Keys for idempotent requests can only be used with the same parameters they \
                 were first used with.",
            );
        }
        return (stored.status, stored.body.clone(), true);
    }
    let (status, body) = route(inner, request);
    // Like Stripe, a request refused before it ran (validation) saves no idempotent result.
    if let Some(idempotency_key) = idempotency_key
        && (200..300).contains(&status)
    {
        inner.idempotent.insert(
            idempotency_key,
            Stored {
                endpoint,
                form: request.sorted_form(),
                status,
                body: body.clone(),
            },
        );
    }
    (status, body, false)
}

fn idempotency_error(message: &str) -> (u16, Value, bool) {
    (400, stripe_error("idempotency_error", None, message), false)
}

fn route(inner: &mut Inner, request: &RecordedRequest) -> (u16, Value) {
    let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "customers"]) => create_customer(inner, request),
        ("POST", ["v1", "checkout", "sessions"]) => create_checkout_session(inner, request),
        ("POST", ["v1", "billing_portal", "sessions"]) => create_portal_session(inner, request),
        ("POST", ["v1", "invoiceitems"]) => create_invoice_item(inner, request),
        ("POST", ["_standin", "checkout", "sessions", id, "pay"]) => pay_session(inner, id),
        ("GET", ["v1", "prices"]) => {
            let mut data: Vec<Value> = inner.prices.values().cloned().collect();
            data.sort_by_key(|price| price["unit_amount"].as_i64());
            (
                200,
                json!({"object": "list", "data": data, "has_more": false, "url": "/v1/prices"}),
            )
        }
        ("GET", ["v1", "prices", id]) => match inner.prices.get(*id) {
            Some(price) => (200, price.clone()),
            None => no_such("price", id, "id"),
        },
        ("GET", ["v1", "subscriptions", id]) => {
            let object = inner.subscriptions.get(*id).cloned();
            (200, object.unwrap_or_else(|| with_id("subscription", id)))
        }
        ("GET", ["v1", "invoices", id]) => {
            let object = inner.invoices.get(*id).cloned();
            (200, object.unwrap_or_else(|| with_id("invoice", id)))
        }
        ("GET", ["v1", "checkout", "sessions", id]) => {
            let object = inner.checkout_sessions.get(*id).cloned();
            (
                200,
                object.unwrap_or_else(|| with_id("checkout.session", id)),
            )
        }
        _ => (
            404,
            stripe_error(
                "invalid_request_error",
                None,
                &format!(
                    "Unrecognized request URL ({}: {}). Please see https://stripe.com/docs or we \
                     can help at https://support.stripe.com/.",
                    request.method, request.path
                ),
            ),
        ),
    }
}

fn with_id(resource: &str, id: &str) -> Value {
    let mut object = fixture(resource);
    object["id"] = json!(id);
    object
}

fn next_number(inner: &mut Inner) -> u64 {
    inner.counter += 1;
    inner.counter
}

/// Stripe's answer for an unknown id: 400 `resource_missing` (404 for a path id).
fn no_such(resource: &str, id: &str, param: &str) -> (u16, Value) {
    let mut body = stripe_error(
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such {resource}: '{id}'"),
    );
    body["error"]["param"] = json!(param);
    (if param == "id" { 404 } else { 400 }, body)
}

fn missing_param(param: &str) -> (u16, Value) {
    let mut body = stripe_error(
        "invalid_request_error",
        Some("parameter_missing"),
        &format!("Missing required param: {param}."),
    );
    body["error"]["param"] = json!(param);
    (400, body)
}

/// `metadata[key]=value` fields (under `prefix`, e.g. `metadata` or
/// `subscription_data[metadata]`) as an object.
fn metadata(request: &RecordedRequest, prefix: &str) -> Value {
    let start = format!("{prefix}[");
    let fields: Map<String, Value> = request
        .form
        .iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix(&start)?.strip_suffix(']')?;
            (!name.contains('[')).then(|| (name.to_owned(), json!(value)))
        })
        .collect();
    Value::Object(fields)
}

fn optional(request: &RecordedRequest, name: &str) -> Value {
    request
        .form_value(name)
        .map_or(Value::Null, |value| json!(value))
}

fn create_customer(inner: &mut Inner, request: &RecordedRequest) -> (u16, Value) {
    let id = format!("cus_test_{}", next_number(inner));
    let mut customer = fixture("customer");
    customer["id"] = json!(id);
    customer["created"] = json!(now());
    customer["name"] = optional(request, "name");
    customer["email"] = optional(request, "email");
    customer["description"] = optional(request, "description");
    customer["metadata"] = metadata(request, "metadata");
    customer["discount"] = Value::Null;
    (200, customer)
}

fn create_checkout_session(inner: &mut Inner, request: &RecordedRequest) -> (u16, Value) {
    let Some(mode) = request.form_value("mode") else {
        return missing_param("mode");
    };
    let intent = if mode == "subscription" {
        let Some(price) = request.form_value("line_items[0][price]") else {
            return missing_param("line_items");
        };
        if !inner.prices.contains_key(price) {
            return no_such("price", price, "line_items[0][price]");
        }
        let quantity = request
            .form_value("line_items[0][quantity]")
            .and_then(|q| q.parse().ok())
            .unwrap_or(1);
        Some(CheckoutIntent {
            price: price.to_owned(),
            quantity,
            subscription_metadata: metadata(request, "subscription_data[metadata]"),
            trial_days: request
                .form_value("subscription_data[trial_period_days]")
                .and_then(|days| days.parse().ok())
                .unwrap_or(0),
        })
    } else {
        None
    };
    let number = next_number(inner);
    let id = format!("cs_test_{number}");
    if let Some(intent) = intent {
        inner.checkout_intents.insert(id.clone(), intent);
    }
    let mut session = fixture("checkout.session");
    session["id"] = json!(id);
    session["url"] = json!(format!("https://checkout.stripe.com/c/pay/{id}"));
    session["created"] = json!(now());
    session["expires_at"] = json!(now() + 24 * 3600);
    session["mode"] = json!(mode);
    session["status"] = json!("open");
    session["payment_status"] = json!("unpaid");
    session["customer"] = optional(request, "customer");
    session["client_reference_id"] = optional(request, "client_reference_id");
    session["success_url"] = optional(request, "success_url");
    session["cancel_url"] = optional(request, "cancel_url");
    session["metadata"] = metadata(request, "metadata");
    session["subscription"] = Value::Null;
    session["invoice"] = Value::Null;
    if mode != "payment" {
        session["payment_intent"] = Value::Null;
    }
    inner.checkout_sessions.insert(id, session.clone());
    (200, session)
}

fn create_portal_session(inner: &mut Inner, request: &RecordedRequest) -> (u16, Value) {
    let Some(customer) = request.form_value("customer") else {
        return missing_param("customer");
    };
    let number = next_number(inner);
    let mut session = fixture("billing_portal.session");
    session["id"] = json!(format!("bps_test_{number}"));
    session["url"] = json!(format!(
        "https://billing.stripe.com/p/session/test_{number}"
    ));
    session["created"] = json!(now());
    session["customer"] = json!(customer);
    session["return_url"] = optional(request, "return_url");
    session["livemode"] = json!(false);
    session["flow"] = Value::Null;
    (200, session)
}

fn create_invoice_item(inner: &mut Inner, request: &RecordedRequest) -> (u16, Value) {
    let Some(customer) = request.form_value("customer") else {
        return missing_param("customer");
    };
    let Some(currency) = request.form_value("currency") else {
        return missing_param("currency");
    };
    let amount = match request.form_value("amount").map(str::parse::<i64>) {
        Some(Ok(amount)) => amount,
        Some(Err(_)) => {
            let mut body = stripe_error(
                "invalid_request_error",
                Some("parameter_invalid_integer"),
                "Invalid integer: amount",
            );
            body["error"]["param"] = json!("amount");
            return (400, body);
        }
        None => return missing_param("amount"),
    };
    let id = format!("ii_test_{}", next_number(inner));
    let mut item = fixture("invoiceitem");
    item["id"] = json!(id);
    item["customer"] = json!(customer);
    item["invoice"] = optional(request, "invoice");
    item["amount"] = json!(amount);
    item["net_amount"] = json!(amount);
    item["currency"] = json!(currency);
    item["description"] = optional(request, "description");
    item["metadata"] = metadata(request, "metadata");
    item["date"] = json!(now());
    item["parent"] = Value::Null;
    (200, item)
}

/// The seed's short plan names, as in its default price ids.
fn slug(plan: Plan) -> &'static str {
    match plan {
        Plan::Starter => "starter",
        Plan::Professional => "pro",
        Plan::Business => "business",
    }
}

/// Stripe's `price` object for `plan` billed every `interval` under `id`: recurring, USD, the
/// plan's list price from `tollgate::pricing`.
pub fn price_object(id: &str, plan: Plan, interval: Interval) -> Value {
    let amount = tollgate::pricing::price_cents(plan, interval);
    let definition = tollgate::pricing::definition(plan);
    let mut price = fixture("price");
    price["id"] = json!(id);
    price["product"] = json!(format!("prod_tollgate_{}", slug(plan)));
    price["nickname"] = json!(format!("{} {}", definition.name, interval.as_str()));
    price["lookup_key"] = json!(format!("{}_{}", slug(plan), interval.as_str()));
    price["metadata"] = json!({"plan": plan.as_str()});
    price["unit_amount"] = json!(amount);
    price["unit_amount_decimal"] = json!(amount.to_string());
    price["currency"] = json!("usd");
    price["recurring"]["interval"] = json!(stripe_interval(interval));
    price["recurring"]["interval_count"] = json!(1);
    price["transform_quantity"] = Value::Null;
    price
}

fn stripe_interval(interval: Interval) -> &'static str {
    match interval {
        Interval::Monthly => "month",
        Interval::Yearly => "year",
    }
}

fn catalogue(prices: &PriceTable) -> HashMap<String, Value> {
    let mut catalogue = HashMap::new();
    for plan in Plan::ALL {
        for interval in Interval::ALL {
            if let Some(id) = prices.price_id(plan, interval) {
                catalogue.insert(id.to_owned(), price_object(id, plan, interval));
            }
        }
    }
    catalogue
}

/// `start` plus `months` calendar months, on the same day clamped to the month's end, as Stripe
/// advances a billing period.
fn add_months(start: i64, months: u32) -> i64 {
    let Ok(start) = OffsetDateTime::from_unix_timestamp(start) else {
        return start;
    };
    let index =
        i64::from(start.year()) * 12 + i64::from(u8::from(start.month())) - 1 + i64::from(months);
    let (Ok(year), Ok(month)) = (
        i32::try_from(index.div_euclid(12)),
        time::Month::try_from(u8::try_from(index.rem_euclid(12) + 1).unwrap_or(1)),
    ) else {
        return start.unix_timestamp();
    };
    let day = start.day().min(month.length(year));
    time::Date::from_calendar_date(year, month, day)
        .map(|date| start.replace_date(date).unix_timestamp())
        .unwrap_or_else(|_| start.unix_timestamp())
}

/// `POST /_standin/checkout/sessions/{id}/pay`: the customer paid on the checkout page.
fn pay_session(inner: &mut Inner, id: &str) -> (u16, Value) {
    if let Some(payment) = inner.payments.get(id) {
        return (200, payment.clone());
    }
    let Some(mut session) = inner.checkout_sessions.get(id).cloned() else {
        return no_such("checkout.session", id, "id");
    };
    let invalid = |message: String| (400, stripe_error("invalid_request_error", None, &message));
    if session["mode"] != "subscription" {
        return invalid(format!(
            "Checkout session {id} is in {} mode; the stand-in pays subscription-mode sessions.",
            session["mode"]
        ));
    }
    if session["status"] != "open" {
        return invalid(format!(
            "Checkout session {id} is {}, not open.",
            session["status"]
        ));
    }
    let Some(intent) = inner.checkout_intents.get(id).cloned() else {
        return invalid(format!(
            "Checkout session {id} was not created through POST /v1/checkout/sessions."
        ));
    };
    let Some(price) = inner.prices.get(&intent.price).cloned() else {
        return no_such("price", &intent.price, "line_items[0][price]");
    };
    let customer = match session["customer"].as_str() {
        Some(customer) => customer.to_owned(),
        None => {
            let customer = format!("cus_test_{}", next_number(inner));
            session["customer"] = json!(customer);
            customer
        }
    };
    let now = now();
    let months = if price["recurring"]["interval"] == "year" {
        12
    } else {
        1
    };
    // A trial: the subscription is trialing until its end, the first invoice is $0.
    let trial_end = (intent.trial_days > 0).then(|| now + intent.trial_days * 86_400);
    let period = (now, trial_end.unwrap_or_else(|| add_months(now, months)));
    let unit_amount = price["unit_amount"].as_i64().unwrap_or(0);
    let quantity = i64::try_from(intent.quantity).unwrap_or(1);
    let amount = if trial_end.is_some() {
        0
    } else {
        unit_amount.saturating_mul(quantity)
    };
    let subscription_id = format!("sub_test_{}", next_number(inner));
    let item_id = format!("si_test_{}", next_number(inner));
    let invoice_id = format!("in_test_{}", next_number(inner));
    let price_id = price["id"].as_str().unwrap_or_default().to_owned();

    let status = if trial_end.is_some() {
        "trialing"
    } else {
        "active"
    };
    let mut subscription =
        subscription_object(&subscription_id, &customer, status, &price_id, period);
    subscription["created"] = json!(now);
    subscription["start_date"] = json!(now);
    subscription["billing_cycle_anchor"] = json!(now);
    subscription["billing_cycle_anchor_config"] = Value::Null;
    for field in [
        "cancel_at",
        "canceled_at",
        "ended_at",
        "trial_start",
        "trial_end",
        "pending_update",
        "next_pending_invoice_item_invoice",
        "pending_invoice_item_interval",
        "transfer_data",
        "pause_collection",
    ] {
        subscription[field] = Value::Null;
    }
    if let Some(trial_end) = trial_end {
        subscription["trial_start"] = json!(now);
        subscription["trial_end"] = json!(trial_end);
    }
    subscription["currency"] = json!("usd");
    subscription["latest_invoice"] = json!(invoice_id);
    subscription["metadata"] = intent.subscription_metadata.clone();
    subscription["items"]["url"] = json!(format!(
        "/v1/subscription_items?subscription={subscription_id}"
    ));
    let item = &mut subscription["items"]["data"][0];
    item["id"] = json!(item_id);
    item["created"] = json!(now);
    item["price"] = price.clone();
    item["quantity"] = json!(intent.quantity);
    item["plan"] = json!({
        "active": true, "amount": unit_amount, "amount_decimal": unit_amount.to_string(),
        "billing_scheme": "per_unit", "created": price["created"], "currency": "usd",
        "id": price_id, "interval": price["recurring"]["interval"], "interval_count": 1,
        "livemode": false, "metadata": price["metadata"], "meter": null,
        "nickname": price["nickname"],
        "object": "plan", "product": price["product"], "tiers_mode": null, "transform_usage": null,
        "trial_period_days": null, "usage_type": "licensed",
    });

    let mut invoice = invoice_object(&invoice_id, &customer, &subscription_id, "paid", now);
    for field in [
        "amount_due",
        "amount_paid",
        "subtotal",
        "subtotal_excluding_tax",
        "total",
    ] {
        invoice[field] = json!(amount);
    }
    invoice["total_excluding_tax"] = json!(amount);
    invoice["amount_remaining"] = json!(0);
    invoice["currency"] = json!("usd");
    invoice["billing_reason"] = json!("subscription_create");
    invoice["collection_method"] = json!("charge_automatically");
    // A subscription's first invoice covers the moment it was created; its line the period.
    invoice["period_start"] = json!(now);
    invoice["period_end"] = json!(now);
    invoice["status_transitions"]["finalized_at"] = json!(now);
    invoice["status_transitions"]["paid_at"] = json!(now);
    invoice["parent"]["subscription_details"]["metadata"] = intent.subscription_metadata.clone();
    invoice["metadata"] = json!({});
    let line = &mut invoice["lines"]["data"][0];
    line["id"] = json!(format!("il_test_{}", next_number(inner)));
    line["invoice"] = json!(invoice_id);
    line["amount"] = json!(amount);
    line["subtotal"] = json!(amount);
    line["currency"] = json!("usd");
    line["description"] = json!(if trial_end.is_some() {
        format!(
            "Trial period for {}",
            price["nickname"].as_str().unwrap_or("plan")
        )
    } else {
        format!(
            "{} × {} (at ${}.{:02} / {})",
            intent.quantity,
            price["nickname"].as_str().unwrap_or("plan"),
            unit_amount / 100,
            unit_amount % 100,
            price["recurring"]["interval"].as_str().unwrap_or("month"),
        )
    });
    line["period"] = json!({"start": period.0, "end": period.1});
    line["quantity"] = json!(intent.quantity);
    line["subscription"] = json!(subscription_id);
    line["parent"] = json!({
        "type": "subscription_item_details", "invoice_item_details": null,
        "subscription_item_details": {"invoice_item": null, "proration": false,
            "proration_details": {"credited_items": null},
            "subscription": subscription_id, "subscription_item": item_id},
    });
    invoice["lines"]["url"] = json!(format!("/v1/invoices/{invoice_id}/lines"));

    session["status"] = json!("complete");
    session["payment_status"] = json!("paid");
    session["subscription"] = json!(subscription_id);
    session["invoice"] = json!(invoice_id);
    session["amount_subtotal"] = json!(amount);
    session["amount_total"] = json!(amount);
    session["currency"] = json!("usd");

    let events: Vec<Value> = [
        ("checkout.session.completed", session.clone()),
        ("customer.subscription.created", subscription.clone()),
        ("invoice.paid", invoice.clone()),
    ]
    .into_iter()
    .map(|(event_type, object)| {
        let event_id = format!("evt_test_{}", next_number(inner));
        event(event_type, &event_id, now, object)
    })
    .collect();
    inner
        .subscriptions
        .insert(subscription_id, subscription.clone());
    inner.invoices.insert(invoice_id, invoice.clone());
    inner
        .checkout_sessions
        .insert(id.to_owned(), session.clone());
    let payment = json!({
        "object": "standin.payment",
        "checkout_session": session,
        "subscription": subscription,
        "invoice": invoice,
        "events": events,
    });
    inner.payments.insert(id.to_owned(), payment.clone());
    (200, payment)
}
