//! Webhook events into async-stripe's `Event` type, after Tollgate's own signature check.

use serde::Deserialize;
use serde_json::Value;
use stripe_webhook::{EventObject, Webhook};

use crate::objects::{checkout_facts, invoice_facts, subscription_facts, subscription_hint};
use crate::{CheckoutFacts, InvoiceFacts, SubscriptionFacts};

/// A webhook event whose signature Tollgate checked, as far as it parsed in the pinned version.
// One event per webhook request, handled then dropped: boxing the facts would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripeEvent {
    /// The event and its object parsed into async-stripe's types (`stripe_webhook::Event`).
    Parsed {
        /// `evt_...`.
        id: String,
        /// `customer.subscription.updated`, `invoice.paid`, ...
        event_type: String,
        /// When Stripe created the event (Unix seconds): the order of events.
        created: i64,
        object: EventFacts,
    },
    /// The envelope is a Stripe event, but the event or its object does not fit the pinned types
    /// (an endpoint on another API version, say): the handler retrieves `object_id` again through
    /// the API (which answers in the pinned version), or answers 5xx so that Stripe retries. It
    /// never acknowledges the event unprocessed.
    Unparsed {
        id: String,
        event_type: String,
        created: i64,
        /// `data.object.id`.
        object_id: String,
        /// What did not fit (never the payload itself).
        reason: String,
    },
}

impl StripeEvent {
    /// The event's id (`evt_...`).
    pub fn id(&self) -> &str {
        match self {
            StripeEvent::Parsed { id, .. } | StripeEvent::Unparsed { id, .. } => id,
        }
    }

    /// The event's type (`invoice.paid`, ...).
    pub fn event_type(&self) -> &str {
        match self {
            StripeEvent::Parsed { event_type, .. } | StripeEvent::Unparsed { event_type, .. } => {
                event_type
            }
        }
    }

    /// When Stripe created the event (Unix seconds).
    pub fn created(&self) -> i64 {
        match self {
            StripeEvent::Parsed { created, .. } | StripeEvent::Unparsed { created, .. } => *created,
        }
    }
}

/// The facts of a parsed event's object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFacts {
    /// `customer.subscription.*`.
    Subscription(SubscriptionFacts),
    /// `invoice.*`.
    Invoice(InvoiceFacts),
    /// `checkout.session.*`.
    CheckoutSession(CheckoutFacts),
    /// Any other event: Tollgate reads nothing of its object.
    Other,
}

/// A payload that is not a Stripe event at all: the webhook answers 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not JSON, or without the `id`, `type`, `created` or `data.object` of an event.
    #[error("the event is not a Stripe event object: {0}")]
    NotAnEvent(String),
    /// An event whose object did not parse and has no `id` to retrieve it by.
    #[error("the event's object has no id")]
    ObjectWithoutId,
}

/// What every Stripe event has, whatever its API version: enough to retrieve its object again.
#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    data: EnvelopeData,
}

#[derive(Deserialize)]
struct EnvelopeData {
    object: Value,
}

/// async-stripe parses events only behind its own signature check (or `Webhook::insecure`, which
/// warns on every call in a release build). Tollgate has checked the signature already
/// (`tollgate::billing::signature`), so the payload is signed again with this key, which protects
/// nothing, only to hand it to the parser.
const PARSE_ONLY_KEY: &str = "tollgate-signature-already-verified";

/// Parses a webhook payload **whose signature has been checked** (`tollgate::billing::signature`)
/// into async-stripe's `Event`, and yields the event's id, type, creation time and the facts of
/// its object.
///
/// When the event or its object does not fit the pinned types, yields [`StripeEvent::Unparsed`]
/// (from the envelope every event has) so that the handler retrieves the object by id. Fails with
/// [`EventError`] only when the payload is not a Stripe event at all (the handler answers 400).
pub fn parse_event(payload: &[u8]) -> Result<StripeEvent, EventError> {
    let envelope: Envelope = serde_json::from_slice(payload).map_err(|error| {
        // serde names a missing field without quoting the payload; other messages may quote a
        // value, so they are not repeated.
        let message = error.to_string();
        EventError::NotAnEvent(if message.starts_with("missing field") {
            message
        } else {
            format!(
                "not JSON, or a field of the envelope has another type (line {}, column {})",
                error.line(),
                error.column()
            )
        })
    })?;
    let unparsed = |reason: String| {
        let object_id = envelope
            .data
            .object
            .get("id")
            .and_then(Value::as_str)
            .ok_or(EventError::ObjectWithoutId)?;
        Ok(StripeEvent::Unparsed {
            id: envelope.id.clone(),
            event_type: envelope.event_type.clone(),
            created: envelope.created,
            object_id: object_id.to_owned(),
            reason,
        })
    };
    // Valid JSON is UTF-8.
    let Ok(text) = std::str::from_utf8(payload) else {
        return unparsed("the payload is not UTF-8".to_owned());
    };
    let header = Webhook::generate_test_header(text, PARSE_ONLY_KEY, Some(0));
    let event = match Webhook::construct_event_with_timestamp(text, &header, PARSE_ONLY_KEY, 0) {
        Ok(event) => event,
        Err(error) => {
            let mut reason = format!("async-stripe: {error}");
            if envelope.event_type.starts_with("customer.subscription.")
                && let Some(hint) = subscription_hint(&envelope.data.object)
            {
                reason = format!("{reason}: {hint}");
            }
            return unparsed(reason);
        }
    };
    let raw = Some(&envelope.data.object);
    let object = match &event.data.object {
        EventObject::CustomerSubscriptionCreated(subscription)
        | EventObject::CustomerSubscriptionUpdated(subscription)
        | EventObject::CustomerSubscriptionDeleted(subscription)
        | EventObject::CustomerSubscriptionPaused(subscription)
        | EventObject::CustomerSubscriptionResumed(subscription)
        | EventObject::CustomerSubscriptionPendingUpdateApplied(subscription)
        | EventObject::CustomerSubscriptionPendingUpdateExpired(subscription)
        | EventObject::CustomerSubscriptionTrialWillEnd(subscription) => {
            EventFacts::Subscription(subscription_facts(subscription, raw))
        }
        EventObject::InvoiceCreated(invoice)
        | EventObject::InvoiceDeleted(invoice)
        | EventObject::InvoiceFinalizationFailed(invoice)
        | EventObject::InvoiceFinalized(invoice)
        | EventObject::InvoiceMarkedUncollectible(invoice)
        | EventObject::InvoiceOverdue(invoice)
        | EventObject::InvoiceOverpaid(invoice)
        | EventObject::InvoicePaid(invoice)
        | EventObject::InvoicePaymentActionRequired(invoice)
        | EventObject::InvoicePaymentAttemptRequired(invoice)
        | EventObject::InvoicePaymentFailed(invoice)
        | EventObject::InvoicePaymentSucceeded(invoice)
        | EventObject::InvoiceSent(invoice)
        | EventObject::InvoiceUpcoming(invoice)
        | EventObject::InvoiceUpdated(invoice)
        | EventObject::InvoiceVoided(invoice)
        | EventObject::InvoiceWillBeDue(invoice) => match invoice_facts(invoice, raw) {
            Ok(facts) => EventFacts::Invoice(facts),
            Err(error) => return unparsed(error.to_string()),
        },
        EventObject::CheckoutSessionCompleted(session)
        | EventObject::CheckoutSessionExpired(session)
        | EventObject::CheckoutSessionAsyncPaymentSucceeded(session)
        | EventObject::CheckoutSessionAsyncPaymentFailed(session) => {
            EventFacts::CheckoutSession(checkout_facts(session))
        }
        _ => EventFacts::Other,
    };
    Ok(StripeEvent::Parsed {
        id: event.id.as_str().to_owned(),
        event_type: event.type_.as_str().to_owned(),
        created: event.created,
        object,
    })
}
