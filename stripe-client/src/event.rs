//! Webhook events into async-stripe's `Event` type, after Tollgate's own signature check.

use serde::Deserialize;
use serde_json::Value;
use stripe_shared::Event;

use crate::objects::{parse_checkout_session, parse_invoice, parse_subscription};
use crate::{CheckoutFacts, InvoiceFacts, SubscriptionFacts};

/// A webhook event whose signature Tollgate checked, as far as it parsed in the pinned version.
// One event per webhook request, handled then dropped: boxing the facts would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripeEvent {
    /// The event and its object parsed into async-stripe's types (`stripe_shared::Event` and
    /// the object's type).
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

impl EventFacts {
    pub fn subscription(&self) -> Option<&SubscriptionFacts> {
        match self {
            EventFacts::Subscription(facts) => Some(facts),
            _ => None,
        }
    }

    pub fn invoice(&self) -> Option<&InvoiceFacts> {
        match self {
            EventFacts::Invoice(facts) => Some(facts),
            _ => None,
        }
    }

    pub fn checkout_session(&self) -> Option<&CheckoutFacts> {
        match self {
            EventFacts::CheckoutSession(facts) => Some(facts),
            _ => None,
        }
    }
}

/// A payload that is not a Stripe event at all: the webhook answers 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not JSON, or without the `id`, `type`, `created` or `data.object` of an event.
    #[error("the event is not a Stripe event object: {0}")]
    NotAnEvent(String),
    /// An event whose object did not parse and has no `id` to retrieve it by. Its envelope is
    /// given: an event the handler does not act on (`invoice.upcoming`, whose invoice has no id
    /// yet) is still acknowledged.
    #[error("the event's object has no id")]
    ObjectWithoutId {
        /// `evt_...`.
        id: String,
        event_type: String,
        created: i64,
    },
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

/// Parses a webhook payload **whose signature has been checked** (`tollgate::billing::signature`)
/// into async-stripe's `Event` (`stripe_shared::Event`, through its own deserializer), and the
/// event's object into async-stripe's `Subscription`, `Invoice` or `CheckoutSession` by the
/// event's type; yields the event's id, type, creation time and the facts of its object.
///
/// async-stripe's webhook crate is not used: it parses only behind a check of one secret (Tollgate
/// checks every `v1` signature against several secrets during a rotation), and its `EventObject`
/// holds every event's object type, most of which Tollgate never reads.
///
/// When the event or its object does not fit the pinned types, yields [`StripeEvent::Unparsed`]
/// (from the envelope every event has) so that the handler retrieves the object by id. Fails with
/// [`EventError::NotAnEvent`] when the payload is not a Stripe event at all (the handler answers
/// 400), and with [`EventError::ObjectWithoutId`] (the envelope included) when the object neither
/// fits nor has an id to retrieve it by: the handler refuses it only for an event it acts on.
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
            .ok_or_else(|| EventError::ObjectWithoutId {
                id: envelope.id.clone(),
                event_type: envelope.event_type.clone(),
                created: envelope.created,
            })?;
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
    let event: Event = match miniserde::json::from_str(text) {
        Ok(event) => event,
        // miniserde reports no detail (and so never quotes a value of the payload).
        Err(_) => return unparsed("the event does not fit async-stripe's Event".to_owned()),
    };
    let object = &envelope.data.object;
    let event_type = event.type_.as_str();
    let facts = if event_type.starts_with("customer.subscription.") {
        parse_subscription(object).map(EventFacts::Subscription)
    } else if event_type.starts_with("invoice.") {
        parse_invoice(object).map(EventFacts::Invoice)
    } else if event_type.starts_with("checkout.session.") {
        parse_checkout_session(object).map(EventFacts::CheckoutSession)
    } else {
        Ok(EventFacts::Other)
    };
    match facts {
        Ok(object) => Ok(StripeEvent::Parsed {
            id: event.id.as_str().to_owned(),
            event_type: event_type.to_owned(),
            created: event.created,
            object,
        }),
        Err(error) => unparsed(error.to_string()),
    }
}
